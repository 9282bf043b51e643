/*
 * inspect.h -- what the inspection module (inspect.c: taskspan_list_tasks,
 * taskspan_task_events, taskspan_get_buffer_status, taskspan_gc) needs from
 * the store and the recorder. The SQL is in store_inspect.c, behind an ops
 * table like the store's own, so only store_*.c include <sqlite3.h>.
 */
#ifndef TASKSPAN_INSPECT_H
#define TASKSPAN_INSPECT_H

#include "internal.h"

/* One task as the buffer's tables describe it. Strings are malloc'd. */
typedef struct taskspan__task_row {
    char *task_id;
    int64_t last_seq;
    int64_t incarnations; /* tasks.incarnation */
    int64_t n_events;
    int64_t first_ns, last_ns;  /* 0 without events */
    int64_t latest_incarnation; /* the highest incarnation among its events */
    int64_t runner_pid;         /* of that incarnation's runner_spawn, or 0 */
    bool exited;       /* that incarnation has a runner_exit on main */
    char *exit_reason; /* of its last runner_exit, or NULL */
    /* Its closed spans not settled, delivered, rejected (schema 8: from
     * its export_done and export_closed, and its rejected rows). */
    uint64_t pending, delivered, rejected;
    int64_t export_done;
} taskspan__task_row;

void taskspan__task_rows_free(taskspan__task_row *rows, size_t n);

/* Buffer-wide counts for taskspan_get_buffer_status() and taskspan_gc(). */
typedef struct taskspan__buffer_counts {
    int schema_version;
    uint64_t tasks, events;
    uint64_t pending, delivered, rejected;
    char last_error[256];
    int64_t last_error_ns;
    /* The first task (by number) with closed spans not settled, and its
     * export_done: the end time of its first such span is read from its
     * spans (inspect.c). */
    char oldest_pending_task[TASKSPAN_MAX_ID_LEN + 1];
    int64_t oldest_pending_done;
    int64_t oldest_pending_ns;
    uint64_t page_size, free_pages;
} taskspan__buffer_counts;

/* One export row of a task: which span, in which delivery state. */
typedef struct taskspan__span_state_row {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    int state; /* taskspan__span_state */
} taskspan__span_state_row;

/* A task gc decided to prune, and the last seq its decision saw. */
typedef struct taskspan__gc_item {
    const char *task_id;
    int64_t last_seq;
} taskspan__gc_item;

typedef struct taskspan__gc_counts {
    uint64_t tasks, events, spans;
    uint64_t skipped; /* changed since the decision, or holds the newest
                         event: kept */
} taskspan__gc_counts;

typedef struct taskspan__inspect_ops {
    const char *name;
    /* Every task, in the order of their first event, in one read
     * transaction. OUT: *out (free with taskspan__task_rows_free), *out_n. */
    taskspan_code (*tasks)(void *store, taskspan__task_row **out,
                           size_t *out_n, char *err, size_t errlen);
    /* The task's last_seq; TASKSPAN_E_NOT_FOUND when it has no row. */
    taskspan_code (*last_seq)(void *store, const char *task_id, int64_t *out,
                              char *err, size_t errlen);
    /* Buffer-wide counts, in one read transaction. */
    taskspan_code (*counts)(void *store, taskspan__buffer_counts *out,
                            char *err, size_t errlen);
    /* The export rows of a task: its rejected spans, and the delivered
     * ones an older version left. OUT: *out (malloc'd), *out_n. */
    taskspan_code (*span_states)(void *store, const char *task_id,
                                 taskspan__span_state_row **out, size_t *out_n,
                                 char *err, size_t errlen);
    /* Delete the events and settled export rows of items[0..n) in one write
     * transaction, skipping (and counting in skipped) a task whose last_seq
     * moved, that has a closed span not settled, or that has an event no
     * exporter has examined yet (store_export.c). Its export progress
     * goes back to 0: spans built later come from its later events. Adds
     * what it deleted to *counts (a task whose events were already gone
     * adds its rows, not itself). */
    taskspan_code (*prune)(void *store, const taskspan__gc_item *items,
                           size_t n, taskspan__gc_counts *counts, char *err,
                           size_t errlen);
    /* Checkpoint the WAL and truncate it when that needs no waiting for
     * another connection, else copy what can be copied. Leaves the
     * connection without a busy timeout: the last call before close. */
    void (*checkpoint)(void *store);
} taskspan__inspect_ops;

extern const taskspan__inspect_ops taskspan__inspect_sqlite;

/* Prune, on an open store connection of the caller's, what taskspan_gc()
 * would prune with the cutoff cutoff_ns (wall clock, ns): the retention pass
 * of the exporter and the size cap's make-room hook use it. No transaction
 * may be open on the connection. Adds what it deleted to *counts. */
taskspan_code taskspan__gc_store(void *store, int64_t cutoff_ns,
                                 taskspan__gc_counts *counts, char *err,
                                 size_t errlen);

/* The recorder's store configuration (flags, busy timeout), so inspect.c
 * opens its own connection as the recorder opened its. In recorder.c. */
/* In the journal mode, move what ts's journal holds into the buffer, so
 * a read of the buffer on a connection of its own sees the recorder's
 * emits (recorder.c). A failure leaves them for later and is recorded as
 * the recorder's message. No-op in the other modes. */
void taskspan__recorder_drain(taskspan *ts);

void taskspan__recorder_store_config(const taskspan *ts,
                                     taskspan__store_config *out);

#endif
