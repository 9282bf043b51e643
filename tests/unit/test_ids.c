/*
 * test_ids.c -- trace and span id derivation (ids.c).
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
#include <xxhash.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static size_t g_width; /* for cmp_ids */

static int cmp_ids(const void *a, const void *b)
{
    return memcmp(a, b, g_width);
}

/* n ids of width bytes each, all distinct? */
static int all_distinct(uint8_t *ids, size_t n, size_t width)
{
    g_width = width;
    qsort(ids, n, width, cmp_ids);
    for (size_t i = 1; i < n; i++) {
        if (memcmp(ids + (i - 1) * width, ids + i * width, width) == 0) {
            return 0;
        }
    }
    return 1;
}

static void test_trace_id_stable(void **state)
{
    (void)state;
    static const char *const tasks[] = {
        "task-abc-123", "x", "", "/some/path with spaces", "caf\xc3\xa9"};
    for (size_t i = 0; i < ARRAY_LEN(tasks); i++) {
        uint8_t a[16], b[16];
        memset(a, 0xaa, sizeof a);
        memset(b, 0x55, sizeof b);
        taskspan__derive_trace_id(a, tasks[i]);
        taskspan__derive_trace_id(b, tasks[i]);
        assert_memory_equal(a, b, 16);
        assert_false(all_zero(a, 16));
    }
}

static void test_trace_id_differs_per_task(void **state)
{
    (void)state;
    enum { N = 5000 };
    uint8_t *ids = malloc((size_t)N * 16);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        char task[32];
        snprintf(task, sizeof task, "task-%d", i);
        taskspan__derive_trace_id(ids + (size_t)i * 16, task);
        assert_false(all_zero(ids + (size_t)i * 16, 16));
    }
    assert_true(all_distinct(ids, N, 16));
    free(ids);

    /* Near-identical ids still differ. */
    static const char *const close_ones[] = {"a",  "A", "a ",     " a",
                                             "aa", "b", "task-1", "task-10"};
    uint8_t few[ARRAY_LEN(close_ones) * 16];
    for (size_t i = 0; i < ARRAY_LEN(close_ones); i++) {
        taskspan__derive_trace_id(few + i * 16, close_ones[i]);
    }
    assert_true(all_distinct(few, ARRAY_LEN(close_ones), 16));
}

static void test_trace_id_matches_public_hex(void **state)
{
    (void)state;
    static const char digits[] = "0123456789abcdef";
    static const char *const tasks[] = {"task-abc-123", "another", "z"};
    for (size_t t = 0; t < ARRAY_LEN(tasks); t++) {
        uint8_t id[16];
        char want[33], got[33];
        taskspan__derive_trace_id(id, tasks[t]);
        for (size_t i = 0; i < 16; i++) {
            want[2 * i] = digits[id[i] >> 4];
            want[2 * i + 1] = digits[id[i] & 0xf];
        }
        want[32] = '\0';
        assert_int_equal(taskspan_task_trace_id_hex(got, tasks[t]),
                         TASKSPAN_OK);
        assert_string_equal(got, want);
    }
}

static void test_span_id_stable(void **state)
{
    (void)state;
    uint8_t trace[16], a[8], b[8];
    taskspan__derive_trace_id(trace, "stable-task");
    memset(a, 0x11, sizeof a);
    memset(b, 0x22, sizeof b);
    taskspan__derive_span_id(a, trace, NULL, "main", 1, 0);
    taskspan__derive_span_id(b, trace, NULL, "main", 1, 0);
    assert_memory_equal(a, b, 8);
    assert_false(all_zero(a, 8));
}

static void test_span_id_sensitivity(void **state)
{
    (void)state;
    uint8_t trace[16], other_trace[16], flipped[16];
    taskspan__derive_trace_id(trace, "t1");
    taskspan__derive_trace_id(other_trace, "t2");
    memcpy(flipped, trace, 16);
    flipped[15] ^= 0x01; /* one bit */

    struct {
        const uint8_t *trace;
        const char *key;
        int64_t inc;
        int64_t ord;
    } v[] = {
        {trace, "main", 1, 0},        /* the base */
        {trace, "work_wi_001", 1, 0}, /* key */
        {trace, "main ", 1, 0},       /* key, one byte longer */
        {trace, "mai", 1, 0},         /* key, one byte shorter */
        {trace, "Main", 1, 0},        /* key, case */
        {trace, "", 1, 0},            /* key, empty */
        {trace, "main", 0, 0},        /* incarnation */
        {trace, "main", 2, 0},
        {trace, "main", -1, 0},
        {trace, "main", INT64_MAX, 0},
        {trace, "main", 1, 1}, /* ordinal */
        {trace, "main", 1, 2},
        {trace, "main", 0, 1},       /* (0,1) is not (1,0) */
        {other_trace, "main", 1, 0}, /* trace */
        {flipped, "main", 1, 0},
        {trace, "recovery_sweep", 1, 0},
    };
    uint8_t ids[ARRAY_LEN(v) * 8];
    for (size_t i = 0; i < ARRAY_LEN(v); i++) {
        taskspan__derive_span_id(ids + i * 8, v[i].trace, NULL, v[i].key,
                                 v[i].inc, v[i].ord);
        assert_false(all_zero(ids + i * 8, 8));
    }
    assert_true(all_distinct(ids, ARRAY_LEN(v), 8));
}

static void test_span_id_grid_never_zero_distinct(void **state)
{
    (void)state;
    static const char *const keys[] = {"main", "work_a", "work_b",
                                       "recovery_sweep", "x"};
    enum { INCS = 20, ORDS = 20 };
    size_t n = ARRAY_LEN(keys) * INCS * ORDS;
    uint8_t *ids = malloc(n * 8);
    uint8_t trace[16];
    size_t k = 0;
    assert_non_null(ids);
    taskspan__derive_trace_id(trace, "grid");
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        for (int64_t inc = 0; inc < INCS; inc++) {
            for (int64_t ord = 0; ord < ORDS; ord++) {
                uint8_t *id = ids + k * 8;
                taskspan__derive_span_id(id, trace, NULL, keys[i], inc, ord);
                assert_false(all_zero(id, 8));
                k++;
            }
        }
    }
    assert_int_equal(k, n);
    assert_true(all_distinct(ids, n, 8));
    free(ids);
}

/* A span id never equals the trace id's halves (different hash domains),
 * and the same key in two traces gives two ids. */
static void test_span_id_per_trace(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint8_t *ids = malloc((size_t)N * 8);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        char task[32];
        uint8_t trace[16];
        snprintf(task, sizeof task, "task-%d", i);
        taskspan__derive_trace_id(trace, task);
        taskspan__derive_span_id(ids + (size_t)i * 8, trace, NULL, "main", 1,
                                 0);
        assert_memory_not_equal(ids + (size_t)i * 8, trace, 8);
        assert_memory_not_equal(ids + (size_t)i * 8, trace + 8, 8);
    }
    assert_true(all_distinct(ids, N, 8));
    free(ids);
}

/* docs/span-model.md gives the derivations byte for byte; recompute them
 * here with libxxhash directly, independently of ids.c. */
static void put_be64(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static void doc_trace_id(uint8_t out[16], const char *task)
{
    static const char domain[] = "taskspan/trace/v1"; /* 17 chars + NUL */
    size_t n = strlen(task);
    uint8_t *buf = malloc(18 + n + 1);
    assert_non_null(buf);
    assert_int_equal(sizeof domain, 18);
    memcpy(buf, domain, 18);
    memcpy(buf + 18, task, n);
    XXH128_hash_t h = XXH3_128bits(buf, 18 + n);
    put_be64(out, h.high64);
    put_be64(out + 8, h.low64);
    free(buf);
}

static void doc_span_id(uint8_t out[8], const uint8_t trace[16],
                        const char *key, int64_t inc, int64_t ord)
{
    static const char domain[] = "taskspan/span/v1"; /* 16 chars + NUL */
    size_t klen = strlen(key) + 1;
    size_t n = 17 + 16 + klen + 16;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(sizeof domain, 17);
    memcpy(buf, domain, 17);
    memcpy(buf + 17, trace, 16);
    memcpy(buf + 33, key, klen);
    put_be64(buf + 33 + klen, (uint64_t)inc);
    put_be64(buf + 33 + klen + 8, (uint64_t)ord);
    put_be64(out, XXH3_64bits(buf, n));
    free(buf);
}

/* The v2 span id of a task that joined a trace context: the task id,
 * with its NUL, after the trace id (docs/span-model.md). */
static void doc_span_id_v2(uint8_t out[8], const uint8_t trace[16],
                           const char *task, const char *key, int64_t inc,
                           int64_t ord)
{
    static const char domain[] = "taskspan/span/v2";
    size_t tlen = strlen(task) + 1, klen = strlen(key) + 1;
    size_t n = 17 + 16 + tlen + klen + 16;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    memcpy(buf, domain, 17);
    memcpy(buf + 17, trace, 16);
    memcpy(buf + 33, task, tlen);
    memcpy(buf + 33 + tlen, key, klen);
    put_be64(buf + 33 + tlen + klen, (uint64_t)inc);
    put_be64(buf + 33 + tlen + klen + 8, (uint64_t)ord);
    put_be64(out, XXH3_64bits(buf, n));
    free(buf);
}

/* 300 bytes: past the 256 that ids.c hashes in one call, so that the
 * streaming path is checked against the formula too. */
#define TEN_CHARS "0123456789"
#define LONG_NAME                                                             \
    TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS     \
        TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS \
            TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS       \
                TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS   \
                    TEN_CHARS TEN_CHARS TEN_CHARS TEN_CHARS

/* Two tasks in one trace context: their spans of the same key differ,
 * and follow the documented formula. */
static void test_shared_trace_span_ids(void **state)
{
    static const uint8_t trace[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
                                      0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d,
                                      0x0e, 0x0e, 0x47, 0x36};
    uint8_t a[8], b[8], v1[8], want[8];

    (void)state;
    taskspan__derive_span_id(a, trace, "task-a", "main", 1, 0);
    taskspan__derive_span_id(b, trace, "task-b", "main", 1, 0);
    taskspan__derive_span_id(v1, trace, NULL, "main", 1, 0);
    assert_memory_not_equal(a, b, 8);
    assert_memory_not_equal(a, v1, 8);
    doc_span_id_v2(want, trace, "task-a", "main", 1, 0);
    assert_memory_equal(a, want, 8);
    /* Past 256 bytes of input, the same formula. */
    taskspan__derive_span_id(a, trace, "task-a", LONG_NAME, 1, 0);
    doc_span_id_v2(want, trace, "task-a", LONG_NAME, 1, 0);
    assert_memory_equal(a, want, 8);
    taskspan__derive_span_id(a, trace, LONG_NAME, "main", 2, 7);
    doc_span_id_v2(want, trace, LONG_NAME, "main", 2, 7);
    assert_memory_equal(a, want, 8);
    /* The task id and the key are separated: "ab" + "c" is not "a" +
     * "bc". */
    taskspan__derive_span_id(a, trace, "ab", "c", 1, 0);
    taskspan__derive_span_id(b, trace, "a", "bc", 1, 0);
    assert_memory_not_equal(a, b, 8);
}

static void test_ids_follow_documented_formula(void **state)
{
    (void)state;
    static const char *const tasks[] = {"task-abc-123", "a", "",
                                        "caf\xc3\xa9/\x01 long task id"};
    static const char *const keys[] = {"main", "work_wi_001", "", "sweep",
                                       LONG_NAME};
    for (size_t t = 0; t < ARRAY_LEN(tasks); t++) {
        uint8_t got[16], want[16];
        taskspan__derive_trace_id(got, tasks[t]);
        doc_trace_id(want, tasks[t]);
        assert_memory_equal(got, want, 16);
        for (size_t k = 0; k < ARRAY_LEN(keys); k++) {
            for (int64_t inc = -1; inc <= 3; inc++) {
                for (int64_t ord = 0; ord <= 2; ord++) {
                    uint8_t g8[8], w8[8];
                    taskspan__derive_span_id(g8, got, NULL, keys[k], inc, ord);
                    doc_span_id(w8, got, keys[k], inc, ord);
                    assert_memory_equal(g8, w8, 8);
                }
            }
        }
    }
    /* The documented example: task-abc-123's trace id. */
    uint8_t tid[16];
    static const uint8_t documented[16] = {0x53, 0x4c, 0x9b, 0xbe, 0xb5, 0xa2,
                                           0x8d, 0xa2, 0x0c, 0x7d, 0xe6, 0x0f,
                                           0xa6, 0x91, 0x6f, 0x80};
    taskspan__derive_trace_id(tid, "task-abc-123");
    assert_memory_equal(tid, documented, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_id_stable),
        cmocka_unit_test(test_shared_trace_span_ids),
        cmocka_unit_test(test_trace_id_differs_per_task),
        cmocka_unit_test(test_trace_id_matches_public_hex),
        cmocka_unit_test(test_span_id_stable),
        cmocka_unit_test(test_span_id_sensitivity),
        cmocka_unit_test(test_span_id_grid_never_zero_distinct),
        cmocka_unit_test(test_span_id_per_trace),
        cmocka_unit_test(test_ids_follow_documented_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
