/*
 * exporter.c -- the export loop: closed spans from the buffer to an OTLP
 * collector, marked delivered only after the request that carried them got
 * a 2xx.
 *
 * DESIGN
 *   Queue: there is no in-memory queue. The buffer is the queue: each
 *     task's row holds its export progress (schema 8, store_export.c):
 *     how many of its closed spans, in close order, are settled
 *     (export_done), how many an exporter found closed (export_closed),
 *     and a lease. A closed span's encoding is a pure function of its
 *     task's events and crash marks, so it is encoded whenever it must be
 *     sent, byte for byte the same, and nothing is written per span (but
 *     a row for a rejected one). Nothing is lost when the process dies,
 *     and several exporters can share one buffer.
 *   Passes: a pass reads the tasks marked live with events past the last
 *     one examined, or, when it may send, with closed spans not settled
 *     (store_export.c); builds their spans (spanmodel.c) and encodes the
 *     unsettled ones (export_reader.c, on a second thread), a request's
 *     worth at a time. Before a request goes, its tasks are leased in one
 *     transaction, on the condition that their export_done is still what
 *     was read; after a 2xx, each task's export_done moves past its spans
 *     in one transaction. At the end the tasks read are marked examined
 *     (export_seq, export_closed) and the leases end. At most once a
 *     second a pass also looks for incarnations whose runner died without
 *     runner_exit (its pid gone, nothing recorded for crash_grace_ms),
 *     marks them crashed in the buffer and sends their now closed spans: a
 *     killed runner's spans reach the collector without waiting for the
 *     task's next runner.
 *   Answers: 2xx -> delivered (partial_success counted); 429/502/503/504,
 *     connection errors, timeouts -> pending, the request's tasks not
 *     sendable by any exporter before the backoff delay (Retry-After when
 *     given, else exponential with jitter), and the rest of the pass only
 *     examines the tasks with new events; 413 -> halve the batch and go
 *     again at once; any other answer -> rejected, kept in the buffer with
 *     the reason. The unsettled spans of a task whose events are gone are
 *     given up and counted rejected.
 *   Ordering: a task's spans go out in the order they closed; tasks in the
 *     order of the live index.
 *   Worker: with a background thread, a pass runs every schedule delay,
 *     when woken (enough spans closed, a flush) and at close. Without one,
 *     taskspan_flush() runs the passes in the caller's thread.
 *   Flush: a pass, then passes until every task that had events not
 *     examined or spans not settled after it is examined that far and
 *     settled, or the deadline. Backoff is honoured, so a flush against a
 *     collector that is down waits and then times out.
 *   Shutdown: the closing thread sets stop and waits up to drain_ms for the
 *     worker's last flush; then it sets abort, which ends any request in
 *     flight within about a second (curl's progress callback), and joins.
 *     What is not delivered stays pending in the buffer for the next
 *     exporter: close never deletes anything and never hangs.
 */
#include "exporter.h"

#include "body_blocks.h"
#include "encode_otlp.h"
#include "export_reader.h"
#include "inspect.h"
#include "recovery.h"
#include "runner_liveness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_INITIAL_MS 1000
#define BACKOFF_MAX_MS 30000
#define RETRY_AFTER_MAX_MS                                                    \
    (15 * 60 * 1000) /* a huge value: keep the data,
                                                wait at most 15 min */
#define LEASE_MARGIN_MS 10000
#define CONTENDED_WAIT_MS 100 /* another exporter holds the leases */
#define CRASH_SCAN_INTERVAL_MS 1000
#define CRASH_SCAN_MAX 256 /* candidates looked at per scan */

typedef struct cached_resource {
    int64_t id;
    uint8_t *bytes;
    size_t len;
} cached_resource;

struct taskspan__exporter {
    const taskspan__export_config *cfg;
    const taskspan__store_ops *store_ops;
    void *store;
    /* The read-ahead's own connection (export_reader.h), opened at the
     * first pass with two tasks or more; NULL if it could not be. */
    char *db_path;
    taskspan__store_config store_cfg;
    void *reader_store;
    bool reader_tried;
    const taskspan__transport_ops *transport_ops;
    void *transport;
    char owner[96];
    char last_failure[TASKSPAN__MSG_SIZE]; /* why the last request failed */

    /* Resources by id; entry 0 is this process's own (id 0). */
    cached_resource *resources;
    size_t n_resources;

    /* Monotonic time of the next crashed-incarnation scan (0: now). */
    int64_t next_crash_scan_ns;
    int64_t next_retention_ns; /* monotonic: when to prune again */

    /* Backoff after retryable failures. */
    unsigned failures;
    int64_t next_attempt_ns;
    size_t batch_cap; /* lowered after a 413 */
    unsigned rand_state;

    /* Worker thread and the requests it serves. */
    bool background;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_bool stopping; /* stop, readable without the lock */
    bool finished;
    bool wake;
    atomic_bool abort;
    uint64_t flush_requested; /* generation of the newest flush request */
    uint64_t flush_done;      /* generation the worker has completed */
    int64_t flush_deadline_ns;
    taskspan_code flush_result;
    char flush_msg[TASKSPAN__MSG_SIZE];
    int drain_ms;

    atomic_uint_fast64_t spans_delivered, spans_rejected, requests_ok,
        requests_failed, partial_rejected;
};

/* ---- time and waiting ---------------------------------------------------- */

/* Wait on ex->cond (ex->lock held) until deadline (monotonic ns). The
 * condition uses CLOCK_MONOTONIC, so wall-clock jumps do not matter. */
static void wait_until(taskspan__exporter *ex, int64_t deadline_ns)
{
    struct timespec t = {deadline_ns / 1000000000, deadline_ns % 1000000000};
    pthread_cond_timedwait(&ex->cond, &ex->lock, &t);
}

/* Sleep until deadline unless stopped or woken; ex->lock not held. */
static void nap(taskspan__exporter *ex, int64_t deadline_ns)
{
    pthread_mutex_lock(&ex->lock);
    if (!ex->stop && !atomic_load(&ex->abort)) {
        wait_until(ex, deadline_ns);
    }
    pthread_mutex_unlock(&ex->lock);
}

/* ---- resources ----------------------------------------------------------- */

static taskspan_code encode_attrs_json(uint8_t **out, size_t *len,
                                       const char *json)
{
    taskspan__arena arena = {0};
    taskspan__attr_list list = {0};
    taskspan_code rc = taskspan__payload_decode(&list, &arena, json);
    if (rc == TASKSPAN_OK) {
        rc = taskspan__encode_resource(out, len, list.attrs, list.n);
    }
    taskspan__attr_list_free(&list);
    taskspan__arena_free(&arena);
    return rc;
}

/* The Resource bytes for resource id (0: this process's own). */
static taskspan_code resource_bytes(taskspan__exporter *ex, int64_t id,
                                    const cached_resource **out, char *err,
                                    size_t errlen)
{
    char *json = NULL;
    cached_resource r = {.id = id};

    for (size_t i = 0; i < ex->n_resources; i++) {
        if (ex->resources[i].id == id) {
            *out = &ex->resources[i];
            return TASKSPAN_OK;
        }
    }
    taskspan_code rc = ex->store_ops->resource_get(ex->store, id, &json, err,
                                                   errlen);
    if (rc == TASKSPAN_E_NOT_FOUND) {
        *out = &ex->resources[0]; /* pruned by hand: use our own */
        return TASKSPAN_OK;
    }
    if (rc == TASKSPAN_OK) {
        rc = encode_attrs_json(&r.bytes, &r.len, json);
    }
    free(json);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    cached_resource *p = realloc(ex->resources,
                                 (ex->n_resources + 1) * sizeof *p);
    if (p == NULL) {
        free(r.bytes);
        return TASKSPAN_E_NOMEM;
    }
    ex->resources = p;
    ex->resources[ex->n_resources] = r;
    *out = &ex->resources[ex->n_resources++];
    return TASKSPAN_OK;
}

/* ---- discovery and sending ----------------------------------------------- */

/* A task with spans in the request being assembled. */
typedef struct req_task {
    const char *task_id; /* borrowed from the pass's list */
    int64_t done;        /* its export_done: as read, or as settled here */
    int64_t done_after;  /* once this request's spans of it are settled */
    int64_t closed;      /* its closed spans, as read */
    int64_t epoch;       /* its export_epoch, as read */
    bool ok;             /* leased for this request */
} req_task;

/* The request being assembled: the closed spans of the tasks a pass reads,
 * in close order, a request's worth (the batch size, max_request_bytes)
 * at a time. Before it is sent, its tasks are leased in one transaction
 * (store_export.c); the spans of a task another exporter holds, or
 * settled meanwhile, are dropped. After the answer, each task's
 * export_done moves past its spans in the request, in one transaction:
 * nothing is written per span, but for rejected ones. Keys and names (for
 * rejected rows) live in the arena, bodies in a task's body blocks
 * (body_blocks.h), released when the request is done with. */
typedef struct new_rows {
    taskspan__new_span *rows;
    uint8_t **bodies;
    size_t *task_of; /* rows[i] belongs to tasks[task_of[i]] */
    size_t n, cap, bytes;
    req_task *tasks;
    size_t n_tasks, cap_tasks;
    taskspan__arena arena;
    bool may_send;       /* no failed request in this pass (yet) */
    int64_t deadline_ns; /* of a request sent (monotonic) */
    size_t sent;         /* spans that got an answer in this pass */
    /* The task whose spans are being pushed: its export_done as this
     * exporter knows it, and whether its lease was refused. */
    const char *cur_task;
    int64_t cur_done;
    int64_t cur_closed;
    int64_t cur_epoch;
    bool cur_lost;
} new_rows;

/* One request's spans, framed by build_request. */
typedef struct batch {
    size_t n;
    int64_t *resource_ids;
    uint8_t **bodies; /* borrowed from the rows */
    size_t *lens;
} batch;

/* How a request ended. */
typedef enum outcome {
    SENT_OK,       /* 2xx: delivered */
    SENT_REJECTED, /* rejected for good: kept with the reason */
    SENT_RETRY,    /* pending again, after a backoff */
    SENT_SMALLER,  /* 413: pending again, smaller batches at once */
    SENT_ABORTED   /* cut off at close: pending again, at once */
} outcome;

static void rows_clear(new_rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        taskspan__body_release(r->bodies[i]);
    }
    r->n = 0;
    r->bytes = 0;
    r->n_tasks = 0;
    taskspan__arena_free(&r->arena);
}

static void rows_free(new_rows *r)
{
    rows_clear(r);
    free(r->rows);
    free(r->bodies);
    free(r->task_of);
    free(r->tasks);
    memset(r, 0, sizeof *r);
}

static int64_t lease_ns(const taskspan__exporter *ex)
{
    int64_t lease_ms = ex->cfg->timeout_ms > 0 ? ex->cfg->timeout_ms : 600000;
    return (lease_ms + LEASE_MARGIN_MS) * 1000000;
}

static size_t batch_max(const taskspan__exporter *ex)
{
    return ex->batch_cap < ex->cfg->max_batch_spans ? ex->batch_cap
                                                    : ex->cfg->max_batch_spans;
}

/* Whether a request may go out now: no abort, no backoff running. */
static bool may_send_now(const taskspan__exporter *ex)
{
    return !atomic_load(&ex->abort) &&
           taskspan__mono_ns() >= ex->next_attempt_ns;
}

/* Remember msg as the last export error, here and in the buffer. */
static void note(taskspan__exporter *ex, const char *msg)
{
    char ignored[TASKSPAN__MSG_SIZE];
    snprintf(ex->last_failure, sizeof ex->last_failure, "%.*s",
             (int)sizeof ex->last_failure - 1, msg);
    ex->store_ops->note_error(ex->store, msg, taskspan__now_ns(), ignored,
                              sizeof ignored);
}

/* Frame the batch into one request, one group per resource. */
static taskspan_code build_request(taskspan__exporter *ex, const batch *c,
                                   uint8_t **out, size_t *out_len, char *err,
                                   size_t errlen)
{
    taskspan__resource_group *groups = calloc(c->n, sizeof *groups);
    const uint8_t **spans = calloc(c->n, sizeof *spans);
    size_t *lens = calloc(c->n, sizeof *lens);
    bool *used = calloc(c->n, sizeof *used);
    size_t n_groups = 0, k = 0;
    taskspan_code rc = TASKSPAN_OK;

    if (groups == NULL || spans == NULL || lens == NULL || used == NULL) {
        rc = TASKSPAN_E_NOMEM;
        goto done;
    }
    /* Stable grouping: spans keep their order within a resource. */
    for (size_t i = 0; rc == TASKSPAN_OK && i < c->n; i++) {
        if (used[i]) {
            continue;
        }
        const cached_resource *res = NULL;
        rc = resource_bytes(ex, c->resource_ids[i], &res, err, errlen);
        if (rc != TASKSPAN_OK) {
            break;
        }
        taskspan__resource_group *g = &groups[n_groups++];
        g->resource = res->bytes;
        g->resource_len = res->len;
        g->spans = &spans[k];
        g->span_lens = &lens[k];
        for (size_t j = i; j < c->n; j++) {
            if (!used[j] && c->resource_ids[j] == c->resource_ids[i]) {
                used[j] = true;
                spans[k] = c->bodies[j];
                lens[k++] = c->lens[j];
                g->n_spans++;
            }
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = taskspan__encode_request(out, out_len, groups, n_groups);
    }
done:
    free(groups);
    free(spans);
    free(lens);
    free(used);
    return rc;
}

/* The delay before the next attempt after a retryable failure. */
static int64_t backoff_ms(taskspan__exporter *ex, int64_t retry_after_ms)
{
    if (retry_after_ms >= 0) {
        return retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms
                                                   : RETRY_AFTER_MAX_MS;
    }
    int64_t d = BACKOFF_INITIAL_MS;
    for (unsigned i = 1; i < ex->failures && d < BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    if (d > BACKOFF_MAX_MS) {
        d = BACKOFF_MAX_MS;
    }
    /* Jitter: uniform in [d/2, 3d/2), so exporters that failed together do
     * not retry together (the OTLP spec asks for it). */
    return d / 2 + (int64_t)(rand_r(&ex->rand_state) % (unsigned)d);
}

/* After a 2xx: count it, read partial_success. */
static void answered_ok(taskspan__exporter *ex, size_t n,
                        const taskspan__http_result *r)
{
    int64_t rejected = 0;
    char msg[200];
    /* A 2xx means the collector took the request; an unreadable body does
     * not change that, so the spans are delivered either way. */
    if (taskspan__decode_response(&rejected, msg, sizeof msg, r->body,
                                  r->body_len) != TASKSPAN_OK) {
        note(ex, "the collector's 2xx response body does not parse");
    }
    atomic_fetch_add(&ex->requests_ok, 1);
    atomic_fetch_add(&ex->spans_delivered, n);
    if (rejected > 0) {
        char line[TASKSPAN__MSG_SIZE];
        atomic_fetch_add(&ex->partial_rejected, (uint64_t)rejected);
        snprintf(line, sizeof line, "collector rejected %lld of %zu spans: %s",
                 (long long)rejected, n, msg);
        note(ex, line);
    }
    ex->failures = 0;
    ex->next_attempt_ns = 0;
    if (ex->batch_cap < ex->cfg->max_batch_spans) {
        ex->batch_cap *= 2; /* grow back after a 413 */
    }
}

/* After an error answer or none: what to do with the batch. line gets the
 * reason; *retry_at the wall-clock time (ns) before which no exporter may
 * send the batch again, for SENT_RETRY. cut_ms > 0: the request timed out
 * after the cut_ms the flush's deadline left it, less than the configured
 * request timeout. */
static outcome answered_failure(taskspan__exporter *ex, size_t n,
                                const taskspan__http_result *r, int cut_ms,
                                char *line, size_t linelen, int64_t *retry_at)
{
    char detail[200] = "";
    int64_t info_ms = -1;

    atomic_fetch_add(&ex->requests_failed, 1);
    if (r->status >= 400 && r->body_len > 0) {
        taskspan__decode_status(detail, sizeof detail, &info_ms, r->body,
                                r->body_len);
    }
    if (cut_ms > 0) {
        snprintf(line, linelen,
                 "no answer in the %d ms left before the flush's deadline "
                 "(%s)",
                 cut_ms, r->message);
    } else {
        snprintf(line, linelen, "%s%s%s", r->message, detail[0] ? ": " : "",
                 detail);
    }
    /* A request the caller's deadline cut short says little about the
     * collector: after a failure since the last success, that failure's
     * reason (say, connection refused) is what the user needs to see. */
    if (cut_ms == 0 || ex->failures == 0 || ex->last_failure[0] == '\0') {
        note(ex, line);
    }
    if (atomic_load(&ex->abort)) {
        return SENT_ABORTED; /* put back, at once, for the next exporter */
    }
    if (r->status == 413 && n > 1) {
        ex->batch_cap = n / 2; /* too large for this collector */
        return SENT_SMALLER;
    }
    if (!r->retryable) {
        atomic_fetch_add(&ex->spans_rejected, n);
        return SENT_REJECTED;
    }
    ex->failures++;
    int64_t delay_ns = backoff_ms(ex, r->retry_after_ms >= 0
                                          ? r->retry_after_ms
                                          : info_ms) *
                       1000000;
    /* The buffer's retry time and this exporter's own from one instant,
     * its own a millisecond later: waking from its backoff, the exporter
     * finds the tasks free again and sends them in their order (else a
     * task without a retry time went first). */
    *retry_at = taskspan__now_ns() + delay_ns;
    ex->next_attempt_ns = taskspan__mono_ns() + delay_ns + 1000000;
    return SENT_RETRY;
}

/* POST the batch, the request ending by deadline_ns (monotonic;
 * INT64_MAX: only the request timeout). line gets the reason of a
 * failure. */
static taskspan_code post(taskspan__exporter *ex, const batch *c,
                          int64_t deadline_ns, outcome *out, char *line,
                          size_t linelen, int64_t *retry_at, char *err,
                          size_t errlen)
{
    taskspan__http_result r;
    uint8_t *body = NULL;
    size_t body_len = 0;

    taskspan_code rc = build_request(ex, c, &body, &body_len, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc; /* short of memory: the spans stay pending */
    }
    int64_t left_ms = (deadline_ns - taskspan__mono_ns()) / 1000000;
    int limit_ms = deadline_ns == INT64_MAX ? 0
                   : left_ms > 1            ? (int)left_ms
                                            : 1;
    /* Whether the deadline, not the request timeout, bounds the request. */
    bool capped = limit_ms > 0 &&
                  (ex->cfg->timeout_ms <= 0 || limit_ms < ex->cfg->timeout_ms);
    ex->transport_ops->limit(ex->transport, limit_ms);
    ex->transport_ops->post(ex->transport, body, body_len, &ex->abort, &r);
    if (r.code == TASKSPAN_OK) {
        answered_ok(ex, c->n, &r);
        *out = SENT_OK;
    } else {
        int cut_ms = capped && r.code == TASKSPAN_E_TIMEOUT &&
                             !atomic_load(&ex->abort)
                         ? limit_ms
                         : 0;
        *out = answered_failure(ex, c->n, &r, cut_ms, line, linelen, retry_at);
    }
    taskspan__http_result_free(&r);
    free(body);
    return TASKSPAN_OK;
}

/* Lease the request's tasks; those refused lose their spans (another
 * exporter holds them, or settled them since they were read). */
static taskspan_code lease_tasks(taskspan__exporter *ex, new_rows *r,
                                 char *err, size_t errlen)
{
    taskspan__task_lease *leases = calloc(r->n_tasks, sizeof *leases);
    if (leases == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < r->n_tasks; t++) {
        leases[t].task_id = r->tasks[t].task_id;
        leases[t].done = r->tasks[t].done;
        leases[t].closed = r->tasks[t].closed;
        leases[t].epoch = r->tasks[t].epoch;
    }
    int64_t now = taskspan__now_ns();
    taskspan_code rc = ex->store_ops->tasks_lease(ex->store, ex->owner, now,
                                                  now + lease_ns(ex), leases,
                                                  r->n_tasks, err, errlen);
    for (size_t t = 0; rc == TASKSPAN_OK && t < r->n_tasks; t++) {
        r->tasks[t].ok = leases[t].ok;
        if (!leases[t].ok && r->tasks[t].task_id == r->cur_task) {
            r->cur_lost = true;
        }
    }
    free(leases);
    return rc;
}

/* Record what the answer did to the request's leased tasks. */
static taskspan_code settle(taskspan__exporter *ex, new_rows *r, outcome how,
                            size_t n_sent, const char *line, int64_t retry_at,
                            char *err, size_t errlen)
{
    size_t k = 0;
    taskspan_code rc = TASKSPAN_OK;

    if (how == SENT_OK || how == SENT_REJECTED) {
        taskspan__task_done *dones = calloc(r->n_tasks, sizeof *dones);
        taskspan__new_span *rej = how == SENT_REJECTED
                                      ? calloc(r->n ? r->n : 1, sizeof *rej)
                                      : NULL;
        size_t n_rej = 0;
        if (dones == NULL || (how == SENT_REJECTED && rej == NULL)) {
            free(dones);
            free(rej);
            return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                  "out of memory");
        }
        for (size_t t = 0; t < r->n_tasks; t++) {
            if (r->tasks[t].ok) {
                dones[k++] = (taskspan__task_done){
                    .task_id = r->tasks[t].task_id,
                    .epoch = r->tasks[t].epoch,
                    .done = r->tasks[t].done_after};
                if (r->tasks[t].task_id == r->cur_task) {
                    r->cur_done = r->tasks[t].done_after;
                }
            }
        }
        for (size_t i = 0; rej != NULL && i < r->n; i++) {
            if (r->tasks[r->task_of[i]].ok) {
                rej[n_rej++] = r->rows[i];
            }
        }
        rc = ex->store_ops->tasks_settle(ex->store, dones, k,
                                         how == SENT_OK ? n_sent : 0, rej,
                                         n_rej, line, err, errlen);
        free(dones);
        free(rej);
        return rc;
    }
    char **tasks = calloc(r->n_tasks ? r->n_tasks : 1, sizeof *tasks);
    if (tasks == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < r->n_tasks; t++) {
        if (r->tasks[t].ok) {
            tasks[k++] = (char *)r->tasks[t].task_id;
        }
    }
    /* The lease table is shared: other exporters of the buffer wait out
     * a backoff too. A 413 or an abort puts the spans back at once. */
    rc = ex->store_ops->tasks_retry(ex->store, ex->owner, tasks, k,
                                    how == SENT_RETRY ? retry_at : 0, err,
                                    errlen);
    free(tasks);
    return rc;
}

/* Send the request waiting: lease its tasks, POST the spans of those
 * leased, settle them by the answer. After a failure the pass sends no
 * more (r->may_send): a later one starts over from the buffer. */
static taskspan_code rows_send(taskspan__exporter *ex, new_rows *r, char *err,
                               size_t errlen)
{
    batch c = {0};
    char line[2 * TASKSPAN__MSG_SIZE] = "";
    int64_t retry_at = 0;
    outcome how = SENT_OK;

    taskspan_code rc = lease_tasks(ex, r, err, errlen);
    c.resource_ids = calloc(r->n, sizeof *c.resource_ids);
    c.bodies = calloc(r->n, sizeof *c.bodies);
    c.lens = calloc(r->n, sizeof *c.lens);
    if (rc == TASKSPAN_OK &&
        (c.resource_ids == NULL || c.bodies == NULL || c.lens == NULL)) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == TASKSPAN_OK && i < r->n; i++) {
        if (!r->tasks[r->task_of[i]].ok) {
            continue;
        }
        c.resource_ids[c.n] = r->rows[i].resource_id;
        c.bodies[c.n] = r->bodies[i];
        c.lens[c.n++] = r->rows[i].body_len;
    }
    if (rc == TASKSPAN_OK && c.n > 0) {
        rc = post(ex, &c, r->deadline_ns, &how, line, sizeof line, &retry_at,
                  err, errlen);
        if (rc == TASKSPAN_OK) {
            r->sent += c.n;
            rc = settle(ex, r, how, c.n, line, retry_at, err, errlen);
        }
        /* A rejected batch is settled for good: the pass goes on. */
        if (rc != TASKSPAN_OK || (how != SENT_OK && how != SENT_REJECTED)) {
            r->may_send = false;
        }
    }
    free(c.resource_ids);
    free(c.bodies);
    free(c.lens);
    rows_clear(r);
    return rc;
}

/* Send the rows waiting, if any. */
static taskspan_code rows_flush(taskspan__exporter *ex, new_rows *r, char *err,
                                size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    if (r->n > 0 && r->may_send && !atomic_load(&ex->abort)) {
        rc = rows_send(ex, r, err, errlen);
    }
    rows_clear(r);
    return rc;
}

/* Whether the request must go before a span of len bytes joins it: it
 * holds at most the batch size and (but for a single span)
 * max_request_bytes. */
static bool rows_full(const taskspan__exporter *ex, const new_rows *r,
                      size_t len)
{
    return r->n > 0 && (r->n >= batch_max(ex) ||
                        r->bytes + len > ex->cfg->max_request_bytes);
}

static taskspan_code rows_grow(new_rows *r)
{
    size_t cap = r->cap ? r->cap * 2 : 256;
    taskspan__new_span *p = realloc(r->rows, cap * sizeof *p);
    if (p == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    r->rows = p;
    uint8_t **b = realloc(r->bodies, cap * sizeof *b);
    if (b == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    r->bodies = b;
    size_t *t = realloc(r->task_of, cap * sizeof *t);
    if (t == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    r->task_of = t;
    r->cap = cap;
    return TASKSPAN_OK;
}

/* The request's entry for the current task, added at its first span. */
static taskspan_code cur_req_task(new_rows *r, size_t *out)
{
    if (r->n_tasks > 0 && r->tasks[r->n_tasks - 1].task_id == r->cur_task) {
        *out = r->n_tasks - 1;
        return TASKSPAN_OK;
    }
    if (r->n_tasks == r->cap_tasks) {
        size_t cap = r->cap_tasks ? r->cap_tasks * 2 : 16;
        req_task *p = realloc(r->tasks, cap * sizeof *p);
        if (p == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        r->tasks = p;
        r->cap_tasks = cap;
    }
    r->tasks[r->n_tasks] = (req_task){.task_id = r->cur_task,
                                      .done = r->cur_done,
                                      .done_after = r->cur_done,
                                      .closed = r->cur_closed,
                                      .epoch = r->cur_epoch};
    *out = r->n_tasks++;
    return TASKSPAN_OK;
}

/* Append span k of news, encoded; its body is taken over. */
static taskspan_code rows_push(new_rows *r, taskspan__task_news *news,
                               size_t k, const char *task)
{
    const taskspan_span *s = taskspan_spans_get(news->spans, news->index[k]);
    size_t t = 0;
    if ((r->n == r->cap && rows_grow(r) != TASKSPAN_OK) ||
        cur_req_task(r, &t) != TASKSPAN_OK) {
        return TASKSPAN_E_NOMEM;
    }
    uint8_t *key = taskspan__arena_alloc(&r->arena, TASKSPAN__SPAN_KEY_LEN);
    char *name = taskspan__arena_strdup(&r->arena, s->name);
    if (key == NULL || name == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    memcpy(key, s->trace_id, 16);
    memcpy(key + 16, s->span_id, 8);
    r->rows[r->n] = (taskspan__new_span){
        .trace_id = key,
        .span_id = key + 16,
        .task_id = task,
        .name = name,
        .resource_id = taskspan__spans_resource_id(news->spans,
                                                   news->index[k]),
        .end_ns = s->end_ns,
        .body_len = news->lens[k],
        .trace_shared = news->trace_shared,
    };
    r->bodies[r->n] = news->bodies[k];
    news->bodies[k] = NULL;
    r->task_of[r->n] = t;
    r->tasks[t].done_after = news->done_after[k];
    r->n++;
    r->bytes += news->lens[k];
    return TASKSPAN_OK;
}

/* Add the unsettled spans of task (read by taskspan__task_news_read) to
 * the request, sending it whenever it is full (the caller sends the
 * rest: rows_flush). Stops when a request fails. */
static taskspan_code push_news(taskspan__exporter *ex, const char *task,
                               taskspan__task_news *news, new_rows *rows,
                               char *err, size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    rows->cur_task = task;
    rows->cur_done = news->done_read;
    rows->cur_closed = news->closed;
    rows->cur_epoch = news->epoch;
    rows->cur_lost = false;
    for (size_t k = 0; rc == TASKSPAN_OK && k < news->n; k++) {
        if (rows_full(ex, rows, news->lens[k])) {
            rc = rows_send(ex, rows, err, errlen);
        }
        if (rc != TASKSPAN_OK || !rows->may_send || rows->cur_lost) {
            break;
        }
        rc = rows_push(rows, news, k, task);
        if (rc != TASKSPAN_OK) {
            rc = taskspan__fail(err, errlen, rc, "out of memory");
        }
    }
    return rc;
}

/* What news says about its task, to mark it examined at the end of the
 * pass. */
static taskspan__examined examined(const char *task,
                                   const taskspan__task_news *news)
{
    taskspan__examined m = {.task_id = task,
                            .upto_seq = news->upto_seq,
                            .open = news->open,
                            .gone = news->gone,
                            .closed = news->closed,
                            .done = news->done_rows,
                            .epoch = news->epoch};
    return m;
}

#define GONE_REASON                                                           \
    "its task's events are gone (pruned by hand?): the span can no "          \
    "longer be encoded"

/* Mark the tasks examined (store_export.c). The unsettled spans of a task
 * found without events can never be sent: counted rejected, and said. */
static taskspan_code mark_examined(taskspan__exporter *ex,
                                   const taskspan__examined *marks, size_t n,
                                   char *err, size_t errlen)
{
    uint64_t given_up = 0;
    taskspan_code rc = ex->store_ops->tasks_examined(
        ex->store, ex->owner, marks, n, &given_up, err, errlen);
    if (given_up > 0) {
        atomic_fetch_add(&ex->spans_rejected, given_up);
        note(ex, GONE_REASON);
    }
    return rc;
}

/* Read one task in this thread, through the exporter's connection, and
 * add its unsettled spans to rows when sending. OUT: *mark. */
static taskspan_code discover_task(taskspan__exporter *ex, const char *task,
                                   new_rows *rows, bool sending,
                                   taskspan__examined *mark, char *err,
                                   size_t errlen)
{
    taskspan__task_news news;
    taskspan_code rc = taskspan__task_news_read(
        &news, ex->store_ops, ex->store, task, &ex->cfg->limits, err, errlen);
    if (rc == TASKSPAN_OK) {
        *mark = examined(task, &news);
        if (sending) {
            rc = push_news(ex, task, &news, rows, err, errlen);
        }
        taskspan__task_news_free(&news);
    }
    return rc;
}

/* Close the incarnations whose runner died without runner_exit: the
 * process is gone and the task has been silent for the grace period. The
 * mark is one row in the buffer (recovery.h), checked against the task's
 * last seq in the same transaction, so a runner_spawn racing with us wins
 * and nothing is closed twice. Then send the spans that closed. */
static taskspan_code close_crashed(taskspan__exporter *ex, bool sending,
                                   int64_t deadline_ns, size_t *sent,
                                   char *err, size_t errlen)
{
    const taskspan__recovery_ops *ops = ex->store_ops->recovery;
    taskspan__crash_candidate *c = NULL;
    taskspan__examined *marks = NULL;
    size_t n = 0, n_marks = 0;
    int64_t mono = taskspan__mono_ns();
    new_rows rows = {.may_send = sending, .deadline_ns = deadline_ns};

    if (ops == NULL || mono < ex->next_crash_scan_ns) {
        return TASKSPAN_OK;
    }
    ex->next_crash_scan_ns = mono + (int64_t)CRASH_SCAN_INTERVAL_MS * 1000000;
    int64_t now = taskspan__now_ns();
    int64_t idle_before = now - (int64_t)ex->cfg->crash_grace_ms * 1000000;
    taskspan_code rc = ops->crash_candidates(
        ex->store, idle_before, CRASH_SCAN_MAX, NULL, &c, &n, err, errlen);
    if (rc == TASKSPAN_OK && n > 0 &&
        (marks = calloc(n, sizeof *marks)) == NULL) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == TASKSPAN_OK && i < n; i++) {
        bool closed = false;
        /* An unknown pid (none recorded) proves nothing: leave it open. */
        if (taskspan__runner_liveness(c[i].runner_pid) !=
            TASKSPAN__RUNNER_GONE) {
            continue;
        }
        rc = ops->crash_close(ex->store, &c[i], now, &closed, err, errlen);
        if (rc == TASKSPAN_OK && closed) {
            rc = discover_task(ex, c[i].task_id, &rows, rows.may_send,
                               &marks[n_marks++], err, errlen);
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = rows_flush(ex, &rows, err, errlen);
    }
    /* Its spans sent, a task whose last open span the crash closed
     * leaves the live ones. */
    if (rc == TASKSPAN_OK && n_marks > 0) {
        rc = mark_examined(ex, marks, n_marks, err, errlen);
    }
    *sent += rows.sent;
    free(marks);
    rows_free(&rows);
    taskspan__crash_candidates_free(c, n);
    return rc;
}

/* The read-ahead's connection, opened at its first use (NULL: none). */
static void *reader_store(taskspan__exporter *ex)
{
    char ignored[TASKSPAN__MSG_SIZE];
    if (!ex->reader_tried) {
        ex->reader_tried = true;
        if (ex->store_ops->open(&ex->reader_store, ex->db_path, &ex->store_cfg,
                                ignored, sizeof ignored) != TASKSPAN_OK) {
            ex->reader_store = NULL;
        }
    }
    return ex->reader_store;
}

/* Examine tasks[0..n) in order, on the reader's thread when there are
 * two or more (export_reader.h; here, should it not start), adding their
 * unsettled spans to rows while rows->may_send, until deadline_ns
 * (monotonic), an abort, or a failed request. OUT: marks[0..*done). */
static taskspan_code examine(taskspan__exporter *ex, char *const *tasks,
                             size_t n, new_rows *rows, int64_t deadline_ns,
                             taskspan__examined *marks, size_t *done,
                             char *err, size_t errlen)
{
    bool sending = rows->may_send;
    taskspan__export_reader *reader = NULL;
    taskspan_code rc = TASKSPAN_OK;

    *done = 0;
    if (n >= 2 && reader_store(ex) != NULL) {
        (void)taskspan__export_reader_start(&reader, ex->store_ops,
                                            ex->reader_store, tasks, n,
                                            &ex->cfg->limits, &ex->abort);
    }
    while (rc == TASKSPAN_OK && *done < n) {
        if (atomic_load(&ex->abort) || taskspan__mono_ns() >= deadline_ns ||
            (sending && !rows->may_send)) {
            break;
        }
        const char *task = tasks[*done];
        if (reader == NULL) {
            rc = discover_task(ex, task, rows, rows->may_send, &marks[*done],
                               err, errlen);
        } else {
            taskspan__task_news news;
            rc = taskspan__export_reader_next(reader, ex->store, &news, err,
                                              errlen);
            if (rc == TASKSPAN_OK) {
                marks[*done] = examined(task, &news);
                if (rows->may_send) {
                    rc = push_news(ex, task, &news, rows, err, errlen);
                }
            }
            taskspan__task_news_free(&news);
        }
        *done += rc == TASKSPAN_OK;
    }
    taskspan__export_reader_stop(reader);
    return rc;
}

/* One pass: read the tasks with new events (and, when it may send, those
 * with spans not yet settled) and send their unsettled spans, a request
 * at a time, stopping at deadline_ns (monotonic) or an abort: a large
 * backlog must not hold up a close or a flush. After a failed request the
 * spans wait in the buffer, and the rest of the pass only examines the
 * tasks with new events (so the pending counts take in their spans; the
 * others are counted already), reading nothing twice while a collector is
 * down. The tasks read are marked examined at the end (and this
 * exporter's leases on them end); a pass cut short leaves the rest to the
 * next. *sent: spans that got an answer. */
static taskspan_code discover(taskspan__exporter *ex, int64_t deadline_ns,
                              bool may_send, size_t *sent, char *err,
                              size_t errlen)
{
    char **tasks = NULL, **rest = NULL;
    bool *fresh = NULL;
    size_t n = 0, done = 0, more = 0, n_rest = 0;
    taskspan__examined *marks = NULL;
    bool sending = may_send && may_send_now(ex);
    new_rows rows = {.may_send = sending, .deadline_ns = deadline_ns};

    *sent = 0;
    taskspan_code rc = ex->store_ops->changed_tasks(
        ex->store, ex->owner, taskspan__now_ns(), sending, &tasks, &fresh, &n,
        err, errlen);
    if (rc == TASKSPAN_OK && n > 0 &&
        ((marks = calloc(n, sizeof *marks)) == NULL ||
         (rest = calloc(n, sizeof *rest)) == NULL)) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    if (rc == TASKSPAN_OK) {
        rc = examine(ex, tasks, n, &rows, deadline_ns, marks, &done, err,
                     errlen);
    }
    if (rc == TASKSPAN_OK) {
        rc = rows_flush(ex, &rows, err, errlen);
    }
    if (rc == TASKSPAN_OK && sending && !rows.may_send) {
        for (size_t i = done; i < n; i++) {
            if (fresh[i]) {
                rest[n_rest++] = tasks[i];
            }
        }
        rc = examine(ex, rest, n_rest, &rows, deadline_ns, marks + done, &more,
                     err, errlen);
    }
    bool complete = rc == TASKSPAN_OK &&
                    (done == n ||
                     (sending && !rows.may_send && more == n_rest));
    done += more;
    *sent = rows.sent;
    rows_free(&rows);
    if (done > 0) {
        /* Also after an error: what was examined and settled is so. */
        char ignored[TASKSPAN__MSG_SIZE];
        taskspan_code mrc = mark_examined(
            ex, marks, done, rc == TASKSPAN_OK ? err : ignored,
            rc == TASKSPAN_OK ? errlen : sizeof ignored);
        rc = rc == TASKSPAN_OK ? mrc : rc;
    }
    if (rc == TASKSPAN_OK && complete) {
        rc = close_crashed(ex, sending && may_send_now(ex), deadline_ns, sent,
                           err, errlen);
    }
    free(marks);
    free(rest);
    free(fresh);
    for (size_t i = 0; i < n; i++) {
        free(tasks[i]);
    }
    free(tasks);
    return rc;
}

/* ---- retention ----------------------------------------------------------- */

/* Prune what was delivered more than the retention ago (TASKSPAN_RETENTION_
 * SECONDS), as taskspan_gc() does, at most every quarter of the retention
 * (between 1 s and 10 min): the pass reads every task, so it must not run
 * on every export pass. A failure is noted like an export error and tried
 * again at the next interval; nothing pending is ever touched. */
static void prune_retained(taskspan__exporter *ex)
{
    char msg[TASKSPAN__MSG_SIZE];
    taskspan__gc_counts counts = {0};
    int64_t retention_s = (int64_t)ex->cfg->retention_s;
    int64_t mono = taskspan__mono_ns();

    if (retention_s == 0 || mono < ex->next_retention_ns) {
        return;
    }
    int64_t every_s = retention_s / 4;
    every_s = every_s < 1 ? 1 : every_s > 600 ? 600 : every_s;
    ex->next_retention_ns = mono + every_s * 1000000000;
    int64_t now = taskspan__now_ns();
    int64_t cutoff = retention_s > now / 1000000000
                         ? 0
                         : now - retention_s * 1000000000;
    bool due = true;
    if (ex->store_ops->prune_due(ex->store, cutoff, &due, msg, sizeof msg) ==
            TASKSPAN_OK &&
        !due) {
        return;
    }
    if (taskspan__gc_store(ex->store, cutoff, &counts, msg, sizeof msg) !=
        TASKSPAN_OK) {
        char line[TASKSPAN__MSG_SIZE + 32];
        snprintf(line, sizeof line, "pruning delivered data: %s", msg);
        note(ex, line);
    }
}

/* ---- passes -------------------------------------------------------------- */

/* One scheduled pass: discover and send, until a failure or backoff. */
static taskspan_code pass(taskspan__exporter *ex, char *err, size_t errlen)
{
    size_t sent = 0;
    taskspan_code rc = discover(ex, INT64_MAX, true, &sent, err, errlen);
    prune_retained(ex);
    return rc;
}

/* TASKSPAN_E_TIMEOUT, saying how many spans of the flush's targets (from
 * from on) wait and why. */
static taskspan_code not_delivered(const taskspan__exporter *ex,
                                   const taskspan__flush_target *targets,
                                   size_t n, size_t from, const char *what,
                                   char *err, size_t errlen)
{
    int64_t pending = 0;
    char ignored[TASKSPAN__MSG_SIZE];
    ex->store_ops->targets_pending(ex->store, targets, n, &from, &pending,
                                   ignored, sizeof ignored);
    return taskspan__fail(err, errlen, TASKSPAN_E_TIMEOUT,
                          "%lld spans %s%s%.160s", (long long)pending, what,
                          ex->last_failure[0] ? "; last error: " : "",
                          ex->last_failure);
}

/* Deliver everything closed now, until deadline (monotonic ns): a pass,
 * then what it left (the targets: tasks not examined or not settled), a
 * pass at a time. With give_up set (at close), stop at the first failed
 * request: the spans are safe in the buffer, and a runner must not wait
 * out a collector's outage at exit. */
static taskspan_code drain_until(taskspan__exporter *ex, int64_t deadline_ns,
                                 bool give_up, char *err, size_t errlen)
{
    taskspan__flush_target *targets = NULL;
    size_t n = 0, from = 0, sent = 0;
    taskspan_code rc = discover(ex, deadline_ns, true, &sent, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = ex->store_ops->flush_targets(ex->store, &targets, &n, err,
                                          errlen);
    }
    while (rc == TASKSPAN_OK) {
        rc = ex->store_ops->targets_pending(ex->store, targets, n, &from, NULL,
                                            err, errlen);
        if (rc != TASKSPAN_OK || from == n) {
            break;
        }
        int64_t now = taskspan__mono_ns();
        if (now >= deadline_ns || atomic_load(&ex->abort)) {
            rc = not_delivered(ex, targets, n, from, "not delivered in time",
                               err, errlen);
            break;
        }
        if (now < ex->next_attempt_ns) {
            /* Closing: no waiting out a backoff (nap would not sleep). */
            if (give_up || atomic_load(&ex->stopping)) {
                rc = not_delivered(ex, targets, n, from,
                                   "not delivered at close", err, errlen);
                break;
            }
            nap(ex, ex->next_attempt_ns < deadline_ns ? ex->next_attempt_ns
                                                      : deadline_ns);
            continue;
        }
        rc = discover(ex, deadline_ns, true, &sent, err, errlen);
        if (rc == TASKSPAN_OK && sent == 0 && atomic_load(&ex->stopping)) {
            rc = not_delivered(ex, targets, n, from,
                               "not delivered: held by other exporters", err,
                               errlen);
            break;
        }
        if (rc == TASKSPAN_OK && sent == 0) {
            /* Leased by another exporter, or waiting out a backoff that
             * another exporter set: look again shortly. */
            int64_t t = now + CONTENDED_WAIT_MS * 1000000LL;
            nap(ex, t < deadline_ns ? t : deadline_ns);
        }
    }
    taskspan__flush_targets_free(targets, n);
    if (rc == TASKSPAN_OK && !give_up) {
        prune_retained(ex); /* all delivered: a good moment */
    }
    return rc;
}

static taskspan_code drain(taskspan__exporter *ex, int64_t deadline_ns,
                           bool give_up, char *err, size_t errlen)
{
    return drain_until(ex, deadline_ns, give_up, err, errlen);
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? INT64_MAX
                          : taskspan__mono_ns() + timeout_ms * 1000000LL;
}

/* ---- the worker ---------------------------------------------------------- */

static void serve_flush(taskspan__exporter *ex)
{
    uint64_t gen = ex->flush_requested;
    int64_t deadline = ex->flush_deadline_ns;
    char msg[TASKSPAN__MSG_SIZE] = "";
    pthread_mutex_unlock(&ex->lock);
    taskspan_code rc = drain(ex, deadline, false, msg, sizeof msg);
    pthread_mutex_lock(&ex->lock);
    ex->flush_result = rc;
    snprintf(ex->flush_msg, sizeof ex->flush_msg, "%s", msg);
    ex->flush_done = gen;
    pthread_cond_broadcast(&ex->cond);
}

static void *worker(void *arg)
{
    taskspan__exporter *ex = arg;
    char msg[TASKSPAN__MSG_SIZE];
    /* A schedule delay of 0 means "as soon as a span closes": emits wake
     * the worker then (recorder.c), and the timer is only a safety net. */
    int64_t delay_ms = ex->cfg->schedule_delay_ms > 0
                           ? ex->cfg->schedule_delay_ms
                           : 1000;
    int64_t delay_ns = delay_ms * 1000000LL;
    int64_t next = taskspan__mono_ns() + delay_ns;

    pthread_mutex_lock(&ex->lock);
    while (!ex->stop) {
        if (ex->flush_done < ex->flush_requested) {
            serve_flush(ex);
            next = taskspan__mono_ns() + delay_ns;
            continue;
        }
        if (!ex->wake && taskspan__mono_ns() < next) {
            wait_until(ex, next);
            continue;
        }
        ex->wake = false;
        pthread_mutex_unlock(&ex->lock);
        pass(ex, msg, sizeof msg);
        pthread_mutex_lock(&ex->lock);
        next = taskspan__mono_ns() + delay_ns;
    }
    /* Closing: one last flush, bounded by the closer's abort. */
    if (ex->drain_ms > 0) {
        pthread_mutex_unlock(&ex->lock);
        drain(ex, taskspan__mono_ns() + ex->drain_ms * 1000000LL, true, msg,
              sizeof msg);
        pthread_mutex_lock(&ex->lock);
    }
    ex->finished = true;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

static taskspan_code init_sync(taskspan__exporter *ex)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        return TASKSPAN_E_NOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&ex->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        return TASKSPAN_E_NOMEM;
    }
    if (pthread_mutex_init(&ex->lock, NULL) != 0) {
        pthread_cond_destroy(&ex->cond);
        return TASKSPAN_E_NOMEM;
    }
    return TASKSPAN_OK;
}

/* The resource of events recorded without one: this process's own. */
static taskspan_code own_resource(taskspan__exporter *ex)
{
    cached_resource *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    ex->resources = r;
    ex->n_resources = 1;
    return taskspan__encode_resource(
        &r->bytes, &r->len, ex->cfg->resource.attrs, ex->cfg->resource.n);
}

taskspan_code taskspan__exporter_new(taskspan__exporter **out,
                                     const char *db_path,
                                     const taskspan__store_config *store_cfg,
                                     const taskspan__export_config *cfg,
                                     const taskspan__transport_ops *transport,
                                     bool background, char *err, size_t errlen)
{
    char host[64] = "";
    taskspan__exporter *ex = calloc(1, sizeof *ex);
    taskspan_code rc;

    *out = NULL;
    if (ex == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    ex->cfg = cfg;
    ex->store_ops = &taskspan__store_sqlite;
    ex->transport_ops = transport != NULL ? transport
                                          : &taskspan__transport_curl;
    ex->batch_cap = cfg->max_batch_spans;
    gethostname(host, sizeof host - 1);
    snprintf(ex->owner, sizeof ex->owner, "%s:%ld:%p", host, (long)getpid(),
             (void *)ex);
    ex->rand_state = (unsigned)(taskspan__mono_ns() ^ (int64_t)getpid());
    rc = init_sync(ex);
    if (rc != TASKSPAN_OK) {
        free(ex);
        return taskspan__fail(err, errlen, rc, "cannot create a mutex");
    }
    rc = own_resource(ex);
    ex->store_cfg = *store_cfg;
    ex->db_path = strdup(db_path);
    if (rc == TASKSPAN_OK && ex->db_path == NULL) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    if (rc == TASKSPAN_OK) {
        rc = ex->store_ops->open(&ex->store, db_path, store_cfg, err, errlen);
    }
    if (rc == TASKSPAN_OK) {
        ex->store_ops->export_tune(ex->store);
    }
    if (rc == TASKSPAN_OK) {
        rc = ex->transport_ops->open(&ex->transport, cfg, err, errlen);
    }
    if (rc == TASKSPAN_OK && background) {
        if (pthread_create(&ex->thread, NULL, worker, ex) != 0) {
            rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                "cannot start the export thread");
        } else {
            ex->background = true;
        }
    }
    if (rc != TASKSPAN_OK) {
        taskspan__exporter_free(ex, 0);
        return rc;
    }
    *out = ex;
    return TASKSPAN_OK;
}

taskspan_code taskspan__exporter_flush(taskspan__exporter *ex, int timeout_ms,
                                       char *err, size_t errlen)
{
    int64_t deadline = deadline_after(timeout_ms);
    taskspan_code rc;

    pthread_mutex_lock(&ex->lock);
    if (!ex->background) {
        /* One drain at a time; the lock is released while it runs. */
        while (ex->flush_done < ex->flush_requested) {
            wait_until(ex, deadline);
            if (taskspan__mono_ns() >= deadline) {
                pthread_mutex_unlock(&ex->lock);
                return taskspan__fail(err, errlen, TASKSPAN_E_TIMEOUT,
                                      "another flush is still running");
            }
        }
        uint64_t gen = ++ex->flush_requested;
        pthread_mutex_unlock(&ex->lock);
        rc = drain(ex, deadline, false, err, errlen);
        pthread_mutex_lock(&ex->lock);
        ex->flush_done = gen;
        pthread_cond_broadcast(&ex->cond);
        pthread_mutex_unlock(&ex->lock);
        return rc;
    }
    uint64_t gen = ++ex->flush_requested;
    /* One drain serves every flush waiting: give it the latest deadline. */
    if (deadline > ex->flush_deadline_ns || ex->flush_done + 1 == gen) {
        ex->flush_deadline_ns = deadline;
    }
    pthread_cond_broadcast(&ex->cond);
    while (ex->flush_done < gen && !ex->finished &&
           taskspan__mono_ns() < deadline) {
        wait_until(ex, deadline);
    }
    if (ex->flush_done >= gen) {
        rc = ex->flush_result;
        snprintf(err, errlen, "%s", ex->flush_msg);
    } else {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_TIMEOUT,
                            "spans not delivered within %d ms", timeout_ms);
    }
    pthread_mutex_unlock(&ex->lock);
    return rc;
}

void taskspan__exporter_wake(taskspan__exporter *ex)
{
    pthread_mutex_lock(&ex->lock);
    ex->wake = true;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
}

void taskspan__exporter_counts_get(const taskspan__exporter *ex,
                                   taskspan__exporter_counts *out)
{
    out->spans_delivered = atomic_load(&ex->spans_delivered);
    out->spans_rejected = atomic_load(&ex->spans_rejected);
    out->requests_ok = atomic_load(&ex->requests_ok);
    out->requests_failed = atomic_load(&ex->requests_failed);
    out->partial_rejected = atomic_load(&ex->partial_rejected);
}

void taskspan__exporter_free(taskspan__exporter *ex, int drain_ms)
{
    if (ex == NULL) {
        return;
    }
    if (ex->background) {
        int64_t deadline = taskspan__mono_ns() +
                           (drain_ms > 0 ? drain_ms : 0) * 1000000LL;
        pthread_mutex_lock(&ex->lock);
        ex->stop = true;
        atomic_store(&ex->stopping, true);
        ex->drain_ms = drain_ms;
        pthread_cond_broadcast(&ex->cond);
        while (!ex->finished && taskspan__mono_ns() < deadline) {
            wait_until(ex, deadline);
        }
        pthread_mutex_unlock(&ex->lock);
        /* Past the drain bound: end the request in flight, if any. */
        atomic_store(&ex->abort, true);
        pthread_mutex_lock(&ex->lock);
        pthread_cond_broadcast(&ex->cond);
        pthread_mutex_unlock(&ex->lock);
        pthread_join(ex->thread, NULL);
    }
    if (ex->transport != NULL) {
        ex->transport_ops->close(ex->transport);
    }
    if (ex->store != NULL) {
        ex->store_ops->close(ex->store);
    }
    if (ex->reader_store != NULL) {
        ex->store_ops->close(ex->reader_store);
    }
    free(ex->db_path);
    for (size_t i = 0; i < ex->n_resources; i++) {
        free(ex->resources[i].bytes);
    }
    free(ex->resources);
    pthread_cond_destroy(&ex->cond);
    pthread_mutex_destroy(&ex->lock);
    free(ex);
}
