/*
 * test_close_order.c -- the order of a task's closed spans by close key
 * (taskspan__spans_close_key(): 2 x the seq of the event that closed the
 * span, + 1 when a crash mark after it did), then by index, only ever
 * grows at its end while the task's history goes on, and every span in it
 * keeps its bytes. So one count can say how many of a task's closed spans
 * were delivered.
 *
 * Random histories of one task (seeded, so a failure can be replayed):
 * runners spawned and killed without runner_exit, work items done, failed
 * and started again, recovery sweeps, steps, gates, exits, and crash marks
 * recorded after an event. For every state in time order (each event, and
 * each crash mark just after its event) the spans are built from the
 * hand-made stored events, the closed ones listed in that order with their
 * encodings, and each list must extend the one before. The exporter's
 * taskspan__spans_close_order() must give that order too.
 */
#include "config.h"
#include "encode_otlp.h"
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_EVENTS 160
#define HISTORIES 100
#define WORK_ITEMS 6

/* A history: its events, their strings, and its crash marks. */
typedef struct history {
    taskspan__stored_event ev[MAX_EVENTS];
    char payload[MAX_EVENTS][64];
    char key[MAX_EVENTS][32];
    size_t n;
    int64_t marks[MAX_EVENTS];
    size_t n_marks;
    unsigned rng;
} history;

/* One closed span in the list: its index and its encoding. */
typedef struct closed {
    size_t index;
    int64_t key;
    uint8_t *bytes;
    size_t len;
} closed;

static unsigned next_rand(history *h, unsigned below)
{
    h->rng = h->rng * 1103515245u + 12345u; /* deterministic per seed */
    return (h->rng >> 16) % below;
}

/* Fill e (event n of h) as the next thing a runner might record. */
static void next_event(history *h, int64_t *incarnation, bool *exited,
                       bool open_work[WORK_ITEMS])
{
    size_t n = h->n;
    taskspan__stored_event *e = &h->ev[n];
    unsigned r = next_rand(h, 100);

    memset(e, 0, sizeof *e);
    e->seq = (int64_t)n + 1;
    e->ts_ns = 1000 + (int64_t)n * 3 + next_rand(h, 3);
    e->actor = "runner";
    e->payload_json = "{}";
    e->span_key = "main";
    if (*incarnation == 0 || (*exited && r < 50) || r < 4) {
        /* a runner starts, after an exit or over one that was killed */
        ++*incarnation;
        *exited = false;
        memset(open_work, 0, WORK_ITEMS * sizeof *open_work);
        e->event_type = "runner_spawn";
        e->payload_json = "{\"runner_pid\":1}";
    } else if (*exited) {
        /* an event after runner_exit (the report's sweep runs then) */
        snprintf(h->key[n], sizeof h->key[n], "work_late%u", next_rand(h, 3));
        e->event_type = "work_item_start";
        e->span_key = h->key[n];
        e->parent_span_key = "main";
    } else if (r < 35) {
        unsigned w = next_rand(h, WORK_ITEMS);
        unsigned how = next_rand(h, 3);
        snprintf(h->key[n], sizeof h->key[n], "work_w%u", w);
        e->span_key = h->key[n];
        e->parent_span_key = "main";
        if (!open_work[w]) {
            e->event_type = "work_item_start";
            open_work[w] = true;
        } else if (how == 0) {
            e->event_type = "lease_renewed";
        } else {
            e->event_type = how == 1 ? "work_item_done" : "work_item_failed";
            open_work[w] = false;
            snprintf(h->payload[n], sizeof h->payload[n],
                     "{\"error\":\"failed %u\"}", w);
            e->payload_json = how == 2 ? h->payload[n] : "{}";
        }
    } else if (r < 45) {
        e->span_key = "recovery_sweep";
        e->parent_span_key = "main";
        if (next_rand(h, 2) == 0) {
            e->event_type = "recovery_detected";
            snprintf(h->payload[n], sizeof h->payload[n],
                     "{\"expired_count\":%u}", next_rand(h, 3));
            e->payload_json = h->payload[n];
        } else {
            e->event_type = "recovery_requeued";
        }
    } else if (r < 55) {
        e->span_key = "step_build";
        e->parent_span_key = "main";
        if (next_rand(h, 2) == 0) {
            e->event_type = "build_start";
        } else {
            e->event_type = "build_end";
            snprintf(h->payload[n], sizeof h->payload[n], "{\"exit_code\":%u}",
                     next_rand(h, 2));
            e->payload_json = h->payload[n];
        }
    } else if (r < 62) {
        e->span_key = "gate_review";
        e->parent_span_key = "main";
        e->event_type = "gate_result";
        snprintf(h->payload[n], sizeof h->payload[n],
                 "{\"gate_name\":\"g%u\",\"passed\":%s}", next_rand(h, 2),
                 next_rand(h, 2) ? "true" : "false");
        e->payload_json = h->payload[n];
    } else if (r < 68) {
        e->event_type = "runner_exit";
        e->payload_json = "{\"exit_reason\":\"done\"}";
        *exited = true;
    } else {
        e->event_type = r < 80 ? "phase_enter" : "checkpoint_created";
        e->phase = "executing";
    }
    e->incarnation = *incarnation;
    h->n++;
}

static void make_history(history *h, unsigned seed)
{
    int64_t incarnation = 0;
    bool exited = true, marked = false;
    bool open_work[WORK_ITEMS] = {false};
    size_t len = 30 + seed % (MAX_EVENTS - 30);

    memset(h, 0, sizeof *h);
    h->rng = seed;
    while (h->n < len) {
        int64_t before = incarnation;
        next_event(h, &incarnation, &exited, open_work);
        marked = marked && incarnation == before;
        /* The runner found dead after this event (once per incarnation,
         * as the exporter records it only while nothing newer exists). */
        if (!exited && !marked && next_rand(h, 12) == 0) {
            h->marks[h->n_marks++] = (int64_t)h->n;
            marked = true;
        }
    }
}

static int by_close_order(const void *a, const void *b)
{
    const closed *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The closed spans of h's first k events and first m marks, in close
 * order. OUT: *n. */
static closed *close_order(const history *h, size_t k, size_t m, size_t *n,
                           const taskspan__limits *limits)
{
    taskspan__task_events te;
    taskspan_spans *spans = NULL;

    memset(&te, 0, sizeof te);
    te.events = (taskspan__stored_event *)h->ev;
    te.n_events = k;
    te.crash_closed_seqs = (int64_t *)h->marks;
    te.n_crash_closed = m;
    assert_int_equal(taskspan__spans_build(&spans, "T", &te), TASKSPAN_OK);
    size_t count = taskspan_spans_count(spans);
    closed *out = calloc(count + 1, sizeof *out);
    assert_non_null(out);
    *n = 0;
    for (size_t i = 0; i < count; i++) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        int64_t key = taskspan__spans_close_key(spans, i);
        assert_true(s->is_open == (key < 0));
        if (s->is_open) {
            continue;
        }
        closed *c = &out[(*n)++];
        c->index = i;
        c->key = key;
        assert_int_equal(taskspan__encode_span(&c->bytes, &c->len, s, limits),
                         TASKSPAN_OK);
    }
    qsort(out, *n, sizeof *out, by_close_order);
    /* The exporter's order (taskspan__spans_close_order, with its shortcuts
     * for spans sorted already, or but for the first) is this one. */
    size_t *order = NULL, n_order = 0;
    assert_int_equal(taskspan__spans_close_order(spans, &order, &n_order),
                     TASKSPAN_OK);
    assert_int_equal(n_order, *n);
    for (size_t i = 0; i < n_order; i++) {
        assert_int_equal(order[i], out[i].index);
    }
    free(order);
    taskspan_spans_free(spans);
    return out;
}

static void free_order(closed *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        free(c[i].bytes);
    }
    free(c);
}

/* Replay h state by state; returns the number of states checked. */
static size_t check_history(const history *h, const taskspan__limits *limits)
{
    closed *prev = NULL;
    size_t n_prev = 0, states = 0, m = 0;

    for (size_t k = 1; k <= h->n; k++) {
        for (int with_mark = 0; with_mark < 2; with_mark++) {
            if (with_mark) {
                if (m == h->n_marks || h->marks[m] != (int64_t)k) {
                    continue;
                }
                m++;
            }
            size_t n = 0;
            closed *cur = close_order(h, k, m, &n, limits);
            assert_true(n >= n_prev);
            for (size_t i = 0; i < n_prev; i++) {
                if (prev[i].index != cur[i].index ||
                    prev[i].len != cur[i].len ||
                    memcmp(prev[i].bytes, cur[i].bytes, cur[i].len) != 0) {
                    fail_msg("close order changed at state (%zu events, "
                             "%zu marks), position %zu: span %zu, was %zu",
                             k, m, i, cur[i].index, prev[i].index);
                }
            }
            free_order(prev, n_prev);
            prev = cur;
            n_prev = n;
            states++;
        }
    }
    free_order(prev, n_prev);
    return states;
}

static void test_close_order_only_grows(void **state)
{
    taskspan__limits limits = {
        .span_attrs = 128,
        .span_events = 32768,
        .span_links = 128,
        .event_attrs = 128,
        .link_attrs = 128,
        .value_len = 0,
    };
    size_t states = 0, marks = 0, crashed = 0;

    (void)state;
    for (unsigned seed = 1; seed <= HISTORIES; seed++) {
        static history h;
        make_history(&h, seed);
        states += check_history(&h, &limits);
        marks += h.n_marks;
        for (size_t i = 1; i < h.n; i++) {
            crashed += h.ev[i].incarnation != h.ev[i - 1].incarnation &&
                       strcmp(h.ev[i - 1].event_type, "runner_exit") != 0;
        }
    }
    /* The histories did cover what the order is about. */
    assert_true(states > 1000);
    assert_true(marks > 10);
    assert_true(crashed > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_order_only_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
