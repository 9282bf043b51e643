/*
 * store_export.c -- the export half of the SQLite buffer: resources, each
 * task's export progress, leases, and the exporters' shared state.
 *
 * Progress is kept per task (schema 8), not per span: a task's closed
 * spans, in close order (taskspan__spans_close_order), only ever grow at
 * the end, so one number, export_done, says how many of them are settled.
 * Leases make several exporters on one buffer safe: an exporter leases a
 * task (owner, until) inside a write transaction before it sends the
 * spans past export_done, and only if nobody settled them since it read
 * the task. An exporter that dies leaves a lease that expires, and another
 * exporter sends those spans again: the one window in which a span can
 * arrive twice, and then with identical bytes (docs/export.md).
 */
#include "store_sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The prepared statement for sql (a string literal), from the cache or
 * prepared now: preparing costs more than running most of these queries.
 * Give it back with release(). */
static taskspan_code prep(store *s, const char *sql, sqlite3_stmt **st,
                          char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n_cache; i++) {
        if (s->cache[i].sql == sql) {
            *st = s->cache[i].st;
            return TASKSPAN_OK;
        }
    }
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                                NULL);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "preparing an export query",
                                     err, errlen);
    }
    if (s->n_cache < sizeof s->cache / sizeof s->cache[0]) {
        s->cache[s->n_cache].sql = sql;
        s->cache[s->n_cache++].st = *st;
    }
    return TASKSPAN_OK;
}

/* Done with a statement from prep(): reset it for its next use (or
 * finalize it, if the cache was full). NULL is a no-op. */
static void release(store *s, sqlite3_stmt *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n_cache; i++) {
        if (s->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

/* The cache, for the recovery half (store_recovery.c). */
taskspan_code taskspan__sqlite_prep(store *s, const char *sql,
                                    sqlite3_stmt **st, char *err,
                                    size_t errlen)
{
    return prep(s, sql, st, err, errlen);
}

void taskspan__sqlite_release(store *s, sqlite3_stmt *st)
{
    release(s, st);
}

void taskspan__sqlite_cache_clear(store *s)
{
    for (size_t i = 0; i < s->n_cache; i++) {
        sqlite3_finalize(s->cache[i].st);
    }
    s->n_cache = 0;
}

/* Run a one-row, one-integer query; *out = 0 when it yields NULL. */
static taskspan_code query_int(store *s, sqlite3_stmt *st, int64_t *out,
                               const char *doing, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        return TASKSPAN_OK;
    }
    return taskspan__sqlite_fail(s->db, rc, doing, err, errlen);
}

static int exec_sql(store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

static void rollback_if_open(store *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        exec_sql(s, "ROLLBACK");
    }
}

/* End the write transaction that a loop of statements ran in, src being
 * the loop's result: COMMIT it, or roll it back with doing in err. */
static taskspan_code end_write(store *s, int src, const char *doing, char *err,
                               size_t errlen)
{
    if (src == SQLITE_OK) {
        src = taskspan__sqlite_step_once(s->commit);
    }
    if (src == SQLITE_OK) {
        return TASKSPAN_OK;
    }
    taskspan_code rc = taskspan__sqlite_fail(s->db, src, doing, err, errlen);
    rollback_if_open(s);
    return rc;
}

taskspan_code taskspan__sqlite_resource_put(void *h, const char *attrs_json,
                                            int64_t *out_id, char *err,
                                            size_t errlen)
{
    store *s = h;
    sqlite3_stmt *ins = NULL, *sel = NULL;
    taskspan_code rc = prep(s,
                            "INSERT OR IGNORE INTO resources (attrs, "
                            "created_ns) VALUES (?1, ?2)",
                            &ins, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = prep(s, "SELECT id FROM resources WHERE attrs = ?1", &sel, err,
                  errlen);
    }
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_text(ins, 1, attrs_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, taskspan__now_ns());
        int src = taskspan__sqlite_step_once(ins);
        if (src != SQLITE_OK) {
            rc = taskspan__sqlite_fail(s->db, src, "recording the resource",
                                       err, errlen);
        }
    }
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_text(sel, 1, attrs_json, -1, SQLITE_STATIC);
        rc = query_int(s, sel, out_id, "reading the resource", err, errlen);
    }
    release(s, ins);
    release(s, sel);
    return rc;
}

taskspan_code taskspan__sqlite_resource_get(void *h, int64_t id,
                                            char **out_json, char *err,
                                            size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    *out_json = NULL;
    taskspan_code rc = prep(s, "SELECT attrs FROM resources WHERE id = ?1",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    sqlite3_bind_int64(st, 1, id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *out_json = strdup((const char *)sqlite3_column_text(st, 0));
        rc = *out_json != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    } else if (src == SQLITE_DONE) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOT_FOUND,
                            "no resource %lld", (long long)id);
    } else {
        rc = taskspan__sqlite_fail(s->db, src, "reading a resource", err,
                                   errlen);
    }
    release(s, st);
    return rc;
}

static void free_tasks(char **tasks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(tasks[i]);
    }
    free(tasks);
}

/* A task's last seq: one seek to the end of its range of event ids. */
#define LAST_SEQ_OF_T                                                         \
    "(coalesce((SELECT max(id) FROM task_events WHERE " TASKSPAN__EVENTS_OF_T \
    "), 0) % 4294967296)"

/* Discovery (schema 7). An exporter looks only at the tasks marked
 * export_live, found through their partial index, and of those only at
 * the ones with an event past export_seq, the last one an exporter has
 * examined (one probe of the task's last event each), or with closed
 * spans not yet settled (schema 8). So a pass costs nothing for the tasks
 * that are done, however many the buffer holds. A task with new events is
 * examined whoever holds it (its closed spans are counted pending, even
 * while a retry time keeps everyone from sending them); one with only
 * unsettled spans, only when this exporter may send them: its own lease,
 * or none in force. */
taskspan_code taskspan__sqlite_changed_tasks(void *h, const char *owner,
                                             int64_t now_ns, bool with_pending,
                                             char ***out_tasks,
                                             bool **out_fresh, size_t *out_n,
                                             char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    char **tasks = NULL;
    bool *fresh = NULL;
    size_t n = 0, cap = 0;

    *out_tasks = NULL;
    *out_fresh = NULL;
    *out_n = 0;
    taskspan_code rc = prep(
        s,
        "SELECT t.task_id, " LAST_SEQ_OF_T " > t.export_seq AS fresh"
        " FROM tasks t INDEXED BY tasks_export_live"
        " WHERE t.export_live = 1 AND (fresh OR (?3"
        " AND t.export_done < t.export_closed"
        " AND (t.export_owner IS ?1 OR t.export_until < ?2)))",
        &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ns);
    sqlite3_bind_int(st, 3, with_pending ? 1 : 0);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(tasks, cap * sizeof *p);
            if (p != NULL) {
                tasks = p;
            }
            bool *f = realloc(fresh, cap * sizeof *f);
            if (f != NULL) {
                fresh = f;
            }
            if (p == NULL || f == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
        }
        fresh[n] = sqlite3_column_int(st, 1) != 0;
        tasks[n] = strdup((const char *)sqlite3_column_text(st, 0));
        if (tasks[n++] == NULL) {
            src = SQLITE_NOMEM;
            break;
        }
    }
    if (src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "listing changed tasks", err,
                                   errlen);
    }
    release(s, st);
    if (rc != TASKSPAN_OK) {
        free_tasks(tasks, n);
        free(fresh);
        return rc;
    }
    *out_tasks = tasks;
    *out_fresh = fresh;
    *out_n = n;
    return TASKSPAN_OK;
}

taskspan_code taskspan__sqlite_tasks_examined(void *h, const char *owner,
                                              const taskspan__examined *marks,
                                              size_t n, uint64_t *out_given_up,
                                              char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL, *gone = NULL;
    *out_given_up = 0;
    /* export_seq and export_closed never move back (two exporters may
     * finish out of order). A task leaves the live ones only when it has
     * no open span, no closed span unsettled and no event past what was
     * examined, checked here under the write lock: an event appended
     * meanwhile keeps it, and the next one that comes after marks it
     * again (next_seq in store_sqlite.c). A task whose events are gone
     * (?5) has nothing left to send. The counts were read in epoch ?8:
     * after a prune (another epoch) they count nothing that is there, so
     * only the seq moves. SET reads the row as it was. */
    taskspan_code rc = prep(
        s,
        "UPDATE tasks AS t SET export_seq = max(t.export_seq, ?2),"
        " export_done = CASE WHEN t.export_epoch = ?8"
        "   THEN max(t.export_done, ?7) ELSE t.export_done END,"
        " export_closed = CASE WHEN t.export_epoch <> ?8"
        "   THEN t.export_closed WHEN ?5 THEN max(t.export_done, ?7)"
        "   ELSE max(t.export_closed, ?4) END,"
        " export_owner = CASE WHEN t.export_owner = ?6 THEN NULL"
        "   ELSE t.export_owner END,"
        " export_until = CASE WHEN t.export_owner = ?6 THEN 0"
        "   ELSE t.export_until END,"
        " export_live = ?3"
        "   OR (t.export_epoch = ?8 AND NOT ?5 AND max(t.export_done, ?7)"
        "     < max(t.export_closed, ?4))"
        "   OR (t.export_epoch <> ?8 AND t.export_done < t.export_closed)"
        "   OR " LAST_SEQ_OF_T " > max(t.export_seq, ?2)"
        " WHERE t.task_id = ?1",
        &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = prep(s,
                  "SELECT max(export_closed - max(export_done, ?2), 0)"
                  " FROM tasks WHERE task_id = ?1 AND export_epoch = ?3",
                  &gone, err, errlen);
    }
    if (rc != TASKSPAN_OK || n == 0) {
        release(s, st);
        release(s, gone);
        return rc;
    }
    int src = taskspan__sqlite_step_once(s->begin_immediate);
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        if (marks[i].gone) {
            sqlite3_bind_text(gone, 1, marks[i].task_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(gone, 2, marks[i].done);
            sqlite3_bind_int64(gone, 3, marks[i].epoch);
            src = sqlite3_step(gone);
            if (src == SQLITE_ROW) {
                *out_given_up += (uint64_t)sqlite3_column_int64(gone, 0);
            }
            sqlite3_reset(gone);
            src = src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
        }
        sqlite3_bind_text(st, 1, marks[i].task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, marks[i].upto_seq);
        sqlite3_bind_int(st, 3, marks[i].open ? 1 : 0);
        sqlite3_bind_int64(st, 4, marks[i].closed);
        sqlite3_bind_int(st, 5, marks[i].gone ? 1 : 0);
        sqlite3_bind_text(st, 6, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, marks[i].done);
        sqlite3_bind_int64(st, 8, marks[i].epoch);
        src = taskspan__sqlite_step_once(st);
    }
    rc = end_write(s, src, "marking examined tasks", err, errlen);
    if (rc != TASKSPAN_OK) {
        *out_given_up = 0;
    }
    release(s, st);
    release(s, gone);
    return rc;
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TASKSPAN__SPAN_KEY_LEN);
}

taskspan_code taskspan__sqlite_task_trace_id(store *s, const char *task_id,
                                             uint8_t out[16], bool *out_shared,
                                             char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    *out_shared = false;
    /* As spans_build decides from load_task's has_trace_context: the
     * recorded context only when both of its ids have their length. */
    taskspan_code rc = prep(s,
                            "SELECT trace_id, parent_span_id FROM tasks "
                            "WHERE task_id = ?1",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB &&
        sqlite3_column_bytes(st, 0) == 16 &&
        sqlite3_column_type(st, 1) == SQLITE_BLOB &&
        sqlite3_column_bytes(st, 1) == 8) {
        memcpy(out, sqlite3_column_blob(st, 0), 16);
        *out_shared = true;
    } else if (src == SQLITE_ROW || src == SQLITE_DONE) {
        taskspan__derive_trace_id(out, task_id);
    } else {
        rc = taskspan__sqlite_fail(s->db, src, "reading a task's trace id",
                                   err, errlen);
    }
    release(s, st);
    return rc;
}

taskspan_code taskspan__sqlite_task_span_keys(void *h, const char *task_id,
                                              const uint8_t trace_id[16],
                                              bool trace_shared,
                                              uint8_t **out_keys,
                                              size_t *out_n, char *err,
                                              size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    uint8_t *keys = NULL;
    size_t n = 0, cap = 0;
    int src = SQLITE_OK;

    *out_keys = NULL;
    *out_n = 0;
    /* A shared trace may hold the spans of thousands of tasks: by task,
     * in export_spans_shared. Else by the trace, the task's own. */
    taskspan_code rc = prep(s,
                            trace_shared
                                ? "SELECT trace_id, span_id FROM export_spans "
                                  "WHERE task_id = ?2 AND trace_shared = 1"
                                : "SELECT trace_id, span_id FROM export_spans "
                                  "WHERE trace_id = ?1",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    if (trace_shared) {
        sqlite3_bind_text(st, 2, task_id, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(st, 1, trace_id, 16, SQLITE_STATIC);
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 16 ||
            sqlite3_column_bytes(st, 1) != 8) {
            continue; /* not an id this library wrote: matches nothing */
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint8_t *p = realloc(keys, cap * TASKSPAN__SPAN_KEY_LEN);
            if (p == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
            keys = p;
        }
        memcpy(keys + n * TASKSPAN__SPAN_KEY_LEN, sqlite3_column_blob(st, 0),
               16);
        memcpy(keys + n * TASKSPAN__SPAN_KEY_LEN + 16,
               sqlite3_column_blob(st, 1), 8);
        n++;
    }
    if (src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "looking up a task's spans",
                                   err, errlen);
    }
    release(s, st);
    if (rc != TASKSPAN_OK) {
        free(keys);
        return rc;
    }
    if (n > 1) {
        qsort(keys, n, TASKSPAN__SPAN_KEY_LEN, key_cmp);
    }
    *out_keys = keys;
    *out_n = n;
    return TASKSPAN_OK;
}

taskspan_code taskspan__sqlite_tasks_lease(void *h, const char *owner,
                                           int64_t now_ns, int64_t until_ns,
                                           taskspan__task_lease *leases,
                                           size_t n, char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    /* The lease is the exporter's own or not in force (expired, released,
     * or a retry time past), nobody settled the task's spans since the
     * exporter read its export_done, and gc did not prune the task since
     * (its epoch): then no other exporter sends them until until_ns, nor
     * this one what another sent meanwhile. */
    taskspan_code rc = prep(s,
                            "UPDATE tasks SET export_owner = ?2,"
                            " export_until = ?3,"
                            " export_closed = max(export_closed, ?6)"
                            " WHERE task_id = ?1"
                            " AND export_done = ?5 AND export_epoch = ?7"
                            " AND (export_owner IS ?2 OR export_until < ?4)",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    int src = taskspan__sqlite_step_once(s->begin_immediate);
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(st, 1, leases[i].task_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, until_ns);
        sqlite3_bind_int64(st, 4, now_ns);
        sqlite3_bind_int64(st, 5, leases[i].done);
        sqlite3_bind_int64(st, 6, leases[i].closed);
        sqlite3_bind_int64(st, 7, leases[i].epoch);
        src = taskspan__sqlite_step_once(st);
        leases[i].ok = src == SQLITE_OK && sqlite3_changes(s->db) > 0;
    }
    rc = end_write(s, src, "leasing tasks for export", err, errlen);
    if (rc != TASKSPAN_OK) {
        for (size_t i = 0; i < n; i++) {
            leases[i].ok = false;
        }
    }
    release(s, st);
    return rc;
}

/* Keep the spans rejected for good, with the reason: export_spans holds
 * rows for them only (and for what older versions left). */
static int keep_rejected(sqlite3_stmt *st, const taskspan__new_span *sp,
                         const char *error, int64_t now)
{
    sqlite3_bind_blob(st, 1, sp->trace_id, 16, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, sp->span_id, 8, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sp->task_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, sp->name, -1, SQLITE_STATIC);
    if (sp->resource_id > 0) {
        sqlite3_bind_int64(st, 5, sp->resource_id);
    } else {
        sqlite3_bind_null(st, 5);
    }
    sqlite3_bind_int64(st, 6, sp->end_ns);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)sp->body_len);
    sqlite3_bind_int64(st, 8, now);
    taskspan__sqlite_bind_text(st, 9, error);
    sqlite3_bind_int(st, 10, sp->trace_shared ? 1 : 0);
    return taskspan__sqlite_step_once(st);
}

taskspan_code taskspan__sqlite_tasks_settle(
    void *h, const taskspan__task_done *dones, size_t n, uint64_t delivered,
    const taskspan__new_span *rejected, size_t n_rejected, const char *error,
    char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *up = NULL, *count = NULL, *keep = NULL;
    int64_t now = taskspan__now_ns();
    /* Never down: an exporter whose lease ran out while it waited for its
     * answer may settle after the one that took the task over. Not after
     * a prune (another epoch): the count would name spans of events that
     * are gone, and the spans built later would start past it. */
    taskspan_code rc = prep(s,
                            "UPDATE tasks SET export_done ="
                            " max(export_done, ?2) WHERE task_id = ?1"
                            " AND export_epoch = ?3",
                            &up, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = prep(s,
                  "INSERT INTO export_state (name, int_value) VALUES"
                  " ('delivered', ?1) ON CONFLICT (name) DO UPDATE SET"
                  " int_value = coalesce(int_value, 0) + excluded.int_value",
                  &count, err, errlen);
    }
    if (rc == TASKSPAN_OK && n_rejected > 0) {
        rc = prep(s,
                  "INSERT OR IGNORE INTO export_spans (trace_id, span_id,"
                  " task_id, name, resource_id, end_ns, body_len,"
                  " created_ns, done_ns, state, last_error, trace_shared)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 2, ?9, ?10)",
                  &keep, err, errlen);
    }
    if (rc != TASKSPAN_OK) {
        release(s, up);
        release(s, count);
        return rc;
    }
    int src = taskspan__sqlite_step_once(s->begin_immediate);
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(up, 1, dones[i].task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, dones[i].done);
        sqlite3_bind_int64(up, 3, dones[i].epoch);
        src = taskspan__sqlite_step_once(up);
    }
    if (src == SQLITE_OK && delivered > 0) {
        sqlite3_bind_int64(count, 1, (sqlite3_int64)delivered);
        src = taskspan__sqlite_step_once(count);
    }
    for (size_t i = 0; src == SQLITE_OK && i < n_rejected; i++) {
        src = keep_rejected(keep, &rejected[i], error, now);
    }
    rc = end_write(s, src, "recording delivery", err, errlen);
    release(s, up);
    release(s, count);
    release(s, keep);
    return rc;
}

taskspan_code taskspan__sqlite_tasks_retry(void *h, const char *owner,
                                           char *const *tasks, size_t n,
                                           int64_t retry_at_ns, char *err,
                                           size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    /* Only the owner's leases: one that ran out and was taken over is the
     * new owner's to end. */
    taskspan_code rc = prep(s,
                            "UPDATE tasks SET export_owner = NULL,"
                            " export_until = ?3 WHERE task_id = ?1"
                            " AND export_owner = ?2",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK || n == 0) {
        release(s, st);
        return rc;
    }
    int src = taskspan__sqlite_step_once(s->begin_immediate);
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(st, 1, tasks[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, retry_at_ns);
        src = taskspan__sqlite_step_once(st);
    }
    rc = end_write(s, src, "ending export leases", err, errlen);
    release(s, st);
    return rc;
}

taskspan_code taskspan__sqlite_note_error(void *h, const char *error,
                                          int64_t at_ns, char *err,
                                          size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan_code rc = prep(
        s,
        "INSERT INTO export_state (name, int_value, text_value) VALUES "
        "('last_error', ?1, ?2) ON CONFLICT (name) DO UPDATE SET "
        "int_value = excluded.int_value, text_value = excluded.text_value",
        &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_int64(st, 1, at_ns);
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
        int src = taskspan__sqlite_step_once(st);
        if (src != SQLITE_OK) {
            rc = taskspan__sqlite_fail(s->db, src,
                                       "recording the export "
                                       "error",
                                       err, errlen);
        }
    }
    release(s, st);
    return rc;
}

taskspan_code taskspan__sqlite_export_counts(void *h,
                                             taskspan__export_counts *out,
                                             char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *a = NULL, *b = NULL;
    int src;

    memset(out, 0, sizeof *out);
    /* `taskspan export` asks every 200 ms while it drains. The pending
     * spans are the live tasks' closed ones not settled (their partial
     * index), the delivered a count kept by the exporters, the rejected
     * the rows of their partial index. One statement, one snapshot. */
    taskspan_code rc = prep(
        s,
        "SELECT (SELECT coalesce(sum(max(export_closed - export_done, 0)), 0)"
        " FROM tasks INDEXED BY tasks_export_live WHERE export_live = 1),"
        " (SELECT count(*) FROM export_spans WHERE state NOT IN (0, 1)),"
        " (SELECT coalesce(max(int_value), 0) FROM export_state"
        " WHERE name = 'delivered')",
        &a, err, errlen);
    if (rc == TASKSPAN_OK) {
        src = sqlite3_step(a);
        if (src == SQLITE_ROW) {
            out->pending = (uint64_t)sqlite3_column_int64(a, 0);
            out->rejected = (uint64_t)sqlite3_column_int64(a, 1);
            out->delivered = (uint64_t)sqlite3_column_int64(a, 2);
        } else {
            rc = taskspan__sqlite_fail(s->db, src, "counting spans", err,
                                       errlen);
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = prep(s,
                  "SELECT int_value, text_value FROM export_state WHERE "
                  "name = 'last_error'",
                  &b, err, errlen);
    }
    if (rc == TASKSPAN_OK && sqlite3_step(b) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(b, 1);
        out->last_error_ns = sqlite3_column_int64(b, 0);
        snprintf(out->last_error, sizeof out->last_error, "%s",
                 t != NULL ? (const char *)t : "");
    }
    release(s, a);
    release(s, b);
    return rc;
}

void taskspan__flush_targets_free(taskspan__flush_target *t, size_t n)
{
    for (size_t i = 0; t != NULL && i < n; i++) {
        free(t[i].task_id);
    }
    free(t);
}

taskspan_code taskspan__sqlite_flush_targets(void *h,
                                             taskspan__flush_target **out,
                                             size_t *out_n, char *err,
                                             size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan__flush_target *t = NULL;
    size_t n = 0, cap = 0;

    *out = NULL;
    *out_n = 0;
    taskspan_code rc = prep(s,
                            "SELECT t.task_id, " LAST_SEQ_OF_T " AS last"
                            " FROM tasks t INDEXED BY tasks_export_live"
                            " WHERE t.export_live = 1"
                            " AND (t.export_done < t.export_closed"
                            " OR last > t.export_seq)",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            taskspan__flush_target *p = realloc(t, cap * sizeof *p);
            if (p == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
            t = p;
        }
        t[n].task_id = strdup((const char *)sqlite3_column_text(st, 0));
        t[n].seq = sqlite3_column_int64(st, 1);
        if (t[n++].task_id == NULL) {
            src = SQLITE_NOMEM;
            break;
        }
    }
    if (src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "listing what to flush", err,
                                   errlen);
    }
    release(s, st);
    if (rc != TASKSPAN_OK) {
        taskspan__flush_targets_free(t, n);
        return rc;
    }
    *out = t;
    *out_n = n;
    return TASKSPAN_OK;
}

taskspan_code taskspan__sqlite_targets_pending(
    void *h, const taskspan__flush_target *targets, size_t n, size_t *from,
    int64_t *out_spans, char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    int src = SQLITE_OK;
    /* Settled: examined up to the seq the flush saw, and nothing closed
     * left unsettled. A task pruned meanwhile has no row: settled. */
    taskspan_code rc = prep(s,
                            "SELECT export_seq >= ?2 AND export_done >="
                            " export_closed, max(export_closed - export_done,"
                            " 0) FROM tasks WHERE task_id = ?1",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    if (out_spans != NULL) {
        *out_spans = 0;
    }
    bool first = true;
    for (size_t i = *from; i < n; i++) {
        sqlite3_bind_text(st, 1, targets[i].task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, targets[i].seq);
        src = sqlite3_step(st);
        bool settled = src != SQLITE_ROW || sqlite3_column_int(st, 0) != 0;
        if (src == SQLITE_ROW && out_spans != NULL) {
            *out_spans += sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (src != SQLITE_ROW && src != SQLITE_DONE) {
            break;
        }
        src = SQLITE_OK;
        if (first && settled) {
            *from = i + 1;
            continue;
        }
        first = false;
        if (out_spans == NULL) {
            break;
        }
    }
    if (src != SQLITE_OK) {
        rc = taskspan__sqlite_fail(s->db, src, "checking a flush", err,
                                   errlen);
    }
    release(s, st);
    return rc;
}

taskspan_code taskspan__sqlite_prune_due(void *h, int64_t cutoff_ns,
                                         bool *out_due, char *err,
                                         size_t errlen)
{
    store *s = h;
    sqlite3_stmt *a = NULL, *b = NULL;
    int64_t old = 0, empty = 0;
    /* Retention prunes the delivered tasks whose events are all older than
     * the cutoff. ts_ns has no index (an emit must not pay for one), and
     * EXISTS over it scanned every event on every pass. Tasks get their
     * numbers in the order of their first events, so the first ones that
     * still have events are the oldest: the earliest updated_ns (at most
     * a second below the task's last event, store_sqlite.h) among the
     * first 256 decides. A task that stays busy keeps its row fresh, and
     * one recorded later with older times waits until the first ones are
     * old enough too; prune_due is a hint that skips a pass, never a
     * reason to prune. */
    taskspan_code rc = prep(
        s,
        "SELECT coalesce(min(u) < ?1, 0) FROM (SELECT "
        "t.updated_ns AS u FROM tasks t WHERE EXISTS "
        "(SELECT 1 FROM task_events WHERE " TASKSPAN__EVENTS_OF_T
        ") ORDER BY t.tnum "
        "LIMIT 256)",
        &a, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_int64(a, 1, cutoff_ns);
        rc = query_int(s, a, &old, "looking for old events", err, errlen);
    }
    if (rc == TASKSPAN_OK && old == 0) {
        rc = prep(s,
                  "SELECT EXISTS (SELECT 1 FROM tasks t WHERE NOT EXISTS "
                  "(SELECT 1 FROM task_events WHERE " TASKSPAN__EVENTS_OF_T
                  "))",
                  &b, err, errlen);
    }
    if (rc == TASKSPAN_OK && b != NULL) {
        rc = query_int(s, b, &empty, "looking for pruned tasks", err, errlen);
    }
    release(s, a);
    release(s, b);
    *out_due = rc != TASKSPAN_OK || old != 0 || empty != 0;
    return rc;
}

void taskspan__sqlite_export_tune(void *h)
{
    store *s = h;
    /* 8 MiB at most, allocated as pages are used: a discovery batch
     * (ROWS_MAX_BYTES of bodies and their rows) fits. */
    exec_sql(s, "PRAGMA cache_size=-8192");
    /* The recorders' checkpointer threads keep the WAL at a few thousand
     * frames (store_checkpoint.c): with SQLite's default of 1000 frames,
     * nearly every commit of the exporter ran a checkpoint in its thread.
     * Its own commits checkpoint only past the recorders' hard limit,
     * which also bounds the WAL of an exporter alone on a buffer
     * (taskspan export). */
    sqlite3_wal_autocheckpoint(s->db, TASKSPAN__CKPT_HARD_FRAMES);
}
