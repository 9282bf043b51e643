/*
 * store_inspect.c -- the SQL behind inspection: the tasks of a buffer with
 * their counts, buffer-wide counts, a task's export rows, and gc's delete.
 *
 * Reads run in one read transaction each, so their numbers agree with one
 * another. The delete is one BEGIN IMMEDIATE transaction per batch that
 * checks again, under the write lock, what gc decided outside it: a task
 * that got an event or a pending span since then is left alone.
 */
#include "inspect.h"
#include "store_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static taskspan_code prepare(store *s, const char *sql, sqlite3_stmt **st,
                             char *err, size_t errlen)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(
            s->db, rc, "preparing an inspection query", err, errlen);
    }
    return TASKSPAN_OK;
}

static int exec_sql(store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

static void end_read(store *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        exec_sql(s, "COMMIT");
    }
}

static char *column_dup(sqlite3_stmt *st, int col, bool *nomem)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (t == NULL) {
        return NULL;
    }
    char *p = strdup((const char *)t);
    if (p == NULL) {
        *nomem = true;
    }
    return p;
}

void taskspan__task_rows_free(taskspan__task_row *rows, size_t n)
{
    for (size_t i = 0; rows != NULL && i < n; i++) {
        free(rows[i].task_id);
        free(rows[i].exit_reason);
    }
    free(rows);
}

/* Per task: the tasks row, its events' count, times and latest incarnation,
 * that incarnation's runner_spawn pid and runner_exit, and its export rows
 * by state. The subqueries read the task's range of event ids, one task
 * at a time (materialized once per task: the latest incarnation is used
 * four times); its export progress from its row (schema 8): closed spans
 * not settled are pending, the settled ones not rejected (the rows of
 * export_spans_rejected) delivered. */
static const char tasks_sql[] =
    "WITH tt AS MATERIALIZED (SELECT t.*,"
    "  (SELECT count(*) FROM task_events WHERE " TASKSPAN__EVENTS_OF_T ")"
    "    AS n,"
    "  coalesce((SELECT min(ts_ns) FROM task_events"
    "    WHERE " TASKSPAN__EVENTS_OF_T "), 0) AS first_ns,"
    "  coalesce((SELECT max(ts_ns) FROM task_events"
    "    WHERE " TASKSPAN__EVENTS_OF_T "), 0) AS last_ns,"
    "  coalesce((SELECT incarnation FROM task_events"
    "    WHERE " TASKSPAN__EVENTS_OF_T " ORDER BY id DESC LIMIT 1), 0)"
    "    AS max_inc"
    "  FROM tasks t)"
    "SELECT t.task_id, " TASKSPAN__LIVE_LAST_SEQ ", t.incarnation,"
    "  t.n, t.first_ns, t.last_ns, t.max_inc,"
    "  (SELECT CASE WHEN json_valid(payload)"
    "     THEN json_extract(payload, '$.runner_pid') END"
    "   FROM task_events WHERE " TASKSPAN__EVENTS_OF_T
    "     AND incarnation = t.max_inc AND event_type = 'runner_spawn'"
    "   ORDER BY id DESC LIMIT 1),"
    "  (SELECT count(*) FROM task_events WHERE " TASKSPAN__EVENTS_OF_T
    "     AND incarnation = t.max_inc AND event_type = 'runner_exit'"
    "     AND span_id = 'main'),"
    "  (SELECT CASE WHEN json_valid(payload)"
    "     THEN json_extract(payload, '$.exit_reason') END"
    "   FROM task_events WHERE " TASKSPAN__EVENTS_OF_T
    "     AND incarnation = t.max_inc AND event_type = 'runner_exit'"
    "     AND span_id = 'main' ORDER BY id DESC LIMIT 1),"
    "  max(t.export_closed - t.export_done, 0),"
    "  max(t.export_done - coalesce(x.rejected, 0), 0),"
    "  coalesce(x.rejected, 0), t.export_done"
    " FROM tt t"
    " LEFT JOIN (SELECT task_id, count(*) AS rejected"
    "   FROM export_spans INDEXED BY export_spans_rejected"
    "   WHERE state NOT IN (0, 1) GROUP BY task_id) x"
    "   ON x.task_id = t.task_id"
    " ORDER BY t.created_ns, t.task_id";

static bool read_task_row(sqlite3_stmt *st, taskspan__task_row *r)
{
    bool nomem = false;
    memset(r, 0, sizeof *r);
    r->task_id = column_dup(st, 0, &nomem);
    r->last_seq = sqlite3_column_int64(st, 1);
    r->incarnations = sqlite3_column_int64(st, 2);
    r->n_events = sqlite3_column_int64(st, 3);
    r->first_ns = sqlite3_column_int64(st, 4);
    r->last_ns = sqlite3_column_int64(st, 5);
    r->latest_incarnation = sqlite3_column_int64(st, 6);
    /* Only an integer is a pid: a hand-made payload may hold anything. */
    if (sqlite3_column_type(st, 7) == SQLITE_INTEGER) {
        r->runner_pid = sqlite3_column_int64(st, 7);
    }
    r->exited = sqlite3_column_int64(st, 8) > 0;
    if (sqlite3_column_type(st, 9) == SQLITE_TEXT) {
        r->exit_reason = column_dup(st, 9, &nomem);
    }
    r->pending = (uint64_t)sqlite3_column_int64(st, 10);
    r->delivered = (uint64_t)sqlite3_column_int64(st, 11);
    r->rejected = (uint64_t)sqlite3_column_int64(st, 12);
    r->export_done = sqlite3_column_int64(st, 13);
    return !nomem && r->task_id != NULL;
}

static taskspan_code sqlite_tasks(void *h, taskspan__task_row **out,
                                  size_t *out_n, char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan__task_row *rows = NULL;
    size_t n = 0, cap = 0;
    int src = SQLITE_OK;

    *out = NULL;
    *out_n = 0;
    exec_sql(s, "BEGIN");
    taskspan_code rc = prepare(s, tasks_sql, &st, err, errlen);
    while (rc == TASKSPAN_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            taskspan__task_row *p = realloc(rows, ncap * sizeof *p);
            if (p == NULL) {
                rc = TASKSPAN_E_NOMEM;
                break;
            }
            rows = p;
            cap = ncap;
        }
        bool ok = read_task_row(st, &rows[n]);
        n++;
        if (!ok) {
            rc = TASKSPAN_E_NOMEM;
        }
    }
    if (rc == TASKSPAN_OK && src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "listing the tasks", err,
                                   errlen);
    } else if (rc == TASKSPAN_E_NOMEM) {
        taskspan__fail(err, errlen, rc, "out of memory listing the tasks");
    }
    sqlite3_finalize(st);
    end_read(s);
    if (rc != TASKSPAN_OK) {
        taskspan__task_rows_free(rows, n);
        return rc;
    }
    *out = rows;
    *out_n = n;
    return TASKSPAN_OK;
}

static taskspan_code sqlite_last_seq(void *h, const char *task_id,
                                     int64_t *out, char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan_code rc = prepare(s,
                               "SELECT " TASKSPAN__LIVE_LAST_SEQ
                               " FROM tasks t WHERE t.task_id = ?1",
                               &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
    } else if (src == SQLITE_DONE) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOT_FOUND, "no task '%s'",
                            task_id);
    } else {
        rc = taskspan__sqlite_fail(s->db, src, "reading a task", err, errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Run a one-row query and hand its statement to fn (row = NULL when the
 * query gave no row). */
static taskspan_code one_row(store *s, const char *sql,
                             void (*fn)(sqlite3_stmt *row, void *ctx),
                             void *ctx, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    taskspan_code rc = prepare(s, sql, &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW || src == SQLITE_DONE) {
        fn(src == SQLITE_ROW ? st : NULL, ctx);
    } else {
        rc = taskspan__sqlite_fail(s->db, src, "reading the buffer", err,
                                   errlen);
    }
    sqlite3_finalize(st);
    return rc;
}

static void take_version(sqlite3_stmt *row, void *ctx)
{
    ((taskspan__buffer_counts *)ctx)->schema_version =
        row ? sqlite3_column_int(row, 0) : 0;
}

static void take_tasks(sqlite3_stmt *row, void *ctx)
{
    ((taskspan__buffer_counts *)ctx)->tasks =
        row ? (uint64_t)sqlite3_column_int64(row, 0) : 0;
}

static void take_events(sqlite3_stmt *row, void *ctx)
{
    ((taskspan__buffer_counts *)ctx)->events =
        row ? (uint64_t)sqlite3_column_int64(row, 0) : 0;
}

static void take_states(sqlite3_stmt *row, void *ctx)
{
    taskspan__buffer_counts *c = ctx;
    if (row != NULL) {
        c->pending = (uint64_t)sqlite3_column_int64(row, 0);
        c->delivered = (uint64_t)sqlite3_column_int64(row, 1);
        c->rejected = (uint64_t)sqlite3_column_int64(row, 2);
    }
}

static void take_last_error(sqlite3_stmt *row, void *ctx)
{
    taskspan__buffer_counts *c = ctx;
    if (row != NULL) {
        const unsigned char *t = sqlite3_column_text(row, 1);
        c->last_error_ns = sqlite3_column_int64(row, 0);
        snprintf(c->last_error, sizeof c->last_error, "%s",
                 t != NULL ? (const char *)t : "");
    }
}

static void take_oldest(sqlite3_stmt *row, void *ctx)
{
    taskspan__buffer_counts *c = ctx;
    if (row != NULL) {
        const unsigned char *t = sqlite3_column_text(row, 1);
        c->oldest_pending_done = sqlite3_column_int64(row, 0);
        snprintf(c->oldest_pending_task, sizeof c->oldest_pending_task, "%s",
                 t != NULL ? (const char *)t : "");
    }
}

static void take_page_size(sqlite3_stmt *row, void *ctx)
{
    ((taskspan__buffer_counts *)ctx)->page_size =
        row ? (uint64_t)sqlite3_column_int64(row, 0) : 0;
}

static void take_free_pages(sqlite3_stmt *row, void *ctx)
{
    ((taskspan__buffer_counts *)ctx)->free_pages =
        row ? (uint64_t)sqlite3_column_int64(row, 0) : 0;
}

static taskspan_code sqlite_counts(void *h, taskspan__buffer_counts *out,
                                   char *err, size_t errlen)
{
    static const struct {
        const char *sql;
        void (*fn)(sqlite3_stmt *row, void *ctx);
    } queries[] = {
        {"PRAGMA user_version", take_version},
        {"SELECT count(*) FROM tasks", take_tasks},
        {"SELECT count(*) FROM task_events", take_events},
        /* As taskspan__sqlite_export_counts: the live tasks' unsettled
         * spans, the exporters' count of delivered ones, the rejected
         * rows in their partial index. */
        {"SELECT (SELECT coalesce(sum(max(export_closed - export_done, 0)),"
         " 0) FROM tasks INDEXED BY tasks_export_live"
         " WHERE export_live = 1),"
         " (SELECT coalesce(max(int_value), 0) FROM export_state"
         " WHERE name = 'delivered'),"
         " (SELECT count(*) FROM export_spans WHERE state NOT IN (0, 1))",
         take_states},
        {"SELECT int_value, text_value FROM export_state"
         " WHERE name = 'last_error'",
         take_last_error},
        {"SELECT export_done, task_id FROM tasks"
         " INDEXED BY tasks_export_live WHERE export_live = 1"
         " AND export_done < export_closed ORDER BY tnum LIMIT 1",
         take_oldest},
        {"PRAGMA page_size", take_page_size},
        {"PRAGMA freelist_count", take_free_pages},
    };
    store *s = h;
    taskspan_code rc = TASKSPAN_OK;

    memset(out, 0, sizeof *out);
    exec_sql(s, "BEGIN");
    for (size_t i = 0;
         rc == TASKSPAN_OK && i < sizeof queries / sizeof queries[0]; i++) {
        rc = one_row(s, queries[i].sql, queries[i].fn, out, err, errlen);
    }
    end_read(s);
    return rc;
}

static taskspan_code sqlite_span_states(void *h, const char *task_id,
                                        taskspan__span_state_row **out,
                                        size_t *out_n, char *err,
                                        size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan__span_state_row *rows = NULL;
    size_t n = 0, cap = 0;
    int src = SQLITE_OK;

    uint8_t trace_id[16];
    bool shared = false;

    *out = NULL;
    *out_n = 0;
    /* By the task's own trace id (the (trace_id, span_id) index), or in
     * export_spans_shared when its trace may be other tasks' too. */
    taskspan_code rc = taskspan__sqlite_task_trace_id(s, task_id, trace_id,
                                                      &shared, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = prepare(s,
                     shared ? "SELECT trace_id, span_id, state FROM "
                              "export_spans WHERE task_id = ?1 AND "
                              "trace_shared = 1"
                            : "SELECT trace_id, span_id, state FROM "
                              "export_spans WHERE trace_id = ?2 AND "
                              "task_id = ?1",
                     &st, err, errlen);
    }
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    if (!shared) {
        sqlite3_bind_blob(st, 2, trace_id, 16, SQLITE_STATIC);
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 16 ||
            sqlite3_column_bytes(st, 1) != 8) {
            continue; /* not a span this library wrote */
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            taskspan__span_state_row *p = realloc(rows, ncap * sizeof *p);
            if (p == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
            rows = p;
            cap = ncap;
        }
        memcpy(rows[n].trace_id, sqlite3_column_blob(st, 0), 16);
        memcpy(rows[n].span_id, sqlite3_column_blob(st, 1), 8);
        rows[n].state = sqlite3_column_int(st, 2);
        n++;
    }
    if (src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "reading a task's spans", err,
                                   errlen);
        free(rows);
    } else {
        *out = rows;
        *out_n = n;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The statements of one prune batch. */
enum {
    Q_SEQ,
    Q_PENDING,
    Q_BEHIND,
    Q_FLOOR,
    Q_DEL_EVENTS,
    Q_DEL_SPANS,
    Q_DEL_ITEMS,
    Q_DEL_CHECKPOINTS,
    Q_DEL_CRASHED,
    Q_DEL_SPANS_SHARED,
    Q_COUNT
};

static const char *const prune_sql[Q_COUNT] = {
    "SELECT " TASKSPAN__LIVE_LAST_SEQ " FROM tasks t WHERE t.task_id = ?1",
    /* Closed spans not settled (schema 8): -1, else the settled ones. */
    ("SELECT CASE WHEN export_done < export_closed THEN -1"
     " ELSE export_done END FROM tasks WHERE task_id = ?1"),
    /* 1 when an exporter has examined every event of the task: no
     * exporter pass that starts now lists it (store_export.c). */
    ("SELECT t.export_live = 0 OR coalesce((SELECT max(id) FROM"
     " task_events WHERE " TASKSPAN__EVENTS_OF_T "), 0) % 4294967296"
     " <= t.export_seq FROM tasks t WHERE t.task_id = ?1"),
    /* The tasks row stays: its last_seq, made exact here, is the floor of
     * the seqs handed out after the events are gone (next_seq). */
    /* Its export progress counted spans of the events deleted here: the
     * spans built from later events start at 0, in a new epoch, so that
     * an exporter that read the task before cannot lease, settle or mark
     * it with counts of the old events. */
    ("UPDATE tasks AS t SET last_seq = " TASKSPAN__LIVE_LAST_SEQ ","
     " updated_ns = " TASKSPAN__LIVE_UPDATED_NS ", export_done = 0,"
     " export_closed = 0, export_epoch = export_epoch + 1"
     " WHERE t.task_id = ?1"),
    "DELETE FROM task_events WHERE " TASKSPAN__EVENTS_OF_P1,
    /* A task's export rows by its own trace id (?2): the (trace_id,
     * span_id) index. The _SHARED twin below: by task, in
     * export_spans_shared, for a task whose trace others may share. */
    ("DELETE FROM export_spans WHERE trace_id = ?2 AND task_id = ?1"
     " AND state <> 0"),
    /* The recovery state of a task that ended long ago (recovery.md). */
    "DELETE FROM work_items WHERE task_id = ?1",
    "DELETE FROM checkpoints WHERE task_id = ?1",
    "DELETE FROM crashed_incarnations WHERE task_id = ?1",
    ("DELETE FROM export_spans WHERE task_id = ?1 AND trace_shared = 1"
     " AND state <> 0"),
};

/* Step st (bound to task) once and read column 0 as an integer; -1 when
 * there is no row. Resets st. */
static int step_int(sqlite3_stmt *st, const char *task, int64_t *out)
{
    sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    *out = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Delete with st (bound to task); adds the rows deleted to *n. */
static int step_delete(store *s, sqlite3_stmt *st, const char *task,
                       uint64_t *n)
{
    sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (src == SQLITE_DONE) {
        *n += (uint64_t)sqlite3_changes(s->db);
        return SQLITE_OK;
    }
    return src;
}

/* Under the write lock: prune one task, or count it as skipped. */
static int prune_one(store *s, sqlite3_stmt **q, const taskspan__gc_item *it,
                     taskspan__gc_counts *c)
{
    int64_t seq = 0, pending = 0, behind = 0; /* pending: see Q_PENDING */
    uint64_t events = 0;
    uint8_t trace_id[16];
    bool shared = false;
    char msg[TASKSPAN__MSG_SIZE];
    if (taskspan__sqlite_task_trace_id(s, it->task_id, trace_id, &shared, msg,
                                       sizeof msg) != TASKSPAN_OK) {
        return SQLITE_ERROR; /* said by sqlite3_errmsg() */
    }
    sqlite3_stmt *q_del_spans = shared ? q[Q_DEL_SPANS_SHARED]
                                       : q[Q_DEL_SPANS];
    if (!shared) {
        /* step_delete binds the task, then clears every binding. */
        sqlite3_bind_blob(q_del_spans, 2, trace_id, 16, SQLITE_TRANSIENT);
    }
    int src = step_int(q[Q_SEQ], it->task_id, &seq);
    if (src == SQLITE_OK) {
        src = step_int(q[Q_PENDING], it->task_id, &pending);
    }
    if (src == SQLITE_OK) {
        src = step_int(q[Q_BEHIND], it->task_id, &behind);
    }
    if (src != SQLITE_OK) {
        return src;
    }
    if (seq != it->last_seq || pending < 0 || behind != 1) {
        c->skipped++;
        return SQLITE_OK;
    }
    uint64_t ignored = 0;
    src = step_delete(s, q[Q_FLOOR], it->task_id, &ignored);
    if (src == SQLITE_OK) {
        src = step_delete(s, q[Q_DEL_EVENTS], it->task_id, &events);
    }
    uint64_t rows = 0;
    if (src == SQLITE_OK) {
        src = step_delete(s, q_del_spans, it->task_id, &rows);
    }
    /* The settled spans whose record goes: the rows (rejected) are among
     * them, unless the task was pruned before (then they are all). */
    c->spans += (uint64_t)pending > rows ? (uint64_t)pending : rows;
    for (int i = Q_DEL_ITEMS; i <= Q_DEL_CRASHED && src == SQLITE_OK; i++) {
        src = step_delete(s, q[i], it->task_id, &ignored);
    }
    if (src == SQLITE_OK) {
        /* A task pruned before only loses export rows that an exporter
         * recorded while the first gc ran: it is not counted again. */
        c->tasks += events > 0;
        c->events += events;
    }
    return src;
}

static taskspan_code sqlite_prune(void *h, const taskspan__gc_item *items,
                                  size_t n, taskspan__gc_counts *counts,
                                  char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *q[Q_COUNT] = {NULL};
    taskspan__gc_counts batch = {0};
    int src = SQLITE_OK;

    if (s->readonly) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "the buffer was opened read-only");
    }
    for (int i = 0; i < Q_COUNT && src == SQLITE_OK; i++) {
        src = sqlite3_prepare_v2(s->db, prune_sql[i], -1, &q[i], NULL);
    }
    if (src == SQLITE_OK) {
        /* IMMEDIATE: the checks below and the deletes see the same data. */
        src = exec_sql(s, "BEGIN IMMEDIATE");
    }
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        src = prune_one(s, q, &items[i], &batch);
    }
    if (src == SQLITE_OK) {
        src = exec_sql(s, "COMMIT");
    }
    taskspan_code rc = TASKSPAN_OK;
    if (src != SQLITE_OK) {
        rc = taskspan__sqlite_fail(s->db, src, "pruning delivered tasks", err,
                                   errlen);
        if (!sqlite3_get_autocommit(s->db)) {
            exec_sql(s, "ROLLBACK");
        }
    } else {
        counts->tasks += batch.tasks;
        counts->events += batch.events;
        counts->spans += batch.spans;
        counts->skipped += batch.skipped;
    }
    for (int i = 0; i < Q_COUNT; i++) {
        sqlite3_finalize(q[i]);
    }
    return rc;
}

static void sqlite_checkpoint(void *h)
{
    store *s = h;
    /* Copy the WAL back and truncate it, so the deletes do not leave the
     * buffer bigger than before; but never wait for it: without a busy
     * handler a checkpoint that would have to wait for another connection
     * returns at once, and then a passive one copies what it can. A runner's
     * emit waits at most for the copy itself. */
    sqlite3_busy_timeout(s->db, 0);
    if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                  NULL, NULL) != SQLITE_OK) {
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
    }
}

const taskspan__inspect_ops taskspan__inspect_sqlite = {
    .name = "sqlite",
    .tasks = sqlite_tasks,
    .last_seq = sqlite_last_seq,
    .counts = sqlite_counts,
    .span_states = sqlite_span_states,
    .prune = sqlite_prune,
    .checkpoint = sqlite_checkpoint,
};
