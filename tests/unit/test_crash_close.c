/*
 * test_crash_close.c -- an incarnation whose runner died without
 * runner_exit is closed by the exporter once its process is gone and the
 * grace period passed, and the spans that produces are byte for byte the
 * spans the task's next runner_spawn produces (same ids, times,
 * attributes, status), so nothing is ever exported twice with different
 * content.
 *
 * Two buffers get the same events at the same times. In A the exporter
 * (taskspan_flush, inline, towards a closed port: only discovery matters)
 * closes the dead incarnation; in B a new runner_spawn does. The spans the
 * exporter found closed (its export_closed, in close order), encoded as it
 * encodes them to send them, must be equal.
 */
#include "encode_otlp.h"
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/test_util.h"

#define T0 1700000000000000000LL /* long ago: any grace period passed */
#define MS 1000000LL

/* A pid that no longer exists: a child that exited and was reaped. */
static int64_t dead_pid(void)
{
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        _exit(0);
    }
    assert_int_equal(waitpid(p, NULL, 0), p);
    return (int64_t)p;
}

static void emit_at(taskspan *ts, const char *type, const char *span,
                    const char *parent, int64_t t, const taskspan_attr *a,
                    size_t n)
{
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = "T";
    ev.event_type = type;
    ev.span_key = span;
    ev.parent_span_key = parent;
    ev.actor = "runner";
    ev.ts_ns = t;
    ev.attrs = a;
    ev.n_attrs = n;
    assert_int_equal(taskspan_emit(NULL, ts, &ev), TASKSPAN_OK);
}

/* Incarnation 1, killed with wi_002 in progress and a sweep half done. */
static void record_killed_run(taskspan *ts, int64_t pid)
{
    taskspan_attr spawn[] = {taskspan_attr_int("runner_pid", pid)};
    taskspan_attr wi1[] = {taskspan_attr_str("work_item_id", "wi_001")};
    taskspan_attr wi2[] = {taskspan_attr_str("work_item_id", "wi_002")};
    taskspan_attr det[] = {taskspan_attr_int("expired_count", 2)};

    emit_at(ts, "runner_spawn", "main", NULL, T0, spawn, 1);
    emit_at(ts, "phase_enter", "main", NULL, T0 + 1 * MS, NULL, 0);
    emit_at(ts, "work_item_start", "work_wi_001", "main", T0 + 2 * MS, wi1, 1);
    emit_at(ts, "work_item_done", "work_wi_001", "main", T0 + 3 * MS, wi1, 1);
    emit_at(ts, "work_item_start", "work_wi_002", "main", T0 + 4 * MS, wi2, 1);
    emit_at(ts, "recovery_detected", "recovery_sweep", NULL, T0 + 5 * MS, det,
            1);
    emit_at(ts, "lease_renewed", "work_wi_002", "main", T0 + 9 * MS, wi2, 1);
}

/* A recorder on path that exports inline to a port nothing listens on,
 * with the given crash grace period (NULL: the default). */
static taskspan *open_exporting(const char *path, const char *grace)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;

    o.db_path = path;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.endpoint = "http://127.0.0.1:1/v1/traces";
    o.close_timeout_ms = -1;
    if (grace != NULL) {
        setenv("TASKSPAN_CRASH_GRACE_MS", grace, 1);
    } else {
        unsetenv("TASKSPAN_CRASH_GRACE_MS");
    }
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    unsetenv("TASKSPAN_CRASH_GRACE_MS");
    return ts;
}

/* Run discovery: the send fails (nothing listens), the discovery stays. */
static void discover(taskspan *ts)
{
    taskspan_code rc = taskspan_flush(ts, 200);
    assert_true(rc == TASKSPAN_E_TIMEOUT || rc == TASKSPAN_OK ||
                rc == TASKSPAN_E_TRANSPORT);
}

/* One line "name|hex(span_id)|hex(Span)": the span's Span message,
 * encoded as the exporter encodes it (the default span limits). */
static void span_line(char *out, size_t cap, const taskspan_span *s)
{
    const taskspan__limits lim = {128, 32768, 128, 128, 128, SIZE_MAX};
    uint8_t *body = NULL;
    size_t len = 0, at = 0;

    assert_int_equal(taskspan__encode_span(&body, &len, s, &lim), TASKSPAN_OK);
    assert_true(strlen(s->name) + 2 * (8 + len) + 4 < cap);
    at += (size_t)snprintf(out, cap, "%s|", s->name);
    for (size_t i = 0; i < 8; i++) {
        at += (size_t)snprintf(out + at, cap - at, "%02X", s->span_id[i]);
    }
    out[at++] = '|';
    for (size_t i = 0; i < len; i++) {
        at += (size_t)snprintf(out + at, cap - at, "%02X", body[i]);
    }
    snprintf(out + at, cap - at, "\n");
    free(body);
}

static int line_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(strchr(x, '|'), strchr(y, '|')); /* by span id */
}

/* The closed spans of task T the exporter found (the first export_closed
 * in close order: what it sends, encoded again byte for byte whenever it
 * sends them), one span_line() each in span id order, for incarnation-1
 * spans only when inc1 is set (incarnation 1 ends before T0+1s). */
static char *export_rows(const char *db, taskspan *ts, bool inc1)
{
    sqlite3 *h = sql_open(db);
    int64_t found = sql_int(h,
                            "SELECT export_closed FROM tasks"
                            " WHERE task_id = ?1",
                            "T", 0, NULL);
    sqlite3_close(h);
    taskspan_spans *sp = NULL;
    size_t *order = NULL, n_closed = 0, n = 0, len = 0;
    assert_int_equal(taskspan_task_spans(&sp, ts, "T"), TASKSPAN_OK);
    assert_int_equal(taskspan__spans_close_order(sp, &order, &n_closed),
                     TASKSPAN_OK);
    assert_true(found >= 0 && (size_t)found <= n_closed);
    char **lines = calloc(n_closed + 1, sizeof *lines);
    assert_non_null(lines);
    for (size_t p = 0; p < (size_t)found; p++) {
        const taskspan_span *s = taskspan_spans_get(sp, order[p]);
        if (inc1 && s->end_ns >= T0 + 1000 * MS) {
            continue;
        }
        lines[n] = malloc(1 << 15);
        assert_non_null(lines[n]);
        span_line(lines[n], 1 << 15, s);
        len += strlen(lines[n++]);
    }
    qsort(lines, n, sizeof *lines, line_cmp);
    char *out = calloc(1, len + 1);
    assert_non_null(out);
    for (size_t i = 0, at = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        memcpy(out + at, lines[i], l);
        at += l;
        free(lines[i]);
    }
    free(lines);
    free(order);
    taskspan_spans_free(sp);
    return out;
}

static void test_export_close_matches_spawn_close(void **state)
{
    (void)state;
    char *dir = new_tmpdir("crashclose");
    char *a = path_join(dir, "a.db");
    char *b = path_join(dir, "b.db");
    int64_t pid = dead_pid();
    taskspan_attr spawn2[] = {taskspan_attr_int("runner_pid", getpid())};

    /* A: nothing new after the kill; the exporter closes incarnation 1. */
    taskspan *ta = open_exporting(a, "0");
    record_killed_run(ta, pid);
    discover(ta);
    /* B: the next runner_spawn closes it. */
    taskspan *tb = open_exporting(b, NULL);
    record_killed_run(tb, pid);
    emit_at(tb, "runner_spawn", "main", NULL, T0 + 60000 * MS, spawn2, 1);
    discover(tb);

    char *ra = export_rows(a, ta, true);
    char *rb = export_rows(b, tb, true);
    /* main, work_wi_002 (crashed), work_wi_001 (done), recovery_sweep. */
    size_t lines = 0;
    for (const char *p = ra; *p; p++) {
        lines += *p == '\n';
    }
    assert_int_equal(lines, 4);
    assert_non_null(strstr(ra, "main|"));
    assert_non_null(strstr(ra, "recovery_sweep|"));
    assert_string_equal(ra, rb);
    /* Once the crash closed its last open span, A's task is examined to
     * its last event with its 4 spans closed (before, wi_001 alone was);
     * none is delivered (nothing listens), so it stays among the tasks
     * the exporters look at, for those. */
    sqlite3 *h = sql_open(a);
    assert_int_equal(sql_int(h,
                             "SELECT export_live * 1000 + export_seq -"
                             " (SELECT max(seq) FROM task_events"
                             "  WHERE task_id = ?1)"
                             " FROM tasks WHERE task_id = ?1",
                             "T", 0, NULL),
                     1000);
    assert_int_equal(sql_int(h,
                             "SELECT export_closed * 100 + export_done"
                             " FROM tasks WHERE task_id = ?1",
                             "T", 0, NULL),
                     400);
    sqlite3_close(h);

    /* A's spans as the model shows them: main#1 closed, crashed, ERROR,
     * ending at the incarnation's last event. */
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, ta, "T"), TASKSPAN_OK);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    assert_string_equal(m->name, "main");
    assert_false(m->is_open);
    assert_int_equal(m->status, TASKSPAN_STATUS_ERROR);
    assert_int_equal(m->end_ns, T0 + 9 * MS);
    const taskspan_attr *cr = attr_find(m->attrs, m->n_attrs,
                                        "taskspan.crashed");
    assert_non_null(cr);
    assert_int_equal(cr->value.b, 1);
    taskspan_spans_free(sp);

    /* A runner_spawn after the export closed the incarnation adds the new
     * incarnation's spans and leaves incarnation 1's rows as they were. */
    emit_at(ta, "runner_spawn", "main", NULL, T0 + 60000 * MS, spawn2, 1);
    discover(ta);
    char *ra2 = export_rows(a, ta, true);
    assert_string_equal(ra, ra2);
    h = sql_open(a);
    assert_int_equal(sql_int(h,
                             "SELECT count(*) FROM crashed_incarnations"
                             " WHERE task_id = ?1",
                             "T", 0, NULL),
                     1);
    sqlite3_close(h);

    free(ra);
    free(rb);
    free(ra2);
    taskspan_close(ta);
    taskspan_close(tb);
    rm_rf(dir);
    free(a);
    free(b);
    free(dir);
}

/* No closing while the runner may still be alive: its pid exists, or its
 * last event is inside the grace period. */
static void test_no_close_while_alive_or_recent(void **state)
{
    (void)state;
    char *dir = new_tmpdir("crashclose");
    char *a = path_join(dir, "alive.db");
    char *b = path_join(dir, "recent.db");

    /* Alive: the runner_pid is this very process. */
    taskspan *ta = open_exporting(a, "0");
    record_killed_run(ta, (int64_t)getpid());
    discover(ta);
    char *ra = export_rows(a, ta, false);
    assert_null(strstr(ra, "main|"));
    free(ra);
    /* Its main span is open: the task stays live. */
    sqlite3 *h = sql_open(a);
    assert_int_equal(sql_int(h,
                             "SELECT export_live FROM tasks"
                             " WHERE task_id = ?1",
                             "T", 0, NULL),
                     1);
    sqlite3_close(h);

    /* Recent: the runner is gone, but its last event is just now, well
     * within the default 30 s grace period. */
    taskspan *tb = open_exporting(b, NULL);
    taskspan_attr spawn[] = {taskspan_attr_int("runner_pid", dead_pid())};
    emit_at(tb, "runner_spawn", "main", NULL, 0, spawn, 1);
    discover(tb);
    char *rb = export_rows(b, tb, false);
    assert_null(strstr(rb, "main|"));
    free(rb);

    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, tb, "T"), TASKSPAN_OK);
    assert_true(taskspan_spans_get(sp, 0)->is_open);
    taskspan_spans_free(sp);
    taskspan_close(ta);
    taskspan_close(tb);
    rm_rf(dir);
    free(a);
    free(b);
    free(dir);
}

/* The model honours a closure point it is given: the spans of the
 * incarnation close right after that event, with the crash status. */
static void test_model_closure_point(void **state)
{
    (void)state;
    taskspan__stored_event ev[] = {
        {.seq = 1,
         .incarnation = 1,
         .ts_ns = 10,
         .event_type = "runner_spawn",
         .span_key = "main",
         .payload_json = "{}"},
        {.seq = 2,
         .incarnation = 1,
         .ts_ns = 20,
         .event_type = "work_item_start",
         .span_key = "work_a",
         .parent_span_key = "main",
         .payload_json = "{}"},
        {.seq = 3,
         .incarnation = 1,
         .ts_ns = 30,
         .event_type = "lease_renewed",
         .span_key = "work_a",
         .parent_span_key = "main",
         .payload_json = "{}"},
    };
    int64_t closed_at[] = {3};
    taskspan__task_events te = {.events = ev,
                                .n_events = 3,
                                .crash_closed_seqs = closed_at,
                                .n_crash_closed = 1};
    taskspan_spans *sp = NULL;

    assert_int_equal(taskspan__spans_build(&sp, "T", &te), TASKSPAN_OK);
    assert_int_equal(taskspan_spans_count(sp), 2);
    for (size_t i = 0; i < 2; i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        assert_false(s->is_open);
        assert_int_equal(s->end_ns, 30);
        assert_int_equal(s->status, TASKSPAN_STATUS_ERROR);
        assert_string_equal(s->status_message,
                            "runner ended without runner_exit (killed or "
                            "crashed)");
    }
    taskspan_spans_free(sp);

    /* A closure point that is not the incarnation's last event (an event
     * came after the mark) leaves the later event a new instance. */
    closed_at[0] = 2;
    assert_int_equal(taskspan__spans_build(&sp, "T", &te), TASKSPAN_OK);
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *late = taskspan_spans_get(sp, 2);
    assert_string_equal(late->name, "work_a");
    assert_true(late->is_open);
    taskspan_spans_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_close_matches_spawn_close),
        cmocka_unit_test(test_no_close_while_alive_or_recent),
        cmocka_unit_test(test_model_closure_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
