/*
 * body_blocks.h -- room for the encoded spans of one task, taken from a
 * few shared blocks instead of a malloc per span.
 */
#ifndef TASKSPAN_BODY_BLOCKS_H
#define TASKSPAN_BODY_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

typedef struct taskspan__body_block taskspan__body_block;

/* Where the next body of a task goes. Zero-initialise. Not thread-safe:
 * one thread allocates from it; the bodies may then move to another
 * thread (with a happens-before, such as a mutex), which releases them. */
typedef struct taskspan__body_blocks {
    taskspan__body_block *cur; /* NULL: a block is made at the next alloc */
} taskspan__body_blocks;

/* Room for len bytes, in the current block or a new one (at least
 * TASKSPAN__BODY_BLOCK_SIZE). Returns NULL when out of memory. OWNERSHIP:
 * the caller releases the room with taskspan__body_release(). */
uint8_t *taskspan__body_alloc(taskspan__body_blocks *b, size_t len);

/* Stop allocating from b: its current block is freed with its last body
 * (at once if none is left). b is zero-initialised again. */
void taskspan__body_blocks_end(taskspan__body_blocks *b);

/* Give back a body of taskspan__body_alloc(); NULL is ignored. A block is
 * freed with its last body. The bodies of one block must be released on
 * one thread at a time, after taskspan__body_blocks_end() of their
 * allocator or on its thread. */
void taskspan__body_release(uint8_t *body);

/* Blocks are this large, unless one body needs more. */
#define TASKSPAN__BODY_BLOCK_SIZE (64 * 1024)

#endif
