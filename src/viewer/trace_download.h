/*
 * trace_download.h -- GET /api/traces/{id}/otlp.json: a stored trace as
 * one OTLP/JSON ExportTraceServiceRequest, its spans grouped back under
 * the resources and scopes they arrived with. Internal names.
 */
#ifndef TASKSPAN_VIEWER_TRACE_DOWNLOAD_H
#define TASKSPAN_VIEWER_TRACE_DOWNLOAD_H

#include "store.h"

#include <jansson.h>

/* OUT: *out, a new reference. Returns TASKSPAN_OK, TASKSPAN_E_NOT_FOUND,
 * TASKSPAN_E_NOMEM or a store error. Any thread. */
taskspan_code taskspan__trace_download(json_t **out, taskspan__vstore *st,
                                       const char *trace_id);

#endif
