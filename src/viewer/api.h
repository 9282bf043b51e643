/*
 * api.h -- the viewer's web side on the receiver's port: the JSON API
 * (/api/traces, /api/traces/{id}, /api/traces/{id}/otlp.json,
 * /api/services, /api/stream) and the web UI's embedded files (/ and
 * /assets/...). docs/viewer.md is the contract. Internal names.
 */
#ifndef TASKSPAN_VIEWER_API_H
#define TASKSPAN_VIEWER_API_H

#include "buffer_view.h"
#include "store.h"
#include "stream.h"

typedef struct taskspan__api {
    taskspan__vstore *store;       /* required */
    taskspan__stream_hub *hub;     /* required */
    taskspan__buffer_view *buffer; /* NULL without --db */
} taskspan__api;

/* A taskspan__receiver_web: payload is a taskspan__api that outlives the
 * receiver. */
struct MHD_Response *taskspan__api_handle(unsigned *out_status,
                                          struct MHD_Connection *conn,
                                          const char *method, const char *url,
                                          void *payload);

#endif
