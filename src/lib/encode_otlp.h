/*
 * encode_otlp.h -- spans to OTLP protobuf, and OTLP responses back.
 *
 * Spans are encoded one by one into Span message bytes when they are sent,
 * from the stored events (and the Span.Event bytes the buffer keeps beside
 * most of them, event_wire.c), so a span sent again after a crash is
 * byte-identical. A request is then framed around those bytes without
 * decoding them.
 */
#ifndef TASKSPAN_ENCODE_OTLP_H
#define TASKSPAN_ENCODE_OTLP_H

#include "config.h"

#include <jansson.h>

/* SpanFlags (trace.proto): bits 0-7 carry the W3C trace flags (sampled),
 * bit 8 says whether the parent is remote is known, bit 9 that it is. */
#define TASKSPAN__FLAG_SAMPLED 0x01u
#define TASKSPAN__FLAG_HAS_IS_REMOTE 0x100u
#define TASKSPAN__FLAG_IS_REMOTE 0x200u

/* Protobuf's base-128 varint: its length in bytes, v written at p
 * (returns the byte after it), and one read back. Inline: the encoders
 * call them for every field of every span. */
static inline size_t taskspan__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *taskspan__put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A varint read at *pp (moved past it), before end; false when it runs
 * past end or past 64 bits. */
static inline bool taskspan__get_varint(const uint8_t **pp, const uint8_t *end,
                                        uint64_t *v)
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

/* A JSON string of the first n bytes of s; each byte that is not valid
 * UTF-8 (and each NUL) becomes U+FFFD, as the OTLP JSON encoding and the
 * viewer's API need valid text. NULL when out of memory. */
json_t *taskspan__json_lossy(const char *s, size_t n);

/* The length of s cut to at most max bytes without splitting a UTF-8
 * sequence (the attribute value length limit; a cut string stays valid). */
size_t taskspan__utf8_cut(const char *s, size_t max);

/* Encode one closed span as an opentelemetry.proto.trace.v1.Span message,
 * applying lim (dropped counts filled in). OUT: *out (malloc'd), *out_len. */
taskspan_code taskspan__encode_span(uint8_t **out, size_t *out_len,
                                    const taskspan_span *span,
                                    const taskspan__limits *lim);

/* The first attributes of an event (its payload's fields) encoded, as
 * the buffer keeps them beside the event (event_wire.c): n_attrs
 * KeyValues in Span.Event's field 3. bytes NULL when the event has none
 * that the limits leave whole; its payload is then encoded from its
 * attributes. */
typedef struct taskspan__event_wire {
    const uint8_t *bytes;
    size_t len;
    size_t n_attrs;
} taskspan__event_wire;

/* taskspan__encode_span, with wires[i] (when not NULL, one per event of
 * span) written as the first attributes of event i, before its own
 * attrs: the same bytes as encoding them, as event_wire.c keeps only
 * bytes that lim leaves whole. */
taskspan_code taskspan__encode_span_wired(uint8_t **out, size_t *out_len,
                                          const taskspan_span *span,
                                          const taskspan__event_wire *wires,
                                          const taskspan__limits *lim);

/* Where taskspan__encode_span_in puts a span's bytes: alloc(ctx, len)
 * returns room for len bytes (NULL: out of memory), and release(p) gives
 * it back. taskspan__encode_span and _wired use malloc and free. */
typedef struct taskspan__body_room {
    uint8_t *(*alloc)(void *ctx, size_t len);
    void (*release)(uint8_t *p);
    void *ctx;
} taskspan__body_room;

/* taskspan__encode_span_wired, its bytes in room's: *out is released
 * with room->release. */
taskspan_code taskspan__encode_span_in(const taskspan__body_room *room,
                                       uint8_t **out, size_t *out_len,
                                       const taskspan_span *span,
                                       const taskspan__event_wire *wires,
                                       const taskspan__limits *lim);

/* The n attributes as KeyValues in Span.Event's field 3, none cut: what
 * taskspan__encode_span writes for them under limits that keep them
 * whole. Written to buf when it fits in cap bytes. Returns their length
 * (0 on an internal sizing error, nothing kept). */
size_t taskspan__encode_event_attrs(uint8_t *buf, size_t cap,
                                    const taskspan_attr *attrs, size_t n);

/* The same through protobuf-c's message tree: the reference the direct
 * encoder (encode_span.c) is tested against; byte-identical output. */
taskspan_code taskspan__encode_span_pbc(uint8_t **out, size_t *out_len,
                                        const taskspan_span *span,
                                        const taskspan__limits *lim);

/* Encode attributes as an opentelemetry.proto.resource.v1.Resource. */
taskspan_code taskspan__encode_resource(uint8_t **out, size_t *out_len,
                                        const taskspan_attr *attrs,
                                        size_t n_attrs);

/* The spans of one resource, as stored bytes. */
typedef struct taskspan__resource_group {
    const uint8_t *resource; /* Resource message bytes */
    size_t resource_len;
    const uint8_t *const *spans; /* Span message bytes */
    const size_t *span_lens;
    size_t n_spans;
} taskspan__resource_group;

/* Frame an ExportTraceServiceRequest: one ResourceSpans per group, each
 * with one ScopeSpans (scope "taskspan", this library's version). */
taskspan_code taskspan__encode_request(uint8_t **out, size_t *out_len,
                                       const taskspan__resource_group *groups,
                                       size_t n_groups);

/* The spans of one resource, as spans (for the JSON encoding). */
typedef struct taskspan__span_group {
    const taskspan_attr *resource; /* the resource's attributes */
    size_t n_resource;
    const taskspan_span *const *spans;
    size_t n_spans;
} taskspan__span_group;

/* Encode an ExportTraceServiceRequest as OTLP JSON, one line, UTF-8: the
 * same fields, limits and scope as taskspan__encode_span and
 * taskspan__encode_request (encode_otlp_json.c). OUT: *out (malloc'd,
 * NUL-terminated), *out_len (without the NUL). */
taskspan_code taskspan__encode_json_request(char **out, size_t *out_len,
                                            const taskspan__span_group *groups,
                                            size_t n_groups,
                                            const taskspan__limits *lim);

/* Read an ExportTraceServiceResponse. An empty body is full success.
 * OUT: *rejected (0 if none) and msg (the partial success message, "" if
 * none). TASKSPAN_E_ENCODE when the body does not parse. */
taskspan_code taskspan__decode_response(int64_t *rejected, char *msg,
                                        size_t msglen, const uint8_t *body,
                                        size_t len);

/* Read the message of a google.rpc.Status (the body of a 4xx/5xx), and
 * any RetryInfo delay it carries (*retry_ms = -1 when none). */
taskspan_code taskspan__decode_status(char *msg, size_t msglen,
                                      int64_t *retry_ms, const uint8_t *body,
                                      size_t len);

#endif
