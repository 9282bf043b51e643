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

static bool get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *pp < end && shift < 64; shift += 7) {
        uint8_t b = *(*pp)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            return true;
        }
    }
    return false;
}

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
 * Span.Event): bytes damaged in the file (SQLite keeps no checksums) must
 * not go out inside a request, which the collector would refuse whole. */
static bool framed(const uint8_t *p, const uint8_t *end, uint64_t n)
{
    uint64_t len;
    for (; n > 0; n--) {
        if (p == end || *p++ != 0x1a || !get_varint(&p, end, &len) ||
            len > (uint64_t)(end - p)) {
            return false;
        }
        p += len;
    }
    return p == end;
}

bool taskspan__event_wire_usable(const uint8_t *wire, size_t n,
                                 const taskspan__limits *lim,
                                 taskspan__event_wire *out)
{
    const uint8_t *p = wire, *end = wire + n;
    uint64_t n_attrs, longest;

    if (wire == NULL || !get_varint(&p, end, &n_attrs) ||
        !get_varint(&p, end, &longest) || n_attrs > lim->event_attrs ||
        longest > lim->value_len || !framed(p, end, n_attrs)) {
        return false;
    }
    out->bytes = p;
    out->len = (size_t)(end - p);
    out->n_attrs = (size_t)n_attrs;
    return true;
}
