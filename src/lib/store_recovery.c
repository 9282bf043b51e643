/*
 * store_recovery.c -- the recovery half of the SQLite buffer (schema 3):
 * work items and their leases, checkpoints, and incarnations closed as
 * crashed before their task's next runner_spawn.
 *
 * These are primitives run inside a write transaction that recovery.c
 * opens and commits (begin/commit/rollback below), together with the
 * events it appends through taskspan__sqlite_append_locked(): a state
 * change and its event are one commit. Statements are kept in the
 * connection's statement cache (store_export.c).
 */
#include "store_sqlite.h"

#include <stdlib.h>
#include <string.h>

/* Statements come from the connection's cache (a lease call runs several
 * of them; preparing each anew cost more than running it). */
static taskspan_code prepare(store *s, const char *sql, sqlite3_stmt **st,
                             char *err, size_t errlen)
{
    return taskspan__sqlite_prep(s, sql, st, err, errlen);
}

static void copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t != NULL ? strlen((const char *)t) : 0;
    if (n >= size) {
        n = size - 1;
    }
    if (n > 0) {
        memcpy(dst, t, n);
    }
    dst[n] = '\0';
}

static char *dup_text(sqlite3_stmt *st, int col, bool *oom)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    char *p;
    if (t == NULL) {
        return NULL;
    }
    p = strdup((const char *)t);
    if (p == NULL) {
        *oom = true;
    }
    return p;
}

/* ---- transactions ------------------------------------------------------- */

static taskspan_code rec_begin(void *handle, char *err, size_t errlen)
{
    store *s = handle;
    if (s->readonly) {
        return taskspan__fail(err, errlen, TASKSPAN_E_READONLY,
                              "the recorder was opened read-only");
    }
    int rc = taskspan__sqlite_step_once(s->begin_immediate);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "locking the buffer", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

static taskspan_code rec_commit(void *handle, char *err, size_t errlen)
{
    store *s = handle;
    int rc = taskspan__sqlite_step_once(s->commit);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "committing", err, errlen);
    }
    return TASKSPAN_OK;
}

static void rec_rollback(void *handle)
{
    store *s = handle;
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static taskspan_code rec_append(void *handle, const taskspan__append *ev,
                                int64_t *out_seq, char *err, size_t errlen)
{
    store *s = handle;
    int rc = taskspan__sqlite_append_locked(s, ev, out_seq);
    if (rc != SQLITE_OK) {
        return taskspan__sqlite_fail(s->db, rc, "recording the event", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

/* ---- work items --------------------------------------------------------- */

#define ITEM_COLUMNS                                                          \
    "work_item_id, state, attempts, retry_count, lease_holder, lease_pid,"    \
    " lease_expires_ns, last_checkpoint, updated_ns"

static void read_item(taskspan_work_item *out, sqlite3_stmt *st)
{
    memset(out, 0, sizeof *out);
    copy_text(out->id, sizeof out->id, st, 0);
    out->state = (taskspan_item_state)sqlite3_column_int(st, 1);
    out->attempts = sqlite3_column_int64(st, 2);
    out->retry_count = sqlite3_column_int64(st, 3);
    copy_text(out->holder, sizeof out->holder, st, 4);
    out->holder_pid = sqlite3_column_int64(st, 5);
    out->lease_expires_ns = sqlite3_column_int64(st, 6);
    out->last_checkpoint = sqlite3_column_int64(st, 7);
    out->updated_ns = sqlite3_column_int64(st, 8);
}

static taskspan_code item_get(void *handle, const char *task_id,
                              const char *item_id, taskspan_work_item *out,
                              bool *out_found, char *err, size_t errlen)
{
    static const char sql[] = "SELECT " ITEM_COLUMNS " FROM work_items"
                              " WHERE task_id = ?1 AND work_item_id = ?2";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    *out_found = false;
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, item_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_item(out, st);
        *out_found = true;
    } else if (rc != SQLITE_DONE) {
        code = taskspan__sqlite_fail(s->db, rc, "reading a work item", err,
                                     errlen);
    }
    taskspan__sqlite_release(s, st);
    return code;
}

static taskspan_code item_put(void *handle, const char *task_id,
                              const taskspan_work_item *it, const char *title,
                              int64_t index, char *err, size_t errlen)
{
    static const char sql[] =
        "INSERT INTO work_items (task_id, work_item_id, title, item_index,"
        "  state, attempts, retry_count, lease_holder, lease_pid,"
        "  lease_expires_ns, last_checkpoint, created_ns, updated_ns)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)"
        " ON CONFLICT (task_id, work_item_id) DO UPDATE SET"
        "  title = coalesce(?3, title), state = ?5, attempts = ?6,"
        "  retry_count = ?7, lease_holder = ?8, lease_pid = ?9,"
        "  lease_expires_ns = ?10, last_checkpoint = ?11, updated_ns = ?12";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    bool leased = it->state == TASKSPAN_ITEM_LEASED;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, it->id, -1, SQLITE_STATIC);
    taskspan__sqlite_bind_text(st, 3, title);
    sqlite3_bind_int64(st, 4, index);
    sqlite3_bind_int(st, 5, (int)it->state);
    sqlite3_bind_int64(st, 6, it->attempts);
    sqlite3_bind_int64(st, 7, it->retry_count);
    taskspan__sqlite_bind_text(st, 8, leased ? it->holder : NULL);
    if (leased) {
        sqlite3_bind_int64(st, 9, it->holder_pid);
        sqlite3_bind_int64(st, 10, it->lease_expires_ns);
    }
    sqlite3_bind_int64(st, 11, it->last_checkpoint);
    sqlite3_bind_int64(st, 12, it->updated_ns);
    int rc = sqlite3_step(st);
    taskspan__sqlite_release(s, st);
    if (rc != SQLITE_DONE) {
        return taskspan__sqlite_fail(s->db, rc, "writing a work item", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

static taskspan_code items_leased(void *handle, const char *task_id,
                                  taskspan_work_item **out, size_t *out_n,
                                  char *err, size_t errlen)
{
    static const char sql[] = "SELECT " ITEM_COLUMNS " FROM work_items"
                              " WHERE task_id = ?1 AND state = 2"
                              " ORDER BY item_index, work_item_id";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    *out = NULL;
    *out_n = 0;
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*out_n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            taskspan_work_item *p = realloc(*out, ncap * sizeof *p);
            if (p == NULL) {
                code = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                      "out of memory");
                break;
            }
            *out = p;
            cap = ncap;
        }
        read_item(&(*out)[(*out_n)++], st);
    }
    if (code == TASKSPAN_OK && rc != SQLITE_DONE) {
        code = taskspan__sqlite_fail(s->db, rc, "reading leased work items",
                                     err, errlen);
    }
    taskspan__sqlite_release(s, st);
    if (code != TASKSPAN_OK) {
        free(*out);
        *out = NULL;
        *out_n = 0;
    }
    return code;
}

/* ---- checkpoints -------------------------------------------------------- */

void taskspan__checkpoint_row_free(taskspan__checkpoint_row *row)
{
    if (row == NULL) {
        return;
    }
    free(row->checkpoint_id);
    free(row->checkpoint_type);
    free(row->work_item_id);
    free(row->evidence_json);
    memset(row, 0, sizeof *row);
}

static taskspan_code checkpoint_max(void *handle, const char *task_id,
                                    int64_t *out, char *err, size_t errlen)
{
    static const char sql[] = "SELECT max(sequence_number) FROM checkpoints"
                              " WHERE task_id = ?1";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    *out = 0;
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0); /* NULL reads as 0 */
    } else {
        code = taskspan__sqlite_fail(s->db, rc, "reading checkpoints", err,
                                     errlen);
    }
    taskspan__sqlite_release(s, st);
    return code;
}

static taskspan_code checkpoint_put(void *handle, const char *task_id,
                                    const taskspan__checkpoint_row *row,
                                    char *err, size_t errlen)
{
    static const char sql[] =
        "INSERT INTO checkpoints (task_id, sequence_number, checkpoint_id,"
        "  checkpoint_type, work_item_id, evidence, verified, event_seq,"
        "  created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, row->sequence_number);
    sqlite3_bind_text(st, 3, row->checkpoint_id, -1, SQLITE_STATIC);
    taskspan__sqlite_bind_text(st, 4, row->checkpoint_type);
    taskspan__sqlite_bind_text(st, 5, row->work_item_id);
    sqlite3_bind_text(st, 6, row->evidence_json, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, row->verified);
    sqlite3_bind_int64(st, 8, row->event_seq);
    sqlite3_bind_int64(st, 9, row->committed_ns);
    int rc = sqlite3_step(st);
    taskspan__sqlite_release(s, st);
    if (rc != SQLITE_DONE) {
        return taskspan__sqlite_fail(s->db, rc, "writing a checkpoint", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

static taskspan_code checkpoint_get(void *handle, const char *task_id,
                                    int64_t seq, taskspan__checkpoint_row *out,
                                    bool *out_found, char *err, size_t errlen)
{
    static const char by_seq[] =
        "SELECT sequence_number, checkpoint_id, checkpoint_type,"
        "  work_item_id, evidence, verified, event_seq, created_ns"
        " FROM checkpoints WHERE task_id = ?1 AND sequence_number = ?2";
    static const char last_verified[] =
        "SELECT sequence_number, checkpoint_id, checkpoint_type,"
        "  work_item_id, evidence, verified, event_seq, created_ns"
        " FROM checkpoints WHERE task_id = ?1 AND verified = 1"
        " ORDER BY sequence_number DESC LIMIT 1";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    bool oom = false;
    taskspan_code code = prepare(s, seq > 0 ? by_seq : last_verified, &st, err,
                                 errlen);

    memset(out, 0, sizeof *out);
    *out_found = false;
    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    if (seq > 0) {
        sqlite3_bind_int64(st, 2, seq);
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->sequence_number = sqlite3_column_int64(st, 0);
        out->checkpoint_id = dup_text(st, 1, &oom);
        out->checkpoint_type = dup_text(st, 2, &oom);
        out->work_item_id = dup_text(st, 3, &oom);
        out->evidence_json = dup_text(st, 4, &oom);
        out->verified = sqlite3_column_int(st, 5);
        out->event_seq = sqlite3_column_int64(st, 6);
        out->committed_ns = sqlite3_column_int64(st, 7);
        *out_found = true;
        if (oom || out->checkpoint_id == NULL || out->evidence_json == NULL) {
            code = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                  "out of memory");
        }
    } else if (rc != SQLITE_DONE) {
        code = taskspan__sqlite_fail(s->db, rc, "reading a checkpoint", err,
                                     errlen);
    }
    taskspan__sqlite_release(s, st);
    if (code != TASKSPAN_OK) {
        taskspan__checkpoint_row_free(out);
        *out_found = false;
    }
    return code;
}

static taskspan_code checkpoint_set_verified(void *handle, const char *task_id,
                                             int64_t seq, int verified,
                                             int64_t at_ns, char *err,
                                             size_t errlen)
{
    static const char sql[] =
        "UPDATE checkpoints SET verified = ?3, verified_ns = ?4"
        " WHERE task_id = ?1 AND sequence_number = ?2";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    if (code != TASKSPAN_OK) {
        return code;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int(st, 3, verified);
    sqlite3_bind_int64(st, 4, at_ns);
    int rc = sqlite3_step(st);
    taskspan__sqlite_release(s, st);
    if (rc != SQLITE_DONE) {
        return taskspan__sqlite_fail(s->db, rc, "verifying a checkpoint", err,
                                     errlen);
    }
    return TASKSPAN_OK;
}

/* ---- crashed incarnations ----------------------------------------------- */

void taskspan__crash_candidates_free(taskspan__crash_candidate *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        free(c[i].task_id);
    }
    free(c);
}

/* The runner_pid of each candidate comes from its runner_spawn payload,
 * read by SQLite's own JSON functions (0 when absent). */
static taskspan_code crash_candidates(void *handle, int64_t idle_before_ns,
                                      size_t max, const char *task_id,
                                      taskspan__crash_candidate **out,
                                      size_t *out_n, char *err, size_t errlen)
{
    /* The tasks row's updated_ns is a floor of the live one (next_seq in
     * store_sqlite.c), so filtering on it first keeps every idle task and
     * skips the live lookups of most busy ones; the live values decide.
     * Then the cheapest test first: a task whose last event is its
     * runner_exit is the common finished case and costs one index
     * lookup. */
    static const char sql[] =
        "WITH live AS (SELECT t.task_id, t.incarnation, t.tnum,"
        "  " TASKSPAN__LIVE_LAST_SEQ " AS last_seq,"
        "  " TASKSPAN__LIVE_UPDATED_NS " AS updated_ns"
        "  FROM tasks t WHERE t.incarnation >= 1 AND t.updated_ns <= ?1"
        "  AND (?3 IS NULL OR t.task_id = ?3))"
        "SELECT t.task_id, t.incarnation, t.last_seq,"
        "  (SELECT json_extract(payload, '$.runner_pid') FROM task_events"
        "   WHERE " TASKSPAN__EVENTS_OF_T " AND incarnation = t.incarnation"
        "   AND event_type = 'runner_spawn' ORDER BY id LIMIT 1)"
        " FROM live t"
        " WHERE t.updated_ns <= ?1"
        " AND NOT EXISTS (SELECT 1 FROM task_events"
        "   WHERE id = t.tnum * 4294967296 + t.last_seq"
        "   AND event_type = 'runner_exit')"
        " AND NOT EXISTS (SELECT 1 FROM crashed_incarnations c"
        "   WHERE c.task_id = t.task_id AND c.incarnation = t.incarnation"
        "   AND c.upto_seq >= t.last_seq)"
        " AND NOT EXISTS (SELECT 1 FROM task_events"
        "   WHERE " TASKSPAN__EVENTS_OF_T " AND incarnation = t.incarnation"
        "   AND event_type = 'runner_exit')"
        " LIMIT ?2";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc;
    taskspan__crash_candidate *c = calloc(max ? max : 1, sizeof *c);
    taskspan_code code = c != NULL
                             ? prepare(s, sql, &st, err, errlen)
                             : taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                              "out of memory");

    *out = NULL;
    *out_n = 0;
    if (code != TASKSPAN_OK) {
        free(c);
        return code;
    }
    sqlite3_bind_int64(st, 1, idle_before_ns);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    taskspan__sqlite_bind_text(st, 3, task_id);
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        bool oom = false;
        c[n].task_id = dup_text(st, 0, &oom);
        c[n].incarnation = sqlite3_column_int64(st, 1);
        c[n].last_seq = sqlite3_column_int64(st, 2);
        c[n].runner_pid = sqlite3_column_type(st, 3) == SQLITE_INTEGER
                              ? sqlite3_column_int64(st, 3)
                              : 0;
        if (c[n].task_id == NULL) {
            code = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                                  "out of memory");
            break;
        }
        n++;
    }
    if (code == TASKSPAN_OK && n < max && rc != SQLITE_DONE) {
        code = taskspan__sqlite_fail(s->db, rc, "looking for crashed runners",
                                     err, errlen);
    }
    taskspan__sqlite_release(s, st);
    if (code != TASKSPAN_OK) {
        taskspan__crash_candidates_free(c, n);
        return code;
    }
    *out = c;
    *out_n = n;
    return TASKSPAN_OK;
}

static taskspan_code crash_mark(void *handle,
                                const taskspan__crash_candidate *c,
                                int64_t now_ns, bool *out_closed, char *err,
                                size_t errlen)
{
    /* Inserted only while the task is exactly where the scan saw it: a
     * runner_spawn or any event since then means it moved on. */
    static const char sql[] =
        "INSERT OR IGNORE INTO crashed_incarnations (task_id, incarnation,"
        "  upto_seq, runner_pid, closed_ns)"
        " SELECT ?1, ?2, ?3, ?4, ?5 FROM tasks t"
        " WHERE t.task_id = ?1 AND t.incarnation = ?2"
        " AND " TASKSPAN__LIVE_LAST_SEQ " = ?3";
    store *s = handle;
    sqlite3_stmt *st = NULL;
    taskspan_code code = prepare(s, sql, &st, err, errlen);

    *out_closed = false;
    if (code == TASKSPAN_OK) {
        sqlite3_bind_text(st, 1, c->task_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, c->incarnation);
        sqlite3_bind_int64(st, 3, c->last_seq);
        sqlite3_bind_int64(st, 4, c->runner_pid);
        sqlite3_bind_int64(st, 5, now_ns);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
            code = taskspan__sqlite_fail(s->db, rc, "closing a crashed runner",
                                         err, errlen);
        }
        *out_closed = code == TASKSPAN_OK && sqlite3_changes(s->db) > 0;
        taskspan__sqlite_release(s, st);
    }
    return code;
}

static taskspan_code crash_close(void *handle,
                                 const taskspan__crash_candidate *c,
                                 int64_t now_ns, bool *out_closed, char *err,
                                 size_t errlen)
{
    taskspan_code code = rec_begin(handle, err, errlen);

    *out_closed = false;
    if (code == TASKSPAN_OK) {
        code = crash_mark(handle, c, now_ns, out_closed, err, errlen);
    }
    if (code == TASKSPAN_OK) {
        code = rec_commit(handle, err, errlen);
    }
    if (code != TASKSPAN_OK) {
        rec_rollback(handle);
        *out_closed = false;
    }
    return code;
}

int taskspan__sqlite_load_crash_closed(store *s, const char *task_id,
                                       taskspan__task_events *out)
{
    static const char sql[] = "SELECT upto_seq FROM crashed_incarnations"
                              " WHERE task_id = ?1 ORDER BY upto_seq";
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    char ignored[TASKSPAN__MSG_SIZE];
    int rc;

    /* From the statement cache: one is read per task loaded. */
    if (prepare(s, sql, &st, ignored, sizeof ignored) != TASKSPAN_OK) {
        /* A schema-2 buffer opened read-only (never migrated) has no such
         * table, and so no crash-closed incarnation. */
        rc = sqlite3_errcode(s->db);
        return (rc & 0xff) == SQLITE_ERROR ? SQLITE_OK : rc;
    }
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n_crash_closed == cap) {
            /* Rarely more than one: grow in the arena, old blocks stay. */
            size_t ncap = cap ? cap * 2 : 4;
            int64_t *p = taskspan__arena_alloc(&out->arena, ncap * sizeof *p);
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            if (out->n_crash_closed > 0) {
                memcpy(p, out->crash_closed_seqs,
                       out->n_crash_closed * sizeof *p);
            }
            out->crash_closed_seqs = p;
            cap = ncap;
        }
        out->crash_closed_seqs[out->n_crash_closed++] = sqlite3_column_int64(
            st, 0);
    }
    taskspan__sqlite_release(s, st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

const taskspan__recovery_ops taskspan__recovery_sqlite = {
    .begin = rec_begin,
    .commit = rec_commit,
    .rollback = rec_rollback,
    .append = rec_append,
    .item_get = item_get,
    .item_put = item_put,
    .items_leased = items_leased,
    .checkpoint_max = checkpoint_max,
    .checkpoint_put = checkpoint_put,
    .checkpoint_get = checkpoint_get,
    .checkpoint_set_verified = checkpoint_set_verified,
    .crash_candidates = crash_candidates,
    .crash_close = crash_close,
    .crash_mark = crash_mark,
};
