/*
 * event_wire.h -- each event's payload as OTLP attributes, kept in the
 * buffer beside the event (schema 9), made when it is stored: see
 * event_wire.c.
 */
#ifndef TASKSPAN_EVENT_WIRE_H
#define TASKSPAN_EVENT_WIRE_H

#include "encode_otlp.h"
#include "internal.h"

/* The largest wire kept, header included: a bigger payload is encoded at
 * export, as every payload was before schema 9. */
#define TASKSPAN__WIRE_MAX 4096

/* The wire of an event's payload in buf (cap bytes): a header of two
 * varints (how many fields the payload has, and the length of its
 * longest string value), then the fields as Span.Event attributes
 * (KeyValues in field 3), none cut. Returns its length; 0 when the event
 * gets none: a payload the flat reader (payload_flat.c) declines, more
 * than cap bytes, or out of memory. scratch backs the decoded payload;
 * the caller empties it. */
size_t taskspan__event_wire_make(uint8_t *buf, size_t cap,
                                 const char *payload_json,
                                 taskspan__arena *scratch);

/* Whether wire (n bytes) is a header and exactly the fields it counts.
 * Bytes damaged in the file (SQLite keeps no checksums) must not go out
 * inside a request, which the collector would refuse whole: the loaders
 * keep a stored wire only when it is whole, checked once, there. */
bool taskspan__event_wire_whole(const uint8_t *wire, size_t n);

/* The attributes' bytes of a whole wire (n bytes, NULL for none; see
 * taskspan__event_wire_whole) when lim keeps them all whole, so that
 * they are what encoding the payload under lim gives. false otherwise:
 * encode the payload. */
bool taskspan__event_wire_usable(const uint8_t *wire, size_t n,
                                 const taskspan__limits *lim,
                                 taskspan__event_wire *out);

/* The payload's fields back from a stored wire (n bytes), appended to
 * list, strings and arrays in arena: the attributes the flat reader gave
 * when the wire was made, for an exporter that has the wire and not the
 * JSON (event_record.c). *ok is false, with nothing appended, when the
 * bytes are not such a wire. TASKSPAN_E_NOMEM when memory ran out. */
taskspan_code taskspan__event_wire_decode(const uint8_t *wire, size_t n,
                                          taskspan__arena *arena,
                                          taskspan__attr_list *list, bool *ok);

#endif
