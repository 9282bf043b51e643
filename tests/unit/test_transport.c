/*
 * test_transport.c -- the libcurl transport (transport_curl.c) against real
 * HTTP over loopback, and the Retry-After parser.
 *
 * Each test starts a scripted HTTP/1.1 server on 127.0.0.1, port 0: a thread
 * that accepts connections, reads each request (headers and Content-Length
 * body) and answers with the next step of the test's script: a response,
 * a close, a reset or a hang. Every wait is bounded.
 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIB ((size_t)1024 * 1024)

/* ---- the scripted server ------------------------------------------------- */

typedef enum step_kind {
    STEP_REPLY, /* send head, Content-Length and body; keep the connection */
    STEP_CLOSE, /* close without answering (FIN) */
    STEP_RESET, /* close with a TCP reset (RST) */
    STEP_HANG,  /* answer nothing until the client leaves or the test ends */
    STEP_GREET, /* send head as soon as the connection opens, then close */
} step_kind;

typedef struct step {
    step_kind kind;
    const char *head; /* status line and headers, each ending in CRLF,
                         without Content-Length or the blank line */
    const uint8_t *body;
    size_t body_len;
} step;

typedef struct server {
    int fd;
    unsigned port;
    pthread_t thread;
    atomic_bool stop;
    const step *script;
    size_t n_script;
    size_t next;
    atomic_int accepted;
    atomic_int requests;
    /* The last request; read by the test after server_stop(). */
    char head[16384];
    uint8_t *body;
    size_t body_len;
} server;

/* Wait up to 20 ms for events on fd. >0 ready, 0 not yet, <0 error. */
static int wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, 20);
    if (n < 0 && errno == EINTR) {
        return 0;
    }
    return n;
}

/* Send all of buf, giving up on error or stop. */
static bool send_all(server *s, int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        if (atomic_load(&s->stop)) {
            return false;
        }
        if (wait_fd(fd, POLLOUT) <= 0) {
            continue;
        }
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Read some bytes into buf; 0 when the client left or the test ends. */
static ssize_t recv_some(server *s, int fd, void *buf, size_t len)
{
    while (!atomic_load(&s->stop)) {
        int r = wait_fd(fd, POLLIN);
        if (r < 0) {
            return 0;
        }
        if (r == 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        return n < 0 ? 0 : n;
    }
    return 0;
}

/* The value of Content-Length in a request head, 0 when absent. */
static size_t content_length(const char *head)
{
    for (const char *p = head; *p != '\0'; p++) {
        if ((p == head || p[-1] == '\n') &&
            strncasecmp(p, "content-length:", 15) == 0) {
            return (size_t)strtoull(p + 15, NULL, 10);
        }
    }
    return 0;
}

/* Read one request into s->head and s->body. false when none came. */
static bool read_request(server *s, int fd)
{
    size_t have = 0;
    char *end = NULL;

    while (end == NULL) {
        if (have + 1 >= sizeof s->head) {
            return false;
        }
        ssize_t n = recv_some(s, fd, s->head + have,
                              sizeof s->head - 1 - have);
        if (n <= 0) {
            return false;
        }
        have += (size_t)n;
        s->head[have] = '\0';
        end = strstr(s->head, "\r\n\r\n");
    }
    end += 4;
    size_t extra = have - (size_t)(end - s->head);
    size_t want = content_length(s->head);
    free(s->body);
    s->body = malloc(want + 1);
    s->body_len = 0;
    if (s->body == NULL || extra > want) {
        return false;
    }
    memcpy(s->body, end, extra);
    *end = '\0';
    s->body_len = extra;
    while (s->body_len < want) {
        ssize_t n = recv_some(s, fd, s->body + s->body_len,
                              want - s->body_len);
        if (n <= 0) {
            return false;
        }
        s->body_len += (size_t)n;
    }
    return true;
}

static bool send_reply(server *s, int fd, const step *st)
{
    char len_line[64];

    snprintf(len_line, sizeof len_line, "Content-Length: %zu\r\n\r\n",
             st->body_len);
    return send_all(s, fd, st->head, strlen(st->head)) &&
           send_all(s, fd, len_line, strlen(len_line)) &&
           send_all(s, fd, st->body, st->body_len);
}

/* Answer requests on one connection until the script says otherwise. */
static void serve_connection(server *s, int fd)
{
    if (s->next < s->n_script && s->script[s->next].kind == STEP_GREET) {
        const step *st = &s->script[s->next++];
        send_all(s, fd, st->head, strlen(st->head));
        return;
    }
    while (read_request(s, fd)) {
        atomic_fetch_add(&s->requests, 1);
        const step *st = s->next < s->n_script ? &s->script[s->next++] : NULL;
        if (st == NULL || st->kind == STEP_CLOSE) {
            return;
        }
        if (st->kind == STEP_RESET) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            return;
        }
        if (st->kind == STEP_HANG) {
            char sink[256];
            while (recv_some(s, fd, sink, sizeof sink) > 0) {
            }
            return;
        }
        if (!send_reply(s, fd, st)) {
            return;
        }
    }
}

static void *server_main(void *arg)
{
    server *s = arg;

    while (!atomic_load(&s->stop)) {
        if (wait_fd(s->fd, POLLIN) <= 0) {
            continue;
        }
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) {
            continue;
        }
        /* The reply goes out in three sends; without this, Nagle holds the
         * later ones for the client's delayed ACK (40 ms). */
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&s->accepted, 1);
        serve_connection(s, c);
        close(c);
    }
    return NULL;
}

/* A socket bound to 127.0.0.1 on a free port. OUT: *port. */
static int bind_loopback(unsigned *port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void server_start(server *s, const step *script, size_t n)
{
    memset(s, 0, sizeof *s);
    s->script = script;
    s->n_script = n;
    atomic_init(&s->stop, false);
    atomic_init(&s->accepted, 0);
    atomic_init(&s->requests, 0);
    s->fd = bind_loopback(&s->port);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static void server_free(server *s)
{
    free(s->body);
    s->body = NULL;
}

/* ---- helpers ------------------------------------------------------------- */

typedef struct fixture {
    server srv;
    char url[64];
    taskspan__export_config cfg;
    void *t;
    taskspan__http_result res;
} fixture;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Only the fields the transport reads are set; the rest stay zero. */
static void cfg_init(taskspan__export_config *cfg, char *url, int timeout_ms)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->enabled = true;
    cfg->endpoint = url;
    cfg->timeout_ms = timeout_ms;
}

/* Start a server with script and open a transport to it. */
static void fixture_start(fixture *f, const step *script, size_t n,
                          int timeout_ms)
{
    memset(f, 0, sizeof *f);
    server_start(&f->srv, script, n);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u/v1/traces",
             f->srv.port);
    cfg_init(&f->cfg, f->url, timeout_ms);
}

static void fixture_open(fixture *f)
{
    char err[256] = "";
    taskspan_code rc = taskspan__transport_curl.open(&f->t, &f->cfg, err,
                                                     sizeof err);
    if (rc != TASKSPAN_OK) {
        fail_msg("open: %s", err);
    }
}

static void post(fixture *f, const void *body, size_t len,
                 const atomic_bool *stop)
{
    taskspan__http_result_free(&f->res);
    taskspan__transport_curl.post(f->t, body, len, stop, &f->res);
}

static void fixture_end(fixture *f)
{
    taskspan__http_result_free(&f->res);
    taskspan__transport_curl.close(f->t);
    f->t = NULL;
    server_stop(&f->srv);
    server_free(&f->srv);
}

static const uint8_t payload[] = {0x0a, 0x03, 'a', 'b', 'c', 0x00, 0xff};

/* Does head hold a header line starting with line (case-insensitive)? */
static bool has_line(const char *head, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = head; *p != '\0'; p++) {
        if ((p == head || p[-1] == '\n') && strncasecmp(p, line, n) == 0) {
            return true;
        }
    }
    return false;
}

/* gunzip in; OUT: *out (malloc'd), *out_len. */
static void gunzip(uint8_t **out, size_t *out_len, const uint8_t *in,
                   size_t len, size_t max)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    *out = malloc(max);
    assert_non_null(*out);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = *out;
    z.avail_out = (uInt)max;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = z.total_out;
    inflateEnd(&z);
}

/* gzip in; OUT: *out (malloc'd), *out_len. */
static void gzip(uint8_t **out, size_t *out_len, const uint8_t *in, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(
        deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uLong bound = deflateBound(&z, len);
    *out = malloc(bound);
    assert_non_null(*out);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = *out;
    z.avail_out = (uInt)bound;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = z.total_out;
    deflateEnd(&z);
}

static uint8_t *pseudo_random(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

/* ---- Retry-After parsing ------------------------------------------------- */

/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC 7231 example. */
#define RFC_EXAMPLE_S 784111777

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(taskspan__parse_retry_after("2", 0), 2000);
    assert_int_equal(taskspan__parse_retry_after("0", 0), 0);
    assert_int_equal(taskspan__parse_retry_after("120", 0), 120000);
    assert_int_equal(taskspan__parse_retry_after(" 7\t\r\n", 0), 7000);
    assert_int_equal(taskspan__parse_retry_after("007", 0), 7000);
    assert_int_equal(taskspan__parse_retry_after("86400", 0), 86400000);
    /* Capped at a day, however large, without overflow. */
    assert_int_equal(taskspan__parse_retry_after("86401", 0), 86400000);
    assert_int_equal(
        taskspan__parse_retry_after("99999999999999999999999999999", 0),
        86400000);
    assert_int_equal(taskspan__parse_retry_after("-5", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("+5", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("1.5", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("5s", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("5 6", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("soon", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("", 0), -1);
    assert_int_equal(taskspan__parse_retry_after("   ", 0), -1);
    assert_int_equal(taskspan__parse_retry_after(NULL, 0), -1);
}

static void test_retry_after_dates(void **state)
{
    const int64_t now = RFC_EXAMPLE_S - 10;
    (void)state;

    /* The three forms RFC 7231 allows, 10 s ahead. */
    assert_int_equal(
        taskspan__parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        10000);
    assert_int_equal(
        taskspan__parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
        10000);
    assert_int_equal(
        taskspan__parse_retry_after("Sun Nov  6 08:49:37 1994", now), 10000);
    assert_int_equal(taskspan__parse_retry_after(
                         "  Sun, 06 Nov 1994 08:49:37 GMT\r\n", now),
                     10000);
    /* Names in another case are accepted. */
    assert_int_equal(
        taskspan__parse_retry_after("SUN, 06 NOV 1994 08:49:37 gmt", now),
        10000);
    /* Now and the past: retry at once. */
    assert_int_equal(taskspan__parse_retry_after(
                         "Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_S),
                     0);
    assert_int_equal(taskspan__parse_retry_after(
                         "Thu, 01 Jan 1970 00:00:00 GMT", RFC_EXAMPLE_S),
                     0);
    /* Far ahead: capped at a day. */
    assert_int_equal(taskspan__parse_retry_after(
                         "Fri, 31 Dec 9999 23:59:59 GMT", RFC_EXAMPLE_S),
                     86400000);
    /* Leap days and month ends: 2000-02-29 exists, 2100-02-29 does not. */
    assert_int_equal(taskspan__parse_retry_after(
                         "Tue, 29 Feb 2000 00:00:01 GMT", 951782400),
                     1000);
    assert_int_equal(
        taskspan__parse_retry_after("Mon, 29 Feb 2100 00:00:00 GMT", 0), -1);
    assert_int_equal(
        taskspan__parse_retry_after("Thu, 31 Apr 2025 00:00:00 GMT", 0), -1);
    assert_int_equal(
        taskspan__parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", 0), -1);
    assert_int_equal(
        taskspan__parse_retry_after("Sun, 06 Nov 1994 24:00:00 GMT", 0), -1);
    /* A leap second is a valid second. */
    assert_int_equal(taskspan__parse_retry_after(
                         "Sat, 31 Dec 2016 23:59:60 GMT", 1483228790),
                     10000);
    /* Malformed. */
    static const char *const bad[] = {
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT junk",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT and a very long tail of text",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (taskspan__parse_retry_after(bad[i], 0) != -1) {
            fail_msg("accepted '%s'", bad[i]);
        }
    }
}

/* RFC 850 two-digit years: more than 50 years ahead means last century. */
static void test_retry_after_rfc850_years(void **state)
{
    (void)state;
    /* Now: 2026-01-01T00:00:00Z. "30" is 2030; "94" is 1994 (the past). */
    const int64_t now = 1767225600;
    assert_int_equal(
        taskspan__parse_retry_after("Tuesday, 01-Jan-30 00:00:00 GMT", now),
        86400000);
    assert_int_equal(
        taskspan__parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 0);
    assert_int_equal(
        taskspan__parse_retry_after("Thursday, 01-Jan-26 00:00:05 GMT", now),
        5000);
}

/* ---- HTTP over loopback -------------------------------------------------- */

static void test_ok_empty(void **state)
{
    static const step script[] = {
        {STEP_REPLY,
         "HTTP/1.1 200 OK\r\n"
         "Content-Type: application/x-protobuf\r\n",
         NULL, 0},
    };
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    assert_int_equal(f.res.status, 200);
    assert_false(f.res.retryable);
    assert_int_equal(f.res.retry_after_ms, -1);
    assert_null(f.res.body);
    assert_int_equal(f.res.body_len, 0);
    fixture_end(&f);
}

/* Three posts on one transport use one connection, across an error. */
static void test_keepalive(void **state)
{
    static const uint8_t status_body[] = {0x12, 0x02, 'n', 'o'};
    static const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
        {STEP_REPLY, "HTTP/1.1 503 Service Unavailable\r\n", status_body,
         sizeof status_body},
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
    };
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_HTTP_STATUS);
    assert_true(f.res.retryable);
    assert_int_equal(f.res.body_len, sizeof status_body);
    assert_memory_equal(f.res.body, status_body, sizeof status_body);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    assert_int_equal(atomic_load(&f.srv.requests), 3);
    assert_int_equal(atomic_load(&f.srv.accepted), 1);
    fixture_end(&f);
}

/* The request: method, path, headers and the body byte-for-byte. 1.5 MiB
 * is above curl's threshold for "Expect: 100-continue", which must not be
 * sent. */
static void test_request_headers(void **state)
{
    static const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
    };
    char *headers[] = {"Authorization: Bearer s3cret", "X-Tenant: acme"};
    const size_t len = MIB + MIB / 2;
    uint8_t *body = pseudo_random(len, 7);
    char ua[64];
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 4000);
    f.cfg.headers = headers;
    f.cfg.n_headers = ARRAY_LEN(headers);
    fixture_open(&f);
    post(&f, body, len, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    server_stop(&f.srv);
    const char *h = f.srv.head;
    assert_true(strncmp(h, "POST /v1/traces HTTP/1.1\r\n", 26) == 0);
    assert_true(has_line(h, "Content-Type: application/x-protobuf\r\n"));
    snprintf(ua, sizeof ua, "User-Agent: OTel-OTLP-Exporter-C-taskspan/%s\r\n",
             taskspan_version());
    assert_true(has_line(h, ua));
    assert_true(has_line(h, "Authorization: Bearer s3cret\r\n"));
    assert_true(has_line(h, "X-Tenant: acme\r\n"));
    assert_true(has_line(h, "Accept-Encoding: "));
    assert_true(has_line(h, "Host: 127.0.0.1:"));
    assert_false(has_line(h, "Expect:"));
    assert_false(has_line(h, "Content-Encoding:"));
    assert_false(has_line(h, "Transfer-Encoding:"));
    assert_int_equal(f.srv.body_len, len);
    assert_memory_equal(f.srv.body, body, len);
    taskspan__http_result_free(&f.res);
    taskspan__transport_curl.close(f.t);
    server_free(&f.srv);
    free(body);
}

static void test_gzip_request(void **state)
{
    static const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
    };
    const size_t len = 200000;
    uint8_t *body = pseudo_random(len, 11);
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    fixture f;
    (void)state;

    /* Half the bytes repeat, so the body compresses. */
    memset(body, 'x', len / 2);
    fixture_start(&f, script, ARRAY_LEN(script), 4000);
    f.cfg.gzip = true;
    fixture_open(&f);
    post(&f, body, len, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    /* An empty body is gzip'd too (a valid, empty gzip stream). */
    post(&f, NULL, 0, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    server_stop(&f.srv);
    assert_true(has_line(f.srv.head, "Content-Encoding: gzip\r\n"));
    gunzip(&plain, &plain_len, f.srv.body, f.srv.body_len, 16);
    assert_int_equal(plain_len, 0);
    free(plain);
    taskspan__http_result_free(&f.res);
    taskspan__transport_curl.close(f.t);
    server_free(&f.srv);

    /* The first request, checked on its own server so its body is kept. */
    fixture_start(&f, script, 1, 4000);
    f.cfg.gzip = true;
    fixture_open(&f);
    post(&f, body, len, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    server_stop(&f.srv);
    assert_true(f.srv.body_len < len);
    gunzip(&plain, &plain_len, f.srv.body, f.srv.body_len, len + 1);
    assert_int_equal(plain_len, len);
    assert_memory_equal(plain, body, len);
    free(plain);
    taskspan__http_result_free(&f.res);
    taskspan__transport_curl.close(f.t);
    server_free(&f.srv);
    free(body);
}

static void test_429_retry_after_seconds(void **state)
{
    static const step script[] = {
        {STEP_REPLY,
         "HTTP/1.1 429 Too Many Requests\r\n"
         "Retry-After: 1\r\n"
         "retry-after:  2 \r\n",
         NULL, 0},
    };
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_HTTP_STATUS);
    assert_int_equal(f.res.status, 429);
    assert_true(f.res.retryable);
    assert_int_equal(f.res.retry_after_ms, 2000); /* the last one wins */
    assert_non_null(strstr(f.res.message, "HTTP 429 from http://127.0.0.1:"));
    fixture_end(&f);
}

static void test_503_retry_after_date(void **state)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
                                       "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
                                         "May", "Jun", "Jul", "Aug",
                                         "Sep", "Oct", "Nov", "Dec"};
    char head[160];
    time_t at = time(NULL) + 3;
    struct tm tm;
    fixture f;
    (void)state;

    gmtime_r(&at, &tm);
    snprintf(head, sizeof head,
             "HTTP/1.1 503 Service Unavailable\r\n"
             "Retry-After: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    const step script[] = {{STEP_REPLY, head, NULL, 0}};
    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_HTTP_STATUS);
    assert_int_equal(f.res.status, 503);
    assert_true(f.res.retryable);
    assert_in_range(f.res.retry_after_ms, 1000, 3000);
    fixture_end(&f);
}

/* 500 and 400 are not retried; their google.rpc.Status body is returned. */
static void test_permanent_statuses(void **state)
{
    static const uint8_t status_body[] = {0x08, 0x03, 0x12, 0x03,
                                          'b',  'a',  'd'};
    static const step script[] = {
        {STEP_REPLY,
         "HTTP/1.1 500 Internal Server Error\r\n"
         "Content-Type: application/x-protobuf\r\n",
         status_body, sizeof status_body},
        {STEP_REPLY,
         "HTTP/1.1 400 Bad Request\r\n"
         "Retry-After: 5\r\n",
         status_body, sizeof status_body},
        {STEP_REPLY, "HTTP/1.1 404 Not Found\r\n", NULL, 0},
        {STEP_REPLY,
         "HTTP/1.1 307 Temporary Redirect\r\n"
         "Location: http://127.0.0.1:1/v1/traces\r\n",
         NULL, 0},
    };
    static const long want[] = {500, 400, 404, 307};
    char msg[128];
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        post(&f, payload, sizeof payload, NULL);
        assert_int_equal(f.res.code, TASKSPAN_E_HTTP_STATUS);
        assert_int_equal(f.res.status, want[i]);
        assert_false(f.res.retryable);
        snprintf(msg, sizeof msg, "HTTP %ld from %s", want[i], f.url);
        assert_string_equal(f.res.message, msg);
        if (i < 2) {
            assert_int_equal(f.res.body_len, sizeof status_body);
            assert_memory_equal(f.res.body, status_body, sizeof status_body);
        } else {
            assert_null(f.res.body);
        }
    }
    assert_int_equal(atomic_load(&f.srv.accepted), 1);
    fixture_end(&f);
}

static void test_connection_refused(void **state)
{
    char url[64];
    char err[256];
    unsigned port;
    taskspan__export_config cfg;
    taskspan__http_result res;
    void *t = NULL;
    (void)state;

    /* Bound but not listening: the kernel refuses, and the port stays
     * ours so nothing else can start listening on it meanwhile. */
    int fd = bind_loopback(&port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/traces", port);
    cfg_init(&cfg, url, 2000);
    assert_int_equal(taskspan__transport_curl.open(&t, &cfg, err, sizeof err),
                     TASKSPAN_OK);
    double t0 = now_ms();
    taskspan__transport_curl.post(t, payload, sizeof payload, NULL, &res);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(res.code, TASKSPAN_E_TRANSPORT);
    assert_true(res.retryable);
    assert_int_equal(res.status, 0);
    assert_null(res.body);
    assert_non_null(strstr(res.message, "connection refused: "));
    assert_non_null(strstr(res.message, url));
    assert_null(strchr(res.message, '\n'));
    taskspan__http_result_free(&res);
    taskspan__transport_curl.close(t);
    close(fd);
}

/* The server reads the request, then closes (FIN) or resets (RST). */
static void test_disconnect_without_response(void **state)
{
    static const step script[] = {
        {STEP_CLOSE, NULL, NULL, 0},
        {STEP_RESET, NULL, NULL, 0},
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
    };
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_TRANSPORT);
    assert_true(f.res.retryable);
    assert_int_equal(f.res.status, 0);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_TRANSPORT);
    assert_true(f.res.retryable);
    assert_int_equal(f.res.status, 0);
    /* And the transport recovers on a new connection. */
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    assert_int_equal(atomic_load(&f.srv.accepted), 3);
    fixture_end(&f);
}

static void test_timeout(void **state)
{
    static const step script[] = {{STEP_HANG, NULL, NULL, 0}};
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 300);
    fixture_open(&f);
    double t0 = now_ms();
    post(&f, payload, sizeof payload, NULL);
    double took = now_ms() - t0;
    assert_int_equal(f.res.code, TASKSPAN_E_TIMEOUT);
    assert_true(f.res.retryable);
    assert_non_null(strstr(f.res.message, "timed out: "));
    assert_true(took >= 250 && took < 1500);
    fixture_end(&f);
}

static void *set_after_200ms(void *arg)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store((atomic_bool *)arg, true);
    return NULL;
}

static void test_abort_during_hang(void **state)
{
    static const step script[] = {{STEP_HANG, NULL, NULL, 0}};
    atomic_bool stop;
    pthread_t th;
    fixture f;
    (void)state;

    atomic_init(&stop, false);
    fixture_start(&f, script, ARRAY_LEN(script), 10000);
    fixture_open(&f);
    assert_int_equal(pthread_create(&th, NULL, set_after_200ms, &stop), 0);
    double t0 = now_ms();
    post(&f, payload, sizeof payload, &stop);
    double took = now_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_TIMEOUT);
    assert_true(f.res.retryable);
    assert_string_equal(f.res.message, "export aborted at shutdown");
    assert_true(took >= 150 && took < 1000);
    fixture_end(&f);
}

/* Already aborted: nothing is sent. */
static void test_abort_before_post(void **state)
{
    static const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", NULL, 0},
    };
    atomic_bool stop;
    fixture f;
    (void)state;

    atomic_init(&stop, true);
    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, &stop);
    assert_int_equal(f.res.code, TASKSPAN_E_TIMEOUT);
    assert_true(f.res.retryable);
    assert_int_equal(atomic_load(&f.srv.requests), 0);
    fixture_end(&f);
}

/* A response body of 4 MiB is read; one byte more is refused. */
static void test_response_size_limit(void **state)
{
    const size_t limit = 4 * MIB;
    uint8_t *big = pseudo_random(limit + 1, 3);
    const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", big, limit},
        {STEP_REPLY, "HTTP/1.1 200 OK\r\n", big, limit + 1},
    };
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 4000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    assert_int_equal(f.res.body_len, limit);
    assert_memory_equal(f.res.body, big, limit);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_ENCODE);
    assert_false(f.res.retryable);
    assert_null(f.res.body);
    assert_non_null(strstr(f.res.message, "exceeded 4 MiB"));
    fixture_end(&f);
    free(big);
}

/* The limit applies after decompression: 5 MiB of zeros gzip to ~5 KiB. */
static void test_gzip_response(void **state)
{
    static const uint8_t text[] = "partial success, rejected 0";
    uint8_t *small = NULL, *bomb = NULL;
    size_t small_len = 0, bomb_len = 0;
    uint8_t *zeros = calloc(5 * MIB, 1);
    fixture f;
    (void)state;

    assert_non_null(zeros);
    gzip(&small, &small_len, text, sizeof text);
    gzip(&bomb, &bomb_len, zeros, 5 * MIB);
    const step script[] = {
        {STEP_REPLY, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n", small,
         small_len},
        {STEP_REPLY, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n", bomb,
         bomb_len},
    };
    fixture_start(&f, script, ARRAY_LEN(script), 4000);
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_OK);
    assert_int_equal(f.res.body_len, sizeof text);
    assert_memory_equal(f.res.body, text, sizeof text);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_ENCODE);
    assert_false(f.res.retryable);
    fixture_end(&f);
    free(small);
    free(bomb);
    free(zeros);
}

/* Mistakes only the user can fix: not retried, and no network needed. */
static void test_bad_urls(void **state)
{
    static const char *const urls[] = {
        "ftp://127.0.0.1/v1/traces",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "http://[::1/v1/traces",
    };
    char err[256];
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(urls); i++) {
        taskspan__export_config cfg;
        taskspan__http_result res;
        void *t = NULL;

        cfg_init(&cfg, (char *)(uintptr_t)urls[i], 2000);
        assert_int_equal(
            taskspan__transport_curl.open(&t, &cfg, err, sizeof err),
            TASKSPAN_OK);
        taskspan__transport_curl.post(t, payload, sizeof payload, NULL, &res);
        assert_int_equal(res.code, TASKSPAN_E_TRANSPORT);
        if (res.retryable) {
            fail_msg("%s: retryable: %s", urls[i], res.message);
        }
        taskspan__http_result_free(&res);
        taskspan__transport_curl.close(t);
    }
}

/* TLS failures: a CA file that cannot be read needs the user, so it is not
 * retried; a failed handshake (here: https to a plain-HTTP port) is. */
static void test_tls_failures(void **state)
{
    static const step greet[] = {
        {STEP_GREET, "HTTP/1.1 400 Bad Request\r\n\r\n", NULL, 0},
    };
    char url[64];
    fixture f;
    (void)state;

    /* An empty script: the server closes any connection it gets. */
    fixture_start(&f, NULL, 0, 2000);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/traces", f.srv.port);
    f.cfg.endpoint = url;
    f.cfg.ca_file = "/nonexistent/taskspan-test-ca.pem";
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_TRANSPORT);
    assert_false(f.res.retryable);
    assert_non_null(strstr(f.res.message, "TLS certificate problem: "));
    fixture_end(&f);

    fixture_start(&f, greet, ARRAY_LEN(greet), 2000);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/traces", f.srv.port);
    f.cfg.endpoint = url;
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_TRANSPORT);
    assert_true(f.res.retryable);
    assert_non_null(strstr(f.res.message, "TLS handshake failed: "));
    fixture_end(&f);
}

/* Secrets in the URL stay out of messages. */
static void test_message_hides_credentials(void **state)
{
    static const step script[] = {
        {STEP_REPLY, "HTTP/1.1 502 Bad Gateway\r\n", NULL, 0},
    };
    char url[128];
    char msg[128];
    fixture f;
    (void)state;

    fixture_start(&f, script, ARRAY_LEN(script), 2000);
    snprintf(url, sizeof url,
             "http://user:pw@127.0.0.1:%u/v1/traces?key=k#frag", f.srv.port);
    f.cfg.endpoint = url;
    fixture_open(&f);
    post(&f, payload, sizeof payload, NULL);
    assert_int_equal(f.res.code, TASKSPAN_E_HTTP_STATUS);
    assert_true(f.res.retryable);
    snprintf(msg, sizeof msg, "HTTP 502 from http://127.0.0.1:%u/v1/traces",
             f.srv.port);
    assert_string_equal(f.res.message, msg);
    fixture_end(&f);
}

static void test_open_rejects(void **state)
{
    char *bad_headers[] = {"X-A: 1", "X-B: 2\r\nX-Injected: 3"};
    taskspan__export_config cfg;
    char err[256] = "";
    void *t = (void *)&cfg;
    (void)state;

    cfg_init(&cfg, "http://127.0.0.1:1/v1/traces", 1000);
    cfg.headers = bad_headers;
    cfg.n_headers = ARRAY_LEN(bad_headers);
    assert_int_equal(taskspan__transport_curl.open(&t, &cfg, err, sizeof err),
                     TASKSPAN_E_INVALID_ARG);
    assert_null(t);
    assert_non_null(strstr(err, "header 2"));
    cfg_init(&cfg, NULL, 1000);
    assert_int_equal(taskspan__transport_curl.open(&t, &cfg, err, sizeof err),
                     TASKSPAN_E_INVALID_ARG);
    taskspan__transport_curl.close(NULL);
    taskspan__http_result_free(NULL);
}

int main(void)
{
    /* Loopback must not go through a proxy from the environment. */
    static const char *const proxies[] = {
        "http_proxy",  "HTTP_PROXY", "https_proxy",
        "HTTPS_PROXY", "all_proxy",  "ALL_PROXY",
    };
    for (size_t i = 0; i < ARRAY_LEN(proxies); i++) {
        unsetenv(proxies[i]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_dates),
        cmocka_unit_test(test_retry_after_rfc850_years),
        cmocka_unit_test(test_ok_empty),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_request_headers),
        cmocka_unit_test(test_gzip_request),
        cmocka_unit_test(test_429_retry_after_seconds),
        cmocka_unit_test(test_503_retry_after_date),
        cmocka_unit_test(test_permanent_statuses),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_disconnect_without_response),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_abort_during_hang),
        cmocka_unit_test(test_abort_before_post),
        cmocka_unit_test(test_response_size_limit),
        cmocka_unit_test(test_gzip_response),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_tls_failures),
        cmocka_unit_test(test_message_hides_credentials),
        cmocka_unit_test(test_open_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
