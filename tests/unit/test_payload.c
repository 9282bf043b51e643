/*
 * test_payload.c -- the payload codec: typed attributes <-> one JSON object
 * (taskspan__payload_encode / taskspan__payload_decode).
 */
#include "internal.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct decoded {
    taskspan__attr_list list;
    taskspan__arena arena;
} decoded;

static void decode_into(decoded *d, const char *json)
{
    memset(d, 0, sizeof *d);
    assert_int_equal(taskspan__payload_decode(&d->list, &d->arena, json),
                     TASKSPAN_OK);
}

static void decoded_free(decoded *d)
{
    taskspan__attr_list_free(&d->list);
    taskspan__arena_free(&d->arena);
}

static const taskspan_attr *find(const decoded *d, const char *key)
{
    for (size_t i = 0; i < d->list.n; i++) {
        if (strcmp(d->list.attrs[i].key, key) == 0) {
            return &d->list.attrs[i];
        }
    }
    return NULL;
}

static char *encode_ok(const taskspan_attr *attrs, size_t n)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    char *json = NULL;
    taskspan_code c = taskspan__payload_encode(&json, attrs, n, err,
                                               sizeof err);
    if (c != TASKSPAN_OK) {
        print_error("encode: %s\n", err);
    }
    assert_int_equal(c, TASKSPAN_OK);
    assert_non_null(json);
    return json;
}

static void encode_fails(const taskspan_attr *attrs, size_t n,
                         const char *word)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    char *json = (char *)err; /* must be reset to NULL */
    taskspan_code c = taskspan__payload_encode(&json, attrs, n, err,
                                               sizeof err);
    if (c != TASKSPAN_E_INVALID_ARG) {
        print_error("encode accepted it: %s\n", json ? json : "(null)");
    }
    assert_int_equal(c, TASKSPAN_E_INVALID_ARG);
    assert_null(json);
    assert_true(strlen(err) > 0);
    if (word != NULL && strstr(err, word) == NULL) {
        print_error("message '%s' does not name '%s'\n", err, word);
        fail();
    }
}

/* Deep equality of two attributes (key, type and value). */
static void assert_attr_equal(const taskspan_attr *got,
                              const taskspan_attr *want)
{
    assert_non_null(got);
    assert_string_equal(got->key, want->key);
    assert_int_equal(got->type, want->type);
    size_t n = want->value.array.count;
    switch (want->type) {
    case TASKSPAN_ATTR_STRING:
        assert_string_equal(got->value.s, want->value.s);
        return;
    case TASKSPAN_ATTR_INT:
        assert_true(got->value.i == want->value.i);
        return;
    case TASKSPAN_ATTR_DOUBLE:
        assert_true(got->value.d == want->value.d);
        return;
    case TASKSPAN_ATTR_BOOL:
        assert_int_equal(got->value.b, want->value.b ? 1 : 0);
        return;
    default:
        break;
    }
    assert_int_equal(got->value.array.count, n);
    for (size_t i = 0; i < n; i++) {
        switch (want->type) {
        case TASKSPAN_ATTR_STRING_ARRAY:
            assert_string_equal(
                ((const char *const *)got->value.array.items)[i],
                ((const char *const *)want->value.array.items)[i]);
            break;
        case TASKSPAN_ATTR_INT_ARRAY:
            assert_true(((const int64_t *)got->value.array.items)[i] ==
                        ((const int64_t *)want->value.array.items)[i]);
            break;
        case TASKSPAN_ATTR_DOUBLE_ARRAY:
            assert_true(((const double *)got->value.array.items)[i] ==
                        ((const double *)want->value.array.items)[i]);
            break;
        case TASKSPAN_ATTR_BOOL_ARRAY:
            assert_int_equal(((const int *)got->value.array.items)[i],
                             ((const int *)want->value.array.items)[i] ? 1
                                                                       : 0);
            break;
        default:
            fail();
        }
    }
}

/* ------------------------------------------------------------------------ */

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    static const char *const strs[] = {"",
                                       "plain",
                                       "quote\"back\\slash",
                                       "nl\nTab\t",
                                       "\xe6\x97\xa5\xe6\x9c\xac",
                                       "\xf0\x9f\x98\x80"};
    static const int64_t ints[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    static const double dbls[] = {
        0.0, -0.5, 1.0, 3.141592653589793, 1e-300, -1.7976931348623157e308};
    static const int bools[] = {0, 1, 1, 0};
    const taskspan_attr attrs[] = {
        taskspan_attr_str("str", "h\xc3\xa9llo \"w\" \\ / \x01"),
        taskspan_attr_str("empty", ""),
        taskspan_attr_int("min", INT64_MIN),
        taskspan_attr_int("max", INT64_MAX),
        taskspan_attr_int("zero", 0),
        taskspan_attr_double("pi", 3.141592653589793),
        taskspan_attr_double("two", 2.0),
        taskspan_attr_double("negzero", -0.0),
        taskspan_attr_double("tiny", 4.9406564584124654e-324),
        taskspan_attr_bool("yes", 1),
        taskspan_attr_bool("no", 0),
        taskspan_attr_array("sa", TASKSPAN_ATTR_STRING_ARRAY, strs,
                            ARRAY_LEN(strs)),
        taskspan_attr_array("ia", TASKSPAN_ATTR_INT_ARRAY, ints,
                            ARRAY_LEN(ints)),
        taskspan_attr_array("da", TASKSPAN_ATTR_DOUBLE_ARRAY, dbls,
                            ARRAY_LEN(dbls)),
        taskspan_attr_array("ba", TASKSPAN_ATTR_BOOL_ARRAY, bools,
                            ARRAY_LEN(bools)),
        taskspan_attr_str("dotted.key-name:x", "k"),
    };
    char *json = encode_ok(attrs, ARRAY_LEN(attrs));
    size_t len = strlen(json);
    assert_true(len >= 2);
    assert_int_equal(json[0], '{');
    assert_int_equal(json[len - 1], '}');
    assert_null(strchr(json, '\n')); /* one line: raw newlines escaped */

    decoded d;
    decode_into(&d, json);
    assert_int_equal(d.list.n, ARRAY_LEN(attrs));
    for (size_t i = 0; i < ARRAY_LEN(attrs); i++) {
        assert_attr_equal(find(&d, attrs[i].key), &attrs[i]);
    }
    /* Re-encoding the decoded attributes gives the same JSON. */
    char *again = encode_ok(d.list.attrs, d.list.n);
    assert_string_equal(again, json);
    free(again);
    decoded_free(&d);
    free(json);
}

/* The direct writer of common payloads (plain text, integers, booleans)
 * writes what jansson writes; anything else (a character to escape, a
 * duplicate key) goes to jansson, which escapes or refuses as before. */
static void test_plain_payload_as_jansson_writes_it(void **state)
{
    (void)state;
    taskspan_attr a[] = {
        taskspan_attr_str("s", "a b/c~ {}[]:,"),
        taskspan_attr_int("min", INT64_MIN),
        taskspan_attr_int("max", INT64_MAX),
        taskspan_attr_int("zero", 0),
        taskspan_attr_int("neg", -42),
        taskspan_attr_bool("t", 1),
        taskspan_attr_bool("f", 0),
    };
    char *json = encode_ok(a, sizeof a / sizeof a[0]);
    assert_string_equal(json, "{\"s\":\"a b/c~ {}[]:,\","
                              "\"min\":-9223372036854775808,"
                              "\"max\":9223372036854775807,\"zero\":0,"
                              "\"neg\":-42,\"t\":true,\"f\":false}");
    decoded d;
    decode_into(&d, json);
    assert_int_equal(d.list.n, sizeof a / sizeof a[0]);
    assert_int_equal(find(&d, "min")->value.i, INT64_MIN);
    assert_int_equal(find(&d, "neg")->value.i, -42);
    decoded_free(&d);
    free(json);

    taskspan_attr q[] = {taskspan_attr_str("q", "say \"hi\"\\\n")};
    json = encode_ok(q, 1);
    assert_string_equal(json, "{\"q\":\"say \\\"hi\\\"\\\\\\n\"}");
    free(json);

    char err[256];
    char *out = NULL;
    taskspan_attr dup[] = {taskspan_attr_int("k", 1),
                           taskspan_attr_int("k", 2)};
    assert_int_equal(taskspan__payload_encode(&out, dup, 2, err, sizeof err),
                     TASKSPAN_E_INVALID_ARG);
    assert_null(out);
}

static void test_empty_payload(void **state)
{
    (void)state;
    char *json = encode_ok(NULL, 0);
    assert_string_equal(json, "{}");
    decoded d;
    decode_into(&d, json);
    assert_int_equal(d.list.n, 0);
    decoded_free(&d);
    free(json);
    /* A NULL payload decodes as an empty object. */
    decode_into(&d, NULL);
    assert_int_equal(d.list.n, 0);
    decoded_free(&d);
}

static void test_numbers_keep_their_type(void **state)
{
    (void)state;
    const taskspan_attr attrs[] = {
        taskspan_attr_double("d", 2.0),
        taskspan_attr_int("i", 2),
        taskspan_attr_double("big", 1e21),
    };
    char *json = encode_ok(attrs, ARRAY_LEN(attrs));
    decoded d;
    decode_into(&d, json);
    assert_int_equal(find(&d, "d")->type, TASKSPAN_ATTR_DOUBLE);
    assert_true(find(&d, "d")->value.d == 2.0);
    assert_int_equal(find(&d, "i")->type, TASKSPAN_ATTR_INT);
    assert_true(find(&d, "i")->value.i == 2);
    assert_int_equal(find(&d, "big")->type, TASKSPAN_ATTR_DOUBLE);
    assert_true(find(&d, "big")->value.d == 1e21);
    decoded_free(&d);
    free(json);

    /* Arrays of integral doubles stay double arrays. */
    static const double whole[] = {1.0, 2.0, -3.0};
    const taskspan_attr arr[] = {taskspan_attr_array(
        "w", TASKSPAN_ATTR_DOUBLE_ARRAY, whole, ARRAY_LEN(whole))};
    json = encode_ok(arr, 1);
    decode_into(&d, json);
    assert_attr_equal(find(&d, "w"), &arr[0]);
    decoded_free(&d);
    free(json);
}

static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "ab\xc3",           /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* beyond U+10FFFF */
        "\x80start",        /* stray continuation byte */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const taskspan_attr v[] = {taskspan_attr_str("val", bad[i])};
        encode_fails(v, 1, "val");
        const taskspan_attr k[] = {taskspan_attr_int(bad[i], 1)};
        encode_fails(k, 1, NULL);
        const char *items[] = {"ok", bad[i]};
        const taskspan_attr a[] = {
            taskspan_attr_array("arr", TASKSPAN_ATTR_STRING_ARRAY, items, 2)};
        encode_fails(a, 1, "arr");
    }
    /* Valid multi-byte text is fine. */
    const taskspan_attr ok[] = {
        taskspan_attr_str("k\xc3\xa9y", "\xe2\x82\xac \xf0\x9f\x98\x80")};
    free(encode_ok(ok, 1));
}

static void test_encode_rejects_bad_attributes(void **state)
{
    (void)state;
    char long_key[TASKSPAN_MAX_NAME_LEN + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';

    const taskspan_attr null_str[] = {taskspan_attr_str("s", NULL)};
    encode_fails(null_str, 1, "'s'");
    const char *with_null[] = {"a", NULL};
    const taskspan_attr null_item[] = {
        taskspan_attr_array("sa", TASKSPAN_ATTR_STRING_ARRAY, with_null, 2)};
    encode_fails(null_item, 1, "sa");
    const taskspan_attr nan[] = {taskspan_attr_double("n", NAN)};
    encode_fails(nan, 1, "'n'");
    const taskspan_attr inf[] = {taskspan_attr_double("n", INFINITY)};
    encode_fails(inf, 1, "'n'");
    static const double bad_d[] = {1.0, -INFINITY};
    const taskspan_attr inf_item[] = {
        taskspan_attr_array("da", TASKSPAN_ATTR_DOUBLE_ARRAY, bad_d, 2)};
    encode_fails(inf_item, 1, "da");
    const taskspan_attr dup[] = {taskspan_attr_int("a", 1),
                                 taskspan_attr_int("b", 2),
                                 taskspan_attr_str("a", "x")};
    encode_fails(dup, 3, "'a'");
    const taskspan_attr nokey[] = {taskspan_attr_int(NULL, 1)};
    encode_fails(nokey, 1, "key");
    const taskspan_attr emptykey[] = {taskspan_attr_int("", 1)};
    encode_fails(emptykey, 1, "key");
    const taskspan_attr longkey[] = {taskspan_attr_int(long_key, 1)};
    encode_fails(longkey, 1, "key");
    const taskspan_attr noitems[] = {
        taskspan_attr_array("ia", TASKSPAN_ATTR_INT_ARRAY, NULL, 3)};
    encode_fails(noitems, 1, "ia");
    taskspan_attr badtype = taskspan_attr_int("t", 1);
    badtype.type = (taskspan_attr_type)99;
    encode_fails(&badtype, 1, "'t'");
    encode_fails(NULL, 1, "attrs");

    /* Count limit. */
    taskspan_attr many[TASKSPAN_MAX_ATTRS + 1];
    char keys[TASKSPAN_MAX_ATTRS + 1][8];
    for (size_t i = 0; i < ARRAY_LEN(many); i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        many[i] = taskspan_attr_int(keys[i], (int64_t)i);
    }
    encode_fails(many, TASKSPAN_MAX_ATTRS + 1, "attributes");
    char *json = encode_ok(many, TASKSPAN_MAX_ATTRS);
    decoded d;
    decode_into(&d, json);
    assert_int_equal(d.list.n, TASKSPAN_MAX_ATTRS);
    decoded_free(&d);
    free(json);

    /* Size limit: a payload just over the limit fails, just under works. */
    size_t n = TASKSPAN_MAX_PAYLOAD_BYTES;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    const taskspan_attr over[] = {taskspan_attr_str("b", big)};
    encode_fails(over, 1, "payload");
    big[n - 8] = '\0'; /* {"b":"..."} adds 8 bytes */
    const taskspan_attr under[] = {taskspan_attr_str("b", big)};
    json = encode_ok(under, 1);
    assert_int_equal(strlen(json), TASKSPAN_MAX_PAYLOAD_BYTES);
    free(json);
    free(big);

    /* An empty array with no items pointer is fine. */
    const taskspan_attr empty_arr[] = {
        taskspan_attr_array("e", TASKSPAN_ATTR_INT_ARRAY, NULL, 0)};
    json = encode_ok(empty_arr, 1);
    decode_into(&d, json);
    assert_int_equal(d.list.n, 1);
    assert_int_equal(d.list.attrs[0].value.array.count, 0);
    decoded_free(&d);
    free(json);
}

static void test_decode_non_object(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "[1,2]", "42",   "\"just text\"", "not json {",
        "",      "null", "true",          "{\"unterminated\": "};
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        decoded d;
        decode_into(&d, texts[i]);
        assert_int_equal(d.list.n, 1);
        assert_string_equal(d.list.attrs[0].key, "payload");
        assert_int_equal(d.list.attrs[0].type, TASKSPAN_ATTR_STRING);
        assert_string_equal(d.list.attrs[0].value.s, texts[i]);
        decoded_free(&d);
    }
}

static void test_decode_mixed_and_nested(void **state)
{
    (void)state;
    decoded d;
    decode_into(&d, "{\"mixed\":[1,\"a\",true],"
                    "\"boolint\":[true,1],"
                    "\"nested\":[[1],[2,3]],"
                    "\"withnull\":[\"a\",null],"
                    "\"obj\":{\"k\":[1,2],\"s\":\"v\"},"
                    "\"nul\":null,"
                    "\"widen\":[1,2.5],"
                    "\"ints\":[-9223372036854775808,9223372036854775807],"
                    "\"strs\":[\"x\",\"y\"],"
                    "\"bools\":[false,true]}");
    assert_int_equal(d.list.n, 10);

    static const struct {
        const char *key;
        const char *text;
    } as_text[] = {
        {"mixed", "[1,\"a\",true]"},
        {"boolint", "[true,1]"},
        {"nested", "[[1],[2,3]]"},
        {"withnull", "[\"a\",null]"},
        {"obj", "{\"k\":[1,2],\"s\":\"v\"}"},
        {"nul", "null"},
    };
    for (size_t i = 0; i < ARRAY_LEN(as_text); i++) {
        const taskspan_attr *a = find(&d, as_text[i].key);
        assert_non_null(a);
        assert_int_equal(a->type, TASKSPAN_ATTR_STRING);
        assert_string_equal(a->value.s, as_text[i].text);
    }
    /* Integers and reals together widen to a double array. */
    const taskspan_attr *w = find(&d, "widen");
    assert_int_equal(w->type, TASKSPAN_ATTR_DOUBLE_ARRAY);
    assert_int_equal(w->value.array.count, 2);
    assert_true(((const double *)w->value.array.items)[0] == 1.0);
    assert_true(((const double *)w->value.array.items)[1] == 2.5);
    static const int64_t ints[] = {INT64_MIN, INT64_MAX};
    const taskspan_attr want_ints = taskspan_attr_array(
        "ints", TASKSPAN_ATTR_INT_ARRAY, ints, 2);
    assert_attr_equal(find(&d, "ints"), &want_ints);
    static const char *const strs[] = {"x", "y"};
    const taskspan_attr want_strs = taskspan_attr_array(
        "strs", TASKSPAN_ATTR_STRING_ARRAY, strs, 2);
    assert_attr_equal(find(&d, "strs"), &want_strs);
    static const int bools[] = {0, 1};
    const taskspan_attr want_bools = taskspan_attr_array(
        "bools", TASKSPAN_ATTR_BOOL_ARRAY, bools, 2);
    assert_attr_equal(find(&d, "bools"), &want_bools);
    decoded_free(&d);
}

static void test_decode_appends_to_list(void **state)
{
    (void)state;
    decoded d;
    memset(&d, 0, sizeof d);
    assert_int_equal(
        taskspan__attr_list_push(&d.list, taskspan_attr_int("first", 7)),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan__payload_decode(&d.list, &d.arena, "{\"a\":1,\"b\":\"two\"}"),
        TASKSPAN_OK);
    assert_int_equal(d.list.n, 3);
    assert_string_equal(d.list.attrs[0].key, "first");
    assert_true(d.list.attrs[0].value.i == 7);
    assert_true(find(&d, "a")->value.i == 1);
    assert_string_equal(find(&d, "b")->value.s, "two");
    /* Many pushes grow the list. */
    for (int64_t i = 0; i < 100; i++) {
        assert_int_equal(
            taskspan__attr_list_push(&d.list, taskspan_attr_int("n", i)),
            TASKSPAN_OK);
    }
    assert_int_equal(d.list.n, 103);
    assert_true(d.list.attrs[102].value.i == 99);
    decoded_free(&d);
    assert_null(d.list.attrs);
    assert_int_equal(d.list.n, 0);
}

static void test_decoded_strings_outlive_json(void **state)
{
    (void)state;
    char *json = strdup("{\"s\":\"value\",\"a\":[\"x\",\"y\"]}");
    assert_non_null(json);
    decoded d;
    decode_into(&d, json);
    memset(json, '#', strlen(json)); /* the decoded copy is independent */
    free(json);
    assert_string_equal(find(&d, "s")->value.s, "value");
    assert_string_equal(
        ((const char *const *)find(&d, "a")->value.array.items)[1], "y");
    decoded_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_plain_payload_as_jansson_writes_it),
        cmocka_unit_test(test_empty_payload),
        cmocka_unit_test(test_numbers_keep_their_type),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_encode_rejects_bad_attributes),
        cmocka_unit_test(test_decode_non_object),
        cmocka_unit_test(test_decode_mixed_and_nested),
        cmocka_unit_test(test_decode_appends_to_list),
        cmocka_unit_test(test_decoded_strings_outlive_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
