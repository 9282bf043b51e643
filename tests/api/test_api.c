/*
 * test_api.c -- black-box tests of libtaskspan through taskspan.h only.
 *
 * Every test works on real SQLite buffer files in a scratch directory under
 * $TASKSPAN_TEST_TMP, and checks what was committed with the sqlite3 C API
 * (the seed's task_events table: event_type, span_id, parent_span_id, actor,
 * phase, payload as JSON) as well as through the library's span model.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/test_util.h"

/* ---- scratch files ------------------------------------------------------- */

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---- recorders ----------------------------------------------------------- */

static int fx_setup(void **state)
{
    return fx_open(state, "api");
}

/* Environment variables the library reads; every test starts without them
 * and with HOME pointing into scratch space, never at the real home. */
static char *g_home; /* the scratch HOME every test starts with */

static void clear_env(void)
{
    unsetenv("TASKSPAN_DB");
    unsetenv("XDG_STATE_HOME");
    unsetenv("TRACEPARENT");
}

/* ---- sqlite helpers ------------------------------------------------------ */

static double sql_double(sqlite3 *db, const char *sql, const char *t1,
                         int64_t i2, const char *t3)
{
    sqlite3_stmt *st = sql_prep(db, sql, t1, i2, t3);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    double v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Column 0 of the first row as a malloc'd string; NULL for SQL NULL. */
static char *sql_text(sqlite3 *db, const char *sql, const char *t1, int64_t i2,
                      const char *t3)
{
    sqlite3_stmt *st = sql_prep(db, sql, t1, i2, t3);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(st, 0);
    char *v = t != NULL ? strdup((const char *)t) : NULL;
    sqlite3_finalize(st);
    return v;
}

static void assert_sql_text(sqlite3 *db, const char *sql, const char *t1,
                            int64_t i2, const char *t3, const char *expected)
{
    char *v = sql_text(db, sql, t1, i2, t3);
    if (expected == NULL) {
        if (v != NULL) {
            print_error("%s [%s %lld %s]: expected NULL, got '%s'\n", sql, t1,
                        (long long)i2, t3 ? t3 : "", v);
        }
        assert_null(v);
    } else {
        if (v == NULL) {
            print_error("%s [%s %lld %s]: expected '%s', got NULL\n", sql, t1,
                        (long long)i2, t3 ? t3 : "", expected);
        }
        assert_non_null(v);
        assert_string_equal(v, expected);
    }
    free(v);
}

static int64_t count_task_rows(const char *db_path, const char *task)
{
    sqlite3 *db = sql_open(db_path);
    int64_t n = task != NULL ? sql_int(db,
                                       "SELECT count(*) FROM task_events "
                                       "WHERE task_id = ?1",
                                       task, 0, NULL)
                             : sql_int(db, "SELECT count(*) FROM task_events",
                                       NULL, 0, NULL);
    sqlite3_close(db);
    return n;
}

/* One expected payload field: its key, sqlite's json_type() of it and its
 * value as json_extract() gives it (compact JSON for arrays; for booleans
 * the type says it all and value is NULL). */
typedef struct field {
    const char *key;
    const char *type;
    const char *value;
} field;

#define F_STR(k, v)                                                           \
    {                                                                         \
        k, "text", v                                                          \
    }
#define F_INT(k, v)                                                           \
    {                                                                         \
        k, "integer", #v                                                      \
    }
#define F_REAL(k, v)                                                          \
    {                                                                         \
        k, "real", #v                                                         \
    }
#define F_TRUE(k)                                                             \
    {                                                                         \
        k, "true", NULL                                                       \
    }
#define F_FALSE(k)                                                            \
    {                                                                         \
        k, "false", NULL                                                      \
    }
#define F_ARR(k, v)                                                           \
    {                                                                         \
        k, "array", v                                                         \
    }

#define ROW_SQL(col)                                                          \
    "SELECT " col " FROM task_events WHERE task_id = ?1 AND seq = ?2"

/* The row (task, seq) has exactly these columns and exactly these payload
 * fields (no more, no fewer). NULL span/actor/phase/parent mean SQL NULL. */
static void check_row(sqlite3 *db, const char *task, int64_t seq,
                      const char *event_type, const char *span_id,
                      const char *parent_span_id, const char *actor,
                      const char *phase, const field *fields, size_t n)
{
    assert_int_equal(sql_int(db, ROW_SQL("count(*)"), task, seq, NULL), 1);
    assert_sql_text(db, ROW_SQL("event_type"), task, seq, NULL, event_type);
    assert_sql_text(db, ROW_SQL("span_id"), task, seq, NULL, span_id);
    assert_sql_text(db, ROW_SQL("parent_span_id"), task, seq, NULL,
                    parent_span_id);
    assert_sql_text(db, ROW_SQL("actor"), task, seq, NULL, actor);
    assert_sql_text(db, ROW_SQL("phase"), task, seq, NULL, phase);
    assert_int_equal(
        sql_int(db, ROW_SQL("json_valid(payload)"), task, seq, NULL), 1);
    assert_sql_text(db, ROW_SQL("json_type(payload)"), task, seq, NULL,
                    "object");
    int64_t nkeys = sql_int(db,
                            "SELECT count(*) FROM task_events, "
                            "json_each(task_events.payload) "
                            "WHERE task_id = ?1 AND seq = ?2",
                            task, seq, NULL);
    if ((size_t)nkeys != n) {
        char *p = sql_text(db, ROW_SQL("payload"), task, seq, NULL);
        print_error("%s seq %lld: payload %s has %lld keys, expected %zu\n",
                    task, (long long)seq, p, (long long)nkeys, n);
        free(p);
    }
    assert_int_equal(nkeys, n);
    for (size_t i = 0; i < n; i++) {
        char path[160];
        snprintf(path, sizeof path, "$.%s", fields[i].key);
        assert_sql_text(db, ROW_SQL("json_type(payload, ?3)"), task, seq, path,
                        fields[i].type);
        if (fields[i].value == NULL) {
            continue;
        }
        if (strcmp(fields[i].type, "real") == 0) {
            double got = sql_double(db, ROW_SQL("json_extract(payload, ?3)"),
                                    task, seq, path);
            assert_true(got == strtod(fields[i].value, NULL));
        } else {
            assert_sql_text(db, ROW_SQL("json_extract(payload, ?3)"), task,
                            seq, path, fields[i].value);
        }
    }
}

/* Keys that must not be in the payload of (task, seq). */
static void check_absent(sqlite3 *db, const char *task, int64_t seq,
                         const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[160];
        snprintf(path, sizeof path, "$.%s", keys[i]);
        assert_sql_text(db, ROW_SQL("json_type(payload, ?3)"), task, seq, path,
                        NULL);
    }
}

/* ---- span helpers -------------------------------------------------------- */

/* The span event with this seq, and the span holding it. */
static const taskspan_span_event *event_by_seq(const taskspan_spans *sp,
                                               int64_t seq,
                                               const taskspan_span **span)
{
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        for (size_t k = 0; k < s->n_events; k++) {
            if (s->events[k].seq == seq) {
                if (span != NULL) {
                    *span = s;
                }
                return &s->events[k];
            }
        }
    }
    return NULL;
}

static const taskspan_span *span_by_name(const taskspan_spans *sp,
                                         const char *name)
{
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static taskspan_code emit_simple(int64_t *seq, taskspan *ts, const char *task,
                                 const char *type)
{
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = task;
    ev.event_type = type;
    return taskspan_emit(seq, ts, &ev);
}

/* ========================================================================== */
/* Version and error text                                                     */
/* ========================================================================== */

static void test_version(void **state)
{
    (void)state;
    const char *v = taskspan_version();
    assert_non_null(v);
    assert_string_equal(v, TASKSPAN_VERSION_STRING);
    assert_int_equal(taskspan_version_num(), TASKSPAN_VERSION_NUM);
    /* The string and the number describe the same version. */
    unsigned maj = 99, min = 99, pat = 99;
    assert_int_equal(sscanf(v, "%u.%u.%u", &maj, &min, &pat), 3);
    assert_int_equal(maj, TASKSPAN_VERSION_MAJOR);
    assert_int_equal(min, TASKSPAN_VERSION_MINOR);
    assert_int_equal(pat, TASKSPAN_VERSION_PATCH);
    assert_int_equal(taskspan_version_num(),
                     (int)((maj << 16) | (min << 8) | pat));
}

static void test_strerror(void **state)
{
    (void)state;
    const char *texts[TASKSPAN_CODE_LAST];
    for (int c = 0; c < TASKSPAN_CODE_LAST; c++) {
        texts[c] = taskspan_strerror((taskspan_code)c);
        assert_non_null(texts[c]);
        assert_true(strlen(texts[c]) > 0);
        assert_string_not_equal(texts[c], "unknown error");
        for (int k = 0; k < c; k++) {
            assert_string_not_equal(texts[c], texts[k]);
        }
    }
    assert_string_equal(taskspan_strerror(TASKSPAN_CODE_LAST),
                        "unknown error");
    assert_string_equal(
        taskspan_strerror((taskspan_code)(TASKSPAN_CODE_LAST + 7)),
        "unknown error");
    assert_string_equal(taskspan_strerror((taskspan_code)-1), "unknown error");
    assert_string_equal(taskspan_strerror((taskspan_code)1000000),
                        "unknown error");
}

static void test_code_is_retryable(void **state)
{
    (void)state;
    /* The transient codes the header lists; every other code is permanent,
     * and so is a code this version does not know. */
    static const taskspan_code transient[] = {
        TASKSPAN_E_BUSY,  TASKSPAN_E_IO,        TASKSPAN_E_FULL,
        TASKSPAN_E_NOMEM, TASKSPAN_E_TRANSPORT, TASKSPAN_E_TIMEOUT};
    for (int c = 0; c < TASKSPAN_CODE_LAST; c++) {
        int want = 0;
        for (size_t k = 0; k < ARRAY_LEN(transient); k++) {
            want |= transient[k] == (taskspan_code)c;
        }
        if (taskspan_code_is_retryable((taskspan_code)c) != want) {
            print_error("code %d (%s): retryable should be %d\n", c,
                        taskspan_strerror((taskspan_code)c), want);
            fail();
        }
    }
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_OK), 0);
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_E_INVALID_ARG), 0);
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_E_CORRUPT), 0);
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_E_SCHEMA), 0);
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_E_READONLY), 0);
    assert_int_equal(taskspan_code_is_retryable(TASKSPAN_CODE_LAST), 0);
    assert_int_equal(taskspan_code_is_retryable((taskspan_code)-1), 0);
    assert_int_equal(taskspan_code_is_retryable((taskspan_code)999), 0);
}

/* ========================================================================== */
/* Opening                                                                    */
/* ========================================================================== */

static void test_open_options_path(void **state)
{
    (void)state;
    char *dir = new_tmpdir("open");
    char *db = path_join(dir, "mine.db");
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", db);

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    o.db_path = copy;
    o.traceparent = "";
    setenv("TASKSPAN_DB", "/nonexistent/never/used.db", 1);
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    unsetenv("TASKSPAN_DB");
    assert_non_null(ts);
    assert_true(file_exists(db));
    /* The path was copied: changing the caller's buffer changes nothing. */
    memset(copy, 'x', strlen(copy));
    assert_string_equal(taskspan_db_path(ts), db);
    int64_t seq = 0;
    assert_int_equal(emit_simple(&seq, ts, "t", "hello"), TASKSPAN_OK);
    assert_int_equal(seq, 1);
    taskspan_close(ts);
    assert_int_equal(count_task_rows(db, "t"), 1);

    /* NO_CREATE on an existing buffer opens it; the event is still there. */
    ts = open_path(db, TASKSPAN_OPEN_NO_CREATE);
    assert_int_equal(emit_simple(&seq, ts, "t", "again"), TASKSPAN_OK);
    assert_int_equal(seq, 2);
    taskspan_close(ts);

    /* SYNC_FULL and an explicit busy timeout are accepted and work. */
    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.sync_mode = TASKSPAN_SYNC_FULL;
    o.busy_timeout_ms = 250;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    assert_int_equal(emit_simple(&seq, ts, "t", "full"), TASKSPAN_OK);
    assert_int_equal(seq, 3);
    taskspan_close(ts);
    assert_int_equal(count_task_rows(db, "t"), 3);

    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_open_env_db(void **state)
{
    (void)state;
    char *dir = new_tmpdir("envdb");
    char *db = path_join(dir, "from-env.db");
    char *xdg = path_join(dir, "xdg");
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;

    clear_env();
    setenv("TASKSPAN_DB", db, 1);
    setenv("XDG_STATE_HOME", xdg, 1); /* TASKSPAN_DB wins over it */
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_OK);
    assert_non_null(ts);
    assert_string_equal(taskspan_db_path(ts), db);
    assert_int_equal(emit_simple(NULL, ts, "t", "x"), TASKSPAN_OK);
    taskspan_close(ts);
    clear_env();
    assert_true(file_exists(db));
    assert_false(file_exists(xdg));
    assert_int_equal(count_task_rows(db, "t"), 1);

    rm_rf(dir);
    free(xdg);
    free(db);
    free(dir);
}

static void test_open_xdg_default(void **state)
{
    (void)state;
    char *dir = new_tmpdir("xdg");
    char *xdg = path_join(dir, "deep/state"); /* neither exists yet */
    char *home = path_join(dir, "home");
    char *taskspan_dir = path_join(xdg, "taskspan");
    char *expected = path_join(taskspan_dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    struct stat sb;

    clear_env();
    setenv("XDG_STATE_HOME", xdg, 1);
    setenv("HOME", home, 1);
    mode_t old_umask = umask(022);
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    umask(old_umask);
    assert_non_null(ts);
    assert_string_equal(taskspan_db_path(ts), expected);
    assert_int_equal(emit_simple(NULL, ts, "t", "x"), TASKSPAN_OK);
    taskspan_close(ts);
    assert_true(file_exists(expected));
    assert_int_equal(stat(taskspan_dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_false(file_exists(home)); /* HOME was not used */
    assert_int_equal(count_task_rows(expected, "t"), 1);
    clear_env();
    setenv("HOME", g_home, 1);

    rm_rf(dir);
    free(expected);
    free(taskspan_dir);
    free(home);
    free(xdg);
    free(dir);
}

static void test_open_home_fallback(void **state)
{
    (void)state;
    char *dir = new_tmpdir("home");
    char *home = path_join(dir, "h");
    char *state_dir = path_join(home, ".local/state/taskspan");
    char *expected = path_join(state_dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    struct stat sb;

    mkdir_p(home);
    clear_env();
    setenv("HOME", home, 1);
    mode_t old_umask = umask(022);
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_OK);
    umask(old_umask);
    assert_string_equal(taskspan_db_path(ts), expected);
    assert_int_equal(emit_simple(NULL, ts, "t", "x"), TASKSPAN_OK);
    taskspan_close(ts);
    assert_true(file_exists(expected));
    assert_int_equal(stat(state_dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    /* XDG base directory spec: an empty XDG_STATE_HOME counts as unset. */
    setenv("XDG_STATE_HOME", "", 1);
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_OK);
    assert_string_equal(taskspan_db_path(ts), expected);
    taskspan_close(ts);

    /* XDG base directory spec: a relative XDG_STATE_HOME is ignored. */
    setenv("XDG_STATE_HOME", "relative/state", 1);
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_OK);
    assert_string_equal(taskspan_db_path(ts), expected);
    taskspan_close(ts);
    assert_false(file_exists("relative"));

    /* No path at all (no HOME, or a relative one): the open fails with
     * E_INVALID_ARG (docs/buffer.md) and *out is NULL. */
    clear_env();
    unsetenv("HOME");
    ts = (taskspan *)&sb; /* must be overwritten */
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_E_INVALID_ARG);
    assert_null(ts);
    assert_true(strlen(err) > 0);
    setenv("HOME", "relative-home", 1);
    ts = (taskspan *)&sb;
    assert_int_equal(taskspan_open(&ts, NULL, err), TASKSPAN_E_INVALID_ARG);
    assert_null(ts);
    assert_false(file_exists("relative-home"));

    /* NO_CREATE with the default path: NOT_FOUND, and the default
     * directories are not created either. */
    char *home2 = path_join(dir, "h2");
    char *state2 = path_join(home2, ".local");
    mkdir_p(home2);
    setenv("HOME", home2, 1);
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.flags = TASKSPAN_OPEN_NO_CREATE;
    ts = (taskspan *)&sb;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_E_NOT_FOUND);
    assert_null(ts);
    o.flags = TASKSPAN_OPEN_READONLY;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_E_NOT_FOUND);
    assert_false(file_exists(state2));
    free(state2);
    free(home2);
    setenv("HOME", g_home, 1);

    rm_rf(dir);
    free(expected);
    free(state_dir);
    free(home);
    free(dir);
}

static void test_open_no_create_missing(void **state)
{
    (void)state;
    char *dir = new_tmpdir("nocreate");
    char *db = path_join(dir, "missing.db");
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "untouched";
    taskspan *ts = (taskspan *)dir;

    o.db_path = db;
    o.flags = TASKSPAN_OPEN_NO_CREATE;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_E_NOT_FOUND);
    assert_null(ts);
    assert_true(strlen(err) > 0);
    assert_string_not_equal(err, "untouched");
    assert_false(file_exists(db));

    /* READONLY does not create either. */
    o.flags = TASKSPAN_OPEN_READONLY;
    ts = (taskspan *)dir;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_E_NOT_FOUND);
    assert_null(ts);
    assert_false(file_exists(db));

    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_open_readonly(void **state)
{
    (void)state;
    char *dir = new_tmpdir("ro");
    char *db = path_join(dir, "buffer.db");
    int64_t seq = 0;

    taskspan *w = open_path(db, 0);
    assert_int_equal(taskspan_emit_runner_spawn(&seq, w, "t", 1, "v", NULL),
                     TASKSPAN_OK);
    taskspan_close(w);

    taskspan *ro = open_path(db, TASKSPAN_OPEN_READONLY);
    taskspan_stats st;
    seq = -5;
    assert_int_equal(emit_simple(&seq, ro, "t", "x"), TASKSPAN_E_READONLY);
    assert_int_equal(
        taskspan_emit_phase_enter(&seq, ro, "t", "planning", NULL),
        TASKSPAN_E_READONLY);
    assert_int_equal(emit_simple(&seq, ro, "other", "x"), TASKSPAN_E_READONLY);
    assert_int_equal(taskspan_get_stats(&st, ro), TASKSPAN_OK);
    assert_int_equal(st.events_failed, 3);
    assert_int_equal(st.events_recorded, 0);
    assert_int_equal(st.last_error, TASKSPAN_E_READONLY);
    assert_true(strlen(taskspan_errmsg(ro)) > 0);
    /* Inspection still works. */
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, ro, "t"), TASKSPAN_OK);
    assert_int_equal(taskspan_spans_count(sp), 1);
    taskspan_spans_free(sp);
    taskspan_close(ro);

    assert_int_equal(count_task_rows(db, NULL), 1);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void expect_bad_options(const taskspan_options *o, const char *word)
{
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = (taskspan *)err;
    memset(err, 0, sizeof err);
    assert_int_equal(taskspan_open(&ts, o, err), TASKSPAN_E_INVALID_ARG);
    assert_null(ts);
    assert_true(strlen(err) > 0);
    assert_true(strlen(err) < TASKSPAN_ERRBUF_SIZE);
    assert_null(strchr(err, '\n'));
    if (strstr(err, word) == NULL) {
        print_error("message '%s' does not mention '%s'\n", err, word);
    }
    assert_non_null(strstr(err, word));
}

static void test_open_bad_options(void **state)
{
    (void)state;
    char *dir = new_tmpdir("badopt");
    char *db = path_join(dir, "buffer.db");
    taskspan_options o;

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.version = 0;
    expect_bad_options(&o, "version");

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.sync_mode = (taskspan_sync_mode)7;
    expect_bad_options(&o, "sync_mode");

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.busy_timeout_ms = -1;
    expect_bad_options(&o, "busy_timeout_ms");

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.flags = 0x80;
    expect_bad_options(&o, "flags");

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = "";
    expect_bad_options(&o, "db_path");

    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.traceparent = "00-not-a-traceparent";
    expect_bad_options(&o, "traceparent");

    /* A NULL out is an argument error too, reported through errbuf. */
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    o = (taskspan_options)TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    assert_int_equal(taskspan_open(NULL, &o, err), TASKSPAN_E_INVALID_ARG);
    assert_true(strlen(err) > 0);

    /* None of the failed opens created the buffer. */
    assert_false(file_exists(db));
    rm_rf(dir);
    free(db);
    free(dir);
}

static void expect_open_fails(const char *path, taskspan_code code)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = (taskspan *)err;
    o.db_path = path;
    o.traceparent = "";
    taskspan_code got = taskspan_open(&ts, &o, err);
    if (got != code) {
        print_error("open %s: %s (%s), expected %s\n", path,
                    taskspan_strerror(got), err, taskspan_strerror(code));
    }
    assert_int_equal(got, code);
    assert_null(ts);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
}

static void test_open_garbage_is_corrupt(void **state)
{
    (void)state;
    char *dir = new_tmpdir("garbage");
    char *small = path_join(dir, "small.db");
    char *junk = path_join(dir, "junk.db");
    static const char text[] = "not a database";
    unsigned char bytes[4096];
    unsigned x = 12345u;
    for (size_t i = 0; i < sizeof bytes; i++) {
        x = x * 1103515245u + 12345u;
        bytes[i] = (unsigned char)(x >> 16);
    }
    write_file(small, text, sizeof text - 1);
    write_file(junk, bytes, sizeof bytes);

    expect_open_fails(small, TASKSPAN_E_CORRUPT);
    expect_open_fails(junk, TASKSPAN_E_CORRUPT);

    /* The files that are not buffers are left exactly as they were. */
    unsigned char back[sizeof bytes + 1];
    FILE *f = fopen(junk, "rb");
    assert_non_null(f);
    assert_int_equal(fread(back, 1, sizeof back, f), sizeof bytes);
    fclose(f);
    assert_memory_equal(back, bytes, sizeof bytes);
    f = fopen(small, "rb");
    assert_non_null(f);
    assert_int_equal(fread(back, 1, sizeof back, f), sizeof text - 1);
    fclose(f);
    assert_memory_equal(back, text, sizeof text - 1);

    rm_rf(dir);
    free(junk);
    free(small);
    free(dir);
}

static void test_open_newer_schema(void **state)
{
    (void)state;
    char *dir = new_tmpdir("schema");
    char *db = path_join(dir, "future.db");
    sqlite3 *s = NULL;
    assert_int_equal(
        sqlite3_open_v2(db, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_exec(s,
                                  "CREATE TABLE x (a); "
                                  "PRAGMA user_version = 99;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(s);

    expect_open_fails(db, TASKSPAN_E_SCHEMA);

    /* The buffer was not touched: still version 99. */
    s = sql_open(db);
    assert_int_equal(sql_int(s, "PRAGMA user_version", NULL, 0, NULL), 99);
    sqlite3_close(s);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_open_explicit_dir_missing(void **state)
{
    (void)state;
    char *dir = new_tmpdir("nodir");
    char *db = path_join(dir, "no/such/dir/buffer.db");
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = (taskspan *)err;
    o.db_path = db;
    o.traceparent = "";
    assert_int_not_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    assert_null(ts);
    assert_true(strlen(err) > 0);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_close_null_and_db_path(void **state)
{
    fx *f = *state;
    taskspan_close(NULL);
    assert_non_null(taskspan_db_path(f->ts));
    assert_string_equal(taskspan_db_path(f->ts), f->db);
    /* Borrowed and stable: the same text on every call. */
    assert_ptr_equal(taskspan_db_path(f->ts), taskspan_db_path(f->ts));
}

/* ========================================================================== */
/* Emitting                                                                   */
/* ========================================================================== */

/* An emit follows the last event its connection appended without reading
 * the task's seq, as long as nothing else wrote the buffer since. Two
 * recorders on one buffer take turns on one task, in runs of 1 to 3, with
 * writes from outside (a plain SQLite connection), a gc and a new
 * incarnation in between: every seq is handed out once, in order, and each
 * event is the one its recorder sent. */
static void test_emit_seq_two_recorders(void **state)
{
    fx *f = *state;
    taskspan *ts[2] = {f->ts, open_path(f->db, 0)};
    sqlite3 *db = sql_open(f->db);
    taskspan_gc_report r;
    int64_t seq = 0, want = 0;
    char expect[4096] = "";
    size_t used = 0;

    for (int i = 0; i < 60; i++) {
        int who = (i / (1 + i % 3)) % 2;
        taskspan_event e = TASKSPAN_EVENT_INIT;
        e.task_id = "shared";
        e.event_type = i % 20 == 10 ? "runner_spawn" : "step";
        e.span_key = "main";
        taskspan_attr a = taskspan_attr_int("i", i);
        e.attrs = &a;
        e.n_attrs = 1;
        assert_int_equal(taskspan_emit(&seq, ts[who], &e), TASKSPAN_OK);
        assert_int_equal(seq, ++want);
        used += (size_t)snprintf(expect + used, sizeof expect - used, "%s%d",
                                 i > 0 ? "," : "", i);
        if (i % 7 == 3) {
            /* Another connection's commit: the task row's floor moved. */
            assert_int_equal(sqlite3_exec(db,
                                          "UPDATE tasks SET updated_ns = "
                                          "updated_ns WHERE task_id = "
                                          "'shared'",
                                          NULL, NULL, NULL),
                             SQLITE_OK);
        }
        if (i % 11 == 5) {
            /* A commit of this recorder's own connection, not an emit. */
            assert_int_equal(taskspan_gc(&r, ts[who], 86400), TASKSPAN_OK);
        }
    }
    assert_sql_text(db,
                    "SELECT group_concat(json_extract(payload, '$.i'), ',')"
                    " FROM (SELECT payload FROM task_events WHERE task_id ="
                    " ?1 ORDER BY seq)",
                    "shared", 0, NULL, expect);
    assert_int_equal(sql_int(db,
                             "SELECT count(*) FROM task_events WHERE "
                             "task_id = ?1 AND seq BETWEEN 1 AND 60",
                             "shared", 0, NULL),
                     60);
    sqlite3_close(db);
    taskspan_close(ts[1]);
}

static void test_emit_seq_per_task(void **state)
{
    fx *f = *state;
    int64_t seq = 0;
    for (int64_t i = 1; i <= 3; i++) {
        assert_int_equal(emit_simple(&seq, f->ts, "task-a", "step"),
                         TASKSPAN_OK);
        assert_int_equal(seq, i);
    }
    assert_int_equal(emit_simple(&seq, f->ts, "task-b", "step"), TASKSPAN_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(emit_simple(&seq, f->ts, "task-b", "step"), TASKSPAN_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(emit_simple(&seq, f->ts, "task-a", "step"), TASKSPAN_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(emit_simple(NULL, f->ts, "task-b", "step"), TASKSPAN_OK);

    sqlite3 *db = sql_open(f->db);
    assert_sql_text(db,
                    "SELECT group_concat(seq, ',') FROM (SELECT seq FROM "
                    "task_events WHERE task_id = ?1 ORDER BY seq)",
                    "task-a", 0, NULL, "1,2,3,4");
    assert_sql_text(db,
                    "SELECT group_concat(seq, ',') FROM (SELECT seq FROM "
                    "task_events WHERE task_id = ?1 ORDER BY seq)",
                    "task-b", 0, NULL, "1,2,3");
    sqlite3_close(db);

    /* seq continues across close and reopen. */
    taskspan_close(f->ts);
    f->ts = open_path(f->db, 0);
    assert_int_equal(emit_simple(&seq, f->ts, "task-a", "step"), TASKSPAN_OK);
    assert_int_equal(seq, 5);

    taskspan_stats st;
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_recorded, 1); /* since this open */
    assert_int_equal(st.events_failed, 0);
    assert_int_equal(st.last_error, TASKSPAN_OK);
    assert_string_equal(taskspan_errmsg(f->ts), "");
}

static void expect_invalid_event(fx *f, const taskspan_event *ev,
                                 const char *word)
{
    taskspan_stats before, after;
    char copy[TASKSPAN_ERRBUF_SIZE];
    int64_t rows = count_task_rows(f->db, NULL);

    assert_int_equal(taskspan_get_stats(&before, f->ts), TASKSPAN_OK);
    assert_int_equal(taskspan_emit(NULL, f->ts, ev), TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_get_stats(&after, f->ts), TASKSPAN_OK);
    assert_int_equal(after.events_failed, before.events_failed + 1);
    assert_int_equal(after.events_recorded, before.events_recorded);
    assert_int_equal(after.last_error, TASKSPAN_E_INVALID_ARG);

    const char *msg = taskspan_errmsg(f->ts);
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    if (word != NULL && strstr(msg, word) == NULL) {
        print_error("message '%s' does not name '%s'\n", msg, word);
    }
    if (word != NULL) {
        assert_non_null(strstr(msg, word));
    }
    taskspan_errmsg_copy(f->ts, copy, sizeof copy);
    assert_string_equal(copy, msg);

    /* Nothing was recorded. */
    assert_int_equal(count_task_rows(f->db, NULL), rows);
}

static void test_emit_validation(void **state)
{
    fx *f = *state;
    taskspan_event ev;
    char long_id[TASKSPAN_MAX_ID_LEN + 2];
    char long_name[TASKSPAN_MAX_NAME_LEN + 2];
    int64_t seq = 0;

    memset(long_id, 'i', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0'; /* MAX_ID_LEN + 1 bytes */
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0'; /* MAX_NAME_LEN + 1 bytes */

    assert_string_equal(taskspan_errmsg(f->ts), "");
    /* One good event first: the failed ones must not consume seqs. */
    assert_int_equal(emit_simple(&seq, f->ts, "v", "ok"), TASKSPAN_OK);
    assert_int_equal(seq, 1);

#define RESET(e)                                                              \
    do {                                                                      \
        e = (taskspan_event)TASKSPAN_EVENT_INIT;                              \
        e.task_id = "v";                                                      \
        e.event_type = "ok";                                                  \
    } while (0)

    RESET(ev);
    ev.task_id = NULL;
    expect_invalid_event(f, &ev, "task_id");
    RESET(ev);
    ev.task_id = "";
    expect_invalid_event(f, &ev, "task_id");
    RESET(ev);
    ev.task_id = long_id;
    expect_invalid_event(f, &ev, "task_id");

    RESET(ev);
    ev.event_type = NULL;
    expect_invalid_event(f, &ev, "event_type");
    RESET(ev);
    ev.event_type = "";
    expect_invalid_event(f, &ev, "event_type");
    static const char *const bad_types[] = {
        "has space", "slash/x", "semi;", "quote'", "tab\t", "caf\xc3\xa9"};
    for (size_t i = 0; i < ARRAY_LEN(bad_types); i++) {
        RESET(ev);
        ev.event_type = bad_types[i];
        expect_invalid_event(f, &ev, "event_type");
    }
    RESET(ev);
    ev.event_type = long_name;
    expect_invalid_event(f, &ev, "event_type");

    RESET(ev);
    ev.actor = long_name;
    expect_invalid_event(f, &ev, "actor");
    RESET(ev);
    ev.phase = long_name;
    expect_invalid_event(f, &ev, "phase");
    RESET(ev);
    ev.span_key = long_id;
    expect_invalid_event(f, &ev, "span_key");
    RESET(ev);
    ev.parent_span_key = long_id;
    expect_invalid_event(f, &ev, "parent_span_key");

    /* Event version. */
    RESET(ev);
    ev.version = 0;
    expect_invalid_event(f, &ev, "version");
    RESET(ev);
    ev.version = TASKSPAN_EVENT_VERSION + 1;
    expect_invalid_event(f, &ev, "version");

    /* Attributes. */
    RESET(ev);
    ev.attrs = NULL;
    ev.n_attrs = 2;
    expect_invalid_event(f, &ev, "attrs");

    taskspan_attr dup[] = {taskspan_attr_int("dupkey", 1),
                           taskspan_attr_str("other", "x"),
                           taskspan_attr_int("dupkey", 2)};
    RESET(ev);
    ev.attrs = dup;
    ev.n_attrs = ARRAY_LEN(dup);
    expect_invalid_event(f, &ev, "dupkey");

    taskspan_attr nan_attr[] = {taskspan_attr_double("ratio", NAN)};
    RESET(ev);
    ev.attrs = nan_attr;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "ratio");
    taskspan_attr inf_attr[] = {taskspan_attr_double("speed", -INFINITY)};
    RESET(ev);
    ev.attrs = inf_attr;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "speed");
    static const double nan_items[] = {1.0, NAN};
    taskspan_attr nan_arr[] = {taskspan_attr_array(
        "samples", TASKSPAN_ATTR_DOUBLE_ARRAY, nan_items, 2)};
    RESET(ev);
    ev.attrs = nan_arr;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "samples");

    taskspan_attr null_str[] = {taskspan_attr_str("label", NULL)};
    RESET(ev);
    ev.attrs = null_str;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "label");

    taskspan_attr bad_utf8[] = {taskspan_attr_str("blob", "ab\xff\xfe")};
    RESET(ev);
    ev.attrs = bad_utf8;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "blob");

    taskspan_attr long_key[] = {taskspan_attr_int(long_name, 1)};
    RESET(ev);
    ev.attrs = long_key;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "key");

    taskspan_attr empty_key[] = {taskspan_attr_int("", 1)};
    RESET(ev);
    ev.attrs = empty_key;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "key");

    taskspan_attr many[TASKSPAN_MAX_ATTRS + 1];
    char keys[TASKSPAN_MAX_ATTRS + 1][16];
    for (size_t i = 0; i < ARRAY_LEN(many); i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        many[i] = taskspan_attr_int(keys[i], (int64_t)i);
    }
    RESET(ev);
    ev.attrs = many;
    ev.n_attrs = TASKSPAN_MAX_ATTRS + 1;
    expect_invalid_event(f, &ev, "attributes");

    /* An oversized payload. */
    char *big = malloc(TASKSPAN_MAX_PAYLOAD_BYTES + 1);
    assert_non_null(big);
    memset(big, 'x', TASKSPAN_MAX_PAYLOAD_BYTES);
    big[TASKSPAN_MAX_PAYLOAD_BYTES] = '\0';
    taskspan_attr big_attr[] = {taskspan_attr_str("big", big)};
    RESET(ev);
    ev.attrs = big_attr;
    ev.n_attrs = 1;
    expect_invalid_event(f, &ev, "payload");
    free(big);

    /* A NULL event; a NULL recorder (nothing to count it on). */
    expect_invalid_event(f, NULL, NULL);
    RESET(ev);
    assert_int_equal(taskspan_emit(NULL, NULL, &ev), TASKSPAN_E_INVALID_ARG);

    /* The limits themselves are accepted. */
    RESET(ev);
    long_id[TASKSPAN_MAX_ID_LEN] = '\0';
    long_name[TASKSPAN_MAX_NAME_LEN] = '\0';
    ev.task_id = long_id;
    ev.event_type = long_name;
    ev.actor = long_name;
    ev.phase = long_name;
    ev.span_key = long_id;
    ev.parent_span_key = long_id;
    ev.attrs = many;
    ev.n_attrs = TASKSPAN_MAX_ATTRS;
    assert_int_equal(taskspan_emit(&seq, f->ts, &ev), TASKSPAN_OK);
    assert_int_equal(seq, 1);
    RESET(ev);
    ev.event_type = "Aa0_.-:"; /* every allowed character class */
    assert_int_equal(taskspan_emit(&seq, f->ts, &ev), TASKSPAN_OK);
    assert_int_equal(seq, 2); /* the failures consumed no seq */
#undef RESET

    /* The last failure's message survives later successes. */
    assert_true(strlen(taskspan_errmsg(f->ts)) > 0);
    taskspan_stats st;
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_recorded, 3);
    assert_true(st.events_failed >= 25);
    assert_int_equal(st.last_error, TASKSPAN_E_INVALID_ARG);
    assert_int_equal(count_task_rows(f->db, "v"), 2);
}

static void test_errmsg_and_stats_args(void **state)
{
    fx *f = *state;
    taskspan_stats st;
    char buf[64];

    assert_string_equal(taskspan_errmsg(f->ts), "");
    memset(buf, 'z', sizeof buf);
    taskspan_errmsg_copy(f->ts, buf, sizeof buf);
    assert_string_equal(buf, "");

    assert_int_equal(emit_simple(NULL, f->ts, "", "x"),
                     TASKSPAN_E_INVALID_ARG);
    const char *msg = taskspan_errmsg(f->ts);
    size_t len = strlen(msg);
    assert_true(len > 5);

    /* Truncation: always NUL-terminated, a prefix of the message. */
    memset(buf, 'z', sizeof buf);
    taskspan_errmsg_copy(f->ts, buf, 5);
    assert_int_equal(strlen(buf), 4);
    assert_memory_equal(buf, msg, 4);
    assert_int_equal(buf[5], 'z');
    memset(buf, 'z', sizeof buf);
    taskspan_errmsg_copy(f->ts, buf, 1);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'z');
    memset(buf, 'z', sizeof buf);
    taskspan_errmsg_copy(f->ts, buf, 0); /* writes nothing */
    assert_int_equal(buf[0], 'z');

    assert_int_equal(taskspan_get_stats(NULL, f->ts), TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_get_stats(&st, NULL), TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_failed, 1);
    assert_int_equal(st.events_recorded, 0);
    assert_int_equal(st.last_error, TASKSPAN_E_INVALID_ARG);

    /* A success does not clear the message nor last_error. */
    assert_int_equal(emit_simple(NULL, f->ts, "t", "x"), TASKSPAN_OK);
    assert_true(strlen(taskspan_errmsg(f->ts)) > 0);
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_recorded, 1);
    assert_int_equal(st.last_error, TASKSPAN_E_INVALID_ARG);
}

static void test_emit_typed_attrs_roundtrip(void **state)
{
    fx *f = *state;
    static const char *const strs[] = {"a", "b,c", "q\"uote", "caf\xc3\xa9",
                                       ""};
    static const int64_t ints[] = {INT64_MIN, -1, 0, 42, INT64_MAX};
    static const double dbls[] = {0.5, -2.0, 1e300, 3.0, -1.25e-300};
    static const int bools[] = {1, 0, 1};
    const char *text = "hello \"world\" \\ /\n\t caf\xc3\xa9 \xe2\x82\xac";
    taskspan_attr attrs[] = {
        taskspan_attr_str("s", text),
        taskspan_attr_str("empty", ""),
        taskspan_attr_int("imin", INT64_MIN),
        taskspan_attr_int("imax", INT64_MAX),
        taskspan_attr_int("izero", 0),
        taskspan_attr_double("d", -3.25),
        taskspan_attr_double("dint", 2.0),
        taskspan_attr_double("dbig", 1.7976931348623157e308),
        taskspan_attr_double("dsmall", 2.2250738585072014e-308),
        taskspan_attr_bool("bt", 7),
        taskspan_attr_bool("bf", 0),
        taskspan_attr_array("sa", TASKSPAN_ATTR_STRING_ARRAY, strs,
                            ARRAY_LEN(strs)),
        taskspan_attr_array("ia", TASKSPAN_ATTR_INT_ARRAY, ints,
                            ARRAY_LEN(ints)),
        taskspan_attr_array("da", TASKSPAN_ATTR_DOUBLE_ARRAY, dbls,
                            ARRAY_LEN(dbls)),
        taskspan_attr_array("ba", TASKSPAN_ATTR_BOOL_ARRAY, bools,
                            ARRAY_LEN(bools)),
    };
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    int64_t seq = 0;
    ev.task_id = "typed";
    ev.event_type = "custom.event";
    ev.actor = "tester";
    ev.span_key = "custom-span";
    ev.phase = "checking";
    ev.ts_ns = 1700000000123456789;
    ev.attrs = attrs;
    ev.n_attrs = ARRAY_LEN(attrs);
    assert_int_equal(taskspan_emit(&seq, f->ts, &ev), TASKSPAN_OK);
    assert_int_equal(seq, 1);

    /* The stored payload, as SQL sees it. */
    sqlite3 *db = sql_open(f->db);
    const field fields[] = {
        F_STR("s", text),
        F_STR("empty", ""),
        F_INT("imin", -9223372036854775808),
        F_INT("imax", 9223372036854775807),
        F_INT("izero", 0),
        F_REAL("d", -3.25),
        F_REAL("dint", 2.0),
        F_REAL("dbig", 1.7976931348623157e308),
        F_REAL("dsmall", 2.2250738585072014e-308),
        F_TRUE("bt"),
        F_FALSE("bf"),
        F_ARR("sa", "[\"a\",\"b,c\",\"q\\\"uote\",\"caf\xc3\xa9\",\"\"]"),
        F_ARR("ia", "[-9223372036854775808,-1,0,42,9223372036854775807]"),
        F_ARR("da", NULL),
        F_ARR("ba", "[true,false,true]"),
    };
    check_row(db, "typed", 1, "custom.event", "custom-span", NULL, "tester",
              "checking", fields, ARRAY_LEN(fields));
    assert_int_equal(sql_int(db, ROW_SQL("ts_ns"), "typed", 1, NULL),
                     1700000000123456789);
    /* Element types of the arrays. */
    static const struct {
        const char *path;
        const char *types;
    } elems[] = {
        {"$.sa", "text,text,text,text,text"},
        {"$.ia", "integer,integer,integer,integer,integer"},
        {"$.da", "real,real,real,real,real"},
        {"$.ba", "true,false,true"},
    };
    for (size_t i = 0; i < ARRAY_LEN(elems); i++) {
        assert_sql_text(db,
                        "SELECT group_concat(j.type, ',') FROM task_events, "
                        "json_each(task_events.payload, ?3) AS j "
                        "WHERE task_id = ?1 AND seq = ?2",
                        "typed", 1, elems[i].path, elems[i].types);
    }
    for (size_t i = 0; i < ARRAY_LEN(dbls); i++) {
        char path[32];
        snprintf(path, sizeof path, "$.da[%zu]", i);
        assert_true(sql_double(db, ROW_SQL("json_extract(payload, ?3)"),
                               "typed", 1, path) == dbls[i]);
    }
    sqlite3_close(db);

    /* The decoded attributes, through the span model. */
    taskspan_spans *sp = NULL;
    const taskspan_span *span = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "typed"), TASKSPAN_OK);
    const taskspan_span_event *e = event_by_seq(sp, 1, &span);
    assert_non_null(e);
    assert_string_equal(span->name, "custom-span");
    assert_string_equal(e->name, "custom.event");
    assert_int_equal(e->time_ns, 1700000000123456789);
    assert_string_equal(e->actor, "tester");
    assert_string_equal(e->phase, "checking");
    for (size_t i = 0; i < ARRAY_LEN(attrs); i++) {
        const taskspan_attr *want = &attrs[i];
        const taskspan_attr *got = attr_find(e->attrs, e->n_attrs, want->key);
        if (got == NULL) {
            print_error("attribute %s missing\n", want->key);
        }
        assert_non_null(got);
        assert_int_equal(got->type, want->type);
        switch (want->type) {
        case TASKSPAN_ATTR_STRING:
            assert_string_equal(got->value.s, want->value.s);
            break;
        case TASKSPAN_ATTR_INT:
            assert_true(got->value.i == want->value.i);
            break;
        case TASKSPAN_ATTR_DOUBLE:
            assert_true(got->value.d == want->value.d);
            break;
        case TASKSPAN_ATTR_BOOL:
            assert_int_equal(got->value.b, want->value.b);
            break;
        case TASKSPAN_ATTR_STRING_ARRAY:
            assert_int_equal(got->value.array.count, ARRAY_LEN(strs));
            for (size_t k = 0; k < ARRAY_LEN(strs); k++) {
                assert_string_equal(
                    ((const char *const *)got->value.array.items)[k], strs[k]);
            }
            break;
        case TASKSPAN_ATTR_INT_ARRAY:
            assert_int_equal(got->value.array.count, ARRAY_LEN(ints));
            for (size_t k = 0; k < ARRAY_LEN(ints); k++) {
                assert_true(((const int64_t *)got->value.array.items)[k] ==
                            ints[k]);
            }
            break;
        case TASKSPAN_ATTR_DOUBLE_ARRAY:
            assert_int_equal(got->value.array.count, ARRAY_LEN(dbls));
            for (size_t k = 0; k < ARRAY_LEN(dbls); k++) {
                assert_true(((const double *)got->value.array.items)[k] ==
                            dbls[k]);
            }
            break;
        case TASKSPAN_ATTR_BOOL_ARRAY:
            assert_int_equal(got->value.array.count, ARRAY_LEN(bools));
            for (size_t k = 0; k < ARRAY_LEN(bools); k++) {
                assert_int_equal(((const int *)got->value.array.items)[k],
                                 bools[k]);
            }
            break;
        }
    }
    /* The bool given as 7 is stored and read back as 1. */
    assert_int_equal(attr_find(e->attrs, e->n_attrs, "bt")->value.b, 1);
    taskspan_spans_free(sp);
}

static void test_emit_ts_ns(void **state)
{
    fx *f = *state;
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    int64_t seq = 0;
    ev.task_id = "times";
    ev.event_type = "explicit";
    ev.ts_ns = 1234567890123456789;
    assert_int_equal(taskspan_emit(&seq, f->ts, &ev), TASKSPAN_OK);

    int64_t before = now_ns();
    ev.event_type = "now";
    ev.ts_ns = 0;
    assert_int_equal(taskspan_emit(&seq, f->ts, &ev), TASKSPAN_OK);
    int64_t after = now_ns();

    sqlite3 *db = sql_open(f->db);
    assert_int_equal(sql_int(db, ROW_SQL("ts_ns"), "times", 1, NULL),
                     1234567890123456789);
    int64_t t = sql_int(db, ROW_SQL("ts_ns"), "times", 2, NULL);
    assert_true(t >= before && t <= after);
    assert_int_equal(sql_int(db,
                             "SELECT count(*) FROM task_events WHERE "
                             "NOT json_valid(payload)",
                             NULL, 0, NULL),
                     0);
    /* No attrs: an empty JSON object, not NULL or "". */
    assert_sql_text(db, ROW_SQL("payload"), "times", 2, NULL, "{}");
    sqlite3_close(db);

    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "times"), TASKSPAN_OK);
    assert_int_equal(event_by_seq(sp, 1, NULL)->time_ns, 1234567890123456789);
    assert_int_equal(event_by_seq(sp, 2, NULL)->time_ns, t);
    taskspan_spans_free(sp);
}

/* ========================================================================== */
/* Typed helpers                                                              */
/* ========================================================================== */

static void test_helpers_main_span(void **state)
{
    fx *f = *state;
    const char *T = "helpers-main";
    int64_t s = 0;
    static const char *const evidence[] = {"out/report.txt", "sha256:ab12"};
    sqlite3 *db = sql_open(f->db);

    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, T, 4242, "1.2.3", "starting"),
        TASKSPAN_OK);
    assert_int_equal(s, 1);
    {
        const field fl[] = {F_INT("runner_pid", 4242),
                            F_STR("runner_version", "1.2.3"),
                            F_STR("explanation", "starting")};
        check_row(db, T, s, "runner_spawn", "main", NULL, "runner", NULL, fl,
                  ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_phase_enter(&s, f->ts, T, "planning", "plan it"),
        TASKSPAN_OK);
    assert_int_equal(s, 2);
    {
        const field fl[] = {F_STR("explanation", "plan it")};
        check_row(db, T, s, "phase_enter", "main", NULL, "runner", "planning",
                  fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_phase_exit(&s, f->ts, T, "planning", "planned"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("explanation", "planned")};
        check_row(db, T, s, "phase_exit", "main", NULL, "runner", "planning",
                  fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_phase_progress(&s, f->ts, T, "executing", 3,
                                                  10, "3 of 10"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_INT("completed", 3), F_INT("total", 10),
                            F_STR("explanation", "3 of 10")};
        check_row(db, T, s, "phase_progress", "main", NULL, "runner",
                  "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_checkpoint_begin(&s, f->ts, T, "step-1",
                                                    "iteration_start", "wi_9",
                                                    "begin"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("step_id", "step-1"),
                            F_STR("checkpoint_type", "iteration_start"),
                            F_STR("work_item_id", "wi_9"),
                            F_STR("explanation", "begin")};
        check_row(db, T, s, "checkpoint_begin", "main", NULL,
                  "checkpoint_manager", "execution", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_checkpoint_commit(&s, f->ts, T, "ckpt-abc",
                                                     "iteration_start", 5,
                                                     evidence, 2, "commit"),
                     TASKSPAN_OK);
    {
        const field fl[] = {
            F_STR("checkpoint_id", "ckpt-abc"),
            F_STR("checkpoint_type", "iteration_start"),
            F_INT("sequence_number", 5),
            F_INT("evidence_count", 2),
            F_ARR("evidence", "[\"out/report.txt\",\"sha256:ab12\"]"),
            F_STR("explanation", "commit")};
        check_row(db, T, s, "checkpoint_commit", "main", NULL,
                  "checkpoint_manager", "execution", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_checkpoint_verified(&s, f->ts, T, "ckpt-abc",
                                          "iteration_start", 2, "verified"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("checkpoint_id", "ckpt-abc"),
                            F_STR("checkpoint_type", "iteration_start"),
                            F_TRUE("verified"), F_INT("evidence_count", 2),
                            F_STR("explanation", "verified")};
        check_row(db, T, s, "checkpoint_verified", "main", NULL,
                  "checkpoint_manager", "execution", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_checkpoint_invalid(
                         &s, f->ts, T, "ckpt-abc", "iteration_start",
                         "digest mismatch", "invalid"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("checkpoint_id", "ckpt-abc"),
                            F_STR("checkpoint_type", "iteration_start"),
                            F_FALSE("verified"),
                            F_STR("reason", "digest mismatch"),
                            F_STR("explanation", "invalid")};
        check_row(db, T, s, "checkpoint_invalid", "main", NULL,
                  "checkpoint_manager", "execution", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_gate_start(&s, f->ts, T, "doctor", 300, "gate"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("gate_name", "doctor"),
                            F_INT("timeout_seconds", 300),
                            F_STR("explanation", "gate")};
        check_row(db, T, s, "gate_start", "main", NULL, "gate_runner",
                  "verifying", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, T, "doctor",
                                               "passed", 1, 0, 12.5, "fine"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("gate_name", "doctor"),
                            F_STR("status", "passed"),
                            F_TRUE("passed"),
                            F_INT("exit_code", 0),
                            F_REAL("duration_seconds", 12.5),
                            F_STR("explanation", "fine")};
        check_row(db, T, s, "gate_result", "main", NULL, "gate_runner",
                  "verifying", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, T, "lint", "failed",
                                               0, 3, 1.0, NULL),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("gate_name", "lint"),
                            F_STR("status", "failed"), F_FALSE("passed"),
                            F_INT("exit_code", 3),
                            F_REAL("duration_seconds", 1.0)};
        check_row(db, T, s, "gate_result", "main", NULL, "gate_runner",
                  "verifying", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_gate_retry(&s, f->ts, T, "lint", 2, 3, "flaky", "again"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("gate_name", "lint"), F_INT("attempt", 2),
                            F_INT("max_attempts", 3), F_STR("reason", "flaky"),
                            F_STR("explanation", "again")};
        check_row(db, T, s, "gate_retry", "main", NULL, "gate_runner",
                  "verifying", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_work_item_dispatched(&s, f->ts, T, "wi_001",
                                                        "Write the parser", 0,
                                                        "dispatch"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("work_item_id", "wi_001"),
                            F_STR("title", "Write the parser"),
                            F_INT("index", 0),
                            F_STR("explanation", "dispatch")};
        check_row(db, T, s, "work_item_dispatched", "main", NULL, "runner",
                  "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_recovery_resumed_from_checkpoint(
                         &s, f->ts, T, "ckpt-abc", "iteration_start", 5,
                         "wi_003", "resume"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("checkpoint_id", "ckpt-abc"),
                            F_STR("checkpoint_type", "iteration_start"),
                            F_INT("sequence_number", 5),
                            F_STR("work_item_id", "wi_003"),
                            F_STR("explanation", "resume")};
        check_row(db, T, s, "recovery_resumed_from_checkpoint", "main", NULL,
                  "runner", "recovery", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_runner_exit(&s, f->ts, T, 4242, "done", 7, "finished"),
        TASKSPAN_OK);
    assert_int_equal(s, 15);
    {
        const field fl[] = {
            F_INT("runner_pid", 4242), F_STR("exit_reason", "done"),
            F_INT("iterations", 7), F_STR("explanation", "finished")};
        check_row(db, T, s, "runner_exit", "main", NULL, "runner", NULL, fl,
                  ARRAY_LEN(fl));
    }
    sqlite3_close(db);
}

static void test_helpers_work_and_recovery(void **state)
{
    fx *f = *state;
    const char *T = "helpers-work";
    int64_t s = 0;
    static const char *const files[] = {"src/a.c", "include/a.h"};
    static const char *const expired[] = {"wi_003", "wi_004"};
    sqlite3 *db = sql_open(f->db);

    assert_int_equal(
        taskspan_emit_work_item_start(&s, f->ts, T, "wi_001", "code", "start"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("work_item_id", "wi_001"),
                            F_STR("work_type", "code"),
                            F_STR("explanation", "start")};
        check_row(db, T, s, "work_item_start", "work_wi_001", "main", "worker",
                  "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_lease_acquired(&s, f->ts, T, "wi_001",
                                                  "worker-7", 60, "lease"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("work_item_id", "wi_001"),
                            F_STR("lease_holder", "worker-7"),
                            F_INT("lease_duration_seconds", 60),
                            F_STR("explanation", "lease")};
        check_row(db, T, s, "lease_acquired", "work_wi_001", "main",
                  "lease_manager", "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_lease_renewed(&s, f->ts, T, "wi_001",
                                                 "worker-7", 30, "renew"),
                     TASKSPAN_OK);
    {
        const field fl[] = {
            F_STR("work_item_id", "wi_001"), F_STR("lease_holder", "worker-7"),
            F_INT("extended_by_seconds", 30), F_STR("explanation", "renew")};
        check_row(db, T, s, "lease_renewed", "work_wi_001", "main",
                  "lease_manager", "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_lease_lost(&s, f->ts, T, "wi_001",
                                              "worker-7", "expired", "lost"),
                     TASKSPAN_OK);
    {
        const field fl[] = {
            F_STR("work_item_id", "wi_001"), F_STR("lease_holder", "worker-7"),
            F_STR("reason", "expired"), F_STR("explanation", "lost")};
        check_row(db, T, s, "lease_lost", "work_wi_001", "main",
                  "lease_manager", "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_lease_takeover(&s, f->ts, T, "wi_001",
                                                  "worker-7", "worker-8",
                                                  "takeover"),
                     TASKSPAN_OK);
    {
        const field fl[] = {F_STR("work_item_id", "wi_001"),
                            F_STR("previous_holder", "worker-7"),
                            F_STR("new_holder", "worker-8"),
                            F_STR("explanation", "takeover")};
        check_row(db, T, s, "lease_takeover", "work_wi_001", "main",
                  "lease_manager", "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_work_item_done(&s, f->ts, T, "wi_001",
                                                  "Write the parser", files, 2,
                                                  "done"),
                     TASKSPAN_OK);
    {
        const field fl[] = {
            F_STR("work_item_id", "wi_001"),
            F_STR("title", "Write the parser"),
            F_ARR("files_changed", "[\"src/a.c\",\"include/a.h\"]"),
            F_STR("explanation", "done")};
        check_row(db, T, s, "work_item_done", "work_wi_001", "main", "worker",
                  "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_work_item_failed(&s, f->ts, T, "wi_002", "Fix the tests",
                                       "compile error: x.c:3", "failed"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_STR("work_item_id", "wi_002"),
                            F_STR("title", "Fix the tests"),
                            F_STR("error", "compile error: x.c:3"),
                            F_STR("explanation", "failed")};
        check_row(db, T, s, "work_item_failed", "work_wi_002", "main",
                  "worker", "executing", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(
        taskspan_emit_recovery_detected(&s, f->ts, T, 2, expired, 2, "sweep"),
        TASKSPAN_OK);
    {
        const field fl[] = {F_INT("expired_count", 2),
                            F_ARR("work_item_ids", "[\"wi_003\",\"wi_004\"]"),
                            F_STR("explanation", "sweep")};
        check_row(db, T, s, "recovery_detected", "recovery_sweep", NULL,
                  "recovery_sweep", "recovery", fl, ARRAY_LEN(fl));
    }
    assert_int_equal(taskspan_emit_recovery_requeued(
                         &s, f->ts, T, "wi_003", "worker-7", 1, 3, "requeue"),
                     TASKSPAN_OK);
    assert_int_equal(s, 9);
    {
        const field fl[] = {F_STR("work_item_id", "wi_003"),
                            F_STR("previous_holder", "worker-7"),
                            F_INT("retry_count", 1), F_INT("max_retries", 3),
                            F_STR("explanation", "requeue")};
        check_row(db, T, s, "recovery_requeued", "recovery_sweep", NULL,
                  "recovery_sweep", "recovery", fl, ARRAY_LEN(fl));
    }
    sqlite3_close(db);
}

/* Every optional string left NULL: those keys are absent, numbers and
 * booleans are still there. */
static void test_helpers_null_strings_omitted(void **state)
{
    fx *f = *state;
    const char *T = "helpers-null";
    int64_t s = 0;
    sqlite3 *db = sql_open(f->db);
    static const char *const expl[] = {"explanation"};

#define OK(call) assert_int_equal((call), TASKSPAN_OK)
    OK(taskspan_emit_runner_spawn(&s, f->ts, T, -1, NULL, NULL));
    {
        const field fl[] = {F_INT("runner_pid", -1)};
        check_row(db, T, s, "runner_spawn", "main", NULL, "runner", NULL, fl,
                  1);
    }
    OK(taskspan_emit_phase_enter(&s, f->ts, T, "planning", NULL));
    check_row(db, T, s, "phase_enter", "main", NULL, "runner", "planning",
              NULL, 0);
    check_absent(db, T, s, expl, 1);
    OK(taskspan_emit_phase_exit(&s, f->ts, T, "planning", NULL));
    check_row(db, T, s, "phase_exit", "main", NULL, "runner", "planning", NULL,
              0);
    OK(taskspan_emit_phase_progress(&s, f->ts, T, "executing", 0, 0, NULL));
    {
        const field fl[] = {F_INT("completed", 0), F_INT("total", 0)};
        check_row(db, T, s, "phase_progress", "main", NULL, "runner",
                  "executing", fl, 2);
    }
    OK(taskspan_emit_checkpoint_begin(&s, f->ts, T, NULL, NULL, NULL, NULL));
    check_row(db, T, s, "checkpoint_begin", "main", NULL, "checkpoint_manager",
              "execution", NULL, 0);
    OK(taskspan_emit_checkpoint_commit(&s, f->ts, T, NULL, NULL, 9, NULL, 4,
                                       NULL));
    {
        const field fl[] = {F_INT("sequence_number", 9),
                            F_INT("evidence_count", 4)};
        check_row(db, T, s, "checkpoint_commit", "main", NULL,
                  "checkpoint_manager", "execution", fl, 2);
        static const char *const gone[] = {"evidence", "checkpoint_id",
                                           "checkpoint_type", "explanation"};
        check_absent(db, T, s, gone, ARRAY_LEN(gone));
    }
    OK(taskspan_emit_checkpoint_verified(&s, f->ts, T, NULL, NULL, 0, NULL));
    {
        const field fl[] = {F_TRUE("verified"), F_INT("evidence_count", 0)};
        check_row(db, T, s, "checkpoint_verified", "main", NULL,
                  "checkpoint_manager", "execution", fl, 2);
    }
    OK(taskspan_emit_checkpoint_invalid(&s, f->ts, T, NULL, NULL, NULL, NULL));
    {
        const field fl[] = {F_FALSE("verified")};
        check_row(db, T, s, "checkpoint_invalid", "main", NULL,
                  "checkpoint_manager", "execution", fl, 1);
    }
    OK(taskspan_emit_gate_start(&s, f->ts, T, NULL, 0, NULL));
    {
        const field fl[] = {F_INT("timeout_seconds", 0)};
        check_row(db, T, s, "gate_start", "main", NULL, "gate_runner",
                  "verifying", fl, 1);
    }
    OK(taskspan_emit_gate_result(&s, f->ts, T, NULL, NULL, 1, -9, 0.0, NULL));
    {
        const field fl[] = {F_TRUE("passed"), F_INT("exit_code", -9),
                            F_REAL("duration_seconds", 0.0)};
        check_row(db, T, s, "gate_result", "main", NULL, "gate_runner",
                  "verifying", fl, 3);
    }
    OK(taskspan_emit_gate_retry(&s, f->ts, T, NULL, 1, 2, NULL, NULL));
    {
        const field fl[] = {F_INT("attempt", 1), F_INT("max_attempts", 2)};
        check_row(db, T, s, "gate_retry", "main", NULL, "gate_runner",
                  "verifying", fl, 2);
    }
    OK(taskspan_emit_work_item_dispatched(&s, f->ts, T, NULL, NULL, 4, NULL));
    {
        const field fl[] = {F_INT("index", 4)};
        check_row(db, T, s, "work_item_dispatched", "main", NULL, "runner",
                  "executing", fl, 1);
    }
    OK(taskspan_emit_work_item_start(&s, f->ts, T, "w1", NULL, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1")};
        check_row(db, T, s, "work_item_start", "work_w1", "main", "worker",
                  "executing", fl, 1);
    }
    OK(taskspan_emit_lease_acquired(&s, f->ts, T, "w1", NULL, 5, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1"),
                            F_INT("lease_duration_seconds", 5)};
        check_row(db, T, s, "lease_acquired", "work_w1", "main",
                  "lease_manager", "executing", fl, 2);
    }
    OK(taskspan_emit_lease_renewed(&s, f->ts, T, "w1", NULL, 6, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1"),
                            F_INT("extended_by_seconds", 6)};
        check_row(db, T, s, "lease_renewed", "work_w1", "main",
                  "lease_manager", "executing", fl, 2);
    }
    OK(taskspan_emit_lease_lost(&s, f->ts, T, "w1", NULL, NULL, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1")};
        check_row(db, T, s, "lease_lost", "work_w1", "main", "lease_manager",
                  "executing", fl, 1);
    }
    OK(taskspan_emit_lease_takeover(&s, f->ts, T, "w1", NULL, NULL, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1")};
        check_row(db, T, s, "lease_takeover", "work_w1", "main",
                  "lease_manager", "executing", fl, 1);
    }
    OK(taskspan_emit_work_item_done(&s, f->ts, T, "w1", NULL, NULL, 0, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w1")};
        check_row(db, T, s, "work_item_done", "work_w1", "main", "worker",
                  "executing", fl, 1);
    }
    OK(taskspan_emit_work_item_failed(&s, f->ts, T, "w2", NULL, NULL, NULL));
    {
        const field fl[] = {F_STR("work_item_id", "w2")};
        check_row(db, T, s, "work_item_failed", "work_w2", "main", "worker",
                  "executing", fl, 1);
    }
    OK(taskspan_emit_recovery_detected(&s, f->ts, T, 0, NULL, 0, NULL));
    {
        const field fl[] = {F_INT("expired_count", 0)};
        check_row(db, T, s, "recovery_detected", "recovery_sweep", NULL,
                  "recovery_sweep", "recovery", fl, 1);
    }
    OK(taskspan_emit_recovery_requeued(&s, f->ts, T, NULL, NULL, 0, 0, NULL));
    {
        const field fl[] = {F_INT("retry_count", 0), F_INT("max_retries", 0)};
        check_row(db, T, s, "recovery_requeued", "recovery_sweep", NULL,
                  "recovery_sweep", "recovery", fl, 2);
    }
    OK(taskspan_emit_recovery_resumed_from_checkpoint(&s, f->ts, T, NULL, NULL,
                                                      3, NULL, NULL));
    {
        const field fl[] = {F_INT("sequence_number", 3)};
        check_row(db, T, s, "recovery_resumed_from_checkpoint", "main", NULL,
                  "runner", "recovery", fl, 1);
    }
    OK(taskspan_emit_runner_exit(&s, f->ts, T, 5, NULL, 0, NULL));
    {
        const field fl[] = {F_INT("runner_pid", 5), F_INT("iterations", 0)};
        check_row(db, T, s, "runner_exit", "main", NULL, "runner", NULL, fl,
                  2);
    }
    assert_int_equal(s, 23);
#undef OK
    sqlite3_close(db);
}

static void expect_helper_invalid(fx *f, taskspan_code got, const char *word)
{
    taskspan_stats st;
    assert_int_equal(got, TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.last_error, TASKSPAN_E_INVALID_ARG);
    const char *msg = taskspan_errmsg(f->ts);
    if (strstr(msg, word) == NULL) {
        print_error("message '%s' does not name '%s'\n", msg, word);
    }
    assert_non_null(strstr(msg, word));
}

static void test_helpers_require_work_item_id(void **state)
{
    fx *f = *state;
    const char *T = "helpers-req";
    const char *ids[] = {NULL, ""};
    taskspan_stats st;

    for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
        const char *w = ids[i];
        expect_helper_invalid(
            f, taskspan_emit_work_item_start(NULL, f->ts, T, w, "code", NULL),
            "work_item_id");
        expect_helper_invalid(f,
                              taskspan_emit_work_item_done(
                                  NULL, f->ts, T, w, NULL, NULL, 0, NULL),
                              "work_item_id");
        expect_helper_invalid(
            f,
            taskspan_emit_work_item_failed(NULL, f->ts, T, w, NULL, "e", NULL),
            "work_item_id");
        expect_helper_invalid(
            f, taskspan_emit_lease_acquired(NULL, f->ts, T, w, "h", 1, NULL),
            "work_item_id");
        expect_helper_invalid(
            f, taskspan_emit_lease_renewed(NULL, f->ts, T, w, "h", 1, NULL),
            "work_item_id");
        expect_helper_invalid(
            f, taskspan_emit_lease_lost(NULL, f->ts, T, w, "h", "r", NULL),
            "work_item_id");
        expect_helper_invalid(
            f, taskspan_emit_lease_takeover(NULL, f->ts, T, w, "a", "b", NULL),
            "work_item_id");
    }
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_failed, 14);
    assert_int_equal(st.events_recorded, 0);
    assert_int_equal(count_task_rows(f->db, NULL), 0);
}

static void test_helpers_require_phase(void **state)
{
    fx *f = *state;
    const char *T = "helpers-phase";
    const char *phases[] = {NULL, ""};
    taskspan_stats st;

    for (size_t i = 0; i < ARRAY_LEN(phases); i++) {
        const char *p = phases[i];
        expect_helper_invalid(
            f, taskspan_emit_phase_enter(NULL, f->ts, T, p, "x"), "phase");
        expect_helper_invalid(
            f, taskspan_emit_phase_exit(NULL, f->ts, T, p, "x"), "phase");
        expect_helper_invalid(
            f, taskspan_emit_phase_progress(NULL, f->ts, T, p, 1, 2, "x"),
            "phase");
    }
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_failed, 6);
    assert_int_equal(count_task_rows(f->db, NULL), 0);
    /* A helper's bad task id is the generic validation's error. */
    expect_helper_invalid(
        f, taskspan_emit_phase_enter(NULL, f->ts, "", "planning", NULL),
        "task_id");
    expect_helper_invalid(
        f, taskspan_emit_runner_spawn(NULL, f->ts, NULL, 1, NULL, NULL),
        "task_id");
}

static void test_helpers_null_recorder(void **state)
{
    (void)state;
    static const char *const arr[] = {"x"};
    const char *T = "t";
    const taskspan_code E = TASKSPAN_E_INVALID_ARG;
    int64_t s = -3;
    assert_int_equal(taskspan_emit_runner_spawn(&s, NULL, T, 1, "v", "e"), E);
    assert_int_equal(taskspan_emit_runner_exit(&s, NULL, T, 1, "d", 1, "e"),
                     E);
    assert_int_equal(taskspan_emit_phase_enter(&s, NULL, T, "p", "e"), E);
    assert_int_equal(taskspan_emit_phase_exit(&s, NULL, T, "p", "e"), E);
    assert_int_equal(taskspan_emit_phase_progress(&s, NULL, T, "p", 1, 2, "e"),
                     E);
    assert_int_equal(
        taskspan_emit_checkpoint_begin(&s, NULL, T, "a", "b", "c", "e"), E);
    assert_int_equal(
        taskspan_emit_checkpoint_commit(&s, NULL, T, "a", "b", 1, arr, 1, "e"),
        E);
    assert_int_equal(
        taskspan_emit_checkpoint_verified(&s, NULL, T, "a", "b", 1, "e"), E);
    assert_int_equal(
        taskspan_emit_checkpoint_invalid(&s, NULL, T, "a", "b", "r", "e"), E);
    assert_int_equal(taskspan_emit_gate_start(&s, NULL, T, "g", 1, "e"), E);
    assert_int_equal(
        taskspan_emit_gate_result(&s, NULL, T, "g", "s", 1, 0, 1.0, "e"), E);
    assert_int_equal(
        taskspan_emit_gate_retry(&s, NULL, T, "g", 1, 2, "r", "e"), E);
    assert_int_equal(
        taskspan_emit_work_item_dispatched(&s, NULL, T, "w", "t", 0, "e"), E);
    assert_int_equal(taskspan_emit_work_item_start(&s, NULL, T, "w", "t", "e"),
                     E);
    assert_int_equal(
        taskspan_emit_work_item_done(&s, NULL, T, "w", "t", arr, 1, "e"), E);
    assert_int_equal(
        taskspan_emit_work_item_failed(&s, NULL, T, "w", "t", "x", "e"), E);
    assert_int_equal(
        taskspan_emit_lease_acquired(&s, NULL, T, "w", "h", 1, "e"), E);
    assert_int_equal(
        taskspan_emit_lease_renewed(&s, NULL, T, "w", "h", 1, "e"), E);
    assert_int_equal(taskspan_emit_lease_lost(&s, NULL, T, "w", "h", "r", "e"),
                     E);
    assert_int_equal(
        taskspan_emit_lease_takeover(&s, NULL, T, "w", "a", "b", "e"), E);
    assert_int_equal(
        taskspan_emit_recovery_detected(&s, NULL, T, 1, arr, 1, "e"), E);
    assert_int_equal(
        taskspan_emit_recovery_requeued(&s, NULL, T, "w", "h", 1, 2, "e"), E);
    assert_int_equal(taskspan_emit_recovery_resumed_from_checkpoint(
                         &s, NULL, T, "c", "t", 1, "w", "e"),
                     E);
    assert_int_equal(s, -3);
}

/* ========================================================================== */
/* Spans through the API                                                      */
/* ========================================================================== */

static void test_task_spans_access(void **state)
{
    fx *f = *state;
    const char *T = "spans-api";
    taskspan_spans *sp = (taskspan_spans *)f;
    int64_t s1 = 0, s2 = 0, s3 = 0;

    /* Unknown task. */
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "nobody"),
                     TASKSPAN_E_NOT_FOUND);
    assert_null(sp);
    assert_true(strlen(taskspan_errmsg(f->ts)) > 0);
    /* Bad arguments. */
    assert_int_equal(taskspan_task_spans(NULL, f->ts, T),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_spans(&sp, NULL, T),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_spans(&sp, f->ts, NULL),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_spans(&sp, f->ts, ""),
                     TASKSPAN_E_INVALID_ARG);
    /* Reading is not an emit: no emit failure was counted. */
    taskspan_stats st;
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_int_equal(st.events_failed, 0);

    assert_int_equal(taskspan_emit_runner_spawn(&s1, f->ts, T, 1, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(&s2, f->ts, T, "a", NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_phase_enter(&s3, f->ts, T, "executing", NULL),
        TASKSPAN_OK);
    /* Another task's events are not part of this one. */
    assert_int_equal(emit_simple(NULL, f->ts, "other", "noise"), TASKSPAN_OK);

    assert_int_equal(taskspan_task_spans(&sp, f->ts, T), TASKSPAN_OK);
    assert_non_null(sp);
    assert_int_equal(taskspan_spans_count(sp), 2);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *w = taskspan_spans_get(sp, 1);
    assert_non_null(m);
    assert_non_null(w);
    assert_null(taskspan_spans_get(sp, 2));
    assert_null(taskspan_spans_get(sp, 1000));
    assert_null(taskspan_spans_get(sp, (size_t)-1));
    assert_string_equal(m->name, "main");
    assert_string_equal(w->name, "work_a");
    assert_int_equal(m->n_events, 2);
    assert_int_equal(m->events[0].seq, s1);
    assert_int_equal(m->events[1].seq, s3);
    assert_int_equal(w->n_events, 1);
    assert_int_equal(w->events[0].seq, s2);
    assert_int_equal(w->parent_index, 0);
    assert_int_equal(w->has_parent, 1);
    assert_memory_equal(w->parent_span_id, m->span_id, 8);
    assert_int_equal(m->has_parent, 0);
    assert_int_equal(m->parent_index, NO_INDEX);
    static const uint8_t zero[8] = {0};
    assert_memory_equal(m->parent_span_id, zero, 8);
    assert_int_equal(m->is_open, 1);
    assert_int_equal(m->end_ns, 0);
    assert_string_equal(m->status_message, "");
    /* The span attributes name the task and the span key. */
    const taskspan_attr *a = attr_find(m->attrs, m->n_attrs,
                                       "taskspan.task_id");
    assert_non_null(a);
    assert_string_equal(a->value.s, T);
    a = attr_find(w->attrs, w->n_attrs, "taskspan.span_key");
    assert_non_null(a);
    assert_string_equal(a->value.s, "work_a");
    a = attr_find(w->attrs, w->n_attrs, "taskspan.incarnation");
    assert_non_null(a);
    assert_int_equal(a->type, TASKSPAN_ATTR_INT);
    assert_int_equal(a->value.i, 1);
    taskspan_spans_free(sp);
    taskspan_spans_free(NULL);
}

static void assert_same_spans(const taskspan_spans *a, const taskspan_spans *b)
{
    assert_int_equal(taskspan_spans_count(a), taskspan_spans_count(b));
    for (size_t i = 0; i < taskspan_spans_count(a); i++) {
        const taskspan_span *x = taskspan_spans_get(a, i);
        const taskspan_span *y = taskspan_spans_get(b, i);
        assert_string_equal(x->name, y->name);
        assert_memory_equal(x->trace_id, y->trace_id, 16);
        assert_memory_equal(x->span_id, y->span_id, 8);
        assert_memory_equal(x->parent_span_id, y->parent_span_id, 8);
        assert_int_equal(x->has_parent, y->has_parent);
        assert_int_equal(x->parent_index, y->parent_index);
        assert_int_equal(x->start_ns, y->start_ns);
        assert_int_equal(x->end_ns, y->end_ns);
        assert_int_equal(x->status, y->status);
        assert_int_equal(x->n_events, y->n_events);
        assert_int_equal(x->n_links, y->n_links);
        for (size_t k = 0; k < x->n_links; k++) {
            assert_memory_equal(x->links[k].span_id, y->links[k].span_id, 8);
        }
    }
}

static void record_story(taskspan *ts, const char *T)
{
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, T, 1, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(NULL, ts, T, "a", NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_done(NULL, ts, T, "a", NULL, NULL, 0, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(NULL, ts, T, "a", NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, T, 2, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_recovery_detected(NULL, ts, T, 1, NULL, 0, NULL),
        TASKSPAN_OK);
}

static void test_span_ids_stable(void **state)
{
    fx *f = *state;
    const char *T = "stable";
    taskspan_spans *a = NULL, *b = NULL, *c = NULL;

    record_story(f->ts, T);
    assert_int_equal(taskspan_task_spans(&a, f->ts, T), TASKSPAN_OK);
    assert_int_equal(taskspan_task_spans(&b, f->ts, T), TASKSPAN_OK);
    assert_same_spans(a, b);
    taskspan_close(f->ts);
    f->ts = open_path(f->db, TASKSPAN_OPEN_READONLY);
    assert_int_equal(taskspan_task_spans(&c, f->ts, T), TASKSPAN_OK);
    assert_same_spans(a, c);

    /* All span ids in the result are distinct and not zero, and the trace
     * id is the task's derived one. */
    char want[33], got[33];
    assert_int_equal(taskspan_task_trace_id_hex(want, T), TASKSPAN_OK);
    static const uint8_t zero[8] = {0};
    size_t n = taskspan_spans_count(a);
    assert_true(n >= 4);
    for (size_t i = 0; i < n; i++) {
        const taskspan_span *x = taskspan_spans_get(a, i);
        to_hex(got, x->trace_id, 16);
        assert_string_equal(got, want);
        assert_memory_not_equal(x->span_id, zero, 8);
        for (size_t k = 0; k < i; k++) {
            assert_memory_not_equal(x->span_id,
                                    taskspan_spans_get(a, k)->span_id, 8);
        }
    }
    taskspan_spans_free(a);
    taskspan_spans_free(b);
    taskspan_spans_free(c);
}

/* ========================================================================== */
/* Trace context                                                              */
/* ========================================================================== */

static void test_traceparent_parse_format(void **state)
{
    (void)state;
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    static const uint8_t want_tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
                                         0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d,
                                         0x0e, 0x0e, 0x47, 0x36};
    static const uint8_t want_sid[8] = {0x00, 0xf0, 0x67, 0xaa,
                                        0x0b, 0xa9, 0x02, 0xb7};
    uint8_t tid[16], sid[8], flags = 0;
    char out[TASKSPAN_TRACEPARENT_LEN + 1];

    assert_int_equal(strlen(tp), TASKSPAN_TRACEPARENT_LEN);
    assert_int_equal(taskspan_traceparent_parse(tid, sid, &flags, tp),
                     TASKSPAN_OK);
    assert_memory_equal(tid, want_tid, 16);
    assert_memory_equal(sid, want_sid, 8);
    assert_int_equal(flags, 1);
    assert_int_equal(taskspan_traceparent_parse(tid, sid, NULL, tp),
                     TASKSPAN_OK);
    memset(out, 'X', sizeof out);
    assert_int_equal(taskspan_traceparent_format(out, tid, sid, flags),
                     TASKSPAN_OK);
    assert_string_equal(out, tp);

    /* Round trip of arbitrary ids and flags. */
    for (unsigned r = 1; r < 40; r++) {
        uint8_t t2[16], s2[8], t3[16], s3[8], f3 = 0;
        for (size_t i = 0; i < 16; i++) {
            t2[i] = (uint8_t)(r * 37u + i * 101u);
        }
        for (size_t i = 0; i < 8; i++) {
            s2[i] = (uint8_t)(r * 53u + i * 17u + 1u);
        }
        uint8_t f2 = (uint8_t)(r * 7u);
        assert_int_equal(taskspan_traceparent_format(out, t2, s2, f2),
                         TASKSPAN_OK);
        assert_int_equal(strlen(out), TASKSPAN_TRACEPARENT_LEN);
        assert_true(out[0] == '0' && out[1] == '0' && out[2] == '-');
        assert_true(is_lower_hex(out + 3, 32) && is_lower_hex(out + 36, 16) &&
                    is_lower_hex(out + 53, 2));
        assert_int_equal(taskspan_traceparent_parse(t3, s3, &f3, out),
                         TASKSPAN_OK);
        assert_memory_equal(t3, t2, 16);
        assert_memory_equal(s3, s2, 8);
        assert_int_equal(f3, f2);
    }

    /* Invalid inputs. */
    static const char *const bad[] = {
        "",
        "00",
        /* uppercase hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* all-zero ids */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* version ff */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* wrong lengths */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
        /* version 00 with more fields */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        /* a future version's extra fields must start with '-' */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01xx",
        /* wrong separators and non-hex */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (taskspan_traceparent_parse(tid, sid, &flags, bad[i]) !=
            TASKSPAN_E_INVALID_ARG) {
            print_error("accepted invalid traceparent '%s'\n", bad[i]);
            fail();
        }
    }
    assert_int_equal(taskspan_traceparent_parse(tid, sid, &flags, NULL),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_parse(NULL, sid, &flags, tp),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_parse(tid, NULL, &flags, tp),
                     TASKSPAN_E_INVALID_ARG);

    /* Future versions: more fields after a '-' are accepted, ids read. */
    static const char *const future[] = {
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
    };
    for (size_t i = 0; i < ARRAY_LEN(future); i++) {
        memset(tid, 0, sizeof tid);
        memset(sid, 0, sizeof sid);
        if (taskspan_traceparent_parse(tid, sid, &flags, future[i]) !=
            TASKSPAN_OK) {
            print_error("rejected valid traceparent '%s'\n", future[i]);
            fail();
        }
        assert_memory_equal(tid, want_tid, 16);
        assert_memory_equal(sid, want_sid, 8);
        assert_int_equal(flags, 1);
    }

    /* format rejects NULL and all-zero ids. */
    static const uint8_t z16[16] = {0}, z8[8] = {0};
    assert_int_equal(taskspan_traceparent_format(out, z16, want_sid, 1),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_format(out, want_tid, z8, 1),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_format(NULL, want_tid, want_sid, 1),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_format(out, NULL, want_sid, 1),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_traceparent_format(out, want_tid, NULL, 1),
                     TASKSPAN_E_INVALID_ARG);
}

static void test_task_trace_id_hex(void **state)
{
    (void)state;
    char a[33], b[33], c[33];
    memset(a, 'X', sizeof a);
    assert_int_equal(taskspan_task_trace_id_hex(a, "task-abc-123"),
                     TASKSPAN_OK);
    assert_int_equal(strlen(a), 32);
    assert_true(is_lower_hex(a, 32));
    assert_string_not_equal(a, "00000000000000000000000000000000");
    assert_int_equal(taskspan_task_trace_id_hex(b, "task-abc-123"),
                     TASKSPAN_OK);
    assert_string_equal(a, b);
    assert_int_equal(taskspan_task_trace_id_hex(c, "task-abc-124"),
                     TASKSPAN_OK);
    assert_string_not_equal(a, c);
    assert_int_equal(taskspan_task_trace_id_hex(c, NULL),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_trace_id_hex(c, ""),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_trace_id_hex(NULL, "x"),
                     TASKSPAN_E_INVALID_ARG);
    /* It is a valid W3C trace id: it formats into a traceparent. */
    uint8_t tid[16], sid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < 16; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(a + 2 * i, "%2x", &v), 1);
        tid[i] = (uint8_t)v;
    }
    char tp[TASKSPAN_TRACEPARENT_LEN + 1];
    assert_int_equal(taskspan_traceparent_format(tp, tid, sid, 0),
                     TASKSPAN_OK);
    assert_memory_equal(tp + 3, a, 32);
}

static void check_joined_trace(taskspan *ts, const char *T,
                               const uint8_t tid[16], const uint8_t sid[8])
{
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, ts, T), TASKSPAN_OK);
    assert_true(taskspan_spans_count(sp) >= 3);
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        assert_memory_equal(taskspan_spans_get(sp, i)->trace_id, tid, 16);
    }
    const taskspan_span *m = span_by_name(sp, "main");
    const taskspan_span *w = span_by_name(sp, "work_w");
    const taskspan_span *r = span_by_name(sp, "recovery_sweep");
    assert_non_null(m);
    assert_non_null(w);
    assert_non_null(r);
    assert_int_equal(m->has_parent, 1);
    assert_int_equal(m->parent_index, NO_INDEX);
    assert_memory_equal(m->parent_span_id, sid, 8);
    /* Other root spans join the same parent; children keep their own. */
    assert_int_equal(r->has_parent, 1);
    assert_int_equal(r->parent_index, NO_INDEX);
    assert_memory_equal(r->parent_span_id, sid, 8);
    assert_int_equal(w->has_parent, 1);
    assert_memory_equal(w->parent_span_id, m->span_id, 8);
    assert_ptr_equal(taskspan_spans_get(sp, w->parent_index), m);
    /* A span id derived in the joined trace is not the parent's id. */
    assert_memory_not_equal(m->span_id, sid, 8);
    taskspan_spans_free(sp);
}

static void record_three_spans(taskspan *ts, const char *T)
{
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, T, 1, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(NULL, ts, T, "w", NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_recovery_detected(NULL, ts, T, 3, NULL, 0, NULL),
        TASKSPAN_OK);
}

static void test_traceparent_join(void **state)
{
    fx *f = *state;
    const char *env_tp =
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const char *opt_tp =
        "00-11111111111111112222222222222222-3333333333333333-00";
    uint8_t env_tid[16], env_sid[8], opt_tid[16], opt_sid[8];
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;

    assert_int_equal(
        taskspan_traceparent_parse(env_tid, env_sid, NULL, env_tp),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_traceparent_parse(opt_tid, opt_sid, NULL, opt_tp),
        TASKSPAN_OK);

    /* A task recorded before, outside any trace. */
    record_three_spans(f->ts, "old-task");

    /* TRACEPARENT from the environment. */
    setenv("TRACEPARENT", env_tp, 1);
    o.db_path = f->db;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    record_three_spans(ts, "env-task");
    check_joined_trace(ts, "env-task", env_tid, env_sid);
    /* A task this recorder did not create keeps its own trace. */
    assert_int_equal(
        taskspan_emit_phase_enter(NULL, ts, "old-task", "executing", NULL),
        TASKSPAN_OK);
    {
        taskspan_spans *sp = NULL;
        char want[33], got[33];
        assert_int_equal(taskspan_task_trace_id_hex(want, "old-task"),
                         TASKSPAN_OK);
        assert_int_equal(taskspan_task_spans(&sp, ts, "old-task"),
                         TASKSPAN_OK);
        const taskspan_span *m = span_by_name(sp, "main");
        to_hex(got, m->trace_id, 16);
        assert_string_equal(got, want);
        assert_int_equal(m->has_parent, 0);
        taskspan_spans_free(sp);
    }
    taskspan_close(ts);

    /* The option wins over the environment. */
    o.traceparent = opt_tp;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    record_three_spans(ts, "opt-task");
    check_joined_trace(ts, "opt-task", opt_tid, opt_sid);
    taskspan_close(ts);

    /* The joined trace is stored with the task: it survives a reopen by a
     * recorder without any trace context. */
    unsetenv("TRACEPARENT");
    ts = open_path(f->db, 0);
    check_joined_trace(ts, "env-task", env_tid, env_sid);
    check_joined_trace(ts, "opt-task", opt_tid, opt_sid);
    taskspan_close(ts);

    /* "" disables the environment variable. */
    setenv("TRACEPARENT", env_tp, 1);
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    record_three_spans(ts, "no-trace-task");
    {
        taskspan_spans *sp = NULL;
        char want[33], got[33];
        assert_int_equal(taskspan_task_trace_id_hex(want, "no-trace-task"),
                         TASKSPAN_OK);
        assert_int_equal(taskspan_task_spans(&sp, ts, "no-trace-task"),
                         TASKSPAN_OK);
        const taskspan_span *m = span_by_name(sp, "main");
        to_hex(got, m->trace_id, 16);
        assert_string_equal(got, want);
        assert_int_equal(m->has_parent, 0);
        taskspan_spans_free(sp);
    }
    taskspan_close(ts);
    unsetenv("TRACEPARENT");
}

static void test_traceparent_env_invalid_ignored(void **state)
{
    fx *f = *state;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;
    static const char *const bad_env[] = {
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    o.db_path = f->db;
    for (size_t i = 0; i < ARRAY_LEN(bad_env); i++) {
        char task[32], want[33], got[33];
        snprintf(task, sizeof task, "ignored-%zu", i);
        setenv("TRACEPARENT", bad_env[i], 1);
        assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
        assert_non_null(ts);
        assert_int_equal(
            taskspan_emit_runner_spawn(NULL, ts, task, 1, NULL, NULL),
            TASKSPAN_OK);
        taskspan_spans *sp = NULL;
        assert_int_equal(taskspan_task_spans(&sp, ts, task), TASKSPAN_OK);
        const taskspan_span *m = taskspan_spans_get(sp, 0);
        assert_int_equal(m->has_parent, 0);
        assert_int_equal(taskspan_task_trace_id_hex(want, task), TASKSPAN_OK);
        to_hex(got, m->trace_id, 16);
        assert_string_equal(got, want);
        taskspan_spans_free(sp);
        taskspan_close(ts);
    }
    unsetenv("TRACEPARENT");
    /* The same text given explicitly is an error. */
    o.traceparent = bad_env[0];
    ts = (taskspan *)err;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_E_INVALID_ARG);
    assert_null(ts);
    assert_non_null(strstr(err, "traceparent"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_code_is_retryable),
        cmocka_unit_test(test_open_options_path),
        cmocka_unit_test(test_open_env_db),
        cmocka_unit_test(test_open_xdg_default),
        cmocka_unit_test(test_open_home_fallback),
        cmocka_unit_test(test_open_no_create_missing),
        cmocka_unit_test(test_open_readonly),
        cmocka_unit_test(test_open_bad_options),
        cmocka_unit_test(test_open_garbage_is_corrupt),
        cmocka_unit_test(test_open_newer_schema),
        cmocka_unit_test(test_open_explicit_dir_missing),
        cmocka_unit_test_setup_teardown(test_close_null_and_db_path, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_emit_seq_two_recorders, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_emit_seq_per_task, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_emit_validation, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_errmsg_and_stats_args, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_emit_typed_attrs_roundtrip,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_emit_ts_ns, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_helpers_main_span, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_helpers_work_and_recovery,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_helpers_null_strings_omitted,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_helpers_require_work_item_id,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_helpers_require_phase, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_helpers_null_recorder),
        cmocka_unit_test_setup_teardown(test_task_spans_access, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_span_ids_stable, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_traceparent_parse_format),
        cmocka_unit_test(test_task_trace_id_hex),
        cmocka_unit_test_setup_teardown(test_traceparent_join, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_traceparent_env_invalid_ignored,
                                        fx_setup, fx_teardown),
    };
    /* Start from a known environment: no trace context, no buffer path
     * override, and a HOME that is scratch space, never the real one. */
    clear_env();
    g_home = new_tmpdir("api-home");
    if (g_home == NULL) {
        return 1;
    }
    setenv("HOME", g_home, 1);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(g_home);
    free(g_home);
    return rc;
}
