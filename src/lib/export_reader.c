/*
 * export_reader.c -- the exporter's discovery, read ahead (export_reader.h).
 *
 * Why: reading a task's events back, building its spans and encoding them
 * is most of an export drain's CPU; leasing, framing, sending and settling
 * them the rest, about a quarter of it since schema 8. The reader does the
 * reading on a second thread, with its own SQLite connection, and the
 * consumer (the exporter's thread) reads too whenever the task it wants
 * is not ready yet, so that on two cores both are busy with the slower
 * half.
 *
 * DESIGN
 *   Queue: a ring of READER_SLOTS results, task i in slot i % READER_SLOTS.
 *   Tasks are claimed in list order, by the thread or by the consumer,
 *   each reading with its own connection; a task may be claimed while
 *   fewer than READER_SLOTS are claimed and not taken, and fewer than
 *   READER_AHEAD_BYTES of encodings wait (a task bigger than that still
 *   goes alone), so memory stays bounded whatever the backlog.
 *   Order: the consumer takes the tasks in list order, so what is sent is
 *   what the pass would have done on one thread.
 *   Errors: a task's read error is its result; the consumer decides (the
 *   pass stops). The thread goes on to the next task either way until
 *   stopped.
 *   Stop: sets a flag and wakes the thread, which finishes the task it is
 *   reading (bounded: one task); every wait is on a condition variable.
 */
#include "export_reader.h"

#include "body_blocks.h"
#include "encode_otlp.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_SLOTS 4
#define READER_AHEAD_BYTES (8u << 20)

/* ---- one task ------------------------------------------------------------ */

/* The largest task whose events are kept until its spans are encoded,
 * rather than copied into them: about 3 MiB of events. */
#define BORROW_EVENTS_MAX 10000

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TASKSPAN__SPAN_KEY_LEN);
}

static bool span_known(const uint8_t *keys, size_t n, const taskspan_span *s)
{
    uint8_t key[TASKSPAN__SPAN_KEY_LEN];
    memcpy(key, s->trace_id, 16);
    memcpy(key + 16, s->span_id, 8);
    return n > 0 && bsearch(key, keys, n, sizeof key, key_cmp) != NULL;
}

void taskspan__task_news_free(taskspan__task_news *news)
{
    for (size_t k = 0; k < news->n; k++) {
        taskspan__body_release(news->bodies[k]);
    }
    free(news->index);
    free(news->bodies);
    free(news->lens);
    free(news->done_after);
    taskspan_spans_free(news->spans);
    memset(news, 0, sizeof *news);
}

static taskspan_code news_arrays(taskspan__task_news *out, size_t n)
{
    out->index = malloc(n * sizeof *out->index);
    out->bodies = malloc(n * sizeof *out->bodies);
    out->lens = malloc(n * sizeof *out->lens);
    out->done_after = malloc(n * sizeof *out->done_after);
    return out->index != NULL && out->bodies != NULL && out->lens != NULL &&
                   out->done_after != NULL
               ? TASKSPAN_OK
               : TASKSPAN_E_NOMEM;
}

static uint8_t *body_alloc(void *blocks, size_t len)
{
    return taskspan__body_alloc(blocks, len);
}

/* Encode the closed spans of out->spans that are not settled: past
 * out->done_read in close order, and without a row (known). */
static taskspan_code encode_unsettled(taskspan__task_news *out,
                                      const size_t *order, size_t n_closed,
                                      const uint8_t *known, size_t n_known,
                                      const taskspan__limits *limits,
                                      const char *task, char *err,
                                      size_t errlen)
{
    size_t start = (uint64_t)out->done_read > n_closed
                       ? n_closed
                       : (size_t)out->done_read;
    taskspan_code rc = news_arrays(out,
                                   n_closed - start ? n_closed - start : 1);
    if (rc != TASKSPAN_OK) {
        return taskspan__fail(err, errlen, rc, "out of memory");
    }
    /* The task's bodies share a few blocks, each freed with its last body
     * (by the request that sent it, or by taskspan__task_news_free). */
    taskspan__body_blocks blocks = {NULL};
    const taskspan__body_room room = {body_alloc, taskspan__body_release,
                                      &blocks};
    for (size_t p = start; p < n_closed; p++) {
        const taskspan_span *s = taskspan_spans_get(out->spans, order[p]);
        if (span_known(known, n_known, s)) {
            /* Settled by a row: the span before it settles it too. */
            if (out->n > 0) {
                out->done_after[out->n - 1] = (int64_t)p + 1;
            } else {
                out->done_rows = (int64_t)p + 1;
            }
            continue;
        }
        uint8_t *body = NULL;
        size_t len = 0;
        rc = taskspan__encode_span_in(
            &room, &body, &len, s,
            taskspan__spans_event_wires(out->spans, order[p]), limits);
        if (rc != TASKSPAN_OK) {
            taskspan__body_blocks_end(&blocks);
            return taskspan__fail(
                err, errlen, rc, "encoding span %s of task %s", s->name, task);
        }
        out->index[out->n] = order[p];
        out->bodies[out->n] = body;
        out->lens[out->n] = len;
        out->done_after[out->n++] = (int64_t)p + 1;
        out->bytes += len;
    }
    taskspan__body_blocks_end(&blocks);
    return TASKSPAN_OK;
}

taskspan_code taskspan__task_news_read(taskspan__task_news *out,
                                       const taskspan__store_ops *ops,
                                       void *store, const char *task,
                                       const taskspan__limits *limits,
                                       char *err, size_t errlen)
{
    taskspan__task_events te;
    uint8_t *known = NULL;
    size_t n_known = 0, *order = NULL, n_closed = 0;

    memset(out, 0, sizeof *out);
    taskspan_code rc = (ops->load_export != NULL
                            ? ops->load_export
                            : ops->load_task)(store, task, &te, err, errlen);
    if (rc == TASKSPAN_E_NOT_FOUND) {
        out->gone = true; /* pruned meanwhile */
        return TASKSPAN_OK;
    }
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    out->upto_seq = te.n_events > 0 ? te.events[te.n_events - 1].seq : 0;
    out->done_read = te.export_done > 0 ? te.export_done : 0;
    out->epoch = te.export_epoch;
    out->done_rows = out->done_read;
    /* The spans of a task of up to BORROW_EVENTS_MAX events use its
     * events' strings and wires where they lie, until they are encoded; a
     * larger task's spans copy them, so that its events (tens of MiB for
     * 200,000) can go before the encoding. */
    bool borrow = te.n_events <= BORROW_EVENTS_MAX;
    rc = taskspan__spans_build_wired(&out->spans, task, &te, limits,
                                     borrow ? TASKSPAN__SPANS_BORROW : 0);
    /* The trace id is the context's (which other tasks may have too), or
     * derived from the task's id (spans_build). */
    out->trace_shared = te.has_trace_context;
    if (!borrow) {
        taskspan__task_events_free(&te);
    }
    size_t n = rc == TASKSPAN_OK ? taskspan_spans_count(out->spans) : 0;
    for (size_t i = 0; i < n; i++) {
        out->open = out->open || taskspan_spans_get(out->spans, i)->is_open;
    }
    if (rc == TASKSPAN_OK) {
        rc = taskspan__spans_close_order(out->spans, &order, &n_closed);
    }
    out->closed = (int64_t)n_closed;
    if (rc == TASKSPAN_OK && (uint64_t)out->done_read < n_closed) {
        /* Every span of a task is in the task's one trace. */
        rc = ops->task_span_keys(
            store, task, taskspan_spans_get(out->spans, 0)->trace_id,
            out->trace_shared, &known, &n_known, err, errlen);
    }
    if (rc == TASKSPAN_OK) {
        rc = encode_unsettled(out, order, n_closed, known, n_known, limits,
                              task, err, errlen);
    }
    /* From here on the spans are needed for their names and ids only. */
    taskspan__spans_forget_events(out->spans);
    taskspan__task_events_free(&te);
    free(order);
    free(known);
    if (rc != TASKSPAN_OK) {
        taskspan__task_news_free(out);
    }
    return rc;
}

/* ---- the reader thread --------------------------------------------------- */

typedef enum slot_state { SLOT_EMPTY, SLOT_READING, SLOT_READY } slot_state;

typedef struct slot {
    slot_state state;
    taskspan__task_news news;
    taskspan_code rc;
    char err[TASKSPAN__MSG_SIZE];
} slot;

struct taskspan__export_reader {
    const taskspan__store_ops *ops;
    void *store;
    char *const *tasks;
    size_t n;
    const taskspan__limits *limits;
    atomic_bool *abort;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a slot filled or emptied, or stop */
    slot ring[READER_SLOTS];
    /* Tasks: claimed for reading (by the thread or the consumer), and
     * taken by the consumer; task i uses slot i % READER_SLOTS. */
    size_t claimed, consumed;
    size_t bytes_ahead; /* encodings read, not taken */
    bool stop;
    bool thread_done; /* the thread reads no more */
};

/* Whether the next task may be claimed now (lock held): its slot is free
 * and not too many bytes wait. */
static bool room(const taskspan__export_reader *r)
{
    size_t ahead = r->claimed - r->consumed;
    return r->claimed < r->n &&
           (ahead == 0 ||
            (ahead < READER_SLOTS && r->bytes_ahead < READER_AHEAD_BYTES));
}

/* Claim the next task, read it through store with the lock released, and
 * put it in its slot (lock held on entry and on return). */
static void read_next(taskspan__export_reader *r, void *store)
{
    size_t i = r->claimed++;
    slot *s = &r->ring[i % READER_SLOTS];
    s->state = SLOT_READING;
    pthread_mutex_unlock(&r->lock);
    /* The slot is the reader's until it is marked ready. */
    s->err[0] = '\0';
    s->rc = taskspan__task_news_read(&s->news, r->ops, store, r->tasks[i],
                                     r->limits, s->err, sizeof s->err);
    pthread_mutex_lock(&r->lock);
    s->state = SLOT_READY;
    r->bytes_ahead += s->news.bytes;
    pthread_cond_broadcast(&r->cond);
}

static void *reader_main(void *arg)
{
    taskspan__export_reader *r = arg;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && r->claimed < r->n && !room(r)) {
            pthread_cond_wait(&r->cond, &r->lock);
        }
        if (r->stop || r->claimed >= r->n || atomic_load(r->abort)) {
            break;
        }
        read_next(r, r->store);
    }
    /* Wake a consumer that waits for a task the thread will not read. */
    r->thread_done = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

taskspan_code taskspan__export_reader_start(taskspan__export_reader **out,
                                            const taskspan__store_ops *ops,
                                            void *store, char *const *tasks,
                                            size_t n,
                                            const taskspan__limits *limits,
                                            atomic_bool *abort)
{
    taskspan__export_reader *r = calloc(1, sizeof *r);

    *out = NULL;
    if (r == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    r->ops = ops;
    r->store = store;
    r->tasks = tasks;
    r->n = n;
    r->limits = limits;
    r->abort = abort;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return TASKSPAN_E_NOMEM;
    }
    if (pthread_cond_init(&r->cond, NULL) != 0) {
        pthread_mutex_destroy(&r->lock);
        free(r);
        return TASKSPAN_E_NOMEM;
    }
    /* Created with every signal blocked, so that none meant for the host
     * runs its handler on this thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int created = pthread_create(&r->thread, NULL, reader_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (created != 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return TASKSPAN_E_NOMEM;
    }
    *out = r;
    return TASKSPAN_OK;
}

taskspan_code taskspan__export_reader_next(taskspan__export_reader *r,
                                           void *own_store,
                                           taskspan__task_news *out, char *err,
                                           size_t errlen)
{
    pthread_mutex_lock(&r->lock);
    slot *s = &r->ring[r->consumed % READER_SLOTS];
    while (s->state != SLOT_READY) {
        bool aborted = atomic_load(r->abort);
        if (!aborted && own_store != NULL && room(r)) {
            /* Rather than wait, read a task too: the next one not taken
             * by the thread, maybe this one. */
            read_next(r, own_store);
            continue;
        }
        if (s->state == SLOT_EMPTY && (aborted || r->thread_done)) {
            /* Nobody will read it: only after an abort or a stop. */
            pthread_mutex_unlock(&r->lock);
            memset(out, 0, sizeof *out);
            return taskspan__fail(err, errlen, TASKSPAN_E_TIMEOUT,
                                  "export aborted");
        }
        pthread_cond_wait(&r->cond, &r->lock);
    }
    *out = s->news;
    taskspan_code rc = s->rc;
    if (rc != TASKSPAN_OK) {
        snprintf(err, errlen, "%s", s->err);
    }
    memset(&s->news, 0, sizeof s->news);
    s->state = SLOT_EMPTY;
    r->bytes_ahead -= out->bytes;
    r->consumed++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void taskspan__export_reader_stop(taskspan__export_reader *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    for (size_t i = 0; i < READER_SLOTS; i++) {
        if (r->ring[i].state == SLOT_READY) {
            taskspan__task_news_free(&r->ring[i].news);
        }
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
