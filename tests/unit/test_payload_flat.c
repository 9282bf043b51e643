/*
 * test_payload_flat.c -- the fast payload reader (payload_flat.c) against
 * jansson: on every input it accepts, it must give exactly the attributes
 * taskspan__payload_decode_json() gives; on the rest it must decline and
 * append nothing, so that jansson decides.
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

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void assert_same_attr(const taskspan_attr *a, const taskspan_attr *b)
{
    assert_string_equal(a->key, b->key);
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        assert_string_equal(a->value.s, b->value.s);
        break;
    case TASKSPAN_ATTR_INT:
        assert_true(a->value.i == b->value.i);
        break;
    case TASKSPAN_ATTR_BOOL:
        assert_int_equal(a->value.b, b->value.b);
        break;
    case TASKSPAN_ATTR_STRING_ARRAY:
    case TASKSPAN_ATTR_INT_ARRAY:
    case TASKSPAN_ATTR_BOOL_ARRAY:
        assert_int_equal(a->value.array.count, b->value.array.count);
        for (size_t i = 0; i < a->value.array.count; i++) {
            const void *x = a->value.array.items, *y = b->value.array.items;
            if (a->type == TASKSPAN_ATTR_STRING_ARRAY) {
                assert_string_equal(((const char *const *)x)[i],
                                    ((const char *const *)y)[i]);
            } else if (a->type == TASKSPAN_ATTR_INT_ARRAY) {
                assert_true(((const int64_t *)x)[i] ==
                            ((const int64_t *)y)[i]);
            } else {
                assert_int_equal(((const int *)x)[i], ((const int *)y)[i]);
            }
        }
        break;
    default:
        fail_msg("the fast reader made a type it must not: %d", a->type);
    }
}

/* Decode json both ways; returns whether the fast reader took it. */
static bool compare(const char *json)
{
    taskspan__attr_list fast = {0}, slow = {0};
    taskspan__arena fa = {0}, sa = {0};
    bool handled = false;

    assert_int_equal(taskspan__payload_decode_flat(&fast, &fa, json, &handled),
                     TASKSPAN_OK);
    assert_int_equal(taskspan__payload_decode_json(&slow, &sa, json),
                     TASKSPAN_OK);
    if (handled) {
        assert_int_equal(fast.n, slow.n);
        for (size_t i = 0; i < fast.n; i++) {
            assert_same_attr(&fast.attrs[i], &slow.attrs[i]);
        }
    } else {
        assert_int_equal(fast.n, 0);
    }
    taskspan__attr_list_free(&fast);
    taskspan__attr_list_free(&slow);
    taskspan__arena_free(&fa);
    taskspan__arena_free(&sa);
    return handled;
}

static void test_flat_objects_match_jansson(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "{}",
        " { } ",
        "{\"work_item_id\":\"wi_000001\",\"index\":1,\"work_type\":\"unit\"}",
        "{\"a\":true,\"b\":false,\"c\":-0,\"d\":0,\"e\":-42}",
        "{\"max\":999999999999999999,\"min\":-999999999999999999}",
        "{ \"k\" : \"v\" ,\n\t\"n\" :\r 7 }\n",
        "{\"\":\"empty key\",\"s\":\"\"}",
        "{\"sym\":\"!#$%&'()*+,-./:;<=>?@[]^_`{|}~ \"}",
        /* Arrays of one kind (the seed's files_changed, ...). */
        "{\"work_item_id\":\"wi_001\",\"files_changed\":[\"a.txt\",\"b\"]}",
        "{\"a\":[1,-2,0,999999999999999999]}",
        "{\"a\":[true,false,true]}",
        "{\"a\":[],\"b\":[ ],\"c\":[\"\"]}",
        "{\"a\" : [ \"x\" ,\n \"y\" ] , \"n\":1}",
    };
    for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
        assert_true(compare(inputs[i]));
    }
}

static void test_everything_else_goes_to_jansson(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "",
        "[]",
        "\"text\"",
        "42",
        "{",
        "{\"a\":1",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":01}",
        "{\"a\":1.5}",
        "{\"a\":1e3}",
        "{\"a\":-}",
        "{\"a\":1x}",
        "{\"a\":truex}",
        "{\"a\":null}",
        "{\"a\":[1,\"x\"]}",
        "{\"a\":[1,2.5]}",
        "{\"a\":[[1]]}",
        "{\"a\":[{}]}",
        "{\"a\":[null]}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":[1 2]}",
        "{\"a\":[1}",
        "{\"a\":[true,1]}",
        "{\"a\":[\"caf\xc3\xa9\"]}",
        "{\"a\":{\"b\":1}}",
        "{\"a\":\"tab\\there\"}",
        "{\"a\":\"caf\xc3\xa9\"}",
        "{\"a\":\"bad \xff utf-8\"}",
        "{\"a\":\"ctl \x01\"}",
        "{\"a\":1000000000000000000}",
        "{\"a\":99999999999999999999}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":\"unterminated}",
    };
    for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
        assert_false(compare(inputs[i]));
    }
}

/* Arrays up to 64 items are read here, longer ones by jansson. */
static void test_array_lengths(void **state)
{
    (void)state;
    char json[1024];
    for (int n = 63; n <= 65; n++) {
        size_t at = (size_t)snprintf(json, sizeof json, "{\"a\":[");
        for (int i = 0; i < n; i++) {
            at += (size_t)snprintf(json + at, sizeof json - at, "%s%d",
                                   i ? "," : "", i);
        }
        snprintf(json + at, sizeof json - at, "]}");
        assert_int_equal(compare(json), n <= 64);
    }
}

/* The public entry point takes the fast path and the slow one alike. */
static void test_decode_uses_either(void **state)
{
    (void)state;
    taskspan__attr_list list = {0};
    taskspan__arena arena = {0};
    assert_int_equal(taskspan__payload_decode(&list, &arena, "{\"i\":3}"),
                     TASKSPAN_OK);
    assert_int_equal(taskspan__payload_decode(&list, &arena, "{\"d\":0.5}"),
                     TASKSPAN_OK);
    assert_int_equal(list.n, 2);
    assert_int_equal(list.attrs[0].type, TASKSPAN_ATTR_INT);
    assert_true(list.attrs[0].value.i == 3);
    assert_int_equal(list.attrs[1].type, TASKSPAN_ATTR_DOUBLE);
    taskspan__attr_list_free(&list);
    taskspan__arena_free(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_objects_match_jansson),
        cmocka_unit_test(test_everything_else_goes_to_jansson),
        cmocka_unit_test(test_array_lengths),
        cmocka_unit_test(test_decode_uses_either),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
