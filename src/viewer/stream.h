/*
 * stream.h -- GET /api/stream: stored spans as Server-Sent Events, live.
 *
 * Each stored span is one event, "id: SEQ\nevent: span\ndata: {...}\n\n",
 * SEQ being the store's sequence number. A client that reconnects with
 * Last-Event-ID N first gets every stored span with SEQ > N, in order,
 * then the live ones: no gap, no duplicate. A ": keepalive" comment goes
 * out after TASKSPAN__STREAM_KEEPALIVE_S quiet seconds. Internal names.
 *
 * Each stream blocks in MHD's content callback on its connection's own
 * thread (the receiver runs a thread per connection), waiting on the hub's
 * condition variable, so ingest never waits for a stream.
 */
#ifndef TASKSPAN_VIEWER_STREAM_H
#define TASKSPAN_VIEWER_STREAM_H

#include "store.h"

#include <stdint.h>

#define TASKSPAN__STREAM_KEEPALIVE_S 15
#define TASKSPAN__STREAM_DEFAULT_MAX_CLIENTS 64u

struct MHD_Response;

typedef struct taskspan__stream_hub taskspan__stream_hub;

/* OUT: *out, caller owns, free with taskspan__stream_hub_free after
 * the HTTP server stopped. store is borrowed and must outlive the hub.
 * Returns TASKSPAN_OK or TASKSPAN_E_NOMEM. */
taskspan_code taskspan__stream_hub_new(taskspan__stream_hub **out,
                                       taskspan__vstore *store,
                                       unsigned max_clients);

/* The store's newest sequence number is now last_seq: wake the streams.
 * Any thread. */
void taskspan__stream_hub_notify(taskspan__stream_hub *hub, int64_t last_seq);

/* End every stream (now and later): call before stopping the server, so
 * no connection thread stays blocked. Any thread. */
void taskspan__stream_hub_close(taskspan__stream_hub *hub);

/* Accepts NULL. */
void taskspan__stream_hub_free(taskspan__stream_hub *hub);

/*
 * A response that streams spans with seq > after (of trace_id only, when
 * not NULL: 32 lowercase hex). OUT: *out_status 200; 503 when max_clients
 * streams are open (the response then says so), 500 when out of memory
 * (NULL returned).
 */
struct MHD_Response *taskspan__stream_open(taskspan__stream_hub *hub,
                                           int64_t after, const char *trace_id,
                                           unsigned *out_status);

#endif
