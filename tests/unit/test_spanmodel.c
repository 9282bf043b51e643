/*
 * test_spanmodel.c -- a task's events become spans (spanmodel.c).
 *
 * Most tests record events through the public API into a scratch buffer and
 * read the spans back with taskspan_task_spans(); where exact times matter
 * they use taskspan_emit() with explicit ts_ns. The last tests call
 * taskspan__spans_build() directly on hand-made stored events.
 */
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/test_util.h"

/* ---- scratch buffer ------------------------------------------------------ */

static int fx_setup(void **state)
{
    return fx_open(state, "spanmodel");
}

/* ---- helpers ----------------------------------------------------------- */

/* Emit one event at an explicit time; returns its seq. */
static int64_t emit_at(taskspan *ts, const char *task, const char *type,
                       const char *span, const char *parent, const char *actor,
                       const char *phase, int64_t t,
                       const taskspan_attr *attrs, size_t n)
{
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    int64_t seq = 0;
    ev.task_id = task;
    ev.event_type = type;
    ev.span_key = span;
    ev.parent_span_key = parent;
    ev.actor = actor;
    ev.phase = phase;
    ev.ts_ns = t;
    ev.attrs = attrs;
    ev.n_attrs = n;
    taskspan_code c = taskspan_emit(&seq, ts, &ev);
    if (c != TASKSPAN_OK) {
        print_error("emit %s: %s\n", type, taskspan_errmsg(ts));
    }
    assert_int_equal(c, TASKSPAN_OK);
    return seq;
}

/* The placements of the runner's events (seed report tables). */
static int64_t spawn_at(taskspan *ts, const char *task, int64_t t)
{
    taskspan_attr a[] = {taskspan_attr_int("runner_pid", 100)};
    return emit_at(ts, task, "runner_spawn", "main", NULL, "runner", NULL, t,
                   a, 1);
}

static int64_t work_at(taskspan *ts, const char *task, const char *type,
                       const char *wi, int64_t t, const char *error)
{
    char key[64];
    taskspan_attr a[2];
    size_t n = 0;
    snprintf(key, sizeof key, "work_%s", wi);
    a[n++] = taskspan_attr_str("work_item_id", wi);
    if (error != NULL) {
        a[n++] = taskspan_attr_str("error", error);
    }
    return emit_at(ts, task, type, key, "main",
                   strncmp(type, "lease_", 6) == 0 ? "lease_manager"
                                                   : "worker",
                   "executing", t, a, n);
}

static int64_t main_at(taskspan *ts, const char *task, const char *type,
                       const char *phase, int64_t t)
{
    return emit_at(ts, task, type, "main", NULL, "runner", phase, t, NULL, 0);
}

static taskspan_spans *spans_of(taskspan *ts, const char *task)
{
    taskspan_spans *sp = NULL;
    taskspan_code c = taskspan_task_spans(&sp, ts, task);
    if (c != TASKSPAN_OK) {
        print_error("taskspan_task_spans(%s): %s\n", task,
                    taskspan_errmsg(ts));
    }
    assert_int_equal(c, TASKSPAN_OK);
    assert_non_null(sp);
    return sp;
}

static int span_crashed(const taskspan_span *s)
{
    const taskspan_attr *a = attr_find(s->attrs, s->n_attrs,
                                       "taskspan.crashed");
    if (a == NULL) {
        return 0;
    }
    assert_int_equal(a->type, TASKSPAN_ATTR_BOOL);
    return a->value.b ? 1 : 0;
}

static void assert_seqs(const taskspan_span *s, const int64_t *seqs, size_t n)
{
    if (s->n_events != n) {
        print_error("span %s has %zu events, expected %zu\n", s->name,
                    s->n_events, n);
    }
    assert_int_equal(s->n_events, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s->events[i].seq, seqs[i]);
    }
}

static void assert_names(const taskspan_span *s, const char *const *names,
                         size_t n)
{
    assert_int_equal(s->n_events, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(s->events[i].name, names[i]);
    }
}

static const uint8_t ZERO8[8] = {0};

/* Status messages that docs/span-model.md fixes. */
#define MSG_CRASHED "runner ended without runner_exit (killed or crashed)"
#define MSG_UNFINISHED "work item was not finished when its runner exited"
#define MSG_SWEEP_SHORT "recovery sweep ended before requeueing every item"

/* ======================================================================== */
/* The seed: runner-events-report.md, "Span Hierarchy Example"              */
/* ======================================================================== */

static void record_seed(taskspan *ts, const char *T)
{
    static const char *const expired[] = {"wi_003"};
    static const char *const files[] = {"src/parser.c"};
    int64_t s = 0, want = 0;
#define STEP(call)                                                            \
    do {                                                                      \
        assert_int_equal((call), TASKSPAN_OK);                                \
        assert_int_equal(s, ++want);                                          \
    } while (0)
    STEP(taskspan_emit_runner_spawn(&s, ts, T, 4242, "0.4.0", "start"));
    STEP(taskspan_emit_phase_enter(&s, ts, T, "planning", NULL));
    STEP(taskspan_emit_phase_exit(&s, ts, T, "planning", NULL));
    STEP(taskspan_emit_phase_enter(&s, ts, T, "executing", NULL));
    STEP(taskspan_emit_work_item_dispatched(&s, ts, T, "wi_001", "Parser", 0,
                                            NULL));
    STEP(taskspan_emit_work_item_start(&s, ts, T, "wi_001", "code", NULL));
    STEP(taskspan_emit_lease_acquired(&s, ts, T, "wi_001", "worker-1", 300,
                                      NULL));
    STEP(taskspan_emit_work_item_done(&s, ts, T, "wi_001", "Parser", files, 1,
                                      NULL));
    STEP(taskspan_emit_work_item_dispatched(&s, ts, T, "wi_002", "Tests", 1,
                                            NULL));
    STEP(taskspan_emit_work_item_start(&s, ts, T, "wi_002", "test", NULL));
    STEP(taskspan_emit_lease_acquired(&s, ts, T, "wi_002", "worker-2", 300,
                                      NULL));
    STEP(taskspan_emit_work_item_failed(&s, ts, T, "wi_002", "Tests",
                                        "3 of 12 tests failed", NULL));
    STEP(taskspan_emit_phase_exit(&s, ts, T, "executing", NULL));
    STEP(taskspan_emit_phase_enter(&s, ts, T, "verifying", NULL));
    STEP(taskspan_emit_gate_start(&s, ts, T, "doctor", 600, NULL));
    STEP(taskspan_emit_gate_result(&s, ts, T, "doctor", "passed", 1, 0, 4.5,
                                   NULL));
    STEP(taskspan_emit_phase_exit(&s, ts, T, "verifying", NULL));
    STEP(taskspan_emit_runner_exit(&s, ts, T, 4242, "done", 2, NULL));
    STEP(taskspan_emit_recovery_detected(&s, ts, T, 1, expired, 1, NULL));
    STEP(taskspan_emit_recovery_requeued(&s, ts, T, "wi_003", "worker-3", 1, 3,
                                         NULL));
#undef STEP
    assert_int_equal(want, 20);
}

/* A closed span starts at its first event and ends at its last one. */
static void assert_closed_at_events(const taskspan_span *s)
{
    assert_int_equal(s->is_open, 0);
    assert_true(s->n_events > 0);
    assert_int_equal(s->start_ns, s->events[0].time_ns);
    assert_int_equal(s->end_ns, s->events[s->n_events - 1].time_ns);
    for (size_t i = 1; i < s->n_events; i++) {
        assert_true(s->events[i].time_ns >= s->events[i - 1].time_ns);
        assert_true(s->events[i].seq > s->events[i - 1].seq);
    }
}

static void test_seed_span_hierarchy(void **state)
{
    fx *f = *state;
    const char *T = "task-abc-123";
    record_seed(f->ts, T);
    taskspan_spans *sp = spans_of(f->ts, T);

    assert_int_equal(taskspan_spans_count(sp), 4);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *w1 = taskspan_spans_get(sp, 1);
    const taskspan_span *w2 = taskspan_spans_get(sp, 2);
    const taskspan_span *rs = taskspan_spans_get(sp, 3);
    assert_string_equal(m->name, "main");
    assert_string_equal(w1->name, "work_wi_001");
    assert_string_equal(w2->name, "work_wi_002");
    assert_string_equal(rs->name, "recovery_sweep");

    /* main: 12 events, closed by runner_exit, no error, a root. */
    static const int64_t main_seqs[] = {1,  2,  3,  4,  5,  9,
                                        13, 14, 15, 16, 17, 18};
    static const char *const main_names[] = {
        "runner_spawn", "phase_enter",          "phase_exit",
        "phase_enter",  "work_item_dispatched", "work_item_dispatched",
        "phase_exit",   "phase_enter",          "gate_start",
        "gate_result",  "phase_exit",           "runner_exit"};
    assert_seqs(m, main_seqs, ARRAY_LEN(main_seqs));
    assert_names(m, main_names, ARRAY_LEN(main_names));
    assert_closed_at_events(m);
    assert_int_equal(m->status, TASKSPAN_STATUS_UNSET);
    assert_string_equal(m->status_message, "");
    assert_int_equal(m->has_parent, 0);
    assert_int_equal(m->parent_index, NO_INDEX);
    assert_memory_equal(m->parent_span_id, ZERO8, 8);
    assert_int_equal(m->incarnation, 1);
    assert_int_equal(m->n_links, 0);

    /* work_wi_001: start, lease, done; child of main. */
    static const int64_t w1_seqs[] = {6, 7, 8};
    static const char *const w1_names[] = {"work_item_start", "lease_acquired",
                                           "work_item_done"};
    assert_seqs(w1, w1_seqs, 3);
    assert_names(w1, w1_names, 3);
    assert_closed_at_events(w1);
    assert_int_equal(w1->status, TASKSPAN_STATUS_UNSET);
    assert_string_equal(w1->status_message, "");
    assert_int_equal(w1->has_parent, 1);
    assert_int_equal(w1->parent_index, 0);
    assert_memory_equal(w1->parent_span_id, m->span_id, 8);
    assert_int_equal(w1->incarnation, 1);

    /* work_wi_002: failed, so ERROR with the error text. */
    static const int64_t w2_seqs[] = {10, 11, 12};
    static const char *const w2_names[] = {"work_item_start", "lease_acquired",
                                           "work_item_failed"};
    assert_seqs(w2, w2_seqs, 3);
    assert_names(w2, w2_names, 3);
    assert_closed_at_events(w2);
    assert_int_equal(w2->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(w2->status_message, "3 of 12 tests failed");
    assert_int_equal(w2->has_parent, 1);
    assert_int_equal(w2->parent_index, 0);
    assert_memory_equal(w2->parent_span_id, m->span_id, 8);

    /* recovery_sweep: its own root, closed after its one requeue. */
    static const int64_t rs_seqs[] = {19, 20};
    static const char *const rs_names[] = {"recovery_detected",
                                           "recovery_requeued"};
    assert_seqs(rs, rs_seqs, 2);
    assert_names(rs, rs_names, 2);
    assert_closed_at_events(rs);
    assert_int_equal(rs->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(rs->has_parent, 0);
    assert_int_equal(rs->parent_index, NO_INDEX);

    /* The ids docs/span-model.md gives for this example ("the same on every
     * machine"): they must never change, or re-exported spans get new ids. */
    static const struct {
        size_t index;
        const char *span_id;
    } documented[] = {{0, "3192bde7e2532e2e"},
                      {1, "a0bd4d1017de9eac"},
                      {2, "6173b134c0b17724"},
                      {3, "9c14f8fdca7ae841"}};
    for (size_t i = 0; i < ARRAY_LEN(documented); i++) {
        const taskspan_span *a = taskspan_spans_get(sp, documented[i].index);
        char hexid[17], hextrace[33];
        to_hex(hexid, a->span_id, 8);
        to_hex(hextrace, a->trace_id, 16);
        assert_string_equal(hextrace, "534c9bbeb5a28da20c7de60fa6916f80");
        assert_string_equal(hexid, documented[i].span_id);
    }

    /* One trace (the task's), four distinct span ids. */
    uint8_t tid[16];
    taskspan__derive_trace_id(tid, T);
    for (size_t i = 0; i < 4; i++) {
        const taskspan_span *a = taskspan_spans_get(sp, i);
        assert_memory_equal(a->trace_id, tid, 16);
        assert_memory_not_equal(a->span_id, ZERO8, 8);
        for (size_t k = 0; k < i; k++) {
            assert_memory_not_equal(a->span_id,
                                    taskspan_spans_get(sp, k)->span_id, 8);
        }
        const taskspan_attr *ta = attr_find(a->attrs, a->n_attrs,
                                            "taskspan.task_id");
        assert_non_null(ta);
        assert_string_equal(ta->value.s, T);
        ta = attr_find(a->attrs, a->n_attrs, "taskspan.span_key");
        assert_non_null(ta);
        assert_string_equal(ta->value.s, a->name);
        assert_int_equal(span_crashed(a), 0);
        assert_null(attr_find(a->attrs, a->n_attrs, "taskspan.instance"));
    }
    taskspan_spans_free(sp);
}

/* Each span event carries its payload, then taskspan.seq, .actor and .phase
 * (the last two only when recorded). */
static void test_seed_event_attributes(void **state)
{
    fx *f = *state;
    const char *T = "task-abc-123";
    record_seed(f->ts, T);
    taskspan_spans *sp = spans_of(f->ts, T);
    size_t total = 0;

    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        for (size_t k = 0; k < s->n_events; k++) {
            const taskspan_span_event *e = &s->events[k];
            size_t tail = 1 + (e->actor != NULL) + (e->phase != NULL);
            assert_true(e->n_attrs >= tail);
            size_t at = e->n_attrs - tail;
            assert_string_equal(e->attrs[at].key, "taskspan.seq");
            assert_int_equal(e->attrs[at].type, TASKSPAN_ATTR_INT);
            assert_int_equal(e->attrs[at].value.i, e->seq);
            at++;
            assert_non_null(e->actor); /* every helper records an actor */
            assert_string_equal(e->attrs[at].key, "taskspan.actor");
            assert_int_equal(e->attrs[at].type, TASKSPAN_ATTR_STRING);
            assert_string_equal(e->attrs[at].value.s, e->actor);
            at++;
            if (e->phase != NULL) {
                assert_string_equal(e->attrs[at].key, "taskspan.phase");
                assert_string_equal(e->attrs[at].value.s, e->phase);
            } else {
                assert_null(attr_find(e->attrs, e->n_attrs, "taskspan.phase"));
            }
            /* Exactly one of each. */
            size_t nseq = 0;
            for (size_t a = 0; a < e->n_attrs; a++) {
                nseq += strcmp(e->attrs[a].key, "taskspan.seq") == 0;
            }
            assert_int_equal(nseq, 1);
            total++;
        }
    }
    assert_int_equal(total, 20);

    /* Spot checks against the seed's tables. */
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    assert_string_equal(m->events[0].actor, "runner"); /* runner_spawn */
    assert_null(m->events[0].phase);
    assert_string_equal(m->events[1].phase, "planning");
    assert_string_equal(m->events[8].actor, "gate_runner"); /* gate_start */
    assert_string_equal(m->events[8].phase, "verifying");
    const taskspan_span *w1 = taskspan_spans_get(sp, 1);
    assert_string_equal(w1->events[0].actor, "worker");
    assert_string_equal(w1->events[1].actor, "lease_manager");
    assert_string_equal(w1->events[1].phase, "executing");
    const taskspan_attr *a = attr_find(
        w1->events[1].attrs, w1->events[1].n_attrs, "lease_duration_seconds");
    assert_non_null(a);
    assert_int_equal(a->value.i, 300);
    const taskspan_span *rs = taskspan_spans_get(sp, 3);
    assert_string_equal(rs->events[0].actor, "recovery_sweep");
    assert_string_equal(rs->events[0].phase, "recovery");
    a = attr_find(rs->events[0].attrs, rs->events[0].n_attrs, "work_item_ids");
    assert_non_null(a);
    assert_int_equal(a->type, TASKSPAN_ATTR_STRING_ARRAY);
    assert_int_equal(a->value.array.count, 1);
    assert_string_equal(((const char *const *)a->value.array.items)[0],
                        "wi_003");
    a = attr_find(rs->events[0].attrs, rs->events[0].n_attrs, "expired_count");
    assert_non_null(a);
    assert_int_equal(a->value.i, 1);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* Incarnations                                                             */
/* ======================================================================== */

static void test_crashed_incarnation(void **state)
{
    fx *f = *state;
    const char *T = "crash";
    assert_int_equal(spawn_at(f->ts, T, 1000), 1);
    assert_int_equal(work_at(f->ts, T, "work_item_start", "wi_1", 2000, NULL),
                     2);
    assert_int_equal(spawn_at(f->ts, T, 5000), 3);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *m1 = taskspan_spans_get(sp, 0);
    const taskspan_span *w = taskspan_spans_get(sp, 1);
    const taskspan_span *m2 = taskspan_spans_get(sp, 2);
    assert_string_equal(m1->name, "main");
    assert_string_equal(w->name, "work_wi_1");
    assert_string_equal(m2->name, "main");
    assert_int_equal(m1->incarnation, 1);
    assert_int_equal(w->incarnation, 1);
    assert_int_equal(m2->incarnation, 2);
    const taskspan_attr *inc = attr_find(m2->attrs, m2->n_attrs,
                                         "taskspan.incarnation");
    assert_non_null(inc);
    assert_int_equal(inc->value.i, 2);

    /* The first runner never said runner_exit: what it left open closed
     * with ERROR at its incarnation's last event (main spans its child). */
    assert_int_equal(m1->is_open, 0);
    assert_int_equal(m1->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m1->status_message, MSG_CRASHED);
    assert_int_equal(span_crashed(m1), 1);
    assert_int_equal(m1->start_ns, 1000);
    assert_int_equal(m1->end_ns, 2000);
    assert_int_equal(w->is_open, 0);
    assert_int_equal(w->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(w->status_message, MSG_CRASHED);
    assert_int_equal(span_crashed(w), 1);
    assert_int_equal(w->start_ns, 2000);
    assert_int_equal(w->end_ns, 2000);
    assert_int_equal(w->parent_index, 0);

    /* The second main: open, healthy, linked to the first. */
    assert_int_equal(m2->is_open, 1);
    assert_int_equal(m2->end_ns, 0);
    assert_int_equal(m2->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(span_crashed(m2), 0);
    assert_int_equal(m2->start_ns, 5000);
    assert_int_equal(m2->has_parent, 0);
    assert_memory_not_equal(m2->span_id, m1->span_id, 8);
    assert_int_equal(m2->n_links, 1);
    assert_memory_equal(m2->links[0].span_id, m1->span_id, 8);
    assert_memory_equal(m2->links[0].trace_id, m1->trace_id, 16);
    assert_string_equal(m2->links[0].reason, "previous_incarnation");
    assert_int_equal(m1->n_links, 0);
    assert_int_equal(w->n_links, 0);
    taskspan_spans_free(sp);

    /* With a main event after the child's, main ends at that later event;
     * the child still ends at its own last event. */
    const char *T2 = "crash-late-main";
    spawn_at(f->ts, T2, 1000);
    work_at(f->ts, T2, "work_item_start", "wi_1", 2000, NULL);
    work_at(f->ts, T2, "lease_acquired", "wi_1", 2500, NULL);
    main_at(f->ts, T2, "phase_enter", "verifying", 3000);
    spawn_at(f->ts, T2, 9000);
    sp = spans_of(f->ts, T2);
    assert_int_equal(taskspan_spans_count(sp), 3);
    assert_int_equal(taskspan_spans_get(sp, 0)->end_ns, 3000);
    assert_int_equal(taskspan_spans_get(sp, 1)->end_ns, 2500);
    assert_int_equal(span_crashed(taskspan_spans_get(sp, 0)), 1);
    assert_int_equal(span_crashed(taskspan_spans_get(sp, 1)), 1);
    assert_int_equal(taskspan_spans_get(sp, 2)->n_links, 1);
    taskspan_spans_free(sp);
}

static void test_clean_exit_then_new_incarnation(void **state)
{
    fx *f = *state;
    const char *T = "clean";
    spawn_at(f->ts, T, 100);
    main_at(f->ts, T, "runner_exit", NULL, 200);
    spawn_at(f->ts, T, 300);
    main_at(f->ts, T, "runner_exit", NULL, 400);
    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 2);
    const taskspan_span *m1 = taskspan_spans_get(sp, 0);
    const taskspan_span *m2 = taskspan_spans_get(sp, 1);
    /* A runner that exited did not crash. */
    assert_int_equal(m1->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(span_crashed(m1), 0);
    assert_int_equal(m1->end_ns, 200);
    assert_int_equal(m2->incarnation, 2);
    assert_int_equal(m2->end_ns, 400);
    assert_int_equal(m2->n_links, 1);
    assert_memory_equal(m2->links[0].span_id, m1->span_id, 8);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* Work items                                                               */
/* ======================================================================== */

static void test_work_item_retried(void **state)
{
    fx *f = *state;
    const char *T = "retry";
    spawn_at(f->ts, T, 100);
    work_at(f->ts, T, "work_item_start", "x", 200, NULL);
    work_at(f->ts, T, "work_item_failed", "x", 300, "boom");
    work_at(f->ts, T, "work_item_start", "x", 400, NULL);
    work_at(f->ts, T, "work_item_done", "x", 500, NULL);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *a = taskspan_spans_get(sp, 1);
    const taskspan_span *b = taskspan_spans_get(sp, 2);
    assert_string_equal(a->name, "work_x");
    assert_string_equal(b->name, "work_x");
    static const int64_t a_seqs[] = {2, 3}, b_seqs[] = {4, 5};
    assert_seqs(a, a_seqs, 2);
    assert_seqs(b, b_seqs, 2);

    assert_int_equal(a->is_open, 0);
    assert_int_equal(a->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(a->status_message, "boom");
    assert_int_equal(a->start_ns, 200);
    assert_int_equal(a->end_ns, 300);
    assert_null(attr_find(a->attrs, a->n_attrs, "taskspan.instance"));

    assert_int_equal(b->is_open, 0);
    assert_int_equal(b->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(b->start_ns, 400);
    assert_int_equal(b->end_ns, 500);
    const taskspan_attr *inst = attr_find(b->attrs, b->n_attrs,
                                          "taskspan.instance");
    assert_non_null(inst);
    assert_int_equal(inst->type, TASKSPAN_ATTR_INT);
    assert_int_equal(inst->value.i, 1);

    assert_memory_not_equal(a->span_id, b->span_id, 8);
    assert_int_equal(a->parent_index, 0);
    assert_int_equal(b->parent_index, 0);
    assert_memory_equal(a->parent_span_id, m->span_id, 8);
    assert_memory_equal(b->parent_span_id, m->span_id, 8);
    /* A work item's failure is its own, not main's. */
    assert_int_equal(m->status, TASKSPAN_STATUS_UNSET);
    taskspan_spans_free(sp);
}

static void test_runner_exit_closes_unfinished_work(void **state)
{
    fx *f = *state;
    const char *T = "unfinished";
    spawn_at(f->ts, T, 100);
    work_at(f->ts, T, "work_item_start", "done1", 150, NULL);
    work_at(f->ts, T, "work_item_done", "done1", 180, NULL);
    work_at(f->ts, T, "work_item_start", "w", 200, NULL);
    work_at(f->ts, T, "lease_acquired", "w", 250, NULL);
    main_at(f->ts, T, "runner_exit", NULL, 400);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *d = taskspan_spans_get(sp, 1);
    const taskspan_span *w = taskspan_spans_get(sp, 2);
    assert_string_equal(w->name, "work_w");
    assert_int_equal(w->is_open, 0);
    assert_int_equal(w->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(w->status_message, MSG_UNFINISHED);
    assert_int_equal(w->end_ns, 250);     /* its own last event */
    assert_int_equal(span_crashed(w), 0); /* the runner exited; no crash */
    /* The finished one and main are fine. */
    assert_int_equal(d->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(d->end_ns, 180);
    assert_int_equal(m->is_open, 0);
    assert_int_equal(m->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(m->end_ns, 400);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* Gates                                                                    */
/* ======================================================================== */

static const taskspan_span *main_of(const taskspan_spans *sp)
{
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    assert_non_null(m);
    assert_string_equal(m->name, "main");
    return m;
}

static void test_gate_retry_then_pass(void **state)
{
    fx *f = *state;
    const char *T = "gate-retry";
    int64_t s;
    assert_int_equal(taskspan_emit_runner_spawn(&s, f->ts, T, 1, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_start(&s, f->ts, T, "x", 60, NULL),
                     TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, T, "x", "failed", 0,
                                               1, 2.0, NULL),
                     TASKSPAN_OK);
    /* Failed so far. */
    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(main_of(sp)->status, TASKSPAN_STATUS_ERROR);
    taskspan_spans_free(sp);

    assert_int_equal(
        taskspan_emit_gate_retry(&s, f->ts, T, "x", 2, 3, "flaky", NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, T, "x", "passed", 1,
                                               0, 1.0, NULL),
                     TASKSPAN_OK);
    sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 1);
    const taskspan_span *m = main_of(sp);
    assert_int_not_equal(m->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m->status_message, "");
    assert_int_equal(m->n_events, 5);
    taskspan_spans_free(sp);
}

static void test_gate_failed(void **state)
{
    fx *f = *state;
    int64_t s;

    /* A failed gate alone. */
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "g1", 1, NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g1", "x", "failed",
                                               0, 2, 0.5, NULL),
                     TASKSPAN_OK);
    taskspan_spans *sp = spans_of(f->ts, "g1");
    const taskspan_span *m = main_of(sp);
    assert_int_equal(m->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m->status_message, "gate 'x' failed");
    assert_int_equal(m->is_open, 1); /* a gate result does not close main */
    taskspan_spans_free(sp);

    /* Another gate passing does not clear it. */
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "g2", 1, NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g2", "lint",
                                               "failed", 0, 1, 0.5, NULL),
                     TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g2", "doctor",
                                               "passed", 1, 0, 0.5, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_runner_exit(&s, f->ts, "g2", 1, "failed", 1, NULL),
        TASKSPAN_OK);
    sp = spans_of(f->ts, "g2");
    m = main_of(sp);
    assert_int_equal(m->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m->status_message, "gate 'lint' failed");
    assert_int_equal(m->is_open, 0);
    taskspan_spans_free(sp);

    /* The latest result of a gate decides: passed, then failed. */
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "g3", 1, NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g3", "x", "passed",
                                               1, 0, 0.5, NULL),
                     TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g3", "x", "timeout",
                                               0, -1, 30.0, NULL),
                     TASKSPAN_OK);
    sp = spans_of(f->ts, "g3");
    m = main_of(sp);
    assert_int_equal(m->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m->status_message, "gate 'x' failed");
    taskspan_spans_free(sp);

    /* Only passing gates: no error. */
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "g4", 1, NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "g4", "x", "passed",
                                               1, 0, 0.5, NULL),
                     TASKSPAN_OK);
    sp = spans_of(f->ts, "g4");
    assert_int_equal(main_of(sp)->status, TASKSPAN_STATUS_UNSET);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* Recovery sweeps                                                          */
/* ======================================================================== */

static int64_t detected_at(taskspan *ts, const char *task, int64_t expired,
                           int64_t t)
{
    taskspan_attr a[] = {taskspan_attr_int("expired_count", expired)};
    return emit_at(ts, task, "recovery_detected", "recovery_sweep", NULL,
                   "recovery_sweep", "recovery", t, a, 1);
}

static int64_t requeued_at(taskspan *ts, const char *task, const char *wi,
                           int64_t t)
{
    taskspan_attr a[] = {taskspan_attr_str("work_item_id", wi)};
    return emit_at(ts, task, "recovery_requeued", "recovery_sweep", NULL,
                   "recovery_sweep", "recovery", t, a, 1);
}

static void test_recovery_sweep_counts(void **state)
{
    fx *f = *state;

    /* Nothing expired: the sweep closes at once. */
    detected_at(f->ts, "r0", 0, 100);
    taskspan_spans *sp = spans_of(f->ts, "r0");
    assert_int_equal(taskspan_spans_count(sp), 1);
    const taskspan_span *s = taskspan_spans_get(sp, 0);
    assert_string_equal(s->name, "recovery_sweep");
    assert_int_equal(s->is_open, 0);
    assert_int_equal(s->start_ns, 100);
    assert_int_equal(s->end_ns, 100);
    assert_int_equal(s->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(s->n_events, 1);
    taskspan_spans_free(sp);

    /* Two expired: open after one requeue, closed after the second. */
    detected_at(f->ts, "r2", 2, 100);
    requeued_at(f->ts, "r2", "a", 200);
    sp = spans_of(f->ts, "r2");
    assert_int_equal(taskspan_spans_count(sp), 1);
    s = taskspan_spans_get(sp, 0);
    assert_int_equal(s->is_open, 1);
    assert_int_equal(s->end_ns, 0);
    assert_int_equal(s->n_events, 2);
    taskspan_spans_free(sp);

    requeued_at(f->ts, "r2", "b", 300);
    sp = spans_of(f->ts, "r2");
    assert_int_equal(taskspan_spans_count(sp), 1);
    s = taskspan_spans_get(sp, 0);
    assert_int_equal(s->is_open, 0);
    assert_int_equal(s->start_ns, 100);
    assert_int_equal(s->end_ns, 300);
    assert_int_equal(s->status, TASKSPAN_STATUS_UNSET);
    static const int64_t seqs[] = {1, 2, 3};
    assert_seqs(s, seqs, 3);
    taskspan_spans_free(sp);

    /* A later sweep is a new span (a second instance of the key). */
    detected_at(f->ts, "r0", 1, 500);
    requeued_at(f->ts, "r0", "c", 600);
    sp = spans_of(f->ts, "r0");
    assert_int_equal(taskspan_spans_count(sp), 2);
    const taskspan_span *s1 = taskspan_spans_get(sp, 0);
    const taskspan_span *s2 = taskspan_spans_get(sp, 1);
    assert_string_equal(s2->name, "recovery_sweep");
    assert_int_equal(s1->n_events, 1);
    assert_int_equal(s2->n_events, 2);
    assert_int_equal(s2->is_open, 0);
    assert_int_equal(s2->end_ns, 600);
    assert_memory_not_equal(s1->span_id, s2->span_id, 8);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* More rules of docs/span-model.md                                         */
/* ======================================================================== */

static const taskspan_attr *span_attr(const taskspan_span *s, const char *k)
{
    return attr_find(s->attrs, s->n_attrs, k);
}

/* An event whose key's latest instance is closed opens a new instance. */
static void test_late_events(void **state)
{
    fx *f = *state;
    const char *T = "late";
    spawn_at(f->ts, T, 100);
    work_at(f->ts, T, "work_item_start", "x", 200, NULL);
    work_at(f->ts, T, "work_item_done", "x", 300, NULL);
    work_at(f->ts, T, "lease_renewed", "x", 350, NULL); /* late */
    main_at(f->ts, T, "runner_exit", NULL, 400);
    work_at(f->ts, T, "work_item_start", "y", 450, NULL); /* after exit */
    main_at(f->ts, T, "phase_enter", "verifying", 500);   /* late main */

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 5);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *x0 = taskspan_spans_get(sp, 1);
    const taskspan_span *x1 = taskspan_spans_get(sp, 2);
    const taskspan_span *y = taskspan_spans_get(sp, 3);
    const taskspan_span *m1 = taskspan_spans_get(sp, 4);
    assert_string_equal(x1->name, "work_x");
    assert_string_equal(y->name, "work_y");
    assert_string_equal(m1->name, "main");

    /* The closed span never changes. */
    assert_int_equal(x0->n_events, 2);
    assert_int_equal(x0->end_ns, 300);
    /* The late lease event opened instance 1 of work_x, a child of main;
     * runner_exit then closed it as unfinished, but it was never started,
     * so it keeps its status. */
    assert_int_equal(x1->n_events, 1);
    assert_int_equal(span_attr(x1, "taskspan.instance")->value.i, 1);
    assert_int_equal(x1->parent_index, 0);
    assert_memory_not_equal(x1->span_id, x0->span_id, 8);
    assert_int_equal(x1->is_open, 0);
    assert_int_equal(x1->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(x1->end_ns, 350);
    /* A span opened after runner_exit takes the latest main instance of
     * its incarnation as parent, even though that one is closed. */
    assert_int_equal(y->parent_index, 0);
    assert_memory_equal(y->parent_span_id, m->span_id, 8);
    assert_int_equal(y->is_open, 1);
    /* A main event after runner_exit: a second main instance, a root. */
    assert_int_equal(m->is_open, 0);
    assert_int_equal(m->end_ns, 400);
    assert_int_equal(m1->incarnation, 1);
    assert_int_equal(span_attr(m1, "taskspan.instance")->value.i, 1);
    assert_null(span_attr(m, "taskspan.instance"));
    assert_int_equal(m1->has_parent, 0);
    assert_int_equal(m1->is_open, 1);
    assert_int_equal(m1->n_links, 0); /* links only across incarnations */
    assert_memory_not_equal(m1->span_id, m->span_id, 8);
    /* The ids are those of (key, incarnation, ordinal). */
    uint8_t want[8];
    taskspan__derive_span_id(want, m->trace_id, NULL, "work_x", 1, 1);
    assert_memory_equal(x1->span_id, want, 8);
    taskspan__derive_span_id(want, m->trace_id, NULL, "main", 1, 1);
    assert_memory_equal(m1->span_id, want, 8);
    taskspan_spans_free(sp);

    /* The next runner_spawn closes the late instances: their runner exited
     * normally, so they are not crashed and keep their status. */
    spawn_at(f->ts, T, 900);
    sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 6);
    y = taskspan_spans_get(sp, 3);
    m1 = taskspan_spans_get(sp, 4);
    assert_int_equal(y->is_open, 0);
    assert_int_equal(y->end_ns, 450);
    assert_int_equal(y->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(span_crashed(y), 0);
    assert_int_equal(m1->is_open, 0);
    assert_int_equal(m1->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(span_crashed(m1), 0);
    const taskspan_span *m2 = taskspan_spans_get(sp, 5);
    assert_int_equal(m2->incarnation, 2);
    /* The link goes to the latest main instance of incarnation 1. */
    assert_int_equal(m2->n_links, 1);
    assert_memory_equal(m2->links[0].span_id, m1->span_id, 8);
    taskspan_spans_free(sp);
}

static void test_unfinished_at_exit_details(void **state)
{
    fx *f = *state;
    const char *T = "exit-details";
    spawn_at(f->ts, T, 100);
    /* A work span that only saw lease events: not "started". */
    work_at(f->ts, T, "lease_acquired", "l", 150, NULL);
    /* A started span whose last event is later than the exit. */
    work_at(f->ts, T, "work_item_start", "late", 200, NULL);
    work_at(f->ts, T, "lease_renewed", "late", 900, NULL);
    /* A sweep still short of requeues. */
    detected_at(f->ts, T, 2, 300);
    requeued_at(f->ts, T, "a", 350);
    /* A span of a key of our own. */
    emit_at(f->ts, T, "custom", "mine", NULL, "me", NULL, 360, NULL, 0);
    main_at(f->ts, T, "runner_exit", NULL, 500);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 5);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *l = taskspan_spans_get(sp, 1);
    const taskspan_span *late = taskspan_spans_get(sp, 2);
    const taskspan_span *sw = taskspan_spans_get(sp, 3);
    const taskspan_span *mine = taskspan_spans_get(sp, 4);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(taskspan_spans_get(sp, i)->is_open, 0);
        assert_int_equal(span_crashed(taskspan_spans_get(sp, i)), 0);
    }
    assert_int_equal(m->end_ns, 500);
    assert_int_equal(m->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(l->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(l->end_ns, 150);
    assert_int_equal(late->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(late->status_message, MSG_UNFINISHED);
    assert_int_equal(late->end_ns, 500); /* the exit is earlier */
    assert_string_equal(sw->name, "recovery_sweep");
    assert_int_equal(sw->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(sw->status_message, MSG_SWEEP_SHORT);
    assert_int_equal(sw->end_ns, 350);
    assert_string_equal(mine->name, "mine");
    assert_int_equal(mine->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(mine->end_ns, 360);
    taskspan_spans_free(sp);
}

static void test_sweep_extra_rules(void **state)
{
    fx *f = *state;

    /* A requeue beyond the expected number opens a new sweep instance
     * whose count is unknown: it never closes by count. */
    detected_at(f->ts, "s1", 1, 100);
    requeued_at(f->ts, "s1", "a", 200);
    requeued_at(f->ts, "s1", "b", 300);
    requeued_at(f->ts, "s1", "c", 400);
    taskspan_spans *sp = spans_of(f->ts, "s1");
    assert_int_equal(taskspan_spans_count(sp), 2);
    const taskspan_span *a = taskspan_spans_get(sp, 0);
    const taskspan_span *b = taskspan_spans_get(sp, 1);
    assert_int_equal(a->is_open, 0);
    assert_int_equal(a->end_ns, 200);
    assert_int_equal(b->is_open, 1);
    assert_int_equal(b->n_events, 2);
    assert_int_equal(span_attr(b, "taskspan.instance")->value.i, 1);
    taskspan_spans_free(sp);

    /* No (or a negative, or a non-integer) expired_count: unknown. */
    static const char *const kinds[] = {"none", "negative", "string"};
    for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
        char task[32];
        taskspan_attr attr[1];
        size_t n = 0;
        snprintf(task, sizeof task, "s-%s", kinds[k]);
        if (k == 1) {
            attr[n++] = taskspan_attr_int("expired_count", -2);
        } else if (k == 2) {
            attr[n++] = taskspan_attr_str("expired_count", "1");
        }
        emit_at(f->ts, task, "recovery_detected", "recovery_sweep", NULL,
                "recovery_sweep", "recovery", 100, attr, n);
        requeued_at(f->ts, task, "a", 200);
        requeued_at(f->ts, task, "b", 300);
        sp = spans_of(f->ts, task);
        assert_int_equal(taskspan_spans_count(sp), 1);
        assert_int_equal(taskspan_spans_get(sp, 0)->is_open, 1);
        assert_int_equal(taskspan_spans_get(sp, 0)->n_events, 3);
        taskspan_spans_free(sp);
    }

    /* The report's own order: the sweep runs after runner_exit. A sweep
     * still short when the next runner starts gets ERROR, not crashed. */
    spawn_at(f->ts, "s2", 100);
    main_at(f->ts, "s2", "runner_exit", NULL, 200);
    detected_at(f->ts, "s2", 2, 300);
    requeued_at(f->ts, "s2", "a", 400);
    spawn_at(f->ts, "s2", 500);
    sp = spans_of(f->ts, "s2");
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *sw = taskspan_spans_get(sp, 1);
    assert_string_equal(sw->name, "recovery_sweep");
    assert_int_equal(sw->is_open, 0);
    assert_int_equal(sw->end_ns, 400);
    assert_int_equal(sw->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(sw->status_message, MSG_SWEEP_SHORT);
    assert_int_equal(span_crashed(sw), 0);
    taskspan_spans_free(sp);
}

/* Closing rules apply by event type on the instance the event landed on,
 * except that only runner_exit closes main. */
static void test_rules_by_type_and_key(void **state)
{
    fx *f = *state;
    const char *T = "by-type";
    taskspan_attr err[] = {taskspan_attr_str("error", "nope")};
    spawn_at(f->ts, T, 100);
    emit_at(f->ts, T, "work_item_done", "main", NULL, "x", NULL, 110, NULL, 0);
    emit_at(f->ts, T, "work_item_failed", "main", NULL, "x", NULL, 120, err,
            1);
    emit_at(f->ts, T, "recovery_detected", "main", NULL, "x", NULL, 130, NULL,
            0);
    emit_at(f->ts, T, "runner_exit", "other", NULL, "x", NULL, 140, NULL, 0);
    /* A work span closed by a failure without an error text. */
    work_at(f->ts, T, "work_item_start", "w", 150, NULL);
    work_at(f->ts, T, "work_item_failed", "w", 160, NULL);
    /* A closing time earlier than the start is raised to the start. */
    work_at(f->ts, T, "work_item_start", "back", 300, NULL);
    work_at(f->ts, T, "work_item_done", "back", 250, NULL);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 4);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *other = taskspan_spans_get(sp, 1);
    const taskspan_span *w = taskspan_spans_get(sp, 2);
    const taskspan_span *back = taskspan_spans_get(sp, 3);
    assert_int_equal(m->n_events, 4);
    assert_int_equal(m->is_open, 1);
    assert_int_equal(m->status, TASKSPAN_STATUS_UNSET);
    assert_string_equal(other->name, "other");
    assert_int_equal(other->is_open, 1);
    assert_int_equal(w->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(w->status_message, "work item failed");
    assert_int_equal(back->is_open, 0);
    assert_int_equal(back->start_ns, 300);
    assert_int_equal(back->end_ns, 300);
    taskspan_spans_free(sp);
}

/* A step recorded as "<x>_start" ... "<x>_end" on its own span (what
 * `taskspan exec` records) closes at its *_end event; a failed step (an
 * error text, a non-zero exit_code, a signal) is in ERROR; a *_end on main
 * does not close main; the same step run again is a new span. */
static void test_step_end_closes(void **state)
{
    fx *f = *state;
    const char *T = "steps";
    taskspan_attr ok[] = {taskspan_attr_int("exit_code", 0)};
    taskspan_attr code[] = {taskspan_attr_int("exit_code", 3)};
    taskspan_attr sig[] = {taskspan_attr_int("exit_code", 0),
                           taskspan_attr_int("signal", 15)};
    taskspan_attr txt[] = {taskspan_attr_str("error", "no such file")};

    spawn_at(f->ts, T, 1000);
    emit_at(f->ts, T, "exec_start", "exec_a", "main", "exec", NULL, 1100, NULL,
            0);
    emit_at(f->ts, T, "exec_end", "exec_a", "main", "exec", NULL, 1200, ok, 1);
    emit_at(f->ts, T, "exec_start", "exec_a", "main", "exec", NULL, 1300, NULL,
            0);
    emit_at(f->ts, T, "exec_end", "exec_a", "main", "exec", NULL, 1400, code,
            1);
    emit_at(f->ts, T, "build_start", "build", "main", "ci", NULL, 1500, NULL,
            0);
    emit_at(f->ts, T, "build_end", "build", "main", "ci", NULL, 1600, sig, 2);
    emit_at(f->ts, T, "fetch_end", "fetch", "main", "ci", NULL, 1700, txt, 1);
    emit_at(f->ts, T, "phase_end", "main", NULL, "runner", NULL, 1800, NULL,
            0);

    taskspan_spans *sp = spans_of(f->ts, T);
    assert_int_equal(taskspan_spans_count(sp), 5);
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    const taskspan_span *a1 = taskspan_spans_get(sp, 1);
    const taskspan_span *a2 = taskspan_spans_get(sp, 2);
    const taskspan_span *b = taskspan_spans_get(sp, 3);
    const taskspan_span *fe = taskspan_spans_get(sp, 4);
    assert_string_equal(m->name, "main");
    assert_int_equal(m->is_open, 1); /* phase_end on main closes nothing */
    assert_int_equal(m->n_events, 2);

    assert_string_equal(a1->name, "exec_a");
    assert_int_equal(a1->is_open, 0);
    assert_int_equal(a1->start_ns, 1100);
    assert_int_equal(a1->end_ns, 1200);
    assert_int_equal(a1->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(a1->parent_index, 0);

    assert_string_equal(a2->name, "exec_a"); /* run again: a new instance */
    assert_memory_not_equal(a2->span_id, a1->span_id, 8);
    assert_int_equal(a2->is_open, 0);
    assert_int_equal(a2->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(a2->status_message, "exited with code 3");

    assert_int_equal(b->end_ns, 1600);
    assert_int_equal(b->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(b->status_message, "killed by signal 15");

    assert_int_equal(fe->n_events, 1); /* an _end alone opens and closes */
    assert_int_equal(fe->is_open, 0);
    assert_int_equal(fe->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(fe->status_message, "no such file");
    taskspan_spans_free(sp);
}

static void test_gate_details(void **state)
{
    fx *f = *state;

    /* No gate_name: the gate "". */
    taskspan_attr nameless[] = {taskspan_attr_bool("passed", 0)};
    spawn_at(f->ts, "gd1", 100);
    emit_at(f->ts, "gd1", "gate_result", "main", NULL, "gate_runner",
            "verifying", 200, nameless, 1);
    taskspan_spans *sp = spans_of(f->ts, "gd1");
    assert_string_equal(main_of(sp)->status_message, "gate '' failed");
    taskspan_spans_free(sp);

    /* No (or a non-boolean) passed counts as passed. */
    taskspan_attr no_passed[] = {taskspan_attr_str("gate_name", "g")};
    taskspan_attr int_passed[] = {taskspan_attr_str("gate_name", "h"),
                                  taskspan_attr_int("passed", 0)};
    spawn_at(f->ts, "gd2", 100);
    emit_at(f->ts, "gd2", "gate_result", "main", NULL, "gate_runner",
            "verifying", 200, no_passed, 1);
    emit_at(f->ts, "gd2", "gate_result", "main", NULL, "gate_runner",
            "verifying", 300, int_passed, 2);
    sp = spans_of(f->ts, "gd2");
    assert_int_equal(main_of(sp)->status, TASKSPAN_STATUS_UNSET);
    taskspan_spans_free(sp);

    /* A failed gate does not replace another ERROR's message. */
    int64_t s;
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "gd3", 1, NULL, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "gd3", "x", "failed",
                                               0, 1, 1.0, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_runner_spawn(&s, f->ts, "gd3", 2, NULL, NULL),
        TASKSPAN_OK);
    /* A pass in the next incarnation does not clear the earlier main. */
    assert_int_equal(taskspan_emit_gate_result(&s, f->ts, "gd3", "x", "passed",
                                               1, 0, 1.0, NULL),
                     TASKSPAN_OK);
    sp = spans_of(f->ts, "gd3");
    assert_int_equal(taskspan_spans_count(sp), 2);
    const taskspan_span *m1 = taskspan_spans_get(sp, 0);
    const taskspan_span *m2 = taskspan_spans_get(sp, 1);
    assert_int_equal(m1->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(m1->status_message, MSG_CRASHED);
    assert_int_equal(m2->status, TASKSPAN_STATUS_UNSET);
    taskspan_spans_free(sp);
}

/* ======================================================================== */
/* taskspan__spans_build on hand-made events                                 */
/* ======================================================================== */

static taskspan__stored_event stored(int64_t seq, int64_t inc, int64_t t,
                                     const char *type, const char *span,
                                     const char *parent, const char *payload)
{
    taskspan__stored_event e;
    memset(&e, 0, sizeof e);
    e.seq = seq;
    e.incarnation = inc;
    e.ts_ns = t;
    e.event_type = type;
    e.actor = "runner";
    e.span_key = span;
    e.parent_span_key = parent;
    e.phase = NULL;
    e.payload_json = payload;
    return e;
}

/* The spans of task built from the n events evs, with no trace context.
 * Asserts that it built. */
static taskspan_spans *build_events(taskspan__stored_event *evs, size_t n,
                                    const char *task)
{
    taskspan__task_events te;
    taskspan_spans *sp = NULL;
    memset(&te, 0, sizeof te);
    te.events = evs;
    te.n_events = n;
    assert_int_equal(taskspan__spans_build(&sp, task, &te), TASKSPAN_OK);
    return sp;
}

static void test_build_with_trace_context(void **state)
{
    (void)state;
    taskspan__stored_event evs[] = {
        stored(1, 1, 10, "runner_spawn", "main", NULL, "{\"runner_pid\":1}"),
        stored(2, 1, 20, "work_item_start", "work_a", "main",
               "{\"work_item_id\":\"a\"}"),
        stored(3, 1, 30, "work_item_done", "work_a", "main", NULL),
        stored(4, 1, 40, "custom", "orphan", "no-such-span", "{}"),
    };
    taskspan__task_events te;
    memset(&te, 0, sizeof te);
    te.has_trace_context = true;
    for (int i = 0; i < 16; i++) {
        te.trace_id[i] = (uint8_t)(0xa0 + i);
    }
    for (int i = 0; i < 8; i++) {
        te.parent_span_id[i] = (uint8_t)(0x10 + i);
    }
    te.events = evs;
    te.n_events = ARRAY_LEN(evs);

    taskspan_spans *a = NULL, *b = NULL;
    assert_int_equal(taskspan__spans_build(&a, "ctx-task", &te), TASKSPAN_OK);
    assert_int_equal(taskspan__spans_build(&b, "ctx-task", &te), TASKSPAN_OK);
    assert_int_equal(taskspan_spans_count(a), 3);
    assert_int_equal(taskspan_spans_count(b), 3);
    const taskspan_span *m = taskspan_spans_get(a, 0);
    const taskspan_span *w = taskspan_spans_get(a, 1);
    const taskspan_span *o = taskspan_spans_get(a, 2);
    for (size_t i = 0; i < 3; i++) {
        const taskspan_span *x = taskspan_spans_get(a, i);
        const taskspan_span *y = taskspan_spans_get(b, i);
        assert_memory_equal(x->trace_id, te.trace_id, 16);
        assert_memory_equal(x->span_id, y->span_id, 8);
        assert_memory_equal(x->parent_span_id, y->parent_span_id, 8);
    }
    /* Root spans hang under the trace context's span. */
    assert_int_equal(m->has_parent, 1);
    assert_int_equal(m->parent_index, NO_INDEX);
    assert_memory_equal(m->parent_span_id, te.parent_span_id, 8);
    /* A parent key that names no span makes a root span. */
    assert_string_equal(o->name, "orphan");
    assert_int_equal(o->parent_index, NO_INDEX);
    assert_memory_equal(o->parent_span_id, te.parent_span_id, 8);
    /* A child hangs under its parent span. */
    assert_int_equal(w->parent_index, 0);
    assert_memory_equal(w->parent_span_id, m->span_id, 8);
    /* Ids are the documented function of (trace, key, incarnation,
     * ordinal). */
    uint8_t want[8];
    taskspan__derive_span_id(want, te.trace_id, NULL, "main", 1, 0);
    assert_memory_equal(m->span_id, want, 8);
    taskspan__derive_span_id(want, te.trace_id, NULL, "work_a", 1, 0);
    assert_memory_equal(w->span_id, want, 8);
    /* A NULL payload is an event without fields, not a failure. */
    assert_int_equal(w->n_events, 2);
    assert_int_equal(w->events[1].n_attrs, 2); /* taskspan.seq, .actor */
    taskspan_spans_free(a);
    taskspan_spans_free(b);
}

/* An event with more payload fields than fill_event's array on the stack
 * holds (16): every field is an attribute, in order, then taskspan.seq
 * and .actor; and events that share their strings (as load_task gives
 * them) or not give the same names. */
static void test_build_many_fields(void **state)
{
    (void)state;
    char payload[1024];
    size_t at = 0;
    at += (size_t)snprintf(payload, sizeof payload, "{");
    for (int i = 0; i < 40; i++) {
        at += (size_t)snprintf(payload + at, sizeof payload - at,
                               "%s\"f%02d\":%d", i ? "," : "", i, i);
    }
    snprintf(payload + at, sizeof payload - at, "}");
    char type_copy[] = "lease_renewed";
    taskspan__stored_event evs[] = {
        stored(1, 1, 10, "runner_spawn", "main", NULL, "{}"),
        stored(2, 1, 20, "lease_renewed", "main", NULL, payload),
        stored(3, 1, 30, type_copy, "main", NULL, "{}"),
    };
    taskspan_spans *sp = build_events(evs, ARRAY_LEN(evs), "many");
    const taskspan_span *m = taskspan_spans_get(sp, 0);
    assert_int_equal(m->n_events, 3);
    const taskspan_span_event *e = &m->events[1];
    assert_int_equal(e->n_attrs, 42);
    for (int i = 0; i < 40; i++) {
        char key[8];
        snprintf(key, sizeof key, "f%02d", i);
        assert_string_equal(e->attrs[i].key, key);
        assert_int_equal(e->attrs[i].value.i, i);
    }
    assert_string_equal(e->attrs[40].key, "taskspan.seq");
    assert_string_equal(e->attrs[41].key, "taskspan.actor");
    assert_string_equal(e->name, "lease_renewed");
    assert_string_equal(m->events[2].name, "lease_renewed");
    assert_string_equal(m->events[0].name, "runner_spawn");
    assert_string_equal(m->events[2].actor, "runner");
    taskspan_spans_free(sp);
}

static void test_build_incarnation_zero(void **state)
{
    (void)state;
    /* Events before any runner_spawn belong to incarnation 0. */
    taskspan__stored_event evs[] = {
        stored(1, 0, 10, "work_item_dispatched", "main", NULL, "{}"),
        stored(2, 0, 20, "work_item_start", "work_a", "main", "{}"),
        stored(3, 1, 30, "runner_spawn", "main", NULL, "{}"),
    };
    taskspan_spans *sp = build_events(evs, ARRAY_LEN(evs), "inc0");
    assert_int_equal(taskspan_spans_count(sp), 3);
    const taskspan_span *m0 = taskspan_spans_get(sp, 0);
    const taskspan_span *w0 = taskspan_spans_get(sp, 1);
    const taskspan_span *m1 = taskspan_spans_get(sp, 2);
    assert_int_equal(m0->incarnation, 0);
    assert_int_equal(w0->incarnation, 0);
    assert_int_equal(m1->incarnation, 1);
    assert_int_equal(w0->parent_index, 0);
    assert_int_equal(m0->has_parent, 0);
    assert_memory_not_equal(m0->span_id, m1->span_id, 8);
    uint8_t tid[16];
    taskspan__derive_trace_id(tid, "inc0");
    assert_memory_equal(m0->trace_id, tid, 16);
    assert_int_equal(m1->is_open, 1);
    assert_int_equal(m1->n_links, 0); /* incarnation 0 had no runner */
    /* Spans of incarnation 0 had no runner to crash: closed at the first
     * runner_spawn, at their last event, status kept. */
    assert_int_equal(m0->is_open, 0);
    assert_int_equal(w0->is_open, 0);
    assert_int_equal(m0->end_ns, 20); /* main covers its child */
    assert_int_equal(w0->end_ns, 20);
    assert_int_equal(m0->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(w0->status, TASKSPAN_STATUS_UNSET);
    assert_int_equal(span_crashed(m0), 0);
    assert_int_equal(span_crashed(w0), 0);
    taskspan_spans_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_span_hierarchy, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_seed_event_attributes, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_crashed_incarnation, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_clean_exit_then_new_incarnation,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_work_item_retried, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_runner_exit_closes_unfinished_work, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gate_retry_then_pass, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gate_failed, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_sweep_counts, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_late_events, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_at_exit_details,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_extra_rules, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_rules_by_type_and_key, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_step_end_closes, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_gate_details, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_build_with_trace_context),
        cmocka_unit_test(test_build_many_fields),
        cmocka_unit_test(test_build_incarnation_zero),
    };
    unsetenv("TRACEPARENT");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
