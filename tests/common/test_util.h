/*
 * test_util.h -- helpers the cmocka tests share: scratch directories under
 * $TASKSPAN_TEST_TMP, a recorder on a fresh buffer (the fx fixture), sqlite3
 * queries of a buffer, and lookups in spans.
 *
 * The helpers fail the running test (cmocka assertions) where they say so.
 * Every cmocka test program is built with test_util.c.
 */
#ifndef TASKSPAN_TEST_UTIL_H
#define TASKSPAN_TEST_UTIL_H

#include <taskspan/taskspan.h>

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* taskspan_span.parent_index of a span without a parent. */
#define NO_INDEX ((size_t)-1)

/* SQL that takes a buffer back from schema 10 to 9 (run it in a
 * transaction, then set user_version to 9): the events' export records
 * go. */
#define SCHEMA_10_TO_9 "ALTER TABLE task_events DROP COLUMN export_record;"

/* SQL that takes a buffer back from schema 9 to 8 (run it in a
 * transaction, then set user_version to 8): the events' stored Span.Event
 * bytes go. */
#define SCHEMA_9_TO_8 "ALTER TABLE task_events DROP COLUMN otlp;"

/* SQL that takes a buffer back from schema 8 to 7 (run it in a
 * transaction, then set user_version to 7), once spans_rows_as_schema_7()
 * gave its spans the rows a library of schema 7 wrote: the tasks' export
 * progress and the count of delivered spans go, and the index of the
 * pending rows comes back. */
#define SCHEMA_8_TO_7                                                         \
    "ALTER TABLE tasks DROP COLUMN export_done;"                              \
    "ALTER TABLE tasks DROP COLUMN export_closed;"                            \
    "ALTER TABLE tasks DROP COLUMN export_owner;"                             \
    "ALTER TABLE tasks DROP COLUMN export_until;"                             \
    "ALTER TABLE tasks DROP COLUMN export_epoch;"                             \
    "DELETE FROM export_state WHERE name = 'delivered';"                      \
    "CREATE INDEX export_spans_pending ON export_spans (id)"                  \
    "  WHERE state = 0;"

/* Give the buffer at path (schema 9) an export_spans row for each closed
 * span its exporters found, as a library of schema 7 recorded them before
 * SCHEMA_8_TO_7: delivered when its task's spans are all settled, pending
 * when none is; a span with a row (rejected) keeps it. Asserts that no
 * task is in between. */
void spans_rows_as_schema_7(const char *path);

/* SQL that takes a buffer back from schema 7 to 6, as an older library
 * wrote it (run it in a transaction, then set user_version to 6): events
 * with a global id, in the order of their times, indexed by (task_id,
 * seq), and the exporters' cursor over the ids, at the event before the
 * first one no exporter has examined. */
#define SCHEMA_7_TO_6                                                         \
    "DROP INDEX tasks_export_live;"                                           \
    "CREATE TABLE task_events_v6 (id INTEGER PRIMARY KEY,"                    \
    "  task_id TEXT NOT NULL, seq INTEGER NOT NULL,"                          \
    "  event_type TEXT NOT NULL, actor TEXT, span_id TEXT NOT NULL,"          \
    "  parent_span_id TEXT, phase TEXT, payload TEXT NOT NULL DEFAULT '{}',"  \
    "  ts_ns INTEGER NOT NULL, incarnation INTEGER NOT NULL,"                 \
    "  resource_id INTEGER, UNIQUE (task_id, seq));"                          \
    "INSERT INTO task_events_v6 (task_id, seq, event_type, actor, span_id,"   \
    "  parent_span_id, phase, payload, ts_ns, incarnation, resource_id)"      \
    "  SELECT task_id, seq, event_type, actor, span_id, parent_span_id,"      \
    "  phase, payload, ts_ns, incarnation, resource_id FROM task_events"      \
    "  ORDER BY ts_ns, task_id, seq;"                                         \
    "INSERT OR REPLACE INTO export_state (name, int_value) SELECT 'cursor',"  \
    "  coalesce((SELECT min(e.id) - 1 FROM task_events_v6 e JOIN tasks t"     \
    "  ON t.task_id = e.task_id WHERE e.seq > t.export_seq),"                 \
    "  (SELECT coalesce(max(id), 0) FROM task_events_v6));"                   \
    "DROP TABLE task_events;"                                                 \
    "ALTER TABLE task_events_v6 RENAME TO task_events;"                       \
    "ALTER TABLE tasks DROP COLUMN export_seq;"                               \
    "ALTER TABLE tasks DROP COLUMN export_live;"                              \
    "DROP INDEX tasks_tnum;"                                                  \
    "ALTER TABLE tasks DROP COLUMN tnum;"

/* ---- scratch files ------------------------------------------------------- */

/* mkdir -p path (mode 0700); errors are ignored. */
void mkdir_p(const char *path);

/* "dir/name", malloc'd; caller frees. Asserts on no memory. */
char *path_join(const char *dir, const char *name);

/* A fresh, unique directory "tag-XXXXXX" under $TASKSPAN_TEST_TMP (/tmp if
 * unset or empty), made first if need be; caller frees. NULL on failure. */
char *new_tmpdir(const char *tag);

/* rm -rf path; errors are ignored. */
void rm_rf(const char *path);

/* ---- recorders ----------------------------------------------------------- */

/* A recorder on path with these open flags, independent of the caller's
 * TRACEPARENT. Asserts that it opened. */
taskspan *open_path(const char *path, unsigned flags);

/* The fixture: a scratch directory with a recorder on buffer.db in it. */
typedef struct fx {
    char *dir;
    char *db;
    taskspan *ts;
} fx;

/* cmocka setup: a new fx in *state, its directory new_tmpdir(tag). A test
 * program's setup function calls it with its own tag. */
int fx_open(void **state, const char *tag);

/* cmocka teardown of fx_open(): close the recorder, remove the directory. */
int fx_teardown(void **state);

/* ---- sqlite helpers ------------------------------------------------------ */

/* The database at path, read-write, with a 10 s busy timeout. Asserts. */
sqlite3 *sql_open(const char *path);

/* Prepare sql and bind ?1 = t1 (text), ?2 = i2 (int), ?3 = t3 (text), as
 * many of them as the statement has parameters. Asserts that it prepared. */
sqlite3_stmt *sql_prep(sqlite3 *db, const char *sql, const char *t1,
                       int64_t i2, const char *t3);

/* Column 0 of the first row as an integer; asserts there is a row. */
int64_t sql_int(sqlite3 *db, const char *sql, const char *t1, int64_t i2,
                const char *t3);

/* The buffer's spans in an export state, read with SQL from the tables
 * (schema 8): SPANS_PENDING, the closed spans the exporters found and did
 * not settle (tasks.export_closed - export_done); SPANS_DELIVERED, the
 * exporters' count; SPANS_REJECTED, the rows kept for rejected spans. */
#define SQL_SPANS_PENDING                                                     \
    "SELECT coalesce(sum(max(export_closed - export_done, 0)), 0)"            \
    " FROM tasks"
#define SQL_SPANS_DELIVERED                                                   \
    "SELECT coalesce(max(int_value), 0) FROM export_state"                    \
    " WHERE name = 'delivered'"
#define SQL_SPANS_REJECTED "SELECT count(*) FROM export_spans WHERE state = 2"

/* The number of spans in state (0 pending, 1 delivered, 2 rejected) of the
 * buffer at path, as above. Asserts. */
int64_t spans_in_state(const char *path, int state);

/* ---- spans --------------------------------------------------------------- */

/* The attribute named key among a[0..n), or NULL. */
const taskspan_attr *attr_find(const taskspan_attr *a, size_t n,
                               const char *key);

/* n bytes as 2n lowercase hex digits and a NUL into out. */
void to_hex(char *out, const uint8_t *p, size_t n);

#endif
