/*
 * test_encode_span.c -- the direct Span encoder (encode_span.c) writes
 * exactly the bytes protobuf-c packs (taskspan__encode_span_pbc) for the
 * same span: every attribute type, empty and cut strings, events, links,
 * parents local and remote, statuses, and every limit.
 */
#include "encode_otlp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void assert_same_bytes(const taskspan_span *s,
                              const taskspan__limits *lim)
{
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(taskspan__encode_span(&a, &na, s, lim), TASKSPAN_OK);
    assert_int_equal(taskspan__encode_span_pbc(&b, &nb, s, lim), TASKSPAN_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

static const char *const strs[] = {"a", "", "caf\xc3\xa9 au lait"};
static const int64_t ints[] = {0, -1, 300, INT64_MIN};
static const double dbls[] = {0.0, -2.5, 1e300};
static const int bools[] = {1, 0, 1};

static taskspan_attr arr(const char *key, taskspan_attr_type t,
                         const void *items, size_t n)
{
    taskspan_attr a = {.key = key, .type = t};
    a.value.array.items = items;
    a.value.array.count = n;
    return a;
}

static void test_same_bytes_as_protobuf_c(void **state)
{
    (void)state;
    const taskspan_attr attrs[] = {
        taskspan_attr_str("s", "value"),
        taskspan_attr_str("", "empty key"),
        taskspan_attr_str("empty", ""),
        taskspan_attr_str("long", "caf\xc3\xa9 \xe2\x82\xac long value"),
        taskspan_attr_int("zero", 0),
        taskspan_attr_int("neg", -5),
        taskspan_attr_int("big", INT64_MAX),
        taskspan_attr_double("d0", 0.0),
        taskspan_attr_double("d", 3.25),
        taskspan_attr_bool("f", 0),
        taskspan_attr_bool("t", 1),
        arr("sa", TASKSPAN_ATTR_STRING_ARRAY, strs, ARRAY_LEN(strs)),
        arr("ia", TASKSPAN_ATTR_INT_ARRAY, ints, ARRAY_LEN(ints)),
        arr("da", TASKSPAN_ATTR_DOUBLE_ARRAY, dbls, ARRAY_LEN(dbls)),
        arr("ba", TASKSPAN_ATTR_BOOL_ARRAY, bools, ARRAY_LEN(bools)),
        arr("none", TASKSPAN_ATTR_INT_ARRAY, ints, 0),
    };
    taskspan_span_event events[3] = {
        {.name = "work_item_start",
         .time_ns = 1700000000000000001,
         .attrs = attrs,
         .n_attrs = ARRAY_LEN(attrs)},
        {.name = "", .time_ns = 0, .attrs = NULL, .n_attrs = 0},
        {.name = NULL, .time_ns = 5, .attrs = attrs, .n_attrs = 2},
    };
    taskspan_span_link links[2] = {{.reason = "previous_incarnation"},
                                   {.reason = NULL}};
    memset(links[0].trace_id, 0xab, 16);
    memset(links[0].span_id, 0xcd, 8);
    taskspan_span s = {
        .has_parent = 1,
        .parent_index = 0,
        .name = "work_wi_001",
        .start_ns = 1700000000000000000,
        .end_ns = 1700000000500000000,
        .status = TASKSPAN_STATUS_ERROR,
        .status_message = "it failed",
        .attrs = attrs,
        .n_attrs = ARRAY_LEN(attrs),
        .events = events,
        .n_events = ARRAY_LEN(events),
        .links = links,
        .n_links = ARRAY_LEN(links),
    };
    memset(s.trace_id, 0x11, 16);
    memset(s.span_id, 0x22, 8);
    memset(s.parent_span_id, 0x33, 8);

    taskspan__limits none = {SIZE_MAX, SIZE_MAX, SIZE_MAX,
                             SIZE_MAX, SIZE_MAX, SIZE_MAX};
    taskspan__limits tight = {3, 2, 1, 1, 0, 4};
    taskspan__limits zero = {0, 0, 0, 0, 0, 0};
    const taskspan__limits *lims[] = {&none, &tight, &zero};

    for (size_t l = 0; l < ARRAY_LEN(lims); l++) {
        assert_same_bytes(&s, lims[l]);
        s.parent_index = (size_t)-1; /* a remote parent */
        assert_same_bytes(&s, lims[l]);
        s.has_parent = 0;
        s.status = TASKSPAN_STATUS_OK;
        assert_same_bytes(&s, lims[l]);
        s.status = TASKSPAN_STATUS_UNSET;
        s.status_message = "";
        s.n_events = 0;
        s.n_links = 0;
        s.n_attrs = 0;
        assert_same_bytes(&s, lims[l]);
        s.start_ns = 0;
        s.end_ns = 0;
        s.name = "";
        assert_same_bytes(&s, lims[l]);
        /* back to the full span */
        s.has_parent = 1;
        s.parent_index = 0;
        s.name = "work_wi_001";
        s.start_ns = 1700000000000000000;
        s.end_ns = 1700000000500000000;
        s.status = TASKSPAN_STATUS_ERROR;
        s.status_message = "it failed";
        s.n_attrs = ARRAY_LEN(attrs);
        s.n_events = ARRAY_LEN(events);
        s.n_links = ARRAY_LEN(links);
    }
}

/* A span of many events, each with attributes: more lengths than the
 * encoder keeps on its stack (256), so they go to the heap; the same bytes
 * as protobuf-c, with and without limits. */
static void test_many_events(void **state)
{
    (void)state;
    enum { N = 300 };
    taskspan_attr attrs[] = {
        taskspan_attr_str("work_item_id", "wi_001"),
        taskspan_attr_int("attempt", 2),
        taskspan_attr_str("holder", "runner-a"),
    };
    taskspan_span_event *events = calloc(N, sizeof *events);
    assert_non_null(events);
    for (size_t i = 0; i < N; i++) {
        events[i] = (taskspan_span_event){.name = "lease_renewed",
                                          .time_ns = 1700000000000000000 +
                                                     (int64_t)i,
                                          .attrs = attrs,
                                          .n_attrs = ARRAY_LEN(attrs)};
    }
    taskspan_span s = {
        .name = "work_wi_001",
        .start_ns = 1700000000000000000,
        .end_ns = 1700000000500000000,
        .attrs = attrs,
        .n_attrs = ARRAY_LEN(attrs),
        .events = events,
        .n_events = N,
    };
    memset(s.trace_id, 0x11, 16);
    memset(s.span_id, 0x22, 8);
    taskspan__limits none = {SIZE_MAX, SIZE_MAX, SIZE_MAX,
                             SIZE_MAX, SIZE_MAX, SIZE_MAX};
    taskspan__limits some = {2, 100, 1, 2, 0, 5};
    assert_same_bytes(&s, &none);
    assert_same_bytes(&s, &some);
    free(events);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_protobuf_c),
        cmocka_unit_test(test_many_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
