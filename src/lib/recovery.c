/*
 * recovery.c -- work items, leases, checkpoints, the recovery sweep and
 * resume: the public API of that section of taskspan.h.
 *
 * Each call is one transaction on the recorder's store (through
 * taskspan__recorder_run, under the recorder's lock): BEGIN IMMEDIATE,
 * read the rows, decide, write the rows, append the events that describe
 * the change, COMMIT. A kill -9 at any point leaves either all of it or
 * none of it. The decisions (which transition a lease call makes, which
 * lease a sweep counts as expired) live here; store_recovery.c only runs
 * SQL. docs/recovery.md describes the state machine.
 */
#include "internal.h"
#include "payload_builder.h"
#include "recovery.h"
#include "runner_liveness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ITEM_ID_MAX (TASKSPAN_MAX_ID_LEN - 5) /* "work_" + id is a key */
#define MAX_TTL_MS ((int64_t)7 * 24 * 3600 * 1000)
#define CHECKPOINT_ID_MAX TASKSPAN_MAX_ID_LEN

/* ---- arguments ---- */

/* A required text argument: present, not empty, at most max bytes. */
static bool text_ok(const char *what, const char *v, size_t max, char *msg,
                    size_t size)
{
    if (v == NULL || v[0] == '\0') {
        snprintf(msg, size, "%s is %s", what, v == NULL ? "NULL" : "empty");
        return false;
    }
    if (strlen(v) > max) {
        snprintf(msg, size, "%s is %zu bytes, more than %zu", what, strlen(v),
                 max);
        return false;
    }
    return true;
}

/* Check task_id, and work_item_id / holder when given (NULL: not an
 * argument of the call). Records the failure on ts. */
static taskspan_code check_args(taskspan *ts, const char *task_id,
                                const char *item_id, bool need_item,
                                const char *holder, bool need_holder)
{
    char msg[TASKSPAN__MSG_SIZE];
    if (!text_ok("task_id", task_id, TASKSPAN_MAX_ID_LEN, msg, sizeof msg) ||
        (need_item &&
         !text_ok("work_item_id", item_id, ITEM_ID_MAX, msg, sizeof msg)) ||
        (need_holder &&
         !text_ok("holder", holder, ITEM_ID_MAX, msg, sizeof msg))) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
    }
    return TASKSPAN_OK;
}

static taskspan_code null_out(taskspan *ts, const char *what)
{
    char msg[64];
    snprintf(msg, sizeof msg, "%s is NULL", what);
    return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
}

/* ---- recording events inside a transaction ---- */

/* What every transaction carries around. */
typedef struct txn {
    const taskspan__recovery_ops *ops;
    void *store;
    const taskspan__append *tmpl;
    const char *task_id;
    int64_t now_ns;
    size_t *n_events;
    char *err;
    size_t errlen;
} txn;

/* Append event type (placed as its typed helper places it) with payload p,
 * inside the open transaction. OUT: *out_seq (may be NULL). */
static taskspan_code record(txn *t, const char *type, const char *item_id,
                            const payload *p, int64_t *out_seq)
{
    char key[TASKSPAN_MAX_ID_LEN + 8];
    char *json = NULL;
    int64_t seq = 0;
    taskspan__append rec = *t->tmpl;

    rec.task_id = t->task_id;
    rec.ts_ns = t->now_ns;
    if (!taskspan__event_place(&rec, type, item_id, key, sizeof key)) {
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_STORE,
                              "no placement for %s", type);
    }
    taskspan_code code = taskspan__payload_encode(&json, p->a, p->n, t->err,
                                                  t->errlen);
    if (code == TASKSPAN_OK) {
        rec.payload_json = json;
        code = t->ops->append(t->store, &rec, &seq, t->err, t->errlen);
    }
    free(json);
    if (code == TASKSPAN_OK) {
        (*t->n_events)++;
        if (out_seq != NULL) {
            *out_seq = seq;
        }
    }
    return code;
}

/* Run body inside BEGIN IMMEDIATE ... COMMIT; roll back on failure (and
 * then nothing was recorded). */
typedef taskspan_code (*txn_body)(txn *t, void *ctx);

static taskspan_code in_transaction(txn *t, txn_body body, void *ctx)
{
    taskspan_code code = t->ops->begin(t->store, t->err, t->errlen);
    if (code != TASKSPAN_OK) {
        return code;
    }
    /* The clock is read under the write lock, so the times of a task's
     * state changes follow their seq order. */
    t->now_ns = taskspan__now_ns();
    code = body(t, ctx);
    if (code == TASKSPAN_OK) {
        code = t->ops->commit(t->store, t->err, t->errlen);
    }
    if (code != TASKSPAN_OK) {
        t->ops->rollback(t->store);
        *t->n_events = 0;
    }
    return code;
}

/* A call's context as the recorder hands it to us. */
typedef struct call {
    const char *task_id;
    txn_body body;
    bool transaction; /* false: a read, no write lock */
    void *ctx;
} call;

static taskspan_code run_call(const taskspan__recovery_ops *ops, void *store,
                              const taskspan__append *tmpl, void *ctx,
                              size_t *out_events, char *err, size_t errlen)
{
    call *c = ctx;
    txn t = {ops, store, tmpl, c->task_id, 0, out_events, err, errlen};
    if (!c->transaction) {
        t.now_ns = taskspan__now_ns();
        return c->body(&t, c->ctx);
    }
    return in_transaction(&t, c->body, c->ctx);
}

static taskspan_code run(taskspan *ts, const char *task_id, txn_body body,
                         bool transaction, void *ctx)
{
    call c = {task_id, body, transaction, ctx};
    return taskspan__recorder_run(ts, run_call, &c, transaction);
}

/* ---- work items and leases ---- */

typedef enum item_op {
    OP_ADD,
    OP_GET,
    OP_ACQUIRE,
    OP_RENEW,
    OP_RELEASE,
    OP_FINISH,
    OP_FAIL
} item_op;

typedef struct item_req {
    item_op op;
    const char *item_id, *holder, *title, *explanation, *reason, *error;
    const char *const *files;
    size_t n_files;
    int64_t index, ttl_ms;
    /* Results. */
    taskspan_lease_outcome outcome;
    taskspan_work_item item;
    bool added;
} item_req;

static void copy_id(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static int64_t ceil_seconds(int64_t ms)
{
    return (ms + 999) / 1000;
}

static void take_lease(taskspan_work_item *it, const item_req *r, int64_t now)
{
    it->state = TASKSPAN_ITEM_LEASED;
    copy_id(it->holder, sizeof it->holder, r->holder);
    it->holder_pid = (int64_t)getpid();
    it->lease_expires_ns = now + r->ttl_ms * 1000000;
}

static void clear_lease(taskspan_work_item *it, taskspan_item_state state)
{
    it->state = state;
    it->holder[0] = '\0';
    it->holder_pid = 0;
    it->lease_expires_ns = 0;
}

/* A new item: QUEUED, and its work_item_dispatched. */
static void item_add(item_req *r, payload *p, const char **event)
{
    taskspan_work_item *it = &r->item;
    memset(it, 0, sizeof *it);
    copy_id(it->id, sizeof it->id, r->item_id);
    it->state = TASKSPAN_ITEM_QUEUED;
    r->added = true;
    r->outcome = TASKSPAN_LEASE_GRANTED;
    *event = "work_item_dispatched";
    add_str(p, "work_item_id", r->item_id);
    add_str(p, "title", r->title);
    add_int(p, "index", r->index);
    add_str(p, "explanation", r->explanation);
}

/* Decide what a lease call on an existing, unfinished item does: the new
 * state goes into r->item, the event to record into *event and p, and
 * *write says whether the row changed. */
static void item_decide(item_req *r, int64_t now, payload *p,
                        const char **event, bool *write)
{
    taskspan_work_item *it = &r->item;
    bool mine = it->state == TASKSPAN_ITEM_LEASED &&
                strcmp(it->holder, r->holder) == 0;

    *write = true;
    r->outcome = TASKSPAN_LEASE_GRANTED;
    add_str(p, "work_item_id", r->item_id);
    if ((r->op == OP_ACQUIRE || r->op == OP_RENEW) && mine) {
        take_lease(it, r, now);
        *event = "lease_renewed";
        add_str(p, "lease_holder", r->holder);
        add_int(p, "extended_by_seconds", ceil_seconds(r->ttl_ms));
    } else if (r->op == OP_ACQUIRE && it->state == TASKSPAN_ITEM_QUEUED) {
        take_lease(it, r, now);
        it->attempts++;
        *event = "lease_acquired";
        add_str(p, "lease_holder", r->holder);
        add_int(p, "lease_duration_seconds", ceil_seconds(r->ttl_ms));
    } else if (r->op == OP_ACQUIRE) {
        r->outcome = TASKSPAN_LEASE_HELD;
        *write = false;
        return;
    } else if (!mine) {
        r->outcome = TASKSPAN_LEASE_LOST;
        *write = false;
        if (r->op != OP_RENEW) {
            return;
        }
        /* A worker that still heartbeats an item it lost: make it seen. */
        *event = "lease_lost";
        add_str(p, "lease_holder", r->holder);
        add_str(p, "reason", "not the lease holder");
    } else if (r->op == OP_RELEASE) {
        clear_lease(it, TASKSPAN_ITEM_QUEUED);
        *event = "lease_lost";
        add_str(p, "lease_holder", r->holder);
        add_str(p, "reason", r->reason != NULL ? r->reason : "released");
    } else if (r->op == OP_FINISH) {
        clear_lease(it, TASKSPAN_ITEM_DONE);
        *event = "work_item_done";
        add_str(p, "title", r->title);
        add_strs(p, "files_changed", r->files, r->n_files);
    } else {
        clear_lease(it, TASKSPAN_ITEM_FAILED);
        *event = "work_item_failed";
        add_str(p, "title", r->title);
        add_str(p, "error", r->error);
    }
    add_str(p, "explanation", r->explanation);
}

static taskspan_code item_body(txn *t, void *ctx)
{
    item_req *r = ctx;
    payload p = {.n = 0};
    const char *event = NULL;
    bool found = false, write = false;

    taskspan_code code = t->ops->item_get(t->store, t->task_id, r->item_id,
                                          &r->item, &found, t->err, t->errlen);
    if (code != TASKSPAN_OK || r->op == OP_GET) {
        if (code == TASKSPAN_OK && !found) {
            code = taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOT_FOUND,
                                  "task '%.64s' has no work item '%.64s'",
                                  t->task_id, r->item_id);
        }
        return code;
    }
    if (r->op == OP_ADD && found) {
        r->outcome = TASKSPAN_LEASE_GRANTED;
        return TASKSPAN_OK; /* added before: leave it as it is */
    }
    if (r->op == OP_ADD) {
        item_add(r, &p, &event);
        write = true;
    } else if (!found) {
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOT_FOUND,
                              "task '%.64s' has no work item '%.64s'",
                              t->task_id, r->item_id);
    } else if (r->item.state == TASKSPAN_ITEM_DONE ||
               r->item.state == TASKSPAN_ITEM_FAILED) {
        r->outcome = TASKSPAN_LEASE_FINISHED;
        return TASKSPAN_OK;
    } else {
        item_decide(r, t->now_ns, &p, &event, &write);
    }
    if (code == TASKSPAN_OK && write) {
        r->item.updated_ns = t->now_ns;
        code = t->ops->item_put(t->store, t->task_id, &r->item, r->title,
                                r->index, t->err, t->errlen);
    }
    if (code == TASKSPAN_OK && event != NULL) {
        code = record(t, event, r->item_id, &p, NULL);
    }
    return code;
}

/* The common path of the lease calls. */
static taskspan_code lease_call(taskspan_lease_outcome *out,
                                taskspan_work_item *out_item, taskspan *ts,
                                const char *task_id, item_req *r)
{
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL) {
        return null_out(ts, "out");
    }
    taskspan_code code = check_args(ts, task_id, r->item_id, true, r->holder,
                                    true);
    if (code == TASKSPAN_OK && (r->op == OP_ACQUIRE || r->op == OP_RENEW) &&
        (r->ttl_ms < 1 || r->ttl_ms > MAX_TTL_MS)) {
        char msg[96];
        snprintf(msg, sizeof msg, "ttl_ms %lld is outside 1..%lld (7 days)",
                 (long long)r->ttl_ms, (long long)MAX_TTL_MS);
        code = taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
    }
    if (code == TASKSPAN_OK) {
        code = run(ts, task_id, item_body, true, r);
    }
    if (code != TASKSPAN_OK) {
        return code;
    }
    *out = r->outcome;
    if (out_item != NULL) {
        *out_item = r->item;
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_work_item_add(int *out_added,
                                     taskspan_work_item *out_item,
                                     taskspan *ts, const char *task_id,
                                     const char *work_item_id,
                                     const char *title, int64_t index,
                                     const char *explanation)
{
    item_req r = {.op = OP_ADD,
                  .item_id = work_item_id,
                  .title = title,
                  .index = index,
                  .explanation = explanation};
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    taskspan_code code = check_args(ts, task_id, work_item_id, true, NULL,
                                    false);
    if (code == TASKSPAN_OK) {
        code = run(ts, task_id, item_body, true, &r);
    }
    if (code != TASKSPAN_OK) {
        return code;
    }
    if (out_added != NULL) {
        *out_added = r.added ? 1 : 0;
    }
    if (out_item != NULL) {
        *out_item = r.item;
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_work_item_get(taskspan_work_item *out, taskspan *ts,
                                     const char *task_id,
                                     const char *work_item_id)
{
    item_req r = {.op = OP_GET, .item_id = work_item_id};
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL) {
        return null_out(ts, "out");
    }
    taskspan_code code = check_args(ts, task_id, work_item_id, true, NULL,
                                    false);
    if (code == TASKSPAN_OK) {
        code = run(ts, task_id, item_body, false, &r);
    }
    if (code == TASKSPAN_OK) {
        *out = r.item;
    }
    return code;
}

taskspan_code taskspan_lease_acquire(taskspan_lease_outcome *out,
                                     taskspan_work_item *out_item,
                                     taskspan *ts, const char *task_id,
                                     const char *work_item_id,
                                     const char *holder, int64_t ttl_ms,
                                     const char *explanation)
{
    item_req r = {.op = OP_ACQUIRE,
                  .item_id = work_item_id,
                  .holder = holder,
                  .ttl_ms = ttl_ms,
                  .explanation = explanation};
    return lease_call(out, out_item, ts, task_id, &r);
}

taskspan_code taskspan_lease_renew(taskspan_lease_outcome *out,
                                   taskspan_work_item *out_item, taskspan *ts,
                                   const char *task_id,
                                   const char *work_item_id,
                                   const char *holder, int64_t ttl_ms,
                                   const char *explanation)
{
    item_req r = {.op = OP_RENEW,
                  .item_id = work_item_id,
                  .holder = holder,
                  .ttl_ms = ttl_ms,
                  .explanation = explanation};
    return lease_call(out, out_item, ts, task_id, &r);
}

taskspan_code taskspan_lease_release(taskspan_lease_outcome *out,
                                     taskspan_work_item *out_item,
                                     taskspan *ts, const char *task_id,
                                     const char *work_item_id,
                                     const char *holder, const char *reason,
                                     const char *explanation)
{
    item_req r = {.op = OP_RELEASE,
                  .item_id = work_item_id,
                  .holder = holder,
                  .reason = reason,
                  .explanation = explanation};
    return lease_call(out, out_item, ts, task_id, &r);
}

taskspan_code taskspan_work_item_finish(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    const char *title, const char *const *files_changed,
    size_t n_files_changed, const char *explanation)
{
    item_req r = {.op = OP_FINISH,
                  .item_id = work_item_id,
                  .holder = holder,
                  .title = title,
                  .files = files_changed,
                  .n_files = n_files_changed,
                  .explanation = explanation};
    return lease_call(out, out_item, ts, task_id, &r);
}

taskspan_code taskspan_work_item_fail(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    const char *title, const char *error, const char *explanation)
{
    item_req r = {.op = OP_FAIL,
                  .item_id = work_item_id,
                  .holder = holder,
                  .title = title,
                  .error = error,
                  .explanation = explanation};
    return lease_call(out, out_item, ts, task_id, &r);
}

/* ---- checkpoints ---- */

/* Evidence strings as the JSON array the checkpoints table holds. */
static taskspan_code evidence_encode(char **out, const char *const *ev,
                                     size_t n, char *err, size_t errlen)
{
    json_t *arr = json_array();
    taskspan_code code = arr != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    for (size_t i = 0; code == TASKSPAN_OK && i < n; i++) {
        if (ev[i] == NULL) {
            code = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "evidence[%zu] is NULL", i);
        } else if (json_array_append_new(arr, json_string(ev[i])) != 0) {
            code = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "evidence[%zu] is not valid UTF-8", i);
        }
    }
    *out = code == TASKSPAN_OK ? json_dumps(arr, JSON_COMPACT) : NULL;
    if (code == TASKSPAN_OK && *out == NULL) {
        code = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    json_decref(arr);
    return code;
}

/* Copy a checkpoint row into one allocation the caller frees with
 * taskspan_checkpoint_free(). */
static taskspan_code checkpoint_make(taskspan_checkpoint **out,
                                     const taskspan__checkpoint_row *row)
{
    json_t *arr = json_loads(row->evidence_json, 0, NULL);
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    size_t bytes = sizeof **out + n * sizeof(char *);
    const char *type = row->checkpoint_type ? row->checkpoint_type : "";

    bytes += strlen(row->checkpoint_id) + strlen(type) + 2;
    bytes += row->work_item_id ? strlen(row->work_item_id) + 1 : 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        bytes += (s ? strlen(s) : 0) + 1;
    }
    taskspan_checkpoint *cp = calloc(1, bytes);
    if (cp == NULL) {
        json_decref(arr);
        return TASKSPAN_E_NOMEM;
    }
    const char **ev = (const char **)(cp + 1);
    char *p = (char *)(ev + n);
    cp->sequence_number = row->sequence_number;
    cp->state = row->verified > 0   ? TASKSPAN_CHECKPOINT_VERIFIED
                : row->verified < 0 ? TASKSPAN_CHECKPOINT_INVALID
                                    : TASKSPAN_CHECKPOINT_COMMITTED;
    cp->event_seq = row->event_seq;
    cp->committed_ns = row->committed_ns;
    cp->checkpoint_id = p;
    p = stpcpy(p, row->checkpoint_id) + 1;
    cp->checkpoint_type = p;
    p = stpcpy(p, type) + 1;
    if (row->work_item_id != NULL) {
        cp->work_item_id = p;
        p = stpcpy(p, row->work_item_id) + 1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        ev[i] = p;
        p = stpcpy(p, s ? s : "") + 1;
    }
    cp->evidence = ev;
    cp->n_evidence = n;
    json_decref(arr);
    *out = cp;
    return TASKSPAN_OK;
}

void taskspan_checkpoint_free(taskspan_checkpoint *cp)
{
    free(cp);
}

typedef struct checkpoint_req {
    int64_t seq; /* in: requested (0: next); out: assigned */
    const char *id, *type, *item_id, *explanation, *reason;
    const char *const *evidence;
    size_t n_evidence;
    int valid;
    taskspan_checkpoint *result; /* resume, last_verified */
} checkpoint_req;

/* Point the item at its newest checkpoint. */
static taskspan_code note_item_checkpoint(txn *t, const char *item_id,
                                          int64_t seq)
{
    taskspan_work_item it;
    bool found = false;
    taskspan_code code = t->ops->item_get(t->store, t->task_id, item_id, &it,
                                          &found, t->err, t->errlen);
    if (code == TASKSPAN_OK && !found) {
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOT_FOUND,
                              "task '%.64s' has no work item '%.64s'",
                              t->task_id, item_id);
    }
    if (code == TASKSPAN_OK) {
        it.last_checkpoint = seq;
        it.updated_ns = t->now_ns;
        code = t->ops->item_put(t->store, t->task_id, &it, NULL, 0, t->err,
                                t->errlen);
    }
    return code;
}

static taskspan_code commit_body(txn *t, void *ctx)
{
    checkpoint_req *r = ctx;
    char idbuf[32];
    int64_t max = 0;
    payload p = {.n = 0};
    taskspan__checkpoint_row row = {0};

    taskspan_code code = t->ops->checkpoint_max(t->store, t->task_id, &max,
                                                t->err, t->errlen);
    if (code == TASKSPAN_OK && r->seq != 0 && r->seq <= max) {
        code = taskspan__fail(t->err, t->errlen, TASKSPAN_E_INVALID_ARG,
                              "sequence_number %lld is not above the task's "
                              "last checkpoint %lld",
                              (long long)r->seq, (long long)max);
    }
    if (code != TASKSPAN_OK) {
        return code;
    }
    r->seq = r->seq != 0 ? r->seq : max + 1;
    snprintf(idbuf, sizeof idbuf, "ckpt-%lld", (long long)r->seq);
    row.sequence_number = r->seq;
    row.checkpoint_id = (char *)(r->id != NULL ? r->id : idbuf);
    row.checkpoint_type = (char *)r->type;
    row.work_item_id = (char *)r->item_id;
    row.committed_ns = t->now_ns;
    if (r->item_id != NULL) {
        code = note_item_checkpoint(t, r->item_id, r->seq);
    }
    add_str(&p, "checkpoint_id", row.checkpoint_id);
    add_str(&p, "checkpoint_type", r->type);
    add_int(&p, "sequence_number", r->seq);
    add_int(&p, "evidence_count", (int64_t)r->n_evidence);
    add_strs(&p, "evidence", r->evidence, r->n_evidence);
    add_str(&p, "explanation", r->explanation);
    if (code == TASKSPAN_OK) {
        code = record(t, "checkpoint_commit", NULL, &p, &row.event_seq);
    }
    if (code == TASKSPAN_OK) {
        code = evidence_encode(&row.evidence_json, r->evidence, r->n_evidence,
                               t->err, t->errlen);
    }
    if (code == TASKSPAN_OK) {
        code = t->ops->checkpoint_put(t->store, t->task_id, &row, t->err,
                                      t->errlen);
    }
    free(row.evidence_json);
    return code;
}

taskspan_code taskspan_checkpoint_commit(
    int64_t *out_sequence_number, taskspan *ts, const char *task_id,
    int64_t sequence_number, const char *checkpoint_id,
    const char *checkpoint_type, const char *work_item_id,
    const char *const *evidence, size_t n_evidence, const char *explanation)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    checkpoint_req r = {.seq = sequence_number,
                        .id = checkpoint_id,
                        .type = checkpoint_type,
                        .item_id = work_item_id,
                        .evidence = evidence,
                        .n_evidence = evidence != NULL ? n_evidence : 0,
                        .explanation = explanation};
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    taskspan_code code = check_args(ts, task_id, work_item_id,
                                    work_item_id != NULL, NULL, false);
    if (code != TASKSPAN_OK) {
        return code;
    }
    if (sequence_number < 0) {
        snprintf(msg, sizeof msg, "sequence_number is negative");
    } else if (checkpoint_id != NULL &&
               !text_ok("checkpoint_id", checkpoint_id, CHECKPOINT_ID_MAX, msg,
                        sizeof msg)) {
    } else if (r.n_evidence > TASKSPAN_MAX_ATTRS) {
        snprintf(msg, sizeof msg, "%zu evidence strings, more than %d",
                 r.n_evidence, TASKSPAN_MAX_ATTRS);
    }
    if (msg[0] != '\0') {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
    }
    code = run(ts, task_id, commit_body, true, &r);
    if (code == TASKSPAN_OK && out_sequence_number != NULL) {
        *out_sequence_number = r.seq;
    }
    return code;
}

static size_t evidence_count(const char *json)
{
    json_t *arr = json_loads(json, 0, NULL);
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    json_decref(arr);
    return n;
}

static taskspan_code verify_body(txn *t, void *ctx)
{
    checkpoint_req *r = ctx;
    taskspan__checkpoint_row row;
    bool found = false;
    payload p = {.n = 0};

    taskspan_code code = t->ops->checkpoint_get(
        t->store, t->task_id, r->seq, &row, &found, t->err, t->errlen);
    if (code == TASKSPAN_OK && !found) {
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOT_FOUND,
                              "task '%.64s' has no checkpoint %lld",
                              t->task_id, (long long)r->seq);
    }
    if (code == TASKSPAN_OK) {
        code = t->ops->checkpoint_set_verified(t->store, t->task_id, r->seq,
                                               r->valid ? 1 : -1, t->now_ns,
                                               t->err, t->errlen);
    }
    add_str(&p, "checkpoint_id", row.checkpoint_id);
    add_str(&p, "checkpoint_type", row.checkpoint_type);
    p.a[p.n++] = taskspan_attr_bool("verified", r->valid);
    if (r->valid) {
        add_int(&p, "evidence_count",
                found ? (int64_t)evidence_count(row.evidence_json) : 0);
    } else {
        add_str(&p, "reason", r->reason);
    }
    add_str(&p, "explanation", r->explanation);
    if (code == TASKSPAN_OK) {
        code = record(t,
                      r->valid ? "checkpoint_verified" : "checkpoint_invalid",
                      NULL, &p, NULL);
    }
    taskspan__checkpoint_row_free(&row);
    return code;
}

taskspan_code taskspan_checkpoint_verify(taskspan *ts, const char *task_id,
                                         int64_t sequence_number, int valid,
                                         const char *reason,
                                         const char *explanation)
{
    checkpoint_req r = {.seq = sequence_number,
                        .valid = valid != 0,
                        .reason = reason,
                        .explanation = explanation};
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    taskspan_code code = check_args(ts, task_id, NULL, false, NULL, false);
    if (code == TASKSPAN_OK && sequence_number < 1) {
        code = taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true,
                                        "sequence_number must be 1 or more");
    }
    if (code == TASKSPAN_OK) {
        code = run(ts, task_id, verify_body, true, &r);
    }
    return code;
}

/* The last verified checkpoint into r->result (NULL when none); with
 * r->explanation set (resume), also record where the task resumes. */
static taskspan_code last_verified_body(txn *t, void *ctx, bool resume)
{
    checkpoint_req *r = ctx;
    taskspan__checkpoint_row row;
    bool found = false;
    payload p = {.n = 0};

    taskspan_code code = t->ops->checkpoint_get(t->store, t->task_id, 0, &row,
                                                &found, t->err, t->errlen);
    if (code != TASKSPAN_OK || !found) {
        return code;
    }
    if (resume) {
        add_str(&p, "checkpoint_id", row.checkpoint_id);
        add_str(&p, "checkpoint_type", row.checkpoint_type);
        add_int(&p, "sequence_number", row.sequence_number);
        add_str(&p, "work_item_id", row.work_item_id);
        add_str(&p, "explanation", r->explanation);
        code = record(t, "recovery_resumed_from_checkpoint", NULL, &p, NULL);
    }
    if (code == TASKSPAN_OK) {
        code = checkpoint_make(&r->result, &row);
        if (code != TASKSPAN_OK) {
            taskspan__fail(t->err, t->errlen, code, "out of memory");
        }
    }
    taskspan__checkpoint_row_free(&row);
    return code;
}

static taskspan_code resume_body(txn *t, void *ctx)
{
    return last_verified_body(t, ctx, true);
}

static taskspan_code peek_body(txn *t, void *ctx)
{
    return last_verified_body(t, ctx, false);
}

static taskspan_code last_verified(taskspan_checkpoint **out, taskspan *ts,
                                   const char *task_id,
                                   const char *explanation, bool resume)
{
    checkpoint_req r = {.explanation = explanation};
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL) {
        return null_out(ts, "out");
    }
    *out = NULL;
    taskspan_code code = check_args(ts, task_id, NULL, false, NULL, false);
    if (code == TASKSPAN_OK) {
        code = run(ts, task_id, resume ? resume_body : peek_body, resume, &r);
    }
    if (code != TASKSPAN_OK) {
        taskspan_checkpoint_free(r.result);
        return code;
    }
    *out = r.result;
    return TASKSPAN_OK;
}

taskspan_code taskspan_checkpoint_last_verified(taskspan_checkpoint **out,
                                                taskspan *ts,
                                                const char *task_id)
{
    return last_verified(out, ts, task_id, NULL, false);
}

taskspan_code taskspan_recovery_resume(taskspan_checkpoint **out, taskspan *ts,
                                       const char *task_id,
                                       const char *explanation)
{
    return last_verified(out, ts, task_id, explanation, true);
}

/* ---- the recovery sweep ---- */

typedef struct sweep_req {
    int64_t max_retries;
    unsigned flags;
    const char *explanation;
    taskspan_recovery_report *report;
} sweep_req;

void taskspan_recovery_report_free(taskspan_recovery_report *report)
{
    if (report == NULL) {
        return;
    }
    for (size_t i = 0; i < report->n_items; i++) {
        free((void *)report->items[i].work_item_id);
        free((void *)report->items[i].previous_holder);
    }
    free((void *)report->items);
    free(report);
}

/* Whether a LEASED item's lease has run out: its time passed, or the
 * process that took it is gone (a dead runner never renews, so waiting out
 * its TTL would only delay the recovery). */
static bool lease_expired(const taskspan_work_item *it, int64_t now)
{
    if (now >= it->lease_expires_ns) {
        return true;
    }
    return it->holder_pid != (int64_t)getpid() &&
           taskspan__runner_liveness(it->holder_pid) == TASKSPAN__RUNNER_GONE;
}

/* Move the expired items of leased[] back to the queue (or to FAILED) and
 * list them in r->report, requeued first. */
static taskspan_code sweep_decide(txn *t, sweep_req *r,
                                  taskspan_work_item *leased, size_t n)
{
    taskspan_recovered_item *items = calloc(n ? n : 1, sizeof *items);
    /* Decided once, before any row changes: 0 live, 1 requeue, 2 fail. */
    unsigned char *verdict = calloc(n ? n : 1, 1);
    taskspan_recovery_report *rep = r->report;
    size_t k = 0;

    if (items == NULL || verdict == NULL) {
        free(items);
        free(verdict);
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOMEM,
                              "out of memory");
    }
    rep->items = items;
    for (size_t i = 0; i < n; i++) {
        if (lease_expired(&leased[i], t->now_ns)) {
            verdict[i] = r->max_retries < 0 ||
                                 leased[i].retry_count < r->max_retries
                             ? 1
                             : 2;
        }
    }
    taskspan_code code = TASKSPAN_OK;
    for (unsigned pass = 1; pass <= 2 && code == TASKSPAN_OK; pass++) {
        for (size_t i = 0; i < n && code == TASKSPAN_OK; i++) {
            taskspan_work_item *it = &leased[i];
            bool requeue = pass == 1;
            if (verdict[i] != pass) {
                continue;
            }
            taskspan_recovered_item *ri = &items[k++];
            rep->n_items = k;
            ri->work_item_id = strdup(it->id);
            ri->previous_holder = strdup(it->holder);
            ri->previous_pid = it->holder_pid;
            ri->requeued = requeue;
            if (ri->work_item_id == NULL || ri->previous_holder == NULL) {
                code = taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOMEM,
                                      "out of memory");
                break;
            }
            if (requeue) {
                it->retry_count++;
                rep->n_requeued++;
            } else {
                rep->n_failed++;
            }
            ri->retry_count = it->retry_count;
            clear_lease(it,
                        requeue ? TASKSPAN_ITEM_QUEUED : TASKSPAN_ITEM_FAILED);
            it->updated_ns = t->now_ns;
            code = t->ops->item_put(t->store, t->task_id, it, NULL, 0, t->err,
                                    t->errlen);
        }
    }
    free(verdict);
    return code;
}

/* recovery_detected, then a recovery_requeued per requeued item (which
 * close the sweep span), then work_item_failed per item given up on. */
static taskspan_code sweep_record(txn *t, sweep_req *r)
{
    const taskspan_recovery_report *rep = r->report;
    const char **ids = calloc(rep->n_items ? rep->n_items : 1, sizeof *ids);
    payload p = {.n = 0};
    taskspan_code code = TASKSPAN_OK;

    if (ids == NULL) {
        return taskspan__fail(t->err, t->errlen, TASKSPAN_E_NOMEM,
                              "out of memory");
    }
    for (size_t i = 0; i < rep->n_items; i++) {
        ids[i] = rep->items[i].work_item_id;
    }
    add_int(&p, "expired_count", (int64_t)rep->n_requeued);
    add_strs(&p, "work_item_ids", ids, rep->n_requeued);
    if (rep->n_failed > 0) {
        add_int(&p, "abandoned_count", (int64_t)rep->n_failed);
        add_strs(&p, "abandoned_work_item_ids", ids + rep->n_requeued,
                 rep->n_failed);
    }
    add_str(&p, "explanation", r->explanation);
    code = record(t, "recovery_detected", NULL, &p, &r->report->detected_seq);
    for (size_t i = 0; code == TASKSPAN_OK && i < rep->n_items; i++) {
        const taskspan_recovered_item *ri = &rep->items[i];
        char error[96];
        p.n = 0;
        add_str(&p, "work_item_id", ri->work_item_id);
        if (ri->requeued) {
            add_str(&p, "previous_holder", ri->previous_holder);
            add_int(&p, "retry_count", ri->retry_count);
            add_int(&p, "max_retries", r->max_retries);
            code = record(t, "recovery_requeued", NULL, &p, NULL);
            continue;
        }
        snprintf(error, sizeof error,
                 "lease expired after %lld retries (max_retries %lld)",
                 (long long)ri->retry_count, (long long)r->max_retries);
        add_str(&p, "error", error);
        add_str(&p, "explanation", "given up by the recovery sweep");
        code = record(t, "work_item_failed", ri->work_item_id, &p, NULL);
    }
    free(ids);
    return code;
}

/* A sweep is the recovery of its task: if the task's current incarnation
 * has no runner_exit and its runner's process is gone (a supervisor
 * sweeping before any new runner_spawn), close that incarnation after its
 * last event, as the next runner_spawn or the exporter would. The sweep's
 * own events then start new spans instead of stretching the dead
 * runner's main span to the time of the sweep. */
static taskspan_code close_dead_incarnation(txn *t)
{
    taskspan__crash_candidate *c = NULL;
    size_t n = 0;
    bool closed = false;
    taskspan_code code = t->ops->crash_candidates(
        t->store, INT64_MAX, 1, t->task_id, &c, &n, t->err, t->errlen);
    if (code == TASKSPAN_OK && n == 1 &&
        c[0].runner_pid != (int64_t)getpid() &&
        taskspan__runner_liveness(c[0].runner_pid) == TASKSPAN__RUNNER_GONE) {
        code = t->ops->crash_mark(t->store, &c[0], t->now_ns, &closed, t->err,
                                  t->errlen);
    }
    taskspan__crash_candidates_free(c, n);
    return code;
}

static taskspan_code sweep_body(txn *t, void *ctx)
{
    sweep_req *r = ctx;
    taskspan_work_item *leased = NULL;
    size_t n = 0;

    taskspan_code code = close_dead_incarnation(t);
    if (code == TASKSPAN_OK) {
        code = t->ops->items_leased(t->store, t->task_id, &leased, &n, t->err,
                                    t->errlen);
    }
    if (code == TASKSPAN_OK) {
        code = sweep_decide(t, r, leased, n);
    }
    if (code == TASKSPAN_OK &&
        (r->report->n_items > 0 || (r->flags & TASKSPAN_SWEEP_RECORD_EMPTY))) {
        code = sweep_record(t, r);
    }
    free(leased);
    return code;
}

taskspan_code taskspan_recovery_sweep(taskspan_recovery_report **out,
                                      taskspan *ts, const char *task_id,
                                      int64_t max_retries, unsigned flags,
                                      const char *explanation)
{
    sweep_req r = {.max_retries = max_retries < 0 ? -1 : max_retries,
                   .flags = flags,
                   .explanation = explanation};
    if (out != NULL) {
        *out = NULL;
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    taskspan_code code = check_args(ts, task_id, NULL, false, NULL, false);
    if (code == TASKSPAN_OK &&
        (flags & ~(unsigned)TASKSPAN_SWEEP_RECORD_EMPTY)) {
        code = taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true,
                                        "unknown sweep flags");
    }
    if (code != TASKSPAN_OK) {
        return code;
    }
    r.report = calloc(1, sizeof *r.report);
    if (r.report == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_NOMEM, true,
                                        "out of memory");
    }
    code = run(ts, task_id, sweep_body, true, &r);
    if (code != TASKSPAN_OK || out == NULL) {
        taskspan_recovery_report_free(r.report);
        return code;
    }
    *out = r.report;
    return TASKSPAN_OK;
}
