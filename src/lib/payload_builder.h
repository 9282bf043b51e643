/*
 * payload_builder.h -- a typed helper's payload under construction: the
 * attributes it will hand to the event's JSON payload, in a fixed array on
 * the stack (no allocation on the emit path). Shared by the typed emit
 * helpers (events.c) and the recovery calls (recovery.c), which build the
 * same payloads. Internal; include from those .c files only.
 */
#ifndef TASKSPAN_PAYLOAD_BUILDER_H
#define TASKSPAN_PAYLOAD_BUILDER_H

#include "taskspan/taskspan.h"

#include <stddef.h>
#include <stdint.h>

/* The most fields any helper records. */
#define TASKSPAN__PAYLOAD_FIELDS 10

typedef struct payload {
    taskspan_attr a[TASKSPAN__PAYLOAD_FIELDS];
    size_t n;
} payload;

/* A string field; an absent (NULL) value records no field. */
static inline void add_str(payload *p, const char *key, const char *v)
{
    if (v != NULL) {
        p->a[p->n++] = taskspan_attr_str(key, v);
    }
}

static inline void add_int(payload *p, const char *key, int64_t v)
{
    p->a[p->n++] = taskspan_attr_int(key, v);
}

/* A string-array field; NULL records no field, n == 0 an empty array. */
static inline void add_strs(payload *p, const char *key, const char *const *v,
                            size_t n)
{
    if (v != NULL) {
        p->a[p->n++] = taskspan_attr_array(key, TASKSPAN_ATTR_STRING_ARRAY, v,
                                           n);
    }
}

#endif
