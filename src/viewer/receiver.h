/*
 * receiver.h -- the OTLP/HTTP trace receiver behind `taskspan serve`.
 *
 * The receiver listens on one TCP address, accepts POST /v1/traces bodies
 * (binary protobuf or OTLP/JSON, optionally gzip'd), decodes and checks
 * them, and hands each decoded ExportTraceServiceRequest to a consumer
 * callback (the viewer's store, --print). Other paths go to an optional
 * web handler (the viewer's API and UI). Internal: taskspan__ names, no
 * API promise. receiver.c explains the limits and the threading.
 */
#ifndef TASKSPAN_VIEWER_RECEIVER_H
#define TASKSPAN_VIEWER_RECEIVER_H

#include "taskspan/taskspan.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
    taskspan__export_request;

/* The OTLP/HTTP default port on loopback (otlp-facts §1). */
#define TASKSPAN__RECEIVER_DEFAULT_LISTEN "127.0.0.1:4318"
/* The spec's RECOMMENDED server body limit, applied before and after
 * decompression. */
#define TASKSPAN__RECEIVER_DEFAULT_MAX_BODY ((size_t)64 << 20)
/* Bodies beyond this are refused as a configuration error: the receiver
 * holds a few bodies in memory at once and must stay bounded. */
#define TASKSPAN__RECEIVER_MAX_MAX_BODY ((size_t)1 << 30)
/* Idle seconds after which a connection is closed. */
#define TASKSPAN__RECEIVER_DEFAULT_TIMEOUT_S 30u

/*
 * The consumer of decoded requests. Called once per accepted request,
 * under the receiver's lock, so calls never overlap although every
 * connection has its own thread.
 *
 * req is borrowed, valid only during the call. The receiver has already
 * checked every span: trace_id is 16 bytes, span_id 8 bytes, parent_span_id
 * 0 or 8 bytes; each link's ids are 0 or 16 / 0 or 8 bytes.
 *
 * Returns the number of spans it rejected: 0 for full success; N > 0 makes
 * the answer a 200 with partial_success {N, out_msg} (out_msg may be left
 * empty for a default text); 0 with a non-empty out_msg sends it as a
 * warning, partial_success {0, out_msg}, as OTLP allows; a negative value
 * means it could not take the request at all, answered with 503 and
 * out_msg. out_msg holds msg_size bytes, starts empty, and should be
 * UTF-8 (it becomes a protobuf string).
 */
typedef int64_t (*taskspan__receiver_consumer)(
    char *out_msg, size_t msg_size, const taskspan__export_request *req,
    void *payload);

struct MHD_Connection;
struct MHD_Response;

/*
 * The web side of the same port: called for a request whose path no OTLP
 * route (POST /v1/traces, /healthz) has, once its headers are in. Returns
 * a response for the receiver to queue with *out_status and then destroy,
 * or NULL (out of memory) to close the connection. Runs on the
 * connection's own thread, concurrently with other calls, and may block
 * inside a content callback of the response (a stream).
 */
typedef struct MHD_Response *(*taskspan__receiver_web)(
    unsigned *out_status, struct MHD_Connection *conn, const char *method,
    const char *url, void *payload);

typedef struct taskspan__receiver_config {
    /* "HOST:PORT": an IPv4 address, "[IPv6]" or "localhost"; port 0 takes
     * an ephemeral port. NULL: TASKSPAN__RECEIVER_DEFAULT_LISTEN. */
    const char *listen;
    /* Body limit in bytes, 1 .. TASKSPAN__RECEIVER_MAX_MAX_BODY;
     * 0: TASKSPAN__RECEIVER_DEFAULT_MAX_BODY. */
    size_t max_body;
    /* Idle connection timeout; 0: TASKSPAN__RECEIVER_DEFAULT_TIMEOUT_S. */
    unsigned timeout_s;
    /* NULL: requests are checked, answered and dropped. */
    taskspan__receiver_consumer consume;
    void *payload;
    /* NULL: other paths are 404. */
    taskspan__receiver_web web;
    void *web_payload;
} taskspan__receiver_config;

typedef struct taskspan__receiver taskspan__receiver;

/*
 * Bind, listen and start serving in a background thread.
 * OUT: *out, caller owns, free with taskspan__receiver_stop.
 * Returns TASKSPAN_OK; TASKSPAN_E_INVALID_ARG for a bad listen address or
 * limit; TASKSPAN_E_IO when the address cannot be bound (errbuf says "...
 * is already in use" for EADDRINUSE); TASKSPAN_E_NOMEM. errbuf (NULL or
 * TASKSPAN_ERRBUF_SIZE bytes) gets a one-line reason on failure.
 */
taskspan_code taskspan__receiver_start(taskspan__receiver **out,
                                       const taskspan__receiver_config *cfg,
                                       char *errbuf);

/* The bound port (the real one when the config asked for port 0). */
uint16_t taskspan__receiver_port(const taskspan__receiver *r);

/* The bound address as "127.0.0.1:4318" or "[::1]:4318"; borrowed, valid
 * until taskspan__receiver_stop. */
const char *taskspan__receiver_address(const taskspan__receiver *r);

/* Stop listening, close every connection (requests in flight are dropped),
 * join the thread and free r. Accepts NULL. */
void taskspan__receiver_stop(taskspan__receiver *r);

/*
 * The body pipeline of POST /v1/traces without any socket, for fuzzers and
 * tests: gunzip when gzip is set, apply max_body before and after, check
 * nesting depth, decode with a bounded allocator, check ids. Returns the
 * HTTP status the receiver would answer before calling the consumer (200,
 * 400, 413 or 503); msg (msg_size bytes) gets the reason for the others.
 * max_body 0 or above TASKSPAN__RECEIVER_MAX_MAX_BODY means that maximum.
 */
unsigned taskspan__receiver_check_body(const uint8_t *body, size_t len,
                                       bool gzip, size_t max_body, char *msg,
                                       size_t msg_size);

#endif
