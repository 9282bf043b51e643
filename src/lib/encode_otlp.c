/*
 * encode_otlp.c -- spans to OTLP protobuf (protobuf-c), responses back.
 *
 * A span is encoded when it is sent, into the bytes of one Span message
 * (encode_span.c writes them directly; taskspan__encode_span_pbc here is
 * the protobuf-c reference its tests compare with), and a request is
 * framed around those bytes by hand (ResourceSpans and ScopeSpans are
 * plain length-delimited fields). The encoding is a function of the span
 * alone, so a span sent twice is sent byte for byte the same. This file
 * also encodes resources and decodes the collector's answers. Only this
 * file and the viewer include the protobuf-c generated headers.
 */
#include "encode_otlp.h"

#include <stdlib.h>
#include <string.h>

#include "google/rpc/status.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event SpanEvent;
typedef Opentelemetry__Proto__Trace__V1__Span__Link SpanLink;
typedef Opentelemetry__Proto__Trace__V1__Status Status;

/* The generated names of the collector messages do not fit a line. */
#define COLLECTOR(name) opentelemetry__proto__collector__trace__v1__##name
#define response_unpack COLLECTOR(export_trace_service_response__unpack)
#define response_free_unpacked                                                \
    COLLECTOR(export_trace_service_response__free_unpacked)

size_t taskspan__utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return n;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--; /* s[n] is a continuation byte: back up to its lead byte */
    }
    return n;
}

static char *limited_str(taskspan__arena *a, const char *s, size_t max)
{
    size_t n = taskspan__utf8_cut(s, max);
    char *p = taskspan__arena_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static AnyValue *new_value(taskspan__arena *a)
{
    static const AnyValue init =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    AnyValue *v = taskspan__arena_alloc(a, sizeof *v);
    if (v != NULL) {
        *v = init;
    }
    return v;
}

/* One element of an array attribute as an AnyValue. */
static AnyValue *array_item(taskspan__arena *a, const taskspan_attr *attr,
                            size_t i, size_t max_len)
{
    AnyValue *v = new_value(a);
    const void *items = attr->value.array.items;
    if (v == NULL) {
        return NULL;
    }
    switch (attr->type) {
    case TASKSPAN_ATTR_STRING_ARRAY:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        v->string_value = limited_str(a, ((const char *const *)items)[i],
                                      max_len);
        return v->string_value != NULL ? v : NULL;
    case TASKSPAN_ATTR_INT_ARRAY:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = ((const int64_t *)items)[i];
        return v;
    case TASKSPAN_ATTR_DOUBLE_ARRAY:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->double_value = ((const double *)items)[i];
        return v;
    default:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = ((const int *)items)[i] != 0;
        return v;
    }
}

static AnyValue *attr_value(taskspan__arena *a, const taskspan_attr *attr,
                            size_t max_len)
{
    static const ArrayValue array_init =
        OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
    AnyValue *v = new_value(a);
    if (v == NULL) {
        return NULL;
    }
    switch (attr->type) {
    case TASKSPAN_ATTR_STRING:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        v->string_value = limited_str(a, attr->value.s, max_len);
        return v->string_value != NULL ? v : NULL;
    case TASKSPAN_ATTR_INT:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = attr->value.i;
        return v;
    case TASKSPAN_ATTR_DOUBLE:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->double_value = attr->value.d;
        return v;
    case TASKSPAN_ATTR_BOOL:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = attr->value.b != 0;
        return v;
    default:
        break;
    }
    size_t n = attr->value.array.count;
    ArrayValue *arr = taskspan__arena_alloc(a, sizeof *arr);
    AnyValue **items = taskspan__arena_alloc(a, (n ? n : 1) * sizeof *items);
    if (arr == NULL || items == NULL) {
        return NULL;
    }
    *arr = array_init;
    for (size_t i = 0; i < n; i++) {
        if ((items[i] = array_item(a, attr, i, max_len)) == NULL) {
            return NULL;
        }
    }
    arr->values = items;
    arr->n_values = n;
    v->value_case =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    v->array_value = arr;
    return v;
}

/* Convert attrs (at most max of them, the rest counted in *dropped). */
static KeyValue **key_values(taskspan__arena *a, const taskspan_attr *attrs,
                             size_t n, size_t max, size_t max_len,
                             size_t *out_n, uint32_t *dropped)
{
    static const KeyValue kv_init =
        OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    size_t keep = n < max ? n : max;
    KeyValue **kvs = taskspan__arena_alloc(a, (keep ? keep : 1) * sizeof *kvs);
    if (kvs == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < keep; i++) {
        KeyValue *kv = taskspan__arena_alloc(a, sizeof *kv);
        if (kv == NULL) {
            return NULL;
        }
        *kv = kv_init;
        kv->key = (char *)attrs[i].key;
        kv->value = attr_value(a, &attrs[i], max_len);
        if (kv->value == NULL) {
            return NULL;
        }
        kvs[i] = kv;
    }
    *out_n = keep;
    *dropped = (uint32_t)(n - keep);
    return kvs;
}

static bool fill_events(taskspan__arena *a, Span *out, const taskspan_span *s,
                        const taskspan__limits *lim)
{
    static const SpanEvent ev_init =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
    /* Like the SDKs, keep the first events and count the rest as dropped. */
    size_t keep = s->n_events < lim->span_events ? s->n_events
                                                 : lim->span_events;
    SpanEvent **evs = taskspan__arena_alloc(a,
                                            (keep ? keep : 1) * sizeof *evs);
    if (evs == NULL) {
        return false;
    }
    for (size_t i = 0; i < keep; i++) {
        const taskspan_span_event *e = &s->events[i];
        SpanEvent *ev = taskspan__arena_alloc(a, sizeof *ev);
        if (ev == NULL) {
            return false;
        }
        *ev = ev_init;
        ev->time_unix_nano = (uint64_t)e->time_ns;
        ev->name = (char *)e->name;
        ev->attributes = key_values(a, e->attrs, e->n_attrs, lim->event_attrs,
                                    lim->value_len, &ev->n_attributes,
                                    &ev->dropped_attributes_count);
        if (ev->attributes == NULL) {
            return false;
        }
        evs[i] = ev;
    }
    out->events = evs;
    out->n_events = keep;
    out->dropped_events_count = (uint32_t)(s->n_events - keep);
    return true;
}

static bool fill_links(taskspan__arena *a, Span *out, const taskspan_span *s,
                       const taskspan__limits *lim)
{
    static const SpanLink link_init =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
    size_t keep = s->n_links < lim->span_links ? s->n_links : lim->span_links;
    SpanLink **links = taskspan__arena_alloc(a, (keep ? keep : 1) *
                                                    sizeof *links);
    if (links == NULL) {
        return false;
    }
    for (size_t i = 0; i < keep; i++) {
        const taskspan_span_link *l = &s->links[i];
        SpanLink *out_l = taskspan__arena_alloc(a, sizeof *out_l);
        taskspan_attr reason = taskspan_attr_str("taskspan.link.reason",
                                                 l->reason ? l->reason : "");
        if (out_l == NULL) {
            return false;
        }
        *out_l = link_init;
        out_l->trace_id.data = (uint8_t *)l->trace_id;
        out_l->trace_id.len = 16;
        out_l->span_id.data = (uint8_t *)l->span_id;
        out_l->span_id.len = 8;
        out_l->flags = TASKSPAN__FLAG_SAMPLED | TASKSPAN__FLAG_HAS_IS_REMOTE;
        out_l->attributes = key_values(a, &reason, 1, lim->link_attrs,
                                       lim->value_len, &out_l->n_attributes,
                                       &out_l->dropped_attributes_count);
        if (out_l->attributes == NULL) {
            return false;
        }
        links[i] = out_l;
    }
    out->links = links;
    out->n_links = keep;
    out->dropped_links_count = (uint32_t)(s->n_links - keep);
    return true;
}

/* Pack a message into a malloc'd buffer. */
static taskspan_code pack(uint8_t **out, size_t *out_len,
                          const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    *out = buf;
    *out_len = n;
    return TASKSPAN_OK;
}

taskspan_code taskspan__encode_span_pbc(uint8_t **out, size_t *out_len,
                                        const taskspan_span *s,
                                        const taskspan__limits *lim)
{
    static const Span span_init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    static const Status status_init =
        OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    taskspan__arena a = {0};
    Span sp = span_init;
    Status st = status_init;
    taskspan_code rc = TASKSPAN_E_NOMEM;

    *out = NULL;
    *out_len = 0;
    sp.trace_id.data = (uint8_t *)s->trace_id;
    sp.trace_id.len = 16;
    sp.span_id.data = (uint8_t *)s->span_id;
    sp.span_id.len = 8;
    if (s->has_parent) {
        sp.parent_span_id.data = (uint8_t *)s->parent_span_id;
        sp.parent_span_id.len = 8;
    }
    /* A parent outside the result came from TRACEPARENT: a remote one. */
    sp.flags = TASKSPAN__FLAG_SAMPLED | TASKSPAN__FLAG_HAS_IS_REMOTE;
    if (s->has_parent && s->parent_index == (size_t)-1) {
        sp.flags |= TASKSPAN__FLAG_IS_REMOTE;
    }
    sp.name = (char *)s->name;
    sp.kind =
        OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL;
    sp.start_time_unix_nano = (uint64_t)s->start_ns;
    sp.end_time_unix_nano = (uint64_t)s->end_ns;
    sp.attributes = key_values(&a, s->attrs, s->n_attrs, lim->span_attrs,
                               lim->value_len, &sp.n_attributes,
                               &sp.dropped_attributes_count);
    if (sp.attributes == NULL || !fill_events(&a, &sp, s, lim) ||
        !fill_links(&a, &sp, s, lim)) {
        goto done;
    }
    st.code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
    if (s->status == TASKSPAN_STATUS_ERROR) {
        st.message = (char *)s->status_message;
    }
    sp.status = &st;
    rc = pack(out, out_len, &sp.base);
done:
    taskspan__arena_free(&a);
    return rc;
}

taskspan_code taskspan__encode_resource(uint8_t **out, size_t *out_len,
                                        const taskspan_attr *attrs,
                                        size_t n_attrs)
{
    static const Opentelemetry__Proto__Resource__V1__Resource res_init =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    Opentelemetry__Proto__Resource__V1__Resource res = res_init;
    taskspan__arena a = {0};
    taskspan_code rc = TASKSPAN_E_NOMEM;

    *out = NULL;
    *out_len = 0;
    res.attributes = key_values(&a, attrs, n_attrs, SIZE_MAX, SIZE_MAX,
                                &res.n_attributes,
                                &res.dropped_attributes_count);
    if (res.attributes != NULL) {
        rc = pack(out, out_len, &res.base);
    }
    taskspan__arena_free(&a);
    return rc;
}

/* ---- request framing ------------------------------------------------------
 * ExportTraceServiceRequest { 1: repeated ResourceSpans }
 * ResourceSpans { 1: Resource, 2: repeated ScopeSpans }
 * ScopeSpans    { 1: InstrumentationScope, 2: repeated Span }
 * Every field here is length-delimited (wire type 2): tag, varint length,
 * bytes. Tags: field 1 -> 0x0A, field 2 -> 0x12.
 */

/* Tag byte, length, then the bytes of one length-delimited field. */
static size_t field_len(size_t payload)
{
    return 1 + taskspan__varint_len(payload) + payload;
}

static uint8_t *put_field(uint8_t *p, uint8_t tag, const uint8_t *data,
                          size_t len)
{
    *p++ = tag;
    p = taskspan__put_varint(p, len);
    if (len > 0) {
        memcpy(p, data, len);
    }
    return p + len;
}

/* The instrumentation scope every span is sent under. */
static taskspan_code scope_bytes(uint8_t **out, size_t *out_len)
{
    static const Opentelemetry__Proto__Common__V1__InstrumentationScope init =
        OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope = init;
    scope.name = "taskspan";
    scope.version = (char *)taskspan_version();
    return pack(out, out_len, &scope.base);
}

static size_t scope_spans_len(const taskspan__resource_group *g,
                              size_t scope_len)
{
    size_t n = field_len(scope_len);
    for (size_t i = 0; i < g->n_spans; i++) {
        n += field_len(g->span_lens[i]);
    }
    return n;
}

taskspan_code taskspan__encode_request(uint8_t **out, size_t *out_len,
                                       const taskspan__resource_group *groups,
                                       size_t n_groups)
{
    uint8_t *scope = NULL, *buf, *p;
    size_t scope_len = 0, total = 0;
    taskspan_code rc = scope_bytes(&scope, &scope_len);

    *out = NULL;
    *out_len = 0;
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    for (size_t g = 0; g < n_groups; g++) {
        size_t ss = scope_spans_len(&groups[g], scope_len);
        size_t rs = field_len(groups[g].resource_len) + field_len(ss);
        total += field_len(rs);
    }
    buf = malloc(total ? total : 1);
    if (buf == NULL) {
        free(scope);
        return TASKSPAN_E_NOMEM;
    }
    p = buf;
    for (size_t g = 0; g < n_groups; g++) {
        const taskspan__resource_group *grp = &groups[g];
        size_t ss = scope_spans_len(grp, scope_len);
        size_t rs = field_len(grp->resource_len) + field_len(ss);
        *p++ = 0x0A; /* request.resource_spans */
        p = taskspan__put_varint(p, rs);
        p = put_field(p, 0x0A, grp->resource, grp->resource_len);
        *p++ = 0x12; /* resource_spans.scope_spans */
        p = taskspan__put_varint(p, ss);
        p = put_field(p, 0x0A, scope, scope_len);
        for (size_t i = 0; i < grp->n_spans; i++) {
            p = put_field(p, 0x12, grp->spans[i], grp->span_lens[i]);
        }
    }
    free(scope);
    *out = buf;
    *out_len = (size_t)(p - buf);
    return TASKSPAN_OK;
}

/* ---- responses ----------------------------------------------------------- */

static void copy_msg(char *dst, size_t n, const char *src)
{
    if (n == 0) {
        return;
    }
    size_t len = src != NULL ? taskspan__utf8_cut(src, n - 1) : 0;
    if (len > 0) {
        memcpy(dst, src, len);
    }
    dst[len] = '\0';
}

taskspan_code taskspan__decode_response(int64_t *rejected, char *msg,
                                        size_t msglen, const uint8_t *body,
                                        size_t len)
{
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *r;

    *rejected = 0;
    copy_msg(msg, msglen, "");
    if (len == 0) {
        return TASKSPAN_OK; /* the usual full success: an empty message */
    }
    r = response_unpack(NULL, len, body);
    if (r == NULL) {
        return TASKSPAN_E_ENCODE;
    }
    if (r->partial_success != NULL) {
        *rejected = r->partial_success->rejected_spans;
        copy_msg(msg, msglen, r->partial_success->error_message);
    }
    response_free_unpacked(r, NULL);
    return TASKSPAN_OK;
}

/* A RetryInfo detail's delay in ms, or -1. */
static int64_t retry_info_ms(const Google__Rpc__Any *any)
{
    static const char type[] = "type.googleapis.com/google.rpc.RetryInfo";
    int64_t ms = -1;
    if (any->type_url == NULL || strcmp(any->type_url, type) != 0) {
        return -1;
    }
    Google__Rpc__RetryInfo *ri = google__rpc__retry_info__unpack(
        NULL, any->value.len, any->value.data);
    if (ri != NULL && ri->retry_delay != NULL &&
        ri->retry_delay->seconds >= 0 && ri->retry_delay->seconds < 86400) {
        ms = ri->retry_delay->seconds * 1000 +
             ri->retry_delay->nanos / 1000000;
    }
    if (ri != NULL) {
        google__rpc__retry_info__free_unpacked(ri, NULL);
    }
    return ms;
}

taskspan_code taskspan__decode_status(char *msg, size_t msglen,
                                      int64_t *retry_ms, const uint8_t *body,
                                      size_t len)
{
    Google__Rpc__Status *st;

    *retry_ms = -1;
    copy_msg(msg, msglen, "");
    if (len == 0) {
        return TASKSPAN_OK;
    }
    st = google__rpc__status__unpack(NULL, len, body);
    if (st == NULL) {
        return TASKSPAN_E_ENCODE;
    }
    copy_msg(msg, msglen, st->message);
    for (size_t i = 0; i < st->n_details && *retry_ms < 0; i++) {
        *retry_ms = retry_info_ms(st->details[i]);
    }
    google__rpc__status__free_unpacked(st, NULL);
    return TASKSPAN_OK;
}
