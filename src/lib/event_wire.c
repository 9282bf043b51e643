/*
 * event_wire.c -- each event's payload as OTLP attributes, encoded when
 * the event is stored (buffer schema 9, task_events.otlp).
 *
 * Why: an exporter rebuilds every span it sends from the stored events.
 * Parsing each event's JSON payload and encoding its fields as KeyValues
 * again was about a fifth of the export's CPU, for bytes that never
 * change. So the store encodes them once, beside the JSON, and the
 * exporter copies them into the span event, then encodes the few
 * attributes it adds itself (taskspan.seq, .actor, .phase), as before.
 * Only the payload: its bytes cost about as much room as its JSON, where
 * the whole Span.Event (time, name, those three, keys included) would
 * more than double the size of an event row.
 *
 * The one thing the bytes do not know is the exporter's span limits, which
 * may cut or drop attributes. A header says what the limits must allow
 * (the payload's field count and its longest string value) for the bytes
 * to be exactly what encoding the payload under them gives; an exporter
 * with tighter limits encodes the payload as before. Only payloads that
 * the flat reader decodes (payload_flat.c: the library's own payloads
 * are) get bytes, so an emit pays a fraction of a microsecond more at
 * most; others, and events stored before schema 9, are encoded at export.
 * tests/unit/test_event_wire.c checks that spans sent from these bytes are
 * byte for byte the spans encoded from the payloads, under several limits.
 */
#include "event_wire.h"

#include <string.h>

/* The length of the longest string value of attrs, array elements too:
 * the value length limit cuts nothing at or above it. */
static size_t longest_string(const taskspan_attr *attrs, size_t n)
{
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        const taskspan_attr *a = &attrs[i];
        if (a->type == TASKSPAN_ATTR_STRING) {
            size_t len = strlen(a->value.s);
            longest = len > longest ? len : longest;
        } else if (a->type == TASKSPAN_ATTR_STRING_ARRAY) {
            const char *const *items = a->value.array.items;
            for (size_t k = 0; k < a->value.array.count; k++) {
                size_t len = strlen(items[k]);
                longest = len > longest ? len : longest;
            }
        }
    }
    return longest;
}

size_t taskspan__event_wire_make(uint8_t *buf, size_t cap,
                                 const char *payload_json,
                                 taskspan__arena *scratch)
{
    taskspan_attr fixed[16];
    taskspan__attr_list list = {fixed, 0, 16, fixed};
    bool flat = false;
    size_t n = 0;

    /* As the span model decodes it (fill_event in spanmodel.c). */
    taskspan_code rc = taskspan__payload_decode_flat(
        &list, scratch, payload_json != NULL ? payload_json : "{}", &flat);
    if (rc == TASKSPAN_OK && flat && cap >= 20) {
        uint8_t *p = taskspan__put_varint(buf, list.n); /* 20 bytes at most */
        p = taskspan__put_varint(p, longest_string(list.attrs, list.n));
        size_t head = (size_t)(p - buf);
        size_t len = taskspan__encode_event_attrs(p, cap - head, list.attrs,
                                                  list.n);
        if (len <= cap - head && (len > 0 || list.n == 0)) {
            n = head + len;
        }
    }
    taskspan__attr_list_free(&list);
    return n;
}

/* Whether [p, end) is exactly n length-delimited fields 3 (KeyValues of
 * Span.Event). */
static bool framed(const uint8_t *p, const uint8_t *end, uint64_t n)
{
    uint64_t len;
    for (; n > 0; n--) {
        if (p == end || *p++ != 0x1a || !taskspan__get_varint(&p, end, &len) ||
            len > (uint64_t)(end - p)) {
            return false;
        }
        p += len;
    }
    return p == end;
}

bool taskspan__event_wire_whole(const uint8_t *wire, size_t n)
{
    const uint8_t *p = wire, *end = wire + n;
    uint64_t n_attrs, longest;
    return wire != NULL && taskspan__get_varint(&p, end, &n_attrs) &&
           taskspan__get_varint(&p, end, &longest) && framed(p, end, n_attrs);
}

bool taskspan__event_wire_usable(const uint8_t *wire, size_t n,
                                 const taskspan__limits *lim,
                                 taskspan__event_wire *out)
{
    const uint8_t *p = wire, *end = wire + n;
    uint64_t n_attrs, longest;

    if (wire == NULL || !taskspan__get_varint(&p, end, &n_attrs) ||
        !taskspan__get_varint(&p, end, &longest) ||
        n_attrs > lim->event_attrs || longest > lim->value_len) {
        return false;
    }
    out->bytes = p;
    out->len = (size_t)(end - p);
    out->n_attrs = (size_t)n_attrs;
    return true;
}

/* ---- reading the fields back --------------------------------------------- */

/* A length-delimited field's payload at *pp: [*sub, *sub + *len). */
static bool get_sub(const uint8_t **pp, const uint8_t *end, uint8_t tag,
                    const uint8_t **sub, size_t *len)
{
    uint64_t n;
    if (*pp == end || *(*pp)++ != tag || !taskspan__get_varint(pp, end, &n) ||
        n > (uint64_t)(end - *pp)) {
        return false;
    }
    *sub = *pp;
    *len = (size_t)n;
    *pp += n;
    return true;
}

static char *copy_str(taskspan__arena *arena, const uint8_t *s, size_t n)
{
    char *c = taskspan__arena_alloc(arena, n + 1);
    if (c != NULL) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

/* One AnyValue of the kinds the flat reader makes (a string, a bool or
 * an int): its type and value in *a. false when it is none of these. */
static bool get_scalar(const uint8_t *p, const uint8_t *end,
                       taskspan__arena *arena, taskspan_attr *a, bool *nomem)
{
    const uint8_t *s;
    size_t n;
    uint64_t v;

    if (p < end && *p == 0x0a) {
        if (!get_sub(&p, end, 0x0a, &s, &n) || p != end) {
            return false;
        }
        a->type = TASKSPAN_ATTR_STRING;
        a->value.s = copy_str(arena, s, n);
        *nomem = a->value.s == NULL;
        return !*nomem;
    }
    if (p == end || (*p != 0x10 && *p != 0x18)) {
        return false;
    }
    bool is_bool = *p++ == 0x10;
    if (!taskspan__get_varint(&p, end, &v) || p != end) {
        return false;
    }
    if (is_bool) {
        a->type = TASKSPAN_ATTR_BOOL;
        a->value.b = v != 0;
    } else {
        a->type = TASKSPAN_ATTR_INT;
        a->value.i = (int64_t)v;
    }
    return true;
}

/* An ArrayValue of one kind of scalar, as the flat reader makes it (an
 * empty one is a string array). */
static bool get_array(const uint8_t *p, const uint8_t *end,
                      taskspan__arena *arena, taskspan_attr *a, bool *nomem)
{
    const uint8_t *q = p, *s;
    size_t n = 0, len;
    while (q < end) {
        if (!get_sub(&q, end, 0x0a, &s, &len)) {
            return false;
        }
        n++;
    }
    taskspan_attr item = {.type = TASKSPAN_ATTR_STRING};
    if (n > 0 && (!get_sub(&p, end, 0x0a, &s, &len) ||
                  !get_scalar(s, s + len, arena, &item, nomem))) {
        return false;
    }
    taskspan_attr_type t = item.type == TASKSPAN_ATTR_STRING
                               ? TASKSPAN_ATTR_STRING_ARRAY
                           : item.type == TASKSPAN_ATTR_INT
                               ? TASKSPAN_ATTR_INT_ARRAY
                               : TASKSPAN_ATTR_BOOL_ARRAY;
    size_t elem = t == TASKSPAN_ATTR_STRING_ARRAY ? sizeof(const char *)
                  : t == TASKSPAN_ATTR_INT_ARRAY  ? sizeof(int64_t)
                                                  : sizeof(int);
    void *items = taskspan__arena_alloc(arena, n > 0 ? n * elem : 1);
    if (items == NULL) {
        *nomem = true;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (!get_sub(&p, end, 0x0a, &s, &len) ||
                      !get_scalar(s, s + len, arena, &item, nomem))) {
            return false;
        }
        if (t == TASKSPAN_ATTR_STRING_ARRAY &&
            item.type == TASKSPAN_ATTR_STRING) {
            ((const char **)items)[i] = item.value.s;
        } else if (t == TASKSPAN_ATTR_INT_ARRAY &&
                   item.type == TASKSPAN_ATTR_INT) {
            ((int64_t *)items)[i] = item.value.i;
        } else if (t == TASKSPAN_ATTR_BOOL_ARRAY &&
                   item.type == TASKSPAN_ATTR_BOOL) {
            ((int *)items)[i] = item.value.b;
        } else {
            return false; /* mixed kinds: not the flat reader's */
        }
    }
    a->type = t;
    a->value.array.items = items;
    a->value.array.count = n;
    return true;
}

/* One KeyValue: key (1, absent when empty), value (2). */
static bool get_kv(const uint8_t *p, const uint8_t *end,
                   taskspan__arena *arena, taskspan_attr *a, bool *nomem)
{
    const uint8_t *s = p;
    size_t n = 0;
    if (p < end && *p == 0x0a && !get_sub(&p, end, 0x0a, &s, &n)) {
        return false;
    }
    a->key = copy_str(arena, s, n);
    if (a->key == NULL) {
        *nomem = true;
        return false;
    }
    const uint8_t *v;
    size_t vlen;
    if (!get_sub(&p, end, 0x12, &v, &vlen) || p != end) {
        return false;
    }
    if (vlen > 0 && *v == 0x2a) {
        const uint8_t *arr, *vend = v + vlen;
        size_t alen;
        return get_sub(&v, vend, 0x2a, &arr, &alen) && v == vend &&
               get_array(arr, arr + alen, arena, a, nomem);
    }
    return get_scalar(v, v + vlen, arena, a, nomem);
}

taskspan_code taskspan__event_wire_decode(const uint8_t *wire, size_t n,
                                          taskspan__arena *arena,
                                          taskspan__attr_list *list, bool *ok)
{
    const uint8_t *p = wire, *end = wire + n, *kv;
    uint64_t n_attrs, longest;
    size_t len, from = list->n;
    bool nomem = false;

    *ok = wire != NULL && taskspan__get_varint(&p, end, &n_attrs) &&
          taskspan__get_varint(&p, end, &longest) && framed(p, end, n_attrs);
    while (*ok && p < end) {
        taskspan_attr a;
        *ok = get_sub(&p, end, 0x1a, &kv, &len) &&
              get_kv(kv, kv + len, arena, &a, &nomem);
        if (*ok && taskspan__attr_list_push(list, a) != TASKSPAN_OK) {
            nomem = true;
            *ok = false;
        }
    }
    if (!*ok) {
        list->n = from; /* nothing half read */
    }
    return nomem ? TASKSPAN_E_NOMEM : TASKSPAN_OK;
}
