/*
 * span_json.c -- the viewer API's JSON for one span (see span_json.h).
 */
#include "span_json.h"

#include "lib/encode_otlp.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ANY_VALUE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__##x
/* Values nest (arrays of arrays); past this depth they show as null. */
#define MAX_VALUE_DEPTH 32

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

json_t *taskspan__json_text(const char *s)
{
    return s == NULL ? json_string("") : taskspan__json_lossy(s, strlen(s));
}

json_t *taskspan__json_hex(const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char buf[2 * 32 + 1];

    if (n > 32) {
        n = 32; /* ids are 8 or 16 bytes; the receiver checked them */
    }
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = digits[b[i] >> 4];
        buf[2 * i + 1] = digits[b[i] & 15];
    }
    buf[2 * n] = '\0';
    return json_string(buf);
}

json_t *taskspan__json_ns(int64_t ns)
{
    char buf[24];

    snprintf(buf, sizeof buf, "%" PRId64, ns);
    return json_string(buf);
}

static int64_t clamp_ns(uint64_t ns)
{
    return ns > INT64_MAX ? INT64_MAX : (int64_t)ns;
}

json_t *taskspan__json_base64(const uint8_t *b, size_t n)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1);
    size_t k = 0;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        v |= i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0;
        v |= i + 2 < n ? b[i + 2] : 0;
        out[k++] = abc[v >> 18 & 63];
        out[k++] = abc[v >> 12 & 63];
        out[k++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[k] = '\0';
    json_t *j = json_string(out);
    free(out);
    return j;
}

static json_t *value(const pb_any *v, unsigned depth)
{
    if (v == NULL || depth > MAX_VALUE_DEPTH) {
        return json_null();
    }
    switch (v->value_case) {
    case ANY_VALUE(VALUE_STRING_VALUE):
        return taskspan__json_text(v->string_value);
    case ANY_VALUE(VALUE_BOOL_VALUE):
        return json_boolean(v->bool_value);
    case ANY_VALUE(VALUE_INT_VALUE):
        return taskspan__json_ns(v->int_value);
    case ANY_VALUE(VALUE_DOUBLE_VALUE):
        if (isnan(v->double_value)) {
            return json_string("NaN");
        }
        if (isinf(v->double_value)) {
            return json_string(v->double_value > 0 ? "Infinity" : "-Infinity");
        }
        return json_real(v->double_value);
    case ANY_VALUE(VALUE_BYTES_VALUE):
        return taskspan__json_base64(v->bytes_value.data, v->bytes_value.len);
    case ANY_VALUE(VALUE_ARRAY_VALUE): {
        json_t *a = json_array();
        for (size_t i = 0; a != NULL && v->array_value != NULL &&
                           i < v->array_value->n_values;
             i++) {
            if (json_array_append_new(
                    a, value(v->array_value->values[i], depth + 1)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case ANY_VALUE(VALUE_KVLIST_VALUE): {
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && v->kvlist_value != NULL &&
                           i < v->kvlist_value->n_values;
             i++) {
            const taskspan__pb_kv *kv = v->kvlist_value->values[i];
            json_t *key = taskspan__json_text(kv->key);
            if (key == NULL ||
                json_object_set_new(o, json_string_value(key),
                                    value(kv->value, depth + 1)) != 0) {
                json_decref(key);
                json_decref(o);
                return NULL;
            }
            json_decref(key);
        }
        return o;
    }
    default:
        return json_null();
    }
}

json_t *taskspan__json_attrs(taskspan__pb_kv *const *kvs, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++) {
        json_t *kv = json_object();
        if (kv == NULL ||
            json_object_set_new(kv, "key", taskspan__json_text(kvs[i]->key)) !=
                0 ||
            json_object_set_new(kv, "value", value(kvs[i]->value, 0)) != 0 ||
            json_array_append_new(a, kv) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

const char *taskspan__service_name(const taskspan__pb_resource *res)
{
    if (res == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < res->n_attributes; i++) {
        const taskspan__pb_kv *kv = res->attributes[i];
        if (strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
            kv->value->value_case == ANY_VALUE(VALUE_STRING_VALUE)) {
            return kv->value->string_value;
        }
    }
    return NULL;
}

static json_t *events(const taskspan__pb_span *sp)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < sp->n_events; i++) {
        const Opentelemetry__Proto__Trace__V1__Span__Event *e = sp->events[i];
        json_t *o = json_pack(
            "{s:o, s:o, s:o}", "name", taskspan__json_text(e->name), "time_ns",
            taskspan__json_ns(clamp_ns(e->time_unix_nano)), "attributes",
            taskspan__json_attrs(e->attributes, e->n_attributes));
        if (o == NULL || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *links(const taskspan__pb_span *sp)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < sp->n_links; i++) {
        const Opentelemetry__Proto__Trace__V1__Span__Link *l = sp->links[i];
        json_t *o = json_pack(
            "{s:o, s:o, s:o}", "trace_id",
            taskspan__json_hex(l->trace_id.data, l->trace_id.len), "span_id",
            taskspan__json_hex(l->span_id.data, l->span_id.len), "attributes",
            taskspan__json_attrs(l->attributes, l->n_attributes));
        if (o == NULL || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *taskspan__json_span(const taskspan__pb_span *sp, const char *service,
                            bool open)
{
    open = open || sp->end_time_unix_nano == 0;
    json_t *status = json_pack(
        "{s:i, s:o}", "code", sp->status != NULL ? (int)sp->status->code : 0,
        "message",
        taskspan__json_text(sp->status != NULL ? sp->status->message : ""));

    /* json_pack's "o" steals even on failure, so a NULL part fails the
     * whole object without leaking the others. */
    return json_pack(
        "{s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o}",
        "span_id", taskspan__json_hex(sp->span_id.data, sp->span_id.len),
        "parent_span_id",
        taskspan__json_hex(sp->parent_span_id.data, sp->parent_span_id.len),
        "name", taskspan__json_text(sp->name), "kind", (int)sp->kind,
        "service", taskspan__json_text(service), "start_ns",
        taskspan__json_ns(clamp_ns(sp->start_time_unix_nano)), "end_ns",
        open ? json_string("")
             : taskspan__json_ns(clamp_ns(sp->end_time_unix_nano)),
        "open", open, "status", status, "attributes",
        taskspan__json_attrs(sp->attributes, sp->n_attributes), "events",
        events(sp), "links", links(sp));
}

json_t *taskspan__json_stored_span(const taskspan__stored_span *s)
{
    taskspan__pb_span *sp = opentelemetry__proto__trace__v1__span__unpack(
        NULL, s->span_len, s->span);
    taskspan__pb_resource *res =
        s->resource_len > 0
            ? opentelemetry__proto__resource__v1__resource__unpack(
                  NULL, s->resource_len, s->resource)
            : NULL;
    json_t *j = sp != NULL ? taskspan__json_span(
                                 sp, taskspan__service_name(res), false)
                           : NULL;

    if (sp != NULL) {
        opentelemetry__proto__trace__v1__span__free_unpacked(sp, NULL);
    }
    if (res != NULL) {
        opentelemetry__proto__resource__v1__resource__free_unpacked(res, NULL);
    }
    return j;
}
