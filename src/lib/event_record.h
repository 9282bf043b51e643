/*
 * event_record.h -- what an exporter reads of a stored event, kept in one
 * column (task_events.export_record, buffer schema 10): see
 * event_record.c.
 */
#ifndef TASKSPAN_EVENT_RECORD_H
#define TASKSPAN_EVENT_RECORD_H

#include "internal.h"

/* The largest record: an event whose record would be larger gets none,
 * and is read from its columns. */
#define TASKSPAN__RECORD_MAX 8192

/* The record of event ev (of incarnation) in buf (cap bytes): the
 * event's incarnation, resource, type, actor, span keys and phase, then
 * its payload as the wire event_wire.c makes, or its JSON when it gets no
 * wire. Returns its length; 0 when it does not fit in cap (the event
 * then has no record) or memory ran out. scratch backs the decoded
 * payload; the caller empties it. */
size_t taskspan__event_record_make(uint8_t *buf, size_t cap,
                                   const taskspan__append *ev,
                                   int64_t incarnation,
                                   taskspan__arena *scratch);

/* Fill e's incarnation, resource, strings and payload (its JSON, or NULL
 * with its wire) from record rec of n bytes, which e then points into:
 * rec must outlive e. prev (NULL: none), the event before e: strings
 * equal to its strings are its pointers (the span model tells repeats
 * apart by pointer). false, with e partly filled, when rec is not a
 * record this version reads: read the event's columns. */
bool taskspan__event_record_read(const uint8_t *rec, size_t n,
                                 const taskspan__stored_event *prev,
                                 taskspan__stored_event *e);

#endif
