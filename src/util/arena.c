/*
 * arena.c -- a bump allocator for results made of many small pieces.
 *
 * The span model builds hundreds of strings and arrays per task; allocating
 * them from an arena lets one call free a whole result, which keeps the
 * public free function trivial and leak-proof.
 */
#include "../lib/internal.h"

#include <stdlib.h>
#include <string.h>

struct taskspan__arena_block {
    struct taskspan__arena_block *next;
    size_t used;
    size_t size;
    max_align_t data[]; /* aligned for any type */
};

#define ARENA_BLOCK_MIN 16384

void *taskspan__arena_alloc(taskspan__arena *a, size_t size)
{
    const size_t align = sizeof(max_align_t);
    size_t need = (size + align - 1) / align * align;
    struct taskspan__arena_block *b = a->head;

    if (need == 0) {
        need = align;
    }
    if (b == NULL || b->size - b->used < need) {
        size_t bsize = need > ARENA_BLOCK_MIN ? need : ARENA_BLOCK_MIN;
        b = malloc(sizeof *b + bsize);
        if (b == NULL) {
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->size = bsize;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += need;
    return p;
}

char *taskspan__arena_strdup(taskspan__arena *a, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *p = taskspan__arena_alloc(a, n);
    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

void taskspan__arena_reset(taskspan__arena *a)
{
    struct taskspan__arena_block *b = a->head;
    if (b == NULL) {
        return;
    }
    a->head = b->next;
    taskspan__arena_free(a);
    b->next = NULL;
    b->used = 0;
    a->head = b;
}

void taskspan__arena_free(taskspan__arena *a)
{
    struct taskspan__arena_block *b = a->head;
    while (b != NULL) {
        struct taskspan__arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
