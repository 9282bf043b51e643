/*
 * stream.c -- Server-Sent Events of stored spans (see stream.h).
 *
 * A client's state is the last sequence number it was sent (its resume
 * point) and a buffer of rendered events not yet handed to MHD. MHD calls
 * read_events whenever the socket can take more; when the buffer is empty
 * it queries the store for up to BATCH spans after the resume point and,
 * finding none, waits on the hub until the store's newest sequence number
 * passes what it last looked at, a keepalive is due, or the hub closes.
 */
#include "stream.h"

#include "span_json.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#define BATCH 64
#define BLOCK_SIZE (16 * 1024)

struct taskspan__stream_hub {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    taskspan__vstore *store;
    int64_t last_seq;
    unsigned clients, max_clients;
    bool closing;
};

typedef struct client {
    taskspan__stream_hub *hub;
    int64_t last_sent; /* the resume point: newest seq sent */
    int64_t looked_at; /* the hub's last_seq when the store was last asked */
    bool has_trace;
    char trace_id[33];
    char *buf; /* rendered events, [off, len) not yet given to MHD */
    size_t len, off, cap;
    bool failed;
} client;

taskspan_code taskspan__stream_hub_new(taskspan__stream_hub **out,
                                       taskspan__vstore *store,
                                       unsigned max_clients)
{
    pthread_condattr_t attr;

    *out = NULL;
    taskspan__stream_hub *hub = calloc(1, sizeof *hub);
    if (hub == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    hub->store = store;
    hub->max_clients = max_clients;
    hub->last_seq = taskspan__vstore_last_seq(store);
    if (pthread_condattr_init(&attr) != 0) {
        free(hub);
        return TASKSPAN_E_NOMEM;
    }
    /* Keepalive deadlines must not jump with the wall clock. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    bool ok = pthread_mutex_init(&hub->lock, NULL) == 0;
    if (ok && pthread_cond_init(&hub->changed, &attr) != 0) {
        pthread_mutex_destroy(&hub->lock);
        ok = false;
    }
    pthread_condattr_destroy(&attr);
    if (!ok) {
        free(hub);
        return TASKSPAN_E_NOMEM;
    }
    *out = hub;
    return TASKSPAN_OK;
}

void taskspan__stream_hub_notify(taskspan__stream_hub *hub, int64_t last_seq)
{
    pthread_mutex_lock(&hub->lock);
    if (last_seq > hub->last_seq) {
        hub->last_seq = last_seq;
        pthread_cond_broadcast(&hub->changed);
    }
    pthread_mutex_unlock(&hub->lock);
}

void taskspan__stream_hub_close(taskspan__stream_hub *hub)
{
    pthread_mutex_lock(&hub->lock);
    hub->closing = true;
    pthread_cond_broadcast(&hub->changed);
    pthread_mutex_unlock(&hub->lock);
}

void taskspan__stream_hub_free(taskspan__stream_hub *hub)
{
    if (hub == NULL) {
        return;
    }
    pthread_cond_destroy(&hub->changed);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

/* ---- one client --------------------------------------------------------- */

static bool append(client *c, const char *s, size_t n)
{
    if (c->len + n > c->cap) {
        size_t ncap = c->cap < 4096 ? 4096 : c->cap;
        while (ncap < c->len + n) {
            ncap *= 2;
        }
        char *p = realloc(c->buf, ncap);
        if (p == NULL) {
            return false;
        }
        c->buf = p;
        c->cap = ncap;
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    return true;
}

/* Render one stored span as an event; runs under the store's lock. */
static bool render_span(const taskspan__stored_span *s, void *payload)
{
    client *c = payload;
    char head[64];

    json_t *span = taskspan__json_stored_span(s);
    json_t *ev = span != NULL ? json_pack("{s:s, s:o}", "trace_id",
                                          s->trace_id, "span", span)
                              : NULL;
    char *data = ev != NULL ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (data == NULL) {
        c->failed = true;
        return false;
    }
    int n = snprintf(head, sizeof head,
                     "id: %" PRId64 "\nevent: span\ndata: ", s->seq);
    /* JSON_COMPACT output holds no newline (jansson escapes them in
     * strings), so the data stays one "data:" line. */
    bool ok = append(c, head, (size_t)n) && append(c, data, strlen(data)) &&
              append(c, "\n\n", 2);
    free(data);
    if (!ok) {
        c->failed = true;
        return false;
    }
    c->last_sent = s->seq;
    return true;
}

static void deadline_in(struct timespec *ts, int seconds)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += seconds;
}

/* Fill c->buf: new spans, or a keepalive; false when the stream ends. */
static bool refill(client *c)
{
    taskspan__stream_hub *hub = c->hub;
    struct timespec deadline;

    c->len = c->off = 0;
    deadline_in(&deadline, TASKSPAN__STREAM_KEEPALIVE_S);
    for (;;) {
        pthread_mutex_lock(&hub->lock);
        int wait_rc = 0;
        while (!hub->closing && hub->last_seq <= c->looked_at &&
               wait_rc != ETIMEDOUT) {
            wait_rc = pthread_cond_timedwait(&hub->changed, &hub->lock,
                                             &deadline);
        }
        bool closing = hub->closing;
        int64_t seen = hub->last_seq;
        pthread_mutex_unlock(&hub->lock);
        if (closing) {
            return false;
        }
        if (seen <= c->looked_at) { /* timed out: nothing new */
            return append(c, ": keepalive\n\n", 13);
        }
        taskspan_code rc = taskspan__vstore_spans_after(
            hub->store, c->last_sent, c->has_trace ? c->trace_id : NULL, BATCH,
            render_span, c);
        if (rc != TASKSPAN_OK || c->failed) {
            return false;
        }
        if (c->len > 0) {
            return true; /* more may wait: looked_at stays behind */
        }
        c->looked_at = seen;
    }
}

static ssize_t read_events(void *cls, uint64_t pos, char *buf, size_t max)
{
    client *c = cls;

    (void)pos;
    if (c->off == c->len && !refill(c)) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = c->len - c->off < max ? c->len - c->off : max;
    memcpy(buf, c->buf + c->off, n);
    c->off += n;
    return (ssize_t)n;
}

static void free_client(void *cls)
{
    client *c = cls;

    pthread_mutex_lock(&c->hub->lock);
    c->hub->clients--;
    pthread_mutex_unlock(&c->hub->lock);
    free(c->buf);
    free(c);
}

static struct MHD_Response *text_response(const char *text)
{
    return MHD_create_response_from_buffer(
        strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_PERSISTENT);
}

struct MHD_Response *taskspan__stream_open(taskspan__stream_hub *hub,
                                           int64_t after, const char *trace_id,
                                           unsigned *out_status)
{
    client *c = calloc(1, sizeof *c);

    *out_status = 500;
    if (c == NULL) {
        return NULL;
    }
    c->hub = hub;
    c->last_sent = after;
    /* Look once at once, whatever the hub saw: the replay. */
    c->looked_at = -1;
    if (trace_id != NULL) {
        c->has_trace = true;
        snprintf(c->trace_id, sizeof c->trace_id, "%s", trace_id);
    }
    pthread_mutex_lock(&hub->lock);
    bool full = hub->clients >= hub->max_clients;
    if (!full) {
        hub->clients++;
    }
    pthread_mutex_unlock(&hub->lock);
    if (full) {
        free(c);
        *out_status = 503;
        struct MHD_Response *r = text_response(
            "{\"error\":\"too many streams are open\"}");
        if (r != NULL) {
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    "application/json");
            MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "5");
        }
        return r;
    }
    /* The first block goes out at once, so the client sees the headers
     * before any span exists. */
    if (!append(c, ": stream\nretry: 2000\n\n", 22)) {
        free_client(c);
        return NULL;
    }
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_events, c, free_client);
    if (r == NULL) {
        free_client(c);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    *out_status = 200;
    return r;
}
