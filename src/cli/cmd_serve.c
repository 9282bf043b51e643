/*
 * cmd_serve.c -- `taskspan serve`: run the OTLP/HTTP receiver on loopback
 * until SIGINT or SIGTERM. With --print, each received span is printed as
 * one line; the store and the web UI come later. Unlike the other commands
 * this one sits on the viewer (src/viewer), not only the public API.
 */
#include "cmd.h"

#include "viewer/receiver.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The generated enum names run past 80 columns; these paste them. */
#define ANY_VALUE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__##x
#define STATUS_CODE(x)                                                        \
    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__##x

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan serve [--listen ADDR:PORT] [--print]\n"
            "                      [--max-body BYTES] [--ready-file PATH]\n"
            "\n"
            "Receive OTLP/HTTP traces (POST /v1/traces, protobuf, optionally\n"
            "gzip'd) until SIGINT or SIGTERM.\n"
            "\n"
            "  --listen ADDR:PORT  where to listen (default %s);\n"
            "                      port 0 picks a free port\n"
            "  --print             print one line per received span\n"
            "  --max-body BYTES    request body limit, before and after\n"
            "                      gunzip (default %zu)\n"
            "  --ready-file PATH   once listening, write the port to PATH\n",
            TASKSPAN__RECEIVER_DEFAULT_LISTEN,
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

/* The receiver's consumer for --print. Runs on the receiver's thread, one
 * call at a time, so stdout needs no lock of ours. */
static int64_t print_request(char *out_msg, size_t msg_size,
                             const taskspan__export_request *req,
                             void *payload)
{
    (void)out_msg;
    (void)msg_size;
    (void)payload;
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
    return 0;
}

/* ---- options and the main loop ---------------------------------------- */

typedef struct serve_opts {
    const char *listen;
    const char *ready_file;
    const char *max_body_text;
    size_t max_body; /* 0: the receiver's default */
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

/* Where the value of the option named by the first n bytes of arg goes;
 * NULL if no option taking a value has that name. */
static const char **option_slot(serve_opts *o, const char *arg, size_t n)
{
    static const char *const names[] = {"--listen", "--ready-file",
                                        "--max-body"};
    const char **slots[] = {&o->listen, &o->ready_file, &o->max_body_text};

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
    return CLI_OK;
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

int cmd_serve(int argc, char **argv)
{
    serve_opts o = {.listen = TASKSPAN__RECEIVER_DEFAULT_LISTEN};
    bool help = false;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    sigset_t stop_signals;
    int sig = 0;

    int rc = parse_args(&o, argc, argv, &help);
    if (rc != CLI_OK || help) {
        if (help) {
            serve_usage(stdout);
        }
        return rc;
    }
    /* Block the stop signals before the receiver's thread exists, so it
     * inherits the mask and sigwait() below is their only taker. A client
     * closing early must not kill us with SIGPIPE either. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    taskspan__receiver_config cfg = {
        .listen = o.listen,
        .max_body = o.max_body,
        .consume = o.print ? print_request : NULL,
    };
    taskspan__receiver *rx = NULL;
    taskspan_code trc = taskspan__receiver_start(&rx, &cfg, err);
    if (trc == TASKSPAN_E_INVALID_ARG) {
        fprintf(stderr, "taskspan serve: %s\n", err);
        return CLI_USAGE;
    }
    if (trc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan serve: %s; pass --listen 127.0.0.1:0 to take any "
                "free port\n",
                err);
        return CLI_FAILURE;
    }
    printf("taskspan serve: listening on http://%s (POST /v1/traces)\n",
           taskspan__receiver_address(rx));
    fflush(stdout);
    if (o.ready_file != NULL &&
        !write_ready_file(o.ready_file, taskspan__receiver_port(rx))) {
        fprintf(stderr, "taskspan serve: cannot write %s: %s\n", o.ready_file,
                strerror(errno));
        taskspan__receiver_stop(rx);
        return CLI_FAILURE;
    }
    if (sigwait(&stop_signals, &sig) != 0) {
        sig = SIGTERM; /* only a bad set fails, and this one is fixed */
    }
    taskspan__receiver_stop(rx);
    fprintf(stderr, "taskspan serve: stopped by %s\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    return CLI_OK;
}
