/*
 * test_body_blocks.c -- encoded spans in shared blocks (body_blocks.c).
 * Each body keeps its bytes until it is released, whatever else is
 * allocated or released around it; under ASan and valgrind (the CI's
 * configurations) a block freed too early or never is an error too.
 */
#include "body_blocks.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

enum { N_BODIES = 1000 };

/* A body's bytes: i and its offset, so that two bodies never match. */
static void fill(uint8_t *p, size_t len, size_t i)
{
    for (size_t k = 0; k < len; k++) {
        p[k] = (uint8_t)(i * 31 + k * 7 + 1);
    }
}

static void assert_filled(const uint8_t *p, size_t len, size_t i)
{
    for (size_t k = 0; k < len; k++) {
        assert_int_equal(p[k], (uint8_t)(i * 31 + k * 7 + 1));
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A thousand bodies of 0 to 3,000 bytes (some blocks of 64 KiB): each
 * keeps its bytes while the others are released in a shuffled order,
 * half before the allocator ends and half after. */
static void test_bodies_keep_their_bytes(void **state)
{
    (void)state;
    static uint8_t *bodies[N_BODIES];
    static size_t lens[N_BODIES], order[N_BODIES];
    uint32_t seed = 7;
    taskspan__body_blocks b = {NULL};

    for (size_t i = 0; i < N_BODIES; i++) {
        lens[i] = next_rand(&seed) % 3001;
        bodies[i] = taskspan__body_alloc(&b, lens[i]);
        assert_non_null(bodies[i]);
        fill(bodies[i], lens[i], i);
        order[i] = i;
    }
    for (size_t i = N_BODIES - 1; i > 0; i--) {
        size_t j = next_rand(&seed) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < N_BODIES / 2; i++) {
        taskspan__body_release(bodies[order[i]]);
        bodies[order[i]] = NULL;
    }
    taskspan__body_blocks_end(&b);
    assert_null(b.cur);
    for (size_t i = 0; i < N_BODIES; i++) {
        if (bodies[i] != NULL) {
            assert_filled(bodies[i], lens[i], i);
        }
    }
    for (size_t i = N_BODIES / 2; i < N_BODIES; i++) {
        assert_filled(bodies[order[i]], lens[order[i]], order[i]);
        taskspan__body_release(bodies[order[i]]);
    }
}

/* Small bodies in a row share a block: the second lies just past the
 * first (its 8-byte header between them). */
static void test_small_bodies_share_a_block(void **state)
{
    (void)state;
    taskspan__body_blocks b = {NULL};
    uint8_t *one = taskspan__body_alloc(&b, 100);
    uint8_t *two = taskspan__body_alloc(&b, 100);
    assert_non_null(one);
    assert_non_null(two);
    assert_ptr_equal(two, one + 104 + sizeof(void *));
    taskspan__body_blocks_end(&b);
    taskspan__body_release(two);
    taskspan__body_release(one);
}

/* A body larger than a block gets one of its own; the bodies before and
 * after it keep theirs; a body released while its block is still the
 * allocator's leaves the block in use. */
static void test_large_body_and_early_release(void **state)
{
    (void)state;
    taskspan__body_blocks b = {NULL};
    size_t big = 3 * TASKSPAN__BODY_BLOCK_SIZE + 5;
    uint8_t *before = taskspan__body_alloc(&b, 500);
    uint8_t *large = taskspan__body_alloc(&b, big);
    assert_non_null(before);
    assert_non_null(large);
    fill(before, 500, 1);
    fill(large, big, 2);
    taskspan__body_release(large); /* its block is still the allocator's */
    uint8_t *after = taskspan__body_alloc(&b, 40);
    assert_non_null(after);
    fill(after, 40, 3);
    assert_filled(before, 500, 1);
    taskspan__body_blocks_end(&b);
    taskspan__body_release(before);
    assert_filled(after, 40, 3);
    taskspan__body_release(after);
}

/* Nothing to release or end is no error; a size that cannot fit is NULL
 * and leaves the allocator usable. */
static void test_edges(void **state)
{
    (void)state;
    taskspan__body_blocks b = {NULL};
    taskspan__body_release(NULL);
    taskspan__body_blocks_end(&b);
    taskspan__body_blocks_end(&b);
    assert_null(taskspan__body_alloc(&b, SIZE_MAX));
    assert_null(taskspan__body_alloc(&b, SIZE_MAX - 8));
    uint8_t *empty = taskspan__body_alloc(&b, 0);
    uint8_t *some = taskspan__body_alloc(&b, 3);
    assert_non_null(empty);
    assert_non_null(some);
    memcpy(some, "abc", 3);
    taskspan__body_release(empty);
    taskspan__body_blocks_end(&b);
    assert_memory_equal(some, "abc", 3);
    taskspan__body_release(some);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies_keep_their_bytes),
        cmocka_unit_test(test_small_bodies_share_a_block),
        cmocka_unit_test(test_large_body_and_early_release),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
