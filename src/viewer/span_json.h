/*
 * span_json.h -- spans as the viewer's JSON API shows them (docs/viewer.md:
 * times as decimal strings of nanoseconds, ids as lowercase hex, attribute
 * values as plain JSON), from protobuf-c structs, with jansson.
 * Internal: taskspan__ names, no API promise. Every function returns a new
 * reference, or NULL when out of memory; any thread.
 */
#ifndef TASKSPAN_VIEWER_SPAN_JSON_H
#define TASKSPAN_VIEWER_SPAN_JSON_H

#include "receiver.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>

typedef Opentelemetry__Proto__Trace__V1__Span taskspan__pb_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue taskspan__pb_kv;
typedef Opentelemetry__Proto__Resource__V1__Resource taskspan__pb_resource;

/* A JSON string of s (NULL: ""); bytes that are not UTF-8 become U+FFFD,
 * since a span's strings are whatever the sender sent. */
json_t *taskspan__json_text(const char *s);

/* Lowercase hex of n bytes ("" for none). */
json_t *taskspan__json_hex(const uint8_t *b, size_t n);

/* The bytes as a standard, padded base64 JSON string (the proto3 JSON form
 * of a bytes field). NULL when out of memory. */
json_t *taskspan__json_base64(const uint8_t *b, size_t n);

/* A signed nanosecond count as a decimal string. */
json_t *taskspan__json_ns(int64_t ns);

/* [{"key","value"}...]: values as strings, booleans, numbers (doubles),
 * decimal strings (int64), arrays, objects (key-value lists) or base64
 * strings (bytes). */
json_t *taskspan__json_attrs(taskspan__pb_kv *const *kvs, size_t n);

/* service.name of res, or NULL. Borrowed from res. */
const char *taskspan__service_name(const taskspan__pb_resource *res);

/* One span of GET /api/traces/{id}; service may be NULL. A span is open
 * when open is set or its end time is 0. */
json_t *taskspan__json_span(const taskspan__pb_span *sp, const char *service,
                            bool open);

/* A stored span (store.h) as taskspan__json_span renders it, its service
 * from its resource. NULL when out of memory or the blob does not
 * unpack (the store only holds what the receiver decoded). */
json_t *taskspan__json_stored_span(const taskspan__stored_span *s);

#endif
