/*
 * exporter.h -- the export loop: closed spans from the buffer to a
 * collector, in the recorder's background thread or in the caller's.
 */
#ifndef TASKSPAN_EXPORTER_H
#define TASKSPAN_EXPORTER_H

#include "config.h"
#include "transport.h"

typedef struct taskspan__exporter taskspan__exporter;

/* Counters of one exporter. */
typedef struct taskspan__exporter_counts {
    uint64_t spans_delivered, spans_rejected, requests_ok, requests_failed;
    uint64_t partial_rejected;
} taskspan__exporter_counts;

/* Create an exporter on the buffer at db_path with its own connection.
 * cfg is borrowed and must outlive the exporter. transport: NULL for
 * libcurl, or a fake in unit tests. With background set, a thread runs the
 * loop every cfg->schedule_delay_ms (sooner when woken); without, work
 * happens only in taskspan__exporter_flush(). */
taskspan_code taskspan__exporter_new(taskspan__exporter **out,
                                     const char *db_path,
                                     const taskspan__store_config *store_cfg,
                                     const taskspan__export_config *cfg,
                                     const taskspan__transport_ops *transport,
                                     bool background, char *err,
                                     size_t errlen);

/* Deliver every span closed before the call, within timeout_ms (negative:
 * no limit). TASKSPAN_E_TIMEOUT when some are still pending at the end. */
taskspan_code taskspan__exporter_flush(taskspan__exporter *ex, int timeout_ms,
                                       char *err, size_t errlen);

/* Wake the background thread early (enough spans have closed). */
void taskspan__exporter_wake(taskspan__exporter *ex);

void taskspan__exporter_counts_get(const taskspan__exporter *ex,
                                   taskspan__exporter_counts *out);

/* Stop: with a background thread, deliver what is closed for at most
 * drain_ms (0: no drain), abort what is in flight, join, free. */
void taskspan__exporter_free(taskspan__exporter *ex, int drain_ms);

#endif
