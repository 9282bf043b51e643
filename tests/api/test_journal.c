/*
 * test_journal.c -- the journal mode (TASKSPAN_SYNC_JOURNAL) through the
 * public API on real files: round trip, a real fork() + SIGKILL of a child
 * in the middle of an emit stream (every emit it reported as returned must
 * be in the buffer after the parent reopens), a torn record at the tail,
 * two recorders in two processes, and what flush and close move.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/test_util.h"

typedef struct jfx {
    char *dir;
    char *db;
} jfx;

static int setup(void **state)
{
    jfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = new_tmpdir("journal");
    assert_non_null(f->dir);
    f->db = path_join(f->dir, "buffer.db");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    jfx *f = *state;
    rm_rf(f->dir);
    free(f->dir);
    free(f->db);
    free(f);
    return 0;
}

/* The options every recorder of these tests opens with: export off, no
 * trace context from the environment. */
static taskspan_options test_options(const char *db, taskspan_sync_mode mode)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.sync_mode = mode;
    return o;
}

static taskspan *open_mode(const char *db, taskspan_sync_mode mode)
{
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan_options o = test_options(db, mode);
    taskspan *ts = NULL;
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        fail_msg("open %s: %s", db, err);
    }
    return ts;
}

/* One work_item_start with the index i as an attribute. */
static taskspan_code emit_i(taskspan *ts, const char *task, int64_t i,
                            int64_t *seq)
{
    taskspan_attr a[2] = {taskspan_attr_int("i", i),
                          taskspan_attr_str("kind", "journal-test")};
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = task;
    ev.event_type = "work_item_start";
    ev.actor = "worker";
    ev.span_key = "work_x";
    ev.parent_span_key = "main";
    ev.attrs = a;
    ev.n_attrs = 2;
    return taskspan_emit(seq, ts, &ev);
}

static size_t journal_files(const char *db)
{
    char pattern[4096];
    glob_t g;
    snprintf(pattern, sizeof pattern, "%s.journal-*", db);
    if (glob(pattern, 0, NULL, &g) != 0) {
        return 0;
    }
    size_t n = g.gl_pathc;
    globfree(&g);
    return n;
}

/* The one journal file's name (malloc'd), or NULL. */
static char *journal_name(const char *db)
{
    char pattern[4096];
    glob_t g;
    snprintf(pattern, sizeof pattern, "%s.journal-*", db);
    if (glob(pattern, 0, NULL, &g) != 0) {
        return NULL;
    }
    char *name = g.gl_pathc == 1 ? strdup(g.gl_pathv[0]) : NULL;
    globfree(&g);
    return name;
}

static int64_t count_task(const char *db, const char *task)
{
    sqlite3 *h = sql_open(db);
    int64_t n = sql_int(h,
                        "SELECT count(*) FROM task_events WHERE task_id = ?1",
                        task, 0, NULL);
    sqlite3_close(h);
    return n;
}

/* seq is 1..n without a gap, and n events carry the indexes 0..n-1 each
 * exactly once (none lost, none twice). */
static void assert_complete(const char *db, const char *task, int64_t n)
{
    sqlite3 *h = sql_open(db);
    assert_int_equal(sql_int(h,
                             "SELECT count(*) FROM task_events"
                             " WHERE task_id = ?1",
                             task, 0, NULL),
                     n);
    assert_int_equal(sql_int(h,
                             "SELECT coalesce(max(seq), 0) FROM task_events"
                             " WHERE task_id = ?1",
                             task, 0, NULL),
                     n);
    assert_int_equal(sql_int(h,
                             "SELECT count(DISTINCT json_extract(payload,"
                             " '$.i')) FROM task_events WHERE task_id = ?1"
                             " AND json_extract(payload, '$.i') < ?2",
                             task, n, NULL),
                     n);
    sqlite3_close(h);
}

static void test_round_trip(void **state)
{
    jfx *f = *state;
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
    int64_t seq = -1;
    for (int64_t i = 0; i < 200; i++) {
        assert_int_equal(emit_i(ts, "t-round", i, &seq), TASKSPAN_OK);
        assert_int_equal(seq, 0); /* assigned when moved */
    }
    assert_int_equal(journal_files(f->db), 1);
    /* The recorder's own read moves everything first. */
    taskspan_spans *spans = NULL;
    assert_int_equal(taskspan_task_spans(&spans, ts, "t-round"), TASKSPAN_OK);
    assert_true(taskspan_spans_count(spans) >= 1);
    taskspan_spans_free(spans);
    assert_complete(f->db, "t-round", 200);
    taskspan_close(ts);
    assert_int_equal(journal_files(f->db), 0);
    assert_complete(f->db, "t-round", 200);
}

static void test_flush_and_close_move(void **state)
{
    jfx *f = *state;
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
    for (int64_t i = 0; i < 50; i++) {
        assert_int_equal(emit_i(ts, "t-flush", i, NULL), TASKSPAN_OK);
    }
    /* Export is off, so flush has nothing to deliver to (its result says
     * so), but it moves the journal first either way. */
    (void)taskspan_flush(ts, 100);
    assert_complete(f->db, "t-flush", 50);
    for (int64_t i = 50; i < 120; i++) {
        assert_int_equal(emit_i(ts, "t-flush", i, NULL), TASKSPAN_OK);
    }
    taskspan_close(ts);
    assert_complete(f->db, "t-flush", 120);
    assert_int_equal(journal_files(f->db), 0);
}

/* A child emits as fast as it can and reports each returned emit through a
 * pipe; the parent kills it with SIGKILL mid-stream. Returns how many
 * emits the child reported as returned. */
static int64_t kill_mid_stream(const char *db, const char *task,
                               int64_t min_reported)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char err[TASKSPAN_ERRBUF_SIZE];
        taskspan_options o = test_options(db, TASKSPAN_SYNC_JOURNAL);
        taskspan *ts = NULL;
        if (taskspan_open(&ts, &o, err) != TASKSPAN_OK) {
            _exit(3);
        }
        for (int64_t i = 0; i < 1000000; i++) {
            if (emit_i(ts, task, i, NULL) != TASKSPAN_OK) {
                _exit(4);
            }
            /* After the emit returned: one write(), so a line the parent
             * reads proves it. */
            if (write(fds[1], &i, sizeof i) != (ssize_t)sizeof i) {
                _exit(5);
            }
        }
        _exit(0);
    }
    close(fds[1]);
    int64_t got = 0, v;
    while (got < min_reported && read(fds[0], &v, sizeof v) == sizeof v) {
        assert_int_equal(v, got);
        got++;
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* What the child had written before it died. */
    ssize_t r;
    while ((r = read(fds[0], &v, sizeof v)) == (ssize_t)sizeof v) {
        assert_int_equal(v, got);
        got++;
    }
    close(fds[0]);
    return got;
}

static void test_kill9_replay(void **state)
{
    jfx *f = *state;
    /* Fewer under valgrind (slow), but still mid-stream. */
    bool slow = getenv("TASKSPAN_WRAP") != NULL &&
                getenv("TASKSPAN_WRAP")[0] != '\0';
    int64_t want = slow ? 200 : 12000;
    int64_t returned = kill_mid_stream(f->db, "t-kill", want);
    assert_true(returned >= want);
    /* The child died holding its journal: one file, no live lock. */
    assert_int_equal(journal_files(f->db), 1);
    /* 12,000 records (~150 bytes each) do not fit the journal's first
     * 1 MiB: the kill came after the file had grown and been mapped
     * again, and the records on both sides of that must all be there. */
    char *name = journal_name(f->db);
    struct stat sb;
    assert_non_null(name);
    assert_int_equal(stat(name, &sb), 0);
    free(name);
    if (!slow) {
        assert_true(sb.st_size > (off_t)1 << 20);
    }
    /* The next open, in the default mode, replays and removes it. */
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_NORMAL);
    assert_int_equal(journal_files(f->db), 0);
    int64_t stored = count_task(f->db, "t-kill");
    /* Every returned emit is there; at most the one in flight more. */
    assert_true(stored >= returned);
    assert_true(stored <= returned + 1);
    assert_complete(f->db, "t-kill", stored);
    /* Later emits continue the seq without a gap. */
    int64_t seq = 0;
    assert_int_equal(emit_i(ts, "t-kill", stored, &seq), TASKSPAN_OK);
    assert_int_equal(seq, stored + 1);
    taskspan_close(ts);
}

static void test_torn_tail(void **state)
{
    jfx *f = *state;
    int64_t returned = kill_mid_stream(f->db, "t-torn", 20);
    char pattern[4096];
    glob_t g;
    snprintf(pattern, sizeof pattern, "%s.journal-*", f->db);
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    assert_int_equal(g.gl_pathc, 1);
    /* A torn record right behind the last whole one (where the child's
     * next emit was going, inside the space allocated ahead): a header
     * promising 500 bytes of body, 30 present. */
    int fd = open(g.gl_pathv[0], O_RDWR);
    assert_true(fd >= 0);
    off_t at = 0;
    uint32_t head[3];
    while (pread(fd, head, sizeof head, at) == (ssize_t)sizeof head &&
           head[0] == 0x314a5354u) {
        at += (off_t)sizeof head + head[1] + 4;
    }
    assert_true(at > 0);
    head[0] = 0x314a5354u;
    head[1] = 500;
    head[2] = 12345;
    uint8_t junk[30];
    memset(junk, 'x', sizeof junk);
    assert_int_equal(pwrite(fd, head, sizeof head, at), (ssize_t)sizeof head);
    assert_int_equal(pwrite(fd, junk, sizeof junk, at + (off_t)sizeof head),
                     (ssize_t)sizeof junk);
    close(fd);
    globfree(&g);
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_NORMAL);
    int64_t stored = count_task(f->db, "t-torn");
    assert_true(stored >= returned && stored <= returned + 1);
    assert_complete(f->db, "t-torn", stored);
    assert_int_equal(journal_files(f->db), 0);
    taskspan_close(ts);
}

static void test_live_journal_not_taken(void **state)
{
    jfx *f = *state;
    taskspan *a = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
    for (int64_t i = 0; i < 30; i++) {
        assert_int_equal(emit_i(a, "t-live", i, NULL), TASKSPAN_OK);
    }
    /* A second recorder's open must leave a live recorder's journal. */
    taskspan *b = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
    assert_int_equal(journal_files(f->db), 2);
    for (int64_t i = 30; i < 60; i++) {
        assert_int_equal(emit_i(b, "t-live", i, NULL), TASKSPAN_OK);
    }
    taskspan_close(b);
    taskspan_close(a);
    assert_int_equal(journal_files(f->db), 0);
    assert_complete(f->db, "t-live", 60);
}

static void test_two_processes(void **state)
{
    jfx *f = *state;
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            char err[TASKSPAN_ERRBUF_SIZE];
            taskspan_options o = test_options(f->db, TASKSPAN_SYNC_JOURNAL);
            taskspan *ts = NULL;
            if (taskspan_open(&ts, &o, err) != TASKSPAN_OK) {
                _exit(3);
            }
            for (int64_t i = 0; i < 300; i++) {
                if (emit_i(ts, "t-two", k * 1000 + i, NULL) != TASKSPAN_OK) {
                    _exit(4);
                }
            }
            taskspan_close(ts);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st = 0;
        assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    sqlite3 *h = sql_open(f->db);
    assert_int_equal(sql_int(h,
                             "SELECT count(*) FROM task_events"
                             " WHERE task_id = ?1",
                             "t-two", 0, NULL),
                     600);
    assert_int_equal(sql_int(h,
                             "SELECT max(seq) FROM task_events"
                             " WHERE task_id = ?1",
                             "t-two", 0, NULL),
                     600);
    /* Each process's events keep their order in seq. */
    assert_int_equal(sql_int(h,
                             "SELECT count(*) FROM task_events a JOIN"
                             " task_events b ON a.task_id = b.task_id"
                             " AND a.seq < b.seq WHERE a.task_id = ?1"
                             " AND json_extract(a.payload, '$.i') / 1000 ="
                             " json_extract(b.payload, '$.i') / 1000"
                             " AND json_extract(a.payload, '$.i') >"
                             " json_extract(b.payload, '$.i')",
                             "t-two", 0, NULL),
                     0);
    sqlite3_close(h);
    assert_int_equal(journal_files(f->db), 0);
}

/* The same calls in both modes store the same rows: seq, incarnation
 * (runner_spawn starts one mid-stream) and type, with tasks interleaved. */
static void record_mixed(const char *db, taskspan_sync_mode mode)
{
    static const struct {
        const char *task;
        const char *type;
    } calls[] = {
        {"m-a", "work_item_start"}, {"m-a", "lease_acquired"},
        {"m-a", "runner_spawn"},    {"m-a", "work_item_start"},
        {"m-b", "work_item_start"}, {"m-a", "work_item_done"},
        {"m-b", "runner_spawn"},    {"m-b", "work_item_done"},
        {"m-a", "runner_spawn"},    {"m-a", "runner_spawn"},
    };
    taskspan *ts = open_mode(db, mode);
    for (size_t i = 0; i < ARRAY_LEN(calls); i++) {
        taskspan_event ev = TASKSPAN_EVENT_INIT;
        ev.task_id = calls[i].task;
        ev.event_type = calls[i].type;
        ev.ts_ns = 1000 + (int64_t)i;
        assert_int_equal(taskspan_emit(NULL, ts, &ev), TASKSPAN_OK);
    }
    taskspan_close(ts);
}

static char *rows_of(const char *db)
{
    sqlite3 *h = sql_open(db);
    sqlite3_stmt *st = sql_prep(h,
                                "SELECT group_concat(task_id || ':' || seq ||"
                                " ':' || incarnation || ':' || event_type,"
                                " ' ') FROM (SELECT * FROM task_events"
                                " ORDER BY task_id, seq)",
                                NULL, 0, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_stmt *t = sql_prep(h,
                               "SELECT group_concat(task_id || ':' ||"
                               " max(last_seq, (SELECT max(seq) FROM"
                               " task_events e WHERE e.task_id = t.task_id))"
                               " || ':' || incarnation, ' ') FROM"
                               " (SELECT * FROM tasks ORDER BY task_id) t",
                               NULL, 0, NULL);
    assert_int_equal(sqlite3_step(t), SQLITE_ROW);
    size_t n = strlen(s) + 2 + strlen((const char *)sqlite3_column_text(t, 0));
    char *both = malloc(n + 1);
    assert_non_null(both);
    snprintf(both, n + 1, "%s; %s", s, sqlite3_column_text(t, 0));
    sqlite3_finalize(t);
    sqlite3_close(h);
    free(s);
    return both;
}

static void test_same_rows_as_normal(void **state)
{
    jfx *f = *state;
    char *other = path_join(f->dir, "normal.db");
    record_mixed(f->db, TASKSPAN_SYNC_JOURNAL);
    record_mixed(other, TASKSPAN_SYNC_NORMAL);
    char *j = rows_of(f->db);
    char *n = rows_of(other);
    assert_string_equal(j, n);
    /* And what that is: incarnations start at runner_spawn. */
    assert_non_null(strstr(n, "m-a:4:1:work_item_start"));
    assert_non_null(strstr(n, "m-a:7:3:runner_spawn"));
    free(j);
    free(n);
    free(other);
}

/* A fully moved journal past its size is replaced by a new file; nothing
 * is lost or repeated across the switches, and a kill right after them
 * replays correctly. */
static void test_rotation(void **state)
{
    jfx *f = *state;
    setenv("TASKSPAN_JOURNAL_ROTATE_BYTES", "2048", 1);
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
    unsetenv("TASKSPAN_JOURNAL_ROTATE_BYTES");
    taskspan_spans *spans = NULL;
    char *first = journal_name(f->db);
    int switches = 0;
    assert_non_null(first);
    for (int64_t i = 0; i < 400; i++) {
        assert_int_equal(emit_i(ts, "t-rot", i, NULL), TASKSPAN_OK);
        if (i % 25 == 24) { /* a read moves (and so rotates) */
            assert_int_equal(taskspan_task_spans(&spans, ts, "t-rot"),
                             TASKSPAN_OK);
            taskspan_spans_free(spans);
            char *now = journal_name(f->db);
            assert_non_null(now); /* exactly one file */
            switches += strcmp(now, first) != 0;
            free(first);
            first = now;
        }
    }
    free(first);
    assert_true(switches >= 3);
    /* The last read moved 375; the thread may have moved more since. */
    assert_true(count_task(f->db, "t-rot") >= 375);
    taskspan_close(ts);
    assert_complete(f->db, "t-rot", 400);
    assert_int_equal(journal_files(f->db), 0);
    sqlite3 *h = sql_open(f->db);
    assert_int_equal(sql_int(h,
                             "SELECT count(*) FROM export_state WHERE name"
                             " LIKE 'journal:%'",
                             NULL, 0, NULL),
                     0);
    sqlite3_close(h);
}

/* A journal that its thread cannot move (the buffer is at its cap) grows
 * to its backlog limit; then an emit waits for room, fails with
 * TASKSPAN_E_FULL, and the next fails at once. Nothing journaled is lost:
 * a later open with room replays all of it. */
static void test_backlog_limit(void **state)
{
    jfx *f = *state;
    char err[TASKSPAN_ERRBUF_SIZE];
    static char text[2001];
    memset(text, 'p', sizeof text - 1);
    taskspan_options o = test_options(f->db, TASKSPAN_SYNC_JOURNAL);
    taskspan *ts = NULL;
    o.max_bytes = TASKSPAN_MIN_MAX_BYTES;
    setenv("TASKSPAN_JOURNAL_BACKLOG_BYTES", "65536", 1);
    taskspan_code rc = taskspan_open(&ts, &o, err);
    unsetenv("TASKSPAN_JOURNAL_BACKLOG_BYTES");
    assert_int_equal(rc, TASKSPAN_OK);

    taskspan_attr a = taskspan_attr_str("text", text);
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = "t-backlog";
    ev.event_type = "filler";
    ev.attrs = &a;
    ev.n_attrs = 1;
    int ok = 0;
    /* 128 KiB of buffer and 64 KiB of journal hold well under 1000
     * events of 2 KB. */
    while (ok < 1000 && (rc = taskspan_emit(NULL, ts, &ev)) == TASKSPAN_OK) {
        ok++;
    }
    assert_int_equal(rc, TASKSPAN_E_FULL);
    assert_non_null(strstr(taskspan_errmsg(ts), "not yet moved"));
    assert_true(ok >= 20); /* about the backlog's worth (~31) */
    assert_int_equal(taskspan_emit(NULL, ts, &ev), TASKSPAN_E_FULL);
    taskspan_close(ts);
    assert_int_equal(journal_files(f->db), 1); /* kept: not all moved */

    /* With room, every event whose emit returned OK is there. */
    o.sync_mode = TASKSPAN_SYNC_NORMAL;
    o.max_bytes = (int64_t)64 << 20;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    assert_int_equal(journal_files(f->db), 0);
    assert_int_equal(count_task(f->db, "t-backlog"), ok);
    taskspan_close(ts);
}

/* A runner that forks a worker without exec, then dies: the worker keeps
 * no share of the journal's lock, so the next open replays the dead
 * runner's journal while the worker lives on; and the worker's copy of
 * the recorder refuses emits instead of writing into the runner's file. */
static void test_fork_child_releases_journal(void **state)
{
    jfx *f = *state;
    int hold[2], report[2];
    assert_int_equal(pipe(hold), 0);
    assert_int_equal(pipe(report), 0);
    pid_t runner = fork();
    assert_true(runner >= 0);
    if (runner == 0) {
        taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_JOURNAL);
        for (int64_t i = 0; i < 100; i++) {
            if (emit_i(ts, "t-fork", i, NULL) != TASKSPAN_OK) {
                _exit(3);
            }
        }
        pid_t worker = fork();
        if (worker == 0) {
            /* The worker: try an emit, report its code, then live on
             * until the test closes the hold pipe. */
            int code = (int)emit_i(ts, "t-fork", 100, NULL);
            close(hold[1]);
            if (write(report[1], &code, sizeof code) != (ssize_t)sizeof code) {
                _exit(4);
            }
            char c;
            while (read(hold[0], &c, 1) > 0) {
            }
            _exit(0);
        }
        int ready = worker > 0 ? -1 : -2;
        if (write(report[1], &ready, sizeof ready) != (ssize_t)sizeof ready) {
            _exit(5);
        }
        for (;;) {
            pause(); /* killed by the test */
        }
    }
    close(hold[0]);
    close(report[1]);
    /* Two reports in either order: the runner's (negative) and the
     * worker's emit code (not negative). */
    int got[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(read(report[0], &got[k], sizeof got[k]),
                         (ssize_t)sizeof got[k]);
    }
    int ready = got[0] < 0 ? got[0] : got[1];
    int worker_code = got[0] < 0 ? got[1] : got[0];
    assert_int_equal(ready, -1);
    assert_int_equal(worker_code, TASKSPAN_E_INVALID_ARG);
    assert_int_equal(kill(runner, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(runner, &st, 0), runner);
    assert_int_equal(journal_files(f->db), 1);

    /* The worker is alive (it waits on the hold pipe): the journal is
     * replayed all the same. */
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_NORMAL);
    assert_int_equal(journal_files(f->db), 0);
    taskspan_close(ts);
    assert_complete(f->db, "t-fork", 100);
    close(hold[1]); /* the worker ends */
    close(report[0]);
}

static void test_env_selects_journal(void **state)
{
    jfx *f = *state;
    setenv("TASKSPAN_JOURNAL", "1", 1);
    taskspan *ts = open_mode(f->db, TASKSPAN_SYNC_NORMAL);
    unsetenv("TASKSPAN_JOURNAL");
    int64_t seq = -1;
    assert_int_equal(emit_i(ts, "t-env", 0, &seq), TASKSPAN_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(journal_files(f->db), 1);
    taskspan_close(ts);
    assert_complete(f->db, "t-env", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_and_close_move, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill9_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_child_releases_journal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_journal_not_taken, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_rows_as_normal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_env_selects_journal, setup,
                                        teardown),
    };
    unsetenv("TASKSPAN_JOURNAL");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
