/*
 * test_concurrency.c -- 2 processes x 4 threads emit into one buffer file.
 *
 * Each child process opens its own recorder, shared by its threads. Every
 * thread emits N_EVENTS events for one task (attributes p, t, i name the
 * process, thread and iteration) and, every SIDE_EVERY iterations, one
 * event for a second task. The parent then checks with sqlite3 that seq is
 * exactly 1..N with no gap or duplicate, that every (p, t, i) is there
 * exactly once, and that each thread's events got increasing seqs.
 * Children report any failed emit through their exit status.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/test_util.h"

#define N_PROCS 2
#define N_THREADS 4
#define N_EVENTS 500
#define SIDE_EVERY 5
#define TASK_MAIN "concurrent-task"
#define TASK_SIDE "side-task"
#define CHILD_DEADLINE_S 90

/* Child exit codes. */
enum {
    CHILD_OK = 0,
    CHILD_OPEN_FAILED = 10,
    CHILD_SYNC_FAILED = 11,
    CHILD_THREAD_FAILED = 12,
    CHILD_EMIT_FAILED = 13,
    CHILD_SEQ_NOT_INCREASING = 14,
    CHILD_STATS_WRONG = 15
};

/* ---- the children -------------------------------------------------------- */

typedef struct worker {
    pthread_t thread;
    taskspan *ts;
    int proc;
    int index;
    int emit_failures;
    int seq_disorder;
    int64_t emitted;
    char first_error[TASKSPAN_ERRBUF_SIZE];
} worker;

static taskspan_code emit_tick(taskspan *ts, const char *task, int proc,
                               int thread, int i, int64_t *seq)
{
    taskspan_attr attrs[] = {
        taskspan_attr_int("p", proc),
        taskspan_attr_int("t", thread),
        taskspan_attr_int("i", i),
        taskspan_attr_str("note", "concurrent emit"),
    };
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = task;
    ev.event_type = "tick";
    ev.actor = "worker";
    ev.phase = "executing";
    ev.attrs = attrs;
    ev.n_attrs = sizeof attrs / sizeof attrs[0];
    return taskspan_emit(seq, ts, &ev);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int64_t last_main = 0, last_side = 0;
    for (int i = 0; i < N_EVENTS; i++) {
        int64_t seq = 0;
        taskspan_code c = emit_tick(w->ts, TASK_MAIN, w->proc, w->index, i,
                                    &seq);
        if (c != TASKSPAN_OK) {
            if (w->emit_failures++ == 0) {
                taskspan_errmsg_copy(w->ts, w->first_error,
                                     sizeof w->first_error);
            }
            continue;
        }
        w->emitted++;
        /* This thread's events come one after another: seq must grow. */
        if (seq <= last_main) {
            w->seq_disorder++;
        }
        last_main = seq;
        if (i % SIDE_EVERY == 0) {
            c = emit_tick(w->ts, TASK_SIDE, w->proc, w->index, i, &seq);
            if (c != TASKSPAN_OK) {
                if (w->emit_failures++ == 0) {
                    taskspan_errmsg_copy(w->ts, w->first_error,
                                         sizeof w->first_error);
                }
                continue;
            }
            w->emitted++;
            if (seq <= last_side) {
                w->seq_disorder++;
            }
            last_side = seq;
        }
    }
    return NULL;
}

/* In a child: say "ready" (and close our end, so the parent sees EOF once
 * every child is ready or gone), then wait for the parent's "go" (EOF). */
static int barrier(int ready_fd, int go_fd)
{
    char byte = 'r';
    int ok = write(ready_fd, &byte, 1) == 1;
    close(ready_fd);
    return ok && read(go_fd, &byte, 1) == 0;
}

/* Runs in the child; never returns to cmocka. */
static int child_main(const char *db, int proc, int ready_fd, int go_fd)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    worker workers[N_THREADS];
    int rc = CHILD_OK;

    alarm(CHILD_DEADLINE_S); /* a hung child dies rather than hang ctest */
    o.db_path = db;
    o.traceparent = "";
    o.busy_timeout_ms = 60000; /* contention is the point: wait, not fail */
    /* Opening is not what this test is about (see
     * test_concurrent_open_new_buffer): retry an open that reports BUSY,
     * and say so, so that the emits below always get their chance. */
    taskspan_code c;
    int open_retries = 0;
    while ((c = taskspan_open(&ts, &o, err)) == TASKSPAN_E_BUSY &&
           open_retries < 200) {
        struct timespec pause = {0, 5 * 1000 * 1000};
        open_retries++;
        nanosleep(&pause, NULL);
    }
    if (open_retries > 0) {
        fprintf(stderr,
                "child %d: taskspan_open returned E_BUSY %d time(s) "
                "(%s)\n",
                proc, open_retries, c == TASKSPAN_OK ? "then opened" : err);
    }
    if (c != TASKSPAN_OK) {
        fprintf(stderr, "child %d: open: %s\n", proc, err);
        return CHILD_OPEN_FAILED;
    }
    /* Tell the parent we are ready, then wait until both children are. */
    if (!barrier(ready_fd, go_fd)) {
        taskspan_close(ts);
        return CHILD_SYNC_FAILED;
    }
    memset(workers, 0, sizeof workers);
    for (int t = 0; t < N_THREADS; t++) {
        workers[t].ts = ts;
        workers[t].proc = proc;
        workers[t].index = t;
        if (pthread_create(&workers[t].thread, NULL, worker_main,
                           &workers[t]) != 0) {
            fprintf(stderr, "child %d: pthread_create failed\n", proc);
            _exit(CHILD_THREAD_FAILED); /* cannot join what is running */
        }
    }
    int64_t emitted = 0;
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(workers[t].thread, NULL);
        emitted += workers[t].emitted;
        if (workers[t].emit_failures > 0) {
            fprintf(stderr, "child %d thread %d: %d failed emits, first: %s\n",
                    proc, t, workers[t].emit_failures, workers[t].first_error);
            rc = CHILD_EMIT_FAILED;
        } else if (workers[t].seq_disorder > 0 && rc == CHILD_OK) {
            fprintf(stderr, "child %d thread %d: seq went backwards\n", proc,
                    t);
            rc = CHILD_SEQ_NOT_INCREASING;
        }
    }
    taskspan_stats st;
    if (rc == CHILD_OK &&
        (taskspan_get_stats(&st, ts) != TASKSPAN_OK ||
         st.events_recorded != (uint64_t)emitted || st.events_failed != 0 ||
         emitted != N_THREADS * (N_EVENTS + N_EVENTS / SIDE_EVERY))) {
        fprintf(stderr,
                "child %d: stats recorded=%llu failed=%llu "
                "emitted=%lld\n",
                proc, (unsigned long long)st.events_recorded,
                (unsigned long long)st.events_failed, (long long)emitted);
        rc = CHILD_STATS_WRONG;
    }
    taskspan_close(ts);
    return rc;
}

typedef int (*child_fn)(int proc, void *arg, int ready_fd, int go_fd);

static int child_emitter(int proc, void *arg, int ready_fd, int go_fd)
{
    return child_main(arg, proc, ready_fd, go_fd);
}

/* Fork n children running fn, release them together once all are ready,
 * wait for them all; statuses[i] gets child i's wait status. Returns how
 * many children reported ready. */
static int run_children(int n, child_fn fn, void *arg, int *statuses)
{
    int ready[2], go[2];
    pid_t pids[16];
    assert_true(n <= 16);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    for (int p = 0; p < n; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(ready[0]);
            close(go[1]);
            _exit(fn(p, arg, ready[1], go[0]));
        }
    }
    close(ready[1]);
    close(go[0]);
    int n_ready = 0;
    char byte;
    while (n_ready < n && read(ready[0], &byte, 1) == 1) {
        n_ready++;
    }
    close(go[1]); /* go */
    close(ready[0]);
    for (int p = 0; p < n; p++) {
        pid_t got;
        do {
            got = waitpid(pids[p], &statuses[p], 0);
        } while (got < 0 && errno == EINTR);
        assert_int_equal(got, pids[p]);
    }
    return n_ready;
}

/* ---- the parent ---------------------------------------------------------- */

/* Column 0 of the first row of sql, with ?1 = task if it has a parameter. */
static int64_t q_int(sqlite3 *db, const char *sql, const char *task)
{
    return sql_int(db, sql, task, 0, NULL);
}

/* seq of task is exactly 1..n, each once; (p, t, i) each exactly once; each
 * thread's events in increasing seq. */
static void check_task(sqlite3 *db, const char *task, int64_t n,
                       int64_t per_thread)
{
    assert_int_equal(q_int(db,
                           "SELECT count(*) FROM task_events "
                           "WHERE task_id = ?1",
                           task),
                     n);
    assert_int_equal(q_int(db,
                           "SELECT count(DISTINCT seq) FROM task_events "
                           "WHERE task_id = ?1",
                           task),
                     n);
    assert_int_equal(q_int(db,
                           "SELECT min(seq) FROM task_events "
                           "WHERE task_id = ?1",
                           task),
                     1);
    assert_int_equal(q_int(db,
                           "SELECT max(seq) FROM task_events "
                           "WHERE task_id = ?1",
                           task),
                     n);
    /* Every triple is in range and appears once. */
    assert_int_equal(
        q_int(db,
              "SELECT count(*) FROM task_events WHERE task_id = ?1 AND "
              "(json_type(payload, '$.p') IS NOT 'integer' OR "
              " json_type(payload, '$.t') IS NOT 'integer' OR "
              " json_type(payload, '$.i') IS NOT 'integer' OR "
              " json_extract(payload, '$.p') NOT BETWEEN 0 AND 1 OR "
              " json_extract(payload, '$.t') NOT BETWEEN 0 AND 3 OR "
              " json_extract(payload, '$.i') NOT BETWEEN 0 AND 499)",
              task),
        0);
    assert_int_equal(q_int(db,
                           "SELECT count(*) FROM (SELECT DISTINCT "
                           "json_extract(payload, '$.p'), "
                           "json_extract(payload, '$.t'), "
                           "json_extract(payload, '$.i') FROM task_events "
                           "WHERE task_id = ?1)",
                           task),
                     n);
    /* Each (p, t) has per_thread events. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT count(*) AS c FROM task_events "
             "WHERE task_id = ?1 GROUP BY json_extract(payload, '$.p'), "
             "json_extract(payload, '$.t')) WHERE c = %lld",
             (long long)per_thread);
    assert_int_equal(q_int(db, sql, task), N_PROCS * N_THREADS);
    /* Within a thread, a later i has a later seq. */
    assert_int_equal(q_int(db,
                           "SELECT count(*) FROM (SELECT seq, lag(seq) OVER ("
                           "PARTITION BY json_extract(payload, '$.p'), "
                           "json_extract(payload, '$.t') "
                           "ORDER BY json_extract(payload, '$.i')) AS prev "
                           "FROM task_events WHERE task_id = ?1) "
                           "WHERE prev IS NOT NULL AND prev >= seq",
                           task),
                     0);
    /* Every payload is valid JSON and the event fields are intact. */
    assert_int_equal(q_int(db,
                           "SELECT count(*) FROM task_events "
                           "WHERE task_id = ?1 AND (NOT json_valid(payload)"
                           " OR event_type IS NOT 'tick' OR actor IS NOT "
                           "'worker' OR phase IS NOT 'executing' OR "
                           "json_extract(payload, '$.note') IS NOT "
                           "'concurrent emit')",
                           task),
                     0);
}

static void test_two_processes_four_threads(void **state)
{
    (void)state;
    char *dir = new_tmpdir("concurrency");
    assert_non_null(dir);
    char *db = path_join(dir, "buffer.db");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    /* The buffer exists before the children start. */
    taskspan_close(open_path(db, 0));
    int statuses[N_PROCS];
    int n_ready = run_children(N_PROCS, child_emitter, db, statuses);
    for (int p = 0; p < N_PROCS; p++) {
        int status = statuses[p];
        if (!WIFEXITED(status) || WEXITSTATUS(status) != CHILD_OK) {
            print_error("child %d: %s %d\n", p,
                        WIFEXITED(status) ? "exit status" : "killed by signal",
                        WIFEXITED(status) ? WEXITSTATUS(status)
                                          : WTERMSIG(status));
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), CHILD_OK);
    }
    assert_int_equal(n_ready, N_PROCS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("  %d events from %d processes x %d threads in %.2f s\n",
                  N_PROCS * N_THREADS * (N_EVENTS + N_EVENTS / SIDE_EVERY),
                  N_PROCS, N_THREADS, secs);

    sqlite3 *s = sql_open(db);
    check_task(s, TASK_MAIN, N_PROCS * N_THREADS * N_EVENTS, N_EVENTS);
    check_task(s, TASK_SIDE, N_PROCS * N_THREADS * (N_EVENTS / SIDE_EVERY),
               N_EVENTS / SIDE_EVERY);
    assert_int_equal(q_int(s, "SELECT count(*) FROM task_events", NULL),
                     N_PROCS * N_THREADS * (N_EVENTS + N_EVENTS / SIDE_EVERY));
    sqlite3_close(s);

    /* The library reads the same: one main span, every event in seq order. */
    taskspan *ts = open_path(db, TASKSPAN_OPEN_READONLY);
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, ts, TASK_MAIN), TASKSPAN_OK);
    assert_int_equal(taskspan_spans_count(sp), 1);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    assert_string_equal(m->name, "main");
    assert_int_equal(m->n_events, N_PROCS * N_THREADS * N_EVENTS);
    for (size_t i = 0; i < m->n_events; i++) {
        assert_int_equal(m->events[i].seq, (int64_t)i + 1);
    }
    taskspan_spans_free(sp);
    taskspan_close(ts);

    /* A new emit continues right after the last seq. */
    int64_t seq = 0;
    ts = open_path(db, 0);
    assert_int_equal(emit_tick(ts, TASK_MAIN, 0, 0, 0, &seq), TASKSPAN_OK);
    assert_int_equal(seq, N_PROCS * N_THREADS * N_EVENTS + 1);
    taskspan_close(ts);

    rm_rf(dir);
    free(db);
    free(dir);
}

/* N processes open the same, not yet existing buffer at the same moment and
 * each records one event. taskspan_open() may run on any thread of any
 * process (its calls are independent), the library migrates a new buffer
 * under a write lock precisely so that concurrent first opens work, and
 * E_BUSY means "stayed locked past the timeout": with a 10 s timeout, every
 * open and every emit must succeed. */
#define OPEN_PROCS 4
#define OPEN_ROUNDS 8

static int child_open_new(int proc, void *arg, int ready_fd, int go_fd)
{
    const char *db = arg;
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;

    alarm(CHILD_DEADLINE_S);
    if (!barrier(ready_fd, go_fd)) {
        return CHILD_SYNC_FAILED;
    }
    o.db_path = db;
    o.traceparent = "";
    o.busy_timeout_ms = 10000;
    taskspan_code c = taskspan_open(&ts, &o, err);
    if (c != TASKSPAN_OK) {
        fprintf(stderr, "process %d: taskspan_open: %s: %s\n", proc,
                taskspan_strerror(c), err);
        return CHILD_OPEN_FAILED;
    }
    c = taskspan_emit_runner_spawn(NULL, ts, "opened", proc, NULL, NULL);
    if (c != TASKSPAN_OK) {
        fprintf(stderr, "process %d: emit: %s\n", proc, taskspan_errmsg(ts));
        taskspan_close(ts);
        return CHILD_EMIT_FAILED;
    }
    taskspan_close(ts);
    return CHILD_OK;
}

static void test_concurrent_open_new_buffer(void **state)
{
    (void)state;
    char *dir = new_tmpdir("concurrent-open");
    assert_non_null(dir);
    int failed_rounds = 0, failed_opens = 0;

    for (int r = 0; r < OPEN_ROUNDS; r++) {
        char name[32];
        snprintf(name, sizeof name, "new-%d.db", r);
        char *db = path_join(dir, name);
        int statuses[OPEN_PROCS];
        assert_int_equal(
            run_children(OPEN_PROCS, child_open_new, db, statuses),
            OPEN_PROCS);
        int ok = 0;
        for (int p = 0; p < OPEN_PROCS; p++) {
            if (WIFEXITED(statuses[p]) &&
                WEXITSTATUS(statuses[p]) == CHILD_OK) {
                ok++;
            } else {
                failed_opens++;
            }
        }
        if (ok != OPEN_PROCS) {
            failed_rounds++;
        } else {
            /* Every process recorded its event: seq 1..OPEN_PROCS. */
            sqlite3 *s = sql_open(db);
            assert_int_equal(q_int(s,
                                   "SELECT count(DISTINCT seq) FROM "
                                   "task_events WHERE task_id = ?1",
                                   "opened"),
                             OPEN_PROCS);
            assert_int_equal(q_int(s,
                                   "SELECT max(seq) FROM task_events "
                                   "WHERE task_id = ?1",
                                   "opened"),
                             OPEN_PROCS);
            sqlite3_close(s);
        }
        free(db);
    }
    if (failed_rounds > 0) {
        print_error("%d of %d rounds had a failed open or emit (%d of %d "
                    "processes)\n",
                    failed_rounds, OPEN_ROUNDS, failed_opens,
                    OPEN_ROUNDS * OPEN_PROCS);
    }
    rm_rf(dir);
    free(dir);
    assert_int_equal(failed_opens, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_processes_four_threads),
        cmocka_unit_test(test_concurrent_open_new_buffer),
    };
    unsetenv("TRACEPARENT");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
