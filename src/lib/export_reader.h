/*
 * export_reader.h -- the exporter's discovery, read ahead: the new spans
 * of the tasks a pass found, read from the buffer, built and encoded on a
 * thread and a connection of their own while the exporter's thread
 * records and sends the ones before them.
 */
#ifndef TASKSPAN_EXPORT_READER_H
#define TASKSPAN_EXPORT_READER_H

#include "config.h"
#include "internal.h"

#include <stdatomic.h>

/* The closed spans of one task not settled yet, in close order, each
 * with its encoding (encode_span.c). */
typedef struct taskspan__task_news {
    taskspan_spans *spans; /* the task's spans: news refer to them */
    bool trace_shared;     /* the task's trace came with it: others' too */
    size_t n;
    size_t *index;    /* span index[k] of spans ... */
    uint8_t **bodies; /* ... its encoding (body_blocks.h; owned until taken) */
    size_t *lens;
    /* The task's export_done once span k and every one before it in
     * close order are settled (past the spans settled already, by rows
     * older versions left, that follow it). */
    int64_t *done_after;
    size_t bytes;      /* sum of lens */
    int64_t upto_seq;  /* the task's last event read (0: none) */
    bool open;         /* a span of the task is still open */
    bool gone;         /* the task has no events (pruned meanwhile) */
    int64_t closed;    /* its closed spans */
    int64_t done_read; /* its export_done, read with its events */
    int64_t epoch;     /* its export_epoch, read with them */
    /* done_read past the spans that rows settle before the first one to
     * send (older versions' delivered rows): settled with nothing sent. */
    int64_t done_rows;
} taskspan__task_news;

/* Read task through store (a connection of ops), build its spans and
 * encode the closed ones not settled yet. A task that is gone (pruned
 * meanwhile) has none: TASKSPAN_OK with n == 0 and gone set.
 * OUT: *out, release with taskspan__task_news_free(). Thread-safe for
 * distinct stores. */
taskspan_code taskspan__task_news_read(taskspan__task_news *out,
                                       const taskspan__store_ops *ops,
                                       void *store, const char *task,
                                       const taskspan__limits *limits,
                                       char *err, size_t errlen);

/* Free what is left of news (bodies set to NULL were taken). */
void taskspan__task_news_free(taskspan__task_news *news);

typedef struct taskspan__export_reader taskspan__export_reader;

/* Start a thread that reads the news of tasks[0..n) in that order through
 * store (its own connection: not used by anyone else until stop), at most
 * a few tasks and READER_AHEAD_BYTES of encodings ahead of the consumer.
 * tasks, limits and abort are borrowed until taskspan__export_reader_stop.
 * The thread stops early when *abort is set. */
taskspan_code taskspan__export_reader_start(taskspan__export_reader **out,
                                            const taskspan__store_ops *ops,
                                            void *store, char *const *tasks,
                                            size_t n,
                                            const taskspan__limits *limits,
                                            atomic_bool *abort);

/* The news of the next task of the list. While they are not read yet,
 * the caller reads tasks of the list itself through own_store (a
 * connection of its own; NULL: it waits), the next one not claimed by
 * the thread, so that both threads read when reading is the slower half.
 * Returns what reading that task returned (its message in err); OUT:
 * *out, the caller's to free. Not to be called past the n-th task. */
taskspan_code taskspan__export_reader_next(taskspan__export_reader *r,
                                           void *own_store,
                                           taskspan__task_news *out, char *err,
                                           size_t errlen);

/* Stop the thread (it finishes the task it is reading), join it and free
 * r with every task read but not taken. NULL is a no-op. */
void taskspan__export_reader_stop(taskspan__export_reader *r);

#endif
