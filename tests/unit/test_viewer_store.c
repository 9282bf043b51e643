/*
 * test_viewer_store.c -- the viewer's span store on a real SQLite file: a
 * span received twice is stored once, a changed one replaces it under a
 * new sequence number, all-zero ids are rejected, the size cap evicts the
 * least recently updated trace but never one the request touched, the
 * sequence never goes back after eviction, "running" follows the root
 * span and the time window, and a file that is not a viewer store is
 * refused.
 */
#include "common/test_util.h"

#include "viewer/otlp_json_decode.h"
#include "viewer/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NOW ((int64_t)1700000000 * 1000000000)

typedef struct pool {
    void *ptrs[1024];
    size_t n;
} pool;

static void *pool_alloc(void *data, size_t size)
{
    pool *p = data;
    void *m = p->n < ARRAY_LEN(p->ptrs) ? malloc(size) : NULL;

    if (m != NULL) {
        p->ptrs[p->n++] = m;
    }
    return m;
}

static void pool_free_one(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

/* A request of one span (trace byte t, span byte s, with or without a
 * parent) decoded from OTLP/JSON; name and pad (an attribute that makes
 * the span bigger) vary its content. */
static taskspan__export_request *request(pool *p, int t, int s, bool root,
                                         const char *name, size_t pad)
{
    char *pad_text = malloc(pad + 1);
    char *json = malloc(pad + 1024);
    char msg[256] = "";
    taskspan__export_request *r = NULL;

    assert_non_null(pad_text);
    assert_non_null(json);
    memset(pad_text, 'x', pad);
    pad_text[pad] = '\0';
    snprintf(json, pad + 1024,
             "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
             "\"service.name\",\"value\":{\"stringValue\":\"svc\"}}]},"
             "\"scopeSpans\":[{\"spans\":[{\"traceId\":\"%032x\","
             "\"spanId\":\"%016x\",%s\"name\":\"%s\","
             "\"startTimeUnixNano\":\"%d\",\"endTimeUnixNano\":\"%d\","
             "\"attributes\":[{\"key\":\"pad\",\"value\":{\"stringValue\":"
             "\"%s\"}}]}]}]}]}",
             t, s, root ? "" : "\"parentSpanId\":\"00000000000000ff\",", name,
             100 + s, 200 + s, pad_text);
    ProtobufCAllocator a = {
        .alloc = pool_alloc, .free = pool_free_one, .allocator_data = p};
    assert_int_equal(taskspan__otlp_json_decode(&r, &a, (uint8_t *)json,
                                                strlen(json), msg, sizeof msg),
                     200);
    free(json);
    free(pad_text);
    return r;
}

static void pool_release(pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->ptrs[i]);
    }
    p->n = 0;
}

typedef struct counts {
    int64_t stored, rejected, last_seq;
} counts;

static counts ingest(taskspan__vstore *st, int t, int s, bool root,
                     const char *name, size_t pad, int64_t now)
{
    pool p = {0};
    counts c;
    char err[256] = "";

    taskspan__export_request *r = request(&p, t, s, root, name, pad);
    assert_int_equal(taskspan__vstore_ingest(st, r, now, &c.stored,
                                             &c.rejected, &c.last_seq, err,
                                             sizeof err),
                     TASKSPAN_OK);
    pool_release(&p);
    return c;
}

typedef struct seen {
    int n;
    char ids[8][33];
    char root_name[8][32];
    bool running[8];
    int64_t span_count[8];
    int64_t start_ns[8], end_ns[8];
} seen;

static bool collect(const taskspan__trace_summary *t, void *payload)
{
    seen *s = payload;

    if (s->n < 8) {
        snprintf(s->ids[s->n], 33, "%s", t->trace_id);
        snprintf(s->root_name[s->n], 32, "%s", t->root_name);
        s->running[s->n] = t->running;
        s->span_count[s->n] = t->span_count;
        s->start_ns[s->n] = t->start_ns;
        s->end_ns[s->n] = t->end_ns;
    }
    s->n++;
    return true;
}

static seen list(taskspan__vstore *st, const char *status, int64_t now)
{
    taskspan__vstore_filter f = {.limit = 50, .status = status};
    seen s = {0};

    assert_int_equal(taskspan__vstore_list(st, &f, now, collect, &s),
                     TASKSPAN_OK);
    return s;
}

static bool count_span(const taskspan__stored_span *s, void *payload)
{
    (void)s;
    (*(int *)payload)++;
    return true;
}

static taskspan__vstore *open_store(const char *dir, int64_t cap)
{
    char *path = path_join(dir, "viewer.db");
    taskspan__vstore *st = NULL;
    char err[256] = "";

    assert_int_equal(taskspan__vstore_open(&st, path, cap, err, sizeof err),
                     TASKSPAN_OK);
    free(path);
    return st;
}

static void test_dedup_and_replace(void **state)
{
    char *dir = new_tmpdir("vstore");
    taskspan__vstore *st = open_store(dir, 0);
    int n = 0;

    (void)state;
    counts c = ingest(st, 1, 1, true, "a", 0, NOW);
    assert_int_equal(c.stored, 1);
    assert_int_equal(c.last_seq, 1);
    c = ingest(st, 1, 1, true, "a", 0, NOW);
    assert_int_equal(c.stored, 0); /* the same span again: stored once */
    assert_int_equal(c.last_seq, 1);
    c = ingest(st, 1, 1, true, "b", 0, NOW);
    assert_int_equal(c.stored, 1); /* changed: replaced, new seq */
    assert_int_equal(c.last_seq, 2);
    assert_int_equal(
        taskspan__vstore_trace_spans(st, "00000000000000000000000000000001",
                                     count_span, &n),
        TASKSPAN_OK);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(
        taskspan__vstore_spans_after(st, 1, NULL, 10, count_span, &n),
        TASKSPAN_OK);
    assert_int_equal(n, 1);
    c = ingest(st, 0, 5, true, "zero trace", 0, NOW);
    assert_int_equal(c.stored, 0);
    assert_int_equal(c.rejected, 1);
    assert_int_equal(taskspan__vstore_get(st,
                                          "00000000000000000000000000000009",
                                          NOW, collect, &(seen){0}),
                     TASKSPAN_E_NOT_FOUND);
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

static void test_eviction(void **state)
{
    char *dir = new_tmpdir("vstore");
    /* Each span is ~3 KiB with its pad: two fit in 8 KiB, three do not. */
    taskspan__vstore *st = open_store(dir, 8192);

    (void)state;
    ingest(st, 1, 1, true, "a", 3000, NOW);
    ingest(st, 2, 2, true, "b", 3000, NOW + 1);
    counts c = ingest(st, 3, 3, true, "c", 3000, NOW + 2);
    seen s = list(st, NULL, NOW + 3);
    assert_int_equal(s.n, 2); /* trace 1, updated longest ago, went */
    assert_string_equal(s.ids[0], "00000000000000000000000000000003");
    assert_string_equal(s.ids[1], "00000000000000000000000000000002");
    /* A trace larger than the cap alone is kept: the request touched it. */
    c = ingest(st, 4, 4, true, "huge", 20000, NOW + 4);
    s = list(st, NULL, NOW + 5);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "00000000000000000000000000000004");
    /* Sequence numbers never go back, evicted rows or not. */
    assert_int_equal(c.last_seq, 4);
    assert_int_equal(taskspan__vstore_last_seq(st), 4);
    taskspan__vstore_close(st);
    /* Reopened: the same rows, the same sequence. */
    st = open_store(dir, 8192);
    assert_int_equal(taskspan__vstore_last_seq(st), 4);
    c = ingest(st, 5, 5, true, "after", 10, NOW + 6);
    assert_int_equal(c.last_seq, 5);
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

static void test_running(void **state)
{
    char *dir = new_tmpdir("vstore");
    taskspan__vstore *st = open_store(dir, 0);

    (void)state;
    ingest(st, 7, 2, false, "child", 0, NOW); /* no root yet */
    assert_int_equal(list(st, "running", NOW + 1).n, 1);
    assert_int_equal(list(st, "ok", NOW + 1).n, 0);
    /* Quiet for longer than the window: no longer running. */
    int64_t later = NOW + TASKSPAN__VSTORE_RUNNING_WINDOW_NS + 1;
    assert_int_equal(list(st, "running", later).n, 0);
    assert_int_equal(list(st, "ok", later).n, 1);
    /* The root ends: done at once. */
    ingest(st, 7, 1, true, "root", 0, NOW + 2);
    seen s = list(st, NULL, NOW + 3);
    assert_int_equal(s.n, 1);
    assert_false(s.running[0]);
    assert_int_equal(s.span_count[0], 2);
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

/* The summary's root: a span without a parent first, then one whose
 * parent is not in the trace (yet), then the earliest; the times span all
 * of the trace's spans. request() gives span s the times 100+s..200+s and,
 * when it is not a root, the parent 0xff. */
static void test_summary_root(void **state)
{
    char *dir = new_tmpdir("vstore");
    taskspan__vstore *st = open_store(dir, 0);

    (void)state;
    ingest(st, 9, 4, false, "orphan-later", 0, NOW);
    ingest(st, 9, 3, false, "orphan-first", 0, NOW);
    seen s = list(st, NULL, NOW);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.root_name[0], "orphan-first");
    /* The parent arrives, a root: the orphans become its children. */
    ingest(st, 9, 0xff, true, "top", 0, NOW);
    /* An earlier child of a span in the trace does not take its place. */
    ingest(st, 9, 1, false, "early-child", 0, NOW);
    s = list(st, NULL, NOW);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.root_name[0], "top");
    assert_int_equal(s.span_count[0], 4);
    assert_int_equal(s.start_ns[0], 101);
    assert_int_equal(s.end_ns[0], 200 + 0xff);
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

/* Decode one OTLP/JSON request and store it; the spans stored. */
static int64_t ingest_json(taskspan__vstore *st, const char *json, size_t len)
{
    pool p = {0};
    taskspan__export_request *r = NULL;
    char msg[256] = "";
    int64_t stored = 0, rejected = 0, last = 0;
    ProtobufCAllocator a = {
        .alloc = pool_alloc, .free = pool_free_one, .allocator_data = &p};

    assert_int_equal(taskspan__otlp_json_decode(&r, &a, (const uint8_t *)json,
                                                len, msg, sizeof msg),
                     200);
    assert_int_equal(taskspan__vstore_ingest(st, r, NOW, &stored, &rejected,
                                             &last, msg, sizeof msg),
                     TASKSPAN_OK);
    pool_release(&p);
    return stored;
}

/* A request of spans of traces t0, t0+1, ... (two spans each), every span
 * with the attribute work_type=build and its own n=<trace>, under one
 * resource (service.name=svc). */
static void ingest_shared(taskspan__vstore *st, int t0, int n_traces)
{
    char json[8192];
    size_t len = (size_t)snprintf(
        json, sizeof json,
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
        "\"service.name\",\"value\":{\"stringValue\":\"svc\"}}]},"
        "\"scopeSpans\":[{\"spans\":[");
    for (int i = 0; i < 2 * n_traces; i++) {
        int t = t0 + i / 2;
        len += (size_t)snprintf(
            json + len, sizeof json - len,
            "%s{\"traceId\":\"%032x\",\"spanId\":\"%016x\",\"name\":\"s\","
            "\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\","
            "\"attributes\":[{\"key\":\"work_type\",\"value\":"
            "{\"stringValue\":\"build\"}},{\"key\":\"n\",\"value\":"
            "{\"intValue\":\"%d\"}}]}",
            i > 0 ? "," : "", t, i + 1, t);
        assert_true(len < sizeof json);
    }
    len += (size_t)snprintf(json + len, sizeof json - len, "]}]}]}");
    assert_true(len < sizeof json);
    assert_int_equal(ingest_json(st, json, len), 2 * n_traces);
}

static int count_attr(taskspan__vstore *st, const char *key, const char *value)
{
    taskspan__vstore_filter f = {
        .limit = 50, .attr_key = key, .attr_value = value};
    seen s = {0};

    assert_int_equal(taskspan__vstore_list(st, &f, NOW, collect, &s),
                     TASKSPAN_OK);
    return s.n;
}

/* A value shared by the spans of many traces, and by the spans of one
 * trace, indexes every trace, in one request and across requests. */
static void test_shared_attr_values(void **state)
{
    char *dir = new_tmpdir("vstore");
    taskspan__vstore *st = open_store(dir, 0);

    (void)state;
    ingest_shared(st, 0x20, 3);
    assert_int_equal(count_attr(st, "work_type", "build"), 3);
    assert_int_equal(count_attr(st, "service.name", "svc"), 3);
    assert_int_equal(count_attr(st, "n", "33"), 1); /* trace 0x21 */
    ingest_shared(st, 0x22, 2);                     /* 0x22 again, and 0x23 */
    assert_int_equal(count_attr(st, "work_type", "build"), 4);
    assert_int_equal(count_attr(st, "service.name", "svc"), 4);
    assert_int_equal(count_attr(st, "n", "35"), 1);
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

/* The task of a trace whose root has no task id: its first span with one
 * (a child here), found apart from the root's name. */
static void test_summary_task_from_child(void **state)
{
    char *dir = new_tmpdir("vstore");
    taskspan__vstore *st = open_store(dir, 0);
    static const char json[] =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
        "{\"traceId\":\"00000000000000000000000000000030\","
        "\"spanId\":\"00000000000000a1\",\"name\":\"root\","
        "\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"9\"},"
        "{\"traceId\":\"00000000000000000000000000000030\","
        "\"spanId\":\"00000000000000a2\","
        "\"parentSpanId\":\"00000000000000a1\",\"name\":\"child\","
        "\"startTimeUnixNano\":\"2\",\"endTimeUnixNano\":\"3\","
        "\"attributes\":[{\"key\":\"taskspan.task_id\",\"value\":"
        "{\"stringValue\":\"T-child\"}}]}]}]}]}";
    (void)state;
    assert_int_equal(ingest_json(st, json, strlen(json)), 2);
    taskspan__vstore_filter f = {.limit = 50, .task_id = "T-child"};
    seen s = {0};
    assert_int_equal(taskspan__vstore_list(st, &f, NOW, collect, &s),
                     TASKSPAN_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.root_name[0], "root");
    taskspan__vstore_close(st);
    rm_rf(dir);
    free(dir);
}

static void test_not_a_store(void **state)
{
    char *dir = new_tmpdir("vstore");
    char *path = path_join(dir, "other.db");
    taskspan__vstore *st = NULL;
    sqlite3 *db = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE tasks (x)", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(taskspan__vstore_open(&st, path, 0, err, sizeof err),
                     TASKSPAN_E_SCHEMA);
    assert_null(st);
    assert_non_null(strstr(err, "not a viewer store"));
    free(path);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_and_replace),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_running),
        cmocka_unit_test(test_summary_root),
        cmocka_unit_test(test_shared_attr_values),
        cmocka_unit_test(test_summary_task_from_child),
        cmocka_unit_test(test_not_a_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
