/*
 * exporter.c -- the export loop: closed spans from the buffer to an OTLP
 * collector, marked delivered only after the request that carried them got
 * a 2xx.
 *
 * DESIGN
 *   Queue: there is no in-memory queue. The buffer is the queue: the
 *     export_spans table holds every closed span with its state (pending,
 *     delivered, rejected), its claim and the size of its encoding, not
 *     its bytes: a closed span's encoding is a pure function of its task's
 *     events and crash marks, so it is encoded again whenever it must be
 *     sent again, byte for byte the same. Nothing is lost when the
 *     process dies, and several exporters can share one buffer.
 *   Discovery: a pass reads the tasks marked live with events past the
 *     last one examined (store_export.c), builds their spans
 *     (spanmodel.c), encodes the closed ones not yet known
 *     (encode_span.c) and records them. When it may send (no
 *     backoff), it records each request's worth already claimed by this
 *     exporter and sends it at once from memory (new_rows); otherwise,
 *     and for the rest of a pass after a failed request, it records them
 *     pending. At most once a second it also looks for incarnations whose
 *     runner died without runner_exit (its pid gone, nothing recorded for
 *     crash_grace_ms), marks them crashed in the buffer and records their
 *     now closed spans: a killed runner's spans reach the collector
 *     without waiting for the task's next runner.
 *   Sending: the spans not sent at discovery are claimed (up to
 *     max_batch_spans and max_request_bytes), encoded again from their
 *     tasks (reencode; rows of older buffers are sent from their stored
 *     bytes), grouped by resource, framed into one request and POSTed
 *     (transport); then settled: 2xx -> delivered (partial_success
 *     counted); 429/502/503/504, connection errors, timeouts -> pending
 *     again, not claimable before the backoff delay (Retry-After when
 *     given, else exponential with jitter); 413 -> halve the batch and
 *     retry at once; any other answer -> rejected, with the reason, kept
 *     in the buffer. A claimed span that can no longer be built (its
 *     task's events deleted) is rejected with that reason.
 *   Ordering: spans go out in the order they closed (export row id),
 *     except that the spans a pass finds go out before older pending ones
 *     (left by a failed request or by another process), which the claims
 *     then send oldest first.
 *   Worker: with a background thread, a pass runs every schedule delay,
 *     when woken (enough spans closed, a flush) and at close. Without one,
 *     taskspan_flush() runs the passes in the caller's thread.
 *   Flush: discovery, then passes until every span recorded by that
 *     discovery is settled, or the deadline. Backoff is honoured, so a
 *     flush against a collector that is down waits and then times out.
 *   Shutdown: the closing thread sets stop and waits up to drain_ms for the
 *     worker's last flush; then it sets abort, which ends any request in
 *     flight within about a second (curl's progress callback), and joins.
 *     What is not delivered stays pending in the buffer for the next
 *     exporter: close never deletes anything and never hangs.
 */
#include "exporter.h"

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
#define CLAIM_MARGIN_MS 10000
#define CONTENDED_WAIT_MS 100 /* another exporter holds the claims */
#define CRASH_SCAN_INTERVAL_MS 1000
#define CRASH_SCAN_MAX 256 /* candidates looked at per scan */

/* A built span by its key, for finding the spans a claim names. */
typedef struct span_ref {
    uint8_t key[TASKSPAN__SPAN_KEY_LEN];
    const taskspan_span *span;
} span_ref;

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

    /* The spans of the task last encoded again (reencode): the claims of
     * a big task's spans come in many batches. Dropped after each pass. */
    char *re_task;
    taskspan_spans *re_spans;
    span_ref *re_refs; /* sorted by key */
    size_t re_n;

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

/* ---- discovery ----------------------------------------------------------- */

/* Newly closed spans, encoded, waiting to be written in one transaction:
 * a transaction per task cost more than the inserts themselves. Strings
 * and ids live in the arena, bodies are malloc'd.
 *
 * When the exporter may send (no backoff, no abort), the rows are a
 * request's worth (the batch size, max_request_bytes) and are recorded
 * already claimed by this exporter, then sent from memory at once: the
 * bytes are never read back from the buffer. Otherwise they are recorded
 * pending, unclaimed, in larger transactions, and their bodies dropped:
 * a claim encodes them again when their turn comes. */
#define ROWS_MAX 4096
#define ROWS_MAX_BYTES (8u << 20)

typedef struct new_rows {
    taskspan__new_span *rows;
    uint8_t **bodies; /* beside rows; NULL when not sending */
    size_t n, cap, bytes;
    taskspan__arena arena;
    bool may_send;       /* the caller allows sending */
    bool sending;        /* this set of rows is a request to send */
    int64_t deadline_ns; /* of a request sent (monotonic) */
} new_rows;

static void rows_clear(new_rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->bodies[i]);
    }
    r->n = 0;
    r->bytes = 0;
    r->sending = false;
    taskspan__arena_free(&r->arena);
}

static void rows_free(new_rows *r)
{
    rows_clear(r);
    free(r->rows);
    free(r->bodies);
    memset(r, 0, sizeof *r);
}

static int64_t lease_ns(const taskspan__exporter *ex)
{
    int64_t lease_ms = ex->cfg->timeout_ms > 0 ? ex->cfg->timeout_ms : 600000;
    return (lease_ms + CLAIM_MARGIN_MS) * 1000000;
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

static taskspan_code post_batch(taskspan__exporter *ex, taskspan__claim *c,
                                int64_t deadline_ns, char *err, size_t errlen);

/* Record the rows claimed by this exporter and send them: the rows another
 * exporter recorded first (ids[i] == 0) are its to send. Bodies move into
 * the batch. */
static taskspan_code rows_send(taskspan__exporter *ex, new_rows *r, char *err,
                               size_t errlen)
{
    taskspan__claim c = {0};
    int64_t *ids = calloc(r->n, sizeof *ids);
    c.ids = calloc(r->n, sizeof *c.ids);
    c.resource_ids = calloc(r->n, sizeof *c.resource_ids);
    c.bodies = calloc(r->n, sizeof *c.bodies);
    c.body_lens = calloc(r->n, sizeof *c.body_lens);
    taskspan_code rc = TASKSPAN_E_NOMEM;
    if (ids != NULL && c.ids != NULL && c.resource_ids != NULL &&
        c.bodies != NULL && c.body_lens != NULL) {
        rc = ex->store_ops->spans_add(ex->store, r->rows, r->n, ex->owner,
                                      taskspan__now_ns() + lease_ns(ex), ids,
                                      err, errlen);
    }
    for (size_t i = 0; rc == TASKSPAN_OK && i < r->n; i++) {
        if (ids[i] == 0) {
            continue;
        }
        c.ids[c.n] = ids[i];
        c.resource_ids[c.n] = r->rows[i].resource_id;
        c.bodies[c.n] = r->bodies[i];
        c.body_lens[c.n] = r->rows[i].body_len;
        c.total_bytes += r->rows[i].body_len;
        r->bodies[i] = NULL;
        c.n++;
    }
    if (rc == TASKSPAN_OK && c.n > 0) {
        uint64_t failures = atomic_load(&ex->requests_failed);
        rc = post_batch(ex, &c, r->deadline_ns, err, errlen);
        /* After a failure (a 413 puts the batch back at once), the rest of
         * the pass only records: the claims then send the spans in the
         * order they closed, the put-back ones first. */
        if (atomic_load(&ex->requests_failed) != failures) {
            r->may_send = false;
        }
    }
    taskspan__claim_free(&c);
    free(ids);
    return rc;
}

/* Write the rows waiting, and send them when they are a request; they are
 * then known to every exporter. */
static taskspan_code rows_flush(taskspan__exporter *ex, new_rows *r, char *err,
                                size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    if (r->n > 0 && r->sending && !atomic_load(&ex->abort)) {
        rc = rows_send(ex, r, err, errlen);
    } else if (r->n > 0) {
        rc = ex->store_ops->spans_add(ex->store, r->rows, r->n, NULL, 0, NULL,
                                      err, errlen);
    }
    rows_clear(r);
    return rc;
}

/* Whether the rows waiting must be written before a span of len bytes
 * joins them: a request holds at most the batch size and (but for a
 * single span) max_request_bytes; a write without sending, ROWS_MAX. */
static bool rows_full(const taskspan__exporter *ex, const new_rows *r,
                      size_t len)
{
    if (r->n == 0) {
        return false;
    }
    if (r->sending) {
        return r->n >= batch_max(ex) ||
               r->bytes + len > ex->cfg->max_request_bytes;
    }
    return r->n >= ROWS_MAX || r->bytes >= ROWS_MAX_BYTES;
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
    r->cap = cap;
    return TASKSPAN_OK;
}

/* Append the span, encoded; body is taken over (and dropped when the rows
 * are not to be sent). */
static taskspan_code rows_push(taskspan__exporter *ex, new_rows *r,
                               const taskspan_span *s, const char *task,
                               bool trace_shared, int64_t resource_id,
                               uint8_t *body, size_t body_len)
{
    if (r->n == 0) {
        r->sending = r->may_send && may_send_now(ex);
    }
    if (r->n == r->cap && rows_grow(r) != TASKSPAN_OK) {
        free(body);
        return TASKSPAN_E_NOMEM;
    }
    uint8_t *key = taskspan__arena_alloc(&r->arena, TASKSPAN__SPAN_KEY_LEN);
    char *t = taskspan__arena_strdup(&r->arena, task);
    char *name = taskspan__arena_strdup(&r->arena, s->name);
    if (key == NULL || t == NULL || name == NULL) {
        free(body);
        return TASKSPAN_E_NOMEM;
    }
    memcpy(key, s->trace_id, 16);
    memcpy(key + 16, s->span_id, 8);
    r->rows[r->n] = (taskspan__new_span){
        .trace_id = key,
        .span_id = key + 16,
        .task_id = t,
        .name = name,
        .resource_id = resource_id,
        .end_ns = s->end_ns,
        .body_len = body_len,
        .trace_shared = trace_shared,
    };
    if (!r->sending) {
        free(body);
        body = NULL;
    }
    r->bodies[r->n++] = body;
    r->bytes += body_len;
    return TASKSPAN_OK;
}

/* Append the new spans of task (read by taskspan__task_news_read) to
 * *rows, written (and sent) when a batch is waiting (the caller writes the
 * rest: rows_flush). Takes the bodies it appends. */
static taskspan_code push_news(taskspan__exporter *ex, const char *task,
                               taskspan__task_news *news, new_rows *rows,
                               char *err, size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    for (size_t k = 0; rc == TASKSPAN_OK && k < news->n; k++) {
        size_t i = news->index[k];
        if (rows_full(ex, rows, news->lens[k])) {
            rc = rows_flush(ex, rows, err, errlen);
        }
        if (rc == TASKSPAN_OK) {
            uint8_t *body = news->bodies[k];
            news->bodies[k] = NULL; /* rows_push takes it */
            rc = rows_push(ex, rows, taskspan_spans_get(news->spans, i), task,
                           news->trace_shared,
                           taskspan__spans_resource_id(news->spans, i), body,
                           news->lens[k]);
        }
    }
    return rc;
}

/* What news says about its task, to mark it examined once its spans are
 * recorded. */
static taskspan__examined examined(const char *task,
                                   const taskspan__task_news *news)
{
    taskspan__examined m = {
        .task_id = task, .upto_seq = news->upto_seq, .open = news->open};
    return m;
}

/* Encode the closed, not yet known spans of one task into *rows, in this
 * thread, through the exporter's connection. OUT: *mark. */
static taskspan_code discover_task(taskspan__exporter *ex, const char *task,
                                   new_rows *rows, taskspan__examined *mark,
                                   char *err, size_t errlen)
{
    taskspan__task_news news;
    taskspan_code rc = taskspan__task_news_read(
        &news, ex->store_ops, ex->store, task, &ex->cfg->limits, err, errlen);
    if (rc == TASKSPAN_OK) {
        *mark = examined(task, &news);
        rc = push_news(ex, task, &news, rows, err, errlen);
        taskspan__task_news_free(&news);
    }
    return rc;
}

/* Close the incarnations whose runner died without runner_exit: the
 * process is gone and the task has been silent for the grace period. The
 * mark is one row in the buffer (recovery.h), checked against the task's
 * last seq in the same transaction, so a runner_spawn racing with us wins
 * and nothing is closed twice. Then record the spans that closed. */
static taskspan_code close_crashed(taskspan__exporter *ex, bool may_send,
                                   int64_t deadline_ns, char *err,
                                   size_t errlen)
{
    const taskspan__recovery_ops *ops = ex->store_ops->recovery;
    taskspan__crash_candidate *c = NULL;
    taskspan__examined *marks = NULL;
    size_t n = 0, n_marks = 0;
    int64_t mono = taskspan__mono_ns();
    new_rows rows = {.may_send = may_send, .deadline_ns = deadline_ns};

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
            rc = discover_task(ex, c[i].task_id, &rows, &marks[n_marks++], err,
                               errlen);
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = rows_flush(ex, &rows, err, errlen);
    }
    /* Its spans recorded, a task whose last open span the crash closed
     * leaves the live ones. */
    if (rc == TASKSPAN_OK && n_marks > 0) {
        rc = ex->store_ops->tasks_examined(ex->store, marks, n_marks, err,
                                           errlen);
    }
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

/* Record the newly closed spans of every task that changed, stopping at
 * deadline_ns (monotonic) or an abort: a large backlog must not hold up a
 * close or a flush. With may_send, each batch of them is sent as soon as
 * it is recorded (new_rows). The tasks processed are marked examined once
 * their spans are recorded; a pass cut short leaves the rest to the
 * next. */
static taskspan_code discover(taskspan__exporter *ex, int64_t deadline_ns,
                              bool may_send, char *err, size_t errlen)
{
    char **tasks = NULL;
    size_t n = 0, done = 0;
    taskspan__examined *marks = NULL;
    new_rows rows = {.may_send = may_send, .deadline_ns = deadline_ns};
    taskspan__export_reader *reader = NULL;
    taskspan_code rc = ex->store_ops->changed_tasks(ex->store, &tasks, &n, err,
                                                    errlen);
    if (rc == TASKSPAN_OK && n > 0 &&
        (marks = calloc(n, sizeof *marks)) == NULL) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    /* Two tasks or more: read ahead on the reader's thread while this one
     * records and sends (export_reader.h); else, or should it not start,
     * here. */
    if (rc == TASKSPAN_OK && n >= 2 && reader_store(ex) != NULL) {
        (void)taskspan__export_reader_start(&reader, ex->store_ops,
                                            ex->reader_store, tasks, n,
                                            &ex->cfg->limits, &ex->abort);
    }
    for (; rc == TASKSPAN_OK && done < n; done++) {
        if (atomic_load(&ex->abort) || taskspan__mono_ns() >= deadline_ns) {
            break;
        }
        if (reader == NULL) {
            rc = discover_task(ex, tasks[done], &rows, &marks[done], err,
                               errlen);
            continue;
        }
        taskspan__task_news news;
        rc = taskspan__export_reader_next(reader, &news, err, errlen);
        if (rc == TASKSPAN_OK) {
            marks[done] = examined(tasks[done], &news);
            rc = push_news(ex, tasks[done], &news, &rows, err, errlen);
        }
        taskspan__task_news_free(&news);
    }
    taskspan__export_reader_stop(reader);
    /* Written before their tasks are marked examined. */
    if (rc == TASKSPAN_OK) {
        rc = rows_flush(ex, &rows, err, errlen);
    }
    rows_free(&rows);
    if (rc == TASKSPAN_OK && done > 0) {
        rc = ex->store_ops->tasks_examined(ex->store, marks, done, err,
                                           errlen);
    }
    if (rc == TASKSPAN_OK && done == n) {
        rc = close_crashed(ex, may_send, deadline_ns, err, errlen);
    }
    free(marks);
    for (size_t i = 0; i < n; i++) {
        free(tasks[i]);
    }
    free(tasks);
    return rc;
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

/* ---- encoding again ------------------------------------------------------ */

/* A span's bytes are not stored (docs/export.md): a span claimed again
 * (after a failed request, an expired claim, a previous process's crash)
 * is encoded again from its task. The encoding is a pure function of the
 * task's events and crash marks, which never change for a closed span, and
 * of the span limits, so the bytes are those of the first encoding. */

static int ref_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TASKSPAN__SPAN_KEY_LEN);
}

static void re_cache_free(taskspan__exporter *ex)
{
    free(ex->re_task);
    taskspan_spans_free(ex->re_spans);
    free(ex->re_refs);
    ex->re_task = NULL;
    ex->re_spans = NULL;
    ex->re_refs = NULL;
    ex->re_n = 0;
}

/* Load and build task into the cache. TASKSPAN_E_NOT_FOUND when the task
 * has no event left. */
static taskspan_code re_cache_load(taskspan__exporter *ex, const char *task,
                                   char *err, size_t errlen)
{
    taskspan__task_events te;

    re_cache_free(ex);
    taskspan_code rc = ex->store_ops->load_task(ex->store, task, &te, err,
                                                errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    rc = taskspan__spans_build(&ex->re_spans, task, &te);
    taskspan__task_events_free(&te);
    size_t n = rc == TASKSPAN_OK ? taskspan_spans_count(ex->re_spans) : 0;
    ex->re_task = rc == TASKSPAN_OK ? strdup(task) : NULL;
    ex->re_refs = n > 0 ? calloc(n, sizeof *ex->re_refs) : NULL;
    if (rc == TASKSPAN_OK &&
        (ex->re_task == NULL || (n > 0 && ex->re_refs == NULL))) {
        rc = TASKSPAN_E_NOMEM;
    }
    if (rc != TASKSPAN_OK) {
        re_cache_free(ex);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const taskspan_span *sp = taskspan_spans_get(ex->re_spans, i);
        memcpy(ex->re_refs[i].key, sp->trace_id, 16);
        memcpy(ex->re_refs[i].key + 16, sp->span_id, 8);
        ex->re_refs[i].span = sp;
    }
    qsort(ex->re_refs, n, sizeof *ex->re_refs, ref_cmp);
    ex->re_n = n;
    return TASKSPAN_OK;
}

/* The closed span of task with key, from the cache (loaded when it holds
 * another task; loaded again once when the span is not there or still
 * open: the cache may predate the events that closed it). NULL when the
 * task no longer yields it. */
static taskspan_code re_find(taskspan__exporter *ex, const char *task,
                             const uint8_t *key, const taskspan_span **out,
                             char *err, size_t errlen)
{
    *out = NULL;
    for (int round = 0; round < 2; round++) {
        if (round == 1 || ex->re_task == NULL ||
            strcmp(ex->re_task, task) != 0) {
            taskspan_code rc = re_cache_load(ex, task, err, errlen);
            if (rc == TASKSPAN_E_NOT_FOUND) {
                return TASKSPAN_OK;
            }
            if (rc != TASKSPAN_OK) {
                return rc;
            }
        }
        const span_ref *r = ex->re_n > 0
                                ? bsearch(key, ex->re_refs, ex->re_n,
                                          sizeof *ex->re_refs, ref_cmp)
                                : NULL;
        if (r != NULL && !r->span->is_open) {
            *out = r->span;
            return TASKSPAN_OK;
        }
    }
    return TASKSPAN_OK;
}

/* Encode claimed row i again. *out_gone when its span can no longer be
 * built (its task pruned by hand, its events edited). */
static taskspan_code re_encode_row(taskspan__exporter *ex, taskspan__claim *c,
                                   size_t i, bool *out_gone, char *err,
                                   size_t errlen)
{
    const taskspan_span *sp = NULL;
    size_t len = 0;

    *out_gone = false;
    taskspan_code rc = re_find(ex, c->task_ids[i],
                               c->keys + i * TASKSPAN__SPAN_KEY_LEN, &sp, err,
                               errlen);
    if (rc != TASKSPAN_OK || sp == NULL) {
        *out_gone = rc == TASKSPAN_OK;
        return rc;
    }
    rc = taskspan__encode_span(&c->bodies[i], &len, sp, &ex->cfg->limits);
    if (rc != TASKSPAN_OK) {
        return taskspan__fail(err, errlen, rc, "encoding span %s of task %s",
                              sp->name, c->task_ids[i]);
    }
    if (c->body_lens[i] != 0 && len != c->body_lens[i]) {
        /* Only other span limits (OTEL_SPAN_*_LIMIT) or another version
         * of the encoder can do this: sent anyway (at least once), and
         * said, since a receiver then holds two versions of the span. */
        char line[TASKSPAN__MSG_SIZE];
        snprintf(line, sizeof line,
                 "span %.64s of task %.64s encoded again to %zu bytes, "
                 "first to %zu: do the exporters' span limits differ?",
                 sp->name, c->task_ids[i], len, c->body_lens[i]);
        note(ex, line);
    }
    c->total_bytes += len - c->body_lens[i];
    c->body_lens[i] = len;
    return TASKSPAN_OK;
}

/* Drop row i from the claim (its span was settled apart). */
static void claim_drop(taskspan__claim *c, size_t i)
{
    free(c->bodies[i]);
    free(c->task_ids[i]);
    c->total_bytes -= c->body_lens[i];
    size_t rest = c->n - i - 1;
    memmove(&c->ids[i], &c->ids[i + 1], rest * sizeof *c->ids);
    memmove(&c->resource_ids[i], &c->resource_ids[i + 1],
            rest * sizeof *c->resource_ids);
    memmove(&c->bodies[i], &c->bodies[i + 1], rest * sizeof *c->bodies);
    memmove(&c->body_lens[i], &c->body_lens[i + 1],
            rest * sizeof *c->body_lens);
    memmove(&c->task_ids[i], &c->task_ids[i + 1], rest * sizeof *c->task_ids);
    memmove(c->keys + i * TASKSPAN__SPAN_KEY_LEN,
            c->keys + (i + 1) * TASKSPAN__SPAN_KEY_LEN,
            rest * TASKSPAN__SPAN_KEY_LEN);
    c->n--;
}

#define GONE_REASON                                                           \
    "its task's events are gone (pruned by hand?): the span can no "          \
    "longer be encoded"

/* Give every claimed row without stored bytes its encoding, a task at a
 * time (each task is loaded once). A span that can no longer be built is
 * settled rejected, with the reason, and dropped from the claim: it must
 * not hold up the spans after it. */
static taskspan_code reencode(taskspan__exporter *ex, taskspan__claim *c,
                              char *err, size_t errlen)
{
    bool *gone = calloc(c->n ? c->n : 1, sizeof *gone);
    if (gone == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    taskspan_code rc = TASKSPAN_OK;
    for (size_t i = 0; rc == TASKSPAN_OK && i < c->n; i++) {
        for (size_t j = i; rc == TASKSPAN_OK && j < c->n; j++) {
            if (c->bodies[j] == NULL && !gone[j] &&
                strcmp(c->task_ids[j], c->task_ids[i]) == 0) {
                rc = re_encode_row(ex, c, j, &gone[j], err, errlen);
            }
        }
    }
    for (size_t i = c->n; rc == TASKSPAN_OK && i-- > 0;) {
        if (!gone[i]) {
            continue;
        }
        atomic_fetch_add(&ex->spans_rejected, 1);
        rc = ex->store_ops->settle(ex->store, ex->owner, &c->ids[i], 1,
                                   TASKSPAN__SPAN_REJECTED, GONE_REASON, 0,
                                   err, errlen);
        note(ex, GONE_REASON);
        claim_drop(c, i);
    }
    free(gone);
    return rc;
}

/* ---- one request --------------------------------------------------------- */

/* Frame the claimed spans into one request, one group per resource. */
static taskspan_code build_request(taskspan__exporter *ex,
                                   const taskspan__claim *c, uint8_t **out,
                                   size_t *out_len, char *err, size_t errlen)
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
                lens[k++] = c->body_lens[j];
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

/* Settle a batch after a 2xx. */
static taskspan_code delivered(taskspan__exporter *ex,
                               const taskspan__claim *c,
                               const taskspan__http_result *r, char *err,
                               size_t errlen)
{
    int64_t rejected = 0;
    char msg[200];
    /* A 2xx means the collector took the request; an unreadable body does
     * not change that, so the spans are delivered either way. */
    if (taskspan__decode_response(&rejected, msg, sizeof msg, r->body,
                                  r->body_len) != TASKSPAN_OK) {
        note(ex, "the collector's 2xx response body does not parse");
    }
    taskspan_code rc = ex->store_ops->settle(ex->store, ex->owner, c->ids,
                                             c->n, TASKSPAN__SPAN_DELIVERED,
                                             NULL, 0, err, errlen);
    atomic_fetch_add(&ex->requests_ok, 1);
    atomic_fetch_add(&ex->spans_delivered, c->n);
    if (rejected > 0) {
        char line[TASKSPAN__MSG_SIZE];
        atomic_fetch_add(&ex->partial_rejected, (uint64_t)rejected);
        snprintf(line, sizeof line, "collector rejected %lld of %zu spans: %s",
                 (long long)rejected, c->n, msg);
        note(ex, line);
    }
    ex->failures = 0;
    ex->next_attempt_ns = 0;
    return rc;
}

/* Settle a batch after an error answer or no answer. */
static taskspan_code failed(taskspan__exporter *ex, const taskspan__claim *c,
                            const taskspan__http_result *r, char *err,
                            size_t errlen)
{
    char detail[200] = "", line[2 * TASKSPAN__MSG_SIZE];
    int64_t info_ms = -1;

    atomic_fetch_add(&ex->requests_failed, 1);
    if (r->status >= 400 && r->body_len > 0) {
        taskspan__decode_status(detail, sizeof detail, &info_ms, r->body,
                                r->body_len);
    }
    snprintf(line, sizeof line, "%s%s%s", r->message, detail[0] ? ": " : "",
             detail);
    note(ex, line);
    if (atomic_load(&ex->abort)) {
        /* Cut off at shutdown: put back, claimable at once by the next. */
        return ex->store_ops->settle(ex->store, ex->owner, c->ids, c->n,
                                     TASKSPAN__SPAN_PENDING, NULL, 0, err,
                                     errlen);
    }
    if (r->status == 413 && c->n > 1) {
        /* Too large for this collector: smaller batches, right away. */
        ex->batch_cap = c->n / 2;
        return ex->store_ops->settle(ex->store, ex->owner, c->ids, c->n,
                                     TASKSPAN__SPAN_PENDING, NULL, 0, err,
                                     errlen);
    }
    if (!r->retryable) {
        atomic_fetch_add(&ex->spans_rejected, c->n);
        return ex->store_ops->settle(ex->store, ex->owner, c->ids, c->n,
                                     TASKSPAN__SPAN_REJECTED, line, 0, err,
                                     errlen);
    }
    ex->failures++;
    int64_t delay = backoff_ms(ex, r->retry_after_ms >= 0 ? r->retry_after_ms
                                                          : info_ms);
    ex->next_attempt_ns = taskspan__mono_ns() + delay * 1000000;
    /* The claim table is shared: other exporters of the buffer wait too. */
    return ex->store_ops->settle(
        ex->store, ex->owner, c->ids, c->n, TASKSPAN__SPAN_PENDING, line,
        taskspan__now_ns() + delay * 1000000, err, errlen);
}

/* Frame c into one request, POST it, the request ending by deadline_ns
 * (monotonic; INT64_MAX: only the request timeout), and settle the batch
 * by the answer. c is claimed by this exporter. */
static taskspan_code post_batch(taskspan__exporter *ex, taskspan__claim *c,
                                int64_t deadline_ns, char *err, size_t errlen)
{
    taskspan__http_result r;
    uint8_t *body = NULL;
    size_t body_len = 0;

    taskspan_code rc = build_request(ex, c, &body, &body_len, err, errlen);
    if (rc != TASKSPAN_OK) {
        /* Cannot happen short of memory: put the spans back. */
        ex->store_ops->settle(ex->store, ex->owner, c->ids, c->n,
                              TASKSPAN__SPAN_PENDING, NULL, 0, err, errlen);
        return rc;
    }
    int64_t left_ms = (deadline_ns - taskspan__mono_ns()) / 1000000;
    ex->transport_ops->limit(ex->transport, deadline_ns == INT64_MAX ? 0
                                            : left_ms > 1 ? (int)left_ms
                                                          : 1);
    ex->transport_ops->post(ex->transport, body, body_len, &ex->abort, &r);
    rc = r.code == TASKSPAN_OK ? delivered(ex, c, &r, err, errlen)
                               : failed(ex, c, &r, err, errlen);
    if (r.code == TASKSPAN_OK && ex->batch_cap < ex->cfg->max_batch_spans) {
        ex->batch_cap *= 2; /* grow back after a 413 */
    }
    taskspan__http_result_free(&r);
    free(body);
    return rc;
}

/* Claim and send one batch, the request ending by deadline_ns (monotonic;
 * INT64_MAX: only the request timeout). The spans claimed without their
 * bytes in the buffer are encoded again first (reencode). *out_sent =
 * spans claimed. */
static taskspan_code send_one(taskspan__exporter *ex, int64_t deadline_ns,
                              size_t *out_sent, char *err, size_t errlen)
{
    taskspan__claim c;

    *out_sent = 0;
    int64_t now = taskspan__now_ns();
    taskspan_code rc = ex->store_ops->claim(
        ex->store, ex->owner, now, now + lease_ns(ex), batch_max(ex),
        ex->cfg->max_request_bytes, &c, err, errlen);
    if (rc != TASKSPAN_OK || c.n == 0) {
        taskspan__claim_free(&c); /* the id array exists even when empty */
        return rc;
    }
    *out_sent = c.n;
    rc = reencode(ex, &c, err, errlen);
    if (rc != TASKSPAN_OK) {
        ex->store_ops->settle(ex->store, ex->owner, c.ids, c.n,
                              TASKSPAN__SPAN_PENDING, NULL, 0, err, errlen);
    } else if (c.n > 0) {
        rc = post_batch(ex, &c, deadline_ns, err, errlen);
    }
    taskspan__claim_free(&c);
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

/* One pass: discover, then send until nothing is claimable or backoff. */
static taskspan_code pass(taskspan__exporter *ex, char *err, size_t errlen)
{
    size_t sent = 0;
    taskspan_code rc = discover(ex, INT64_MAX, true, err, errlen);
    while (rc == TASKSPAN_OK && !atomic_load(&ex->abort) &&
           taskspan__mono_ns() >= ex->next_attempt_ns) {
        rc = send_one(ex, INT64_MAX, &sent, err, errlen);
        if (sent == 0) {
            break;
        }
    }
    re_cache_free(ex); /* one task's spans: not kept between passes */
    prune_retained(ex);
    return rc;
}

/* TASKSPAN_E_TIMEOUT, saying how many spans (up to row upto) wait and
 * why. */
static taskspan_code not_delivered(const taskspan__exporter *ex, int64_t upto,
                                   const char *when, char *err, size_t errlen)
{
    int64_t pending = 0;
    char ignored[TASKSPAN__MSG_SIZE];
    ex->store_ops->pending_upto(ex->store, upto, &pending, ignored,
                                sizeof ignored);
    return taskspan__fail(
        err, errlen, TASKSPAN_E_TIMEOUT, "%lld spans not delivered %s%s%.160s",
        (long long)pending, when, ex->last_failure[0] ? "; last error: " : "",
        ex->last_failure);
}

/* Deliver everything closed now, until deadline (monotonic ns). With
 * give_up set (at close), stop at the first failed request: the spans are
 * safe in the buffer, and a runner must not wait out a collector's outage
 * at exit. */
static taskspan_code drain_until(taskspan__exporter *ex, int64_t deadline_ns,
                                 bool give_up, char *err, size_t errlen)
{
    int64_t target = 0;
    bool pending = false;
    size_t sent = 0;
    taskspan_code rc = discover(ex, deadline_ns, true, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = ex->store_ops->last_span_row(ex->store, &target, err, errlen);
    }
    while (rc == TASKSPAN_OK) {
        rc = ex->store_ops->any_pending_upto(ex->store, target, &pending, err,
                                             errlen);
        if (rc != TASKSPAN_OK || !pending) {
            break;
        }
        int64_t now = taskspan__mono_ns();
        if (now >= deadline_ns || atomic_load(&ex->abort)) {
            return not_delivered(ex, target, "in time", err, errlen);
        }
        if (now < ex->next_attempt_ns) {
            /* Closing: no waiting out a backoff (nap would not sleep). */
            if (give_up || atomic_load(&ex->stopping)) {
                return not_delivered(ex, target, "at close", err, errlen);
            }
            nap(ex, ex->next_attempt_ns < deadline_ns ? ex->next_attempt_ns
                                                      : deadline_ns);
            continue;
        }
        rc = send_one(ex, deadline_ns, &sent, err, errlen);
        if (rc == TASKSPAN_OK && sent == 0 && atomic_load(&ex->stopping)) {
            int64_t held = 0;
            char ignored[TASKSPAN__MSG_SIZE];
            ex->store_ops->pending_upto(ex->store, target, &held, ignored,
                                        sizeof ignored);
            return taskspan__fail(err, errlen, TASKSPAN_E_TIMEOUT,
                                  "%lld spans held by other exporters",
                                  (long long)held);
        }
        if (rc == TASKSPAN_OK && sent == 0) {
            /* Claimed by another exporter, or waiting out a backoff that
             * another exporter set: look again shortly. */
            int64_t t = now + CONTENDED_WAIT_MS * 1000000LL;
            nap(ex, t < deadline_ns ? t : deadline_ns);
        }
    }
    if (rc == TASKSPAN_OK && !give_up) {
        prune_retained(ex); /* all delivered: a good moment */
    }
    return rc;
}

static taskspan_code drain(taskspan__exporter *ex, int64_t deadline_ns,
                           bool give_up, char *err, size_t errlen)
{
    taskspan_code rc = drain_until(ex, deadline_ns, give_up, err, errlen);
    re_cache_free(ex); /* one task's spans: not kept between drains */
    return rc;
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
    re_cache_free(ex);
    for (size_t i = 0; i < ex->n_resources; i++) {
        free(ex->resources[i].bytes);
    }
    free(ex->resources);
    pthread_cond_destroy(&ex->cond);
    pthread_mutex_destroy(&ex->lock);
    free(ex);
}
