/*
 * otlp_json_decode.c -- OTLP/JSON into protobuf-c structs, driven by the
 * generated message descriptors rather than hand-written per message: one
 * walk handles every message of the trace protos, and a field the protos
 * gain later decodes without a change here.
 *
 * The OTLP JSON mapping differs from the plain proto3 one in the places
 * handled below: trace_id, span_id and parent_span_id are hex, not base64;
 * field names are lowerCamelCase (snake_case is accepted too, as proto3
 * JSON parsers do); 64-bit integers come as decimal strings or numbers;
 * enums as integers (their names are accepted too). Unknown fields are
 * ignored (OTLP: receivers MUST ignore them); null means "not set".
 *
 * Every byte is untrusted. jansson's parser stops at 2048 levels; the
 * walk here stops at TASKSPAN__OTLP_JSON_MAX_DEPTH messages, the binary
 * decoder's limit, so no body recurses deeper than that in our code.
 */
#include "otlp_json_decode.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK 200u
#define BAD 400u
#define NOMEM 0u
/* The generated names run past 80 columns; this pastes them together. */
#define COLLECTOR(name) opentelemetry__proto__collector__trace__v1__##name

typedef struct decoder {
    ProtobufCAllocator *alloc;
    char *msg;
    size_t msg_size;
} decoder;

static unsigned bad(decoder *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static unsigned bad(decoder *d, const char *fmt, ...)
{
    va_list ap;

    if (d->msg != NULL && d->msg_size > 0) {
        va_start(ap, fmt);
        vsnprintf(d->msg, d->msg_size, fmt, ap);
        va_end(ap);
    }
    return BAD;
}

static void *alloc(decoder *d, size_t n)
{
    return d->alloc->alloc(d->alloc->allocator_data, n > 0 ? n : 1);
}

/* ---- field names ------------------------------------------------------- */

/* Whether a JSON key names the proto field: the proto name itself, or its
 * lowerCamelCase form ("time_unix_nano" as "timeUnixNano"). */
static bool key_matches(const char *key, const char *field)
{
    const char *k = key;

    if (strcmp(key, field) == 0) {
        return true;
    }
    for (const char *f = field; *f != '\0'; f++, k++) {
        if (*f == '_' && f[1] >= 'a' && f[1] <= 'z') {
            f++;
            if (*k != *f - 'a' + 'A') {
                return false;
            }
        } else if (*k != *f) {
            return false;
        }
    }
    return *k == '\0';
}

/* OTLP's exception to proto3 JSON: these bytes fields are hex. */
static bool is_hex_id(const ProtobufCFieldDescriptor *f)
{
    return strcmp(f->name, "trace_id") == 0 ||
           strcmp(f->name, "span_id") == 0 ||
           strcmp(f->name, "parent_span_id") == 0;
}

/* ---- scalars ----------------------------------------------------------- */

/* A signed 64-bit integer: a JSON integer, an integral number, or a
 * decimal string. */
static bool json_i64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != floor(x) || x < -9223372036854775808.0 ||
            x >= 9223372036854775808.0) {
            return false;
        }
        *out = (int64_t)x;
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        if (s[0] == '\0' || (s[0] != '-' && (s[0] < '0' || s[0] > '9'))) {
            return false;
        }
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0') {
            return false;
        }
        *out = (int64_t)x;
        return true;
    }
    return false;
}

/* An unsigned 64-bit integer, the same three ways, never negative. */
static bool json_u64(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return false;
        }
        *out = (uint64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != floor(x) || x < 0 || x >= 18446744073709551616.0) {
            return false;
        }
        *out = (uint64_t)x;
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        if (s[0] < '0' || s[0] > '9') {
            return false;
        }
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0') {
            return false;
        }
        *out = (uint64_t)x;
        return true;
    }
    return false;
}

/* A double: a number, or "NaN", "Infinity", "-Infinity" or a decimal
 * string, as proto3 JSON allows. */
static bool json_f64(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (!json_is_string(v)) {
        return false;
    }
    const char *s = json_string_value(v);
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
    } else if (strcmp(s, "Infinity") == 0) {
        *out = INFINITY;
    } else if (strcmp(s, "-Infinity") == 0) {
        *out = -INFINITY;
    } else {
        char *end = NULL;
        if (s[0] == '\0') {
            return false;
        }
        *out = strtod(s, &end);
        return *end == '\0' && isfinite(*out);
    }
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static unsigned decode_hex(decoder *d, const char *s, size_t n,
                           ProtobufCBinaryData *out, const char *name)
{
    if (n % 2 != 0) {
        return bad(d, "%s is not hex: odd length %zu", name, n);
    }
    out->len = n / 2;
    out->data = alloc(d, out->len);
    if (out->data == NULL) {
        return NOMEM;
    }
    for (size_t i = 0; i < out->len; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return bad(d, "%s is not hex", name);
        }
        out->data[i] = (uint8_t)(hi << 4 | lo);
    }
    return OK;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

/* Standard or URL-safe base64, padding optional (proto3 JSON). */
static unsigned decode_base64(decoder *d, const char *s, size_t n,
                              ProtobufCBinaryData *out, const char *name)
{
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    if (n % 4 == 1) {
        return bad(d, "%s is not base64", name);
    }
    out->len = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    out->data = alloc(d, out->len);
    if (out->data == NULL) {
        return NOMEM;
    }
    uint32_t acc = 0;
    size_t bits = 0, o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0) {
            return bad(d, "%s is not base64", name);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[o++] = (uint8_t)(acc >> bits);
        }
    }
    return OK;
}

/* ---- values of one field ------------------------------------------------ */

static unsigned decode_message(decoder *d, ProtobufCMessage **out,
                               const ProtobufCMessageDescriptor *desc,
                               const json_t *obj, unsigned depth);

/* The bytes one element of a field takes in its struct or array. */
static size_t element_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return sizeof(int32_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
    default:
        return sizeof(ProtobufCMessage *);
    }
}

static unsigned decode_int(decoder *d, const ProtobufCFieldDescriptor *f,
                           const json_t *v, void *dst)
{
    int64_t i = 0;
    uint64_t u = 0;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (!json_i64(v, &i) || i < INT32_MIN || i > INT32_MAX) {
            break;
        }
        *(int32_t *)dst = (int32_t)i;
        return OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!json_u64(v, &u) || u > UINT32_MAX) {
            break;
        }
        *(uint32_t *)dst = (uint32_t)u;
        return OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!json_i64(v, &i)) {
            break;
        }
        *(int64_t *)dst = i;
        return OK;
    default: /* the unsigned 64-bit types */
        if (!json_u64(v, &u)) {
            break;
        }
        *(uint64_t *)dst = u;
        return OK;
    }
    return bad(d, "%s is not an integer in range", f->name);
}

static unsigned decode_enum(decoder *d, const ProtobufCFieldDescriptor *f,
                            const json_t *v, int *dst)
{
    int64_t i = 0;

    if (json_is_string(v)) {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value_by_name(f->descriptor,
                                                         json_string_value(v));
        if (ev == NULL) {
            return bad(d, "%s: unknown enum value \"%s\"", f->name,
                       json_string_value(v));
        }
        *dst = ev->value;
        return OK;
    }
    /* Unknown numbers are kept, as proto3 keeps open enums. */
    if (!json_i64(v, &i) || i < INT32_MIN || i > INT32_MAX) {
        return bad(d, "%s is not an enum number", f->name);
    }
    *dst = (int)i;
    return OK;
}

/* One value of field f (one element if repeated) into dst. */
static unsigned decode_value(decoder *d, const ProtobufCFieldDescriptor *f,
                             const json_t *v, void *dst, unsigned depth)
{
    double x = 0;

    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) {
            return bad(d, "%s is not a boolean", f->name);
        }
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return OK;
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FLOAT:
        if (!json_f64(v, &x)) {
            return bad(d, "%s is not a number", f->name);
        }
        if (f->type == PROTOBUF_C_TYPE_FLOAT) {
            *(float *)dst = (float)x;
        } else {
            *(double *)dst = x;
        }
        return OK;
    case PROTOBUF_C_TYPE_ENUM:
        return decode_enum(d, f, v, dst);
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v)) {
            return bad(d, "%s is not a string", f->name);
        }
        size_t n = json_string_length(v);
        char *s = alloc(d, n + 1);
        if (s == NULL) {
            return NOMEM;
        }
        memcpy(s, json_string_value(v), n + 1);
        *(char **)dst = s;
        return OK;
    }
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string(v)) {
            return bad(d, "%s is not a string", f->name);
        }
        return is_hex_id(f)
                   ? decode_hex(d, json_string_value(v), json_string_length(v),
                                dst, f->name)
                   : decode_base64(d, json_string_value(v),
                                   json_string_length(v), dst, f->name);
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!json_is_object(v)) {
            return bad(d, "%s is not an object", f->name);
        }
        return decode_message(d, dst, f->descriptor, v, depth + 1);
    default:
        return decode_int(d, f, v, dst);
    }
}

static unsigned decode_repeated(decoder *d, const ProtobufCFieldDescriptor *f,
                                const json_t *v, void *msg, unsigned depth)
{
    if (!json_is_array(v)) {
        return bad(d, "%s is not an array", f->name);
    }
    size_t n = json_array_size(v), size = element_size(f->type);
    uint8_t *items = alloc(d, n * size);
    if (items == NULL) {
        return NOMEM;
    }
    memset(items, 0, n * size);
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(v, i);
        if (json_is_null(item)) {
            return bad(d, "%s[%zu] is null", f->name, i);
        }
        unsigned st = decode_value(d, f, item, items + i * size, depth);
        if (st != OK) {
            return st;
        }
    }
    *(size_t *)((uint8_t *)msg + f->quantifier_offset) = n;
    *(void **)((uint8_t *)msg + f->offset) = items;
    return OK;
}

static unsigned decode_field(decoder *d, const ProtobufCFieldDescriptor *f,
                             const json_t *v, ProtobufCMessage *msg,
                             unsigned depth)
{
    if (json_is_null(v)) {
        return OK; /* proto3 JSON: null is the default value */
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        return decode_repeated(d, f, v, msg, depth);
    }
    unsigned st = decode_value(d, f, v, (uint8_t *)msg + f->offset, depth);
    if (st != OK) {
        return st;
    }
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
        *(uint32_t *)((uint8_t *)msg + f->quantifier_offset) = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
               f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING) {
        *(protobuf_c_boolean *)((uint8_t *)msg + f->quantifier_offset) = 1;
    }
    return OK;
}

static unsigned decode_message(decoder *d, ProtobufCMessage **out,
                               const ProtobufCMessageDescriptor *desc,
                               const json_t *obj, unsigned depth)
{
    const char *key;
    json_t *v;

    if (depth > TASKSPAN__OTLP_JSON_MAX_DEPTH) {
        return bad(d, "messages nest more than %d levels",
                   TASKSPAN__OTLP_JSON_MAX_DEPTH);
    }
    ProtobufCMessage *msg = alloc(d, desc->sizeof_message);
    if (msg == NULL) {
        return NOMEM;
    }
    desc->message_init(msg);
    json_object_foreach ((json_t *)(uintptr_t)obj, key, v) {
        for (unsigned i = 0; i < desc->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &desc->fields[i];
            if (!key_matches(key, f->name)) {
                continue;
            }
            unsigned st = decode_field(d, f, v, msg, depth);
            if (st != OK) {
                return st;
            }
            break;
        }
    }
    *out = msg;
    return OK;
}

unsigned taskspan__otlp_json_decode(taskspan__export_request **out,
                                    ProtobufCAllocator *alloc,
                                    const uint8_t *body, size_t len, char *msg,
                                    size_t msg_size)
{
    decoder d = {.alloc = alloc, .msg = msg, .msg_size = msg_size};
    json_error_t err;
    ProtobufCMessage *m = NULL;

    *out = NULL;
    json_t *root = json_loadb((const char *)body, len, 0, &err);
    if (root == NULL) {
        return bad(&d, "body is not JSON: %s (line %d, column %d)", err.text,
                   err.line, err.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return bad(&d, "body is not a JSON object");
    }
    unsigned st = decode_message(
        &d, &m, &COLLECTOR(export_trace_service_request__descriptor), root, 1);
    json_decref(root);
    if (st == OK) {
        *out = (taskspan__export_request *)m;
    }
    return st;
}
