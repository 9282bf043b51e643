/*
 * bench_export.c -- how fast a recorder delivers a backlog of closed spans
 * to an OTLP/HTTP collector, and what that costs in CPU and memory.
 *
 * Cases drain_<N> (N = 100,000 and 1,000,000 work spans; --short 5,000;
 * --spans N alone):
 *   1. Fill. A child process (fork) records the first task with export off
 *      into a fresh buffer: a runner_spawn, 100 benchmark spans
 *      (work_item_start, lease_acquired, lease_renewed, work_item_done, 3
 *      attributes each: string, int64, string) through taskspan_emit(),
 *      then runner_exit. The other tasks are SQL copies of it through the
 *      public schema (bench_copy_task), so a million spans fill in seconds.
 *      The fill runs in a child so that none of its memory shows in the
 *      parent's figures. Untimed beyond a line of information.
 *   2. Drain. The parent starts a loopback OTLP sink (a thread in this
 *      process on 127.0.0.1:<ephemeral>, HTTP/1.1 keep-alive, answers 200
 *      with an empty body), opens a recorder on the buffer with export off
 *      and endpoint = the sink, resets the peak RSS (/proc/self/clear_refs
 *      "5"), and times taskspan_flush(ts, -1): the inline exporter
 *      discovers, encodes and sends every closed span in the caller's
 *      thread.
 *   3. Check. The sink counts the spans of each request by walking the
 *      protobuf framing (ExportTraceServiceRequest.resource_spans (1) ->
 *      ResourceSpans.scope_spans (2) -> ScopeSpans.spans (2)); it must
 *      have received exactly N + ceil(N / 100) spans, and
 *      taskspan_get_export_stats() must show nothing pending.
 * Case steady: a producer records benchmark spans with export ON (the
 * background exporter sends to the sink meanwhile) for 5 s (--short 1 s);
 * a sampler thread reads the lag (spans closed - spans received) every
 * 20 ms; then a flush, and the sink must have every span.
 * Cases events_per_span_10 and events_per_span_10000 (growth): as drain,
 * the same number of events in spans of 10 and of 10,000 events.
 * With --runs R > 1 the backlog is filled once and copied for each run.
 *
 * Figures: delivered spans/s (spans the sink received / wall time of the
 * flush), CPU per span (getrusage user+sys of the whole process over the
 * flush; the sink thread's own share is shown apart), peak RSS during the
 * flush (VmHWM after the reset), requests, bytes per span, and the time to
 * the first request (discovery and encoding happen before any sending).
 *
 * Output: a table per case on stdout and one "BENCH_JSON {...}" line each.
 * Exits non-zero when something fails or the delivered spans do not match,
 * never because of a figure.
 */
#include "taskspan/taskspan.h"

#include "bench_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define DEFAULT_SPANS 100000
#define SHORT_SPANS 5000
#define FULL_BIG_SPANS 1000000
#define DEFAULT_STEADY_S 5.0
#define SHORT_STEADY_S 1.0
/* Events in each events-per-span growth backlog (10 and 10,000 a span). */
#define DEFAULT_EPS_EVENTS 200000L
#define SHORT_EPS_EVENTS 20000L
#define MAX_SPANS 10000000L
/* Runs of each case: one run on this VM lands anywhere in a third of its
 * range, so the table gives the median of three. */
#define DEFAULT_RUNS 3
#define ITEMS_PER_TASK 100
#define EVENTS_PER_SPAN 4
#define TEMPLATE_TASK "bench-export-task-0000000"

#define MAX_CONNS 8
#define HDR_MAX 16384
#define IO_BUF 65536

/* ---- small helpers ------------------------------------------------------- */

static uint64_t timeval_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* Size of a database with its WAL, in bytes. */
static uint64_t db_bytes(const char *path)
{
    char side[BENCH_PATH_LEN + 8];
    struct stat st;
    uint64_t total = 0;
    if (stat(path, &st) == 0) {
        total += (uint64_t)st.st_size;
    }
    snprintf(side, sizeof side, "%s-wal", path);
    if (stat(side, &st) == 0) {
        total += (uint64_t)st.st_size;
    }
    return total;
}

/* Copy one file; a missing source is fine when optional is set. */
static int copy_file(const char *from, const char *to, int optional)
{
    size_t cap = 1u << 20;
    char *buf = NULL;
    int in = open(from, O_RDONLY), out = -1, rc = -1;
    if (in < 0) {
        if (optional && errno == ENOENT) {
            return 0;
        }
        die_msg("open %s: %s", from, strerror(errno));
        return -1;
    }
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    buf = malloc(cap);
    if (out < 0 || buf == NULL) {
        die_msg("open %s: %s", to, out < 0 ? strerror(errno) : "no memory");
        goto done;
    }
    for (;;) {
        ssize_t r = read(in, buf, cap);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            die_msg("read %s: %s", from, strerror(errno));
            goto done;
        }
        if (r == 0) {
            break;
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w < 0) {
                die_msg("write %s: %s", to, strerror(errno));
                goto done;
            }
            off += w;
        }
    }
    rc = 0;
done:
    free(buf);
    close(in);
    if (out >= 0 && close(out) != 0 && rc == 0) {
        die_msg("close %s: %s", to, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Copy a database and its WAL (if any) to a new path. */
static int copy_db(const char *from, const char *to)
{
    char a[BENCH_PATH_LEN + 8], b[BENCH_PATH_LEN + 8];
    remove_db(to);
    snprintf(a, sizeof a, "%s-wal", from);
    snprintf(b, sizeof b, "%s-wal", to);
    return copy_file(from, to, 0) != 0 || copy_file(a, b, 1) != 0 ? -1 : 0;
}

/* ---- memory: VmRSS and VmHWM of this process ----------------------------- */

/* A "Name:   1234 kB" line of /proc/self/status, in kB; -1 if missing. */
static long status_kb(const char *name)
{
    char line[256];
    size_t n = strlen(name);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            char *end = NULL;
            errno = 0;
            long v = strtol(line + n + 1, &end, 10);
            if (errno == 0 && end != line + n + 1) {
                kb = v;
            }
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0). 0 on success. */
static int reset_peak_rss(char *why, size_t size)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) {
        snprintf(why, size, "open /proc/self/clear_refs: %s", strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, "5", 1);
    int e = errno;
    close(fd);
    if (w != 1) {
        snprintf(why, size, "write /proc/self/clear_refs: %s",
                 w < 0 ? strerror(e) : "short write");
        return -1;
    }
    return 0;
}

/* ---- the sink: a streaming count of spans in an OTLP request ------------- */

enum { PB_TAG, PB_LEN, PB_VARINT, PB_SKIP };

/* Walks ExportTraceServiceRequest bytes as they arrive, descending into
 * resource_spans (field 1) and scope_spans (field 2) and counting the spans
 * (field 2 of ScopeSpans); every other field, and every span body, is
 * skipped without being looked at. O(1) memory. */
typedef struct pb_counter {
    uint64_t pos;    /* bytes consumed */
    uint64_t end[3]; /* end offsets of levels 1 and 2 */
    int level;       /* 0 request, 1 ResourceSpans, 2 ScopeSpans */
    int state;
    uint64_t v; /* the varint being read */
    unsigned shift;
    uint64_t tag;
    uint64_t skip;
    uint64_t spans;
    int bad;
} pb_counter;

static void pb_reset(pb_counter *c)
{
    memset(c, 0, sizeof *c);
    c->state = PB_TAG;
}

/* Close every level that ends here; flag one that was overrun. */
static void pb_pop(pb_counter *c)
{
    while (c->level > 0 && c->pos == c->end[c->level]) {
        c->level--;
    }
    if (c->level > 0 && c->pos > c->end[c->level]) {
        c->bad = 1;
    }
}

static void pb_skip(pb_counter *c, uint64_t n)
{
    if (c->level > 0 && c->pos + n > c->end[c->level]) {
        c->bad = 1;
        return;
    }
    c->skip = n;
    c->state = PB_SKIP;
    if (n == 0) {
        c->state = PB_TAG;
        pb_pop(c);
    }
}

/* A complete varint value v in state PB_TAG or PB_LEN. */
static void pb_value(pb_counter *c, uint64_t v)
{
    if (c->state == PB_TAG) {
        c->tag = v;
        if ((v >> 3) == 0) {
            c->bad = 1;
            return;
        }
        switch (v & 7) {
        case 0:
            c->state = PB_VARINT;
            break;
        case 1:
            pb_skip(c, 8);
            break;
        case 2:
            c->state = PB_LEN;
            break;
        case 5:
            pb_skip(c, 4);
            break;
        default: /* groups: never in OTLP */
            c->bad = 1;
        }
        return;
    }
    uint64_t field = c->tag >> 3;
    if ((c->level == 0 && field == 1) || (c->level == 1 && field == 2)) {
        if (c->level > 0 && c->pos + v > c->end[c->level]) {
            c->bad = 1;
            return;
        }
        c->end[++c->level] = c->pos + v;
        c->state = PB_TAG;
        pb_pop(c);
        return;
    }
    if (c->level == 2 && field == 2) {
        c->spans++;
    }
    pb_skip(c, v);
}

static void pb_feed(pb_counter *c, const unsigned char *p, size_t n)
{
    while (n > 0 && !c->bad) {
        if (c->state == PB_SKIP) {
            size_t k = c->skip < n ? (size_t)c->skip : n;
            c->pos += k;
            c->skip -= k;
            p += k;
            n -= k;
            if (c->skip == 0) {
                c->state = PB_TAG;
                pb_pop(c);
            }
            continue;
        }
        unsigned char b = *p++;
        n--;
        c->pos++;
        if (c->state == PB_VARINT) {
            if (!(b & 0x80)) {
                c->state = PB_TAG;
                pb_pop(c);
            }
            continue;
        }
        if (c->shift > 63) {
            c->bad = 1;
            break;
        }
        c->v |= (uint64_t)(b & 0x7f) << c->shift;
        c->shift += 7;
        if (b & 0x80) {
            continue;
        }
        uint64_t v = c->v;
        c->v = 0;
        c->shift = 0;
        pb_value(c, v);
    }
}

/* 1 when the bytes fed so far end exactly at a message boundary. */
static int pb_complete(const pb_counter *c)
{
    return !c->bad && c->level == 0 && c->state == PB_TAG && c->shift == 0;
}

/* ---- the sink: HTTP/1.1 on loopback -------------------------------------- */

typedef struct conn {
    int fd; /* -1: free slot */
    int in_body;
    char hdr[HDR_MAX];
    size_t hdr_len;
    uint64_t body_left, body_len;
    int gzip;
    int z_live;
    int z_done; /* inflate saw the end of the gzip stream */
    z_stream z;
    pb_counter pb;
} conn;

typedef struct sink {
    int listen_fd;
    int wake[2];
    unsigned port;
    pthread_t thread;
    int running;
    /* Results: written by the sink thread, read after it was joined
     * (spans also while it runs, atomically). */
    uint64_t requests, body_bytes, spans, connections, max_body;
    uint64_t gzip_requests;
    uint64_t first_request_ns; /* headers of the first request complete */
    char error[256];
    conn conns[MAX_CONNS];
    unsigned char buf[IO_BUF];
    unsigned char zbuf[IO_BUF];
} sink;

static void sink_fail(sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keep the first error of the sink; the run then fails. */
static void sink_fail(sink *s, const char *fmt, ...)
{
    va_list ap;
    if (s->error[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void conn_close(conn *c)
{
    if (c->z_live) {
        inflateEnd(&c->z);
        c->z_live = 0;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
}

/* The value of header name in the header block, or NULL. */
static const char *header_value(const char *hdrs, const char *name,
                                size_t *out_len)
{
    size_t n = strlen(name);
    const char *line = strstr(hdrs, "\r\n");
    while (line != NULL && line[2] != '\r') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL) {
            break;
        }
        if ((size_t)(eol - line) > n && line[n] == ':' &&
            strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t')) {
                e--;
            }
            *out_len = (size_t)(e - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

static int value_is(const char *v, size_t len, const char *want)
{
    return v != NULL && len == strlen(want) && strncasecmp(v, want, len) == 0;
}

/* The headers of one request are complete in c->hdr: check them and get
 * ready for the body. -1: a bad request (the sink failed). */
static int begin_request(sink *s, conn *c)
{
    size_t len = 0;
    const char *v;

    if (s->first_request_ns == 0) {
        s->first_request_ns = mono_ns();
    }
    if (strncmp(c->hdr, "POST ", 5) != 0) {
        sink_fail(s, "not a POST: %.40s", c->hdr);
        return -1;
    }
    v = header_value(c->hdr, "Transfer-Encoding", &len);
    if (v != NULL && !value_is(v, len, "identity")) {
        sink_fail(s,
                  "Transfer-Encoding %.*s: the sink needs a "
                  "Content-Length",
                  (int)len, v);
        return -1;
    }
    v = header_value(c->hdr, "Content-Length", &len);
    char num[32];
    char *end = NULL;
    if (v == NULL || len == 0 || len >= sizeof num) {
        sink_fail(s, "a request without a usable Content-Length");
        return -1;
    }
    memcpy(num, v, len);
    num[len] = '\0';
    errno = 0;
    unsigned long long cl = strtoull(num, &end, 10);
    if (errno != 0 || *end != '\0') {
        sink_fail(s, "bad Content-Length '%s'", num);
        return -1;
    }
    c->body_len = c->body_left = (uint64_t)cl;
    c->gzip = 0;
    v = header_value(c->hdr, "Content-Encoding", &len);
    if (value_is(v, len, "gzip")) {
        c->gzip = 1;
        s->gzip_requests++;
        memset(&c->z, 0, sizeof c->z);
        if (inflateInit2(&c->z, 16 + MAX_WBITS) != Z_OK) {
            sink_fail(s, "inflateInit2 failed");
            return -1;
        }
        c->z_live = 1;
        c->z_done = 0;
    } else if (v != NULL && !value_is(v, len, "identity")) {
        sink_fail(s, "Content-Encoding %.*s not supported", (int)len, v);
        return -1;
    }
    v = header_value(c->hdr, "Expect", &len);
    if (value_is(v, len, "100-continue")) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send_all(c->fd, cont, sizeof cont - 1) != 0) {
            return -1;
        }
    }
    pb_reset(&c->pb);
    c->in_body = 1;
    return 0;
}

/* Feed body bytes to the span counter, inflating them first if need be. */
static int body_bytes(sink *s, conn *c, const unsigned char *p, size_t n)
{
    if (!c->gzip) {
        pb_feed(&c->pb, p, n);
        return 0;
    }
    c->z.next_in = (unsigned char *)(uintptr_t)p;
    c->z.avail_in = (uInt)n;
    while (c->z.avail_in > 0) {
        c->z.next_out = s->zbuf;
        c->z.avail_out = sizeof s->zbuf;
        int zr = inflate(&c->z, Z_NO_FLUSH);
        pb_feed(&c->pb, s->zbuf, sizeof s->zbuf - c->z.avail_out);
        if (zr == Z_STREAM_END) {
            c->z_done = 1;
            break;
        }
        if (zr != Z_OK) {
            sink_fail(s, "gzip body does not inflate (%d)", zr);
            return -1;
        }
    }
    return 0;
}

/* The body is complete: count the request and answer it. */
static int end_request(sink *s, conn *c)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: application/x-protobuf\r\n"
                             "Content-Length: 0\r\n\r\n";
    if (c->z_live) {
        int done = c->z_done && c->z.avail_in == 0;
        inflateEnd(&c->z);
        c->z_live = 0;
        if (!done) {
            sink_fail(s, "gzip body with trailing bytes");
            return -1;
        }
    }
    if (!pb_complete(&c->pb)) {
        sink_fail(s,
                  "request %" PRIu64 " is not a well-formed "
                  "ExportTraceServiceRequest",
                  s->requests + 1);
        return -1;
    }
    s->requests++;
    s->body_bytes += c->body_len;
    /* Atomic: the steady-state sampler reads it while the sink runs. */
    __atomic_fetch_add(&s->spans, c->pb.spans, __ATOMIC_RELAXED);
    if (c->body_len > s->max_body) {
        s->max_body = c->body_len;
    }
    c->in_body = 0;
    c->hdr_len = 0;
    return send_all(c->fd, ok, sizeof ok - 1);
}

/* Process n received bytes of one connection. -1: close it. */
static int conn_input(sink *s, conn *c, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (c->in_body) {
            size_t k = c->body_left < n ? (size_t)c->body_left : n;
            if (body_bytes(s, c, p, k) != 0) {
                return -1;
            }
            c->body_left -= k;
            p += k;
            n -= k;
            if (c->body_left == 0 && end_request(s, c) != 0) {
                return -1;
            }
            continue;
        }
        /* Headers: append, then look for the blank line. */
        size_t room = HDR_MAX - 1 - c->hdr_len;
        size_t k = n < room ? n : room;
        size_t from = c->hdr_len > 3 ? c->hdr_len - 3 : 0;
        memcpy(c->hdr + c->hdr_len, p, k);
        c->hdr_len += k;
        c->hdr[c->hdr_len] = '\0';
        char *blank = strstr(c->hdr + from, "\r\n\r\n");
        if (blank == NULL) {
            if (c->hdr_len >= HDR_MAX - 1) {
                sink_fail(s, "request headers over %d bytes", HDR_MAX);
                return -1;
            }
            p += k;
            n -= k;
            continue;
        }
        size_t hdr_end = (size_t)(blank - c->hdr) + 4;
        size_t used = hdr_end - (c->hdr_len - k); /* of this chunk */
        c->hdr[hdr_end] = '\0';
        c->hdr_len = hdr_end;
        p += used;
        n -= used;
        if (begin_request(s, c) != 0) {
            return -1;
        }
        if (c->body_left == 0 && end_request(s, c) != 0) {
            return -1;
        }
    }
    return 0;
}

static void sink_accept(sink *s)
{
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (s->conns[i].fd < 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            s->conns[i].fd = fd;
            s->conns[i].in_body = 0;
            s->conns[i].hdr_len = 0;
            s->connections++;
            return;
        }
    }
    sink_fail(s, "more than %d connections at once", MAX_CONNS);
    close(fd);
}

static void *sink_main(void *arg)
{
    sink *s = arg;
    struct pollfd pf[MAX_CONNS + 2];
    int which[MAX_CONNS + 2];

    for (;;) {
        nfds_t n = 0;
        pf[n].fd = s->wake[0];
        pf[n++].events = POLLIN;
        pf[n].fd = s->listen_fd;
        pf[n++].events = POLLIN;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (s->conns[i].fd >= 0) {
                which[n] = i;
                pf[n].fd = s->conns[i].fd;
                pf[n++].events = POLLIN;
            }
        }
        if (poll(pf, n, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            sink_fail(s, "poll: %s", strerror(errno));
            break;
        }
        if (pf[0].revents != 0) {
            break; /* asked to stop */
        }
        if (pf[1].revents & POLLIN) {
            sink_accept(s);
        }
        for (nfds_t k = 2; k < n; k++) {
            if (pf[k].revents == 0) {
                continue;
            }
            conn *c = &s->conns[which[k]];
            ssize_t r = recv(c->fd, s->buf, sizeof s->buf, 0);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                if (c->in_body || c->hdr_len > 0) {
                    sink_fail(s, "connection closed inside a request");
                }
                conn_close(c);
                continue;
            }
            if (conn_input(s, c, s->buf, (size_t)r) != 0) {
                static const char bad[] = "HTTP/1.1 400 Bad Request\r\n"
                                          "Content-Length: 0\r\n"
                                          "Connection: close\r\n\r\n";
                send_all(c->fd, bad, sizeof bad - 1);
                conn_close(c);
            }
        }
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        conn_close(&s->conns[i]);
    }
    return NULL;
}

/* Stop the sink thread and wait for it: its counters are final then. */
static void sink_stop(sink *s)
{
    if (s->running) {
        char b = 1;
        ssize_t w;
        do {
            w = write(s->wake[1], &b, 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(s->thread, NULL);
        s->running = 0;
    }
}

static void sink_free(sink *s)
{
    if (s == NULL) {
        return;
    }
    sink_stop(s);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    free(s);
}

/* Listen on 127.0.0.1:<ephemeral> and start the sink thread. */
static int sink_start(sink **out)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    sink *s = calloc(1, sizeof *s);

    *out = NULL;
    if (s == NULL) {
        die_msg("out of memory");
        return -1;
    }
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
        s->conns[i].fd = -1;
    }
    if (pipe(s->wake) != 0) {
        s->wake[0] = s->wake[1] = -1;
        die_msg("pipe: %s", strerror(errno));
        goto fail;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0 ||
        bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->listen_fd, 16) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        die_msg("sink socket: %s", strerror(errno));
        goto fail;
    }
    s->port = ntohs(a.sin_port);
    int e = pthread_create(&s->thread, NULL, sink_main, s);
    if (e != 0) {
        die_msg("pthread_create: %s", strerror(e));
        goto fail;
    }
    s->running = 1;
    *out = s;
    return 0;
fail:
    sink_free(s);
    return -1;
}

/* CPU time the sink thread has used, in microseconds. */
static uint64_t sink_cpu_us(const sink *s)
{
    clockid_t cid;
    struct timespec t;
    if (pthread_getcpuclockid(s->thread, &cid) != 0 ||
        clock_gettime(cid, &t) != 0) {
        return 0;
    }
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* ---- the fill: a backlog of closed spans, in a child process ------------- */

static int open_recorder(taskspan **out, const char *path,
                         const char *endpoint)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.endpoint = endpoint;
    o.close_timeout_ms = -1;
    return open_recorder_with(out, path, &o);
}

static int emit_ok(taskspan *ts, taskspan_code code, const char *what)
{
    if (code != TASKSPAN_OK) {
        die_msg("%s: %s (%s)", what, taskspan_errmsg(ts),
                taskspan_strerror(code));
        return -1;
    }
    return 0;
}

/* Events per work span: 4 (the benchmark span), or more for the growth
 * case (lease_renewed repeated). */
static int g_events_per_span = EVENTS_PER_SPAN;

/* The events of one work span, 3 attributes each: work_item_start,
 * lease_acquired, lease_renewed x (g_events_per_span - 3),
 * work_item_done. */
static int emit_work_span(taskspan *ts, const char *task_id, size_t item,
                          size_t index)
{
    char wid[32], key[40], title[64];
    snprintf(wid, sizeof wid, "wi_%06zu", item);
    snprintf(key, sizeof key, "work_%s", wid);
    snprintf(title, sizeof title, "work item %zu of the benchmark", item);

    for (int e = 0; e < g_events_per_span; e++) {
        int last = e == g_events_per_span - 1;
        const char *type = e == 0   ? "work_item_start"
                           : last   ? "work_item_done"
                           : e == 1 ? "lease_acquired"
                                    : "lease_renewed";
        const char *actor = e == 0 || last ? "worker" : "lease_manager";
        const char *int_key = e == 0   ? "index"
                              : last   ? "files_changed"
                              : e == 1 ? "lease_duration_seconds"
                                       : "extended_by_seconds";
        const char *str_key = e == 0 ? "work_type"
                              : last ? "title"
                                     : "lease_holder";
        const char *str_val = e == 0 ? "code_change"
                              : last ? title
                                     : "worker-3@bench-host";
        int64_t int_val = e == 0 ? (int64_t)index
                          : last ? (int64_t)(item % 7)
                                 : 300;
        taskspan_attr attrs[3];
        taskspan_event ev = TASKSPAN_EVENT_INIT;
        attrs[0] = taskspan_attr_str("work_item_id", wid);
        attrs[1] = taskspan_attr_int(int_key, int_val);
        attrs[2] = taskspan_attr_str(str_key, str_val);
        ev.task_id = task_id;
        ev.event_type = type;
        ev.actor = actor;
        ev.span_key = key;
        ev.parent_span_key = "main";
        ev.phase = "executing";
        ev.attrs = attrs;
        ev.n_attrs = 3;
        if (emit_ok(ts, taskspan_emit(NULL, ts, &ev), type) != 0) {
            return -1;
        }
    }
    return 0;
}

static size_t task_count(size_t spans)
{
    return (spans + ITEMS_PER_TASK - 1) / ITEMS_PER_TASK;
}

static uint64_t fill_events(size_t spans)
{
    return (uint64_t)spans * (uint64_t)g_events_per_span +
           2 * (uint64_t)task_count(spans);
}

/* Record the backlog, export off: the first task (ITEMS_PER_TASK work
 * spans, or fewer if spans is smaller) through taskspan_emit(), then the
 * others as SQL copies of it (bench_copy_task), so that a backlog of a
 * million spans fills in seconds. spans is a multiple of ITEMS_PER_TASK
 * when larger (main() rounds it). */
static int fill_backlog(const char *path, size_t spans)
{
    taskspan *ts = NULL;
    taskspan_stats st;
    size_t n = spans < ITEMS_PER_TASK ? spans : ITEMS_PER_TASK;
    int rc = -1;

    if (open_recorder(&ts, path, NULL) != 0) {
        return -1;
    }
    if (emit_ok(ts,
                taskspan_emit_runner_spawn(NULL, ts, TEMPLATE_TASK,
                                           (int64_t)getpid(), "bench", NULL),
                "runner_spawn") != 0) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (emit_work_span(ts, TEMPLATE_TASK, i, i) != 0) {
            goto done;
        }
    }
    if (emit_ok(ts,
                taskspan_emit_runner_exit(NULL, ts, TEMPLATE_TASK,
                                          (int64_t)getpid(), "done",
                                          (int64_t)n, NULL),
                "runner_exit") != 0) {
        goto done;
    }
    if (taskspan_get_stats(&st, ts) != TASKSPAN_OK ||
        st.events_recorded != fill_events(n) || st.events_failed != 0) {
        die_msg("fill recorded %" PRIu64 " events, expected %" PRIu64,
                st.events_recorded, fill_events(n));
        goto done;
    }
    rc = 0;
done:
    taskspan_close(ts);
    if (rc == 0) {
        rc = bench_copy_task(path, TEMPLATE_TASK, "bench-export-task-", 1,
                             (long)task_count(spans));
    }
    return rc;
}

/* Fill in a child, so the parent's memory never holds the fill. */
static int fill_in_child(const char *path, size_t spans, double *out_s)
{
    uint64_t t0 = mono_ns();
    int wst = 0;

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        die_msg("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int rc = fill_backlog(path, spans);
        fflush(NULL);
        _exit(rc == 0 ? 0 : 1);
    }
    while (waitpid(pid, &wst, 0) < 0) {
        if (errno != EINTR) {
            die_msg("waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
        die_msg("the fill process failed");
        return -1;
    }
    *out_s = (double)(mono_ns() - t0) / 1e9;
    return 0;
}

/* ---- the drain ----------------------------------------------------------- */

/* One run of drain_backlog. */
typedef struct run_result {
    double wall_s;
    double spans_per_s;
    double cpu_us_per_span;  /* whole process, user + sys */
    double user_us_per_span; /* whole process */
    double sys_us_per_span;  /* whole process */
    double sink_us_per_span; /* the sink thread's share of cpu_us */
    double peak_rss_mib;     /* VmHWM after the reset */
    double base_rss_mib;     /* VmRSS when the flush began */
    double requests;
    double bytes_per_span; /* request bodies / spans */
    double spans_per_request;
    double max_body_kib;
    double first_request_s; /* flush start to the first request */
    double buffer_mib_after;
    double connections;
    double gzip_requests;
    double requests_failed;
} run_result;

static int run_drain(run_result *out, const char *path, size_t spans,
                     char *rss_note, size_t rss_note_size)
{
    char endpoint[64];
    sink *s = NULL;
    taskspan *ts = NULL;
    taskspan_export_stats xs;
    struct rusage ru0, ru1;
    uint64_t expected = (uint64_t)spans + task_count(spans);
    int rc = -1;

    if (sink_start(&s) != 0) {
        return -1;
    }
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/v1/traces",
             s->port);
    if (open_recorder(&ts, path, endpoint) != 0) {
        goto done;
    }
    if (reset_peak_rss(rss_note, rss_note_size) == 0) {
        snprintf(rss_note, rss_note_size,
                 "VmHWM reset with /proc/self/clear_refs before the flush");
    }
    long base_kb = status_kb("VmRSS");
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t sink0 = sink_cpu_us(s);
    uint64_t t0 = mono_ns();
    taskspan_code code = taskspan_flush(ts, -1);
    uint64_t t1 = mono_ns();
    getrusage(RUSAGE_SELF, &ru1);
    uint64_t sink1 = sink_cpu_us(s);
    long hwm_kb = status_kb("VmHWM");
    if (code != TASKSPAN_OK) {
        die_msg("taskspan_flush: %s (%s)", taskspan_errmsg(ts),
                taskspan_strerror(code));
        goto done;
    }
    code = taskspan_get_export_stats(&xs, ts);
    if (code != TASKSPAN_OK) {
        die_msg("taskspan_get_export_stats: %s", taskspan_strerror(code));
        goto done;
    }
    taskspan_close(ts);
    ts = NULL;
    sink_stop(s);
    if (s->error[0] != '\0') {
        die_msg("sink: %s", s->error);
        goto done;
    }
    if (s->spans != expected || xs.spans_pending != 0 ||
        xs.spans_delivered != expected || xs.spans_rejected != 0) {
        die_msg("expected %" PRIu64 " spans delivered; the sink received "
                "%" PRIu64 " in %" PRIu64 " requests, the recorder counts "
                "%" PRIu64 " delivered, %" PRIu64 " rejected, %" PRIu64
                " pending (last error: %s)",
                expected, s->spans, s->requests, xs.spans_delivered,
                xs.spans_rejected, xs.spans_pending,
                xs.last_error[0] ? xs.last_error : "none");
        goto done;
    }
    if (s->requests != xs.requests_ok) {
        die_msg("the sink answered %" PRIu64 " requests, the recorder "
                "counts %" PRIu64 " ok",
                s->requests, xs.requests_ok);
        goto done;
    }
    double n = (double)s->spans;
    double wall = (double)(t1 - t0) / 1e9;
    uint64_t user = timeval_us(ru1.ru_utime) - timeval_us(ru0.ru_utime);
    uint64_t sys = timeval_us(ru1.ru_stime) - timeval_us(ru0.ru_stime);
    memset(out, 0, sizeof *out);
    out->wall_s = wall;
    out->spans_per_s = wall > 0 ? n / wall : 0.0;
    out->cpu_us_per_span = (double)(user + sys) / n;
    out->user_us_per_span = (double)user / n;
    out->sys_us_per_span = (double)sys / n;
    out->sink_us_per_span = (double)(sink1 - sink0) / n;
    out->peak_rss_mib = hwm_kb >= 0 ? (double)hwm_kb / 1024.0 : -1.0;
    out->base_rss_mib = base_kb >= 0 ? (double)base_kb / 1024.0 : -1.0;
    out->requests = (double)s->requests;
    out->bytes_per_span = (double)s->body_bytes / n;
    out->spans_per_request = s->requests ? n / (double)s->requests : 0.0;
    out->max_body_kib = (double)s->max_body / 1024.0;
    out->first_request_s = s->first_request_ns > t0
                               ? (double)(s->first_request_ns - t0) / 1e9
                               : 0.0;
    out->buffer_mib_after = (double)db_bytes(path) / 1048576.0;
    out->connections = (double)s->connections;
    out->gzip_requests = (double)s->gzip_requests;
    out->requests_failed = (double)xs.requests_failed;
    rc = 0;
done:
    taskspan_close(ts);
    sink_free(s);
    return rc;
}

/* ---- reporting ----------------------------------------------------------- */

/* The spread over runs of the field at offset of runs[0..nruns). */
static spread run_spread(const run_result *runs, int nruns, size_t offset)
{
    return spread_of(runs, sizeof *runs, nruns, offset);
}

#define MED(field) (run_spread(runs, nruns, offsetof(run_result, field)).med)

static void print_table(const run_result *runs, int nruns, uint64_t spans,
                        const char *name)
{
    spread sps = run_spread(runs, nruns, offsetof(run_result, spans_per_s));
    spread rss = run_spread(runs, nruns, offsetof(run_result, peak_rss_mib));
    printf("%-18s %8s %4s  %28s\n", "", "", "",
           "------ spans/s over runs ----");
    printf("%-18s %8s %4s  %8s %9s %9s  %8s %8s  %8s %8s  %8s %9s  %8s "
           "%8s\n",
           "case", "spans", "runs", "min", "median", "max", "cpu us",
           "sink us", "peak RSS", "base RSS", "requests", "bytes", "to 1st",
           "wall");
    printf("%-18s %8s %4s  %8s %9s %9s  %8s %8s  %8s %8s  %8s %9s  %8s "
           "%8s\n",
           "", "", "", "", "", "", "/span", "/span", "MiB", "MiB", "", "/span",
           "req s", "s");
    printf("%-18s %8" PRIu64 " %4d  %8.0f %9.0f %9.0f  %8.1f %8.2f  %8.1f "
           "%8.1f  %8.0f %9.1f  %8.2f %8.2f\n",
           name, spans, nruns, sps.min, sps.med, sps.max, MED(cpu_us_per_span),
           MED(sink_us_per_span), rss.max, MED(base_rss_mib), MED(requests),
           MED(bytes_per_span), MED(first_request_s), MED(wall_s));
    printf("\n(cpu us/span: user+sys of the whole process over the flush, "
           "sink thread included;\n sink us/span: the sink thread's share; "
           "peak RSS: largest VmHWM over runs;\n to 1st req: flush start to "
           "the first request's headers, i.e. discovery and encoding;\n "
           "other columns: median over runs)\n");
    printf("user %.1f + sys %.1f us/span; %.1f spans/request, largest body "
           "%.0f KiB; %.0f connection(s)\n\n",
           MED(user_us_per_span), MED(sys_us_per_span), MED(spans_per_request),
           MED(max_body_kib), MED(connections));
}

static void print_json(const run_result *runs, int nruns, uint64_t spans,
                       size_t work_spans, double fill_s, double buffer_mib,
                       const char *rss_method, const char *name)
{
    spread sps = run_spread(runs, nruns, offsetof(run_result, spans_per_s));
    spread rss = run_spread(runs, nruns, offsetof(run_result, peak_rss_mib));
    printf("BENCH_JSON {\"bench\":\"export\",\"case\":\"%s\","
           "\"events_per_span\":%d,\"spans\":%" PRIu64
           ",\"work_spans\":%zu,\"tasks\":%zu,"
           "\"events\":%" PRIu64 ",\"runs\":%d,"
           "\"spans_per_s\":%.0f,\"spans_per_s_min\":%.0f,"
           "\"spans_per_s_max\":%.0f,\"wall_s\":%.3f,"
           "\"cpu_us_per_span\":%.2f,\"user_us_per_span\":%.2f,"
           "\"sys_us_per_span\":%.2f,\"sink_cpu_us_per_span\":%.3f,"
           "\"peak_rss_mib\":%.1f,\"base_rss_mib\":%.1f,"
           "\"rss_method\":\"%s\",\"requests\":%.0f,"
           "\"spans_per_request\":%.1f,\"bytes_per_span\":%.1f,"
           "\"max_body_kib\":%.1f,\"first_request_s\":%.3f,"
           "\"connections\":%.0f,\"requests_failed\":%.0f,"
           "\"compression\":\"%s\",\"fill_s\":%.2f,"
           "\"buffer_mib\":%.1f,\"buffer_mib_after\":%.1f,"
           "\"spans_per_s_runs\":[",
           name, g_events_per_span, spans, work_spans, task_count(work_spans),
           fill_events(work_spans), nruns, sps.med, sps.min, sps.max,
           MED(wall_s), MED(cpu_us_per_span), MED(user_us_per_span),
           MED(sys_us_per_span), MED(sink_us_per_span), rss.max,
           MED(base_rss_mib), rss_method, MED(requests),
           MED(spans_per_request), MED(bytes_per_span), MED(max_body_kib),
           MED(first_request_s), MED(connections), MED(requests_failed),
           MED(gzip_requests) > 0 ? "gzip" : "none", fill_s, buffer_mib,
           MED(buffer_mib_after));
    for (int r = 0; r < nruns; r++) {
        printf("%s%.0f", r ? "," : "", runs[r].spans_per_s);
    }
    printf("]}\n");
}

/* An OTEL_* setting that shapes the requests, as the environment has it. */
static void print_setting(const char *name, const char *def)
{
    const char *v = getenv(name);
    printf("  %s=%s%s\n", name, v != NULL && v[0] ? v : def,
           v != NULL && v[0] ? "" : " (unset: default)");
}

/* The machine line, with the versions of libcurl and zlib. */
static void print_export_machine(const char *dir)
{
    char libs[256];
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    snprintf(libs, sizeof libs, ", libcurl %s, zlib %s",
             cv != NULL ? cv->version : "?", zlibVersion());
    print_machine(dir, libs);
}

/* ---- steady state: a producer and the exporter together ----------------- */

#define LAG_SAMPLES 4096
#define LAG_PERIOD_NS 20000000u /* 20 ms */

typedef struct steady_shared {
    sink *s;
    uint64_t closed; /* spans closed by the producer (atomic) */
    int stop;        /* atomic */
    uint64_t lag[LAG_SAMPLES];
    size_t nlag;
} steady_shared;

static void *lag_sampler(void *arg)
{
    steady_shared *sh = arg;
    struct timespec period = {0, LAG_PERIOD_NS};
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE) &&
           sh->nlag < LAG_SAMPLES) {
        nanosleep(&period, NULL);
        uint64_t closed = __atomic_load_n(&sh->closed, __ATOMIC_ACQUIRE);
        uint64_t got = __atomic_load_n(&sh->s->spans, __ATOMIC_RELAXED);
        sh->lag[sh->nlag++] = closed > got ? closed - got : 0;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct steady_result {
    double seconds, produced_spans, produce_spans_per_s, app_us_per_span;
    double delivered_spans_per_s, lag_p50, lag_p99, lag_max, drain_after_s;
    double cpu_us_per_span, peak_rss_mib;
} steady_result;

/* A producer (this thread) records benchmark spans with export ON (the
 * recorder's background exporter) to the sink for `seconds`; a sampler
 * thread reads the lag (spans closed by the producer minus spans the sink
 * received) every 20 ms. Then taskspan_flush() delivers what is left and
 * the sink must have received every span. */
static int run_steady(steady_result *out, const char *dir, double seconds)
{
    char path[BENCH_PATH_LEN], endpoint[64];
    sink *s = NULL;
    taskspan *ts = NULL;
    steady_shared *sh = calloc(1, sizeof *sh);
    pthread_t sampler;
    int sampler_started = 0, rc = -1;
    struct rusage ru0, ru1;
    char rss_note[256];

    if (sh == NULL) {
        die_msg("out of memory");
        return -1;
    }
    if (make_path(path, dir, "steady.db", BENCH_NO_RUN) != 0 ||
        sink_start(&s) != 0) {
        free(sh);
        return -1;
    }
    sh->s = s;
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u/v1/traces",
             s->port);
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.export_mode = TASKSPAN_EXPORT_ON;
    o.endpoint = endpoint;
    o.close_timeout_ms = -1;
    if (open_recorder_with(&ts, path, &o) != 0) {
        goto done;
    }
    reset_peak_rss(rss_note, sizeof rss_note);
    int e = pthread_create(&sampler, NULL, lag_sampler, sh);
    if (e != 0) {
        die_msg("pthread_create: %s", strerror(e));
        goto done;
    }
    sampler_started = 1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = mono_ns(), app_ns = 0, spans = 0;
    uint64_t until = t0 + (uint64_t)(seconds * 1e9);
    for (size_t t = 0; mono_ns() < until; t++) {
        char task_id[64];
        snprintf(task_id, sizeof task_id, "bench-steady-%06zu", t);
        uint64_t a0 = mono_ns();
        if (emit_ok(ts,
                    taskspan_emit_runner_spawn(
                        NULL, ts, task_id, (int64_t)getpid(), "bench", NULL),
                    "runner_spawn") != 0) {
            goto done;
        }
        app_ns += mono_ns() - a0;
        for (size_t i = 0; i < ITEMS_PER_TASK; i++) {
            a0 = mono_ns();
            if (emit_work_span(ts, task_id, i, i) != 0) {
                goto done;
            }
            app_ns += mono_ns() - a0;
            __atomic_fetch_add(&sh->closed, 1, __ATOMIC_RELEASE);
            spans++;
        }
        a0 = mono_ns();
        if (emit_ok(ts,
                    taskspan_emit_runner_exit(NULL, ts, task_id,
                                              (int64_t)getpid(), "done",
                                              ITEMS_PER_TASK, NULL),
                    "runner_exit") != 0) {
            goto done;
        }
        app_ns += mono_ns() - a0;
        __atomic_fetch_add(&sh->closed, 1, __ATOMIC_RELEASE);
        spans++;
    }
    uint64_t t1 = mono_ns();
    uint64_t delivered_at_stop = __atomic_load_n(&s->spans, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
    pthread_join(sampler, NULL);
    sampler_started = 0;
    taskspan_code code = taskspan_flush(ts, -1);
    uint64_t t2 = mono_ns();
    getrusage(RUSAGE_SELF, &ru1);
    long hwm_kb = status_kb("VmHWM");
    if (code != TASKSPAN_OK) {
        die_msg("taskspan_flush: %s (%s)", taskspan_errmsg(ts),
                taskspan_strerror(code));
        goto done;
    }
    taskspan_close(ts);
    ts = NULL;
    sink_stop(s);
    if (s->error[0] != '\0' || s->spans != spans) {
        die_msg("steady state: produced %" PRIu64 " spans, the sink received "
                "%" PRIu64 "%s%s",
                spans, s->spans, s->error[0] ? ": " : "", s->error);
        goto done;
    }
    qsort(sh->lag, sh->nlag, sizeof sh->lag[0], cmp_u64);
    double wall = (double)(t1 - t0) / 1e9;
    memset(out, 0, sizeof *out);
    out->seconds = wall;
    out->produced_spans = (double)spans;
    out->produce_spans_per_s = (double)spans / wall;
    out->app_us_per_span = (double)app_ns / 1000.0 / (double)spans;
    out->delivered_spans_per_s = (double)delivered_at_stop / wall;
    if (sh->nlag > 0) {
        out->lag_p50 = (double)sh->lag[(sh->nlag - 1) / 2];
        out->lag_p99 = (double)
                           sh->lag[(size_t)((double)(sh->nlag - 1) * 0.99)];
        out->lag_max = (double)sh->lag[sh->nlag - 1];
    }
    out->drain_after_s = (double)(t2 - t1) / 1e9;
    out->cpu_us_per_span = (double)(timeval_us(ru1.ru_utime) -
                                    timeval_us(ru0.ru_utime) +
                                    timeval_us(ru1.ru_stime) -
                                    timeval_us(ru0.ru_stime)) /
                           (double)spans;
    out->peak_rss_mib = hwm_kb >= 0 ? (double)hwm_kb / 1024.0 : -1.0;
    rc = 0;
done:
    if (sampler_started) {
        __atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
        pthread_join(sampler, NULL);
    }
    taskspan_close(ts);
    sink_free(s);
    remove_db(path);
    free(sh);
    return rc;
}

/* ---- one backlog: fill, then drain it --runs times ----------------------- */

static int drain_case(const char *dir, size_t n, int nruns, const char *name)
{
    char backlog[BENCH_PATH_LEN], copy[BENCH_PATH_LEN], rss_note[256] = "";
    run_result *all = NULL;
    double fill_s = 0.0;
    uint64_t expected = (uint64_t)n + task_count(n);
    int rc = -1;

    if (make_path(backlog, dir, "backlog.db", BENCH_NO_RUN) != 0 ||
        make_path(copy, dir, "drain.db", BENCH_NO_RUN) != 0) {
        return -1;
    }
    printf("\n-- %s: %zu work spans + %zu main spans in %zu tasks of up to "
           "%d items, %" PRIu64 " events (%d per work span, 3 attributes "
           "each)\n",
           name, n, task_count(n), task_count(n), ITEMS_PER_TASK,
           fill_events(n), g_events_per_span);
    fflush(stdout);
    if (fill_in_child(backlog, n, &fill_s) != 0) {
        goto out;
    }
    double buffer_mib = (double)db_bytes(backlog) / 1048576.0;
    printf("fill: %" PRIu64 " events in %.1f s (first task recorded, the "
           "others copied with SQL; child process), buffer %.1f MiB\n",
           fill_events(n), fill_s, buffer_mib);
    fflush(stdout);

    /* Allocated after the fork, so the child owns none of our heap. */
    all = calloc((size_t)nruns, sizeof *all);
    if (all == NULL) {
        die_msg("out of memory");
        goto out;
    }
    for (int r = 0; r < nruns; r++) {
        /* The last run drains the backlog itself; earlier ones a copy. */
        const char *path = r + 1 < nruns ? copy : backlog;
        if (path == copy && copy_db(backlog, copy) != 0) {
            goto out;
        }
        int st = run_drain(&all[r], path, n, rss_note, sizeof rss_note);
        remove_db(path);
        if (st != 0) {
            goto out;
        }
        fprintf(stderr,
                "bench_export: %s run %d of %d done: %" PRIu64
                " spans in %.2f s\n",
                name, r + 1, nruns, expected, all[r].wall_s);
    }
    printf("peak RSS: %s\n", rss_note);
    printf("verified: the sink received exactly %" PRIu64 " spans in every "
           "run, nothing pending\n\n",
           expected);
    print_table(all, nruns, expected, name);
    print_json(all, nruns, expected, n, fill_s, buffer_mib,
               strncmp(rss_note, "VmHWM reset", 11) == 0 ? "clear_refs"
                                                         : "since_start",
               name);
    rc = 0;
out:
    fflush(stdout);
    free(all);
    remove_db(backlog);
    remove_db(copy);
    return rc;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_export [--dir DIR] [--spans N] [--runs R] "
            "[--short] [--drain-only | --growth-only]\n"
            "  --dir DIR     make the temporary directory inside DIR "
            "(default /tmp)\n"
            "  --spans N     work spans in the backlog, %d per task "
            "(default %d; --short: %d)\n"
            "  --runs R      drains of a copy of the backlog (default %d)\n"
            "  --short       a quick pass: --spans %d --runs 1\n"
            "  --drain-only  the drain cases alone (to profile or compare "
            "builds)\n"
            "  --growth-only the events-per-span cases alone\n",
            ITEMS_PER_TASK, DEFAULT_SPANS, SHORT_SPANS, DEFAULT_RUNS,
            SHORT_SPANS);
}

int main(int argc, char **argv)
{
    bench_args args = BENCH_ARGS_INIT(usage);
    long spans = -1;
    bool drain_only = false, growth_only = false;

    bench_set_name("bench_export");

    for (int i = 1; i < argc; i++) {
        const char *v;
        int exit_code;
        if ((v = opt_value("--spans", argc, argv, &i)) != NULL) {
            if (parse_count("--spans", v, MAX_SPANS, &spans) != 0) {
                return 2;
            }
        } else if (strcmp(argv[i], "--drain-only") == 0) {
            drain_only = true;
        } else if (strcmp(argv[i], "--growth-only") == 0) {
            growth_only = true;
        } else if (!common_option(&args, argc, argv, &i, &exit_code)) {
            return exit_code;
        }
    }
    if (args.runs < 0) {
        args.runs = args.short_mode ? 1 : DEFAULT_RUNS;
    }
    int nruns = (int)args.runs;
    /* Backlogs: --spans N alone, else 100,000 and 1,000,000 (--short:
     * 5,000). Above one task, a multiple of ITEMS_PER_TASK (the copies of
     * the first task are whole). */
    size_t sizes[2] = {DEFAULT_SPANS, FULL_BIG_SPANS};
    int nsizes = 2;
    if (spans > 0 || args.short_mode) {
        sizes[0] = spans > 0 ? (size_t)spans : SHORT_SPANS;
        nsizes = 1;
    }
    for (int i = 0; i < nsizes; i++) {
        if (sizes[i] > ITEMS_PER_TASK && sizes[i] % ITEMS_PER_TASK != 0) {
            sizes[i] += ITEMS_PER_TASK - sizes[i] % ITEMS_PER_TASK;
        }
    }
    double steady_s = args.short_mode ? SHORT_STEADY_S : DEFAULT_STEADY_S;
    long eps_events = args.short_mode ? SHORT_EPS_EVENTS : DEFAULT_EPS_EVENTS;

    char dir[BENCH_PATH_LEN];
    int dir_status = make_bench_dir(dir, args.base);
    if (dir_status != 0) {
        return dir_status;
    }
    int status = 1;

    print_export_machine(dir);
    printf("export: drains with export_mode OFF, timed taskspan_flush(ts, "
           "-1) (the inline exporter, in the calling thread) to a loopback "
           "sink thread; %d run%s\n",
           nruns, nruns == 1 ? "" : "s");
    print_setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512");
    print_setting("TASKSPAN_MAX_REQUEST_BYTES", "4194304");
    print_setting("OTEL_EXPORTER_OTLP_COMPRESSION", "none");
    fflush(stdout);

    for (int i = 0; i < nsizes && !growth_only; i++) {
        char name[32];
        snprintf(name, sizeof name, "drain_%zu", sizes[i]);
        if (drain_case(dir, sizes[i], nruns, name) != 0) {
            goto out;
        }
    }
    if (drain_only) {
        status = 0;
        goto out;
    }

    if (growth_only) {
        goto growth;
    }

    /* Steady state: producer and background exporter together. */
    steady_result st;
    printf("\n-- steady: a producer records benchmark spans for %.1f s "
           "with export ON (background exporter) to the sink; lag = spans "
           "closed - spans received, sampled every 20 ms\n",
           steady_s);
    fflush(stdout);
    if (run_steady(&st, dir, steady_s) != 0) {
        goto out;
    }
    printf("%-18s %9s %9s %9s %10s %8s %8s %8s %9s %8s %8s\n", "case", "spans",
           "made/s", "app us", "deliv/s", "lag p50", "lag p99", "lag max",
           "drain s", "cpu us", "peak RSS");
    printf("%-18s %9.0f %9.0f %9.2f %10.0f %8.0f %8.0f %8.0f %9.2f %8.1f "
           "%8.1f\n\n",
           "steady", st.produced_spans, st.produce_spans_per_s,
           st.app_us_per_span, st.delivered_spans_per_s, st.lag_p50,
           st.lag_p99, st.lag_max, st.drain_after_s, st.cpu_us_per_span,
           st.peak_rss_mib);
    printf("(app us: producer's time in emit calls per span, 4 events + its "
           "share of runner_spawn/exit; deliv/s: spans the sink received "
           "while the producer ran / its time; drain s: flush after the "
           "producer stopped; cpu us: whole process per span)\n");
    printf("BENCH_JSON {\"bench\":\"export\",\"case\":\"steady\","
           "\"seconds\":%.2f,\"spans\":%.0f,\"produce_spans_per_s\":%.0f,"
           "\"app_us_per_span\":%.3f,\"delivered_spans_per_s\":%.0f,"
           "\"lag_p50_spans\":%.0f,\"lag_p99_spans\":%.0f,"
           "\"lag_max_spans\":%.0f,\"drain_after_s\":%.3f,"
           "\"cpu_us_per_span\":%.2f,\"peak_rss_mib\":%.1f}\n",
           st.seconds, st.produced_spans, st.produce_spans_per_s,
           st.app_us_per_span, st.delivered_spans_per_s, st.lag_p50,
           st.lag_p99, st.lag_max, st.drain_after_s, st.cpu_us_per_span,
           st.peak_rss_mib);

growth:;
    /* Growth: the same number of events, in spans of 10 and of 10,000. */
    static const int eps_list[2] = {10, 10000};
    for (int i = 0; i < 2; i++) {
        char name[32];
        g_events_per_span = eps_list[i];
        size_t n = (size_t)(eps_events / eps_list[i]);
        n = n > 0 ? n : 1;
        snprintf(name, sizeof name, "events_per_span_%d", eps_list[i]);
        if (drain_case(dir, n, nruns, name) != 0) {
            goto out;
        }
    }
    g_events_per_span = EVENTS_PER_SPAN;
    status = 0;
out:
    fflush(stdout);
    if (rmdir(dir) != 0) {
        die_msg("rmdir %s: %s", dir, strerror(errno));
        status = 1;
    }
    return status;
}
