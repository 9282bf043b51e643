/*
 * otlp_json_encode.h -- any message of the OTLP protos as OTLP/JSON (the
 * mapping otlp_json_decode.c reads): lowerCamelCase names, hex trace and
 * span ids, 64-bit integers as decimal strings, enums as integers, bytes
 * as base64, default values left out. Internal: taskspan__ names.
 */
#ifndef TASKSPAN_VIEWER_OTLP_JSON_ENCODE_H
#define TASKSPAN_VIEWER_OTLP_JSON_ENCODE_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* A new reference, or NULL when out of memory. Any thread. */
json_t *taskspan__otlp_json_encode(const ProtobufCMessage *m);

#endif
