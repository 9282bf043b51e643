/*
 * cmd_serve.c -- `taskspan serve`: the viewer. Runs the OTLP/HTTP receiver
 * on loopback until SIGINT or SIGTERM, stores what arrives in the viewer's
 * span store and serves the JSON API, the live stream and the web UI on
 * the same port. With --print, each received span is also printed as one
 * line. With --db, tasks of a local recorder buffer show too, open spans
 * included. Unlike the other commands this one sits on the viewer
 * (src/viewer), not only the public API.
 */
#include "cmd.h"

#include "viewer/api.h"
#include "viewer/buffer_view.h"
#include "viewer/receiver.h"
#include "viewer/store.h"
#include "viewer/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The generated enum names run past 80 columns; these paste them. */
#define ANY_VALUE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__##x
#define STATUS_CODE(x)                                                        \
    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__##x

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;

/* Streams hold a connection (and its thread) each; the receiver takes
 * 128 connections, so some stay free for senders. */
#define MAX_STREAMS 100u

static void serve_usage(FILE *out)
{
    fprintf(
        out,
        "usage: taskspan serve [--listen ADDR:PORT] [--store PATH]\n"
        "                      [--max-store-bytes BYTES] [--db BUFFER]\n"
        "                      [--max-streams N] [--print]\n"
        "                      [--max-body BYTES] [--ready-file PATH]\n"
        "\n"
        "Receive OTLP/HTTP traces (POST /v1/traces, protobuf or JSON,\n"
        "optionally gzip'd), keep them in a span store and show them in\n"
        "a web UI on the same port, until SIGINT or SIGTERM.\n"
        "\n"
        "  --listen ADDR:PORT   where to listen (default %s);\n"
        "                       port 0 picks a free port\n"
        "  --store PATH         the span store (default\n"
        "                       $XDG_STATE_HOME/taskspan/viewer.db, else\n"
        "                       ~/.local/state/taskspan/viewer.db);\n"
        "                       :memory: keeps nothing on disk\n"
        "  --max-store-bytes N  evict the least recently updated traces\n"
        "                       past N stored bytes (default %" PRId64 ")\n"
        "  --db BUFFER          also show the tasks of this recorder\n"
        "                       buffer, open spans included (read-only)\n"
        "  --max-streams N      live streams open at once, 1 to %u\n"
        "                       (default %u; past it: 503)\n"
        "  --print              print one line per received span\n"
        "  --max-body BYTES     request body limit, before and after\n"
        "                       gunzip (default %zu)\n"
        "  --ready-file PATH    once listening, write the port to PATH\n",
        TASKSPAN__RECEIVER_DEFAULT_LISTEN, TASKSPAN__VSTORE_DEFAULT_MAX_BYTES,
        MAX_STREAMS, TASKSPAN__STREAM_DEFAULT_MAX_CLIENTS,
        TASKSPAN__RECEIVER_DEFAULT_MAX_BODY);
}

/* ---- --print ----------------------------------------------------------- */

static void print_hex(const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i++) {
        printf("%02x", b->data[i]);
    }
}

/* Length of the UTF-8 sequence at s if it is valid and printable (no C0
 * or C1 control), else 0. */
static size_t printable_utf8(const unsigned char *s)
{
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t cp;
    size_t n;

    if (s[0] >= 0x20 && s[0] < 0x7f) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* also stops at the terminator */
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp <= 0x9f) {
        return 0;
    }
    return n;
}

/* Print s as one token of a line. The bytes are the sender's: anything
 * that is not printable UTF-8 (and the backslash, to stay unambiguous) is
 * escaped as \xNN, so no span can break or forge a line or send a
 * terminal escape sequence. */
static void print_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (p == NULL || *p == '\0') {
        fputs("-", stdout);
        return;
    }
    while (*p != '\0') {
        size_t n = *p == '\\' ? 0 : printable_utf8(p);
        if (n == 0) {
            printf("\\x%02x", *p++);
        } else {
            fwrite(p, 1, n, stdout);
            p += n;
        }
    }
}

/* service.name of a resource, or NULL. */
static const char *service_name(const pb_resource *res)
{
    if (res == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < res->n_attributes; i++) {
        const Opentelemetry__Proto__Common__V1__KeyValue *kv =
            res->attributes[i];
        if (strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
            kv->value->value_case == ANY_VALUE(VALUE_STRING_VALUE)) {
            return kv->value->string_value;
        }
    }
    return NULL;
}

static const char *status_name(const pb_span *s)
{
    if (s->status == NULL) {
        return "UNSET";
    }
    switch (s->status->code) {
    case STATUS_CODE(STATUS_CODE_OK):
        return "OK";
    case STATUS_CODE(STATUS_CODE_ERROR):
        return "ERROR";
    default:
        return "UNSET"; /* unknown codes read as unset */
    }
}

static void print_span(const pb_span *s, const char *service)
{
    fputs("span ", stdout);
    print_hex(&s->trace_id);
    putchar(' ');
    print_hex(&s->span_id);
    fputs(" parent=", stdout);
    if (s->parent_span_id.len > 0) {
        print_hex(&s->parent_span_id);
    } else {
        putchar('-');
    }
    putchar(' ');
    print_text(s->name);
    printf(" status=%s events=%zu service=", status_name(s), s->n_events);
    print_text(service);
    putchar('\n');
}

/* Print every span of req, one line each. */
static void print_request(const taskspan__export_request *req)
{
    for (size_t i = 0; i < req->n_resource_spans; i++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
            req->resource_spans[i];
        const char *service = service_name(rs->resource);
        for (size_t j = 0; j < rs->n_scope_spans; j++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                rs->scope_spans[j];
            for (size_t k = 0; k < ss->n_spans; k++) {
                print_span(ss->spans[k], service);
            }
        }
    }
    /* Whoever reads a pipe (a test, `| grep`) sees spans as they come. */
    fflush(stdout);
}

/* ---- the consumer ------------------------------------------------------ */

typedef struct serve_ctx {
    taskspan__vstore *store;
    taskspan__stream_hub *hub;
    bool print;
} serve_ctx;

static int64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The receiver's consumer: store, wake the streams, print. The receiver
 * serialises its calls, so stdout needs no lock of ours. A store failure
 * is a 503: the sender keeps the spans and retries. */
static int64_t consume(char *out_msg, size_t msg_size,
                       const taskspan__export_request *req, void *payload)
{
    serve_ctx *ctx = payload;
    int64_t stored = 0, rejected = 0, last_seq = 0;
    char err[TASKSPAN_ERRBUF_SIZE] = "";

    if (ctx->print) {
        print_request(req);
    }
    taskspan_code rc = taskspan__vstore_ingest(ctx->store, req, wall_ns(),
                                               &stored, &rejected, &last_seq,
                                               err, sizeof err);
    if (rc != TASKSPAN_OK) {
        snprintf(out_msg, msg_size, "%s", err);
        return -1;
    }
    taskspan__stream_hub_notify(ctx->hub, last_seq);
    if (rejected > 0) {
        snprintf(out_msg, msg_size,
                 "%" PRId64 " spans with an all-zero trace or span id were "
                 "dropped",
                 rejected);
    }
    return rejected;
}

/* ---- options and the main loop ---------------------------------------- */

typedef struct serve_opts {
    const char *listen;
    const char *ready_file;
    const char *max_body_text;
    const char *store;
    const char *max_store_text;
    const char *db;
    const char *max_streams_text;
    size_t max_body; /* 0: the receiver's default */
    int64_t max_store_bytes;
    unsigned max_streams;
    bool print;
} serve_opts;

/* Strict decimal byte count in 1 .. TASKSPAN__RECEIVER_MAX_MAX_BODY. */
static bool parse_bytes(const char *s, size_t *out)
{
    char *end = NULL;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 ||
        v > TASKSPAN__RECEIVER_MAX_MAX_BODY) {
        return false;
    }
    *out = (size_t)v;
    return true;
}

/* Strict decimal count in 1 .. max. */
static bool parse_count(const char *s, int64_t max, int64_t *out)
{
    char *end = NULL;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Where the value of the option named by the first n bytes of arg goes;
 * NULL if no option taking a value has that name. */
static const char **option_slot(serve_opts *o, const char *arg, size_t n)
{
    static const char *const names[] = {
        "--listen",          "--ready-file", "--max-body",   "--store",
        "--max-store-bytes", "--db",         "--max-streams"};
    const char **slots[] = {
        &o->listen,         &o->ready_file, &o->max_body_text,   &o->store,
        &o->max_store_text, &o->db,         &o->max_streams_text};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == n && strncmp(arg, names[i], n) == 0) {
            return slots[i];
        }
    }
    return NULL;
}

/* Options take their value as "--name VALUE" or "--name=VALUE". Returns
 * CLI_OK, or CLI_USAGE after printing why. */
static int parse_args(serve_opts *o, int argc, char **argv, bool *help)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return CLI_OK;
        }
        if (strcmp(arg, "--print") == 0) {
            o->print = true;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const char **slot = option_slot(o, arg, n);
        if (slot == NULL) {
            fprintf(stderr,
                    "taskspan serve: unknown option '%s'; see 'taskspan "
                    "serve --help'\n",
                    arg);
            return CLI_USAGE;
        }
        if (eq != NULL) {
            *slot = eq + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        } else {
            fprintf(stderr, "taskspan serve: %s needs a value\n", arg);
            return CLI_USAGE;
        }
    }
    if (o->max_body_text != NULL &&
        !parse_bytes(o->max_body_text, &o->max_body)) {
        fprintf(stderr,
                "taskspan serve: --max-body '%s' is not a byte count from 1 "
                "to %zu\n",
                o->max_body_text, TASKSPAN__RECEIVER_MAX_MAX_BODY);
        return CLI_USAGE;
    }
    o->max_store_bytes = TASKSPAN__VSTORE_DEFAULT_MAX_BYTES;
    if (o->max_store_text != NULL &&
        !parse_count(o->max_store_text, INT64_MAX, &o->max_store_bytes)) {
        fprintf(stderr,
                "taskspan serve: --max-store-bytes '%s' is not a positive "
                "byte count\n",
                o->max_store_text);
        return CLI_USAGE;
    }
    int64_t streams = TASKSPAN__STREAM_DEFAULT_MAX_CLIENTS;
    if (o->max_streams_text != NULL &&
        !parse_count(o->max_streams_text, MAX_STREAMS, &streams)) {
        fprintf(stderr,
                "taskspan serve: --max-streams '%s' is not a number from 1 "
                "to %u\n",
                o->max_streams_text, MAX_STREAMS);
        return CLI_USAGE;
    }
    o->max_streams = (unsigned)streams;
    return CLI_OK;
}

/* The default store: $XDG_STATE_HOME/taskspan/viewer.db, else
 * $HOME/.local/state/taskspan/viewer.db (next to the recorder's default
 * buffer). false when neither variable is set. */
static bool default_store(char *out, size_t size)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;

    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(out, size, "%s/taskspan/viewer.db", xdg);
    } else if (home != NULL && home[0] != '\0') {
        n = snprintf(out, size, "%s/.local/state/taskspan/viewer.db", home);
    } else {
        return false;
    }
    return n > 0 && (size_t)n < size;
}

/* Write the port to path through a temporary file and rename(2), so a
 * watcher never reads a half-written file. */
static bool write_ready_file(const char *path, uint16_t port)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);

    if (n < 0 || (size_t)n >= sizeof tmp) {
        return false;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return false;
    }
    bool ok = fprintf(f, "%u\n", port) > 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno; /* the caller reports it, not remove's */
        remove(tmp);
        errno = e;
        return false;
    }
    return true;
}

/* Open the store and the --db view. Returns CLI_OK or an exit code after
 * printing why. */
static int open_data(serve_opts *o, serve_ctx *ctx, taskspan__buffer_view **bv)
{
    char path[4096];
    char err[TASKSPAN_ERRBUF_SIZE] = "";

    if (o->store == NULL) {
        if (!default_store(path, sizeof path)) {
            fprintf(stderr, "taskspan serve: neither XDG_STATE_HOME nor HOME "
                            "is set; pass --store PATH\n");
            return CLI_USAGE;
        }
        o->store = path;
    }
    taskspan_code rc = taskspan__vstore_open(
        &ctx->store, o->store, o->max_store_bytes, err, sizeof err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan serve: %s\n", err);
        return CLI_FAILURE;
    }
    o->store = NULL; /* path is about to go out of scope */
    if (taskspan__stream_hub_new(&ctx->hub, ctx->store, o->max_streams) !=
        TASKSPAN_OK) {
        fprintf(stderr, "taskspan serve: out of memory\n");
        return CLI_FAILURE;
    }
    if (o->db != NULL) {
        rc = taskspan__buffer_view_open(bv, o->db, err, sizeof err);
        if (rc != TASKSPAN_OK) {
            fprintf(stderr, "taskspan serve: %s\n", err);
            return CLI_FAILURE;
        }
    }
    return CLI_OK;
}

int cmd_serve(int argc, char **argv)
{
    serve_opts o = {.listen = TASKSPAN__RECEIVER_DEFAULT_LISTEN};
    bool help = false;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    sigset_t stop_signals;
    int sig = 0;
    serve_ctx ctx = {0};
    taskspan__buffer_view *bv = NULL;
    taskspan__receiver *rx = NULL;

    int rc = parse_args(&o, argc, argv, &help);
    if (rc != CLI_OK || help) {
        if (help) {
            serve_usage(stdout);
        }
        return rc;
    }
    ctx.print = o.print;
    rc = open_data(&o, &ctx, &bv);
    if (rc != CLI_OK) {
        goto out;
    }
    /* Block the stop signals before the receiver's threads exist, so they
     * inherit the mask and sigwait() below is their only taker. A client
     * closing early must not kill us with SIGPIPE either. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    taskspan__api api = {.store = ctx.store, .hub = ctx.hub, .buffer = bv};
    taskspan__receiver_config cfg = {
        .listen = o.listen,
        .max_body = o.max_body,
        .consume = consume,
        .payload = &ctx,
        .web = taskspan__api_handle,
        .web_payload = &api,
    };
    taskspan_code trc = taskspan__receiver_start(&rx, &cfg, err);
    if (trc == TASKSPAN_E_INVALID_ARG) {
        fprintf(stderr, "taskspan serve: %s\n", err);
        rc = CLI_USAGE;
        goto out;
    }
    if (trc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan serve: %s; pass --listen 127.0.0.1:0 to take any "
                "free port\n",
                err);
        rc = CLI_FAILURE;
        goto out;
    }
    printf("taskspan serve: listening on http://%s (POST /v1/traces)\n",
           taskspan__receiver_address(rx));
    printf("taskspan serve: open http://%s/ in a browser\n",
           taskspan__receiver_address(rx));
    fflush(stdout);
    if (o.ready_file != NULL &&
        !write_ready_file(o.ready_file, taskspan__receiver_port(rx))) {
        fprintf(stderr, "taskspan serve: cannot write %s: %s\n", o.ready_file,
                strerror(errno));
        rc = CLI_FAILURE;
        goto out;
    }
    if (sigwait(&stop_signals, &sig) != 0) {
        sig = SIGTERM; /* only a bad set fails, and this one is fixed */
    }
    fprintf(stderr, "taskspan serve: stopped by %s\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = CLI_OK;
out:
    /* Streams first: their threads wait on the hub, and stopping the
     * receiver joins them. */
    if (ctx.hub != NULL) {
        taskspan__stream_hub_close(ctx.hub);
    }
    taskspan__receiver_stop(rx);
    taskspan__stream_hub_free(ctx.hub);
    taskspan__buffer_view_close(bv);
    taskspan__vstore_close(ctx.store);
    return rc;
}
