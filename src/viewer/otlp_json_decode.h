/*
 * otlp_json_decode.h -- an OTLP/JSON ExportTraceServiceRequest (the OTLP
 * spec's JSON mapping of the protobuf messages) into the same protobuf-c
 * structs the binary decoder produces, so everything after decoding is
 * shared. Internal: taskspan__ names, no API promise.
 */
#ifndef TASKSPAN_VIEWER_OTLP_JSON_DECODE_H
#define TASKSPAN_VIEWER_OTLP_JSON_DECODE_H

#include "receiver.h"

#include <protobuf-c/protobuf-c.h>

#include <stddef.h>
#include <stdint.h>

/* The deepest message nesting accepted (the binary decoder's limit). */
#define TASKSPAN__OTLP_JSON_MAX_DEPTH 100

/*
 * Decode body (len bytes of UTF-8 JSON). Every struct and string of the
 * result comes from alloc (an arena: nothing is freed one by one).
 * OUT: *out on 200.
 * Returns 200; 400 with msg (msg_size bytes) saying what is wrong for
 * JSON that does not parse or does not fit the schema (an id that is not
 * hex, a string where a number belongs, nesting past the limit); 0 when
 * alloc returned NULL (the caller knows whether that was its budget).
 * Field names are accepted in lowerCamelCase and in the proto's
 * snake_case; unknown fields are ignored, as the OTLP spec requires.
 * Thread-safety: any thread; no shared state.
 */
unsigned taskspan__otlp_json_decode(taskspan__export_request **out,
                                    ProtobufCAllocator *alloc,
                                    const uint8_t *body, size_t len, char *msg,
                                    size_t msg_size);

#endif
