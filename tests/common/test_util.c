/*
 * test_util.c -- helpers the cmocka tests share (see test_util.h).
 */
#include "test_util.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- scratch files ------------------------------------------------------- */

void mkdir_p(const char *path)
{
    char *copy = strdup(path);
    assert_non_null(copy);
    for (char *p = copy + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            (void)mkdir(copy, 0700);
            *p = '/';
        }
    }
    (void)mkdir(copy, 0700);
    free(copy);
}

char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *new_tmpdir(const char *tag)
{
    const char *base = getenv("TASKSPAN_TEST_TMP");
    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    mkdir_p(base);
    size_t n = strlen(base) + strlen(tag) + 16;
    char *p = malloc(n);
    if (p == NULL) {
        return NULL;
    }
    snprintf(p, n, "%s/%s-XXXXXX", base, tag);
    if (mkdtemp(p) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") != 0 &&
                    strcmp(de->d_name, "..") != 0) {
                    char *child = path_join(path, de->d_name);
                    rm_rf(child);
                    free(child);
                }
            }
            closedir(d);
        }
        (void)rmdir(path);
    } else {
        (void)unlink(path);
    }
}

/* ---- recorders ----------------------------------------------------------- */

taskspan *open_path(const char *path, unsigned flags)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    o.db_path = path;
    o.flags = flags;
    o.traceparent = ""; /* independent of the caller's environment */
    taskspan_code c = taskspan_open(&ts, &o, err);
    if (c != TASKSPAN_OK) {
        print_error("taskspan_open(%s): %s: %s\n", path, taskspan_strerror(c),
                    err);
    }
    assert_int_equal(c, TASKSPAN_OK);
    assert_non_null(ts);
    return ts;
}

int fx_open(void **state, const char *tag)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    f->dir = new_tmpdir(tag);
    if (f->dir == NULL) {
        free(f);
        return -1;
    }
    f->db = path_join(f->dir, "buffer.db");
    f->ts = open_path(f->db, 0);
    *state = f;
    return 0;
}

int fx_teardown(void **state)
{
    fx *f = *state;
    taskspan_close(f->ts);
    rm_rf(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

/* ---- sqlite helpers ------------------------------------------------------ */

sqlite3 *sql_open(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

sqlite3_stmt *sql_prep(sqlite3 *db, const char *sql, const char *t1,
                       int64_t i2, const char *t3)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        print_error("%s: %s\n", sql, sqlite3_errmsg(db));
    }
    assert_int_equal(rc, SQLITE_OK);
    int n = sqlite3_bind_parameter_count(st);
    if (n >= 1) {
        sqlite3_bind_text(st, 1, t1, -1, SQLITE_TRANSIENT);
    }
    if (n >= 2) {
        sqlite3_bind_int64(st, 2, i2);
    }
    if (n >= 3) {
        sqlite3_bind_text(st, 3, t3, -1, SQLITE_TRANSIENT);
    }
    return st;
}

int64_t sql_int(sqlite3 *db, const char *sql, const char *t1, int64_t i2,
                const char *t3)
{
    sqlite3_stmt *st = sql_prep(db, sql, t1, i2, t3);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One row per closed span of task, in state, by the key its spans have. */
static void rows_for_task(sqlite3 *db, taskspan *ts, const char *task,
                          int state, int shared)
{
    taskspan_spans *spans = NULL;
    assert_int_equal(taskspan_task_spans(&spans, ts, task), TASKSPAN_OK);
    sqlite3_stmt *st = sql_prep(
        db,
        "INSERT OR IGNORE INTO export_spans (trace_id, span_id, task_id,"
        " name, end_ns, created_ns, done_ns, state, trace_shared)"
        " VALUES (?4, ?5, ?1, ?6, ?7, ?7, CASE WHEN ?2 = 0 THEN NULL"
        " ELSE ?7 END, ?2, ?3)",
        task, state, shared ? "1" : "0");
    for (size_t i = 0; i < taskspan_spans_count(spans); i++) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        if (s->is_open) {
            continue;
        }
        sqlite3_bind_blob(st, 4, s->trace_id, 16, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, s->span_id, 8, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, s->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, s->end_ns);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    taskspan_spans_free(spans);
}

void spans_rows_as_schema_7(const char *path)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;
    o.db_path = path;
    o.flags = TASKSPAN_OPEN_READONLY;
    assert_int_equal(taskspan_open(&ts, &o, NULL), TASKSPAN_OK);
    sqlite3 *db = sql_open(path);
    sqlite3_stmt *st = sql_prep(
        db,
        "SELECT task_id, export_done, export_closed,"
        " length(trace_id) = 16 AND length(parent_span_id) = 8"
        " FROM tasks WHERE export_closed > 0",
        NULL, 0, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *task = (const char *)sqlite3_column_text(st, 0);
        int64_t done = sqlite3_column_int64(st, 1);
        int64_t closed = sqlite3_column_int64(st, 2);
        assert_true(done == 0 || done == closed);
        rows_for_task(db, ts, task, done == closed ? 1 : 0,
                      sqlite3_column_int(st, 3));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    taskspan_close(ts);
}

int64_t spans_in_state(const char *path, int state)
{
    static const char *const sql[] = {SQL_SPANS_PENDING, SQL_SPANS_DELIVERED,
                                      SQL_SPANS_REJECTED};
    assert_true(state >= 0 && state <= 2);
    sqlite3 *db = sql_open(path);
    int64_t n = sql_int(db, sql[state], NULL, 0, NULL);
    sqlite3_close(db);
    return n;
}

/* ---- spans --------------------------------------------------------------- */

const taskspan_attr *attr_find(const taskspan_attr *a, size_t n,
                               const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].key != NULL && strcmp(a[i].key, key) == 0) {
            return &a[i];
        }
    }
    return NULL;
}

void to_hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}
