/*
 * test_inspect.c -- inspecting a buffer through taskspan.h: the tasks and
 * their states, a task's events, the buffer's status, and gc.
 *
 * Real SQLite files in scratch directories, real HTTP over loopback (a
 * small collector in a thread that answers every request with a chosen
 * status), real processes for runners (a child killed with SIGKILL is a
 * crashed runner). What the calls report is checked against the tables
 * themselves, read with the sqlite3 C API.
 */
#include <taskspan/taskspan.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "common/test_util.h"

/* Undo migrations 4 -> 5 and 5 -> 6 (store_sqlite.c): a buffer as a
 * library of schema 4 left it. */
#define SCHEMA_7_TO_4                                                         \
    SCHEMA_7_TO_6                                                             \
    "ALTER TABLE tasks DROP COLUMN id_scheme;"                                \
    "DROP INDEX export_spans_pending;"                                        \
    "DROP INDEX export_spans_shared;"                                         \
    "DROP INDEX export_spans_rejected;"                                       \
    "ALTER TABLE export_spans DROP COLUMN trace_shared;"                      \
    "CREATE INDEX export_spans_state ON export_spans (state, id);"            \
    "CREATE INDEX export_spans_task ON export_spans (task_id);"

#define DAY_NS (86400LL * 1000000000LL)

/* ---- a collector: one request per connection, answered with status ---- */

typedef struct collector {
    int fd;
    int port;
    pthread_t thread;
    atomic_int status;   /* the HTTP status every request gets */
    atomic_int requests; /* requests read whole, counted before the answer */
    char endpoint[64];
    /* The first 64 KiB of the last request's body (written by the
     * collector's thread before it answers). */
    pthread_mutex_t body_lock; /* body and body_len */
    uint8_t body[65536];
    size_t body_len;
} collector;

/* Read one request (headers, then Content-Length bytes of body), keeping
 * the start of its body in col. */
static int read_request(collector *col, int c)
{
    char buf[65536];
    size_t have = 0;
    char *end = NULL;
    while (end == NULL) {
        if (have + 1 >= sizeof buf) {
            return -1;
        }
        ssize_t n = recv(c, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0) {
            return -1;
        }
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    long len = 0;
    for (char *p = buf; p != NULL && p < end; p = strstr(p, "\r\n")) {
        p += p == buf ? 0 : 2;
        if (strncasecmp(p, "Content-Length:", 15) == 0) {
            len = strtol(p + 15, NULL, 10);
        }
        if (p == buf) {
            p++;
        }
    }
    long body = (long)(have - (size_t)(end + 4 - buf));
    pthread_mutex_lock(&col->body_lock);
    memcpy(col->body, end + 4, (size_t)body);
    col->body_len = (size_t)body;
    pthread_mutex_unlock(&col->body_lock);
    while (body < len) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
            return -1;
        }
        pthread_mutex_lock(&col->body_lock);
        if (col->body_len + (size_t)n <= sizeof col->body) {
            memcpy(col->body + col->body_len, buf, (size_t)n);
            col->body_len += (size_t)n;
        }
        pthread_mutex_unlock(&col->body_lock);
        body += (long)n;
    }
    return 0;
}

static void *collector_main(void *arg)
{
    collector *col = arg;
    for (;;) {
        int c = accept(col->fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        if (read_request(col, c) == 0) {
            char resp[256];
            int st = atomic_load(&col->status);
            /* Before the answer: the exporter may return from its flush
             * as soon as it has read it. */
            atomic_fetch_add(&col->requests, 1);
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 %d %s\r\nContent-Type: "
                             "application/x-protobuf\r\nContent-Length: 0"
                             "\r\nConnection: close\r\n\r\n",
                             st, st == 200 ? "OK" : "Bad Request");
            (void)send(c, resp, (size_t)n, MSG_NOSIGNAL);
        }
        close(c);
    }
    return NULL;
}

static void collector_start(collector *col)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    memset(col, 0, sizeof *col);
    pthread_mutex_init(&col->body_lock, NULL);
    atomic_store(&col->status, 200);
    col->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(col->fd >= 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(col->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(col->fd, 16), 0);
    assert_int_equal(getsockname(col->fd, (struct sockaddr *)&a, &len), 0);
    col->port = ntohs(a.sin_port);
    snprintf(col->endpoint, sizeof col->endpoint,
             "http://127.0.0.1:%d/v1/traces", col->port);
    assert_int_equal(pthread_create(&col->thread, NULL, collector_main, col),
                     0);
}

static void collector_stop(collector *col)
{
    shutdown(col->fd, SHUT_RDWR);
    close(col->fd);
    pthread_join(col->thread, NULL);
    pthread_mutex_destroy(&col->body_lock);
}

/* A loopback endpoint where nothing listens. */
static void dead_endpoint(char *out, size_t n)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    snprintf(out, n, "http://127.0.0.1:%d/v1/traces", ntohs(a.sin_port));
}

/* ---- recording ----------------------------------------------------------- */

/* A recorder on path that exports to endpoint when it flushes. */
static taskspan *open_export(const char *path, const char *endpoint)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;
    o.db_path = path;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF; /* flush exports in our thread */
    o.endpoint = endpoint;
    o.close_timeout_ms = -1;
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        print_error("taskspan_open: %s\n", err);
    }
    assert_int_equal(rc, TASKSPAN_OK);
    return ts;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* One event at time t (0: now) with up to two attributes. */
static void ev(taskspan *ts, const char *task, const char *type,
               const char *span, int64_t t, const taskspan_attr *attrs,
               size_t n)
{
    taskspan_event e = TASKSPAN_EVENT_INIT;
    e.task_id = task;
    e.event_type = type;
    e.span_key = span;
    e.parent_span_key = span != NULL && strcmp(span, "main") != 0 ? "main"
                                                                  : NULL;
    e.actor = "runner";
    e.ts_ns = t;
    e.attrs = attrs;
    e.n_attrs = n;
    taskspan_code rc = taskspan_emit(NULL, ts, &e);
    if (rc != TASKSPAN_OK) {
        print_error("emit %s %s: %s\n", task, type, taskspan_errmsg(ts));
    }
    assert_int_equal(rc, TASKSPAN_OK);
}

static void spawn(taskspan *ts, const char *task, int64_t pid, int64_t t)
{
    taskspan_attr a = taskspan_attr_int("runner_pid", pid);
    ev(ts, task, "runner_spawn", "main", t, &a, 1);
}

/* A whole run at time t (0: now): spawn (this process), work item w1 done (or
 * failed), runner_exit with reason. 5 events, 2 spans. */
static void run_task(taskspan *ts, const char *task, int64_t t,
                     const char *reason, int item_fails)
{
    taskspan_attr exit_attrs[2] = {
        taskspan_attr_int("runner_pid", (int64_t)getpid()),
        taskspan_attr_str("exit_reason", reason),
    };
    taskspan_attr err = taskspan_attr_str("error", "it broke");
    t = t != 0 ? t : now_ns();
    spawn(ts, task, (int64_t)getpid(), t);
    ev(ts, task, "work_item_start", "work_w1", t + 1, NULL, 0);
    ev(ts, task, "lease_acquired", "work_w1", t + 2, NULL, 0);
    ev(ts, task, item_fails ? "work_item_failed" : "work_item_done", "work_w1",
       t + 3, item_fails ? &err : NULL, item_fails ? 1 : 0);
    ev(ts, task, "runner_exit", "main", t + 4, exit_attrs,
       reason != NULL ? 2 : 1);
}

/* The pid of a process that was running and is gone: a child killed with
 * SIGKILL and reaped. */
static int64_t killed_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;) {
            pause();
        }
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    return (int64_t)pid;
}

static const taskspan_task_info *find_task(const taskspan_task_list *l,
                                           const char *task)
{
    for (size_t i = 0; i < taskspan_task_list_count(l); i++) {
        const taskspan_task_info *t = taskspan_task_list_get(l, i);
        if (strcmp(t->task_id, task) == 0) {
            return t;
        }
    }
    print_error("task %s is not listed\n", task);
    fail();
    return NULL;
}

static int64_t rows(const char *db_path, const char *sql, const char *task)
{
    sqlite3 *db = sql_open(db_path);
    int64_t n = sql_int(db, sql, task, 0, NULL);
    sqlite3_close(db);
    return n;
}

static int64_t events_of(const char *db, const char *task)
{
    return rows(db, "SELECT count(*) FROM task_events WHERE task_id = ?1",
                task);
}

/* A task's export marks as one number: export_live * 100 + export_seq. */
static int64_t export_marks(const char *db, const char *task)
{
    return rows(db,
                "SELECT export_live * 100 + export_seq FROM tasks "
                "WHERE task_id = ?1",
                task);
}

/* The task's closed spans the exporters found (its export progress,
 * schema 8), settled or not; 0 once gc pruned it. */
static int64_t spans_of(const char *db, const char *task)
{
    return rows(db,
                "SELECT max(export_closed, export_done) FROM tasks"
                " WHERE task_id = ?1",
                task);
}

/* The task's closed spans settled (delivered or rejected). */
static int64_t settled_of(const char *db, const char *task)
{
    return rows(db, "SELECT export_done FROM tasks WHERE task_id = ?1", task);
}

static int setup(void **state)
{
    return fx_open(state, "inspect");
}

/* ---- states -------------------------------------------------------------- */

static void test_task_states(void **state)
{
    fx *f = *state;
    int64_t t0 = now_ns() - DAY_NS;
    taskspan_attr end_ok = taskspan_attr_int("exit_code", 0);

    run_task(f->ts, "a-finished", t0, "done", 0);
    run_task(f->ts, "b-failed-exit", t0 + 100, "cancelled", 0);
    run_task(f->ts, "c-failed-item", t0 + 200, "done", 1);
    spawn(f->ts, "d-running", (int64_t)getpid(), t0 + 300);
    ev(f->ts, "d-running", "phase_enter", "main", t0 + 301, NULL, 0);
    spawn(f->ts, "e-crashed", killed_pid(), t0 + 400);
    ev(f->ts, "e-crashed", "work_item_start", "work_w1", t0 + 401, NULL, 0);
    /* No runner_spawn at all: open while a span is open, finished once
     * every span closed (a shell runner's `taskspan exec` steps). */
    ev(f->ts, "f-no-runner-open", "exec_start", "exec_make", t0 + 500, NULL,
       0);
    ev(f->ts, "g-no-runner-done", "exec_start", "exec_make", t0 + 600, NULL,
       0);
    ev(f->ts, "g-no-runner-done", "exec_end", "exec_make", t0 + 601, &end_ok,
       1);
    /* A crashed incarnation that a second runner took over and finished. */
    spawn(f->ts, "h-recovered", killed_pid(), t0 + 700);
    run_task(f->ts, "h-recovered", t0 + 710, "done", 0);
    /* runner_exit without an exit_reason counts as a success. */
    run_task(f->ts, "i-no-reason", t0 + 800, NULL, 0);

    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, f->ts), TASKSPAN_OK);
    assert_int_equal(taskspan_task_list_count(l), 9);
    /* In the order of their first event. */
    assert_string_equal(taskspan_task_list_get(l, 0)->task_id, "a-finished");
    assert_string_equal(taskspan_task_list_get(l, 8)->task_id, "i-no-reason");
    assert_null(taskspan_task_list_get(l, 9));

    const taskspan_task_info *t = find_task(l, "a-finished");
    assert_int_equal(t->state, TASKSPAN_TASK_FINISHED);
    assert_int_equal(t->n_events, 5);
    assert_int_equal(t->last_seq, 5);
    assert_int_equal(t->incarnations, 1);
    assert_int_equal(t->first_ns, t0);
    assert_int_equal(t->last_ns, t0 + 4);
    assert_int_equal(t->runner_pid, (int64_t)getpid());
    assert_string_equal(t->exit_reason, "done");
    assert_int_equal(t->spans_pending + t->spans_delivered, 0);

    t = find_task(l, "b-failed-exit");
    assert_int_equal(t->state, TASKSPAN_TASK_FAILED);
    assert_string_equal(t->exit_reason, "cancelled");
    assert_int_equal(find_task(l, "c-failed-item")->state,
                     TASKSPAN_TASK_FAILED);
    assert_int_equal(find_task(l, "d-running")->state, TASKSPAN_TASK_RUNNING);
    assert_null(find_task(l, "d-running")->exit_reason);
    t = find_task(l, "e-crashed");
    assert_int_equal(t->state, TASKSPAN_TASK_CRASHED);
    assert_true(t->runner_pid > 0);
    assert_int_equal(find_task(l, "f-no-runner-open")->state,
                     TASKSPAN_TASK_RUNNING);
    assert_int_equal(find_task(l, "g-no-runner-done")->state,
                     TASKSPAN_TASK_FINISHED);
    t = find_task(l, "h-recovered");
    assert_int_equal(t->state, TASKSPAN_TASK_FINISHED);
    assert_int_equal(t->incarnations, 2);
    assert_int_equal(t->n_events, 6);
    assert_int_equal(find_task(l, "i-no-reason")->state,
                     TASKSPAN_TASK_FINISHED);
    taskspan_task_list_free(l);

    assert_string_equal(taskspan_task_state_name(TASKSPAN_TASK_CRASHED),
                        "crashed");
    assert_string_equal(taskspan_task_state_name((taskspan_task_state)99),
                        "unknown");
    assert_int_equal(taskspan_list_tasks(NULL, f->ts), TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_list_tasks(&l, NULL), TASKSPAN_E_INVALID_ARG);
    assert_null(l);
    assert_int_equal(taskspan_task_list_count(NULL), 0);
    taskspan_task_list_free(NULL);
}

static void test_empty_buffer_lists_nothing(void **state)
{
    fx *f = *state;
    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, f->ts), TASKSPAN_OK);
    assert_non_null(l);
    assert_int_equal(taskspan_task_list_count(l), 0);
    taskspan_task_list_free(l);
}

/* ---- events -------------------------------------------------------------- */

static void test_task_events(void **state)
{
    fx *f = *state;
    int64_t seq = 0;
    const char *files[] = {"a.c", "b.c"};

    assert_int_equal(
        taskspan_emit_runner_spawn(&seq, f->ts, "T", 42, "1.0", "start"),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_phase_enter(NULL, f->ts, "T", "executing", NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_work_item_start(NULL, f->ts, "T", "wi_1", "code", NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_work_item_done(NULL, f->ts, "T", "wi_1",
                                                  "Parser", files, 2, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_runner_exit(&seq, f->ts, "T", 42, "done", 1, NULL),
        TASKSPAN_OK);
    assert_int_equal(seq, 5);

    taskspan_event_list *l = NULL;
    assert_int_equal(taskspan_task_events(&l, f->ts, "T"), TASKSPAN_OK);
    assert_int_equal(taskspan_event_list_count(l), 5);
    sqlite3 *db = sql_open(f->db);
    for (size_t i = 0; i < 5; i++) {
        const taskspan_event_row *e = taskspan_event_list_get(l, i);
        sqlite3_stmt *st = sql_prep(db,
                                    "SELECT event_type, span_id, payload, "
                                    "ts_ns, incarnation FROM task_events "
                                    "WHERE task_id = ?1 AND seq = ?2",
                                    "T", (int64_t)i + 1, NULL);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(e->seq, (int64_t)i + 1);
        assert_string_equal(e->event_type,
                            (const char *)sqlite3_column_text(st, 0));
        assert_string_equal(e->span_key,
                            (const char *)sqlite3_column_text(st, 1));
        assert_string_equal(e->payload_json,
                            (const char *)sqlite3_column_text(st, 2));
        assert_int_equal(e->ts_ns, sqlite3_column_int64(st, 3));
        assert_int_equal(e->incarnation, 1);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    const taskspan_event_row *e = taskspan_event_list_get(l, 0);
    assert_string_equal(e->event_type, "runner_spawn");
    assert_string_equal(e->actor, "runner");
    assert_null(e->parent_span_key);
    assert_null(e->phase);
    assert_string_equal(e->payload_json, "{\"runner_pid\":42,\"runner_"
                                         "version\":\"1.0\",\"explanation\":"
                                         "\"start\"}");
    e = taskspan_event_list_get(l, 1);
    assert_string_equal(e->phase, "executing");
    e = taskspan_event_list_get(l, 3);
    assert_string_equal(e->span_key, "work_wi_1");
    assert_string_equal(e->parent_span_key, "main");
    assert_string_equal(e->actor, "worker");
    assert_null(taskspan_event_list_get(l, 5));
    taskspan_event_list_free(l);

    l = (taskspan_event_list *)&seq; /* must be reset to NULL */
    assert_int_equal(taskspan_task_events(&l, f->ts, "nope"),
                     TASKSPAN_E_NOT_FOUND);
    assert_null(l);
    assert_non_null(strstr(taskspan_errmsg(f->ts), "no events for task"));
    assert_int_equal(taskspan_task_events(&l, f->ts, ""),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_task_events(NULL, f->ts, "T"),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_event_list_count(NULL), 0);
    taskspan_event_list_free(NULL);
}

/* A read-only recorder reads everything, while a writer goes on. */
static void test_readonly_reads(void **state)
{
    fx *f = *state;
    run_task(f->ts, "R", 0, "done", 0);
    taskspan *ro = open_path(f->db, TASKSPAN_OPEN_READONLY);
    taskspan_task_list *l = NULL;
    taskspan_event_list *e = NULL;
    taskspan_buffer_status st;
    assert_int_equal(taskspan_list_tasks(&l, ro), TASKSPAN_OK);
    assert_int_equal(taskspan_task_list_count(l), 1);
    assert_int_equal(taskspan_task_events(&e, ro, "R"), TASKSPAN_OK);
    assert_int_equal(taskspan_event_list_count(e), 5);
    run_task(f->ts, "R2", 0, "done", 0);
    assert_int_equal(taskspan_get_buffer_status(&st, ro), TASKSPAN_OK);
    assert_int_equal(st.events, 10);
    taskspan_gc_report r;
    assert_int_equal(taskspan_gc(&r, ro, 0), TASKSPAN_E_READONLY);
    assert_int_equal(r.tasks_pruned, 0);
    taskspan_task_list_free(l);
    taskspan_event_list_free(e);
    taskspan_close(ro);
}

/* ---- status -------------------------------------------------------------- */

static void test_buffer_status(void **state)
{
    fx *f = *state;
    collector col;
    char dead[64];
    taskspan_buffer_status st;

    collector_start(&col);
    dead_endpoint(dead, sizeof dead);
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "A", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    atomic_store(&col.status, 400);
    run_task(ts, "B", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK); /* rejected */
    taskspan_close(ts);
    collector_stop(&col);

    ts = open_export(f->db, dead);
    int64_t before = now_ns();
    run_task(ts, "C", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 300), TASKSPAN_E_TIMEOUT);

    assert_int_equal(taskspan_get_buffer_status(&st, ts), TASKSPAN_OK);
    assert_string_equal(st.path, f->db);
    assert_true(st.db_bytes > 0);
    {
        /* The version the file itself carries, whatever the release. */
        sqlite3 *db = sql_open(f->db);
        int64_t v = sql_int(db, "PRAGMA user_version", NULL, 0, NULL);
        sqlite3_close(db);
        assert_true(v >= 2);
        assert_int_equal(st.schema_version, v);
    }
    assert_int_equal(st.tasks, 3);
    assert_int_equal(st.events, 15);
    assert_int_equal(st.spans_delivered, 2);
    assert_int_equal(st.spans_rejected, 2);
    assert_int_equal(st.spans_pending, 2);
    assert_string_equal(st.endpoint, dead);
    assert_non_null(strstr(st.last_error, "127.0.0.1"));
    assert_true(st.last_error_ns >= before);
    assert_string_equal(st.oldest_pending_task, "C");
    assert_true(st.oldest_pending_ns >= before);
    /* The same numbers as the tables. */
    assert_int_equal(rows(f->db, SQL_SPANS_PENDING " WHERE ?1 IS NULL", NULL),
                     2);
    assert_int_equal(rows(f->db, SQL_SPANS_DELIVERED " AND ?1 IS NULL", NULL),
                     2);
    assert_int_equal(rows(f->db, SQL_SPANS_REJECTED " AND ?1 IS NULL", NULL),
                     2);
    taskspan_close(ts);

    /* A read-only recorder has no export configuration: the endpoint is
     * the one this process's environment gives. */
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9", 1);
    ts = open_path(f->db, TASKSPAN_OPEN_READONLY);
    assert_int_equal(taskspan_get_buffer_status(&st, ts), TASKSPAN_OK);
    assert_string_equal(st.endpoint, "http://127.0.0.1:9/v1/traces");
    assert_int_equal(st.spans_pending, 2);
    unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    assert_int_equal(taskspan_get_buffer_status(NULL, ts),
                     TASKSPAN_E_INVALID_ARG);
    taskspan_close(ts);
}

/* ---- gc ------------------------------------------------------------------ */

static void test_gc_prunes_only_delivered(void **state)
{
    fx *f = *state;
    collector col;
    char dead[64];
    int64_t old = now_ns() - 10 * DAY_NS;
    taskspan_gc_report r;

    collector_start(&col);
    dead_endpoint(dead, sizeof dead);
    /* Delivered: A and B (old); rejected: R (old). */
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "A", old, "done", 0);
    run_task(ts, "B", old + 10, "failed", 1);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    atomic_store(&col.status, 400);
    run_task(ts, "R", old + 20, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    atomic_store(&col.status, 200);
    /* Recent: E (delivered, but within the retention). */
    run_task(ts, "E", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    taskspan_close(ts);
    /* Pending: C (old, its export failed); never exported: F (old);
     * running: D (old). */
    ts = open_export(f->db, dead);
    run_task(ts, "C", old + 30, "done", 0);
    assert_int_equal(taskspan_flush(ts, 300), TASKSPAN_E_TIMEOUT);
    taskspan_close(ts);
    run_task(f->ts, "F", old + 40, "done", 0);
    spawn(f->ts, "D", (int64_t)getpid(), old + 50);
    assert_int_equal(spans_of(f->db, "C"), 2);

    /* The tasks row's last_seq is only a floor while events are there. */
    int64_t seq_a = rows(
        f->db, "SELECT max(seq) FROM task_events WHERE task_id=?1", "A");
    int64_t e_before = rows(f->db,
                            "SELECT count(*) FROM task_events WHERE "
                            "task_id NOT IN ('A','B','R') AND ?1 "
                            "IS NULL",
                            NULL);
    assert_int_equal(taskspan_gc(&r, f->ts, 7 * 86400), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 3);
    assert_int_equal(r.tasks_kept, 3); /* C, F, D; E is recent */
    assert_int_equal(r.events_deleted, 15);
    assert_int_equal(r.spans_deleted, 6);
    assert_true(r.bytes_before > 0 && r.bytes_after > 0);
    /* Spans are recorded without their bytes (encoded again when sent
     * again), so export_bodies, which holds the bodies of older buffers,
     * stays empty. Whether whole pages came free (r.bytes_free) depends
     * on how the few small rows of this test share pages: not asserted. */
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_bodies WHERE ?1 IS "
                          "NULL",
                          NULL),
                     0);
    for (const char *const *t = (const char *const[]){"A", "B", "R", NULL};
         *t != NULL; t++) {
        assert_int_equal(events_of(f->db, *t), 0);
        assert_int_equal(spans_of(f->db, *t), 0);
        /* The task row stays, with its seq. */
        assert_int_equal(
            rows(f->db, "SELECT count(*) FROM tasks WHERE task_id=?1", *t), 1);
    }
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM task_events WHERE task_id "
                          "NOT IN ('A','B','R') AND ?1 IS NULL",
                          NULL),
                     e_before);
    assert_int_equal(spans_of(f->db, "C"), 2); /* pending: kept */
    assert_int_equal(spans_of(f->db, "E"), 2);

    /* The pruned task reads as pruned, everywhere. */
    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, f->ts), TASKSPAN_OK);
    const taskspan_task_info *t = find_task(l, "A");
    assert_int_equal(t->state, TASKSPAN_TASK_PRUNED);
    assert_int_equal(t->n_events, 0);
    assert_int_equal(t->last_seq, seq_a);
    assert_int_equal(find_task(l, "C")->state, TASKSPAN_TASK_FINISHED);
    assert_int_equal(find_task(l, "D")->state, TASKSPAN_TASK_RUNNING);
    taskspan_task_list_free(l);
    taskspan_spans *spans = NULL;
    assert_int_equal(taskspan_task_spans(&spans, f->ts, "A"),
                     TASKSPAN_E_NOT_FOUND);
    taskspan_event_list *el = NULL;
    assert_int_equal(taskspan_task_events(&el, f->ts, "A"),
                     TASKSPAN_E_NOT_FOUND);
    assert_non_null(strstr(taskspan_errmsg(f->ts), "pruned by gc"));

    /* An exporter finds nothing of the pruned tasks to send again: only
     * C's pending spans and F's go out. */
    int before = atomic_load(&col.requests);
    ts = open_export(f->db, col.endpoint);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    taskspan_close(ts);
    assert_true(atomic_load(&col.requests) > before);
    for (const char *const *p = (const char *const[]){"A", "B", "R", NULL};
         *p != NULL; p++) {
        assert_int_equal(spans_of(f->db, *p), 0);
    }
    assert_int_equal(settled_of(f->db, "C") + settled_of(f->db, "F"), 4);

    /* A late event continues the seq without a gap, and puts the task
     * back among those the exporters look at, past what they examined. */
    int64_t seq = 0;
    assert_int_equal(
        rows(f->db, "SELECT export_live FROM tasks WHERE task_id = ?1", "A"),
        0);
    assert_int_equal(taskspan_emit_phase_enter(&seq, f->ts, "A", "late", NULL),
                     TASKSPAN_OK);
    assert_int_equal(seq, seq_a + 1);
    assert_int_equal(
        rows(f->db, "SELECT export_live FROM tasks WHERE task_id = ?1", "A"),
        1);
    assert_true(rows(f->db, "SELECT export_seq FROM tasks WHERE task_id = ?1",
                     "A") < seq);

    /* A second gc with everything delivered now prunes C and F. */
    assert_int_equal(taskspan_gc(&r, f->ts, 7 * 86400), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 2);
    assert_int_equal(events_of(f->db, "C"), 0);
    assert_int_equal(events_of(f->db, "D"), 1);
    assert_int_equal(events_of(f->db, "E"), 5);
    collector_stop(&col);
}

/* The task holding the buffer's newest event is pruned like any other
 * (events have no row id that could be handed out again), and an event
 * that comes for it after the prune continues its seq and brings it back
 * before the exporters, who examine it again. */
static void test_gc_prunes_newest_task(void **state)
{
    fx *f = *state;
    collector col;
    taskspan_gc_report r;
    int64_t seq = 0;

    collector_start(&col);
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "old1", now_ns() - 2 * DAY_NS, "done", 0);
    run_task(ts, "old2", now_ns() - 2 * DAY_NS, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(taskspan_gc(&r, ts, 0), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 2);
    assert_int_equal(r.tasks_kept, 0);
    assert_int_equal(events_of(f->db, "old1"), 0);
    assert_int_equal(events_of(f->db, "old2"), 0);
    assert_int_equal(taskspan_emit_phase_enter(&seq, ts, "old2", "late", NULL),
                     TASKSPAN_OK);
    assert_int_equal(seq, 6);
    assert_int_equal(rows(f->db,
                          "SELECT export_live FROM tasks WHERE task_id = ?1",
                          "old2"),
                     1);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(
        rows(f->db, "SELECT export_seq FROM tasks WHERE task_id = ?1", "old2"),
        6);
    taskspan_close(ts);
    collector_stop(&col);

    assert_int_equal(taskspan_gc(&r, f->ts, -1), TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_gc(NULL, NULL, 0), TASKSPAN_E_INVALID_ARG);
    /* A retention longer than the epoch keeps everything. */
    assert_int_equal(taskspan_gc(NULL, f->ts, INT64_MAX), TASKSPAN_OK);
    assert_int_equal(events_of(f->db, "old2"), 1);
}

/* A task with an event no exporter has examined is kept even when its
 * spans were delivered: an exporter pass may be building its spans right
 * now, and would record them again after a prune. */
static void test_gc_waits_for_the_exporters(void **state)
{
    fx *f = *state;
    collector col;
    taskspan_gc_report r;

    collector_start(&col);
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "old1", now_ns() - 2 * DAY_NS, "done", 0);
    run_task(ts, "old2", now_ns() - 2 * DAY_NS, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    run_task(ts, "newest", 0, "done", 0);
    /* As if the last discovery pass had been cut short. */
    sqlite3 *db = sql_open(f->db);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE tasks SET export_seq = 0, "
                                  "export_live = 1",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 3);
    sqlite3_close(db);
    assert_int_equal(taskspan_gc(&r, ts, 0), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 0);
    assert_int_equal(r.tasks_kept, 3);
    assert_int_equal(events_of(f->db, "old1"), 5);
    /* A full pass examines them again. */
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(taskspan_gc(&r, ts, 0), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 3);
    assert_int_equal(events_of(f->db, "old1"), 0);
    assert_int_equal(events_of(f->db, "newest"), 0);
    taskspan_close(ts);
    collector_stop(&col);
}

/* gc beside a runner that keeps recording: every emit succeeds, seq stays
 * gap-free, and every old delivered task is pruned. */
typedef struct runner_arg {
    const char *db;
    int n;
    atomic_int failures;
} runner_arg;

static void *runner_thread(void *arg)
{
    runner_arg *a = arg;
    taskspan *ts = NULL;
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = a->db;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    if (taskspan_open(&ts, &o, NULL) != TASKSPAN_OK) {
        atomic_fetch_add(&a->failures, 1);
        return NULL;
    }
    for (int i = 0; i < a->n; i++) {
        if (taskspan_emit_phase_progress(NULL, ts, "live", "executing", i,
                                         a->n, NULL) != TASKSPAN_OK) {
            atomic_fetch_add(&a->failures, 1);
        }
    }
    taskspan_close(ts);
    return NULL;
}

static void test_gc_beside_a_runner(void **state)
{
    fx *f = *state;
    collector col;
    char name[32];
    int n_tasks = getenv("TASKSPAN_WRAP") != NULL ? 40 : 150;
    int64_t old = now_ns() - 30 * DAY_NS;

    collector_start(&col);
    taskspan *ts = open_export(f->db, col.endpoint);
    for (int i = 0; i < n_tasks; i++) {
        snprintf(name, sizeof name, "old-%03d", i);
        run_task(ts, name, old + i * 10, "done", 0);
    }
    assert_int_equal(taskspan_flush(ts, 30000), TASKSPAN_OK);
    taskspan_close(ts);
    collector_stop(&col);

    runner_arg a = {.db = f->db, .n = 400};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, runner_thread, &a), 0);
    /* Rounds until every old task is gone: the first rounds may keep the
     * one holding the newest event, until the runner records. */
    uint64_t pruned = 0;
    for (int round = 0; round < 200 && pruned < (uint64_t)n_tasks; round++) {
        taskspan_gc_report r;
        assert_int_equal(taskspan_gc(&r, f->ts, 86400), TASKSPAN_OK);
        pruned += r.tasks_pruned;
        if (r.tasks_pruned == 0) {
            struct timespec nap = {0, 10000000};
            nanosleep(&nap, NULL);
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&a.failures), 0);
    assert_int_equal(pruned, (uint64_t)n_tasks);
    assert_int_equal(events_of(f->db, "live"), 400);
    assert_int_equal(rows(f->db,
                          "SELECT max(seq) - min(seq) + 1 FROM task_events "
                          "WHERE task_id = ?1",
                          "live"),
                     400);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM task_events WHERE task_id "
                          "LIKE 'old-%' AND ?1 IS NULL",
                          NULL),
                     0);
}

/* ---- pruning without taskspan_gc(): the cap and the retention ----------- */

/* A buffer at its cap prunes ended, delivered tasks to make room before it
 * refuses an emit: 600 tasks (3000 events, several times what 256 KiB
 * holds) all record, and only delivered ones are gone. */
static void test_cap_prunes_delivered(void **state)
{
    fx *f = *state;
    collector col;
    char err[TASKSPAN_ERRBUF_SIZE], task[32];
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan_capacity cap;
    taskspan *ts = NULL;

    collector_start(&col);
    o.db_path = path_join(f->dir, "capped.db");
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF; /* flush exports in our thread */
    o.endpoint = col.endpoint;
    o.close_timeout_ms = -1;
    o.max_bytes = 256 * 1024;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    for (int i = 0; i < 600; i++) {
        snprintf(task, sizeof task, "cap-%03d", i);
        run_task(ts, task, 0, "done", 0); /* asserts every emit is OK */
        assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    }
    assert_int_equal(taskspan_get_capacity(&cap, ts), TASKSPAN_OK);
    assert_int_equal(cap.refused_cap, 0);
    assert_true(cap.tasks_pruned_for_room > 0);
    assert_true(cap.used_bytes <= 2 * cap.max_bytes);
    /* The newest task is whole; the pruned ones kept their seq counter. */
    assert_int_equal(events_of(o.db_path, "cap-599"), 5);
    assert_int_equal(events_of(o.db_path, "cap-000"), 0);
    assert_int_equal(rows(o.db_path,
                          "SELECT last_seq FROM tasks WHERE task_id=?1",
                          "cap-000"),
                     5);
    taskspan_close(ts);
    collector_stop(&col);
    free((char *)o.db_path);
}

/* The background exporter prunes what was delivered longer ago than
 * TASKSPAN_RETENTION_SECONDS, and nothing recent. */
static void test_exporter_applies_retention(void **state)
{
    fx *f = *state;
    collector col;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;

    collector_start(&col);
    setenv("TASKSPAN_RETENTION_SECONDS", "1", 1);
    setenv("OTEL_BSP_SCHEDULE_DELAY", "50", 1);
    unsetenv("OTEL_SDK_DISABLED");
    o.db_path = path_join(f->dir, "retained.db");
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_ON;
    o.endpoint = col.endpoint;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    run_task(ts, "old", now_ns() - 2 * DAY_NS, "done", 0);
    run_task(ts, "new", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    /* Bounded: the retention pass runs at most every second. */
    for (int i = 0; i < 100 && events_of(o.db_path, "old") > 0; i++) {
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    assert_int_equal(events_of(o.db_path, "old"), 0);
    assert_int_equal(events_of(o.db_path, "new"), 5);
    taskspan_close(ts);
    setenv("TASKSPAN_RETENTION_SECONDS", "0", 1);
    unsetenv("OTEL_BSP_SCHEDULE_DELAY");
    setenv("OTEL_SDK_DISABLED", "true", 1);
    collector_stop(&col);
    free((char *)o.db_path);
}

/* ---- schema 4 ------------------------------------------------------------ */

/* The one text value sql gives on db_path ("" for NULL), malloc'd. */
static char *query_text(const char *db_path, const char *sql)
{
    sqlite3 *db = sql_open(db_path);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *t = (const char *)sqlite3_column_text(st, 0);
    char *out = strdup(t != NULL ? t : "");
    assert_non_null(out);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* How many times needle (n bytes) occurs in the collector's last body. */
static int body_count(collector *col, const void *needle, size_t n)
{
    int count = 0;
    pthread_mutex_lock(&col->body_lock);
    for (size_t i = 0; i + n <= col->body_len; i++) {
        count += memcmp(col->body + i, needle, n) == 0;
    }
    pthread_mutex_unlock(&col->body_lock);
    return count;
}

/* A schema-3 buffer (bodies inside export_spans) with spans waiting opens
 * as schema 9: the pending rows go, with the bodies stored in them, and
 * the spans go out encoded again from their task's events, which give the
 * same bytes. The test gives the two spans a body by hand, a Span message
 * holding only a name no encoding has: it must not be sent. */
static void test_schema3_pending_bodies(void **state)
{
    fx *f = *state;
    collector col;
    char dead[64];
    /* Span.name (field 5, length-delimited) = "from-bodies". */
    static const uint8_t marker[] = {0x2a, 11,  'f', 'r', 'o', 'm', '-',
                                     'b',  'o', 'd', 'i', 'e', 's'};
    /* Span.name = "work_w1" and "main", as the encoder writes them. */
    static const uint8_t work_name[] = {0x2a, 7,   'w', 'o', 'r',
                                        'k',  '_', 'w', '1'};
    static const uint8_t main_name[] = {0x2a, 4, 'm', 'a', 'i', 'n'};

    dead_endpoint(dead, sizeof dead);
    taskspan *ts = open_export(f->db, dead);
    run_task(ts, "M", 0, "done", 0);
    assert_int_equal(taskspan_flush(ts, 300), TASKSPAN_E_TIMEOUT);
    taskspan_close(ts);
    assert_int_equal(spans_of(f->db, "M"), 2);
    assert_int_equal(settled_of(f->db, "M"), 0);

    /* Back to schema 3, as a buffer written by an old library. */
    spans_rows_as_schema_7(f->db);
    sqlite3 *db = sql_open(f->db);
    assert_int_equal(
        sqlite3_exec(
            db,
            "BEGIN;" SCHEMA_10_TO_9 SCHEMA_9_TO_8 SCHEMA_8_TO_7
            "INSERT INTO export_bodies (id, body) SELECT id, "
            "  x'2a0b66726f6d2d626f64696573' FROM export_spans;"
            "ALTER TABLE export_spans ADD COLUMN body BLOB;"
            "UPDATE export_spans SET body = (SELECT b.body FROM "
            "  export_bodies b WHERE b.id = export_spans.id);"
            "DROP TRIGGER export_bodies_gone;"
            "DROP TABLE export_bodies;"
            "ALTER TABLE export_spans DROP COLUMN body_len;" SCHEMA_7_TO_4
            "PRAGMA user_version = 3;"
            "COMMIT;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_spans WHERE state = 0"
                          " AND length(body) = 13 AND ?1 IS NULL",
                          NULL),
                     2);

    collector_start(&col);
    ts = open_export(f->db, col.endpoint);
    assert_int_equal(rows(f->db, "PRAGMA user_version", NULL), 10);
    assert_int_equal(rows(f->db,
                          "SELECT (SELECT count(*) FROM export_bodies) +"
                          " (SELECT count(*) FROM export_spans)"
                          " WHERE ?1 IS NULL",
                          NULL),
                     0);
    assert_int_equal(spans_of(f->db, "M"), 2);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(settled_of(f->db, "M"), 2);
    /* The last request carried both spans, encoded from the events: the
     * work span by its name, and not the stored bytes. */
    assert_int_equal(body_count(&col, marker, sizeof marker), 0);
    assert_int_equal(body_count(&col, work_name, sizeof work_name), 1);
    assert_int_equal(body_count(&col, main_name, sizeof main_name), 1);
    taskspan_export_stats st;
    assert_int_equal(taskspan_get_export_stats(&st, ts), TASKSPAN_OK);
    assert_int_equal(st.spans_delivered, 2);
    assert_int_equal(st.spans_pending, 0);
    taskspan_close(ts);
    collector_stop(&col);
}

/* A schema-4 buffer (export_spans indexed by (state, id) and by task) with
 * spans delivered, rejected and pending opens as schema 9, in place: the
 * two indexes give way to the partial index by task of the rows marked
 * trace_shared, which the upgrade marks (those of the task recorded with a
 * trace context), and to the one of the rejected rows. The rows become
 * each task's export progress: a done task's rows are its settled spans,
 * the pending rows go and their task counts them pending. The pending
 * spans go out, none of the others again, and the task listing, the
 * counts and gc agree with the rows the older library wrote. */
static void test_schema5_indexes(void **state)
{
    fx *f = *state;
    collector col;
    char dead[64];
    int64_t old = now_ns() - 10 * DAY_NS;
    taskspan_gc_report r;
    static const char pending_sql[] =
        "SELECT count(*) FROM export_spans WHERE state = 0 AND ?1 IS NULL";

    collector_start(&col);
    dead_endpoint(dead, sizeof dead);
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "A", old, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    atomic_store(&col.status, 400);
    run_task(ts, "R", old + 10, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    atomic_store(&col.status, 200);
    taskspan_close(ts);
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    o.db_path = f->db;
    o.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.endpoint = col.endpoint;
    o.close_timeout_ms = -1;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    run_task(ts, "C", old + 15, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    taskspan_close(ts);
    ts = open_export(f->db, dead);
    run_task(ts, "P", old + 20, "done", 0);
    assert_int_equal(taskspan_flush(ts, 300), TASKSPAN_E_TIMEOUT);
    taskspan_close(ts);

    /* Back to schema 4, as a buffer written by an older library. */
    spans_rows_as_schema_7(f->db);
    sqlite3 *db = sql_open(f->db);
    assert_int_equal(
        sqlite3_exec(
            db,
            "BEGIN;" SCHEMA_10_TO_9 SCHEMA_9_TO_8 SCHEMA_8_TO_7 SCHEMA_7_TO_4
            "PRAGMA user_version = 4;"
            "COMMIT;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    assert_int_equal(rows(f->db, pending_sql, NULL), 2);
    ts = open_export(f->db, col.endpoint);
    assert_int_equal(rows(f->db, "PRAGMA user_version", NULL), 10);
    /* The upgrade gives every task the span ids of older libraries (1).
     * These tasks were recorded by this one, with its ids in their rows:
     * an older library would have written the older ids. Put back the
     * scheme they were recorded with. */
    assert_int_equal(
        rows(f->db,
             "SELECT count(*) FROM tasks WHERE id_scheme = 1 "
             "AND ?1 IS NULL",
             NULL),
        rows(f->db, "SELECT count(*) FROM tasks WHERE ?1 IS NULL", NULL));
    db = sql_open(f->db);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE tasks SET id_scheme = 2", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM sqlite_master WHERE "
                          "tbl_name = 'export_spans' AND type = 'index' "
                          "AND name NOT LIKE 'sqlite_autoindex%' AND ?1 "
                          "IS NULL",
                          NULL),
                     2);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_spans INDEXED BY "
                          "export_spans_rejected WHERE state NOT IN (0, 1) "
                          "AND ?1 IS NULL",
                          NULL),
                     2);
    /* The pending rows went (schema 8): their spans are found again. */
    assert_int_equal(rows(f->db, pending_sql, NULL), 0);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_spans INDEXED BY "
                          "export_spans_shared WHERE trace_shared = 1 AND "
                          "task_id = ?1",
                          "C"),
                     2);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_spans WHERE "
                          "trace_shared = 1 AND ?1 IS NULL",
                          NULL),
                     2);
    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, ts), TASKSPAN_OK);
    assert_int_equal(find_task(l, "A")->spans_delivered, 2);
    assert_int_equal(find_task(l, "C")->spans_delivered, 2);
    assert_int_equal(find_task(l, "R")->spans_rejected, 2);
    assert_int_equal(find_task(l, "P")->spans_pending, 2);
    assert_int_equal(find_task(l, "P")->spans_delivered, 0);
    taskspan_task_list_free(l);

    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(settled_of(f->db, "P"), 2);
    taskspan_export_stats st;
    assert_int_equal(taskspan_get_export_stats(&st, ts), TASKSPAN_OK);
    assert_int_equal(st.spans_pending, 0);
    assert_int_equal(st.spans_delivered_total, 6);
    assert_int_equal(st.spans_rejected_total, 2);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM pragma_integrity_check "
                          "WHERE integrity_check <> 'ok' AND ?1 IS NULL",
                          NULL),
                     0);
    assert_int_equal(taskspan_gc(&r, ts, 7 * 86400), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 4);
    assert_int_equal(r.spans_deleted, 8);
    assert_int_equal(spans_of(f->db, "A") + spans_of(f->db, "R") +
                         spans_of(f->db, "C") + spans_of(f->db, "P"),
                     0);
    taskspan_close(ts);
    collector_stop(&col);
}

/* A task recorded with a trace context (traceparent) has the context's
 * trace id, not the one derived from its name; two tasks given the same
 * traceparent share it, and gc must still prune only the one that is
 * settled, and count only its spans (rows, by trace id, would mix
 * them). */
static void test_gc_by_trace_context(void **state)
{
    fx *f = *state;
    collector col;
    char dead[64];
    int64_t old = now_ns() - 10 * DAY_NS;
    taskspan_gc_report r;
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;

    collector_start(&col);
    dead_endpoint(dead, sizeof dead);
    o.db_path = f->db;
    o.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.endpoint = col.endpoint;
    o.close_timeout_ms = -1;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    run_task(ts, "T", old, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    taskspan_close(ts);
    /* U: the same trace, other span keys, its export failing. */
    o.endpoint = dead;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    spawn(ts, "U", (int64_t)getpid(), old + 10);
    ev(ts, "U", "work_item_start", "work_u1", old + 11, NULL, 0);
    ev(ts, "U", "work_item_done", "work_u1", old + 12, NULL, 0);
    taskspan_attr exit_attrs[1] = {
        taskspan_attr_int("runner_pid", (int64_t)getpid()),
    };
    ev(ts, "U", "runner_exit", "main", old + 13, exit_attrs, 1);
    assert_int_equal(taskspan_flush(ts, 300), TASKSPAN_E_TIMEOUT);
    taskspan_close(ts);
    assert_int_equal(spans_of(f->db, "T"), 2);
    assert_int_equal(settled_of(f->db, "T"), 2);
    /* U's main span is not T's, though both are main in one trace: the
     * task's id is in its span ids (docs/span-model.md). Both of U's spans
     * are found, and pending. */
    int64_t u_spans = spans_of(f->db, "U");
    assert_int_equal(u_spans, 2);
    assert_int_equal(settled_of(f->db, "U"), 0);

    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, f->ts), TASKSPAN_OK);
    assert_int_equal(find_task(l, "T")->spans_delivered, 2);
    assert_int_equal(find_task(l, "T")->spans_pending, 0);
    assert_int_equal(find_task(l, "U")->spans_pending, (uint64_t)u_spans);
    assert_int_equal(find_task(l, "U")->spans_delivered, 0);
    taskspan_task_list_free(l);

    assert_int_equal(taskspan_gc(&r, f->ts, 7 * 86400), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 1);
    assert_int_equal(r.spans_deleted, 2);
    assert_int_equal(events_of(f->db, "T"), 0);
    assert_int_equal(spans_of(f->db, "T"), 0);
    assert_int_equal(events_of(f->db, "U"), 4);
    assert_int_equal(spans_of(f->db, "U"), u_spans); /* pending: kept */
    collector_stop(&col);
}

/* The events of db, every column, in (task, seq) order, as one text. */
static char *events_text(const char *db_path)
{
    return query_text(db_path,
                      "SELECT group_concat(r, '|') FROM (SELECT "
                      "quote(task_id) || quote(seq) || quote(event_type) || "
                      "quote(actor) || quote(span_id) || "
                      "quote(parent_span_id) || quote(phase) || "
                      "quote(payload) || quote(ts_ns) || "
                      "quote(incarnation) || quote(resource_id) AS r "
                      "FROM task_events ORDER BY task_id, seq)");
}

/* A schema-6 buffer (events in a rowid table indexed by (task_id, seq),
 * the exporters' cursor over their ids) opens as schema 9 with the same
 * events, column for column, under the ids tnum << 32 | seq, and no index.
 * Read-only, it is read from an upgraded copy. A task whose events the
 * cursor had passed is examined and out of the live ones; a task with
 * events past it is live and examined up to the last event the cursor had
 * passed, so the next flush delivers its spans, and those of the first
 * are not sent again. A task with an open span stays live. */
static void test_schema7_events_by_task(void **state)
{
    fx *f = *state;
    collector col;

    collector_start(&col);
    taskspan *ts = open_export(f->db, col.endpoint);
    run_task(ts, "A", now_ns() - 60 * 1000000000LL, "done", 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    run_task(ts, "B", 0, "done", 0);
    taskspan_close(ts);

    spans_rows_as_schema_7(f->db);
    sqlite3 *db = sql_open(f->db);
    assert_int_equal(
        sqlite3_exec(
            db,
            "BEGIN;" SCHEMA_10_TO_9 SCHEMA_9_TO_8 SCHEMA_8_TO_7 SCHEMA_7_TO_6
            "PRAGMA user_version = 6;"
            "COMMIT;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    /* The cursor is past A's five events, before B's. */
    assert_int_equal(rows(f->db,
                          "SELECT int_value FROM export_state WHERE name = "
                          "'cursor' AND ?1 IS NULL",
                          NULL),
                     5);
    char *before = events_text(f->db);

    /* Read-only, it is read from an upgraded copy, and says so; the file
     * stays as it was. */
    ts = open_path(f->db, TASKSPAN_OPEN_READONLY);
    assert_non_null(strstr(taskspan_open_warning(ts), "upgraded copy"));
    taskspan_task_list *l = NULL;
    assert_int_equal(taskspan_list_tasks(&l, ts), TASKSPAN_OK);
    assert_int_equal(find_task(l, "A")->n_events, 5);
    assert_int_equal(find_task(l, "B")->n_events, 5);
    assert_int_equal(find_task(l, "A")->spans_delivered, 2);
    taskspan_task_list_free(l);
    taskspan_event_list *el = NULL;
    assert_int_equal(taskspan_task_events(&el, ts, "B"), TASKSPAN_OK);
    assert_int_equal(taskspan_event_list_count(el), 5);
    taskspan_event_list_free(el);
    taskspan_close(ts);
    assert_int_equal(rows(f->db, "PRAGMA user_version", NULL), 6);

    ts = open_export(f->db, col.endpoint);
    assert_int_equal(rows(f->db, "PRAGMA user_version", NULL), 10);
    char *after = events_text(f->db);
    assert_string_equal(after, before);
    /* Each event's id is its task's number << 32 | its seq, the tasks
     * numbered in the order they came, and no index on the events. */
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM task_events e JOIN tasks t"
                          " USING (task_id) WHERE e.id = t.tnum * "
                          "4294967296 + e.seq AND t.tnum = (t.task_id = 'B')"
                          " + 1 AND ?1 IS NULL",
                          NULL),
                     10);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM sqlite_master WHERE type = "
                          "'index' AND tbl_name = 'task_events' AND ?1 IS "
                          "NULL",
                          NULL),
                     0);
    assert_int_equal(export_marks(f->db, "A"), 5);
    assert_int_equal(export_marks(f->db, "B"), 100);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM export_state WHERE name = "
                          "'cursor' AND ?1 IS NULL",
                          NULL),
                     0);
    assert_int_equal(spans_of(f->db, "B"), 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(settled_of(f->db, "B"), 2);
    assert_int_equal(settled_of(f->db, "A"), 2);
    /* B is done: examined to its last event, out of the live ones. */
    assert_int_equal(export_marks(f->db, "B"), 5);
    /* A task whose runner (this process) still runs has its main span
     * open: examined, and still live, until that span closes. */
    spawn(ts, "C", (int64_t)getpid(), 0);
    ev(ts, "C", "work_item_start", "work_w1", 0, NULL, 0);
    ev(ts, "C", "work_item_done", "work_w1", 0, NULL, 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(spans_of(f->db, "C"), 1);
    assert_int_equal(export_marks(f->db, "C"), 103);
    ev(ts, "C", "runner_exit", "main", 0, NULL, 0);
    assert_int_equal(taskspan_flush(ts, 10000), TASKSPAN_OK);
    assert_int_equal(spans_of(f->db, "C"), 2);
    assert_int_equal(export_marks(f->db, "C"), 4);
    assert_int_equal(rows(f->db,
                          "SELECT count(*) FROM pragma_integrity_check "
                          "WHERE integrity_check <> 'ok' AND ?1 IS NULL",
                          NULL),
                     0);
    taskspan_close(ts);
    collector_stop(&col);
    free(before);
    free(after);
}

int main(void)
{
    /* These tests record events days old and look at what taskspan_gc()
     * prunes: the exporters' own retention pass (which would prune them at
     * the first flush) is off, except where a test turns it on. */
    setenv("TASKSPAN_RETENTION_SECONDS", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_task_states, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_empty_buffer_lists_nothing, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_task_events, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_readonly_reads, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_buffer_status, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_prunes_only_delivered, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_prunes_newest_task, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_waits_for_the_exporters, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cap_prunes_delivered, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_exporter_applies_retention, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema3_pending_bodies, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema7_events_by_task, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_schema5_indexes, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_by_trace_context, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_beside_a_runner, setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
