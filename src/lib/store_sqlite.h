/*
 * store_sqlite.h -- what the parts of the SQLite buffer store share: the
 * connection struct and the error and statement helpers. Included only by
 * store_sqlite.c (schema, events), store_export.c (export tables),
 * store_recovery.c (work items, checkpoints, crashed incarnations),
 * store_guard.c (space, damage) and store_checkpoint.c (WAL checkpoints),
 * and by the viewer's buffer_view.c for the live task columns below.
 */
#ifndef TASKSPAN_STORE_SQLITE_H
#define TASKSPAN_STORE_SQLITE_H

#include "internal.h"
#include "recovery.h"

#include <sqlite3.h>

/* An emit writes the tasks row only at the task's first event, at each
 * runner_spawn and when the row's updated_ns is this old (next_seq in
 * store_sqlite.c): the busy task's other emits write one page less. */
#define TASKSPAN__TASK_ROW_REFRESH_NS ((int64_t)1000000000)
#define TASKSPAN__TASK_ROW_REFRESH_SQL "1000000000" /* the same, in SQL */

/* Event ids (schema 7): the task's number (tasks.tnum) times 2^32 plus
 * the event's seq, so the events of a task are one range of task_events,
 * in seq order, found without an index. A seq stays below 2^32. */
#define TASKSPAN__SEQ_LIMIT ((int64_t)1 << 32)
/* In a query on task_events alone: the events of the task of the tasks
 * row aliased "t" (of an outer query), or of the task named ?1. */
#define TASKSPAN__EVENTS_OF_T                                                 \
    "id BETWEEN t.tnum * 4294967296 AND t.tnum * 4294967296 + 4294967295"
#define TASKSPAN__EVENTS_OF_P1                                                \
    "id BETWEEN (SELECT tnum FROM tasks WHERE task_id = ?1) * 4294967296"     \
    " AND (SELECT tnum FROM tasks WHERE task_id = ?1) * 4294967296"           \
    " + 4294967295"

/* The live last seq and last update of the task of the tasks row aliased
 * "t" in a query: the row's values are a floor, its last event's the
 * truth. Both are one seek to the end of the task's range. */
#define TASKSPAN__LIVE_LAST_SEQ                                               \
    "max(t.last_seq, coalesce((SELECT max(id) FROM task_events"               \
    " WHERE " TASKSPAN__EVENTS_OF_T "), 0) & 4294967295)"
#define TASKSPAN__LIVE_UPDATED_NS                                             \
    "max(t.updated_ns, coalesce((SELECT ts_ns FROM task_events"               \
    " WHERE " TASKSPAN__EVENTS_OF_T " ORDER BY id DESC LIMIT 1), 0))"

/* The checkpointer of a writing connection (store_checkpoint.c). */
typedef struct taskspan__ckpt taskspan__ckpt;

/* Past this many frames in the WAL (64 MiB of 4 KiB pages) the writer
 * checkpoints in its commit, as SQLite does, whatever the thread does. */
#define TASKSPAN__CKPT_HARD_FRAMES (64 * 1024 * 1024 / (4096 + 24))

/* What a checkpointer did, for tests and measurements. */
typedef struct taskspan__ckpt_stats {
    bool running;             /* its thread is up and checkpointing */
    bool idle;                /* ... and has nothing to do just now */
    uint64_t passive;         /* PASSIVE checkpoints run by the thread */
    uint64_t failed;          /* ... that returned an error (BUSY too) */
    uint64_t full;            /* FULL checkpoints (writers wait for them) */
    uint64_t full_incomplete; /* ... that gave up before the end */
    int64_t full_ns_total;    /* time in FULL checkpoints */
    int64_t full_ns_max;
    uint64_t inline_ckpts; /* checkpoints the writer ran in a commit */
    int max_frames;        /* the largest WAL a commit reported */
    uint64_t restarts;     /* commits that started the WAL over */
    int last_rc;           /* the last failure's SQLite code */
} taskspan__ckpt_stats;

/* Where an event goes: its task's number and its seq (its id is
 * tnum << 32 | seq), its incarnation, and the updated_ns of its task's
 * row as it stands. */
typedef struct task_pos {
    int64_t tnum;
    int64_t seq;
    int64_t incarnation;
    int64_t row_ns;
} task_pos;

typedef struct store {
    sqlite3 *db;
    /* Prepared once: re-parsing BEGIN/COMMIT text costs ~1 us per emit,
     * and as much per task an exporter reads, leases or settles. */
    sqlite3_stmt *begin_immediate;
    sqlite3_stmt *begin_read; /* a deferred BEGIN: reads that must agree */
    sqlite3_stmt *commit;
    sqlite3_stmt *select_seq;  /* the task's last_seq and incarnation */
    sqlite3_stmt *bump_seq;    /* ... written back, one higher */
    sqlite3_stmt *new_tnum;    /* ... or the next task number, and */
    sqlite3_stmt *insert_task; /* ... the task's row, at its first event */
    sqlite3_stmt *insert_event;
    sqlite3_stmt *select_task;
    sqlite3_stmt *select_events;
    /* The exporter's read of a task (store_load_export): each event's id,
     * time and record, and one event's columns, for those without one. */
    sqlite3_stmt *select_records;
    sqlite3_stmt *select_event_row;
    /* Backs the payload decoded at each insert for the event's record
     * (event_record.c), emptied after each. */
    taskspan__arena wire_scratch;
    bool readonly;
    bool sync_full;
    /* Checkpoints off the emitting thread, from the first append on
     * (store_checkpoint.c); NULL before, or when it could not start. */
    taskspan__ckpt *ckpt;
    bool ckpt_tried;
    /* The busy timeout, and when the current wait for a lock began. */
    int busy_timeout_ms;
    int64_t busy_since_ns;
    /* The size cap (store_guard.c): appends stop at cap_bytes. Only an
     * appending connection is limited, from its first append on; the
     * others (schema, resource rows, export bookkeeping) are not, so a
     * full buffer can still be opened, delivered and pruned. */
    int64_t cap_bytes;
    bool cap_applied;
    /* When the make-room hook may prune again (monotonic ns): a cap
     * reached with nothing prunable must not rescan on every emit. */
    int64_t next_make_room_ns;
    uint64_t pruned_for_room;
    uint64_t refused_cap;
    uint64_t refused_disk;
    /* Where this connection's last append went, and the buffer's data
     * version right after its commit (append_once in store_sqlite.c):
     * while the version stays the same, nothing else has written the
     * buffer, and the same task's next event goes right after it without
     * a read. task_id NULL: nothing to go by. */
    struct {
        char *task_id;
        task_pos pos;
        unsigned data_version;
    } last;
    /* Events in the last task loaded (capped): where the next load's
     * array starts, so that the tasks of a backlog, alike in size, are
     * not copied by realloc as their arrays double (load_events). */
    size_t events_hint;
    /* What open did that the caller should hear about, or "". */
    char notice[2 * TASKSPAN__MSG_SIZE];
    /* Export and recovery queries, prepared on first use and kept
     * (store_export.c); keyed by the address of their SQL text, a string
     * literal. */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[40];
    size_t n_cache;
} store;

/* Map an SQLite result code (extended or not) to ours. */
taskspan_code taskspan__sqlite_code(int rc);

/* Fail with the database's own message, prefixed by what we were doing. */
taskspan_code taskspan__sqlite_fail(sqlite3 *db, int rc, const char *doing,
                                    char *err, size_t errlen);

/* Run a prepared statement that returns no rows, and reset it. */
int taskspan__sqlite_step_once(sqlite3_stmt *st);

/* Bind a string, or NULL when s is NULL. */
int taskspan__sqlite_bind_text(sqlite3_stmt *st, int idx, const char *s);

/* Append one event inside the caller's open write transaction (the
 * recovery half commits state and events together). Returns an SQLite
 * code. OUT: *out_seq. */
int taskspan__sqlite_append_locked(store *s, const taskspan__append *ev,
                                   int64_t *out_seq);

/* Read the task's crash-closed incarnations into out (store_recovery.c),
 * inside load_task's read transaction. Returns an SQLite code. */
int taskspan__sqlite_load_crash_closed(store *s, const char *task_id,
                                       taskspan__task_events *out);

/* A prepared statement for sql, a string literal (its address is the
 * key), from the connection's cache or prepared now; give it back with
 * taskspan__sqlite_release(), which resets it (store_export.c). */
taskspan_code taskspan__sqlite_prep(store *s, const char *sql,
                                    sqlite3_stmt **st, char *err,
                                    size_t errlen);
void taskspan__sqlite_release(store *s, sqlite3_stmt *st);

/* ---- store_checkpoint.c: checkpoints off the emitting thread --------- */

/* Start a thread that checkpoints the database of writer from its own
 * connection, and hand it writer's commits (sqlite3_wal_hook, replacing
 * SQLite's automatic checkpoint on writer). writer_busy(writer_busy_arg)
 * is writer's busy handler, put back after a checkpoint in a commit that
 * replaces it for a moment. Call on the writer's thread, with no
 * transaction open. OUT: *out, stop it with taskspan__ckpt_stop() before
 * writer closes. On failure writer is left as it was. */
taskspan_code taskspan__ckpt_start(taskspan__ckpt **out, sqlite3 *writer,
                                   bool sync_full,
                                   int (*writer_busy)(void *, int),
                                   void *writer_busy_arg);

/* Stop and join the thread (bounded: a checkpoint in progress is
 * interrupted), give writer back SQLite's automatic checkpoint and free
 * c. NULL is a no-op. */
void taskspan__ckpt_stop(taskspan__ckpt *c);

/* What c did so far (zeros for NULL). OUT: *out. */
void taskspan__ckpt_get_stats(taskspan__ckpt *c, taskspan__ckpt_stats *out);

/* The checkpointer stats of a store (an ops handle). OUT: *out. */
void taskspan__sqlite_ckpt_stats(void *h, taskspan__ckpt_stats *out);

/* ---- store_guard.c: space, permissions and damage ---------------------- */

/* Our code for an SQLite failure, using the operating system's errno when
 * SQLite reports a bare I/O or open error (ENOSPC, EFBIG and EDQUOT are a
 * full disk; EROFS, EACCES and EPERM a read-only buffer). OUT: *out_errno,
 * the errno that decided it, or 0. */
taskspan_code taskspan__guard_code(sqlite3 *db, int rc, int *out_errno);

/* TASKSPAN_E_READONLY with a message when SQLite could open the file
 * read-only only (a read-write open was asked for). */
taskspan_code taskspan__guard_writable(sqlite3 *db, const char *path,
                                       char *err, size_t errlen);

/* A read-write open of path failed with code (its message in err): when
 * the file or its directory cannot be written (the file system is
 * read-only, or permissions), TASKSPAN_E_READONLY with a message saying
 * so; else code unchanged. */
taskspan_code taskspan__guard_cantopen(taskspan_code code, const char *path,
                                       char *err, size_t errlen);

/* When path is on a read-only file system: true, with the URI that opens
 * it immutable (no locks, no -shm) in out (n bytes). */
bool taskspan__guard_immutable_uri(char *out, size_t n, const char *path);

/* Limit the connection's database to bytes (PRAGMA max_page_count), and
 * keep the -wal file from staying large after a checkpoint. */
int taskspan__guard_limit(sqlite3 *db, int64_t bytes);

/* Read the pages an append touches first (the rightmost paths of the
 * tables and of the (task_id, seq) index), so damage there is found at
 * open; with deep, every page (PRAGMA quick_check). E_CORRUPT (or another
 * code) with a message on failure. */
taskspan_code taskspan__guard_probe(sqlite3 *db, bool deep, char *err,
                                    size_t errlen);

/* An append failed with TASKSPAN_E_FULL: at the cap or the disk? At the
 * cap, and when may_make_room, calls the make-room hook first: returns
 * true when it freed space and the append should be tried once more.
 * Otherwise counts the refusal and writes its message; returns false. */
bool taskspan__guard_on_full(store *s, size_t payload_len, bool at_commit,
                             int sys_errno, bool may_make_room, char *err,
                             size_t errlen);

/* The hook a full buffer calls before an emit is refused: free at least
 * want_bytes by pruning delivered data, returning the bytes freed. Today it
 * frees nothing (retention is a separate module); wiring it to that
 * module's pruning makes the cap drop delivered events before refusing. */
int64_t taskspan__store_make_room(store *s, int64_t want_bytes);

/* The open failed with TASKSPAN_E_CORRUPT: if the file is a damaged
 * database (not someone else's healthy one, not an unrelated file), move
 * it aside when cfg allows (waiting up to timeout_ms for other processes
 * to let go of it) and return TASKSPAN_OK with the notice in notice (the
 * caller opens again); else the final error in err. */
taskspan_code taskspan__guard_recover(const char *path,
                                      const taskspan__store_config *cfg,
                                      int timeout_ms, char *notice,
                                      size_t noticelen, char *err,
                                      size_t errlen);

/* Serialise repairs of the buffer at path between processes: an flock on
 * its directory (independent of SQLite's fcntl locks), waited for at most
 * timeout_ms. Returns what to pass to taskspan__guard_unlock_dir(); -1
 * when no lock was taken (the repair then runs unserialised). */
int taskspan__guard_lock_dir(const char *path, int timeout_ms);
void taskspan__guard_unlock_dir(int lock);

/* The capacity op of the store. */
taskspan_code taskspan__sqlite_capacity(void *h, taskspan__store_capacity *out,
                                        char *err, size_t errlen);

/* Finalize the export statements (before the connection closes). */
void taskspan__sqlite_cache_clear(store *s);

/* The export half (store_export.c), in the order of taskspan__store_ops. */
taskspan_code taskspan__sqlite_resource_put(void *h, const char *attrs_json,
                                            int64_t *out_id, char *err,
                                            size_t errlen);
taskspan_code taskspan__sqlite_resource_get(void *h, int64_t id,
                                            char **out_json, char *err,
                                            size_t errlen);
taskspan_code taskspan__sqlite_changed_tasks(void *h, const char *owner,
                                             int64_t now_ns, bool with_pending,
                                             char ***out_tasks,
                                             bool **out_fresh, size_t *out_n,
                                             char *err, size_t errlen);
taskspan_code taskspan__sqlite_tasks_examined(void *h, const char *owner,
                                              const taskspan__examined *marks,
                                              size_t n, uint64_t *out_given_up,
                                              char *err, size_t errlen);
taskspan_code taskspan__sqlite_task_span_keys(void *h, const char *task_id,
                                              const uint8_t trace_id[16],
                                              bool trace_shared,
                                              uint8_t **out_keys,
                                              size_t *out_n, char *err,
                                              size_t errlen);
/* The trace id of task_id's spans, as the span model picks it: the trace
 * context recorded with the task (*out_shared: other tasks may have it
 * too), else the one derived from its id. A task's export rows are found
 * by it, the prefix of the (trace_id, span_id) index, or, when shared, by
 * task in export_spans_shared (docs/buffer.md). */
taskspan_code taskspan__sqlite_task_trace_id(store *s, const char *task_id,
                                             uint8_t out[16], bool *out_shared,
                                             char *err, size_t errlen);
taskspan_code taskspan__sqlite_tasks_lease(void *h, const char *owner,
                                           int64_t now_ns, int64_t until_ns,
                                           taskspan__task_lease *leases,
                                           size_t n, char *err, size_t errlen);
taskspan_code taskspan__sqlite_tasks_settle(
    void *h, const taskspan__task_done *dones, size_t n, uint64_t delivered,
    const taskspan__new_span *rejected, size_t n_rejected, const char *error,
    char *err, size_t errlen);
taskspan_code taskspan__sqlite_tasks_retry(void *h, const char *owner,
                                           char *const *tasks, size_t n,
                                           int64_t retry_at_ns, char *err,
                                           size_t errlen);
taskspan_code taskspan__sqlite_note_error(void *h, const char *error,
                                          int64_t at_ns, char *err,
                                          size_t errlen);
taskspan_code taskspan__sqlite_export_counts(void *h,
                                             taskspan__export_counts *out,
                                             char *err, size_t errlen);
taskspan_code taskspan__sqlite_flush_targets(void *h,
                                             taskspan__flush_target **out,
                                             size_t *out_n, char *err,
                                             size_t errlen);
taskspan_code taskspan__sqlite_targets_pending(
    void *h, const taskspan__flush_target *targets, size_t n, size_t *from,
    int64_t *out_spans, char *err, size_t errlen);
taskspan_code taskspan__sqlite_prune_due(void *h, int64_t cutoff_ns,
                                         bool *out_due, char *err,
                                         size_t errlen);
void taskspan__sqlite_export_tune(void *h);

#endif
