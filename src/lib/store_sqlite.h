/*
 * store_sqlite.h -- what the parts of the SQLite buffer store share: the
 * connection struct and the error and statement helpers. Included only by
 * store_sqlite.c (schema, events), store_export.c (export tables) and
 * store_recovery.c (work items, checkpoints, crashed incarnations); they
 * are the only files that include <sqlite3.h>.
 */
#ifndef TASKSPAN_STORE_SQLITE_H
#define TASKSPAN_STORE_SQLITE_H

#include "internal.h"
#include "recovery.h"

#include <sqlite3.h>

typedef struct store {
    sqlite3 *db;
    /* Prepared once: re-parsing BEGIN/COMMIT text costs ~1 us per emit. */
    sqlite3_stmt *begin_immediate;
    sqlite3_stmt *commit;
    sqlite3_stmt *upsert_task;
    sqlite3_stmt *insert_event;
    sqlite3_stmt *select_task;
    sqlite3_stmt *select_events;
    bool readonly;
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

/* Finalize the export statements (before the connection closes). */
void taskspan__sqlite_cache_clear(store *s);

/* The export half (store_export.c), in the order of taskspan__store_ops. */
taskspan_code taskspan__sqlite_resource_put(void *h, const char *attrs_json,
                                            int64_t *out_id, char *err,
                                            size_t errlen);
taskspan_code taskspan__sqlite_resource_get(void *h, int64_t id,
                                            char **out_json, char *err,
                                            size_t errlen);
taskspan_code taskspan__sqlite_changed_tasks(void *h, char ***out_tasks,
                                             size_t *out_n, int64_t *out_hi,
                                             char *err, size_t errlen);
taskspan_code taskspan__sqlite_set_cursor(void *h, int64_t hi, char *err,
                                          size_t errlen);
taskspan_code taskspan__sqlite_span_known(void *h, const uint8_t trace_id[16],
                                          const uint8_t span_id[8],
                                          bool *out_known, char *err,
                                          size_t errlen);
taskspan_code taskspan__sqlite_spans_add(void *h,
                                         const taskspan__new_span *spans,
                                         size_t n, char *err, size_t errlen);
taskspan_code taskspan__sqlite_claim(void *h, const char *owner,
                                     int64_t now_ns, int64_t until_ns,
                                     size_t max_spans, size_t max_bytes,
                                     taskspan__claim *out, char *err,
                                     size_t errlen);
taskspan_code taskspan__sqlite_settle(void *h, const char *owner,
                                      const int64_t *ids, size_t n,
                                      taskspan__span_state state,
                                      const char *error, int64_t retry_at_ns,
                                      char *err, size_t errlen);
taskspan_code taskspan__sqlite_note_error(void *h, const char *error,
                                          int64_t at_ns, char *err,
                                          size_t errlen);
taskspan_code taskspan__sqlite_export_counts(void *h,
                                             taskspan__export_counts *out,
                                             char *err, size_t errlen);
taskspan_code taskspan__sqlite_last_span_row(void *h, int64_t *out, char *err,
                                             size_t errlen);
taskspan_code taskspan__sqlite_pending_upto(void *h, int64_t upto,
                                            int64_t *out, char *err,
                                            size_t errlen);

#endif
