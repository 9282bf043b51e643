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
