/*
 * test_bounded.c -- a bounded buffer: the size cap, a full disk (a real
 * tmpfs when run as root, RLIMIT_FSIZE always), a read-only file system,
 * and damaged buffer files (a destroyed header, a truncated file, a corrupt
 * page), through taskspan.h only.
 *
 * Every case checks the documented code and message, that the recorder
 * keeps working once the cause is gone, and that what was stored before is
 * all there: PRAGMA integrity_check, and every task's seq runs 1..last_seq
 * without a gap.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/test_util.h"

/* Bounds every emit loop: far more than any case needs to fill up. */
#define MAX_EMITS 5000
#define PAYLOAD_BYTES 2000

/* ---- helpers -------------------------------------------------------------- */

static taskspan_code open_opts(taskspan **ts, const char *db, unsigned flags,
                               int64_t max_bytes, char *err)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.traceparent = "";
    o.flags = flags;
    o.max_bytes = max_bytes;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    return taskspan_open(ts, &o, err);
}

/* One event of task with a payload of PAYLOAD_BYTES. */
static taskspan_code emit_big(taskspan *ts, const char *task)
{
    static char text[PAYLOAD_BYTES + 1];
    if (text[0] == '\0') {
        memset(text, 'p', PAYLOAD_BYTES);
    }
    taskspan_attr a = taskspan_attr_str("text", text);
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = task;
    ev.event_type = "filler";
    ev.attrs = &a;
    ev.n_attrs = 1;
    return taskspan_emit(NULL, ts, &ev);
}

/* Emit until the first failure (at most MAX_EMITS); returns its code and
 * the number of events recorded before it in *n. */
static taskspan_code fill(taskspan *ts, const char *task, int *n)
{
    taskspan_code rc = TASKSPAN_OK;
    *n = 0;
    while (*n < MAX_EMITS && (rc = emit_big(ts, task)) == TASKSPAN_OK) {
        (*n)++;
    }
    return rc;
}

/* The buffer at path is sound: integrity_check says ok, and each task's
 * events are seq 1..last_seq with no gap. Returns the number of events. */
static int64_t check_intact(const char *path)
{
    sqlite3 *db = sql_open(path);
    sqlite3_stmt *st = sql_prep(db, "PRAGMA integrity_check", NULL, 0, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sql_int(db,
                             "SELECT count(*) FROM tasks t WHERE last_seq > "
                             "(SELECT count(*) FROM task_events e WHERE "
                             "e.task_id = t.task_id) OR "
                             "(SELECT count(*) FROM task_events e WHERE "
                             "e.task_id = t.task_id) != "
                             "(SELECT max(seq) FROM task_events e WHERE "
                             "e.task_id = t.task_id)",
                             NULL, 0, NULL),
                     0);
    int64_t n = sql_int(db, "SELECT count(*) FROM task_events", NULL, 0, NULL);
    sqlite3_close(db);
    return n;
}

static int64_t count_events(const char *path, const char *task)
{
    sqlite3 *db = sql_open(path);
    int64_t n = sql_int(db,
                        "SELECT count(*) FROM task_events WHERE task_id = ?1",
                        task, 0, NULL);
    sqlite3_close(db);
    return n;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_at(const char *path, long offset, const void *data, size_t n)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A closed buffer at path with tasks "a" and "b", n events each. */
static void make_buffer(const char *path, int n)
{
    taskspan *ts = NULL;
    char err[TASKSPAN_ERRBUF_SIZE];
    assert_int_equal(open_opts(&ts, path, 0, 0, err), TASKSPAN_OK);
    for (int i = 0; i < n; i++) {
        assert_int_equal(emit_big(ts, "a"), TASKSPAN_OK);
        assert_int_equal(emit_big(ts, "b"), TASKSPAN_OK);
    }
    taskspan_close(ts);
    /* The last connection checkpointed and removed the -wal. */
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    assert_false(file_exists(wal));
}

/* The path a warning says the buffer was moved to ("" if none). */
static void moved_to(char *out, size_t n, const char *warning)
{
    const char *p = strstr(warning, "moved it to ");
    out[0] = '\0';
    if (p != NULL) {
        p += strlen("moved it to ");
        snprintf(out, n, "%.*s", (int)strcspn(p, " "), p);
    }
}

/* The tmpfs a test mounted, unmounted by the teardown even when an
 * assertion failed half-way. */
static char g_mounted[4096];

static int unmount_teardown(void **state)
{
    (void)state;
    if (g_mounted[0] != '\0') {
        umount2(g_mounted, MNT_DETACH);
        g_mounted[0] = '\0';
    }
    return 0;
}

/* Mount a tmpfs of size bytes on dir. False (with the reason printed)
 * when this process may not mount: not root, or no mount namespace. */
static bool mount_tmpfs(const char *dir, long size, const char *why,
                        const char *instead)
{
    char opts[64];
    snprintf(opts, sizeof opts, "size=%ld,mode=0700", size);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) == 0) {
        snprintf(g_mounted, sizeof g_mounted, "%s", dir);
    } else {
        print_message("SKIPPED (%s): cannot mount a tmpfs: %s%s; %s\n", why,
                      strerror(errno), geteuid() != 0 ? " (not root)" : "",
                      instead);
        return false;
    }
    return true;
}

/* ---- the cap -------------------------------------------------------------- */

static void test_cap_refuses_and_keeps(void **state)
{
    (void)state;
    char *dir = new_tmpdir("cap");
    char *db = path_join(dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_capacity cap;
    taskspan_stats st;
    int n = 0;

    assert_int_equal(open_opts(&ts, db, 0, 256 * 1024, err), TASKSPAN_OK);
    assert_string_equal(taskspan_open_warning(ts), "");
    /* Task "old" stands for delivered events a later prune removes. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(emit_big(ts, "old"), TASKSPAN_OK);
    }
    assert_int_equal(fill(ts, "t", &n), TASKSPAN_E_FULL);
    assert_true(n > 10);
    assert_non_null(strstr(taskspan_errmsg(ts), "cap of 262144 bytes"));
    assert_non_null(strstr(taskspan_errmsg(ts), "nothing stored"));
    /* Refused again, and counted each time. */
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_E_FULL);
    assert_int_equal(taskspan_get_stats(&st, ts), TASKSPAN_OK);
    assert_int_equal(st.events_recorded, (uint64_t)n + 20);
    assert_int_equal(st.events_failed, 2);
    assert_int_equal(st.last_error, TASKSPAN_E_FULL);
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_int_equal(cap.max_bytes, 256 * 1024);
    assert_true(cap.used_bytes <= cap.max_bytes);
    assert_true(cap.used_bytes > cap.max_bytes / 2);
    assert_int_equal(cap.refused_cap, 2);
    assert_int_equal(cap.refused_disk, 0);
    assert_int_equal(check_intact(db), n + 20);

    /* Pruning (by hand here) frees pages inside the file: the next emit
     * reuses them, on the same recorder. */
    sqlite3 *s = sql_open(db);
    assert_int_equal(
        sqlite3_exec(s,
                     "BEGIN IMMEDIATE;"
                     "DELETE FROM task_events WHERE task_id='old';"
                     "DELETE FROM tasks WHERE task_id='old';"
                     "COMMIT;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(s);
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_OK);
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_true(cap.used_bytes <= cap.max_bytes);
    taskspan_close(ts);
    assert_int_equal(count_events(db, "t"), n + 1);
    assert_int_equal(check_intact(db), n + 1);

    /* A cap below what the file already holds: open works (a full buffer
     * can still be opened, exported and pruned); emits are refused. */
    assert_int_equal(open_opts(&ts, db, 0, 128 * 1024, err), TASKSPAN_OK);
    int more = 0;
    assert_int_equal(fill(ts, "t", &more), TASKSPAN_E_FULL);
    assert_non_null(strstr(taskspan_errmsg(ts), "cap of 131072 bytes"));
    taskspan_close(ts);
    assert_int_equal(check_intact(db), n + 1 + more);

    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_cap_settings(void **state)
{
    (void)state;
    char *dir = new_tmpdir("capset");
    char *db = path_join(dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = (taskspan *)err;
    taskspan_capacity cap;

    /* Bad options are the caller's bug: refused, nothing created. */
    assert_int_equal(open_opts(&ts, db, 0, 1000, err), TASKSPAN_E_INVALID_ARG);
    assert_null(ts);
    assert_non_null(strstr(err, "max_bytes"));
    assert_int_equal(open_opts(&ts, db, 0, -1, err), TASKSPAN_E_INVALID_ARG);
    assert_false(file_exists(db));

    /* The default, then the variable in each of its spellings. */
    static const struct {
        const char *value;
        uint64_t bytes;
    } env[] = {
        {NULL, 1u << 30},   {"300K", 300 * 1024}, {"2MiB", 2u << 20},
        {" 1g ", 1u << 30}, {"262144", 262144},   {"5 mb", 5u << 20},
    };
    for (size_t i = 0; i < ARRAY_LEN(env); i++) {
        if (env[i].value != NULL) {
            setenv("TASKSPAN_MAX_BYTES", env[i].value, 1);
        }
        assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
        assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
        assert_int_equal(cap.max_bytes, env[i].bytes);
        assert_string_equal(taskspan_open_warning(ts), "");
        taskspan_close(ts);
    }
    /* The option wins over the variable. */
    assert_int_equal(open_opts(&ts, db, 0, 512 * 1024, err), TASKSPAN_OK);
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_int_equal(cap.max_bytes, 512 * 1024);
    taskspan_close(ts);

    /* A malformed variable never stops recording: the default, and a
     * warning that names it. */
    static const char *const bad[] = {"lots", "-5", "12Q", "100", "1e9"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        setenv("TASKSPAN_MAX_BYTES", bad[i], 1);
        assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
        assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
        assert_int_equal(cap.max_bytes, TASKSPAN_DEFAULT_MAX_BYTES);
        assert_non_null(
            strstr(taskspan_open_warning(ts), "TASKSPAN_MAX_BYTES"));
        assert_int_equal(emit_big(ts, "t"), TASKSPAN_OK);
        taskspan_close(ts);
    }
    unsetenv("TASKSPAN_MAX_BYTES");

    /* A version-2 caller's struct ends at close_timeout_ms: nothing past it
     * is read (ASan and valgrind check), and the cap is the default. */
    size_t v2_size = offsetof(taskspan_options, close_timeout_ms) +
                     sizeof(int);
    taskspan_options *v2 = malloc(v2_size);
    assert_non_null(v2);
    taskspan_options full = TASKSPAN_OPTIONS_INIT;
    full.version = 2;
    full.db_path = db;
    full.traceparent = "";
    full.export_mode = TASKSPAN_EXPORT_OFF;
    memcpy(v2, &full, v2_size);
    assert_int_equal(taskspan_open(&ts, v2, err), TASKSPAN_OK);
    free(v2);
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_int_equal(cap.max_bytes, TASKSPAN_DEFAULT_MAX_BYTES);
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_OK);
    taskspan_close(ts);

    assert_int_equal(taskspan_get_capacity(NULL, NULL),
                     TASKSPAN_E_INVALID_ARG);
    assert_string_equal(taskspan_open_warning(NULL), "recorder is NULL");
    rm_rf(dir);
    free(db);
    free(dir);
}

/* ---- a full disk ---------------------------------------------------------- */

/* Child exit codes of the RLIMIT_FSIZE case, one per check. */
enum {
    CHILD_OK = 0,
    CHILD_OPEN = 10,
    CHILD_FIRST_EMIT,
    CHILD_NOT_FULL,
    CHILD_MESSAGE,
    CHILD_COUNTS,
    CHILD_AFTER_RAISE,
    CHILD_RLIMIT
};

static int fsize_child(const char *db)
{
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    taskspan_capacity cap;
    struct rlimit rl;
    int n = 0, code = CHILD_OK;

    /* The host's duty with a file size limit: else SIGXFSZ kills it. */
    signal(SIGXFSZ, SIG_IGN);
    if (open_opts(&ts, db, 0, 0, err) != TASKSPAN_OK) {
        return CHILD_OPEN;
    }
    if (emit_big(ts, "t") != TASKSPAN_OK) {
        code = CHILD_FIRST_EMIT;
        goto done;
    }
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0) {
        code = CHILD_RLIMIT;
        goto done;
    }
    struct rlimit small = {256 * 1024, rl.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &small) != 0) {
        code = CHILD_RLIMIT;
        goto done;
    }
    taskspan_code rc = fill(ts, "t", &n);
    if (rc != TASKSPAN_E_FULL || n < 1) {
        fprintf(stderr, "after %d events: %s: %s\n", n, taskspan_strerror(rc),
                taskspan_errmsg(ts));
        code = CHILD_NOT_FULL;
        goto done;
    }
    if (strstr(taskspan_errmsg(ts), "RLIMIT_FSIZE") == NULL) {
        fprintf(stderr, "message: %s\n", taskspan_errmsg(ts));
        code = CHILD_MESSAGE;
        goto done;
    }
    if (emit_big(ts, "t") != TASKSPAN_E_FULL ||
        taskspan_get_capacity(&cap, ts) != TASKSPAN_OK ||
        cap.refused_disk != 2 || cap.refused_cap != 0) {
        code = CHILD_COUNTS;
        goto done;
    }
    /* The limit lifted: the same recorder records again. */
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
        code = CHILD_RLIMIT;
        goto done;
    }
    if (emit_big(ts, "t") != TASKSPAN_OK || emit_big(ts, "t") != TASKSPAN_OK) {
        fprintf(stderr, "after raise: %s\n", taskspan_errmsg(ts));
        code = CHILD_AFTER_RAISE;
    }
done:
    taskspan_close(ts);
    return code;
}

static void test_rlimit_fsize(void **state)
{
    (void)state;
    char *dir = new_tmpdir("fsize");
    char *db = path_join(dir, "buffer.db");

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(fsize_child(db));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), CHILD_OK);
    /* 1, the events before the limit, 2 after it: all intact. */
    int64_t n = check_intact(db);
    assert_true(n >= 1 + 1 + 2);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_tmpfs_full(void **state)
{
    (void)state;
    char *dir = new_tmpdir("tmpfs");
    char *mnt = path_join(dir, "mnt");
    char *db = path_join(mnt, "buffer.db");
    char *spare = path_join(mnt, "spare");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_capacity cap;
    int n = 0;

    mkdir_p(mnt);
    if (!mount_tmpfs(mnt, 512 * 1024, "tmpfs full",
                     "test_rlimit_fsize covers a full disk")) {
        rm_rf(dir);
        free(spare);
        free(db);
        free(mnt);
        free(dir);
        skip();
    }
    /* 64 KiB that the test frees once the disk is full. */
    static char block[64 * 1024];
    FILE *f = fopen(spare, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(block, 1, sizeof block, f), sizeof block);
    assert_int_equal(fclose(f), 0);

    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    assert_int_equal(fill(ts, "t", &n), TASKSPAN_E_FULL);
    assert_true(n > 10);
    assert_non_null(strstr(taskspan_errmsg(ts), "disk full"));
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_E_FULL);
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_int_equal(cap.refused_disk, 2);
    assert_int_equal(cap.refused_cap, 0);
    /* Another process can still read everything committed. */
    assert_int_equal(count_events(db, "t"), n);

    /* Space again: the same recorder goes on. */
    assert_int_equal(unlink(spare), 0);
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_OK);

    /* Full again, and closed while full (the checkpoint at close may fail
     * for want of space, leaving events in the -wal): nothing is lost. */
    int more = 0;
    assert_int_equal(fill(ts, "t", &more), TASKSPAN_E_FULL);
    taskspan_close(ts);
    assert_int_equal(count_events(db, "t"), n + 1 + more);
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=1m"), 0);
    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    assert_int_equal(emit_big(ts, "t"), TASKSPAN_OK);
    taskspan_close(ts);
    assert_int_equal(check_intact(db), n + 1 + more + 1);

    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
    g_mounted[0] = '\0';
    rm_rf(dir);
    free(spare);
    free(db);
    free(mnt);
    free(dir);
}

/* ---- a read-only file system ---------------------------------------------- */

static void test_readonly_fs(void **state)
{
    (void)state;
    char *dir = new_tmpdir("rofs");
    char *mnt = path_join(dir, "mnt");
    char *db = path_join(mnt, "buffer.db");
    char *other = path_join(mnt, "new.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_spans *spans = NULL;

    mkdir_p(mnt);
    if (!mount_tmpfs(mnt, 1024 * 1024, "read-only file system",
                     "test_permissions covers what cannot be written")) {
        rm_rf(dir);
        free(other);
        free(db);
        free(mnt);
        free(dir);
        skip();
    }
    make_buffer(db, 5);
    assert_int_equal(
        mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);

    /* Writing is refused with a clear code and message... */
    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_E_READONLY);
    assert_null(ts);
    assert_non_null(strstr(err, "read-only"));
    assert_int_equal(open_opts(&ts, other, 0, 0, err), TASKSPAN_E_READONLY);
    assert_non_null(strstr(err, "Read-only file system"));
    assert_false(file_exists(other));
    /* ...reading still works. */
    assert_int_equal(open_opts(&ts, db, TASKSPAN_OPEN_READONLY, 0, err),
                     TASKSPAN_OK);
    assert_int_equal(taskspan_task_spans(&spans, ts, "a"), TASKSPAN_OK);
    taskspan_spans_free(spans);
    taskspan_close(ts);

    /* Writable again: nothing was lost, and recording goes on. */
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, NULL), 0);
    assert_int_equal(check_intact(db), 10);
    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    assert_int_equal(emit_big(ts, "a"), TASKSPAN_OK);
    taskspan_close(ts);
    assert_int_equal(check_intact(db), 11);

    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
    g_mounted[0] = '\0';
    rm_rf(dir);
    free(other);
    free(db);
    free(mnt);
    free(dir);
}

/* Child exit codes of the permissions case. */
enum {
    PERM_OK = 0,
    PERM_SKIP = 77,
    PERM_SETUP = 20,
    PERM_DIR_EXISTING,
    PERM_DIR_NEW,
    PERM_FILE,
    PERM_AFTER
};

static int expect_readonly(const char *db, const char *says)
{
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_code rc = open_opts(&ts, db, 0, 0, err);
    if (rc != TASKSPAN_E_READONLY || strstr(err, says) == NULL) {
        fprintf(stderr, "open %s: %s: %s\n", db, taskspan_strerror(rc), err);
        taskspan_close(ts);
        return 1;
    }
    return 0;
}

/* As an unprivileged user (root changes to nobody: root ignores modes). */
static int perm_child(const char *dir)
{
    char err[TASKSPAN_ERRBUF_SIZE];
    char db[4096], fresh[4096];
    taskspan *ts = NULL;

    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
        return PERM_SKIP;
    }
    snprintf(db, sizeof db, "%s/sub/buffer.db", dir);
    snprintf(fresh, sizeof fresh, "%s/sub/new.db", dir);
    snprintf(err, sizeof err, "%s/sub", dir);
    if (mkdir(err, 0755) != 0 || open_opts(&ts, db, 0, 0, err) != 0 ||
        emit_big(ts, "t") != TASKSPAN_OK) {
        taskspan_close(ts);
        return PERM_SETUP;
    }
    taskspan_close(ts);
    snprintf(err, sizeof err, "%s/sub", dir);
    if (chmod(err, 0555) != 0) {
        return PERM_SETUP;
    }
    /* A directory that cannot be written: no -wal, no -shm, no new file. */
    if (expect_readonly(db, "-wal and -shm")) {
        return PERM_DIR_EXISTING;
    }
    if (expect_readonly(fresh, "Permission denied") || file_exists(fresh)) {
        return PERM_DIR_NEW;
    }
    /* A file that cannot be written. */
    snprintf(err, sizeof err, "%s/sub", dir);
    if (chmod(err, 0755) != 0 || chmod(db, 0444) != 0) {
        return PERM_SETUP;
    }
    if (expect_readonly(db, "read-only only")) {
        return PERM_FILE;
    }
    /* Writable again: the event is there and recording goes on. */
    int64_t seq = 0;
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = "t";
    ev.event_type = "again";
    if (chmod(db, 0644) != 0 || open_opts(&ts, db, 0, 0, err) != TASKSPAN_OK ||
        taskspan_emit(&seq, ts, &ev) != TASKSPAN_OK || seq != 2) {
        taskspan_close(ts);
        return PERM_AFTER;
    }
    taskspan_close(ts);
    return PERM_OK;
}

static void test_permissions(void **state)
{
    (void)state;
    /* The child may be another user, who must reach the directory: a
     * fresh one in /tmp rather than under $TASKSPAN_TEST_TMP, whose
     * parents may be closed to it. */
    char tmpl[] = "/tmp/taskspan-perm-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *dir = strdup(tmpl);
    assert_non_null(dir);
    char *db = path_join(dir, "sub/buffer.db");
    assert_int_equal(chmod(dir, 0777), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(perm_child(dir));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == PERM_SKIP) {
        rm_rf(dir);
        free(db);
        free(dir);
        print_message("SKIPPED: root could not become nobody (65534)\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), PERM_OK);
    assert_int_equal(check_intact(db), 2);
    rm_rf(dir);
    free(db);
    free(dir);
}

/* ---- damaged files -------------------------------------------------------- */

/* path is damaged: a read-only and a NO_CREATE open refuse it and leave it
 * as it is; a read-write open moves it aside, byte for byte, and starts a
 * new, empty buffer. */
static void expect_moved_aside(const char *path, const char *why)
{
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    char aside[4096];
    taskspan *ts = NULL;
    size_t before_len = 0, after_len = 0;
    unsigned char *before = read_all(path, &before_len);

    assert_int_equal(open_opts(&ts, path, TASKSPAN_OPEN_READONLY, 0, err),
                     TASKSPAN_E_CORRUPT);
    assert_non_null(strstr(err, "damaged"));
    assert_int_equal(open_opts(&ts, path, TASKSPAN_OPEN_NO_CREATE, 0, err),
                     TASKSPAN_E_CORRUPT);
    unsigned char *same = read_all(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(same, before, before_len);
    free(same);

    assert_int_equal(open_opts(&ts, path, 0, 0, err), TASKSPAN_OK);
    const char *w = taskspan_open_warning(ts);
    assert_non_null(strstr(w, "was damaged"));
    assert_non_null(strstr(w, why));
    moved_to(aside, sizeof aside, w);
    assert_non_null(strstr(aside, ".corrupt-"));
    /* A new buffer: its first event is seq 1. */
    int64_t seq = 0;
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = "a";
    ev.event_type = "fresh";
    assert_int_equal(taskspan_emit(&seq, ts, &ev), TASKSPAN_OK);
    assert_int_equal(seq, 1);
    taskspan_close(ts);

    unsigned char *kept = read_all(aside, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(kept, before, before_len);
    free(kept);
    free(before);
    assert_int_equal(check_intact(path), 1);
}

static void test_corrupt_header(void **state)
{
    (void)state;
    char *dir = new_tmpdir("badhead");
    char *db = path_join(dir, "buffer.db");
    static const char junk[100] = "this is no longer an SQLite header";

    make_buffer(db, 20);
    write_at(db, 0, junk, sizeof junk);
    expect_moved_aside(db, "not a database");
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_corrupt_truncated(void **state)
{
    (void)state;
    char *dir = new_tmpdir("trunc");
    char *db = path_join(dir, "buffer.db");
    struct stat sb;

    make_buffer(db, 40);
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(truncate(db, sb.st_size / 2 + 123), 0);
    expect_moved_aside(db, "malformed");
    rm_rf(dir);
    free(db);
    free(dir);
}

/* Overwrite page pgno (1-based, 4 KiB pages) of path with junk, keeping
 * its first byte (the page type) so only the cells are nonsense. */
static void damage_page(const char *path, int64_t pgno)
{
    unsigned char junk[4095];
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (unsigned char)(0xa5 ^ (i * 31));
    }
    write_at(path, (long)((pgno - 1) * 4096 + 1), junk, sizeof junk);
}

static void test_corrupt_page(void **state)
{
    (void)state;
    char *dir = new_tmpdir("badpage");
    char *db = path_join(dir, "buffer.db");

    /* The root page of task_events is on every path an emit takes. */
    make_buffer(db, 40);
    sqlite3 *s = sql_open(db);
    int64_t root = sql_int(s,
                           "SELECT rootpage FROM sqlite_master WHERE "
                           "name = 'task_events'",
                           NULL, 0, NULL);
    sqlite3_close(s);
    damage_page(db, root);
    expect_moved_aside(db, "malformed");
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_corrupt_deep(void **state)
{
    (void)state;
    char *dir = new_tmpdir("deep");
    char *db = path_join(dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_spans *spans = NULL;

    /* A leaf holding task "a"'s first events, which no emit reads: an
     * ordinary open does not see it, reading the task does, and
     * TASKSPAN_OPEN_VERIFY finds it at open. */
    make_buffer(db, 60);
    sqlite3 *s = sql_open(db);
    int64_t leaf = sql_int(s,
                           "SELECT pageno FROM dbstat WHERE name = "
                           "'task_events' AND pagetype = 'leaf' "
                           "ORDER BY pageno LIMIT 1",
                           NULL, 0, NULL);
    sqlite3_close(s);
    damage_page(db, leaf);

    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    assert_string_equal(taskspan_open_warning(ts), "");
    assert_int_equal(emit_big(ts, "b"), TASKSPAN_OK);
    assert_int_equal(taskspan_task_spans(&spans, ts, "a"), TASKSPAN_E_CORRUPT);
    assert_null(spans);
    assert_non_null(strstr(taskspan_errmsg(ts), "malformed"));
    taskspan_close(ts);

    assert_int_equal(open_opts(&ts, db,
                               TASKSPAN_OPEN_READONLY | TASKSPAN_OPEN_VERIFY,
                               0, err),
                     TASKSPAN_E_CORRUPT);
    assert_int_equal(open_opts(&ts, db, TASKSPAN_OPEN_VERIFY, 0, err),
                     TASKSPAN_OK);
    assert_non_null(strstr(taskspan_open_warning(ts), "was damaged"));
    taskspan_close(ts);
    rm_rf(dir);
    free(db);
    free(dir);
}

/* Several processes open the same damaged buffer at once: every one gets a
 * working recorder, the damaged file is moved aside exactly once, and no
 * event is lost. */
static void test_corrupt_concurrent_opens(void **state)
{
    (void)state;
    enum { N = 4 };
    char *dir = new_tmpdir("race");
    char *db = path_join(dir, "buffer.db");
    static const char junk[100] = "this is no longer an SQLite header";
    pid_t pids[N];
    int go[2];

    make_buffer(db, 20);
    write_at(db, 0, junk, sizeof junk);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char err[TASKSPAN_ERRBUF_SIZE] = "", c;
            taskspan *ts = NULL;
            close(go[1]);
            /* All start together, when the parent closes the pipe. */
            if (read(go[0], &c, 1) != 0) {
                _exit(3);
            }
            taskspan_code rc = open_opts(&ts, db, 0, 0, err);
            if (rc != TASKSPAN_OK) {
                fprintf(stderr, "child %d: %s: %s\n", i, taskspan_strerror(rc),
                        err);
                _exit(1);
            }
            rc = emit_big(ts, "after");
            taskspan_close(ts);
            _exit(rc == TASKSPAN_OK ? 0 : 2);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < N; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(check_intact(db), N);
    char cmd[4200], line[4200];
    snprintf(cmd, sizeof cmd,
             "ls -A '%s' | grep -c 'buffer.db.corrupt-[0-9TZ]*$'", dir);
    FILE *ls = popen(cmd, "r");
    assert_non_null(ls);
    assert_non_null(fgets(line, sizeof line, ls));
    pclose(ls);
    assert_int_equal(strtol(line, NULL, 10), 1);
    rm_rf(dir);
    free(db);
    free(dir);
}

/* Damage an emit meets (not the open): TASKSPAN_E_CORRUPT, counted, with a
 * message, and the recorder carries on. */
static void test_corrupt_at_emit(void **state)
{
    (void)state;
    char *dir = new_tmpdir("emitbad");
    char *db = path_join(dir, "buffer.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    char a[251], b[251];
    taskspan *ts = NULL;
    taskspan_stats st;

    /* Long task ids make a (task_id, seq) b-tree of many leaves. */
    memset(a, 'a', sizeof a - 1);
    memset(b, 'b', sizeof b - 1);
    a[sizeof a - 1] = b[sizeof b - 1] = '\0';
    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(emit_big(ts, a), TASKSPAN_OK);
        assert_int_equal(emit_big(ts, b), TASKSPAN_OK);
    }
    taskspan_close(ts);

    /* Every leaf of the events but the last, in key order: the open's
     * check reads only the last one; an emit of task a needs another. */
    sqlite3 *s = sql_open(db);
    sqlite3_stmt *q = sql_prep(s,
                               "SELECT pageno FROM dbstat WHERE name = "
                               "'task_events' AND "
                               "pagetype = 'leaf' ORDER BY path",
                               NULL, 0, NULL);
    int64_t leaves[64];
    int n = 0;
    while (n < 64 && sqlite3_step(q) == SQLITE_ROW) {
        leaves[n++] = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(s);
    assert_true(n >= 3);
    for (int i = 0; i < n - 1; i++) {
        damage_page(db, leaves[i]);
    }

    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_OK);
    assert_string_equal(taskspan_open_warning(ts), "");
    assert_int_equal(emit_big(ts, a), TASKSPAN_E_CORRUPT);
    assert_non_null(strstr(taskspan_errmsg(ts), "malformed"));
    assert_int_equal(emit_big(ts, a), TASKSPAN_E_CORRUPT);
    /* Task b's events go to the sound last leaf: recorded. */
    assert_int_equal(emit_big(ts, b), TASKSPAN_OK);
    assert_int_equal(taskspan_get_stats(&st, ts), TASKSPAN_OK);
    assert_int_equal(st.events_recorded, 1);
    assert_int_equal(st.events_failed, 2);
    assert_int_equal(st.last_error, TASKSPAN_E_CORRUPT);
    taskspan_close(ts);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_not_ours_is_left_alone(void **state)
{
    (void)state;
    char *dir = new_tmpdir("notours");
    char *db = path_join(dir, "theirs.db");
    char *text = path_join(dir, "notes.db");
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;

    /* Someone else's healthy database, and a short text file. */
    sqlite3 *s = NULL;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(s, "CREATE TABLE mine (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);
    FILE *f = fopen(text, "w");
    assert_non_null(f);
    fputs("shopping list\n", f);
    fclose(f);

    assert_int_equal(open_opts(&ts, db, 0, 0, err), TASKSPAN_E_CORRUPT);
    assert_non_null(strstr(err, "not a taskspan buffer"));
    assert_int_equal(open_opts(&ts, text, 0, 0, err), TASKSPAN_E_CORRUPT);
    assert_non_null(strstr(err, "left as it is"));

    /* Nothing was moved or created beside them. */
    char listing[64];
    snprintf(listing, sizeof listing, "%s", "");
    int files = 0;
    FILE *ls = NULL;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s'", dir);
    ls = popen(cmd, "r");
    assert_non_null(ls);
    while (fgets(listing, sizeof listing, ls) != NULL) {
        files++;
        assert_null(strstr(listing, "corrupt"));
    }
    pclose(ls);
    assert_int_equal(files, 2);
    rm_rf(dir);
    free(text);
    free(db);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_refuses_and_keeps),
        cmocka_unit_test(test_cap_settings),
        cmocka_unit_test(test_rlimit_fsize),
        cmocka_unit_test_teardown(test_tmpfs_full, unmount_teardown),
        cmocka_unit_test_teardown(test_readonly_fs, unmount_teardown),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_corrupt_truncated),
        cmocka_unit_test(test_corrupt_page),
        cmocka_unit_test(test_corrupt_deep),
        cmocka_unit_test(test_corrupt_at_emit),
        cmocka_unit_test(test_corrupt_concurrent_opens),
        cmocka_unit_test(test_not_ours_is_left_alone),
    };
    unsetenv("TASKSPAN_MAX_BYTES");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
