/*
 * transport.h -- one OTLP/HTTP request, behind an ops table so unit tests
 * can swap the network for a fake. The only implementation that touches the
 * network is transport_curl.c, the only file that includes <curl/curl.h>.
 */
#ifndef TASKSPAN_TRANSPORT_H
#define TASKSPAN_TRANSPORT_H

#include "config.h"

#include <stdatomic.h>

/* What became of one POST. */
typedef struct taskspan__http_result {
    /* TASKSPAN_OK for a 2xx; TASKSPAN_E_HTTP_STATUS for another status;
     * TASKSPAN_E_TRANSPORT when no response came (refused, reset, DNS, TLS);
     * TASKSPAN_E_TIMEOUT when the request timed out; TASKSPAN_E_ENCODE when
     * the body could not be compressed or the response was too large. */
    taskspan_code code;
    long status;            /* the HTTP status, 0 when there was none */
    bool retryable;         /* per the OTLP spec: 429, 502, 503, 504,
                              connection failures and timeouts */
    int64_t retry_after_ms; /* from Retry-After (seconds or HTTP-date),
                               -1 when absent or unparsable */
    uint8_t *body;          /* the response body (malloc'd, at most 4 MiB,
                              gzip already undone); NULL when empty */
    size_t body_len;
    char message[256]; /* one line: "HTTP 503 from http://...",
                              "connection refused to ...", ... */
} taskspan__http_result;

void taskspan__http_result_free(taskspan__http_result *r);

typedef struct taskspan__transport_ops {
    const char *name;
    /* Prepare a reusable connection for cfg (copied as needed). */
    taskspan_code (*open)(void **out, const taskspan__export_config *cfg,
                          char *err, size_t errlen);
    /* POST body (an ExportTraceServiceRequest) to the traces endpoint with
     * Content-Type application/x-protobuf, gzip'd when cfg->gzip. Returns
     * early, with TASKSPAN_E_TIMEOUT, once *abort becomes true. Never
     * blocks longer than cfg->timeout_ms. OUT: *out (free with
     * taskspan__http_result_free). */
    void (*post)(void *t, const uint8_t *body, size_t len,
                 const atomic_bool *abort, taskspan__http_result *out);
    /* Limit the following posts to timeout_ms (when shorter than the
     * configured timeout; 0 restores it): a flush with a deadline must not
     * wait out a 10 s request timeout. */
    void (*limit)(void *t, int timeout_ms);
    void (*close)(void *t);
} taskspan__transport_ops;

extern const taskspan__transport_ops taskspan__transport_curl;

/* Parse a Retry-After value (delay-seconds or an HTTP-date) relative to
 * now_s (UNIX seconds). Returns milliseconds >= 0, or -1 if invalid. */
int64_t taskspan__parse_retry_after(const char *value, int64_t now_s);

#endif
