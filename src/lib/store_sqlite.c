/*
 * store_sqlite.c -- the buffer: SQLite in WAL mode, one file per buffer.
 *
 * Schema (PRAGMA user_version; the migrations below add export (2) and
 * recovery (3) tables):
 *   tasks        one row per task: the last seq handed out, the current
 *                runner incarnation and the trace context the task joined.
 *   task_events  the seed's columns (task_id, seq, event_type, actor,
 *                span_id, parent_span_id, phase, payload as JSON) plus ts_ns
 *                and incarnation, so the seed's own queries run unchanged;
 *                and (schema 10) the export record, all an exporter reads
 *                of the event (event_record.c, store_load_export).
 *
 * Each append is one BEGIN IMMEDIATE transaction that reads the task's last
 * seq and inserts the event (writing the tasks row only now and then:
 * next_seq): seq is assigned under the database's write lock,
 * so it is gap-free per task across threads and processes, and the event is
 * committed before append returns. Only this file includes <sqlite3.h>.
 */
#include "store_sqlite.h"

#include "event_record.h"
#include "event_wire.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SCHEMA_VERSION 10
#define DEFAULT_BUSY_TIMEOUT_MS 5000

/* Migrations: entry i takes a buffer from user_version i to i + 1. Append
 * only; a released entry never changes. */
static const char *const migrations[SCHEMA_VERSION] = {
    "CREATE TABLE IF NOT EXISTS tasks ("
    "  task_id TEXT PRIMARY KEY NOT NULL,"
    "  last_seq INTEGER NOT NULL,"
    "  incarnation INTEGER NOT NULL,"
    "  trace_id BLOB,"
    "  parent_span_id BLOB,"
    "  trace_flags INTEGER,"
    "  created_ns INTEGER NOT NULL,"
    "  updated_ns INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS task_events ("
    "  id INTEGER PRIMARY KEY,"
    "  task_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event_type TEXT NOT NULL,"
    "  actor TEXT,"
    "  span_id TEXT NOT NULL,"
    "  parent_span_id TEXT,"
    "  phase TEXT,"
    "  payload TEXT NOT NULL DEFAULT '{}',"
    "  ts_ns INTEGER NOT NULL,"
    "  incarnation INTEGER NOT NULL,"
    "  UNIQUE (task_id, seq));",
    /* 1 -> 2: export. The resource of the recorder that wrote each event;
     * closed spans encoded for export with their delivery state; the
     * exporters' shared discovery cursor and last error. */
    "ALTER TABLE task_events ADD COLUMN resource_id INTEGER;"
    "CREATE TABLE resources ("
    "  id INTEGER PRIMARY KEY,"
    "  attrs TEXT NOT NULL UNIQUE,"
    "  created_ns INTEGER NOT NULL);"
    "CREATE TABLE export_spans ("
    "  id INTEGER PRIMARY KEY,"
    "  trace_id BLOB NOT NULL,"
    "  span_id BLOB NOT NULL,"
    "  task_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  resource_id INTEGER,"
    "  end_ns INTEGER NOT NULL,"
    "  state INTEGER NOT NULL DEFAULT 0,"
    "  claim_owner TEXT,"
    "  claim_until_ns INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  body BLOB NOT NULL,"
    "  created_ns INTEGER NOT NULL,"
    "  done_ns INTEGER,"
    "  UNIQUE (trace_id, span_id));"
    "CREATE INDEX export_spans_state ON export_spans (state, id);"
    "CREATE INDEX export_spans_task ON export_spans (task_id);"
    "CREATE TABLE export_state ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  int_value INTEGER,"
    "  text_value TEXT) WITHOUT ROWID;",
    /* 2 -> 3: recovery (store_recovery.c). Work items with their leases,
     * checkpoints with their evidence, and incarnations closed as crashed
     * before a new runner_spawn (the seq of their last event). */
    "CREATE TABLE work_items ("
    "  task_id TEXT NOT NULL,"
    "  work_item_id TEXT NOT NULL,"
    "  title TEXT,"
    "  item_index INTEGER NOT NULL DEFAULT 0,"
    "  state INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  retry_count INTEGER NOT NULL DEFAULT 0,"
    "  lease_holder TEXT,"
    "  lease_pid INTEGER,"
    "  lease_expires_ns INTEGER,"
    "  last_checkpoint INTEGER NOT NULL DEFAULT 0,"
    "  created_ns INTEGER NOT NULL,"
    "  updated_ns INTEGER NOT NULL,"
    "  PRIMARY KEY (task_id, work_item_id)) WITHOUT ROWID;"
    "CREATE TABLE checkpoints ("
    "  task_id TEXT NOT NULL,"
    "  sequence_number INTEGER NOT NULL,"
    "  checkpoint_id TEXT NOT NULL,"
    "  checkpoint_type TEXT,"
    "  work_item_id TEXT,"
    "  evidence TEXT NOT NULL DEFAULT '[]',"
    "  verified INTEGER NOT NULL DEFAULT 0,"
    "  event_seq INTEGER NOT NULL,"
    "  created_ns INTEGER NOT NULL,"
    "  verified_ns INTEGER,"
    "  PRIMARY KEY (task_id, sequence_number)) WITHOUT ROWID;"
    "CREATE TABLE crashed_incarnations ("
    "  task_id TEXT NOT NULL,"
    "  incarnation INTEGER NOT NULL,"
    "  upto_seq INTEGER NOT NULL,"
    "  runner_pid INTEGER,"
    "  closed_ns INTEGER NOT NULL,"
    "  PRIMARY KEY (task_id, incarnation, upto_seq)) WITHOUT ROWID;",
    /* 3 -> 4: span bodies apart from their export state. SQLite rewrites
     * a whole row on UPDATE, so with the body in export_spans every claim
     * and every settle wrote each span's bytes again (store_export.c). The
     * trigger keeps gc's deletes of export_spans rows complete. */
    "CREATE TABLE export_bodies ("
    "  id INTEGER PRIMARY KEY,"
    "  body BLOB NOT NULL);"
    "INSERT INTO export_bodies (id, body) SELECT id, body FROM export_spans;"
    "ALTER TABLE export_spans DROP COLUMN body;"
    "ALTER TABLE export_spans ADD COLUMN body_len INTEGER NOT NULL"
    "  DEFAULT 0;"
    "UPDATE export_spans SET body_len = (SELECT length(b.body) FROM"
    "  export_bodies b WHERE b.id = export_spans.id);"
    "CREATE TRIGGER export_bodies_gone AFTER DELETE ON export_spans"
    "  BEGIN DELETE FROM export_bodies WHERE id = old.id; END;",
    /* 4 -> 5: fewer index entries per exported span (store_export.c).
     * The pending spans only, in a partial index: a settled span leaves
     * it instead of moving from (0, id) to (1, id) in export_spans_state.
     * A task's rows are found by its trace id, the prefix of the
     * (trace_id, span_id) index, when that trace is the task's own (derived
     * from its id); the rows of a task recorded with a trace context,
     * which other tasks may share, are marked trace_shared and found by
     * task in a partial index. The rejected spans, few, in one too: the
     * counts by state take the delivered ones as the rest. */
    "DROP INDEX IF EXISTS export_spans_state;"
    "DROP INDEX IF EXISTS export_spans_task;"
    "ALTER TABLE export_spans ADD COLUMN trace_shared INTEGER NOT NULL"
    "  DEFAULT 0;"
    "UPDATE export_spans SET trace_shared = 1 WHERE task_id IN"
    "  (SELECT task_id FROM tasks WHERE typeof(trace_id) = 'blob'"
    "   AND length(trace_id) = 16 AND typeof(parent_span_id) = 'blob'"
    "   AND length(parent_span_id) = 8);"
    "CREATE INDEX export_spans_pending ON export_spans (id)"
    "  WHERE state = 0;"
    "CREATE INDEX export_spans_shared ON export_spans (task_id)"
    "  WHERE trace_shared = 1;"
    "CREATE INDEX export_spans_rejected ON export_spans (id)"
    "  WHERE state NOT IN (0, 1);",
    /* 5 -> 6: how the task's span ids are derived. 2: with the task id,
     * so that tasks that joined one trace context do not share span ids
     * (docs/span-model.md). The tasks of older buffers keep theirs (1). */
    "ALTER TABLE tasks ADD COLUMN id_scheme INTEGER NOT NULL DEFAULT 1;",
    /* 6 -> 7: one b-tree page per emit (docs/buffer.md). An event's id
     * is its task's number (tasks.tnum) << 32 | its seq, so the events of
     * a task are one range of the table, in seq order, and the
     * (task_id, seq) index goes: an emit writes the table's b-tree alone,
     * at its end for the newest task (where SQLite appends without
     * rebalancing). The global order of ids goes with it, and the
     * exporters' cursor over it: a task the exporters must look at is
     * marked export_live, and export_seq is the last of its events an
     * exporter has examined (store_export.c). What the old cursor had
     * passed is examined; the rest is live. Events of a task without a
     * row (none that this library wrote) get one first. */
    "INSERT OR IGNORE INTO tasks (task_id, last_seq, incarnation,"
    "  created_ns, updated_ns) SELECT task_id, max(seq), max(incarnation),"
    "  min(ts_ns), max(ts_ns) FROM task_events GROUP BY task_id;"
    "ALTER TABLE tasks ADD COLUMN tnum INTEGER;"
    "UPDATE tasks SET tnum = rowid;"
    "CREATE UNIQUE INDEX tasks_tnum ON tasks (tnum);"
    "ALTER TABLE tasks ADD COLUMN export_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN export_live INTEGER NOT NULL DEFAULT 1;"
    "UPDATE tasks SET export_seq = coalesce((SELECT max(e.seq) FROM"
    "  task_events e WHERE e.task_id = tasks.task_id AND e.id <= (SELECT"
    "  coalesce(max(int_value), 0) FROM export_state WHERE name ="
    "  'cursor')), 0);"
    "UPDATE tasks SET export_live = coalesce((SELECT max(e.seq) FROM"
    "  task_events e WHERE e.task_id = tasks.task_id), 0) > export_seq;"
    "CREATE TABLE task_events_v7 ("
    "  id INTEGER PRIMARY KEY,"
    "  task_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event_type TEXT NOT NULL,"
    "  actor TEXT,"
    "  span_id TEXT NOT NULL,"
    "  parent_span_id TEXT,"
    "  phase TEXT,"
    "  payload TEXT NOT NULL DEFAULT '{}',"
    "  ts_ns INTEGER NOT NULL,"
    "  incarnation INTEGER NOT NULL,"
    "  resource_id INTEGER);"
    "INSERT INTO task_events_v7 SELECT t.tnum * 4294967296 + e.seq,"
    "  e.task_id, e.seq, e.event_type, e.actor, e.span_id,"
    "  e.parent_span_id, e.phase, e.payload, e.ts_ns, e.incarnation,"
    "  e.resource_id FROM task_events e JOIN tasks t"
    "  ON t.task_id = e.task_id ORDER BY t.tnum, e.seq;"
    "DROP TABLE task_events;"
    "ALTER TABLE task_events_v7 RENAME TO task_events;"
    "DELETE FROM export_state WHERE name = 'cursor';"
    "CREATE INDEX tasks_export_live ON tasks (task_id)"
    "  WHERE export_live = 1;",
    /* 7 -> 8: export progress per task, not per span (docs/export.md).
     * export_done counts the task's closed spans, in close order, that
     * are settled; export_closed those an exporter found closed; a lease
     * (export_owner, export_until) keeps other exporters off the spans
     * past export_done while one sends them; export_epoch counts gc's
     * prunes of the task, so that progress read before a prune never
     * applies after it. export_spans keeps rows for the rejected spans
     * only. Of the older rows: a task that was done (not live) had a row
     * for every closed span, so its counts are its rows; a task still
     * live, or with a pending row, has them as its closed spans, none
     * settled, and its delivered rows keep those spans from being sent
     * again; the pending rows go (their spans are found again). The
     * delivered spans are counted in export_state. */
    "ALTER TABLE tasks ADD COLUMN export_done INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN export_closed INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN export_owner TEXT;"
    "ALTER TABLE tasks ADD COLUMN export_until INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN export_epoch INTEGER NOT NULL DEFAULT 0;"
    "INSERT OR REPLACE INTO export_state (name, int_value)"
    "  SELECT 'delivered', count(*) FROM export_spans WHERE state = 1;"
    "UPDATE tasks SET export_live = 1 WHERE task_id IN"
    "  (SELECT task_id FROM export_spans WHERE state = 0);"
    "UPDATE tasks SET export_closed = x.n, export_done = CASE WHEN"
    "  tasks.export_live = 0 THEN x.n ELSE 0 END FROM"
    "  (SELECT task_id, count(*) AS n FROM export_spans GROUP BY task_id)"
    "  AS x WHERE x.task_id = tasks.task_id;"
    "DELETE FROM export_spans WHERE state = 0;"
    "DROP INDEX IF EXISTS export_spans_pending;",
    /* 8 -> 9: each event's payload as OTLP attributes beside its JSON
     * (event_wire.c), encoded at insert; the older events have none and
     * their payloads are encoded at export, as before. */
    "ALTER TABLE task_events ADD COLUMN otlp BLOB;",
    /* 9 -> 10: what an exporter reads of each event, in one column
     * (event_record.c), the payload's wire in it: otlp stays for the
     * events stored before, and new events leave it NULL. */
    "ALTER TABLE task_events ADD COLUMN export_record BLOB;",
};

/* Map an SQLite result code to ours. Extended codes are reduced first. */
taskspan_code taskspan__sqlite_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return TASKSPAN_OK;
    case SQLITE_NOMEM:
        return TASKSPAN_E_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TASKSPAN_E_BUSY;
    case SQLITE_FULL:
        return TASKSPAN_E_FULL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return TASKSPAN_E_READONLY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return TASKSPAN_E_CORRUPT;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return TASKSPAN_E_IO;
    default:
        return TASKSPAN_E_STORE;
    }
}

taskspan_code taskspan__sqlite_fail(sqlite3 *db, int rc, const char *doing,
                                    char *err, size_t errlen)
{
    const char *detail = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = 0;
    taskspan_code code = taskspan__guard_code(db, rc, &sys);
    if (sys != 0) {
        return taskspan__fail(err, errlen, code, "%s: %s (%s)", doing, detail,
                              strerror(sys));
    }
    return taskspan__fail(err, errlen, code, "%s: %s", doing, detail);
}

int taskspan__sqlite_step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int taskspan__sqlite_bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    return s != NULL ? sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, idx);
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static taskspan_code read_user_version(sqlite3 *db, int *out, char *err,
                                       size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        taskspan_code code = taskspan__sqlite_fail(
            db, rc, "reading the schema version", err, errlen);
        sqlite3_finalize(st);
        return code;
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return TASKSPAN_OK;
}

/* Bring the schema to SCHEMA_VERSION inside one write transaction, so two
 * processes opening a new buffer at once cannot both migrate it. */
static taskspan_code migrate(sqlite3 *db, char *err, size_t errlen)
{
    int version = 0;
    taskspan_code code = read_user_version(db, &version, err, errlen);
    if (code != TASKSPAN_OK) {
        return code;
    }
    if (version > SCHEMA_VERSION) {
        return taskspan__fail(err, errlen, TASKSPAN_E_SCHEMA,
                              "buffer schema version %d is newer than this "
                              "library's %d; upgrade libtaskspan",
                              version, SCHEMA_VERSION);
    }
    if (version == SCHEMA_VERSION) {
        return TASKSPAN_OK;
    }
    int rc = exec_sql(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(
            db, rc, "locking the buffer to create its schema", err, errlen);
    }
    /* Re-read under the lock: another process may have migrated meanwhile. */
    code = read_user_version(db, &version, err, errlen);
    for (int v = version; code == TASKSPAN_OK && v < SCHEMA_VERSION; v++) {
        char pragma[64];
        rc = exec_sql(db, migrations[v]);
        if (rc == SQLITE_OK) {
            snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", v + 1);
            rc = exec_sql(db, pragma);
        }
        if (rc != SQLITE_OK) {
            code = taskspan__sqlite_fail(db, rc, "creating the buffer schema",
                                         err, errlen);
        }
    }
    if (code == TASKSPAN_OK) {
        rc = exec_sql(db, "COMMIT");
        if (rc != SQLITE_OK) {
            code = taskspan__sqlite_fail(
                db, rc, "committing the buffer schema", err, errlen);
        }
    }
    if (code != TASKSPAN_OK) {
        exec_sql(db, "ROLLBACK");
    }
    return code;
}

/* Count the tables in the file that are not taskspan's. */
static taskspan_code count_foreign_tables(sqlite3 *db, int *out, char *err,
                                          size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT count(*) FROM sqlite_master WHERE "
                                "type = 'table' AND name NOT IN "
                                "('tasks', 'task_events', 'resources', "
                                "'export_spans', 'export_bodies', "
                                "'export_state', "
                                "'work_items', 'checkpoints', "
                                "'crashed_incarnations')",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        taskspan_code code = taskspan__sqlite_fail(
            db, rc, "reading the buffer", err, errlen);
        sqlite3_finalize(st);
        return code;
    }
    *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return TASKSPAN_OK;
}

/* Is the file a taskspan buffer this library can use? A new (empty) file
 * is, unless opened read-only; a version-0 file holding other tables is
 * someone else's database; a newer schema needs a newer library. */
static taskspan_code check_ours(sqlite3 *db, bool readonly, char *err,
                                size_t errlen)
{
    int version = 0, foreign = 0;
    taskspan_code code = read_user_version(db, &version, err, errlen);
    if (code == TASKSPAN_OK && version == 0) {
        code = count_foreign_tables(db, &foreign, err, errlen);
    }
    if (code != TASKSPAN_OK) {
        return code;
    }
    if (version == 0 && foreign > 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "the file is an SQLite database with other "
                              "tables, not a taskspan buffer");
    }
    if (version > SCHEMA_VERSION) {
        return taskspan__fail(err, errlen, TASKSPAN_E_SCHEMA,
                              "buffer schema version %d is newer than this "
                              "library's %d; upgrade libtaskspan",
                              version, SCHEMA_VERSION);
    }
    if (version == 0 && readonly) {
        return taskspan__fail(err, errlen, TASKSPAN_E_CORRUPT,
                              "the file has no taskspan schema");
    }
    return TASKSPAN_OK;
}

static taskspan_code prepare_all(store *s, char *err, size_t errlen)
{
    /* The task's seq is read, then written, inside the append's write
     * transaction. Not one upsert with RETURNING: SQLite runs RETURNING
     * through a temporary table whose memory, freed at the top of the heap,
     * glibc gives back and takes again on every commit (two brk calls and a
     * page fault per emit: about 10 us of a 28 us commit, measured). The
     * last seq is the larger of the tasks row's and the task's last event's
     * (next_seq says why). */
    static const char seq_sql[] =
        "SELECT last_seq, incarnation, updated_ns, tnum, export_live,"
        "  (SELECT max(id) FROM task_events WHERE " TASKSPAN__EVENTS_OF_T ")"
        " FROM tasks t WHERE task_id = ?1";
    static const char bump_sql[] =
        "UPDATE tasks SET last_seq = ?2, incarnation = ?3, updated_ns = ?4,"
        "  export_live = 1 WHERE task_id = ?1";
    static const char new_tnum_sql[] =
        "SELECT coalesce(max(tnum), 0) + 1 FROM tasks";
    static const char new_task_sql[] =
        "INSERT INTO tasks (task_id, last_seq, incarnation, trace_id,"
        "  parent_span_id, trace_flags, created_ns, updated_ns, id_scheme,"
        "  tnum) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?6, 2, ?7)";
    static const char insert_sql[] =
        "INSERT INTO task_events (id, task_id, seq, event_type, actor,"
        "  span_id, parent_span_id, phase, payload, ts_ns, incarnation,"
        "  resource_id, export_record)"
        " VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?13)";
    static const char task_sql[] =
        "SELECT trace_id, parent_span_id, id_scheme, export_done,"
        "  export_epoch FROM tasks WHERE task_id = ?1";
    static const char events_sql[] =
        "SELECT seq, incarnation, ts_ns, event_type, actor, span_id,"
        "  parent_span_id, phase, payload, resource_id, otlp"
        " FROM task_events WHERE " TASKSPAN__EVENTS_OF_P1 " ORDER BY id";
    static const char records_sql[] =
        "SELECT id, ts_ns, export_record"
        " FROM task_events WHERE " TASKSPAN__EVENTS_OF_P1 " ORDER BY id";
    static const char event_row_sql[] =
        "SELECT seq, incarnation, ts_ns, event_type, actor, span_id,"
        "  parent_span_id, phase, payload, resource_id, otlp"
        " FROM task_events WHERE id = ?1";
    struct {
        const char *sql;
        sqlite3_stmt **st;
    } all[] = {
        {"BEGIN IMMEDIATE", &s->begin_immediate},
        {"BEGIN", &s->begin_read},
        {"COMMIT", &s->commit},
        {seq_sql, &s->select_seq},
        {bump_sql, &s->bump_seq},
        {new_tnum_sql, &s->new_tnum},
        {new_task_sql, &s->insert_task},
        {insert_sql, &s->insert_event},
        {task_sql, &s->select_task},
        {events_sql, &s->select_events},
        {records_sql, &s->select_records},
        {event_row_sql, &s->select_event_row},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        int rc = sqlite3_prepare_v3(
            s->db, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT, all[i].st, NULL);
        if (rc != SQLITE_OK) {
            return taskspan__sqlite_fail(
                s->db, rc, "preparing buffer statements", err, errlen);
        }
    }
    return TASKSPAN_OK;
}

static void store_close(void *handle)
{
    store *s = handle;
    if (s == NULL) {
        return;
    }
    /* The checkpointer's connection first: then the writer's close below
     * is the last one and checkpoints and removes the WAL, as before. */
    taskspan__ckpt_stop(s->ckpt);
    taskspan__sqlite_cache_clear(s);
    sqlite3_finalize(s->begin_immediate);
    sqlite3_finalize(s->begin_read);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->select_seq);
    sqlite3_finalize(s->bump_seq);
    sqlite3_finalize(s->new_tnum);
    sqlite3_finalize(s->insert_task);
    sqlite3_finalize(s->insert_event);
    sqlite3_finalize(s->select_task);
    sqlite3_finalize(s->select_events);
    sqlite3_finalize(s->select_records);
    sqlite3_finalize(s->select_event_row);
    taskspan__arena_free(&s->wire_scratch);
    free(s->last.task_id);
    /* sqlite3_close_v2 also checkpoints and removes the WAL when this is the
     * last connection, leaving a single tidy file behind. */
    sqlite3_close_v2(s->db);
    free(s);
}

/* Switch the file to WAL (a persistent setting, so only its creator
 * usually does it). Changing the journal mode needs an exclusive lock, and
 * SQLite returns SQLITE_BUSY for it without calling the busy handler when
 * another process is opening the same new file at that moment; so retry,
 * for at most the busy timeout. */
static int enable_wal(sqlite3 *db, int timeout_ms)
{
    int rc = SQLITE_BUSY;
    for (int waited = 0; waited <= timeout_ms; waited += 2) {
        rc = exec_sql(db, "PRAGMA journal_mode=WAL");
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
            return rc;
        }
        sqlite3_sleep(2);
    }
    return rc;
}

static int busy_timeout(const taskspan__store_config *cfg)
{
    return cfg->busy_timeout_ms > 0 ? cfg->busy_timeout_ms
                                    : DEFAULT_BUSY_TIMEOUT_MS;
}

/* The busy handler of a read-write connection, for the busy timeout.
 * SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, 10 ... ms between
 * tries, so a writer that meets the write lock held for a fraction of a
 * millisecond (another process's commit, the checkpointer's final step)
 * would lose a millisecond or more. This one tries again every 20 us for
 * the first millisecond or so, then backs off to 1 ms. */
static int writer_busy(void *arg, int count)
{
    store *s = arg;
    int64_t now = taskspan__mono_ns();

    if (count == 0) {
        s->busy_since_ns = now;
    }
    int64_t left = (int64_t)s->busy_timeout_ms * 1000000 -
                   (now - s->busy_since_ns);
    if (left <= 0) {
        return 0;
    }
    int64_t delay = count < 50 ? 20000 : count < 100 ? 100000 : 1000000;
    struct timespec t = {.tv_sec = 0,
                         .tv_nsec = (long)(delay < left ? delay : left)};
    nanosleep(&t, NULL);
    return 1;
}

/* Apply the connection's pragmas. WAL lets readers (the exporter, the CLI)
 * run beside the writer; NORMAL syncs at checkpoints only, which survives a
 * process crash; FULL syncs every commit, which also survives power loss. */
static taskspan_code configure(store *s, const taskspan__store_config *cfg,
                               char *err, size_t errlen)
{
    int timeout = busy_timeout(cfg);
    int rc;
    if (s->readonly) {
        return TASKSPAN_OK;
    }
    rc = enable_wal(s->db, timeout);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "switching the buffer to WAL",
                                     err, errlen);
    }
    rc = exec_sql(s->db, cfg->sync_mode == TASKSPAN_SYNC_FULL
                             ? "PRAGMA synchronous=FULL"
                             : "PRAGMA synchronous=NORMAL");
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "setting synchronous", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

/* A read-only open of a buffer that an older library wrote. The readers
 * speak the current schema only, and the file must not change: its
 * content is copied into a private temporary database (SQLite deletes it
 * at close), upgraded there and read from there, a snapshot as of the
 * open. A read-write open upgrades the buffer itself. */
static taskspan_code read_upgraded_copy(store *s, const char *path, char *err,
                                        size_t errlen)
{
    int version = 0;
    taskspan_code code = read_user_version(s->db, &version, err, errlen);
    if (code != TASKSPAN_OK || version >= SCHEMA_VERSION) {
        return code;
    }
    sqlite3 *copy = NULL;
    int rc = sqlite3_open_v2("", &copy,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc == SQLITE_OK) {
        sqlite3_backup *b = sqlite3_backup_init(copy, "main", s->db, "main");
        rc = b != NULL ? sqlite3_backup_step(b, -1) : sqlite3_errcode(copy);
        int done = b != NULL ? sqlite3_backup_finish(b) : rc;
        rc = rc == SQLITE_DONE ? done : rc;
    }
    if (rc != SQLITE_OK) {
        code = taskspan__sqlite_fail(copy != NULL ? copy : s->db, rc,
                                     "copying an older buffer to read it", err,
                                     errlen);
    } else {
        code = migrate(copy, err, errlen);
    }
    if (code != TASKSPAN_OK) {
        sqlite3_close(copy);
        return code;
    }
    sqlite3_extended_result_codes(copy, 1);
    sqlite3_busy_timeout(copy, s->busy_timeout_ms);
    sqlite3_close(s->db);
    s->db = copy;
    snprintf(s->notice, sizeof s->notice,
             "%.200s has buffer schema %d, older than this library's %d: "
             "read from an upgraded copy made at open (the first "
             "read-write open upgrades the file)",
             path, version, SCHEMA_VERSION);
    return TASKSPAN_OK;
}

/* Open path; uri, when not NULL, is what SQLite opens instead (the same
 * file as a URI with parameters). */
static taskspan_code open_connection(void **out, const char *path,
                                     const char *uri,
                                     const taskspan__store_config *cfg,
                                     char *err, size_t errlen)
{
    taskspan_code code;
    struct stat sb;
    store *s;
    int flags;

    *out = NULL;
    if ((cfg->flags & (TASKSPAN_OPEN_NO_CREATE | TASKSPAN_OPEN_READONLY)) &&
        stat(path, &sb) != 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOT_FOUND,
                              "no buffer at %s: %s", path, strerror(errno));
    }
    /* Recorders on different threads use different connections, which
     * needs an SQLite built thread-safe (any mode but 0). */
    if (sqlite3_threadsafe() == 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_STORE,
                              "the linked SQLite was built without thread "
                              "support (SQLITE_THREADSAFE=0)");
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    s->readonly = (cfg->flags & TASKSPAN_OPEN_READONLY) != 0;
    /* NOMUTEX: the recorder serialises every call on this connection. */
    flags = SQLITE_OPEN_NOMUTEX |
            (s->readonly ? SQLITE_OPEN_READONLY
                         : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (uri != NULL) {
        flags |= SQLITE_OPEN_URI;
    }
    int rc = sqlite3_open_v2(uri != NULL ? uri : path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        code = taskspan__sqlite_fail(s->db, rc, path, err, errlen);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* First of all: every later step may meet another process's lock. */
    s->busy_timeout_ms = busy_timeout(cfg);
    if (s->readonly) {
        sqlite3_busy_timeout(s->db, s->busy_timeout_ms);
    } else {
        sqlite3_busy_handler(s->db, writer_busy, s);
    }
    s->sync_full = cfg->sync_mode == TASKSPAN_SYNC_FULL;
    s->cap_bytes = cfg->max_bytes;
    code = s->readonly ? TASKSPAN_OK
                       : taskspan__guard_writable(s->db, path, err, errlen);
    /* Identify the file before changing anything in it (WAL mode, schema):
     * someone else's database must come out of a failed open untouched. */
    if (code == TASKSPAN_OK) {
        code = check_ours(s->db, s->readonly, err, errlen);
    }
    if (code == TASKSPAN_OK) {
        code = taskspan__guard_probe(s->db, cfg->flags & TASKSPAN_OPEN_VERIFY,
                                     err, errlen);
    }
    if (code == TASKSPAN_OK) {
        code = configure(s, cfg, err, errlen);
    }
    if (code == TASKSPAN_OK) {
        code = s->readonly ? read_upgraded_copy(s, path, err, errlen)
                           : migrate(s->db, err, errlen);
    }
    /* Statement journals of multi-row updates (leases) stay in memory
     * rather than in a temp file per request. Not during the migration:
     * its statements rewrite whole tables, and their journals in memory
     * grew with the buffer (255 MB of RSS to upgrade a 200 MB buffer to
     * schema 7; 9 MB in a temp file). */
    if (code == TASKSPAN_OK && !s->readonly) {
        exec_sql(s->db, "PRAGMA temp_store=MEMORY");
    }
    if (code == TASKSPAN_OK) {
        code = prepare_all(s, err, errlen);
    }
    if (code != TASKSPAN_OK) {
        goto fail;
    }
    *out = s;
    return TASKSPAN_OK;
fail:
    /* A directory or file system that cannot be written says so (unless
     * taskspan__guard_writable already did). */
    if (!s->readonly &&
        (code == TASKSPAN_E_IO ||
         (code == TASKSPAN_E_READONLY &&
          (s->db == NULL || sqlite3_db_readonly(s->db, "main") != 1)))) {
        code = taskspan__guard_cantopen(code, path, err, errlen);
    }
    if (code == TASKSPAN_E_CORRUPT && s->db != NULL) {
        /* Leave a damaged file as it was found, -wal included. */
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    }
    store_close(s);
    return code;
}

/* The open found the file corrupt: move a damaged buffer aside and open a
 * new one (store_guard.c decides what counts as damaged). */
static taskspan_code recover(void **out, const char *path,
                             const taskspan__store_config *cfg, char *err,
                             size_t errlen)
{
    char first[TASKSPAN__MSG_SIZE];
    char notice[sizeof((store *)NULL)->notice] = "";

    snprintf(first, sizeof first, "%s", err);
    taskspan_code code = taskspan__guard_recover(
        path, cfg, busy_timeout(cfg), notice, sizeof notice, err, errlen);
    if (code != TASKSPAN_OK) {
        if (strcmp(err, first) == 0) {
            /* Not damage: someone else's database, or no schema. */
            taskspan__fail(err, errlen, code,
                           "%.120s is not a taskspan buffer: %s", path, first);
        }
        return code;
    }
    code = open_connection(out, path, NULL, cfg, err, errlen);
    if (code == TASKSPAN_OK) {
        store *s = *out;
        snprintf(s->notice, sizeof s->notice, "%s", notice);
    }
    return code;
}

/* Open; a damaged buffer is moved aside (store_guard.c) and the open is
 * tried once more, on a new file. */
static taskspan_code store_open(void **out, const char *path,
                                const taskspan__store_config *cfg, char *err,
                                size_t errlen)
{
    char uri[PATH_MAX * 3 + 32];

    taskspan_code code = open_connection(out, path, NULL, cfg, err, errlen);
    /* A WAL database on a read-only file system cannot be read the usual
     * way (its -shm cannot be created); nothing can write it there, so
     * it can be read as immutable. */
    if ((code == TASKSPAN_E_IO || code == TASKSPAN_E_READONLY) &&
        (cfg->flags & TASKSPAN_OPEN_READONLY) &&
        taskspan__guard_immutable_uri(uri, sizeof uri, path)) {
        code = open_connection(out, path, uri, cfg, err, errlen);
    }
    /* An I/O error may also come from another process's repair: the
     * damaged file, its -wal and -shm renamed while this one had them
     * open (test_corrupt_concurrent_opens saw it once). Opened again under
     * the lock, after that repair, it is the new buffer; a real I/O error
     * stays one. */
    bool repair_race = code == TASKSPAN_E_IO && cfg->may_repair;
    if ((code != TASKSPAN_E_CORRUPT && !repair_race) || err == NULL) {
        return code;
    }
    if (!cfg->may_repair) {
        return recover(out, path, cfg, err, errlen); /* only says why */
    }
    /* One repair at a time among the processes that found the buffer
     * damaged; the first one under the lock moves it aside and the others
     * then open the new buffer it started. */
    int lock = taskspan__guard_lock_dir(path, busy_timeout(cfg));
    code = open_connection(out, path, NULL, cfg, err, errlen);
    if (code == TASKSPAN_E_CORRUPT) {
        code = recover(out, path, cfg, err, errlen);
    }
    taskspan__guard_unlock_dir(lock);
    return code;
}

static const char *store_open_notice(const void *handle)
{
    const store *s = handle;
    return s->notice;
}

/* The tasks row of task_id brought to seq, incarnation and ts_ns. */
static int write_task_row(store *s, const char *task_id, int64_t seq,
                          int64_t incarnation, int64_t ts_ns)
{
    sqlite3_stmt *st = s->bump_seq;
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, incarnation);
    sqlite3_bind_int64(st, 4, ts_ns);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The next free task number, for a task's first event. */
static int new_tnum(store *s, int64_t *out)
{
    int rc = sqlite3_step(s->new_tnum);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s->new_tnum, 0) : 0;
    sqlite3_reset(s->new_tnum);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Where this event goes (task_pos), creating the task's row at its first
 * event. Called inside the write transaction, so the read and the write
 * cannot interleave with another writer's.
 *
 * The seq comes from the task's last event, the end of its range of ids,
 * and the tasks row is written only at the task's first event, at each
 * runner_spawn (incarnation stays exact), when its updated_ns is
 * TASKSPAN__TASK_ROW_REFRESH_NS old, and when the exporters had set the
 * task aside (export_live 0, store_export.c): a busy task's emit writes
 * one page of the WAL, its event's. last_seq and updated_ns in the row
 * are a lower bound; readers take the live values
 * (TASKSPAN__LIVE_LAST_SEQ, store_sqlite.h), and the row's last_seq
 * stays a floor once gc has deleted the events, so a seq is never handed
 * out twice. SQLITE_TOOBIG when the task has used every seq below 2^32
 * (append_fail says so). */
static int next_seq(store *s, const taskspan__append *ev, task_pos *out)
{
    const int starts = ev->starts_incarnation ? 1 : 0;
    sqlite3_stmt *st = s->select_seq;
    sqlite3_bind_text(st, 1, ev->task_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    bool known = rc == SQLITE_ROW, live = true;
    task_pos p = {.seq = 1, .incarnation = starts};
    if (known) {
        int64_t row_seq = sqlite3_column_int64(st, 0);
        /* 0 when the task has no event left */
        int64_t event_seq = sqlite3_column_int64(st, 5) % TASKSPAN__SEQ_LIMIT;
        p.seq = (row_seq > event_seq ? row_seq : event_seq) + 1;
        p.incarnation = sqlite3_column_int64(st, 1) + starts;
        p.row_ns = sqlite3_column_int64(st, 2);
        p.tnum = sqlite3_column_int64(st, 3);
        live = sqlite3_column_int(st, 4) != 0;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return rc;
    }
    if (p.seq >= TASKSPAN__SEQ_LIMIT) {
        return SQLITE_TOOBIG;
    }
    if (known && !starts && live &&
        ev->ts_ns - p.row_ns < TASKSPAN__TASK_ROW_REFRESH_NS) {
        *out = p; /* the row is fresh enough: not written */
        return SQLITE_OK;
    }
    if (known) {
        rc = write_task_row(s, ev->task_id, p.seq, p.incarnation, ev->ts_ns);
    } else if ((rc = new_tnum(s, &p.tnum)) == SQLITE_OK) {
        st = s->insert_task;
        sqlite3_bind_text(st, 1, ev->task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, starts);
        if (ev->has_trace_context) {
            sqlite3_bind_blob(st, 3, ev->trace_id, 16, SQLITE_STATIC);
            sqlite3_bind_blob(st, 4, ev->parent_span_id, 8, SQLITE_STATIC);
            sqlite3_bind_int(st, 5, ev->trace_flags);
        } else {
            sqlite3_bind_null(st, 3);
            sqlite3_bind_null(st, 4);
            sqlite3_bind_null(st, 5);
        }
        sqlite3_bind_int64(st, 6, ev->ts_ns);
        sqlite3_bind_int64(st, 7, p.tnum);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc != SQLITE_OK) {
        return rc;
    }
    p.row_ns = ev->ts_ns;
    *out = p;
    return SQLITE_OK;
}

/* After a run of one task's events appended after next_seq (p, at the
 * run's last event): the tasks row brought up to that event when it is a
 * refresh interval past the row, so that the row stays less than that
 * below the task's last event (readers rely on it:
 * TASKSPAN__LIVE_UPDATED_NS). */
static int refresh_task_row(store *s, const taskspan__append *last,
                            const task_pos *p)
{
    if (last->ts_ns - p->row_ns < TASKSPAN__TASK_ROW_REFRESH_NS) {
        return SQLITE_OK;
    }
    return write_task_row(s, last->task_id, p->seq, p->incarnation,
                          last->ts_ns);
}

/* An append that failed with rc, doing what. */
static taskspan_code append_fail(store *s, int rc, const char *doing,
                                 const char *task_id, char *err, size_t errlen)
{
    if (rc == SQLITE_TOOBIG) {
        return taskspan__fail(err, errlen, TASKSPAN_E_STORE,
                              "%s: task %.200s holds %lld events, the most "
                              "one task can have",
                              doing, task_id,
                              (long long)(TASKSPAN__SEQ_LIMIT - 1));
    }
    return taskspan__sqlite_fail(s->db, rc, doing, err, errlen);
}

static int insert_event(store *s, const taskspan__append *ev,
                        const task_pos *p)
{
    sqlite3_stmt *st = s->insert_event;
    sqlite3_bind_text(st, 1, ev->task_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->seq);
    sqlite3_bind_text(st, 3, ev->event_type, -1, SQLITE_STATIC);
    taskspan__sqlite_bind_text(st, 4, ev->actor);
    taskspan__sqlite_bind_text(st, 5, ev->span_key);
    taskspan__sqlite_bind_text(st, 6, ev->parent_span_key);
    taskspan__sqlite_bind_text(st, 7, ev->phase);
    taskspan__sqlite_bind_text(
        st, 8, ev->payload_json != NULL ? ev->payload_json : "{}");
    sqlite3_bind_int64(st, 9, ev->ts_ns);
    sqlite3_bind_int64(st, 10, p->incarnation);
    if (ev->resource_id > 0) {
        sqlite3_bind_int64(st, 11, ev->resource_id);
    } else {
        sqlite3_bind_null(st, 11);
    }
    sqlite3_bind_int64(st, 12, p->tnum * TASKSPAN__SEQ_LIMIT + p->seq);
    uint8_t rec[TASKSPAN__RECORD_MAX];
    size_t n = taskspan__event_record_make(rec, sizeof rec, ev, p->incarnation,
                                           &s->wire_scratch);
    taskspan__arena_reset(&s->wire_scratch);
    if (n > 0) {
        sqlite3_bind_blob(st, 13, rec, (int)n, SQLITE_STATIC);
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int taskspan__sqlite_append_locked(store *s, const taskspan__append *ev,
                                   int64_t *out_seq)
{
    task_pos p;
    int rc = next_seq(s, ev, &p);
    if (rc == SQLITE_OK) {
        rc = insert_event(s, ev, &p);
        *out_seq = p.seq;
    }
    return rc;
}

/* The buffer's data version as this connection sees it: SQLite changes it
 * at each commit, of this connection or of another, and at checkpoints. */
static unsigned data_version(store *s)
{
    unsigned v = 0;
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_DATA_VERSION, &v) !=
        SQLITE_OK) {
        return 0;
    }
    return v;
}

/* Inside the write transaction: where ev goes when nothing has written
 * the buffer since this connection's last append, which was of ev's task
 * (s->last): right after that event, with no read, and the tasks row
 * needs no write (fresh enough, live). Else false, and next_seq reads. */
static bool follows_last(store *s, const taskspan__append *ev, task_pos *p)
{
    if (s->last.task_id == NULL || ev->starts_incarnation ||
        strcmp(s->last.task_id, ev->task_id) != 0 ||
        ev->ts_ns - s->last.pos.row_ns >= TASKSPAN__TASK_ROW_REFRESH_NS ||
        s->last.pos.seq + 1 >= TASKSPAN__SEQ_LIMIT ||
        data_version(s) != s->last.data_version) {
        return false;
    }
    *p = s->last.pos;
    p->seq++;
    return true;
}

/* After a commit of ev at p (or a failure: p NULL), what follows_last
 * needs next time. */
static void remember_last(store *s, const taskspan__append *ev,
                          const task_pos *p)
{
    if (p == NULL) {
        free(s->last.task_id);
        s->last.task_id = NULL;
        return;
    }
    if (s->last.task_id == NULL || strcmp(s->last.task_id, ev->task_id) != 0) {
        free(s->last.task_id);
        s->last.task_id = strdup(ev->task_id); /* NULL: not remembered */
    }
    s->last.pos = *p;
    s->last.data_version = data_version(s);
}

/* One try at committing the event. OUT: *at_commit, whether a failure
 * came from the commit (writing the -wal) rather than from the statements
 * (allocating pages, which is where the cap stops a transaction). */
static taskspan_code append_once(store *s, const taskspan__append *ev,
                                 int64_t *out_seq, bool *at_commit,
                                 int *sys_errno, char *err, size_t errlen)
{
    task_pos p;

    *at_commit = false;
    *sys_errno = 0;
    /* IMMEDIATE takes the write lock up front (waiting up to the busy
     * timeout), so the read of last_seq and the insert cannot interleave
     * with another writer's. */
    int rc = taskspan__sqlite_step_once(s->begin_immediate);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "locking the buffer", err,
                                     errlen);
    }
    /* A runner records its task's events one after another: the seq
     * follows the last one this connection appended, unless anything
     * else wrote the buffer since (follows_last). */
    if (!follows_last(s, ev, &p)) {
        rc = next_seq(s, ev, &p);
    }
    if (rc == SQLITE_OK) {
        rc = insert_event(s, ev, &p);
    }
    if (rc == SQLITE_OK) {
        *at_commit = true;
        rc = taskspan__sqlite_step_once(s->commit);
    }
    remember_last(s, ev, rc == SQLITE_OK ? &p : NULL);
    if (rc != SQLITE_OK) {
        taskspan_code code = append_fail(s, rc, "recording the event",
                                         ev->task_id, err, errlen);
        taskspan__guard_code(s->db, rc, sys_errno);
        /* Leaves the database as it was before this event: seq not used. */
        if (!sqlite3_get_autocommit(s->db)) {
            exec_sql(s->db, "ROLLBACK");
        }
        return code;
    }
    *out_seq = p.seq;
    return TASKSPAN_OK;
}

/* Before a connection's first append: start its checkpointer, once. Only
 * appending connections have one (not the exporters', whose writes are
 * few); should it not start, SQLite checkpoints in the commit as usual.
 * Not with synchronous=FULL: each commit there holds the write lock
 * across an fsync, so the thread's final step rarely gets it and the WAL
 * grew, and with it the cost of each commit's fsync (p50 +30% and more);
 * an emit that pays an fsync anyway loses less to SQLite's checkpoint. */
static void start_checkpointer(store *s)
{
    if (!s->ckpt_tried && !s->sync_full) {
        s->ckpt_tried = true;
        taskspan__ckpt_start(&s->ckpt, s->db, s->sync_full, writer_busy, s);
    }
}

void taskspan__sqlite_ckpt_stats(void *h, taskspan__ckpt_stats *out)
{
    store *s = h;
    taskspan__ckpt_get_stats(s->ckpt, out);
}

static taskspan_code store_append(void *handle, const taskspan__append *ev,
                                  int64_t *out_seq, char *err, size_t errlen)
{
    store *s = handle;
    taskspan_code code;
    bool at_commit;
    int sys_errno;

    if (s->readonly) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "the recorder was opened read-only");
    }
    /* The cap applies to appends only, from the first one on (see
     * store_guard.c); should the pragma fail, the append still runs. */
    if (!s->cap_applied && s->cap_bytes > 0) {
        s->cap_applied = taskspan__guard_limit(s->db, s->cap_bytes) ==
                         SQLITE_OK;
    }
    start_checkpointer(s);
    code = append_once(s, ev, out_seq, &at_commit, &sys_errno, err, errlen);
    if (code != TASKSPAN_E_FULL) {
        return code;
    }
    size_t payload_len = ev->payload_json != NULL ? strlen(ev->payload_json)
                                                  : 0;
    if (taskspan__guard_on_full(s, payload_len, at_commit, sys_errno, true,
                                err, errlen)) {
        /* Room was made: once more, and no more. */
        code = append_once(s, ev, out_seq, &at_commit, &sys_errno, err,
                           errlen);
        if (code == TASKSPAN_E_FULL) {
            taskspan__guard_on_full(s, payload_len, at_commit, sys_errno,
                                    false, err, errlen);
        }
    }
    return code;
}

/* ---- the journal mode ---------------------------------------------------- */

static const char journal_set_sql[] =
    "INSERT INTO export_state (name, int_value) VALUES (?1, ?2)"
    " ON CONFLICT (name) DO UPDATE SET int_value = excluded.int_value";

/* Many journal records in one transaction, with how far the journal was
 * moved: replaying the journal after a crash starts there, so no record
 * is stored twice and none is skipped. */
static taskspan_code store_append_batch(void *handle,
                                        const taskspan__append *evs, size_t n,
                                        const char *key, int64_t offset,
                                        char *err, size_t errlen)
{
    store *s = handle;
    sqlite3_stmt *set = NULL;

    if (s->readonly) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "the recorder was opened read-only");
    }
    if (!s->cap_applied && s->cap_bytes > 0) {
        s->cap_applied = taskspan__guard_limit(s->db, s->cap_bytes) ==
                         SQLITE_OK;
    }
    start_checkpointer(s);
    taskspan_code code = taskspan__sqlite_prep(s, journal_set_sql, &set, err,
                                               errlen);
    if (code != TASKSPAN_OK) {
        return code;
    }
    const char *task = "";
    int rc = taskspan__sqlite_step_once(s->begin_immediate);
    for (size_t i = 0; rc == SQLITE_OK && i < n;) {
        /* A run of one task's events (the common case: a recorder's
         * events come in runs) costs one seq lookup instead of one each;
         * the seqs are the same. */
        task_pos p;
        size_t j = i + 1;
        task = evs[i].task_id;
        rc = next_seq(s, &evs[i], &p);
        if (rc == SQLITE_OK) {
            rc = insert_event(s, &evs[i], &p);
        }
        while (rc == SQLITE_OK && j < n && !evs[j].starts_incarnation &&
               strcmp(evs[j].task_id, evs[i].task_id) == 0) {
            if (++p.seq >= TASKSPAN__SEQ_LIMIT) {
                rc = SQLITE_TOOBIG;
                break;
            }
            rc = insert_event(s, &evs[j], &p);
            j++;
        }
        if (rc == SQLITE_OK && j > i + 1) {
            rc = refresh_task_row(s, &evs[j - 1], &p);
        }
        i = j;
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(set, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(set, 2, offset);
        rc = taskspan__sqlite_step_once(set);
    }
    if (rc == SQLITE_OK) {
        rc = taskspan__sqlite_step_once(s->commit);
    }
    taskspan__sqlite_release(s, set);
    if (rc != SQLITE_OK) {
        code = append_fail(s, rc, "moving the journal", task, err, errlen);
        if (!sqlite3_get_autocommit(s->db)) {
            exec_sql(s->db, "ROLLBACK");
        }
        return code;
    }
    return TASKSPAN_OK;
}

static taskspan_code store_journal_offset(void *handle, const char *key,
                                          int64_t *out, char *err,
                                          size_t errlen)
{
    static const char sql[] =
        "SELECT int_value FROM export_state WHERE name = ?1";
    store *s = handle;
    sqlite3_stmt *st = NULL;

    *out = 0;
    taskspan_code code = taskspan__sqlite_prep(s, sql, &st, err, errlen);
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_DONE;
    }
    taskspan__sqlite_release(s, st);
    if (rc != SQLITE_DONE) {
        return taskspan__sqlite_fail(s->db, rc, "reading a journal's progress",
                                     err, errlen);
    }
    return TASKSPAN_OK;
}

static taskspan_code store_journal_forget(void *handle, const char *key,
                                          char *err, size_t errlen)
{
    static const char sql[] = "DELETE FROM export_state WHERE name = ?1";
    store *s = handle;
    sqlite3_stmt *st = NULL;

    taskspan_code code = taskspan__sqlite_prep(s, sql, &st, err, errlen);
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = taskspan__sqlite_step_once(st);
    taskspan__sqlite_release(s, st);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "forgetting a journal", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

static bool copy_blob(uint8_t *out, size_t n, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB ||
        (size_t)sqlite3_column_bytes(st, col) != n) {
        return false;
    }
    memcpy(out, sqlite3_column_blob(st, col), n);
    return true;
}

static int read_task_row(store *s, const char *task_id,
                         taskspan__task_events *out)
{
    sqlite3_stmt *st = s->select_task;
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->has_trace_context = copy_blob(out->trace_id, 16, st, 0) &&
                                 copy_blob(out->parent_span_id, 8, st, 1);
        out->span_ids_by_task = sqlite3_column_int(st, 2) >= 2;
        out->export_done = sqlite3_column_int64(st, 3);
        out->export_epoch = sqlite3_column_int64(st, 4);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Column col as a string in the arena; the previous event's copy when the
 * text is the same (event types, actors, phases and span keys repeat from
 * event to event: reading a task copied each of them again). NULL for a
 * NULL column. */
static const char *column_shared(taskspan__arena *a, sqlite3_stmt *st, int col,
                                 const char *prev)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t == NULL) {
        return NULL;
    }
    if (prev != NULL && strcmp(prev, (const char *)t) == 0) {
        return prev;
    }
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *p = taskspan__arena_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, t, n + 1);
    }
    return p;
}

/* The largest array load_events starts with: 8,192 events, about 1 MiB. */
#define EVENTS_HINT_MAX 8192

/* Room in out->events (*cap entries) for one more. */
static int event_room(taskspan__task_events *out, size_t *cap)
{
    if (out->n_events == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        void *p = realloc(out->events, ncap * sizeof *out->events);
        if (p == NULL) {
            return SQLITE_NOMEM;
        }
        out->events = p;
        *cap = ncap;
    }
    return SQLITE_OK;
}

/* The event of st's row, from the columns of events_sql. */
static int read_one_event(taskspan__task_events *out, size_t *cap,
                          sqlite3_stmt *st)
{
    taskspan__arena *a = &out->arena;
    if (event_room(out, cap) != SQLITE_OK) {
        return SQLITE_NOMEM;
    }
    taskspan__stored_event *e = &out->events[out->n_events];
    const taskspan__stored_event *prev = out->n_events > 0 ? e - 1 : NULL;
    e->seq = sqlite3_column_int64(st, 0);
    e->incarnation = sqlite3_column_int64(st, 1);
    e->ts_ns = sqlite3_column_int64(st, 2);
    e->event_type = column_shared(a, st, 3, prev ? prev->event_type : NULL);
    e->actor = column_shared(a, st, 4, prev ? prev->actor : NULL);
    e->span_key = column_shared(a, st, 5, prev ? prev->span_key : NULL);
    e->parent_span_key = column_shared(a, st, 6,
                                       prev ? prev->parent_span_key : NULL);
    e->phase = column_shared(a, st, 7, prev ? prev->phase : NULL);
    e->payload_json = column_shared(a, st, 8, NULL);
    e->resource_id = sqlite3_column_int64(st, 9); /* NULL reads as 0 */
    const void *wire = sqlite3_column_blob(st, 10);
    e->wire_len = (size_t)sqlite3_column_bytes(st, 10);
    e->wire = NULL;
    if (!taskspan__event_wire_whole(wire, e->wire_len)) {
        e->wire_len = 0; /* none, or damaged: the JSON is encoded */
    } else {
        uint8_t *w = taskspan__arena_alloc(a, e->wire_len);
        if (w == NULL) {
            return SQLITE_NOMEM;
        }
        memcpy(w, wire, e->wire_len);
        e->wire = w;
    }
    if (e->event_type == NULL || e->span_key == NULL) {
        return SQLITE_NOMEM; /* both are NOT NULL columns */
    }
    out->n_events++;
    return SQLITE_OK;
}

/* The event of the row with this id, from its columns: an event without
 * a record, in load_export's read transaction. */
static int read_event_row(store *s, taskspan__task_events *out, size_t *cap,
                          int64_t id)
{
    sqlite3_stmt *st = s->select_event_row;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rc = read_one_event(out, cap, st);
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT; /* the row was there in this transaction */
    }
    sqlite3_reset(st);
    return rc;
}

/* The event of st's row (records_sql) from its record, copied once into
 * the arena, or else from its columns. */
static int read_record_event(store *s, taskspan__task_events *out, size_t *cap,
                             sqlite3_stmt *st)
{
    if (event_room(out, cap) != SQLITE_OK) {
        return SQLITE_NOMEM;
    }
    taskspan__stored_event *e = &out->events[out->n_events];
    int64_t id = sqlite3_column_int64(st, 0);
    const void *rec = sqlite3_column_blob(st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 2);
    if (rec != NULL && n > 0) {
        uint8_t *copy = taskspan__arena_alloc(&out->arena, n);
        if (copy == NULL) {
            return SQLITE_NOMEM;
        }
        memcpy(copy, rec, n);
        if (taskspan__event_record_read(copy, n, out->n_events ? e - 1 : NULL,
                                        e)) {
            e->seq = id & (TASKSPAN__SEQ_LIMIT - 1); /* schema 7's ids */
            e->ts_ns = sqlite3_column_int64(st, 1);
            out->n_events++;
            return SQLITE_OK;
        }
    }
    return read_event_row(s, out, cap, id);
}

/* A task's events, for load_task (records false: every column) or
 * load_export (records true). */
static taskspan_code load_events(store *s, const char *task_id, bool records,
                                 taskspan__task_events *out, char *err,
                                 size_t errlen)
{
    size_t cap = 0;

    memset(out, 0, sizeof *out);
    /* One read transaction, so the task row and its events agree. */
    int rc = taskspan__sqlite_step_once(s->begin_read);
    if (rc == SQLITE_OK) {
        rc = read_task_row(s, task_id, out);
    }
    if (rc == SQLITE_OK && s->events_hint > 0) {
        out->events = malloc(s->events_hint * sizeof *out->events);
        cap = out->events != NULL ? s->events_hint : 0;
    }
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = records ? s->select_records : s->select_events;
        sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rc = records ? read_record_event(s, out, &cap, st)
                         : read_one_event(out, &cap, st);
            if (rc != SQLITE_OK) {
                break;
            }
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    if (rc == SQLITE_OK) {
        rc = taskspan__sqlite_load_crash_closed(s, task_id, out);
    }
    taskspan_code code = TASKSPAN_OK;
    if (rc != SQLITE_OK) {
        code = taskspan__sqlite_fail(s->db, rc, "reading the task's events",
                                     err, errlen);
    } else if (out->n_events == 0) {
        code = taskspan__fail(err, errlen, TASKSPAN_E_NOT_FOUND,
                              "no events for task '%s'", task_id);
    } else {
        s->events_hint = out->n_events < EVENTS_HINT_MAX ? out->n_events
                                                         : EVENTS_HINT_MAX;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        taskspan__sqlite_step_once(s->commit);
    }
    if (code != TASKSPAN_OK) {
        taskspan__task_events_free(out);
    }
    return code;
}

static taskspan_code store_load_task(void *handle, const char *task_id,
                                     taskspan__task_events *out, char *err,
                                     size_t errlen)
{
    return load_events(handle, task_id, false, out, err, errlen);
}

static taskspan_code store_load_export(void *handle, const char *task_id,
                                       taskspan__task_events *out, char *err,
                                       size_t errlen)
{
    return load_events(handle, task_id, true, out, err, errlen);
}

void taskspan__task_events_free(taskspan__task_events *te)
{
    if (te == NULL) {
        return;
    }
    free(te->events);
    taskspan__arena_free(&te->arena);
    memset(te, 0, sizeof *te);
}

const taskspan__store_ops taskspan__store_sqlite = {
    .name = "sqlite",
    .open = store_open,
    .append = store_append,
    .load_task = store_load_task,
    .load_export = store_load_export,
    .close = store_close,
    .capacity = taskspan__sqlite_capacity,
    .open_notice = store_open_notice,
    .resource_put = taskspan__sqlite_resource_put,
    .resource_get = taskspan__sqlite_resource_get,
    .changed_tasks = taskspan__sqlite_changed_tasks,
    .tasks_examined = taskspan__sqlite_tasks_examined,
    .task_span_keys = taskspan__sqlite_task_span_keys,
    .tasks_lease = taskspan__sqlite_tasks_lease,
    .tasks_settle = taskspan__sqlite_tasks_settle,
    .tasks_retry = taskspan__sqlite_tasks_retry,
    .note_error = taskspan__sqlite_note_error,
    .export_counts = taskspan__sqlite_export_counts,
    .flush_targets = taskspan__sqlite_flush_targets,
    .targets_pending = taskspan__sqlite_targets_pending,
    .prune_due = taskspan__sqlite_prune_due,
    .export_tune = taskspan__sqlite_export_tune,
    .recovery = &taskspan__recovery_sqlite,
    .append_batch = store_append_batch,
    .journal_offset = store_journal_offset,
    .journal_forget = store_journal_forget,
};
