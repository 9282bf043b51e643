/*
 * event_record.c -- what an exporter reads of a stored event, in one
 * column (buffer schema 10, task_events.export_record), written when the
 * event is stored.
 *
 * Why: reading a task's events back was more than half of the export's
 * CPU, and most of that was SQLite handing over eleven columns a row
 * (each one decoded into a register, copied, then copied again into the
 * loader's arena). The exporter now reads three: the id (seq is its low
 * 32 bits), the time and this record, copied once; its strings are used
 * where they lie. The seed's columns stay as they were, for people, the
 * CLI and the viewer; only the exporter reads the record.
 *
 * The layout (integers as protobuf varints):
 *   1 byte   the version, 1
 *   varint   incarnation
 *   varint   resource id (0: none)
 *   5 times  event_type, actor, span_id, parent_span_id, phase: a varint
 *            L, 0 for NULL, else L - 1 bytes and a NUL
 *   1 byte   1: the payload's wire follows (event_wire.c), to the end;
 *            2: the payload's JSON follows, NUL included, to the end (a
 *            payload the flat reader declines, or one too large for a
 *            wire)
 * The room it costs: these strings a second time, about a quarter more
 * per event row (the payload's wire was kept already, in schema 9).
 *
 * An event without a record (stored before schema 10, or by hand, or
 * whose record would pass TASKSPAN__RECORD_MAX), or whose record this
 * version cannot read, is read from its columns as before.
 */
#include "event_record.h"

#include "event_wire.h"

#include <string.h>

#define RECORD_VERSION 1
#define PAYLOAD_WIRE 1
#define PAYLOAD_JSON 2
#define N_STRINGS 5

size_t taskspan__event_record_make(uint8_t *buf, size_t cap,
                                   const taskspan__append *ev,
                                   int64_t incarnation,
                                   taskspan__arena *scratch)
{
    const char *strs[N_STRINGS] = {ev->event_type, ev->actor, ev->span_key,
                                   ev->parent_span_key, ev->phase};
    size_t lens[N_STRINGS];
    size_t need = 1 + 10 + 10 + 1; /* version, two varints, payload kind */
    for (int i = 0; i < N_STRINGS; i++) {
        lens[i] = strs[i] != NULL ? strlen(strs[i]) + 1 : 0;
        need += taskspan__varint_len(lens[i]) + lens[i];
    }
    if (need > cap) {
        return 0;
    }
    uint8_t *p = buf;
    *p++ = RECORD_VERSION;
    p = taskspan__put_varint(p, (uint64_t)incarnation);
    p = taskspan__put_varint(
        p, (uint64_t)(ev->resource_id > 0 ? ev->resource_id : 0));
    for (int i = 0; i < N_STRINGS; i++) {
        p = taskspan__put_varint(p, lens[i]);
        if (lens[i] > 0) {
            memcpy(p, strs[i], lens[i]);
            p += lens[i];
        }
    }
    uint8_t *kind = p++;
    size_t room = cap - (size_t)(p - buf);
    size_t n = taskspan__event_wire_make(
        p, room < TASKSPAN__WIRE_MAX ? room : TASKSPAN__WIRE_MAX,
        ev->payload_json, scratch);
    if (n > 0) {
        *kind = PAYLOAD_WIRE;
        return (size_t)(p - buf) + n;
    }
    /* As the payload column has it (insert_event). */
    const char *json = ev->payload_json != NULL ? ev->payload_json : "{}";
    n = strlen(json) + 1;
    if (n > room) {
        return 0;
    }
    *kind = PAYLOAD_JSON;
    memcpy(p, json, n);
    return (size_t)(p - buf) + n;
}

bool taskspan__event_record_read(const uint8_t *rec, size_t n,
                                 const taskspan__stored_event *prev,
                                 taskspan__stored_event *e)
{
    const uint8_t *p = rec, *end = rec + n;
    uint64_t incarnation, resource, len;
    const char **dst[N_STRINGS] = {&e->event_type, &e->actor, &e->span_key,
                                   &e->parent_span_key, &e->phase};
    const char *was[N_STRINGS] = {NULL, NULL, NULL, NULL, NULL};

    if (prev != NULL) {
        was[0] = prev->event_type;
        was[1] = prev->actor;
        was[2] = prev->span_key;
        was[3] = prev->parent_span_key;
        was[4] = prev->phase;
    }
    if (rec == NULL || n == 0 || *p++ != RECORD_VERSION ||
        !taskspan__get_varint(&p, end, &incarnation) ||
        !taskspan__get_varint(&p, end, &resource) || incarnation > INT64_MAX ||
        resource > INT64_MAX) {
        return false;
    }
    for (int i = 0; i < N_STRINGS; i++) {
        if (!taskspan__get_varint(&p, end, &len) ||
            len > (uint64_t)(end - p) || (len > 0 && p[len - 1] != '\0')) {
            return false;
        }
        const char *s = len > 0 ? (const char *)p : NULL;
        p += len;
        /* The span model's fast paths compare the strings of consecutive
         * events by pointer. */
        if (s != NULL && was[i] != NULL && strcmp(s, was[i]) == 0) {
            s = was[i];
        }
        *dst[i] = s;
    }
    if (e->event_type == NULL || e->span_key == NULL || p == end) {
        return false; /* both are NOT NULL columns */
    }
    int kind = *p++;
    /* Damaged bytes (SQLite keeps no checksums) must not stand in for
     * the payload: the event is read from its columns instead. */
    if (kind == PAYLOAD_WIRE &&
        taskspan__event_wire_whole(p, (size_t)(end - p))) {
        e->payload_json = NULL;
        e->wire = p;
        e->wire_len = (size_t)(end - p);
    } else if (kind == PAYLOAD_JSON && p < end && end[-1] == '\0') {
        e->payload_json = (const char *)p;
        e->wire = NULL;
        e->wire_len = 0;
    } else {
        return false;
    }
    e->incarnation = (int64_t)incarnation;
    e->resource_id = (int64_t)resource;
    return true;
}
