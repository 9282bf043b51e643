/*
 * store.h -- the viewer's span store: every span `taskspan serve` received,
 * in its own SQLite file (not the recorder's buffer), with per-trace
 * summaries kept up to date for the list queries, an index of event names
 * and attribute values, a size cap with eviction of the least recently
 * updated trace, and a store-wide sequence number per stored span that the
 * live stream hands out as event ids. Internal: taskspan__ names.
 *
 * Thread-safety: every function may be called from any thread; one mutex
 * serialises them. Callbacks run under that mutex and must not call back
 * into the store.
 */
#ifndef TASKSPAN_VIEWER_STORE_H
#define TASKSPAN_VIEWER_STORE_H

#include "receiver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A trace counts as running while no root span (one without a parent)
 * has arrived ended and its last span arrived less than this ago. */
#define TASKSPAN__VSTORE_RUNNING_WINDOW_NS ((int64_t)30 * 1000000000)
/* Default --max-store-bytes. */
#define TASKSPAN__VSTORE_DEFAULT_MAX_BYTES ((int64_t)256 << 20)

typedef struct taskspan__vstore taskspan__vstore;

/*
 * Open (creating if needed) the store at path; missing parent directories
 * are created (0700). max_bytes > 0 caps the stored span bytes.
 * OUT: *out, caller owns, free with taskspan__vstore_close.
 * Returns TASKSPAN_OK, TASKSPAN_E_IO, TASKSPAN_E_SCHEMA (a file that is not
 * a viewer store), TASKSPAN_E_NOMEM; err (errlen bytes) says why.
 */
taskspan_code taskspan__vstore_open(taskspan__vstore **out, const char *path,
                                    int64_t max_bytes, char *err,
                                    size_t errlen);

/* Close and free. Accepts NULL. */
void taskspan__vstore_close(taskspan__vstore *st);

/*
 * Store every span of req in one transaction. A span already stored with
 * the same trace and span id is skipped when byte-identical (with its
 * resource and scope) and replaced otherwise (the new version gets a new
 * sequence number). Then evicts the least recently updated traces, never
 * one this request touched, while the stored bytes exceed the cap.
 * Spans whose trace id or span id is all zeros (invalid in W3C Trace
 * Context and OTLP) are not stored: counted in *out_rejected.
 * OUT: *out_stored, spans written (new or replaced); *out_rejected, spans
 * dropped as invalid; *out_last_seq, the store's newest sequence number
 * afterwards.
 * Returns TASKSPAN_OK or a store error with err set; nothing is stored
 * then.
 */
taskspan_code taskspan__vstore_ingest(taskspan__vstore *st,
                                      const taskspan__export_request *req,
                                      int64_t now_ns, int64_t *out_stored,
                                      int64_t *out_rejected,
                                      int64_t *out_last_seq, char *err,
                                      size_t errlen);

/* The newest sequence number (0 for an empty store). */
int64_t taskspan__vstore_last_seq(taskspan__vstore *st);

/* The filters of GET /api/traces; NULL / false fields do not filter. */
typedef struct taskspan__vstore_filter {
    const char *service;
    const char *task_id;
    const char *status;                /* "ok", "error" or "running" */
    const char *event;                 /* a span event name the trace has */
    const char *attr_key, *attr_value; /* a span or resource attribute */
    bool has_from, has_to;
    int64_t from_ns, to_ns; /* the trace's start time, inclusive */
    int64_t limit;
} taskspan__vstore_filter;

/* One row of the trace list. Strings are borrowed for the callback. */
typedef struct taskspan__trace_summary {
    const char *trace_id; /* 32 lowercase hex */
    const char *task_id;  /* NULL when no span has taskspan.task_id */
    const char *service;
    const char *root_name;
    int64_t start_ns, end_ns, updated_ns;
    int64_t span_count, error_count, event_count;
    bool running;
} taskspan__trace_summary;

/* Callbacks return false to stop (out of memory): the query then fails
 * with TASKSPAN_E_NOMEM. */
typedef bool (*taskspan__vstore_trace_cb)(const taskspan__trace_summary *t,
                                          void *payload);

/* Traces matching f, newest start first. */
taskspan_code taskspan__vstore_list(taskspan__vstore *st,
                                    const taskspan__vstore_filter *f,
                                    int64_t now_ns,
                                    taskspan__vstore_trace_cb cb,
                                    void *payload);

/* The summary of one trace; TASKSPAN_E_NOT_FOUND when it is unknown. */
taskspan_code taskspan__vstore_get(taskspan__vstore *st, const char *trace_id,
                                   int64_t now_ns,
                                   taskspan__vstore_trace_cb cb,
                                   void *payload);

/* One stored span: its packed protobuf Span, Resource and
 * InstrumentationScope, borrowed for the callback. */
typedef struct taskspan__stored_span {
    int64_t seq;
    const char *trace_id;
    const uint8_t *span, *resource, *scope;
    size_t span_len, resource_len, scope_len;
} taskspan__stored_span;

typedef bool (*taskspan__vstore_span_cb)(const taskspan__stored_span *s,
                                         void *payload);

/* The spans of a trace in sequence order; TASKSPAN_E_NOT_FOUND if none. */
taskspan_code taskspan__vstore_trace_spans(taskspan__vstore *st,
                                           const char *trace_id,
                                           taskspan__vstore_span_cb cb,
                                           void *payload);

/* Up to limit spans with seq > after (of one trace unless trace_id is
 * NULL), in sequence order. */
taskspan_code taskspan__vstore_spans_after(taskspan__vstore *st, int64_t after,
                                           const char *trace_id, int64_t limit,
                                           taskspan__vstore_span_cb cb,
                                           void *payload);

typedef bool (*taskspan__vstore_name_cb)(const char *name, void *payload);

/* Every service name, sorted. */
taskspan_code taskspan__vstore_services(taskspan__vstore *st,
                                        taskspan__vstore_name_cb cb,
                                        void *payload);

#endif
