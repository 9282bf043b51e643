/*
 * test_viewer_otlp_json.c -- the viewer's OTLP/JSON codec: what the OTLP
 * JSON mapping allows decodes to the right protobuf-c values (hex ids of
 * either case, int64 as string or number, enums by number or name, NaN
 * and infinities, base64 bytes, snake_case names, null, unknown fields);
 * what it forbids is a 400 with a reason; and decode(encode(x)) == x,
 * compared on the packed protobuf bytes.
 */
#include "viewer/otlp_json_decode.h"
#include "viewer/otlp_json_encode.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ANY(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__##x

/* Every allocation of one decode, freed together. */
typedef struct pool {
    void *ptrs[4096];
    size_t n;
    size_t fail_after; /* 0: never fail */
} pool;

static void *pool_alloc(void *data, size_t size)
{
    pool *p = data;

    if (p->n == sizeof p->ptrs / sizeof p->ptrs[0] ||
        (p->fail_after != 0 && p->n + 1 >= p->fail_after)) {
        return NULL;
    }
    void *m = malloc(size);
    if (m != NULL) {
        p->ptrs[p->n++] = m;
    }
    return m;
}

static void pool_free_one(void *data, void *ptr)
{
    (void)data;
    (void)ptr; /* freed with the pool */
}

static void pool_release(pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->ptrs[i]);
    }
    p->n = 0;
}

static unsigned decode(pool *p, taskspan__export_request **out,
                       const char *json, char *msg, size_t msg_size)
{
    ProtobufCAllocator a = {
        .alloc = pool_alloc, .free = pool_free_one, .allocator_data = p};

    return taskspan__otlp_json_decode(out, &a, (const uint8_t *)json,
                                      strlen(json), msg, msg_size);
}

static const Opentelemetry__Proto__Trace__V1__Span *first_span(
    const taskspan__export_request *r)
{
    assert_int_equal(r->n_resource_spans, 1);
    assert_int_equal(r->resource_spans[0]->n_scope_spans, 1);
    assert_true(r->resource_spans[0]->scope_spans[0]->n_spans >= 1);
    return r->resource_spans[0]->scope_spans[0]->spans[0];
}

#define SPAN_JSON(extra)                                                      \
    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"                      \
    "\"traceId\":\"0102030405060708090A0B0C0D0E0F10\","                       \
    "\"spanId\":\"a1a2a3a4a5a6a7a8\"" extra "}]}]}]}"

static void test_mapping_accepted(void **state)
{
    pool p = {0};
    taskspan__export_request *r = NULL;
    char msg[256] = "";

    (void)state;
    assert_int_equal(
        decode(&p, &r,
               SPAN_JSON(",\"name\":\"n\",\"kind\":\"SPAN_KIND_CLIENT\","
                         "\"start_time_unix_nano\":\"1700000000000000001\","
                         "\"endTimeUnixNano\":1700000000000000002,"
                         "\"status\":{\"code\":2,\"message\":\"m\"},"
                         "\"parentSpanId\":\"\",\"traceState\":null,"
                         "\"futureField\":{\"x\":[1,2]},"
                         "\"attributes\":["
                         "{\"key\":\"i\",\"value\":{\"intValue\":\"-5\"}},"
                         "{\"key\":\"d\",\"value\":{\"doubleValue\":\"NaN\"}},"
                         "{\"key\":\"b\",\"value\":{\"bytesValue\":\"AQID\"}},"
                         "{\"key\":\"z\",\"value\":{\"intValue\":0}},"
                         "{\"key\":\"t\",\"value\":{\"boolValue\":true}}]"),
               msg, sizeof msg),
        200);
    const Opentelemetry__Proto__Trace__V1__Span *s = first_span(r);
    assert_int_equal(s->trace_id.len, 16);
    assert_int_equal(s->trace_id.data[9], 0x0a);
    assert_int_equal(s->span_id.data[7], 0xa8);
    assert_int_equal(s->parent_span_id.len, 0);
    assert_string_equal(s->name, "n");
    assert_int_equal(s->kind, 3);
    assert_true(s->start_time_unix_nano == 1700000000000000001ull);
    assert_true(s->end_time_unix_nano == 1700000000000000002ull);
    assert_int_equal(s->status->code, 2);
    assert_string_equal(s->status->message, "m");
    assert_int_equal(s->n_attributes, 5);
    assert_int_equal(s->attributes[0]->value->value_case,
                     ANY(VALUE_INT_VALUE));
    assert_int_equal(s->attributes[0]->value->int_value, -5);
    assert_true(isnan(s->attributes[1]->value->double_value));
    assert_int_equal(s->attributes[2]->value->bytes_value.len, 3);
    assert_int_equal(s->attributes[2]->value->bytes_value.data[2], 3);
    /* A oneof member set to its default is still set. */
    assert_int_equal(s->attributes[3]->value->value_case,
                     ANY(VALUE_INT_VALUE));
    assert_true(s->attributes[4]->value->bool_value);
    pool_release(&p);
}

static void expect_400(const char *json, const char *why)
{
    pool p = {0};
    taskspan__export_request *r = NULL;
    char msg[256] = "";

    assert_int_equal(decode(&p, &r, json, msg, sizeof msg), 400);
    assert_null(r);
    if (strstr(msg, why) == NULL) {
        fail_msg("message '%s' does not say '%s'", msg, why);
    }
    pool_release(&p);
}

static void test_mapping_refused(void **state)
{
    (void)state;
    expect_400("", "not JSON");
    expect_400("[]", "not a JSON object");
    expect_400("{\"resourceSpans\":{}}", "not an array");
    expect_400("{\"resourceSpans\":[null]}", "is null");
    expect_400(SPAN_JSON(",\"kind\":\"SPAN_KIND_NOPE\""), "unknown enum");
    expect_400(SPAN_JSON(",\"kind\":1.5"), "not an enum number");
    expect_400(SPAN_JSON(",\"flags\":-1"), "not an integer in range");
    expect_400(SPAN_JSON(",\"flags\":4294967296"), "not an integer in range");
    expect_400(SPAN_JSON(",\"startTimeUnixNano\":\"-1\""), "not an integer");
    expect_400(SPAN_JSON(",\"startTimeUnixNano\":\"12x\""), "not an integer");
    expect_400(SPAN_JSON(",\"parentSpanId\":\"a1a2a3a4a5a6a7a\""), "odd");
    expect_400(SPAN_JSON(",\"parentSpanId\":\"g1a2a3a4a5a6a7a8\""), "not hex");
    expect_400(SPAN_JSON(",\"name\":7"), "not a string");
    expect_400(SPAN_JSON(",\"status\":[]"), "not an object");
    expect_400(SPAN_JSON(",\"attributes\":[{\"key\":\"b\",\"value\":"
                         "{\"bytesValue\":\"A*==\"}}]"),
               "not base64");
    expect_400(SPAN_JSON(",\"attributes\":[{\"key\":\"b\",\"value\":"
                         "{\"boolValue\":1}}]"),
               "not a boolean");
}

/* 60 nested arrays pass (2 messages per level); 120 do not. */
static void test_depth(void **state)
{
    char *json = malloc(64 * 1024);
    pool p = {0};
    taskspan__export_request *r = NULL;
    char msg[256] = "";

    (void)state;
    for (int round = 0; round < 2; round++) {
        int levels = round == 0 ? 40 : 60;
        size_t n = 0;
        const char *head = "{\"resourceSpans\":[{\"resource\":{\"attributes\""
                           ":[{\"key\":\"k\",\"value\":";
        memcpy(json + n, head, strlen(head));
        n += strlen(head);
        for (int i = 0; i < levels; i++) {
            const char *open = "{\"arrayValue\":{\"values\":[";
            memcpy(json + n, open, strlen(open));
            n += strlen(open);
        }
        memcpy(json + n, "{\"stringValue\":\"x\"}", 19);
        n += 19;
        for (int i = 0; i < levels; i++) {
            memcpy(json + n, "]}}", 3);
            n += 3;
        }
        memcpy(json + n, "}]}}]}", 7); /* with the terminator */
        unsigned st = decode(&p, &r, json, msg, sizeof msg);
        assert_int_equal(st, round == 0 ? 200 : 400);
        pool_release(&p);
    }
    free(json);
}

/* Out of memory at every allocation in turn: 0, never a crash. */
static void test_alloc_failure(void **state)
{
    const char *json = SPAN_JSON(",\"name\":\"n\",\"attributes\":[{\"key\":"
                                 "\"k\",\"value\":{\"stringValue\":\"v\"}}]");
    taskspan__export_request *r = NULL;
    char msg[256];

    (void)state;
    for (size_t k = 1; k < 200; k++) {
        pool p = {.fail_after = k};
        unsigned st = decode(&p, &r, json, msg, sizeof msg);
        pool_release(&p);
        if (st == 200) {
            return; /* enough allocations: done */
        }
        assert_int_equal(st, 0);
    }
    fail_msg("never succeeded");
}

/* Packed bytes of a message, malloc'd. */
static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    assert_non_null(buf);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static void test_round_trip(void **state)
{
    pool p1 = {0}, p2 = {0};
    taskspan__export_request *a = NULL, *b = NULL;
    char msg[256] = "";
    size_t la, lb;

    (void)state;
    assert_int_equal(
        decode(&p1, &a,
               "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
               "\"service.name\",\"value\":{\"stringValue\":\"s\"}}]},"
               "\"scopeSpans\":[{\"scope\":{\"name\":\"sc\",\"version\":"
               "\"1\"},\"spans\":[{\"traceId\":"
               "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":"
               "\"a1a2a3a4a5a6a7a8\",\"parentSpanId\":\"b1b2b3b4b5b6b7b8\","
               "\"name\":\"x\",\"kind\":2,\"flags\":257,"
               "\"startTimeUnixNano\":\"18446744073709551615\","
               "\"attributes\":[{\"key\":\"a\",\"value\":{\"arrayValue\":"
               "{\"values\":[{\"doubleValue\":-0.5},{\"doubleValue\":"
               "\"-Infinity\"},{\"kvlistValue\":{\"values\":[{\"key\":"
               "\"q\",\"value\":{\"bytesValue\":\"/w==\"}}]}}]}}}],"
               "\"events\":[{\"timeUnixNano\":\"5\",\"name\":\"e\"}],"
               "\"links\":[{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\","
               "\"spanId\":\"c1c2c3c4c5c6c7c8\",\"flags\":1}],"
               "\"status\":{\"code\":1}}]}]}]}",
               msg, sizeof msg),
        200);
    json_t *j = taskspan__otlp_json_encode(&a->base);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    assert_non_null(text);
    assert_non_null(
        strstr(text, "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\""));
    assert_non_null(
        strstr(text, "\"startTimeUnixNano\":\"18446744073709551615\""));
    assert_int_equal(decode(&p2, &b, text, msg, sizeof msg), 200);
    free(text);
    uint8_t *pa = packed(&a->base, &la), *pb = packed(&b->base, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la);
    free(pa);
    free(pb);
    pool_release(&p1);
    pool_release(&p2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapping_accepted),
        cmocka_unit_test(test_mapping_refused),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
