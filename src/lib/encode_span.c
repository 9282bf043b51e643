/*
 * encode_span.c -- one span as the bytes of an OTLP Span message, written
 * directly, byte for byte what protobuf-c packs for the same span.
 *
 * Why: building protobuf-c's message tree (an arena object per attribute,
 * value and event) and packing it was a fifth of the export's CPU. A Span
 * is a handful of field kinds, so this file computes each length first and
 * writes the fields in one pass, in protobuf-c's order (by field number)
 * and with its proto3 rules: a zero number, an empty string or bytes and a
 * NULL message are left out, a set oneof member (AnyValue) is always
 * written, and so is a present sub-message, even an empty one. The
 * protobuf-c encoder stays (taskspan__encode_span_pbc) as the reference
 * that tests/unit/test_encode_span.c compares this one with.
 */
#include "encode_otlp.h"

#include <stdlib.h>
#include <string.h>

/* Wire types. */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5

#define TAG(field, wt) ((uint32_t)(field) << 3 | (wt))

static uint8_t *put_fixed(uint8_t *p, uint64_t v, int bytes)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Protobuf's fixed fields are little-endian, as the host is: one copy
     * (each span has two times, each event one). */
    memcpy(p, &v, (size_t)bytes);
    return p + bytes;
#else
    for (int i = 0; i < bytes; i++) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
#endif
}

/* A length-delimited field of payload n bytes, tag included. */
static size_t len_field(uint32_t field, size_t n)
{
    return taskspan__varint_len(TAG(field, WT_LEN)) + taskspan__varint_len(n) +
           n;
}

static uint8_t *put_len(uint8_t *p, uint32_t field, size_t n)
{
    p = taskspan__put_varint(p, TAG(field, WT_LEN));
    return taskspan__put_varint(p, n);
}

static uint8_t *put_bytes(uint8_t *p, uint32_t field, const void *data,
                          size_t n)
{
    p = put_len(p, field, n);
    memcpy(p, data, n);
    return p + n;
}

/* ---- AnyValue and KeyValue ----------------------------------------------- */

/* An element of an array attribute, or a scalar attribute: its AnyValue
 * payload (string 1, bool 2, int 3, double 4). */
typedef struct scalar {
    int type; /* TASKSPAN_ATTR_STRING, _INT, _DOUBLE or _BOOL */
    const char *s;
    size_t s_len;
    uint64_t bits; /* int, double bits, or bool */
} scalar;

static scalar array_elem(const taskspan_attr *a, size_t i, size_t max_len)
{
    const void *items = a->value.array.items;
    scalar v = {0};
    switch (a->type) {
    case TASKSPAN_ATTR_STRING_ARRAY:
        v.type = TASKSPAN_ATTR_STRING;
        v.s = ((const char *const *)items)[i];
        v.s_len = taskspan__utf8_cut(v.s, max_len);
        break;
    case TASKSPAN_ATTR_INT_ARRAY:
        v.type = TASKSPAN_ATTR_INT;
        v.bits = (uint64_t)((const int64_t *)items)[i];
        break;
    case TASKSPAN_ATTR_DOUBLE_ARRAY:
        v.type = TASKSPAN_ATTR_DOUBLE;
        memcpy(&v.bits, &((const double *)items)[i], 8);
        break;
    default:
        v.type = TASKSPAN_ATTR_BOOL;
        v.bits = ((const int *)items)[i] != 0;
        break;
    }
    return v;
}

static scalar attr_scalar(const taskspan_attr *a, size_t max_len)
{
    scalar v = {.type = (int)a->type};
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        v.s = a->value.s;
        v.s_len = taskspan__utf8_cut(v.s, max_len);
        break;
    case TASKSPAN_ATTR_INT:
        v.bits = (uint64_t)a->value.i;
        break;
    case TASKSPAN_ATTR_DOUBLE:
        memcpy(&v.bits, &a->value.d, 8);
        break;
    default:
        v.bits = a->value.b != 0;
        break;
    }
    return v;
}

static size_t scalar_size(const scalar *v)
{
    switch (v->type) {
    case TASKSPAN_ATTR_STRING:
        return len_field(1, v->s_len);
    case TASKSPAN_ATTR_BOOL:
        return 2;
    case TASKSPAN_ATTR_INT:
        return 1 + taskspan__varint_len(v->bits);
    default:
        return 1 + 8;
    }
}

static uint8_t *put_scalar(uint8_t *p, const scalar *v)
{
    switch (v->type) {
    case TASKSPAN_ATTR_STRING:
        return put_bytes(p, 1, v->s, v->s_len);
    case TASKSPAN_ATTR_BOOL:
        *p++ = TAG(2, WT_VARINT);
        return taskspan__put_varint(p, v->bits);
    case TASKSPAN_ATTR_INT:
        *p++ = TAG(3, WT_VARINT);
        return taskspan__put_varint(p, v->bits);
    default:
        *p++ = TAG(4, WT_I64);
        return put_fixed(p, v->bits, 8);
    }
}

static bool is_array(const taskspan_attr *a)
{
    return a->type != TASKSPAN_ATTR_STRING && a->type != TASKSPAN_ATTR_INT &&
           a->type != TASKSPAN_ATTR_DOUBLE && a->type != TASKSPAN_ATTR_BOOL;
}

/* The ArrayValue payload: one AnyValue (field 1) per element. */
static size_t array_size(const taskspan_attr *a, size_t max_len)
{
    size_t n = 0;
    for (size_t i = 0; i < a->value.array.count; i++) {
        scalar v = array_elem(a, i, max_len);
        n += len_field(1, scalar_size(&v));
    }
    return n;
}

/* The AnyValue payload of an attribute. */
static size_t value_size(const taskspan_attr *a, size_t max_len)
{
    if (is_array(a)) {
        return len_field(5, array_size(a, max_len));
    }
    scalar v = attr_scalar(a, max_len);
    return scalar_size(&v);
}

static uint8_t *put_value(uint8_t *p, const taskspan_attr *a, size_t max_len)
{
    if (!is_array(a)) {
        scalar v = attr_scalar(a, max_len);
        return put_scalar(p, &v);
    }
    p = put_len(p, 5, array_size(a, max_len));
    for (size_t i = 0; i < a->value.array.count; i++) {
        scalar v = array_elem(a, i, max_len);
        p = put_len(p, 1, scalar_size(&v));
        p = put_scalar(p, &v);
    }
    return p;
}

/* The KeyValue payload: key (1, left out when empty), value (2). */
static size_t kv_size(const taskspan_attr *a, size_t max_len)
{
    size_t k = strlen(a->key);
    return (k ? len_field(1, k) : 0) + len_field(2, value_size(a, max_len));
}

static uint8_t *put_kv(uint8_t *p, const taskspan_attr *a, size_t max_len)
{
    size_t k = strlen(a->key);
    if (k > 0) {
        p = put_bytes(p, 1, a->key, k);
    }
    p = put_len(p, 2, value_size(a, max_len));
    return put_value(p, a, max_len);
}

/* The lengths of scalar attributes' keys and string values, measured by
 * the sizing pass and read back, in the same order, by the writing pass:
 * strlen and the UTF-8 cut were the encoder's largest cost when both
 * passes measured every string. NULL: measure again (links). */
typedef struct lens {
    size_t *v;
    size_t i;
} lens;

/* The key length and the scalar value of a (not an array), from L when
 * the sizing pass stored them, else measured (and stored when sizing). */
static size_t scalar_kv(const taskspan_attr *a, size_t max_len, lens *L,
                        bool sizing, scalar *v)
{
    *v = (scalar){.type = (int)a->type};
    size_t k;
    if (L != NULL && !sizing) {
        k = L->v[L->i++];
        v->s_len = L->v[L->i++];
    } else {
        k = strlen(a->key);
        v->s_len = a->type == TASKSPAN_ATTR_STRING
                       ? taskspan__utf8_cut(a->value.s, max_len)
                       : 0;
        if (L != NULL) {
            L->v[L->i++] = k;
            L->v[L->i++] = v->s_len;
        }
    }
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        v->s = a->value.s;
        break;
    case TASKSPAN_ATTR_INT:
        v->bits = (uint64_t)a->value.i;
        break;
    case TASKSPAN_ATTR_DOUBLE:
        memcpy(&v->bits, &a->value.d, 8);
        break;
    default:
        v->bits = a->value.b != 0;
        break;
    }
    return k;
}

/* The KeyValue payload of a scalar attribute of key length k. */
static size_t scalar_kv_size(size_t k, const scalar *v)
{
    return (k ? len_field(1, k) : 0) + len_field(2, scalar_size(v));
}

/* Repeated KeyValue in field `field`: the first `keep` attributes. */
static size_t attrs_size(uint32_t field, const taskspan_attr *attrs,
                         size_t keep, size_t max_len, lens *L)
{
    size_t n = 0;
    for (size_t i = 0; i < keep; i++) {
        const taskspan_attr *a = &attrs[i];
        if (is_array(a)) {
            n += len_field(field, kv_size(a, max_len));
            continue;
        }
        scalar v;
        size_t k = scalar_kv(a, max_len, L, true, &v);
        n += len_field(field, scalar_kv_size(k, &v));
    }
    return n;
}

/* One KeyValue in field `field`. */
static uint8_t *put_attr(uint8_t *p, uint32_t field, const taskspan_attr *a,
                         size_t max_len, lens *L)
{
    if (is_array(a)) {
        p = put_len(p, field, kv_size(a, max_len));
        return put_kv(p, a, max_len);
    }
    scalar v;
    size_t k = scalar_kv(a, max_len, L, false, &v);
    p = put_len(p, field, scalar_kv_size(k, &v));
    if (k > 0) {
        p = put_bytes(p, 1, a->key, k);
    }
    p = put_len(p, 2, scalar_size(&v));
    return put_scalar(p, &v);
}

static uint8_t *put_attrs(uint8_t *p, uint32_t field,
                          const taskspan_attr *attrs, size_t keep,
                          size_t max_len, lens *L)
{
    for (size_t i = 0; i < keep; i++) {
        p = put_attr(p, field, &attrs[i], max_len, L);
    }
    return p;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* A uint32 count field, left out when zero. */
static size_t count_size(uint64_t v)
{
    return v ? 1 + taskspan__varint_len(v) : 0;
}

static uint8_t *put_count(uint8_t *p, uint32_t field, uint64_t v)
{
    if (v) {
        *p++ = (uint8_t)TAG(field, WT_VARINT);
        p = taskspan__put_varint(p, v);
    }
    return p;
}

static size_t str_size(uint32_t field, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n ? len_field(field, n) : 0;
}

static uint8_t *put_str(uint8_t *p, uint32_t field, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n ? put_bytes(p, field, s, n) : p;
}

/* ---- the tail of an event sent with its payload's bytes ------------------ */

/* With an event's payload as bytes (event_wire.c), the attributes the span
 * model adds after it (taskspan__event_tail: taskspan.seq, then
 * taskspan.actor and taskspan.phase when recorded) are written here rather
 * than through the generic attribute path: the keys are constants and the
 * values one integer and two strings, and the generic path cost about as
 * much as the rest of the span. Byte for byte what put_attrs writes for
 * them (test_event_wire compares the two). */

#define SEQ_KEY_LEN (sizeof TASKSPAN__ATTR_SEQ - 1)
#define STR_KEY_LEN (sizeof TASKSPAN__ATTR_ACTOR - 1)
_Static_assert(sizeof TASKSPAN__ATTR_ACTOR == sizeof TASKSPAN__ATTR_PHASE,
               "one key length for the two string attributes");

/* How many tail attributes e has (*n) and how many lim keeps after the
 * payload's w->n_attrs, which it keeps all (event_wire_usable). */
static size_t tail_keep(const taskspan_span_event *e,
                        const taskspan__event_wire *w,
                        const taskspan__limits *lim, size_t *n)
{
    size_t room = w->n_attrs < lim->event_attrs ? lim->event_attrs - w->n_attrs
                                                : 0;
    *n = 1 + (e->actor != NULL) + (e->phase != NULL);
    return min_size(*n, room);
}

/* The KeyValue payload of taskspan.seq. */
static size_t seq_kv_size(int64_t seq)
{
    return len_field(1, SEQ_KEY_LEN) +
           len_field(2, 1 + taskspan__varint_len((uint64_t)seq));
}

/* The KeyValue payload of a string tail attribute of n bytes. */
static size_t str_kv_size(size_t n)
{
    return len_field(1, STR_KEY_LEN) + len_field(2, len_field(1, n));
}

/* The string attributes among the first keep of e's tail: their keys,
 * values and cut lengths (from L when the sizing pass stored them). */
static size_t tail_strs(const taskspan_span_event *e, size_t keep,
                        size_t max_len, lens *L, bool sizing,
                        const char *key[2], const char *val[2], size_t len[2])
{
    const char *const keys[2] = {TASKSPAN__ATTR_ACTOR, TASKSPAN__ATTR_PHASE};
    const char *const vals[2] = {e->actor, e->phase};
    size_t n = 0;
    for (int j = 0; j < 2 && n + 1 < keep; j++) {
        if (vals[j] == NULL) {
            continue;
        }
        key[n] = keys[j];
        val[n] = vals[j];
        if (L != NULL && !sizing) {
            len[n] = L->v[L->i++];
        } else {
            len[n] = taskspan__utf8_cut(vals[j], max_len);
            if (L != NULL) {
                L->v[L->i++] = len[n];
            }
        }
        n++;
    }
    return n;
}

static size_t tail_size(const taskspan_span_event *e, size_t keep,
                        size_t max_len, lens *L)
{
    const char *key[2], *val[2];
    size_t len[2];
    size_t n_strs = tail_strs(e, keep, max_len, L, true, key, val, len);
    size_t n = keep > 0 ? len_field(3, seq_kv_size(e->seq)) : 0;
    for (size_t i = 0; i < n_strs; i++) {
        n += len_field(3, str_kv_size(len[i]));
    }
    return n;
}

static uint8_t *put_tail(uint8_t *p, const taskspan_span_event *e, size_t keep,
                         size_t max_len, lens *L)
{
    const char *key[2], *val[2];
    size_t len[2];
    size_t n_strs = tail_strs(e, keep, max_len, L, false, key, val, len);
    if (keep > 0) {
        p = put_len(p, 3, seq_kv_size(e->seq));
        p = put_bytes(p, 1, TASKSPAN__ATTR_SEQ, SEQ_KEY_LEN);
        p = put_len(p, 2, 1 + taskspan__varint_len((uint64_t)e->seq));
        *p++ = TAG(3, WT_VARINT);
        p = taskspan__put_varint(p, (uint64_t)e->seq);
    }
    for (size_t i = 0; i < n_strs; i++) {
        p = put_len(p, 3, str_kv_size(len[i]));
        p = put_bytes(p, 1, key[i], STR_KEY_LEN);
        p = put_len(p, 2, len_field(1, len[i]));
        p = put_bytes(p, 1, val[i], len[i]);
    }
    return p;
}

/* ---- Span.Event, Span.Link, Status --------------------------------------- */

/* An event, with w (NULL: none) as the bytes of its payload's fields. */
static size_t event_size(const taskspan_span_event *e,
                         const taskspan__event_wire *w,
                         const taskspan__limits *lim, lens *L)
{
    size_t n = (e->time_ns != 0 ? 1 + 8 : 0) + str_size(2, e->name);
    size_t n_attrs = e->n_attrs, keep;
    if (w == NULL) {
        keep = min_size(n_attrs, lim->event_attrs);
        n += attrs_size(3, e->attrs, keep, lim->value_len, L);
    } else {
        keep = tail_keep(e, w, lim, &n_attrs);
        n += w->len + tail_size(e, keep, lim->value_len, L);
    }
    return n + count_size(n_attrs - keep);
}

static uint8_t *put_event(uint8_t *p, const taskspan_span_event *e,
                          const taskspan__event_wire *w,
                          const taskspan__limits *lim, lens *L)
{
    size_t n_attrs = e->n_attrs, keep;
    if (e->time_ns != 0) {
        *p++ = TAG(1, WT_I64);
        p = put_fixed(p, (uint64_t)e->time_ns, 8);
    }
    p = put_str(p, 2, e->name);
    if (w == NULL) {
        keep = min_size(n_attrs, lim->event_attrs);
        p = put_attrs(p, 3, e->attrs, keep, lim->value_len, L);
    } else {
        keep = tail_keep(e, w, lim, &n_attrs);
        memcpy(p, w->bytes, w->len);
        p = put_tail(p + w->len, e, keep, lim->value_len, L);
    }
    return put_count(p, 4, n_attrs - keep);
}

#define LINK_FLAGS (TASKSPAN__FLAG_SAMPLED | TASKSPAN__FLAG_HAS_IS_REMOTE)

static taskspan_attr link_reason(const taskspan_span_link *l)
{
    return taskspan_attr_str("taskspan.link.reason",
                             l->reason ? l->reason : "");
}

static size_t link_size(const taskspan_span_link *l,
                        const taskspan__limits *lim)
{
    taskspan_attr reason = link_reason(l);
    size_t keep = min_size(1, lim->link_attrs);
    return len_field(1, 16) + len_field(2, 8) +
           attrs_size(4, &reason, keep, lim->value_len, NULL) +
           count_size(1 - keep) + 1 + 4;
}

static uint8_t *put_link(uint8_t *p, const taskspan_span_link *l,
                         const taskspan__limits *lim)
{
    taskspan_attr reason = link_reason(l);
    size_t keep = min_size(1, lim->link_attrs);
    p = put_bytes(p, 1, l->trace_id, 16);
    p = put_bytes(p, 2, l->span_id, 8);
    p = put_attrs(p, 4, &reason, keep, lim->value_len, NULL);
    p = put_count(p, 5, 1 - keep);
    *p++ = TAG(6, WT_I32);
    return put_fixed(p, LINK_FLAGS, 4);
}

static const char *status_msg(const taskspan_span *s)
{
    return s->status == TASKSPAN_STATUS_ERROR ? s->status_message : NULL;
}

static size_t status_size(const taskspan_span *s)
{
    return str_size(2, status_msg(s)) + count_size((uint32_t)s->status);
}

/* ---- attributes alone, whole (event_wire.c) ------------------------------ */

size_t taskspan__encode_event_attrs(uint8_t *buf, size_t cap,
                                    const taskspan_attr *attrs, size_t n)
{
    size_t len = attrs_size(3, attrs, n, SIZE_MAX, NULL);
    if (len <= cap &&
        (size_t)(put_attrs(buf, 3, attrs, n, SIZE_MAX, NULL) - buf) != len) {
        return 0; /* a sizing bug: keep no bytes rather than wrong ones */
    }
    return len;
}

/* ---- Span ---------------------------------------------------------------- */

static uint32_t span_flags(const taskspan_span *s)
{
    uint32_t f = TASKSPAN__FLAG_SAMPLED | TASKSPAN__FLAG_HAS_IS_REMOTE;
    /* A parent outside the result came from TRACEPARENT: a remote one. */
    if (s->has_parent && s->parent_index == (size_t)-1) {
        f |= TASKSPAN__FLAG_IS_REMOTE;
    }
    return f;
}

/* Event i's wire, or NULL when it has none. */
static const taskspan__event_wire *event_wire(const taskspan__event_wire *w,
                                              size_t i)
{
    return w != NULL && w[i].bytes != NULL ? &w[i] : NULL;
}

/* The size of s encoded; the size of each event kept is stored in
 * ev_sizes, and the lengths of the attributes in L, so the writing pass
 * does not measure them again. */
static size_t span_size(const taskspan_span *s, const taskspan__limits *lim,
                        const taskspan__event_wire *wires, size_t *ev_sizes,
                        lens *L)
{
    size_t n_attrs = min_size(s->n_attrs, lim->span_attrs);
    size_t n_events = min_size(s->n_events, lim->span_events);
    size_t n_links = min_size(s->n_links, lim->span_links);
    size_t n = len_field(1, 16) + len_field(2, 8) +
               (s->has_parent ? len_field(4, 8) : 0) + str_size(5, s->name) +
               2 /* kind */ + (s->start_ns != 0 ? 9 : 0) +
               (s->end_ns != 0 ? 9 : 0) +
               attrs_size(9, s->attrs, n_attrs, lim->value_len, L) +
               count_size(s->n_attrs - n_attrs) +
               count_size(s->n_events - n_events) +
               count_size(s->n_links - n_links) +
               len_field(15, status_size(s)) + 2 + 4 /* flags */;
    for (size_t i = 0; i < n_events; i++) {
        ev_sizes[i] = event_size(&s->events[i], event_wire(wires, i), lim, L);
        n += len_field(11, ev_sizes[i]);
    }
    for (size_t i = 0; i < n_links; i++) {
        n += len_field(13, link_size(&s->links[i], lim));
    }
    return n;
}

taskspan_code taskspan__encode_span(uint8_t **out, size_t *out_len,
                                    const taskspan_span *s,
                                    const taskspan__limits *lim)
{
    return taskspan__encode_span_wired(out, out_len, s, NULL, lim);
}

static uint8_t *heap_alloc(void *ctx, size_t len)
{
    (void)ctx;
    return malloc(len ? len : 1);
}

static void heap_release(uint8_t *p)
{
    free(p);
}

taskspan_code taskspan__encode_span_wired(uint8_t **out, size_t *out_len,
                                          const taskspan_span *s,
                                          const taskspan__event_wire *wires,
                                          const taskspan__limits *lim)
{
    static const taskspan__body_room heap = {heap_alloc, heap_release, NULL};
    return taskspan__encode_span_in(&heap, out, out_len, s, wires, lim);
}

taskspan_code taskspan__encode_span_in(const taskspan__body_room *room,
                                       uint8_t **out, size_t *out_len,
                                       const taskspan_span *s,
                                       const taskspan__event_wire *wires,
                                       const taskspan__limits *lim)
{
    size_t n_attrs = min_size(s->n_attrs, lim->span_attrs);
    size_t n_events = min_size(s->n_events, lim->span_events);
    size_t n_links = min_size(s->n_links, lim->span_links);
    /* Two lengths per attribute kept, the span's and its events'. */
    size_t n_lens = 2 * n_attrs;
    for (size_t i = 0; i < n_events; i++) {
        /* A tail stores at most 2 (its strings); others 2 per kept. */
        n_lens += event_wire(wires, i) != NULL
                      ? 2
                      : 2 * min_size(s->events[i].n_attrs, lim->event_attrs);
    }
    /* On the stack for the spans of a few events (most of them). */
    size_t scratch[256];
    size_t *ev_sizes = n_events + n_lens <= 256
                           ? scratch
                           : malloc((n_events + n_lens) * sizeof *ev_sizes);
    lens L = {ev_sizes != NULL ? ev_sizes + n_events : NULL, 0};

    *out = NULL;
    *out_len = 0;
    if (ev_sizes == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    size_t len = span_size(s, lim, wires, ev_sizes, &L);
    L.i = 0;
    uint8_t *buf = room->alloc(room->ctx, len), *p = buf;
    if (buf == NULL) {
        if (ev_sizes != scratch) {
            free(ev_sizes);
        }
        return TASKSPAN_E_NOMEM;
    }
    p = put_bytes(p, 1, s->trace_id, 16);
    p = put_bytes(p, 2, s->span_id, 8);
    if (s->has_parent) {
        p = put_bytes(p, 4, s->parent_span_id, 8);
    }
    p = put_str(p, 5, s->name);
    *p++ = TAG(6, WT_VARINT);
    *p++ = 1; /* SPAN_KIND_INTERNAL */
    if (s->start_ns != 0) {
        *p++ = TAG(7, WT_I64);
        p = put_fixed(p, (uint64_t)s->start_ns, 8);
    }
    if (s->end_ns != 0) {
        *p++ = TAG(8, WT_I64);
        p = put_fixed(p, (uint64_t)s->end_ns, 8);
    }
    p = put_attrs(p, 9, s->attrs, n_attrs, lim->value_len, &L);
    p = put_count(p, 10, s->n_attrs - n_attrs);
    for (size_t i = 0; i < n_events; i++) {
        p = put_len(p, 11, ev_sizes[i]);
        p = put_event(p, &s->events[i], event_wire(wires, i), lim, &L);
    }
    p = put_count(p, 12, s->n_events - n_events);
    for (size_t i = 0; i < n_links; i++) {
        p = put_len(p, 13, link_size(&s->links[i], lim));
        p = put_link(p, &s->links[i], lim);
    }
    p = put_count(p, 14, s->n_links - n_links);
    p = put_len(p, 15, status_size(s));
    p = put_str(p, 2, status_msg(s));
    p = put_count(p, 3, (uint32_t)s->status);
    p = taskspan__put_varint(p, TAG(16, WT_I32));
    p = put_fixed(p, span_flags(s), 4);
    if (ev_sizes != scratch) {
        free(ev_sizes);
    }
    if ((size_t)(p - buf) != len) {
        room->release(buf); /* a sizing bug: never send a bad span */
        return TASKSPAN_E_ENCODE;
    }
    *out = buf;
    *out_len = len;
    return TASKSPAN_OK;
}
