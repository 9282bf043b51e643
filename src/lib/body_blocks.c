/*
 * body_blocks.c -- the encoded spans of a task in shared blocks
 * (body_blocks.h).
 *
 * Why: an export drain encodes every span into a body of its own, about
 * 1 KiB, on the reader thread, and frees it on the exporter's thread once
 * its request is answered. A malloc and a free per span, the free across
 * threads (glibc takes the lock of the arena that made the chunk), was a
 * few percent of the drain's CPU. A task's bodies now come from blocks of
 * 64 KiB, two or so per task of the benchmark, each freed with its last
 * body.
 *
 * DESIGN
 *   A block counts its bodies not released yet, plus one while it is an
 *   allocator's current block. Each body is preceded by a pointer to its
 *   block, so that releasing needs nothing but the body. The count is
 *   not atomic: a block's bodies are released on one thread at a time,
 *   after its allocator is done with it (body_blocks.h).
 */
#include "body_blocks.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

struct taskspan__body_block {
    size_t refs;
    size_t used, cap; /* bytes of data */
    alignas(max_align_t) unsigned char data[];
};

/* A body's header: its block. */
#define HEAD sizeof(taskspan__body_block *)

static size_t round_up(size_t n)
{
    return (n + HEAD - 1) / HEAD * HEAD;
}

static void unref(taskspan__body_block *blk)
{
    if (--blk->refs == 0) {
        free(blk);
    }
}

uint8_t *taskspan__body_alloc(taskspan__body_blocks *b, size_t len)
{
    if (len > SIZE_MAX - 2 * HEAD - sizeof(taskspan__body_block)) {
        return NULL;
    }
    size_t need = round_up(HEAD + len);
    taskspan__body_block *blk = b->cur;
    if (blk == NULL || blk->cap - blk->used < need) {
        size_t cap = need > TASKSPAN__BODY_BLOCK_SIZE
                         ? need
                         : TASKSPAN__BODY_BLOCK_SIZE;
        taskspan__body_block *nb = malloc(sizeof *nb + cap);
        if (nb == NULL) {
            return NULL;
        }
        nb->refs = 1; /* the allocator's */
        nb->used = 0;
        nb->cap = cap;
        taskspan__body_blocks_end(b);
        b->cur = blk = nb;
    }
    unsigned char *p = blk->data + blk->used;
    memcpy(p, &blk, HEAD);
    blk->used += need;
    blk->refs++;
    return p + HEAD;
}

void taskspan__body_blocks_end(taskspan__body_blocks *b)
{
    if (b->cur != NULL) {
        unref(b->cur);
        b->cur = NULL;
    }
}

void taskspan__body_release(uint8_t *body)
{
    if (body != NULL) {
        taskspan__body_block *blk;
        memcpy(&blk, body - HEAD, HEAD);
        unref(blk);
    }
}
