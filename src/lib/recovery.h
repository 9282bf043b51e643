/*
 * recovery.h -- the buffer store's work-item, checkpoint and crash state
 * (schema version 3), as an ops table beside taskspan__store_ops, and the
 * recorder hook that runs one recovery transaction.
 *
 * The store functions are primitives: begin/commit/rollback a write
 * transaction, read and write one row, append an event inside the open
 * transaction. recovery.c composes them, so every state change and the
 * event that records it commit together.
 */
#ifndef TASKSPAN_RECOVERY_H
#define TASKSPAN_RECOVERY_H

#include "internal.h"

/* A checkpoint row. Strings are malloc'd by the reader and freed by
 * taskspan__checkpoint_row_free(). */
typedef struct taskspan__checkpoint_row {
    int64_t sequence_number;
    char *checkpoint_id;
    char *checkpoint_type; /* NULL: none */
    char *work_item_id;    /* NULL: none */
    char *evidence_json;   /* a JSON array of strings */
    int verified;          /* 0 committed, 1 verified, -1 invalid */
    int64_t event_seq;
    int64_t committed_ns;
} taskspan__checkpoint_row;

void taskspan__checkpoint_row_free(taskspan__checkpoint_row *row);

/* An incarnation that may have been cut off by a crash: the task's current
 * incarnation has no runner_exit, and its last event is old enough. */
typedef struct taskspan__crash_candidate {
    char *task_id;
    int64_t incarnation;
    int64_t last_seq;
    int64_t runner_pid; /* from its runner_spawn payload; 0: unknown */
} taskspan__crash_candidate;

void taskspan__crash_candidates_free(taskspan__crash_candidate *c, size_t n);

struct taskspan__recovery_ops {
    /* BEGIN IMMEDIATE (the write lock, waiting up to the busy timeout). */
    taskspan_code (*begin)(void *store, char *err, size_t errlen);
    taskspan_code (*commit)(void *store, char *err, size_t errlen);
    void (*rollback)(void *store);
    /* Append ev inside the open transaction. OUT: *out_seq. */
    taskspan_code (*append)(void *store, const taskspan__append *ev,
                            int64_t *out_seq, char *err, size_t errlen);
    /* Read one item; *out_found false when there is none. */
    taskspan_code (*item_get)(void *store, const char *task_id,
                              const char *item_id, taskspan_work_item *out,
                              bool *out_found, char *err, size_t errlen);
    /* Insert or replace the item's row (title and index only on insert:
     * NULL title keeps what is there). */
    taskspan_code (*item_put)(void *store, const char *task_id,
                              const taskspan_work_item *item,
                              const char *title, int64_t index, char *err,
                              size_t errlen);
    /* The task's LEASED items, by index. OUT: *out (malloc'd), *out_n. */
    taskspan_code (*items_leased)(void *store, const char *task_id,
                                  taskspan_work_item **out, size_t *out_n,
                                  char *err, size_t errlen);
    /* The task's highest checkpoint number, 0 for none. */
    taskspan_code (*checkpoint_max)(void *store, const char *task_id,
                                    int64_t *out, char *err, size_t errlen);
    taskspan_code (*checkpoint_put)(void *store, const char *task_id,
                                    const taskspan__checkpoint_row *row,
                                    char *err, size_t errlen);
    /* Read checkpoint number seq (seq 0: the last VERIFIED one);
     * *out_found false when there is none. OUT: *out's strings. */
    taskspan_code (*checkpoint_get)(void *store, const char *task_id,
                                    int64_t seq, taskspan__checkpoint_row *out,
                                    bool *out_found, char *err, size_t errlen);
    taskspan_code (*checkpoint_set_verified)(void *store, const char *task_id,
                                             int64_t seq, int verified,
                                             int64_t at_ns, char *err,
                                             size_t errlen);
    /* Incarnations with no runner_exit whose last event is at or before
     * idle_before_ns and that are not closed yet, of task_id (NULL: of
     * every task). At most max of them. OUT: *out (free with
     * taskspan__crash_candidates_free), *out_n. */
    taskspan_code (*crash_candidates)(void *store, int64_t idle_before_ns,
                                      size_t max, const char *task_id,
                                      taskspan__crash_candidate **out,
                                      size_t *out_n, char *err, size_t errlen);
    /* Record that c's incarnation ended with a crash after event
     * c->last_seq, if the task has not moved on meanwhile (*out_closed
     * false then). crash_close is its own transaction; crash_mark runs
     * inside the caller's. */
    taskspan_code (*crash_close)(void *store,
                                 const taskspan__crash_candidate *c,
                                 int64_t now_ns, bool *out_closed, char *err,
                                 size_t errlen);
    taskspan_code (*crash_mark)(void *store,
                                const taskspan__crash_candidate *c,
                                int64_t now_ns, bool *out_closed, char *err,
                                size_t errlen);
};
typedef struct taskspan__recovery_ops taskspan__recovery_ops;

extern const taskspan__recovery_ops taskspan__recovery_sqlite;

/* One recovery transaction, run by the recorder under its lock.
 * tmpl: an append with the recorder's resource and trace context filled
 * in (copy it, then set the event's fields). *out_events: how many events
 * fn recorded (for the recorder's counters). */
typedef taskspan_code (*taskspan__recovery_fn)(
    const taskspan__recovery_ops *ops, void *store,
    const taskspan__append *tmpl, void *ctx, size_t *out_events, char *err,
    size_t errlen);

/* Run fn on ts's store (recorder.c). Records the failure message on ts;
 * counts a failure as a failed emit when counted is true. */
taskspan_code taskspan__recorder_run(taskspan *ts, taskspan__recovery_fn fn,
                                     void *ctx, bool counted);

#endif
