/*
 * receiver.c -- the OTLP/HTTP trace receiver: libmicrohttpd plumbing, a
 * route table, and the body pipeline of POST /v1/traces (gunzip, limits,
 * protobuf decode, id checks). Every byte it reads is untrusted.
 *
 * DESIGN
 * Threading: a thread per connection (MHD_USE_THREAD_PER_CONNECTION), so
 * a web handler may block (the viewer's Server-Sent Events streams wait
 * for new spans inside MHD's content callback) without stalling ingest.
 * Calls of the consumer are serialised by consume_lock, so it needs no
 * locking of its own; everything else a request owns is its own.
 *
 * A request's life: MHD calls on_request once when the headers are in
 * (route lookup and header checks; a refusal is answered at once, before
 * any body byte is read, and MHD then closes the connection), once per body
 * chunk (appended to a buffer bounded by max_body), and once when the body
 * is complete (the route's handler builds the reply). on_completed frees
 * all the request owned, however it ended: a request's memory never
 * outlives it.
 *
 * Limits, all enforced before the memory is spent:
 *  - the body, before decompression (Content-Length up front, a chunked
 *    body as it arrives) and after (inflate stops at the same limit): 413;
 *  - body bytes held across all connections: INFLIGHT_FACTOR x max_body,
 *    else 503, so many slow uploads cannot add up to unbounded memory;
 *  - message nesting: MAX_DEPTH, checked by a wire-format pre-scan because
 *    protobuf-c's unpacker recurses without a limit (a deep AnyValue chain
 *    would overflow the stack): 400;
 *  - decoded memory: DECODE_FACTOR x body + DECODE_SLACK: 413. Unpacked
 *    OTLP takes 3-6x its wire size, up to ~15x for spans of tiny
 *    attributes, while a body of empty submessages could take ~36x;
 *    the factor admits every real shape and caps the rest;
 *  - MAX_CONNECTIONS connections, each closed after an idle timeout.
 */
#include "receiver.h"

#include "otlp_json_decode.h"

#include "../lib/internal.h"

#include "google/rpc/status.pb-c.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <zlib.h>

/* The C++ protobuf library's default recursion limit; real OTLP nests 7
 * deep plus whatever AnyValue arrays and maps add. */
#define MAX_DEPTH 100
/* Room for the viewer's stream clients (its own cap is lower) plus
 * senders; each connection is a thread. */
#define MAX_CONNECTIONS 128u
#define INFLIGHT_FACTOR 4
#define DECODE_FACTOR 32
#define DECODE_SLACK ((size_t)1 << 20)
#define LISTEN_BACKLOG 64
#define DISCARD_MAX ((size_t)1 << 20)
#define MSG_SIZE 256

/* The generated names run past 80 columns; these paste them together. */
#define COLLECTOR(name) opentelemetry__proto__collector__trace__v1__##name
#define COLLECTOR_INIT(name)                                                  \
    OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__##name##__INIT

#define MEDIA_PROTOBUF "application/x-protobuf"
#define MEDIA_JSON "application/json"
#define MEDIA_TEXT "text/plain; charset=utf-8"

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse
    pb_response;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess
    pb_partial;

struct taskspan__receiver {
    struct MHD_Daemon *daemon;
    size_t max_body;
    size_t inflight_cap;
    atomic_size_t inflight; /* body bytes reserved by live requests */
    taskspan__receiver_consumer consume;
    void *payload;
    taskspan__receiver_web web;
    void *web_payload;
    /* Connections have a thread each; this keeps the consumer's calls
     * from overlapping, as receiver.h promises. */
    pthread_mutex_t consume_lock;
    uint16_t port;
    char address[64]; /* "[" INET6_ADDRSTRLEN "]:65535" fits */
    atomic_bool started;
    char mhd_msg[MSG_SIZE]; /* MHD's last words while starting */
};

/* ---- per-request memory --------------------------------------------- */

/* An arena with a budget: the decoded message and the reply live here and
 * go in one taskspan__arena_free. It doubles as protobuf-c's allocator. */
typedef struct req_mem {
    taskspan__arena arena;
    size_t used;
    size_t budget; /* SIZE_MAX: unbudgeted (replies) */
    bool over_budget;
    bool out_of_memory;
} req_mem;

static void *mem_alloc(void *data, size_t size)
{
    req_mem *m = data;
    /* Count what the arena really takes: it rounds up to the alignment. */
    const size_t align = sizeof(max_align_t);
    size_t cost = size / align * align + (size % align != 0 ? align : 0);

    if (m->used > m->budget || cost > m->budget - m->used) {
        m->over_budget = true;
        return NULL;
    }
    void *p = taskspan__arena_alloc(&m->arena, size);
    if (p == NULL) {
        m->out_of_memory = true;
        return NULL;
    }
    m->used += cost;
    return p;
}

/* protobuf-c frees partial results on failure; the arena frees them all at
 * the end of the request instead. */
static void mem_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static size_t sat_mul_add(size_t a, size_t factor, size_t add)
{
    if (a > (SIZE_MAX - add) / factor) {
        return SIZE_MAX;
    }
    return a * factor + add;
}

/* ---- verdicts: an HTTP status plus why ---------------------------------- */

typedef struct verdict {
    unsigned status;
    char msg[MSG_SIZE];
} verdict;

static unsigned fail(verdict *v, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static unsigned fail(verdict *v, unsigned status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    v->status = status;
    return status;
}

/* ---- gunzip, bounded ----------------------------------------------------- */

/* The capacity a buffer of cap bytes grows to for want bytes: doubling
 * from 4 KiB, never past limit + 1 (one byte past the limit is how an
 * oversized result is detected). 0 if want does not fit. */
static size_t next_cap(size_t cap, size_t want, size_t limit)
{
    size_t ncap = cap < 4096 ? 4096 : cap;

    while (ncap < want) {
        ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
    }
    if (ncap > limit + 1) {
        ncap = limit + 1;
    }
    return ncap < want ? 0 : ncap;
}

/* Grow *buf (malloc'd, *cap bytes) to next_cap(*cap, want, limit). */
static bool grow(uint8_t **buf, size_t *cap, size_t want, size_t limit)
{
    size_t ncap = next_cap(*cap, want, limit);

    if (ncap == 0) {
        return false;
    }
    uint8_t *p = realloc(*buf, ncap);
    if (p == NULL) {
        return false;
    }
    *buf = p;
    *cap = ncap;
    return true;
}

/* Run inflate over the whole input into out (grown as needed). Several
 * gzip members in a row are one body, as gzip(1) and Go's reader agree. */
static unsigned inflate_all(z_stream *zs, uint8_t **out, size_t *out_len,
                            size_t max, verdict *v)
{
    size_t cap = 0;

    for (;;) {
        if (*out_len == cap) {
            if (cap == max + 1 || !grow(out, &cap, cap + 1, max)) {
                return cap == max + 1
                           ? fail(v, 413,
                                  "gzip body inflates past the %zu-byte "
                                  "limit",
                                  max)
                           : fail(v, 503, "out of memory inflating");
            }
        }
        zs->next_out = *out + *out_len;
        zs->avail_out = (uInt)(cap - *out_len);
        int zr = inflate(zs, Z_NO_FLUSH);
        *out_len = cap - zs->avail_out;
        if (*out_len > max) {
            return fail(v, 413, "gzip body inflates past the %zu-byte limit",
                        max);
        }
        if (zr == Z_STREAM_END) {
            if (zs->avail_in == 0) {
                return 200;
            }
            if (inflateReset(zs) != Z_OK) {
                return fail(v, 400, "gzip body is corrupt");
            }
        } else if (zr == Z_BUF_ERROR && zs->avail_out > 0) {
            /* No progress with room to write: the input ran out early. */
            return fail(v, 400, "gzip body is truncated");
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            return fail(v, zr == Z_MEM_ERROR ? 503 : 400,
                        "gzip body is corrupt (%s)",
                        zs->msg != NULL ? zs->msg : "inflate failed");
        }
    }
}

/* Inflate a gzip body. OUT: *out, malloc'd, caller frees (also on
 * failure); *out_len its length, at most max. */
static unsigned gunzip(uint8_t **out, size_t *out_len, const uint8_t *in,
                       size_t len, size_t max, verdict *v)
{
    z_stream zs;

    *out = NULL;
    *out_len = 0;
    memset(&zs, 0, sizeof zs);
    /* 16 + MAX_WBITS: gzip framing only; zlib or raw deflate is refused
     * because the client said gzip. */
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        return fail(v, 503, "out of memory starting inflate");
    }
    /* max_body is far below 4 GiB, so the whole input fits in one uInt. */
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    unsigned st = inflate_all(&zs, out, out_len, max, v);
    inflateEnd(&zs);
    return st;
}

/* ---- wire-format pre-scan --------------------------------------------- */

static bool read_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out)
{
    uint64_t val = 0;

    /* At most 10 bytes: shifts 0, 7, ..., 63. */
    for (unsigned shift = 0; shift < 64 && *pos < n; shift += 7) {
        uint8_t b = p[(*pos)++];
        val |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = val;
            return true;
        }
    }
    return false;
}

/* The wire type a field of type t is encoded with when not packed. */
static unsigned wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0; /* the varint types, bool and enum */
    }
}

/* Whether wire type wt is acceptable for field f. A repeated scalar may
 * come packed (one length-delimited run) whatever the .proto says. */
static bool wire_type_fits(const ProtobufCFieldDescriptor *f, unsigned wt)
{
    unsigned want = wire_type_of(f->type);
    return wt == want ||
           (wt == 2 && want != 2 && f->label == PROTOBUF_C_LABEL_REPEATED);
}

/* Skip the value of one field with wire type wt at p[*pos]; for a known
 * submessage, scan it one level deeper. Returns 200 or a 400 verdict. */
static unsigned scan_message(const ProtobufCMessageDescriptor *d,
                             const uint8_t *p, size_t n, unsigned depth,
                             verdict *v);

static unsigned scan_value(const ProtobufCMessageDescriptor *d,
                           const ProtobufCFieldDescriptor *f, unsigned wt,
                           const uint8_t *p, size_t n, size_t *pos,
                           unsigned depth, verdict *v)
{
    uint64_t len = 0;

    switch (wt) {
    case 0:
        if (!read_varint(p, n, pos, &len)) {
            return fail(v, 400, "%s: bad varint", d->short_name);
        }
        return 200;
    case 1:
    case 5:
        len = wt == 1 ? 8 : 4;
        if (len > n - *pos) {
            return fail(v, 400, "%s: truncated fixed-size field",
                        d->short_name);
        }
        *pos += (size_t)len;
        return 200;
    case 2:
        if (!read_varint(p, n, pos, &len) || len > n - *pos) {
            return fail(v, 400, "%s: field length runs past the end",
                        d->short_name);
        }
        if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            unsigned st = scan_message(f->descriptor, p + *pos, (size_t)len,
                                       depth + 1, v);
            if (st != 200) {
                return st;
            }
        }
        *pos += (size_t)len;
        return 200;
    default:
        return fail(v, 400, "%s: unsupported wire type %u", d->short_name, wt);
    }
}

/*
 * Walk a serialized message of type d without allocating: every tag, length
 * and wire type must be sound and nesting must stay within MAX_DEPTH.
 * protobuf-c's unpacker recurses once per level with no limit, so this
 * must run first; checking the rest here too gives a 400 that names the
 * message and field instead of a bare "does not decode".
 */
static unsigned scan_message(const ProtobufCMessageDescriptor *d,
                             const uint8_t *p, size_t n, unsigned depth,
                             verdict *v)
{
    size_t pos = 0;

    if (depth > MAX_DEPTH) {
        return fail(v, 400, "messages nest more than %d levels deep",
                    MAX_DEPTH);
    }
    while (pos < n) {
        uint64_t key = 0;
        if (!read_varint(p, n, &pos, &key)) {
            return fail(v, 400, "%s: bad field tag", d->short_name);
        }
        uint64_t num = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        if (num == 0 || num > 536870911u) {
            return fail(v, 400, "%s: invalid field number", d->short_name);
        }
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)num);
        if (f != NULL && !wire_type_fits(f, wt)) {
            return fail(v, 400, "%s.%s: wire type %u does not fit the field",
                        d->short_name, f->name, wt);
        }
        unsigned st = scan_value(d, f, wt, p, n, &pos, depth, v);
        if (st != 200) {
            return st;
        }
    }
    return 200;
}

/* ---- id checks -------------------------------------------------------- */

/* Lengths the Collector also enforces when it unmarshals (otlp-facts §1);
 * span ids are required, so 0 is refused for them too. */
static unsigned check_span(const pb_span *s, size_t i, size_t j, size_t k,
                           verdict *v)
{
#define WHERE "resource_spans[%zu].scope_spans[%zu].spans[%zu]"
    if (s->trace_id.len != 16) {
        return fail(v, 400, WHERE ".trace_id is %zu bytes, not 16", i, j, k,
                    s->trace_id.len);
    }
    if (s->span_id.len != 8) {
        return fail(v, 400, WHERE ".span_id is %zu bytes, not 8", i, j, k,
                    s->span_id.len);
    }
    if (s->parent_span_id.len != 0 && s->parent_span_id.len != 8) {
        return fail(v, 400, WHERE ".parent_span_id is %zu bytes, not 0 or 8",
                    i, j, k, s->parent_span_id.len);
    }
    for (size_t l = 0; l < s->n_links; l++) {
        const Opentelemetry__Proto__Trace__V1__Span__Link *ln = s->links[l];
        if ((ln->trace_id.len != 0 && ln->trace_id.len != 16) ||
            (ln->span_id.len != 0 && ln->span_id.len != 8)) {
            return fail(v, 400, WHERE ".links[%zu] has a malformed id", i, j,
                        k, l);
        }
    }
    return 200;
#undef WHERE
}

static unsigned check_ids(const taskspan__export_request *req, verdict *v)
{
    for (size_t i = 0; i < req->n_resource_spans; i++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
            req->resource_spans[i];
        for (size_t j = 0; j < rs->n_scope_spans; j++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                rs->scope_spans[j];
            for (size_t k = 0; k < ss->n_spans; k++) {
                unsigned st = check_span(ss->spans[k], i, j, k, v);
                if (st != 200) {
                    return st;
                }
            }
        }
    }
    return 200;
}

/* ---- codecs ------------------------------------------------------------ */

/* A reply as the handlers build it; body is static or arena-owned. */
typedef struct reply {
    unsigned status;
    const char *content_type;
    const void *body;
    size_t len;
    const char *allow; /* Allow header of a 405, else NULL */
    bool retry_after;  /* a 503 says when to come back */
} reply;

/* One request encoding: OTLP/HTTP's binary protobuf or its JSON. */
typedef struct codec {
    const char *media_type;
    unsigned (*decode)(taskspan__export_request **out, req_mem *mem,
                       const uint8_t *body, size_t len, verdict *v);
    taskspan_code (*encode_response)(reply *out, req_mem *mem,
                                     int64_t rejected, const char *msg);
    taskspan_code (*encode_status)(reply *out, req_mem *mem, unsigned status,
                                   const char *msg);
} codec;

static unsigned pb_decode(taskspan__export_request **out, req_mem *mem,
                          const uint8_t *body, size_t len, verdict *v)
{
    const ProtobufCMessageDescriptor *d = &COLLECTOR(
        export_trace_service_request__descriptor);
    ProtobufCAllocator a = {
        .alloc = mem_alloc, .free = mem_free, .allocator_data = mem};

    unsigned st = scan_message(d, body, len, 1, v);
    if (st != 200) {
        return st;
    }
    *out = (taskspan__export_request *)protobuf_c_message_unpack(d, &a, len,
                                                                 body);
    if (*out != NULL) {
        return 200;
    }
    if (mem->out_of_memory) {
        return fail(v, 503, "out of memory decoding the request");
    }
    if (mem->over_budget) {
        return fail(v, 413, "the decoded request needs more than %zu bytes",
                    mem->budget);
    }
    return fail(v, 400, "body is not a valid ExportTraceServiceRequest");
}

static taskspan_code pb_pack_into(reply *out, req_mem *mem,
                                  const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = n > 0 ? mem_alloc(mem, n) : NULL;

    if (n > 0 && buf == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    if (n > 0) {
        protobuf_c_message_pack(m, buf);
    }
    out->content_type = MEDIA_PROTOBUF;
    out->body = buf;
    out->len = n;
    return TASKSPAN_OK;
}

/* Full success is an empty ExportTraceServiceResponse: zero bytes. A
 * rejection count or a warning goes in partial_success. */
static taskspan_code pb_encode_response(reply *out, req_mem *mem,
                                        int64_t rejected, const char *msg)
{
    pb_response resp = COLLECTOR_INIT(EXPORT_TRACE_SERVICE_RESPONSE);
    pb_partial ps = COLLECTOR_INIT(EXPORT_TRACE_PARTIAL_SUCCESS);

    if (rejected > 0 || msg[0] != '\0') {
        ps.rejected_spans = rejected;
        ps.error_message = (char *)(uintptr_t)msg;
        resp.partial_success = &ps;
    }
    out->status = 200;
    return pb_pack_into(out, mem, &resp.base);
}

/* google.rpc.Status.code for an HTTP status; OTLP ignores it, but it
 * helps a human reading the body. */
static int32_t grpc_code(unsigned status)
{
    switch (status) {
    case 400:
        return 3; /* INVALID_ARGUMENT */
    case 413:
        return 8; /* RESOURCE_EXHAUSTED */
    case 415:
        return 12; /* UNIMPLEMENTED */
    case 503:
        return 14; /* UNAVAILABLE */
    default:
        return 13; /* INTERNAL */
    }
}

static taskspan_code pb_encode_status(reply *out, req_mem *mem,
                                      unsigned status, const char *msg)
{
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;

    st.code = grpc_code(status);
    st.message = (char *)(uintptr_t)msg;
    out->status = status;
    return pb_pack_into(out, mem, &st.base);
}

/* ---- OTLP/JSON: the same messages in the OTLP JSON mapping ------------ */

static unsigned json_decode(taskspan__export_request **out, req_mem *mem,
                            const uint8_t *body, size_t len, verdict *v)
{
    ProtobufCAllocator a = {
        .alloc = mem_alloc, .free = mem_free, .allocator_data = mem};

    unsigned st = taskspan__otlp_json_decode(out, &a, body, len, v->msg,
                                             sizeof v->msg);
    if (st != 0) {
        v->status = st;
        return st;
    }
    if (mem->over_budget) {
        return fail(v, 413, "the decoded request needs more than %zu bytes",
                    mem->budget);
    }
    return fail(v, 503, "out of memory decoding the request");
}

/* Serialise j (consumed) into the arena as the reply body. */
static taskspan_code json_reply(reply *out, req_mem *mem, json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (text == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    size_t n = strlen(text);
    char *copy = mem_alloc(mem, n + 1);
    if (copy != NULL) {
        memcpy(copy, text, n + 1);
    }
    free(text);
    if (copy == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    out->content_type = MEDIA_JSON;
    out->body = copy;
    out->len = n;
    return TASKSPAN_OK;
}

/* {} on full success; partialSuccess as in the protobuf answer, int64 as
 * a decimal string per the OTLP JSON mapping. */
static taskspan_code json_encode_response(reply *out, req_mem *mem,
                                          int64_t rejected, const char *msg)
{
    json_t *j = json_object();
    char num[24];

    out->status = 200;
    if (j != NULL && (rejected > 0 || msg[0] != '\0')) {
        snprintf(num, sizeof num, "%" PRId64, rejected);
        json_object_set_new(j, "partialSuccess",
                            json_pack("{s:s, s:s}", "rejectedSpans", num,
                                      "errorMessage", msg));
    }
    return json_reply(out, mem, j);
}

static taskspan_code json_encode_status(reply *out, req_mem *mem,
                                        unsigned status, const char *msg)
{
    out->status = status;
    /* json_string refuses text that is not UTF-8 (a message may quote
     * the client's bytes): the status then goes without a message. */
    json_t *j = json_pack("{s:i}", "code", (int)grpc_code(status));
    if (j != NULL) {
        json_object_set_new(j, "message", json_string(msg));
    }
    return json_reply(out, mem, j);
}

static const codec codecs[] = {
    {MEDIA_PROTOBUF, pb_decode, pb_encode_response, pb_encode_status},
    {MEDIA_JSON, json_decode, json_encode_response, json_encode_status},
};

/* The codec for a Content-Type value: media type compared without case,
 * parameters (";charset=...") ignored. NULL for anything else. */
static const codec *find_codec(const char *content_type)
{
    if (content_type == NULL) {
        return NULL;
    }
    while (*content_type == ' ' || *content_type == '\t') {
        content_type++;
    }
    size_t n = strcspn(content_type, "; \t");
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
        if (strlen(codecs[i].media_type) == n &&
            strncasecmp(content_type, codecs[i].media_type, n) == 0) {
            return &codecs[i];
        }
    }
    return NULL;
}

/* ---- the pipeline ------------------------------------------------------ */

/* Everything between the raw body and the consumer. OUT: *out_req (in
 * mem) on 200; *out_plain, the inflated body, malloc'd, caller frees. */
static unsigned decode_traces(taskspan__export_request **out_req,
                              uint8_t **out_plain, req_mem *mem,
                              const codec *c, const uint8_t *body, size_t len,
                              bool gzip, size_t max_body, verdict *v)
{
    *out_req = NULL;
    *out_plain = NULL;
    if (body == NULL) {
        body = (const uint8_t *)""; /* an empty body; keep pointers real */
    }
    if (len > max_body) {
        return fail(v, 413, "body of %zu bytes exceeds the %zu-byte limit",
                    len, max_body);
    }
    if (gzip) {
        unsigned st = gunzip(out_plain, &len, body, len, max_body, v);
        if (st != 200) {
            return st;
        }
        body = *out_plain;
    }
    mem->budget = sat_mul_add(len, DECODE_FACTOR, DECODE_SLACK);
    unsigned st = c->decode(out_req, mem, body, len, v);
    /* The reply comes from the same arena, also after an over-budget
     * failure; only decoding has a budget. */
    mem->budget = SIZE_MAX;
    if (st != 200) {
        return st;
    }
    return check_ids(*out_req, v);
}

unsigned taskspan__receiver_check_body(const uint8_t *body, size_t len,
                                       bool gzip, size_t max_body, char *msg,
                                       size_t msg_size)
{
    req_mem mem = {.budget = SIZE_MAX};
    taskspan__export_request *req = NULL;
    uint8_t *plain = NULL;
    verdict v = {.status = 200};

    if (max_body == 0 || max_body > TASKSPAN__RECEIVER_MAX_MAX_BODY) {
        max_body = TASKSPAN__RECEIVER_MAX_MAX_BODY; /* zlib counts in uInt */
    }
    unsigned st = decode_traces(&req, &plain, &mem, &codecs[0], body, len,
                                gzip, max_body, &v);
    if (msg != NULL && msg_size > 0) {
        snprintf(msg, msg_size, "%s", st == 200 ? "" : v.msg);
    }
    free(plain);
    taskspan__arena_free(&mem.arena);
    return st;
}

/* ---- requests ---------------------------------------------------------- */

typedef struct request request;

/* A route. begin (optional) runs when the headers are in and may answer
 * at once; handle runs when the body is complete. Both fill rq->reply and
 * return TASKSPAN_OK, or a code for a failure to answer at all (500/503).
 */
typedef struct route {
    const char *method;
    const char *path;
    taskspan_code (*begin)(request *rq, struct MHD_Connection *conn);
    taskspan_code (*handle)(request *rq);
} route;

struct request {
    taskspan__receiver *rx;
    const route *route;
    const codec *codec; /* the request's encoding, for error bodies */
    bool gzip;
    bool decided;  /* rq->reply is final, the body is not needed */
    size_t limit;  /* body bytes accepted; 0 for routes without a body */
    uint8_t *body; /* malloc'd: it grows by realloc as chunks arrive */
    size_t len, cap;
    size_t reserved;  /* bytes of rx->inflight this request holds */
    size_t discarded; /* body bytes dropped after an overflow */
    verdict overflow; /* status 0, or why the body was refused */
    uint8_t *plain;   /* the inflated body, malloc'd */
    req_mem mem;
    reply reply;
};

/* Hold body bytes in the receiver-wide in-flight count, up to total. */
static bool reserve(request *rq, size_t total)
{
    taskspan__receiver *rx = rq->rx;

    if (total <= rq->reserved) {
        return true;
    }
    size_t extra = total - rq->reserved;
    size_t cur = atomic_load(&rx->inflight);
    do {
        if (extra > rx->inflight_cap - cur) {
            return false;
        }
    } while (!atomic_compare_exchange_weak(&rx->inflight, &cur, cur + extra));
    rq->reserved = total;
    return true;
}

static void release_body(request *rq)
{
    atomic_fetch_sub(&rq->rx->inflight, rq->reserved);
    rq->reserved = 0;
    free(rq->body);
    rq->body = NULL;
    rq->len = rq->cap = 0;
}

static void request_free(request *rq)
{
    if (rq == NULL) {
        return;
    }
    release_body(rq);
    free(rq->plain);
    taskspan__arena_free(&rq->mem.arena);
    free(rq);
}

static void reply_text(request *rq, unsigned status, const char *text)
{
    rq->reply = (reply){.status = status,
                        .content_type = MEDIA_TEXT,
                        .body = text,
                        .len = strlen(text)};
}

/* An error reply: a google.rpc.Status in the request's encoding once it is
 * known to speak OTLP, plain text otherwise (and if even that cannot be
 * allocated, the status alone). */
static void reply_error(request *rq, unsigned status, const char *msg)
{
    rq->reply = (reply){.status = status, .retry_after = status == 503};
    if (rq->codec != NULL) {
        if (rq->codec->encode_status(&rq->reply, &rq->mem, status, msg) !=
            TASKSPAN_OK) {
            rq->reply.body = NULL;
            rq->reply.len = 0;
        }
        return;
    }
    size_t n = strlen(msg);
    char *text = mem_alloc(&rq->mem, n + 2);
    if (text != NULL) {
        memcpy(text, msg, n);
        text[n] = '\n';
        text[n + 1] = '\0';
        reply_text(rq, status, text);
        rq->reply.retry_after = status == 503;
    }
}

static void reply_errorf(request *rq, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_errorf(request *rq, unsigned status, const char *fmt, ...)
{
    char msg[MSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_error(rq, status, msg);
}

/* Strict decimal size: digits only, no sign, no overflow. */
static bool parse_size(const char *s, size_t *out)
{
    size_t val = 0;

    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        unsigned d = (unsigned)(*s - '0');
        if (val > (SIZE_MAX - d) / 10) {
            return false;
        }
        val = val * 10 + d;
    }
    *out = val;
    return true;
}

/* Content-Encoding: none or gzip (every OTLP server MUST take both). */
static bool parse_encoding(const char *ce, bool *gzip)
{
    *gzip = false;
    if (ce == NULL || *ce == '\0' || strcasecmp(ce, "identity") == 0) {
        return true;
    }
    if (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0) {
        *gzip = true;
        return true;
    }
    return false;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* ---- handlers ---------------------------------------------------------- */

/* POST /v1/traces, headers in: refuse what cannot succeed before reading a
 * byte of the body, and size the body buffer. */
static taskspan_code begin_traces(request *rq, struct MHD_Connection *conn)
{
    const char *ct = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *ce = header(conn, MHD_HTTP_HEADER_CONTENT_ENCODING);
    size_t n = 0;

    rq->decided = true;
    rq->codec = find_codec(ct);
    if (rq->codec == NULL || rq->codec->decode == NULL) {
        rq->codec = NULL; /* not OTLP we speak: answer in text */
        reply_errorf(rq, 415,
                     "Content-Type %s is not supported; send %s or %s",
                     ct != NULL ? ct : "(none)", MEDIA_PROTOBUF, MEDIA_JSON);
        return TASKSPAN_OK;
    }
    if (!parse_encoding(ce, &rq->gzip)) {
        reply_errorf(rq, 415,
                     "Content-Encoding %s is not supported; send gzip or "
                     "none",
                     ce);
        return TASKSPAN_OK;
    }
    rq->limit = rq->rx->max_body;
    if (parse_size(header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH), &n)) {
        if (n > rq->limit) {
            reply_errorf(rq, 413,
                         "body of %zu bytes exceeds the %zu-byte limit", n,
                         rq->limit);
            return TASKSPAN_OK;
        }
        if (!reserve(rq, n)) {
            reply_error(rq, 503, "too many request bodies in flight");
            return TASKSPAN_OK;
        }
        if (n > 0 && !grow(&rq->body, &rq->cap, n, n - 1)) {
            return TASKSPAN_E_NOMEM;
        }
    }
    rq->decided = false;
    return TASKSPAN_OK;
}

/* POST /v1/traces, body complete: decode, check, consume, answer. */
static taskspan_code handle_traces(request *rq)
{
    taskspan__receiver *rx = rq->rx;
    taskspan__export_request *req = NULL;
    verdict v = {.status = 200};
    char msg[MSG_SIZE] = "";

    unsigned st = decode_traces(&req, &rq->plain, &rq->mem, rq->codec,
                                rq->body, rq->len, rq->gzip, rx->max_body, &v);
    if (st != 200) {
        reply_error(rq, st, v.msg);
        return TASKSPAN_OK;
    }
    int64_t rejected = 0;
    if (rx->consume != NULL) {
        pthread_mutex_lock(&rx->consume_lock);
        rejected = rx->consume(msg, sizeof msg, req, rx->payload);
        pthread_mutex_unlock(&rx->consume_lock);
    }
    if (rejected < 0) {
        reply_error(rq, 503, msg[0] != '\0' ? msg : "request not stored");
        return TASKSPAN_OK;
    }
    if (rejected > 0 && msg[0] == '\0') {
        snprintf(msg, sizeof msg, "%" PRId64 " spans rejected", rejected);
    }
    return rq->codec->encode_response(&rq->reply, &rq->mem, rejected, msg);
}

static taskspan_code handle_healthz(request *rq)
{
    reply_text(rq, 200, "ok");
    return TASKSPAN_OK;
}

static const route routes[] = {
    {"POST", "/v1/traces", begin_traces, handle_traces},
    {"GET", "/healthz", NULL, handle_healthz},
    {"HEAD", "/healthz", NULL, handle_healthz},
};

/* The route for method and path; NULL with rq->reply set to 404 or 405. */
static const route *find_route(request *rq, const char *method,
                               const char *path)
{
    char allow[64] = "";
    size_t used = 0;

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, path) != 0) {
            continue;
        }
        if (strcmp(routes[i].method, method) == 0) {
            return &routes[i];
        }
        int w = snprintf(allow + used, sizeof allow - used, "%s%s",
                         used > 0 ? ", " : "", routes[i].method);
        used = w > 0 && (size_t)w < sizeof allow - used ? used + (size_t)w
                                                        : used;
    }
    if (used == 0) {
        reply_text(rq, 404, "not found; OTLP traces go to POST /v1/traces\n");
        return NULL;
    }
    reply_errorf(rq, 405, "method %s is not allowed here; use %s", method,
                 allow);
    rq->reply.allow = taskspan__arena_strdup(&rq->mem.arena, allow);
    return NULL;
}

/* ---- libmicrohttpd callbacks ------------------------------------------ */

static enum MHD_Result queue_reply(struct MHD_Connection *conn, const reply *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->len, (void *)(uintptr_t)(r->body != NULL ? r->body : ""),
        MHD_RESPMEM_MUST_COPY);

    if (resp == NULL) {
        return MHD_NO; /* MHD closes the connection */
    }
    if (r->content_type != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->content_type);
    }
    if (r->allow != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    }
    if (r->retry_after) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The first call of a request: set it up, route it, check its headers. */
static enum MHD_Result begin_request(taskspan__receiver *rx,
                                     struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     void **con_cls)
{
    request *rq = calloc(1, sizeof *rq);

    if (rq == NULL) {
        return MHD_NO;
    }
    rq->rx = rx;
    rq->mem.budget = SIZE_MAX;
    *con_cls = rq; /* from here on_completed frees it */
    rq->route = find_route(rq, method, url);
    if (rq->route == NULL && rq->reply.status == 404 && rx->web != NULL) {
        unsigned st = 500;
        struct MHD_Response *resp = rx->web(&st, conn, method, url,
                                            rx->web_payload);
        if (resp == NULL) {
            return MHD_NO; /* out of memory: MHD closes the connection */
        }
        enum MHD_Result ret = MHD_queue_response(conn, st, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (rq->route == NULL) {
        return queue_reply(conn, &rq->reply);
    }
    if (rq->route->begin != NULL) {
        taskspan_code rc = rq->route->begin(rq, conn);
        if (rc != TASKSPAN_OK) {
            reply_error(rq, rc == TASKSPAN_E_NOMEM ? 503 : 500,
                        taskspan_strerror(rc));
            rq->decided = true;
        }
    }
    if (rq->decided) {
        return queue_reply(conn, &rq->reply);
    }
    return MHD_YES;
}

/* Refuse the rest of a body that did not fit: keep reading (a reply can
 * only be queued once the body is in) but drop the bytes, and give up on
 * the connection (no reply) past DISCARD_MAX more bytes: a sender that
 * streams without Content-Length still learns of its 413, a flood ends. */
static enum MHD_Result overflow(request *rq, size_t n, unsigned status,
                                const char *msg)
{
    if (rq->overflow.status == 0) {
        rq->overflow.status = status;
        snprintf(rq->overflow.msg, sizeof rq->overflow.msg, "%s", msg);
        release_body(rq);
    }
    rq->discarded += n;
    return rq->discarded > rq->rx->max_body + DISCARD_MAX ? MHD_NO : MHD_YES;
}

/* One chunk of body: append it within the limits. */
static enum MHD_Result absorb(request *rq, const char *data, size_t n)
{
    char msg[MSG_SIZE];

    if (rq->overflow.status != 0) {
        return overflow(rq, n, 0, NULL);
    }
    if (n > rq->limit - rq->len) {
        snprintf(msg, sizeof msg, "body exceeds the %zu-byte limit",
                 rq->limit);
        return overflow(rq, n, 413, msg);
    }
    if (rq->len + n > rq->cap) {
        size_t want = rq->len + n;
        /* Reserve the whole capacity grow will take, not just want. */
        if (!reserve(rq, next_cap(rq->cap, want, rq->limit - 1))) {
            return overflow(rq, n, 503, "too many request bodies in flight");
        }
        if (!grow(&rq->body, &rq->cap, want, rq->limit - 1)) {
            return overflow(rq, n, 503, "out of memory for the body");
        }
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    request *rq = *con_cls;

    (void)version;
    if (rq == NULL) {
        return begin_request(cls, conn, url, method, con_cls);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->limit == 0 && rq->overflow.status == 0) {
            return overflow(rq, n, 413, "this path takes no body");
        }
        return absorb(rq, upload_data, n);
    }
    if (rq->route == NULL) {
        /* Answered on the first call (404, 405, the web side); MHD does
         * not call again then, but a handler-less request must never
         * reach the code below. */
        return MHD_NO;
    }
    if (rq->overflow.status != 0) {
        reply_error(rq, rq->overflow.status, rq->overflow.msg);
    } else {
        taskspan_code rc = rq->route->handle(rq);
        if (rc != TASKSPAN_OK) {
            reply_error(rq, rc == TASKSPAN_E_NOMEM ? 503 : 500,
                        taskspan_strerror(rc));
        }
    }
    return queue_reply(conn, &rq->reply);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request_free(*con_cls);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* While starting, keep MHD's message for errbuf. Once running, MHD speaks
 * of single connections, mostly of clients that misbehaved or that we cut
 * off; printing those would hand stderr to any client, so they are
 * dropped. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    taskspan__receiver *rx = cls;

    if (!atomic_load(&rx->started)) {
        vsnprintf(rx->mhd_msg, sizeof rx->mhd_msg, fmt, ap);
        rx->mhd_msg[strcspn(rx->mhd_msg, "\r\n")] = '\0';
    }
}

/* ---- listening --------------------------------------------------------- */

/* Parse "HOST:PORT" (HOST: IPv4, [IPv6] or localhost; PORT 0-65535). */
static taskspan_code parse_listen(struct sockaddr_storage *out,
                                  socklen_t *out_len, const char *text,
                                  char *err, size_t errlen)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    size_t port = 0;

    memset(out, 0, sizeof *out);
    if (colon == NULL || colon == text ||
        (size_t)(colon - text) >= sizeof host ||
        !parse_size(colon + 1, &port) || port > 65535) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "listen address '%s' is not HOST:PORT", text);
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    size_t hl = strlen(host);
    if (strcmp(host, "localhost") == 0) {
        memcpy(host, "127.0.0.1", sizeof "127.0.0.1");
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *out_len = sizeof *v4;
        return TASKSPAN_OK;
    }
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)port);
            *out_len = sizeof *v6;
            return TASKSPAN_OK;
        }
    }
    return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                          "listen address '%s': HOST must be an IPv4 "
                          "address, [IPv6] or localhost",
                          text);
}

/* Record the bound port and its printable address. */
static bool describe_bound(taskspan__receiver *rx, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return false;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        rx->port = ntohs(a->sin6_port);
        snprintf(rx->address, sizeof rx->address, "[%s]:%u", ip, rx->port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        rx->port = ntohs(a->sin_port);
        snprintf(rx->address, sizeof rx->address, "%s:%u", ip, rx->port);
    }
    return true;
}

/*
 * Open, bind and listen ourselves (MHD_OPTION_LISTEN_SOCKET) rather than
 * let MHD do it: only then is errno known, so "address in use" can be told
 * apart from other failures. OUT: *out_fd, a listening socket.
 */
static taskspan_code open_listener(int *out_fd, taskspan__receiver *rx,
                                   const char *text, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const int on = 1;
    char why[128] = "";

    taskspan_code rc = parse_listen(&ss, &len, text, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        strerror_r(errno, why, sizeof why);
        return taskspan__fail(err, errlen, TASKSPAN_E_IO,
                              "cannot open a socket: %s", why);
    }
    /* Close on exec: a child of the server must not keep the port. Non-
     * blocking: accept() after a client gave up must not stall MHD. */
    int fl = fcntl(fd, F_GETFL);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(fd, F_SETFL, fl < 0 ? O_NONBLOCK : fl | O_NONBLOCK);
    /* A restarted server rebinds past old TIME_WAIT connections; Linux
     * still refuses a port another socket listens on. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (ss.ss_family == AF_INET6) {
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0 || !describe_bound(rx, fd)) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE) {
            return taskspan__fail(err, errlen, TASKSPAN_E_IO,
                                  "%s is already in use", text);
        }
        strerror_r(e, why, sizeof why);
        return taskspan__fail(err, errlen, TASKSPAN_E_IO,
                              "cannot listen on %s: %s", text, why);
    }
    *out_fd = fd;
    return TASKSPAN_OK;
}

/* ---- start and stop ---------------------------------------------------- */

taskspan_code taskspan__receiver_start(taskspan__receiver **out,
                                       const taskspan__receiver_config *cfg,
                                       char *errbuf)
{
    const size_t errlen = errbuf != NULL ? TASKSPAN_ERRBUF_SIZE : 0;
    int fd = -1;

    assert(out != NULL && cfg != NULL);
    *out = NULL;
    size_t max = cfg->max_body != 0 ? cfg->max_body
                                    : TASKSPAN__RECEIVER_DEFAULT_MAX_BODY;
    if (max > TASKSPAN__RECEIVER_MAX_MAX_BODY) {
        return taskspan__fail(errbuf, errlen, TASKSPAN_E_INVALID_ARG,
                              "body limit %zu is above %zu bytes", max,
                              TASKSPAN__RECEIVER_MAX_MAX_BODY);
    }
    taskspan__receiver *rx = calloc(1, sizeof *rx);
    if (rx == NULL) {
        return taskspan__fail(errbuf, errlen, TASKSPAN_E_NOMEM,
                              "out of memory");
    }
    rx->max_body = max;
    rx->inflight_cap = sat_mul_add(max, INFLIGHT_FACTOR, 0);
    rx->consume = cfg->consume;
    rx->payload = cfg->payload;
    rx->web = cfg->web;
    rx->web_payload = cfg->web_payload;
    if (pthread_mutex_init(&rx->consume_lock, NULL) != 0) {
        free(rx);
        return taskspan__fail(errbuf, errlen, TASKSPAN_E_NOMEM,
                              "cannot create a mutex");
    }
    atomic_init(&rx->inflight, 0);
    atomic_init(&rx->started, false);
    const char *listen_at = cfg->listen != NULL
                                ? cfg->listen
                                : TASKSPAN__RECEIVER_DEFAULT_LISTEN;
    taskspan_code rc = open_listener(&fd, rx, listen_at, errbuf, errlen);
    if (rc != TASKSPAN_OK) {
        pthread_mutex_destroy(&rx->consume_lock);
        free(rx);
        return rc;
    }
    unsigned timeout = cfg->timeout_s != 0
                           ? cfg->timeout_s
                           : TASKSPAN__RECEIVER_DEFAULT_TIMEOUT_S;
    /* A thread per connection (see DESIGN); the logger goes first so no
     * start-up message escapes to MHD's default stderr logger. */
    rx->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
            MHD_USE_AUTO | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, rx, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        rx, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
        timeout, MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, rx, MHD_OPTION_END);
    if (rx->daemon == NULL) {
        /* MHD 0.9.75 leaves a socket it was given open when it fails to
         * start (seen for bad options and for epoll_create1 failing). */
        close(fd);
        rc = taskspan__fail(errbuf, errlen, TASKSPAN_E_IO,
                            "cannot start the HTTP server on %s%s%s",
                            listen_at, rx->mhd_msg[0] != '\0' ? ": " : "",
                            rx->mhd_msg);
        pthread_mutex_destroy(&rx->consume_lock);
        free(rx);
        return rc;
    }
    atomic_store(&rx->started, true);
    *out = rx;
    return TASKSPAN_OK;
}

uint16_t taskspan__receiver_port(const taskspan__receiver *r)
{
    return r->port;
}

const char *taskspan__receiver_address(const taskspan__receiver *r)
{
    return r->address;
}

void taskspan__receiver_stop(taskspan__receiver *r)
{
    if (r == NULL) {
        return;
    }
    /* Joins the polling thread, which completes (and so frees) every open
     * request, then closes the listening socket it was given. */
    MHD_stop_daemon(r->daemon);
    pthread_mutex_destroy(&r->consume_lock);
    free(r);
}
