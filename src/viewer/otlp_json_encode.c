/*
 * otlp_json_encode.c -- protobuf-c messages as OTLP/JSON, driven by the
 * generated descriptors like its twin otlp_json_decode.c. Messages come
 * from the store, which only holds what passed the receiver's nesting
 * check, so the recursion is bounded by that check.
 */
#include "otlp_json_encode.h"

#include "span_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_hex_id(const ProtobufCFieldDescriptor *f)
{
    return strcmp(f->name, "trace_id") == 0 ||
           strcmp(f->name, "span_id") == 0 ||
           strcmp(f->name, "parent_span_id") == 0;
}

/* "time_unix_nano" -> "timeUnixNano" */
static void camel(char *out, size_t size, const char *name)
{
    size_t k = 0;

    for (const char *p = name; *p != '\0' && k + 1 < size; p++) {
        if (*p == '_' && p[1] >= 'a' && p[1] <= 'z') {
            p++;
            out[k++] = (char)(*p - 'a' + 'A');
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
}

static json_t *decimal(bool is_signed, uint64_t v)
{
    char buf[24];

    if (is_signed) {
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)v);
    } else {
        snprintf(buf, sizeof buf, "%" PRIu64, v);
    }
    return json_string(buf);
}

static json_t *real(double d)
{
    if (isnan(d)) {
        return json_string("NaN");
    }
    if (isinf(d)) {
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    }
    return json_real(d);
}

/* One value at p; *is_default tells a proto3 default (left out). */
static json_t *encode_value(const ProtobufCFieldDescriptor *f, const void *p,
                            bool *is_default)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        *is_default = *(const int32_t *)p == 0;
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *is_default = *(const uint32_t *)p == 0;
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *is_default = *(const int64_t *)p == 0;
        return decimal(true, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *is_default = *(const uint64_t *)p == 0;
        return decimal(false, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        *is_default = *(const float *)p == 0;
        return real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        *is_default = *(const double *)p == 0;
        return real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        *is_default = !*(const protobuf_c_boolean *)p;
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        *is_default = s == NULL || s[0] == '\0';
        return taskspan__json_text(s);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        *is_default = b->len == 0;
        return is_hex_id(f) ? taskspan__json_hex(b->data, b->len)
                            : taskspan__json_base64(b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
    default: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        *is_default = m == NULL;
        return m != NULL ? taskspan__otlp_json_encode(m) : json_null();
    }
    }
}

static size_t element_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

json_t *taskspan__otlp_json_encode(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const uint8_t *base = (const uint8_t *)m;
    json_t *obj = json_object();
    char name[64];

    for (unsigned i = 0; obj != NULL && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v = NULL;
        bool is_default = false;
        camel(name, sizeof name, f->name);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const uint8_t *items = *(uint8_t *const *)(base + f->offset);
            if (n == 0) {
                continue;
            }
            v = json_array();
            for (size_t k = 0; v != NULL && k < n; k++) {
                bool dflt;
                if (json_array_append_new(
                        v, encode_value(f, items + k * element_size(f->type),
                                        &dflt)) != 0) {
                    json_decref(v);
                    v = NULL;
                }
            }
        } else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) {
                continue;
            }
            /* A oneof member is sent even with its default value. */
            v = encode_value(f, base + f->offset, &is_default);
        } else {
            v = encode_value(f, base + f->offset, &is_default);
            if (v != NULL && is_default) {
                json_decref(v);
                continue;
            }
        }
        if (v == NULL || json_object_set_new(obj, name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}
