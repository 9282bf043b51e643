/*
 * encode_otlp_json.c -- spans to OTLP JSON (jansson).
 *
 * The JSON twin of encode_otlp.c, field for field: the same limits, the same
 * flags, kind INTERNAL, the link reason as attribute taskspan.link.reason.
 * OTLP JSON rules: lowerCamelCase field names, trace and span ids as
 * lowercase hex, 64-bit integers (times, intValue) as decimal strings,
 * enums as integers, default values omitted. Every string is untrusted:
 * jansson escapes it, and bytes that are not valid UTF-8 become U+FFFD.
 */
#include "encode_otlp.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return len;
}

json_t *taskspan__json_lossy(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j != NULL) {
        return j;
    }
    char *buf = malloc(n * 3 + 1);
    size_t k = 0;
    if (buf == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len == 0 || (len == 1 && s[i] == '\0')) {
            memcpy(buf + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        } else {
            memcpy(buf + k, s + i, len);
            k += len;
            i += len;
        }
    }
    j = json_stringn(buf, k);
    free(buf);
    return j;
}

static json_t *str(const char *s)
{
    return taskspan__json_lossy(s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static json_t *hex(const uint8_t *b, size_t n)
{
    char buf[33];
    for (size_t i = 0; i < n && i < 16; i++) {
        snprintf(buf + 2 * i, 3, "%02x", b[i]);
    }
    return json_stringn(buf, 2 * n);
}

static json_t *int64_str(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return json_string(buf);
}

static json_t *uint64_str(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return json_string(buf);
}

/* Set obj[key] = v, taking v; false when v is NULL or the set fails. */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(obj, key, v) == 0;
}

static bool push(json_t *arr, json_t *v)
{
    return v != NULL && json_array_append_new(arr, v) == 0;
}

/* {"<kind>": v}, an AnyValue. */
static json_t *any_value(const char *kind, json_t *v)
{
    json_t *o = json_object();
    if (o == NULL || !put(o, kind, v)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *limited_str(const char *s, size_t max)
{
    return any_value("stringValue",
                     taskspan__json_lossy(s, taskspan__utf8_cut(s, max)));
}

static json_t *array_item(const taskspan_attr *attr, size_t i, size_t max)
{
    const void *items = attr->value.array.items;
    switch (attr->type) {
    case TASKSPAN_ATTR_STRING_ARRAY:
        return limited_str(((const char *const *)items)[i], max);
    case TASKSPAN_ATTR_INT_ARRAY:
        return any_value("intValue", int64_str(((const int64_t *)items)[i]));
    case TASKSPAN_ATTR_DOUBLE_ARRAY:
        return any_value("doubleValue", json_real(((const double *)items)[i]));
    default:
        return any_value("boolValue",
                         json_boolean(((const int *)items)[i] != 0));
    }
}

static json_t *attr_value(const taskspan_attr *attr, size_t max)
{
    switch (attr->type) {
    case TASKSPAN_ATTR_STRING:
        return limited_str(attr->value.s, max);
    case TASKSPAN_ATTR_INT:
        return any_value("intValue", int64_str(attr->value.i));
    case TASKSPAN_ATTR_DOUBLE:
        return any_value("doubleValue", json_real(attr->value.d));
    case TASKSPAN_ATTR_BOOL:
        return any_value("boolValue", json_boolean(attr->value.b != 0));
    default:
        break;
    }
    json_t *values = json_array();
    for (size_t i = 0; values != NULL && i < attr->value.array.count; i++) {
        if (!push(values, array_item(attr, i, max))) {
            json_decref(values);
            return NULL;
        }
    }
    json_t *arr = json_object();
    if (arr == NULL || !put(arr, "values", values)) {
        json_decref(arr);
        return NULL;
    }
    return any_value("arrayValue", arr);
}

/* obj.attributes = the first max of attrs, and droppedAttributesCount
 * when some did not fit. */
static bool put_attrs(json_t *obj, const taskspan_attr *attrs, size_t n,
                      size_t max, size_t max_len)
{
    size_t keep = n < max ? n : max;
    json_t *arr = json_array();
    if (!put(obj, "attributes", arr)) {
        return false;
    }
    for (size_t i = 0; i < keep; i++) {
        json_t *kv = json_object();
        if (!push(arr, kv) || !put(kv, "key", str(attrs[i].key)) ||
            !put(kv, "value", attr_value(&attrs[i], max_len))) {
            return false;
        }
    }
    if (n > keep && !put(obj, "droppedAttributesCount",
                         json_integer((json_int_t)(n - keep)))) {
        return false;
    }
    return true;
}

static bool put_events(json_t *sp, const taskspan_span *s,
                       const taskspan__limits *lim)
{
    size_t keep = s->n_events < lim->span_events ? s->n_events
                                                 : lim->span_events;
    json_t *arr = json_array();
    if (!put(sp, "events", arr)) {
        return false;
    }
    for (size_t i = 0; i < keep; i++) {
        const taskspan_span_event *e = &s->events[i];
        json_t *ev = json_object();
        if (!push(arr, ev) ||
            !put(ev, "timeUnixNano", uint64_str((uint64_t)e->time_ns)) ||
            !put(ev, "name", str(e->name)) ||
            !put_attrs(ev, e->attrs, e->n_attrs, lim->event_attrs,
                       lim->value_len)) {
            return false;
        }
    }
    if (s->n_events > keep &&
        !put(sp, "droppedEventsCount",
             json_integer((json_int_t)(s->n_events - keep)))) {
        return false;
    }
    return true;
}

static bool put_links(json_t *sp, const taskspan_span *s,
                      const taskspan__limits *lim)
{
    size_t keep = s->n_links < lim->span_links ? s->n_links : lim->span_links;
    json_t *arr = json_array();
    if (!put(sp, "links", arr)) {
        return false;
    }
    for (size_t i = 0; i < keep; i++) {
        const taskspan_span_link *l = &s->links[i];
        taskspan_attr reason = taskspan_attr_str("taskspan.link.reason",
                                                 l->reason ? l->reason : "");
        json_t *lj = json_object();
        if (!push(arr, lj) || !put(lj, "traceId", hex(l->trace_id, 16)) ||
            !put(lj, "spanId", hex(l->span_id, 8)) ||
            !put_attrs(lj, &reason, 1, lim->link_attrs, lim->value_len) ||
            !put(lj, "flags",
                 json_integer(TASKSPAN__FLAG_SAMPLED |
                              TASKSPAN__FLAG_HAS_IS_REMOTE))) {
            return false;
        }
    }
    if (s->n_links > keep &&
        !put(sp, "droppedLinksCount",
             json_integer((json_int_t)(s->n_links - keep)))) {
        return false;
    }
    return true;
}

static json_t *span_json(const taskspan_span *s, const taskspan__limits *lim)
{
    json_t *sp = json_object();
    json_t *st = json_object();
    unsigned flags = TASKSPAN__FLAG_SAMPLED | TASKSPAN__FLAG_HAS_IS_REMOTE;
    bool ok;

    if (s->has_parent && s->parent_index == (size_t)-1) {
        flags |= TASKSPAN__FLAG_IS_REMOTE;
    }
    ok = sp != NULL && st != NULL &&
         put(sp, "traceId", hex(s->trace_id, 16)) &&
         put(sp, "spanId", hex(s->span_id, 8));
    if (ok && s->has_parent) {
        ok = put(sp, "parentSpanId", hex(s->parent_span_id, 8));
    }
    ok = ok && put(sp, "flags", json_integer(flags)) &&
         put(sp, "name", str(s->name)) &&
         put(sp, "kind", json_integer(1)) && /* SPAN_KIND_INTERNAL */
         put(sp, "startTimeUnixNano", uint64_str((uint64_t)s->start_ns)) &&
         put(sp, "endTimeUnixNano", uint64_str((uint64_t)s->end_ns)) &&
         put_attrs(sp, s->attrs, s->n_attrs, lim->span_attrs,
                   lim->value_len) &&
         put_events(sp, s, lim) && put_links(sp, s, lim);
    if (ok && s->status != TASKSPAN_STATUS_UNSET) {
        ok = put(st, "code", json_integer((json_int_t)s->status));
    }
    if (ok && s->status == TASKSPAN_STATUS_ERROR && s->status_message &&
        s->status_message[0] != '\0') {
        ok = put(st, "message", str(s->status_message));
    }
    if (ok) {
        ok = put(sp, "status", st);
        st = NULL;
    }
    json_decref(st);
    if (!ok) {
        json_decref(sp);
        return NULL;
    }
    return sp;
}

/* One ResourceSpans object for group g. Each put/push takes its value,
 * which stays reachable (borrowed) through its parent afterwards. */
static json_t *resource_spans(const taskspan__span_group *g,
                              const taskspan__limits *lim)
{
    json_t *rs = json_object(), *res, *sss, *ss, *scope, *spans;

    if (rs == NULL) {
        return NULL;
    }
    if (!put(rs, "resource", res = json_object()) ||
        !put_attrs(res, g->resource, g->n_resource, SIZE_MAX, SIZE_MAX) ||
        !put(rs, "scopeSpans", sss = json_array()) ||
        !push(sss, ss = json_object()) ||
        !put(ss, "scope", scope = json_object()) ||
        !put(scope, "name", json_string("taskspan")) ||
        !put(scope, "version", json_string(taskspan_version())) ||
        !put(ss, "spans", spans = json_array())) {
        goto fail;
    }
    for (size_t i = 0; i < g->n_spans; i++) {
        if (!push(spans, span_json(g->spans[i], lim))) {
            goto fail;
        }
    }
    return rs;
fail:
    json_decref(rs);
    return NULL;
}

taskspan_code taskspan__encode_json_request(char **out, size_t *out_len,
                                            const taskspan__span_group *groups,
                                            size_t n_groups,
                                            const taskspan__limits *lim)
{
    json_t *root = json_object(), *arr;
    taskspan_code rc = TASKSPAN_E_NOMEM;
    char *buf = NULL;

    *out = NULL;
    *out_len = 0;
    if (root == NULL || !put(root, "resourceSpans", arr = json_array())) {
        goto done;
    }
    for (size_t g = 0; g < n_groups; g++) {
        if (!push(arr, resource_spans(&groups[g], lim))) {
            goto done;
        }
    }
    /* Dump into our own malloc'd buffer: the caller frees it with free(),
     * whatever allocator jansson was configured with. */
    size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (n == 0) {
        rc = TASKSPAN_E_ENCODE;
        goto done;
    }
    buf = malloc(n + 1);
    if (buf == NULL) {
        goto done;
    }
    if (json_dumpb(root, buf, n, JSON_COMPACT) != n) {
        free(buf);
        rc = TASKSPAN_E_ENCODE;
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    rc = TASKSPAN_OK;
done:
    json_decref(root);
    return rc;
}
