/*
 * test_buffer_cap.c -- where the buffer's size cap comes from (buffer_cap.c):
 * sizes with and without units, the option against TASKSPAN_MAX_BYTES, and
 * what a malformed value does.
 */
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KIB ((int64_t)1024)

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t bytes;
    } good[] = {
        {"0", 0},
        {"131072", 131072},
        {"  42  ", 42},
        {"128K", 128 * KIB},
        {"128k", 128 * KIB},
        {"128KB", 128 * KIB},
        {"128KiB", 128 * KIB},
        {"128 kib", 128 * KIB},
        {"3M", 3 * KIB * KIB},
        {"2G", 2 * KIB * KIB * KIB},
        {"1T", KIB * KIB * KIB * KIB},
        {"1024T", KIB * KIB * KIB * KIB * KIB},
        {"1g  ", KIB * KIB * KIB},
    };
    static const char *const bad[] = {
        "",       " ",
        "K",      "-1",
        "+5",     "1.5G",
        "1e9",    "12Q",
        "10KiBx", "10 K B",
        "1KK",    "0x10",
        "1025T",  "99999999999999999999",
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        int64_t v = -1;
        if (!taskspan__parse_size(good[i].text, &v)) {
            print_error("'%s' did not parse\n", good[i].text);
            fail();
        }
        assert_int_equal(v, good[i].bytes);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t v = -7;
        if (taskspan__parse_size(bad[i], &v)) {
            print_error("'%s' parsed as %lld\n", bad[i], (long long)v);
            fail();
        }
        assert_int_equal(v, -7); /* untouched */
    }
}

static void test_resolve(void **state)
{
    (void)state;
    char warn[TASKSPAN__MSG_SIZE], err[TASKSPAN__MSG_SIZE];
    int64_t cap = 0;

    /* Nothing set: the default, no warning. */
    assert_int_equal(taskspan__buffer_cap_resolve(
                         &cap, 0, NULL, warn, sizeof warn, err, sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(cap, TASKSPAN_DEFAULT_MAX_BYTES);
    assert_string_equal(warn, "");
    assert_int_equal(taskspan__buffer_cap_resolve(
                         &cap, 0, "", warn, sizeof warn, err, sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(cap, TASKSPAN_DEFAULT_MAX_BYTES);

    /* The variable, and the option over it. */
    assert_int_equal(taskspan__buffer_cap_resolve(
                         &cap, 0, "256K", warn, sizeof warn, err, sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(cap, 256 * KIB);
    assert_int_equal(taskspan__buffer_cap_resolve(&cap, 512 * KIB, "256K",
                                                  warn, sizeof warn, err,
                                                  sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(cap, 512 * KIB);
    assert_int_equal(taskspan__buffer_cap_resolve(&cap, TASKSPAN_MIN_MAX_BYTES,
                                                  NULL, warn, sizeof warn, err,
                                                  sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(cap, TASKSPAN_MIN_MAX_BYTES);

    /* A bad variable (malformed, or below the minimum): the default and a
     * warning naming it. */
    static const char *const bad_env[] = {"big", "127K", "-1G"};
    for (size_t i = 0; i < ARRAY_LEN(bad_env); i++) {
        assert_int_equal(taskspan__buffer_cap_resolve(&cap, 0, bad_env[i],
                                                      warn, sizeof warn, err,
                                                      sizeof err),
                         TASKSPAN_OK);
        assert_int_equal(cap, TASKSPAN_DEFAULT_MAX_BYTES);
        assert_non_null(strstr(warn, "TASKSPAN_MAX_BYTES"));
        assert_non_null(strstr(warn, bad_env[i]));
    }

    /* A bad option is the caller's bug. */
    static const int64_t bad_opt[] = {-1, 1, TASKSPAN_MIN_MAX_BYTES - 1,
                                      INT64_MAX};
    for (size_t i = 0; i < ARRAY_LEN(bad_opt); i++) {
        err[0] = '\0';
        assert_int_equal(taskspan__buffer_cap_resolve(&cap, bad_opt[i], "1G",
                                                      warn, sizeof warn, err,
                                                      sizeof err),
                         TASKSPAN_E_INVALID_ARG);
        assert_non_null(strstr(err, "max_bytes"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
