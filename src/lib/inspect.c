/*
 * inspect.c -- reading a buffer as a whole: its tasks and their states, a
 * task's events, the delivery backlog; and gc, which prunes what was
 * delivered long ago.
 *
 * Each call opens its own connection to the recorder's buffer file and
 * closes it before it returns, so it never waits on the recorder's mutex
 * and an emit never waits on it (beyond SQLite's own write lock, which gc
 * takes one short batch at a time).
 *
 * A task's state comes from its events: whether the latest incarnation's
 * runner said runner_exit, its exit_reason, and the span model's statuses;
 * for a runner that said nothing, whether its process is still alive
 * (runner_liveness.c). The exact rules are in taskspan.h and docs/cli.md.
 */
#include "inspect.h"

#include "config.h"
#include "runner_liveness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* gc deletes at most this many tasks, or (beyond the first task) this many
 * events, per write transaction: a runner's emit waits for one batch at
 * most. */
#define GC_BATCH_TASKS 64
#define GC_BATCH_EVENTS 5000

struct taskspan_task_list {
    taskspan_task_info *tasks;
    taskspan__task_row *rows; /* own the strings tasks point at */
    size_t n;
};

struct taskspan_event_list {
    taskspan_event_row *rows;
    size_t n;
    taskspan__task_events te; /* owns the strings rows point at */
};

const char *taskspan_task_state_name(taskspan_task_state state)
{
    switch (state) {
    case TASKSPAN_TASK_RUNNING:
        return "running";
    case TASKSPAN_TASK_FINISHED:
        return "finished";
    case TASKSPAN_TASK_FAILED:
        return "failed";
    case TASKSPAN_TASK_CRASHED:
        return "crashed";
    case TASKSPAN_TASK_PRUNED:
        return "pruned";
    }
    return "unknown";
}

/* ---- connections ---------------------------------------------------------*/

/* A connection of our own to ts's buffer, configured as the recorder's
 * (busy timeout, sync mode); read-only unless write. Never creates. */
static taskspan_code open_store(void **out, taskspan *ts, bool write,
                                char *err, size_t errlen)
{
    taskspan__store_config cfg;
    /* The recorder's own journaled emits first (the journal mode). */
    taskspan__recorder_drain(ts);
    taskspan__recorder_store_config(ts, &cfg);
    *out = NULL;
    if (write && (cfg.flags & TASKSPAN_OPEN_READONLY)) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "the recorder was opened read-only; gc needs "
                              "to write");
    }
    cfg.flags = write ? TASKSPAN_OPEN_NO_CREATE : TASKSPAN_OPEN_READONLY;
    return taskspan__store_sqlite.open(out, taskspan_db_path(ts), &cfg, err,
                                       errlen);
}

static void close_store(void *store)
{
    if (store != NULL) {
        taskspan__store_sqlite.close(store);
    }
}

/* ---- task states -------------------------------------------------------- */

static bool success_reason(const char *reason)
{
    static const char *const ok[] = {"done",      "success",  "succeeded",
                                     "completed", "finished", "ok"};
    if (reason == NULL) {
        return true;
    }
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (strcmp(reason, ok[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether span i is the latest instance of its key in its incarnation
 * (spans come in the order of their first event). */
static bool latest_instance(const taskspan_spans *spans, size_t i)
{
    const taskspan_span *s = taskspan_spans_get(spans, i);
    size_t n = taskspan_spans_count(spans);
    for (size_t j = i + 1; j < n; j++) {
        const taskspan_span *t = taskspan_spans_get(spans, j);
        if (t->incarnation == s->incarnation &&
            strcmp(t->name, s->name) == 0) {
            return false;
        }
    }
    return true;
}

/* The state of a task whose latest incarnation ended with runner_exit, or
 * that never had a runner (incarnation 0), from its spans. */
static taskspan_task_state state_from_spans(const taskspan__task_row *r,
                                            const taskspan_spans *spans)
{
    int64_t inc = r->latest_incarnation;
    size_t n = taskspan_spans_count(spans);
    bool failed = inc > 0 && !success_reason(r->exit_reason);

    for (size_t i = 0; i < n; i++) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        if (s->incarnation != inc) {
            continue;
        }
        if (inc == 0 && s->is_open) {
            return TASKSPAN_TASK_RUNNING; /* no runner said it ended */
        }
        if (!s->is_open && s->status == TASKSPAN_STATUS_ERROR &&
            latest_instance(spans, i)) {
            failed = true;
        }
    }
    return failed ? TASKSPAN_TASK_FAILED : TASKSPAN_TASK_FINISHED;
}

/* The task's spans, built from its events as taskspan_task_spans() does. */
static taskspan_code load_spans(void *store, const char *task_id,
                                taskspan_spans **out, char *err, size_t errlen)
{
    taskspan__task_events te;
    taskspan_code rc = taskspan__store_sqlite.load_task(store, task_id, &te,
                                                        err, errlen);
    *out = NULL;
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    rc = taskspan__spans_build(out, task_id, &te);
    taskspan__task_events_free(&te);
    if (rc != TASKSPAN_OK) {
        taskspan__fail(err, errlen, rc, "building the spans of task '%s'",
                       task_id);
    }
    return rc;
}

/* The state of task r. *spans receives its spans when they were built
 * (caller frees), else NULL. A task whose events went away meanwhile (gc in
 * another process) is pruned. */
static taskspan_code classify(void *store, const taskspan__task_row *r,
                              taskspan_task_state *out, taskspan_spans **spans,
                              char *err, size_t errlen)
{
    *spans = NULL;
    if (r->n_events == 0) {
        *out = TASKSPAN_TASK_PRUNED;
        return TASKSPAN_OK;
    }
    if (r->latest_incarnation > 0 && !r->exited) {
        *out = taskspan__runner_liveness(r->runner_pid) ==
                       TASKSPAN__RUNNER_GONE
                   ? TASKSPAN_TASK_CRASHED
                   : TASKSPAN_TASK_RUNNING;
        return TASKSPAN_OK;
    }
    taskspan_code rc = load_spans(store, r->task_id, spans, err, errlen);
    if (rc == TASKSPAN_E_NOT_FOUND) {
        *out = TASKSPAN_TASK_PRUNED;
        return TASKSPAN_OK;
    }
    if (rc == TASKSPAN_OK) {
        *out = state_from_spans(r, *spans);
    }
    return rc;
}

/* ---- list the tasks ------------------------------------------------------ */

void taskspan_task_list_free(taskspan_task_list *list)
{
    if (list == NULL) {
        return;
    }
    taskspan__task_rows_free(list->rows, list->n);
    free(list->tasks);
    free(list);
}

size_t taskspan_task_list_count(const taskspan_task_list *list)
{
    return list != NULL ? list->n : 0;
}

const taskspan_task_info *taskspan_task_list_get(
    const taskspan_task_list *list, size_t i)
{
    return list != NULL && i < list->n ? &list->tasks[i] : NULL;
}

static taskspan_code list_tasks(taskspan_task_list *l, void *store, char *err,
                                size_t errlen)
{
    taskspan_code rc = taskspan__inspect_sqlite.tasks(store, &l->rows, &l->n,
                                                      err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    l->tasks = calloc(l->n ? l->n : 1, sizeof *l->tasks);
    if (l->tasks == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == TASKSPAN_OK && i < l->n; i++) {
        const taskspan__task_row *r = &l->rows[i];
        taskspan_task_info *t = &l->tasks[i];
        taskspan_spans *spans = NULL;
        rc = classify(store, r, &t->state, &spans, err, errlen);
        taskspan_spans_free(spans);
        t->task_id = r->task_id;
        t->n_events = r->n_events;
        t->last_seq = r->last_seq;
        t->incarnations = r->incarnations;
        t->first_ns = r->first_ns;
        t->last_ns = r->last_ns;
        t->runner_pid = r->runner_pid;
        t->exit_reason = r->exit_reason;
        t->spans_delivered = r->delivered;
        t->spans_pending = r->pending;
        t->spans_rejected = r->rejected;
    }
    return rc;
}

taskspan_code taskspan_list_tasks(taskspan_task_list **out, taskspan *ts)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    void *store = NULL;

    if (out != NULL) {
        *out = NULL;
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, false,
                                        "out is NULL");
    }
    taskspan_task_list *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_NOMEM, false,
                                        "out of memory");
    }
    taskspan_code rc = open_store(&store, ts, false, msg, sizeof msg);
    if (rc == TASKSPAN_OK) {
        rc = list_tasks(l, store, msg, sizeof msg);
    }
    close_store(store);
    if (rc != TASKSPAN_OK) {
        taskspan_task_list_free(l);
        return taskspan__record_failure(ts, rc, false, msg);
    }
    *out = l;
    return TASKSPAN_OK;
}

/* ---- a task's events ----------------------------------------------------- */

size_t taskspan_event_list_count(const taskspan_event_list *list)
{
    return list != NULL ? list->n : 0;
}

const taskspan_event_row *taskspan_event_list_get(
    const taskspan_event_list *list, size_t i)
{
    return list != NULL && i < list->n ? &list->rows[i] : NULL;
}

void taskspan_event_list_free(taskspan_event_list *list)
{
    if (list == NULL) {
        return;
    }
    taskspan__task_events_free(&list->te);
    free(list->rows);
    free(list);
}

/* After NOT_FOUND: say so more precisely when gc pruned the task. */
static void explain_missing(void *store, const char *task_id, char *err,
                            size_t errlen)
{
    char ignored[TASKSPAN__MSG_SIZE];
    int64_t last_seq = 0;
    if (taskspan__inspect_sqlite.last_seq(store, task_id, &last_seq, ignored,
                                          sizeof ignored) == TASKSPAN_OK) {
        taskspan__fail(err, errlen, TASKSPAN_E_NOT_FOUND,
                       "task '%s' was pruned by gc: its %lld events were "
                       "delivered and deleted",
                       task_id, (long long)last_seq);
    }
}

static taskspan_code read_events(taskspan_event_list *l, void *store,
                                 const char *task_id, char *err, size_t errlen)
{
    taskspan_code rc = taskspan__store_sqlite.load_task(store, task_id, &l->te,
                                                        err, errlen);
    if (rc == TASKSPAN_E_NOT_FOUND) {
        explain_missing(store, task_id, err, errlen);
    }
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    l->n = l->te.n_events;
    l->rows = calloc(l->n ? l->n : 1, sizeof *l->rows);
    if (l->rows == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < l->n; i++) {
        const taskspan__stored_event *e = &l->te.events[i];
        l->rows[i] = (taskspan_event_row){
            .seq = e->seq,
            .ts_ns = e->ts_ns,
            .event_type = e->event_type,
            .actor = e->actor,
            .span_key = e->span_key,
            .parent_span_key = e->parent_span_key,
            .phase = e->phase,
            .incarnation = e->incarnation,
            .payload_json = e->payload_json != NULL ? e->payload_json : "{}",
        };
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_task_events(taskspan_event_list **out, taskspan *ts,
                                   const char *task_id)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    void *store = NULL;

    if (out != NULL) {
        *out = NULL;
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL || task_id == NULL || task_id[0] == '\0') {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, false,
                                        out == NULL ? "out is NULL"
                                                    : "task_id is empty");
    }
    taskspan_event_list *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_NOMEM, false,
                                        "out of memory");
    }
    taskspan_code rc = open_store(&store, ts, false, msg, sizeof msg);
    if (rc == TASKSPAN_OK) {
        rc = read_events(l, store, task_id, msg, sizeof msg);
    }
    close_store(store);
    if (rc != TASKSPAN_OK) {
        taskspan_event_list_free(l);
        return taskspan__record_failure(ts, rc, false, msg);
    }
    *out = l;
    return TASKSPAN_OK;
}

/* ---- buffer status ------------------------------------------------------- */

static uint64_t file_size(const char *path, const char *suffix)
{
    char p[4096];
    struct stat sb;
    if ((size_t)snprintf(p, sizeof p, "%s%s", path, suffix) >= sizeof p ||
        stat(p, &sb) != 0) {
        return 0;
    }
    return (uint64_t)sb.st_size;
}

static const char *env_lookup(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

/* The endpoint an exporter of this process uses: the recorder's, else (a
 * read-only recorder has no export configuration) the environment's. */
static void endpoint_of(taskspan *ts, char *out, size_t size)
{
    taskspan_export_stats es;
    taskspan__export_config cfg;
    char ignored[TASKSPAN__MSG_SIZE];

    out[0] = '\0';
    if (taskspan_get_export_stats(&es, ts) == TASKSPAN_OK &&
        es.endpoint[0] != '\0') {
        snprintf(out, size, "%s", es.endpoint);
        return;
    }
    if (taskspan__config_load(&cfg, NULL, env_lookup, NULL, ignored,
                              sizeof ignored) == TASKSPAN_OK) {
        snprintf(out, size, "%s", cfg.endpoint != NULL ? cfg.endpoint : "");
        taskspan__config_free(&cfg);
    }
}

/* The end time of the oldest pending task's first span not settled: the
 * one at its export_done in close order (0 when it cannot be built). */
static int64_t first_unsettled_end(void *store,
                                   const taskspan__buffer_counts *c)
{
    taskspan_spans *spans = NULL;
    size_t *order = NULL, n = 0;
    int64_t end = 0;
    char ignored[TASKSPAN__MSG_SIZE];
    if (load_spans(store, c->oldest_pending_task, &spans, ignored,
                   sizeof ignored) == TASKSPAN_OK &&
        taskspan__spans_close_order(spans, &order, &n) == TASKSPAN_OK &&
        c->oldest_pending_done >= 0 && (uint64_t)c->oldest_pending_done < n) {
        end = taskspan_spans_get(spans, order[c->oldest_pending_done])->end_ns;
    }
    free(order);
    taskspan_spans_free(spans);
    return end;
}

taskspan_code taskspan_get_buffer_status(taskspan_buffer_status *out,
                                         taskspan *ts)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__buffer_counts c;
    void *store = NULL;

    if (out == NULL || ts == NULL) {
        return ts != NULL
                   ? taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG,
                                              false, "out is NULL")
                   : TASKSPAN_E_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    out->path = taskspan_db_path(ts);
    taskspan_code rc = open_store(&store, ts, false, msg, sizeof msg);
    if (rc == TASKSPAN_OK) {
        rc = taskspan__inspect_sqlite.counts(store, &c, msg, sizeof msg);
    }
    if (rc == TASKSPAN_OK && c.oldest_pending_task[0] != '\0') {
        c.oldest_pending_ns = first_unsettled_end(store, &c);
    }
    close_store(store);
    if (rc != TASKSPAN_OK) {
        return taskspan__record_failure(ts, rc, false, msg);
    }
    /* Sizes after the connection closed: closing does not checkpoint a
     * read-only connection, so they are what the writers left. */
    out->db_bytes = file_size(out->path, "");
    out->wal_bytes = file_size(out->path, "-wal");
    out->schema_version = c.schema_version;
    out->tasks = c.tasks;
    out->events = c.events;
    out->spans_pending = c.pending;
    out->spans_delivered = c.delivered;
    out->spans_rejected = c.rejected;
    snprintf(out->last_error, sizeof out->last_error, "%s", c.last_error);
    out->last_error_ns = c.last_error_ns;
    out->oldest_pending_ns = c.oldest_pending_ns;
    snprintf(out->oldest_pending_task, sizeof out->oldest_pending_task, "%s",
             c.oldest_pending_task);
    endpoint_of(ts, out->endpoint, sizeof out->endpoint);
    return TASKSPAN_OK;
}

/* ---- gc ------------------------------------------------------------------ */

/* Whether a row of rows says the span is settled. */
static bool row_settled(const taskspan_span *s,
                        const taskspan__span_state_row *rows, size_t n_rows)
{
    for (size_t k = 0; k < n_rows; k++) {
        if (memcmp(rows[k].trace_id, s->trace_id, 16) == 0 &&
            memcmp(rows[k].span_id, s->span_id, 8) == 0) {
            return rows[k].state != TASKSPAN__SPAN_PENDING;
        }
    }
    return false;
}

/* Whether every span is closed and settled: among the first done in close
 * order, or with a row (rejected, or delivered by an older version). */
static taskspan_code all_settled(const taskspan_spans *spans, int64_t done,
                                 const taskspan__span_state_row *rows,
                                 size_t n_rows, bool *out)
{
    size_t *order = NULL, n_closed = 0;
    size_t n = taskspan_spans_count(spans);

    *out = false;
    taskspan_code rc = taskspan__spans_close_order(spans, &order, &n_closed);
    if (rc != TASKSPAN_OK || n_closed != n) {
        free(order);
        return rc; /* a span is open */
    }
    bool settled = true;
    for (size_t p = done > 0 ? (size_t)done : 0; settled && p < n_closed;
         p++) {
        settled = row_settled(taskspan_spans_get(spans, order[p]), rows,
                              n_rows);
    }
    free(order);
    *out = settled;
    return TASKSPAN_OK;
}

/* Whether gc may prune task r: not running, nothing pending, every span
 * closed and settled. */
static taskspan_code prunable(void *store, const taskspan__task_row *r,
                              bool *out, char *err, size_t errlen)
{
    taskspan_task_state state;
    taskspan_spans *spans = NULL;
    taskspan__span_state_row *rows = NULL;
    size_t n_rows = 0;

    *out = false;
    taskspan_code rc = classify(store, r, &state, &spans, err, errlen);
    if (rc != TASKSPAN_OK || state == TASKSPAN_TASK_RUNNING ||
        state == TASKSPAN_TASK_PRUNED || r->pending > 0) {
        taskspan_spans_free(spans);
        return rc;
    }
    if (spans == NULL) { /* crashed: classify needed no spans */
        rc = load_spans(store, r->task_id, &spans, err, errlen);
    }
    if (rc == TASKSPAN_OK) {
        rc = taskspan__inspect_sqlite.span_states(store, r->task_id, &rows,
                                                  &n_rows, err, errlen);
    }
    if (rc == TASKSPAN_OK) {
        rc = all_settled(spans, r->export_done, rows, n_rows, out);
    } else if (rc == TASKSPAN_E_NOT_FOUND) {
        rc = TASKSPAN_OK; /* pruned meanwhile */
    }
    free(rows);
    taskspan_spans_free(spans);
    return rc;
}

static taskspan_code gc_run(void *store, int64_t cutoff_ns,
                            taskspan__gc_counts *counts, uint64_t *kept,
                            char *err, size_t errlen)
{
    taskspan__task_row *rows = NULL;
    size_t n = 0, k = 0;
    int64_t batch_events = 0;
    taskspan__gc_item batch[GC_BATCH_TASKS];

    taskspan_code rc = taskspan__inspect_sqlite.tasks(store, &rows, &n, err,
                                                      errlen);
    for (size_t i = 0; rc == TASKSPAN_OK && i < n; i++) {
        const taskspan__task_row *r = &rows[i];
        bool ok = false;
        if (r->n_events == 0) {
            /* Pruned already. An exporter that was building the task's
             * spans while it was pruned may have recorded them again: once
             * they are settled, their rows go too. */
            ok = r->pending == 0 && r->delivered + r->rejected > 0;
        } else if (r->last_ns >= cutoff_ns) {
            continue; /* recent */
        } else {
            rc = prunable(store, r, &ok, err, errlen);
            if (rc != TASKSPAN_OK || !ok) {
                *kept += rc == TASKSPAN_OK;
                continue;
            }
        }
        if (!ok) {
            continue;
        }
        batch[k++] = (taskspan__gc_item){r->task_id, r->last_seq};
        batch_events += r->n_events;
        if (k == GC_BATCH_TASKS || batch_events >= GC_BATCH_EVENTS) {
            rc = taskspan__inspect_sqlite.prune(store, batch, k, counts, err,
                                                errlen);
            k = 0;
            batch_events = 0;
        }
    }
    if (rc == TASKSPAN_OK && k > 0) {
        rc = taskspan__inspect_sqlite.prune(store, batch, k, counts, err,
                                            errlen);
    }
    taskspan__task_rows_free(rows, n);
    return rc;
}

taskspan_code taskspan__gc_store(void *store, int64_t cutoff_ns,
                                 taskspan__gc_counts *counts, char *err,
                                 size_t errlen)
{
    uint64_t kept = 0;
    return gc_run(store, cutoff_ns, counts, &kept, err, errlen);
}

taskspan_code taskspan_gc(taskspan_gc_report *out, taskspan *ts,
                          int64_t older_than_seconds)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__gc_counts counts = {0};
    taskspan__buffer_counts after;
    uint64_t kept = 0;
    void *store = NULL;

    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (older_than_seconds < 0) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, false,
                                        "older_than_seconds is negative");
    }
    const char *path = taskspan_db_path(ts);
    uint64_t before = file_size(path, "") + file_size(path, "-wal");
    int64_t now = taskspan__now_ns();
    /* A retention longer than the epoch keeps everything. */
    int64_t cutoff = older_than_seconds > now / 1000000000
                         ? 0
                         : now - older_than_seconds * 1000000000;

    taskspan_code rc = open_store(&store, ts, true, msg, sizeof msg);
    if (rc == TASKSPAN_OK) {
        rc = gc_run(store, cutoff, &counts, &kept, msg, sizeof msg);
        taskspan__inspect_sqlite.checkpoint(store);
    }
    char ignored[TASKSPAN__MSG_SIZE];
    bool have_after = store != NULL && taskspan__inspect_sqlite.counts(
                                           store, &after, ignored,
                                           sizeof ignored) == TASKSPAN_OK;
    close_store(store);
    if (out != NULL) {
        out->tasks_pruned = counts.tasks;
        out->tasks_kept = kept + counts.skipped;
        out->events_deleted = counts.events;
        out->spans_deleted = counts.spans;
        out->bytes_before = before;
        out->bytes_after = file_size(path, "") + file_size(path, "-wal");
        out->bytes_free = have_after ? after.page_size * after.free_pages : 0;
    }
    if (rc != TASKSPAN_OK) {
        return taskspan__record_failure(ts, rc, false, msg);
    }
    return TASKSPAN_OK;
}
