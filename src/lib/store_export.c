/*
 * store_export.c -- the export half of the SQLite buffer: resources, the
 * spans waiting for delivery, claims, and the exporters' shared state.
 *
 * Claims make several exporters on one buffer safe: a span is claimed by
 * one exporter (owner, until) inside a write transaction, and only its
 * owner can settle it. An exporter that dies leaves a claim that expires,
 * and another exporter sends the span again: the one window in which a span
 * can arrive twice, and then with identical bytes (docs/export.md).
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

/* Discovery (schema 7). An exporter looks only at the tasks marked
 * export_live, found through their partial index, and of those only at
 * the ones with an event past export_seq, the last one an exporter has
 * examined: one probe of the task's last event each. So a pass costs
 * nothing for the tasks that are done, however many the buffer holds. */
taskspan_code taskspan__sqlite_changed_tasks(void *h, char ***out_tasks,
                                             size_t *out_n, char *err,
                                             size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    char **tasks = NULL;
    size_t n = 0, cap = 0;

    *out_tasks = NULL;
    *out_n = 0;
    taskspan_code rc = prep(
        s,
        "SELECT t.task_id FROM tasks t INDEXED BY tasks_export_live"
        " WHERE t.export_live = 1 AND coalesce((SELECT max(id)"
        " FROM task_events WHERE " TASKSPAN__EVENTS_OF_T "), 0)"
        " % 4294967296 > t.export_seq",
        &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(tasks, cap * sizeof *p);
            if (p == NULL) {
                src = SQLITE_NOMEM;
                break;
            }
            tasks = p;
        }
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
        return rc;
    }
    *out_tasks = tasks;
    *out_n = n;
    return TASKSPAN_OK;
}

taskspan_code taskspan__sqlite_tasks_examined(void *h,
                                              const taskspan__examined *marks,
                                              size_t n, char *err,
                                              size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    /* export_seq never moves back (two exporters may finish out of
     * order). A task leaves the live ones only when it has no open span
     * and no event past what was examined, checked here under the write
     * lock: an event appended meanwhile keeps it, and the next one that
     * comes after marks it again (next_seq in store_sqlite.c). */
    taskspan_code rc = prep(
        s,
        "UPDATE tasks AS t SET export_seq = max(t.export_seq, ?2),"
        " export_live = ?3 OR coalesce((SELECT max(id) FROM"
        " task_events WHERE " TASKSPAN__EVENTS_OF_T "), 0)"
        " % 4294967296 > max(t.export_seq, ?2)"
        " WHERE t.task_id = ?1",
        &st, err, errlen);
    if (rc != TASKSPAN_OK || n == 0) {
        release(s, st);
        return rc;
    }
    int src = exec_sql(s, "BEGIN IMMEDIATE");
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(st, 1, marks[i].task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, marks[i].upto_seq);
        sqlite3_bind_int(st, 3, marks[i].open ? 1 : 0);
        src = taskspan__sqlite_step_once(st);
    }
    if (src == SQLITE_OK) {
        src = exec_sql(s, "COMMIT");
    }
    if (src != SQLITE_OK) {
        rc = taskspan__sqlite_fail(s->db, src, "marking examined tasks", err,
                                   errlen);
        rollback_if_open(s);
    }
    release(s, st);
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

/* Bind the values of one new export row to st (the INSERT of spans_add). */
static void bind_new_span(sqlite3_stmt *st, const taskspan__new_span *sp,
                          int64_t now, const char *owner, int64_t until_ns)
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
    /* Claimed as claim() would: by owner, until until_ns, one attempt. */
    taskspan__sqlite_bind_text(st, 9, owner);
    sqlite3_bind_int64(st, 10, owner != NULL ? until_ns : 0);
    sqlite3_bind_int(st, 11, owner != NULL ? 1 : 0);
    sqlite3_bind_int(st, 12, sp->trace_shared ? 1 : 0);
}

taskspan_code taskspan__sqlite_spans_add(void *h,
                                         const taskspan__new_span *spans,
                                         size_t n, const char *owner,
                                         int64_t until_ns, int64_t *out_ids,
                                         char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    int64_t now = taskspan__now_ns();
    int src = SQLITE_OK;
    /* No export_bodies row: the span is encoded again from its task when
     * it must be sent again (docs/export.md), so its bytes are not
     * written to the WAL and then to the file for every span. */
    taskspan_code rc = prep(
        s,
        "INSERT OR IGNORE INTO export_spans (trace_id, span_id, task_id, "
        "name, resource_id, end_ns, body_len, created_ns, claim_owner, "
        "claim_until_ns, attempts, trace_shared) VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    src = exec_sql(s, "BEGIN IMMEDIATE");
    for (size_t i = 0; src == SQLITE_OK && i < n; i++) {
        bind_new_span(st, &spans[i], now, owner, until_ns);
        src = taskspan__sqlite_step_once(st);
        if (out_ids != NULL) {
            /* Known already (another exporter found it first): not ours. */
            out_ids[i] = src == SQLITE_OK && sqlite3_changes(s->db) > 0
                             ? sqlite3_last_insert_rowid(s->db)
                             : 0;
        }
    }
    if (src == SQLITE_OK) {
        src = exec_sql(s, "COMMIT");
    }
    if (src != SQLITE_OK) {
        rc = taskspan__sqlite_fail(s->db, src, "recording spans for export",
                                   err, errlen);
        rollback_if_open(s);
        if (out_ids != NULL) {
            memset(out_ids, 0, n * sizeof *out_ids);
        }
    }
    release(s, st);
    return rc;
}

/* Whether ids are every id from ids[0] to ids[n - 1], ascending: the batch
 * is then named by a range, which SQLite walks on the primary key, instead
 * of a json_each() list it must build and probe id by id. */
static bool id_range(const int64_t *ids, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (ids[i] != ids[0] + (int64_t)i) {
            return false;
        }
    }
    return n > 0;
}

/* "[1,2,3]": an id list for json_each(), so one statement covers a batch
 * whose ids are not a range. */
static char *id_list(const int64_t *ids, size_t n)
{
    size_t cap = n * 21 + 3, len = 1;
    char *p = malloc(cap);
    if (p == NULL) {
        return NULL;
    }
    p[0] = '[';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(p + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)ids[i]);
    }
    snprintf(p + len, cap - len, "]");
    return p;
}

/* A batch's ids for a statement: a range (lo, hi) or a json_each() list. */
typedef struct id_set {
    bool range;
    int64_t lo, hi;
    char *json;
} id_set;

static taskspan_code id_set_make(id_set *out, const int64_t *ids, size_t n)
{
    memset(out, 0, sizeof *out);
    if (id_range(ids, n)) {
        out->range = true;
        out->lo = ids[0];
        out->hi = ids[n - 1];
        return TASKSPAN_OK;
    }
    out->json = id_list(ids, n);
    return out->json != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
}

/* Bind the set at parameter idx (a list) or idx and idx + 1 (a range). */
static void id_set_bind(sqlite3_stmt *st, int idx, const id_set *set)
{
    if (set->range) {
        sqlite3_bind_int64(st, idx, set->lo);
        sqlite3_bind_int64(st, idx + 1, set->hi);
    } else {
        sqlite3_bind_text(st, idx, set->json, -1, SQLITE_STATIC);
    }
}

void taskspan__claim_free(taskspan__claim *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->bodies != NULL) {
            free(c->bodies[i]);
        }
        if (c->task_ids != NULL) {
            free(c->task_ids[i]);
        }
    }
    free(c->ids);
    free(c->resource_ids);
    free(c->bodies);
    free(c->body_lens);
    free(c->task_ids);
    free(c->keys);
    memset(c, 0, sizeof *c);
}

/* Pick the ids to claim: the oldest claimable, within the byte budget. */
static taskspan_code pick(store *s, int64_t now_ns, size_t max_spans,
                          size_t max_bytes, taskspan__claim *out, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t bytes = 0;
    taskspan_code rc = prep(s,
                            "SELECT id, body_len FROM export_spans "
                            "WHERE state = 0 AND claim_until_ns < ?1 "
                            "ORDER BY id LIMIT ?2",
                            &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    out->ids = malloc((max_spans ? max_spans : 1) * sizeof *out->ids);
    if (out->ids == NULL) {
        release(s, st);
        return TASKSPAN_E_NOMEM;
    }
    sqlite3_bind_int64(st, 1, now_ns);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max_spans);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_int64(st, 1);
        /* Always take one span, even one larger than the budget. */
        if (out->n > 0 && bytes + len > max_bytes) {
            src = SQLITE_DONE;
            break;
        }
        out->ids[out->n++] = sqlite3_column_int64(st, 0);
        bytes += len;
    }
    if (src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "choosing spans to send", err,
                                   errlen);
    }
    release(s, st);
    return rc;
}

static taskspan_code take(store *s, const char *owner, int64_t until_ns,
                          const id_set *set, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    /* The picked rows only: a range holds nothing else (they are every id
     * in it), a list names them. */
    taskspan_code rc = prep(
        s,
        set->range ? "UPDATE export_spans SET claim_owner = ?1, "
                     "claim_until_ns = ?2, attempts = attempts + 1 "
                     "WHERE id BETWEEN ?3 AND ?4"
                   : "UPDATE export_spans SET claim_owner = ?1, "
                     "claim_until_ns = ?2, attempts = attempts + 1 "
                     "WHERE id IN (SELECT value FROM json_each(?3))",
        &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, until_ns);
        id_set_bind(st, 3, set);
        int src = taskspan__sqlite_step_once(st);
        if (src != SQLITE_OK) {
            rc = taskspan__sqlite_fail(s->db, src, "claiming spans", err,
                                       errlen);
        }
    }
    release(s, st);
    return rc;
}

static taskspan_code claim_arrays(taskspan__claim *out)
{
    size_t n = out->n;
    out->resource_ids = calloc(n, sizeof *out->resource_ids);
    out->bodies = calloc(n, sizeof *out->bodies);
    out->body_lens = calloc(n, sizeof *out->body_lens);
    out->task_ids = calloc(n, sizeof *out->task_ids);
    out->keys = calloc(n, TASKSPAN__SPAN_KEY_LEN);
    if (out->resource_ids == NULL || out->bodies == NULL ||
        out->body_lens == NULL || out->task_ids == NULL || out->keys == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    return TASKSPAN_OK;
}

/* Read claimed row i from st (the SELECT of load_rows): its resource, its
 * task and key, and its stored body when it has one. */
static taskspan_code read_row(sqlite3_stmt *st, taskspan__claim *out, size_t i)
{
    out->ids[i] = sqlite3_column_int64(st, 0);
    out->resource_ids[i] = sqlite3_column_int64(st, 1);
    out->body_lens[i] = (size_t)sqlite3_column_int64(st, 2);
    out->task_ids[i] = strdup((const char *)sqlite3_column_text(st, 3));
    if (out->task_ids[i] == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    /* A key of another length matches no span: re-encoding rejects it. */
    uint8_t *key = out->keys + i * TASKSPAN__SPAN_KEY_LEN;
    if (sqlite3_column_bytes(st, 4) == 16 &&
        sqlite3_column_bytes(st, 5) == 8) {
        memcpy(key, sqlite3_column_blob(st, 4), 16);
        memcpy(key + 16, sqlite3_column_blob(st, 5), 8);
    }
    if (sqlite3_column_type(st, 6) != SQLITE_NULL) {
        size_t len = (size_t)sqlite3_column_bytes(st, 6);
        out->bodies[i] = malloc(len ? len : 1);
        if (out->bodies[i] == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        memcpy(out->bodies[i], sqlite3_column_blob(st, 6), len);
        out->body_lens[i] = len;
    }
    out->total_bytes += out->body_lens[i];
    return TASKSPAN_OK;
}

static taskspan_code load_rows(store *s, const id_set *set,
                               taskspan__claim *out, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    size_t n = out->n, i = 0;
    taskspan_code rc = claim_arrays(out);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    /* Bodies only from buffers written before spans were re-encoded. */
    rc = prep(s,
              set->range
                  ? "SELECT s.id, s.resource_id, s.body_len, s.task_id, "
                    "s.trace_id, s.span_id, b.body FROM export_spans s "
                    "LEFT JOIN export_bodies b ON b.id = s.id "
                    "WHERE s.id BETWEEN ?1 AND ?2 ORDER BY s.id"
                  : "SELECT s.id, s.resource_id, s.body_len, s.task_id, "
                    "s.trace_id, s.span_id, b.body FROM export_spans s "
                    "LEFT JOIN export_bodies b ON b.id = s.id "
                    "WHERE s.id IN (SELECT value FROM json_each(?1)) "
                    "ORDER BY s.id",
              &st, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    id_set_bind(st, 1, set);
    int src = SQLITE_ROW;
    while (rc == TASKSPAN_OK && i < n &&
           (src = sqlite3_step(st)) == SQLITE_ROW) {
        rc = read_row(st, out, i++);
    }
    if (rc == TASKSPAN_OK && src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = taskspan__sqlite_fail(s->db, src, "reading claimed spans", err,
                                   errlen);
    }
    release(s, st);
    out->n = i; /* every picked row exists: nothing deletes pending rows */
    return rc;
}

taskspan_code taskspan__sqlite_claim(void *h, const char *owner,
                                     int64_t now_ns, int64_t until_ns,
                                     size_t max_spans, size_t max_bytes,
                                     taskspan__claim *out, char *err,
                                     size_t errlen)
{
    store *s = h;
    id_set set = {0};

    memset(out, 0, sizeof *out);
    /* Pick and take under one write lock, so no other exporter can claim
     * the same rows between the two. */
    int src = exec_sql(s, "BEGIN IMMEDIATE");
    if (src != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, src,
                                     "locking the buffer to "
                                     "claim spans",
                                     err, errlen);
    }
    taskspan_code rc = pick(s, now_ns, max_spans, max_bytes, out, err, errlen);
    if (rc == TASKSPAN_OK && out->n > 0) {
        rc = id_set_make(&set, out->ids, out->n);
    }
    if (rc == TASKSPAN_OK && out->n > 0) {
        rc = take(s, owner, until_ns, &set, err, errlen);
    }
    if (rc == TASKSPAN_OK && out->n > 0) {
        rc = load_rows(s, &set, out, err, errlen);
    }
    if (rc == TASKSPAN_OK) {
        src = exec_sql(s, "COMMIT");
        if (src != SQLITE_OK) {
            rc = taskspan__sqlite_fail(s->db, src, "committing a claim", err,
                                       errlen);
        }
    }
    if (rc != TASKSPAN_OK) {
        rollback_if_open(s);
        taskspan__claim_free(out);
    }
    free(set.json);
    return rc;
}

taskspan_code taskspan__sqlite_settle(void *h, const char *owner,
                                      const int64_t *ids, size_t n,
                                      taskspan__span_state state,
                                      const char *error, int64_t retry_at_ns,
                                      char *err, size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    id_set set;
    if (n == 0) {
        return TASKSPAN_OK;
    }
    if (id_set_make(&set, ids, n) != TASKSPAN_OK) {
        return TASKSPAN_E_NOMEM;
    }
    /* Only the owner of a live claim settles: an exporter whose claim ran
     * out while it waited must not overwrite what another one did. A
     * range holds only this batch's rows (they are every id in it), and
     * the owner and state conditions hold for it as for a list. */
    taskspan_code rc = prep(
        s,
        set.range ? "UPDATE export_spans SET state = ?1, last_error = ?2,"
                    " done_ns = CASE WHEN ?1 = 0 THEN NULL ELSE ?3 END,"
                    " claim_owner = NULL, claim_until_ns = ?4"
                    " WHERE id BETWEEN ?5 AND ?6"
                    " AND claim_owner = ?7 AND state = 0"
                  : "UPDATE export_spans SET state = ?1, last_error = ?2,"
                    " done_ns = CASE WHEN ?1 = 0 THEN NULL ELSE ?3 END,"
                    " claim_owner = NULL, claim_until_ns = ?4"
                    " WHERE id IN (SELECT value FROM json_each(?5))"
                    " AND claim_owner = ?7 AND state = 0",
        &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_int(st, 1, (int)state);
        taskspan__sqlite_bind_text(st, 2, error);
        sqlite3_bind_int64(st, 3, taskspan__now_ns());
        sqlite3_bind_int64(st, 4, retry_at_ns);
        id_set_bind(st, 5, &set);
        sqlite3_bind_text(st, 7, owner, -1, SQLITE_STATIC);
        int src = taskspan__sqlite_step_once(st);
        if (src != SQLITE_OK) {
            rc = taskspan__sqlite_fail(s->db, src, "recording delivery", err,
                                       errlen);
        }
    }
    release(s, st);
    free(set.json);
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
     * and the rejected spans are counted in their partial indexes, all
     * of them by the b-tree's page headers (count(*)): no row is read.
     * One statement, one snapshot: the delivered are the rest. */
    taskspan_code rc = prep(s,
                            "SELECT (SELECT count(*) FROM export_spans "
                            "WHERE state = 0), (SELECT count(*) FROM "
                            "export_spans WHERE state NOT IN (0, 1)), "
                            "(SELECT count(*) FROM export_spans)",
                            &a, err, errlen);
    if (rc == TASKSPAN_OK) {
        src = sqlite3_step(a);
        if (src == SQLITE_ROW) {
            int64_t all = sqlite3_column_int64(a, 2);
            out->pending = (uint64_t)sqlite3_column_int64(a, 0);
            out->rejected = (uint64_t)sqlite3_column_int64(a, 1);
            out->delivered = (uint64_t)(all - sqlite3_column_int64(a, 0) -
                                        sqlite3_column_int64(a, 1));
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

taskspan_code taskspan__sqlite_last_span_row(void *h, int64_t *out, char *err,
                                             size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan_code rc = prep(s, "SELECT max(id) FROM export_spans", &st, err,
                            errlen);
    if (rc == TASKSPAN_OK) {
        rc = query_int(s, st, out, "reading export rows", err, errlen);
    }
    release(s, st);
    return rc;
}

taskspan_code taskspan__sqlite_pending_upto(void *h, int64_t upto,
                                            int64_t *out, char *err,
                                            size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    taskspan_code rc = prep(s,
                            "SELECT count(*) FROM export_spans WHERE "
                            "state = 0 AND id <= ?1",
                            &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_int64(st, 1, upto);
        rc = query_int(s, st, out, "counting pending spans", err, errlen);
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

taskspan_code taskspan__sqlite_any_pending_upto(void *h, int64_t upto,
                                                bool *out_any, char *err,
                                                size_t errlen)
{
    store *s = h;
    sqlite3_stmt *st = NULL;
    int64_t any = 0;
    taskspan_code rc = prep(s,
                            "SELECT EXISTS (SELECT 1 FROM export_spans "
                            "WHERE state = 0 AND id <= ?1)",
                            &st, err, errlen);
    if (rc == TASKSPAN_OK) {
        sqlite3_bind_int64(st, 1, upto);
        rc = query_int(s, st, &any, "looking for pending spans", err, errlen);
    }
    release(s, st);
    *out_any = any != 0;
    return rc;
}
