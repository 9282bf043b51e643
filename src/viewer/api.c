/*
 * api.c -- routes of the viewer's web side and the JSON they answer with
 * (docs/viewer.md). Each handler builds a jansson value; respond() turns
 * it into an MHD response with the headers every answer carries.
 *
 * Only GET and HEAD exist here (405 otherwise). Requests whose Host is a
 * name other than localhost are refused (403): the viewer listens on
 * loopback, and a page on some other site must not reach it by pointing
 * its own DNS name at 127.0.0.1 (DNS rebinding).
 */
#include "api.h"

#include "span_json.h"
#include "trace_download.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#ifdef TASKSPAN_HAVE_UI_ASSETS
#include "viewer/ui/ui_assets.h"
#endif

#define DEFAULT_LIMIT 50
#define MAX_LIMIT 1000
#define CSP "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- responses ---------------------------------------------------------- */

static void common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

/* A JSON answer; consumes j. NULL when out of memory. */
static struct MHD_Response *respond_json(unsigned *out_status, unsigned status,
                                         json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    if (text == NULL) {
        return NULL;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    common_headers(r);
    *out_status = status;
    return r;
}

static struct MHD_Response *respond_error(unsigned *out_status,
                                          unsigned status, const char *msg)
{
    return respond_json(out_status, status,
                        json_pack("{s:o}", "error", taskspan__json_text(msg)));
}

static struct MHD_Response *respond_code(unsigned *out_status,
                                         taskspan_code rc)
{
    if (rc == TASKSPAN_E_NOT_FOUND) {
        return respond_error(out_status, 404, "no such trace");
    }
    return respond_error(out_status, rc == TASKSPAN_E_NOMEM ? 503 : 500,
                         taskspan_strerror(rc));
}

/* ---- request helpers ---------------------------------------------------- */

static const char *arg(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
                                                name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;

    if (s == NULL || s[0] == '\0' ||
        (s[0] != '-' && (s[0] < '0' || s[0] > '9'))) {
        return false;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* A trace id from a URL: 32 hex digits, copied in lowercase. */
static bool parse_trace_id(char out[33], const char *s, size_t n)
{
    if (n != 32) {
        return false;
    }
    for (size_t i = 0; i < 32; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
        out[i] = c;
    }
    out[32] = '\0';
    return true;
}

/* Whether Host names this machine by address or as localhost (see the
 * file comment). No Host (HTTP/1.0) is let through. */
static bool host_allowed(const char *host)
{
    if (host == NULL || host[0] == '[') {
        return true;
    }
    size_t n = strcspn(host, ":");
    if (n == 9 && strncasecmp(host, "localhost", 9) == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if ((host[i] < '0' || host[i] > '9') && host[i] != '.') {
            return false;
        }
    }
    return n > 0;
}

/* ---- trace summaries ---------------------------------------------------- */

typedef struct row {
    int64_t start_ns;
    json_t *json;
    char trace_id[33];
    bool running;
    bool dropped;
} row;

typedef struct rows {
    row *items;
    size_t n, cap;
    const char *source;
    int64_t now_ns;
} rows;

static json_t *summary_json(const taskspan__trace_summary *t,
                            const char *source, int64_t now)
{
    const char *status = t->running           ? "running"
                         : t->error_count > 0 ? "error"
                                              : "ok";
    int64_t end = t->end_ns > t->start_ns ? t->end_ns : t->start_ns;
    int64_t duration = (t->running ? now : end) - t->start_ns;

    return json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:s, s:s, s:o}",
        "trace_id", t->trace_id, "task_id",
        t->task_id != NULL ? taskspan__json_text(t->task_id) : json_null(),
        "service", taskspan__json_text(t->service), "root_name",
        taskspan__json_text(t->root_name), "start_ns",
        taskspan__json_ns(t->start_ns), "end_ns",
        t->running ? json_string("") : taskspan__json_ns(end), "duration_ns",
        taskspan__json_ns(duration < 0 ? 0 : duration), "span_count",
        (json_int_t)t->span_count, "error_count", (json_int_t)t->error_count,
        "event_count", (json_int_t)t->event_count, "status", status, "source",
        source, "updated_ns", taskspan__json_ns(t->updated_ns));
}

static bool add_row(const taskspan__trace_summary *t, void *payload)
{
    rows *rs = payload;

    if (rs->n == rs->cap) {
        size_t ncap = rs->cap == 0 ? 64 : rs->cap * 2;
        row *p = realloc(rs->items, ncap * sizeof *p);
        if (p == NULL) {
            return false;
        }
        rs->items = p;
        rs->cap = ncap;
    }
    row *r = &rs->items[rs->n];
    memset(r, 0, sizeof *r);
    r->json = summary_json(t, rs->source, rs->now_ns);
    if (r->json == NULL) {
        return false;
    }
    r->start_ns = t->start_ns;
    r->running = t->running;
    snprintf(r->trace_id, sizeof r->trace_id, "%s", t->trace_id);
    rs->n++;
    return true;
}

static void rows_free(rows *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        json_decref(rs->items[i].json);
    }
    free(rs->items);
}

static int by_start_desc(const void *a, const void *b)
{
    const row *x = *(row *const *)a, *y = *(row *const *)b;

    if (x->start_ns != y->start_ns) {
        return x->start_ns > y->start_ns ? -1 : 1;
    }
    return strcmp(x->trace_id, y->trace_id);
}

static bool ignore_summary(const taskspan__trace_summary *t, void *payload)
{
    (void)t;
    (void)payload;
    return true;
}

/* A trace in both places: the buffer's version while it has open spans
 * (it shows more), else the store's (what was really exported). */
static void merge_sources(taskspan__api *api, rows *otlp, rows *buf)
{
    for (size_t i = 0; i < buf->n; i++) {
        row *b = &buf->items[i];
        bool in_store = false;
        for (size_t k = 0; k < otlp->n; k++) {
            if (strcmp(otlp->items[k].trace_id, b->trace_id) == 0) {
                in_store = true;
                if (b->running) {
                    otlp->items[k].dropped = true;
                }
            }
        }
        if (!b->running &&
            (in_store ||
             taskspan__vstore_get(api->store, b->trace_id, 0, ignore_summary,
                                  NULL) == TASKSPAN_OK)) {
            b->dropped = true;
        }
    }
}

static struct MHD_Response *list_traces(unsigned *st, taskspan__api *api,
                                        struct MHD_Connection *conn)
{
    taskspan__vstore_filter f = {.limit = DEFAULT_LIMIT};
    const char *limit = arg(conn, "limit"), *from = arg(conn, "from");
    const char *to = arg(conn, "to"), *attr = arg(conn, "attr");
    char *attr_copy = NULL;

    f.service = arg(conn, "service");
    f.task_id = arg(conn, "task");
    f.status = arg(conn, "status");
    f.event = arg(conn, "event");
    if (limit != NULL &&
        (!parse_i64(limit, &f.limit) || f.limit < 1 || f.limit > MAX_LIMIT)) {
        return respond_error(st, 400, "limit must be 1 to 1000");
    }
    if (f.status != NULL && strcmp(f.status, "ok") != 0 &&
        strcmp(f.status, "error") != 0 && strcmp(f.status, "running") != 0) {
        return respond_error(st, 400, "status must be ok, error or running");
    }
    if ((from != NULL && !parse_i64(from, &f.from_ns)) ||
        (to != NULL && !parse_i64(to, &f.to_ns))) {
        return respond_error(st, 400,
                             "from and to are nanoseconds since the epoch");
    }
    f.has_from = from != NULL;
    f.has_to = to != NULL;
    if (attr != NULL) {
        const char *eq = strchr(attr, '=');
        if (eq == NULL || eq == attr) {
            return respond_error(st, 400, "attr must be KEY=VALUE");
        }
        attr_copy = strdup(attr);
        if (attr_copy == NULL) {
            return NULL;
        }
        attr_copy[eq - attr] = '\0';
        f.attr_key = attr_copy;
        f.attr_value = attr_copy + (eq - attr) + 1;
    }
    int64_t now = now_ns();
    rows otlp = {.source = "otlp", .now_ns = now};
    rows buf = {.source = "buffer", .now_ns = now};
    taskspan_code rc = taskspan__vstore_list(api->store, &f, now, add_row,
                                             &otlp);
    if (rc == TASKSPAN_OK && api->buffer != NULL) {
        rc = taskspan__buffer_view_list(api->buffer, &f, add_row, &buf);
    }
    struct MHD_Response *resp = NULL;
    row **all = NULL;
    if (rc == TASKSPAN_OK) {
        merge_sources(api, &otlp, &buf);
        all = calloc(otlp.n + buf.n + 1, sizeof *all);
        rc = all != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    }
    if (rc == TASKSPAN_OK) {
        size_t n = 0;
        for (size_t i = 0; i < otlp.n; i++) {
            if (!otlp.items[i].dropped) {
                all[n++] = &otlp.items[i];
            }
        }
        for (size_t i = 0; i < buf.n; i++) {
            if (!buf.items[i].dropped) {
                all[n++] = &buf.items[i];
            }
        }
        qsort(all, n, sizeof *all, by_start_desc);
        json_t *arr = json_array();
        for (size_t i = 0; arr != NULL && i < n && (int64_t)i < f.limit; i++) {
            if (json_array_append(arr, all[i]->json) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        resp = respond_json(
            st, 200, arr != NULL ? json_pack("{s:o}", "traces", arr) : NULL);
    } else {
        resp = respond_code(st, rc);
    }
    free(all);
    rows_free(&otlp);
    rows_free(&buf);
    free(attr_copy);
    return resp;
}

/* ---- one trace ---------------------------------------------------------- */

typedef struct detail {
    json_t *obj;   /* trace_id, task_id, service, ... */
    json_t *spans; /* the spans array */
    const char *source;
    int64_t now_ns;
} detail;

static bool take_summary(const taskspan__trace_summary *t, void *payload)
{
    detail *d = payload;
    json_t *s = summary_json(t, d->source, d->now_ns);

    if (s == NULL) {
        return false;
    }
    json_decref(d->obj);
    d->obj = s;
    return true;
}

static bool take_span(const taskspan__stored_span *s, void *payload)
{
    detail *d = payload;

    return json_array_append_new(d->spans, taskspan__json_stored_span(s)) == 0;
}

/* Whether --db's buffer has the trace; if so d holds its version. */
static bool from_buffer_view(taskspan__api *api, const char *id, detail *d)
{
    json_t *spans = NULL;

    if (api->buffer == NULL ||
        taskspan__buffer_view_trace(api->buffer, id, take_summary, d,
                                    &spans) != TASKSPAN_OK) {
        return false;
    }
    json_decref(d->spans);
    d->spans = spans;
    return true;
}

static struct MHD_Response *get_trace(unsigned *st, taskspan__api *api,
                                      const char *id)
{
    detail d = {.now_ns = now_ns(), .source = "otlp"};
    taskspan_code rc;

    d.spans = json_array();
    if (d.spans == NULL) {
        return NULL;
    }
    /* The buffer's version while it is running (see merge_sources). */
    d.source = "buffer";
    bool from_buffer = from_buffer_view(api, id, &d);
    json_t *running = d.obj != NULL ? json_object_get(d.obj, "status") : NULL;
    if (from_buffer && running != NULL &&
        strcmp(json_string_value(running), "running") == 0) {
        rc = TASKSPAN_OK;
    } else {
        json_t *buffer_obj = d.obj, *buffer_spans = d.spans;
        d.obj = NULL;
        d.spans = json_array();
        d.source = "otlp";
        rc = d.spans != NULL ? taskspan__vstore_get(api->store, id, d.now_ns,
                                                    take_summary, &d)
                             : TASKSPAN_E_NOMEM;
        if (rc == TASKSPAN_OK) {
            rc = taskspan__vstore_trace_spans(api->store, id, take_span, &d);
        }
        if (rc == TASKSPAN_E_NOT_FOUND && from_buffer) {
            json_decref(d.obj);
            json_decref(d.spans);
            d.obj = buffer_obj;
            d.spans = buffer_spans;
            rc = TASKSPAN_OK;
        } else {
            json_decref(buffer_obj);
            json_decref(buffer_spans);
        }
    }
    if (rc != TASKSPAN_OK) {
        json_decref(d.obj);
        json_decref(d.spans);
        return respond_code(st, rc);
    }
    json_object_set_new(d.obj, "spans", d.spans);
    return respond_json(st, 200, d.obj);
}

/* Whether the trace should come from --db's buffer: it is running
 * there, or it is only there (see merge_sources). */
static bool prefer_buffer(taskspan__api *api, const char *id)
{
    detail d = {.now_ns = now_ns(), .source = "buffer"};
    bool in_buffer = false, running = false;

    d.spans = json_array();
    if (api->buffer != NULL && d.spans != NULL) {
        in_buffer = from_buffer_view(api, id, &d);
        json_t *st = json_object_get(d.obj, "status");
        running = st != NULL && strcmp(json_string_value(st), "running") == 0;
    }
    json_decref(d.obj);
    json_decref(d.spans);
    return in_buffer &&
           (running || taskspan__vstore_get(api->store, id, 0, ignore_summary,
                                            NULL) == TASKSPAN_E_NOT_FOUND);
}

static struct MHD_Response *download(unsigned *st, taskspan__api *api,
                                     const char *id)
{
    json_t *j = NULL;
    char disposition[80];
    taskspan_code rc;

    if (prefer_buffer(api, id)) {
        char *text = NULL;
        size_t len = 0;
        rc = taskspan__buffer_view_dump(api->buffer, id, &text, &len);
        if (rc == TASKSPAN_OK) {
            j = json_loadb(text, len, 0, NULL);
            rc = j != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
        }
        taskspan_free(text);
    } else {
        rc = taskspan__trace_download(&j, api->store, id);
    }
    if (rc != TASKSPAN_OK) {
        return respond_code(st, rc);
    }
    struct MHD_Response *r = respond_json(st, 200, j);
    if (r != NULL) {
        snprintf(disposition, sizeof disposition,
                 "attachment; filename=\"trace-%s.json\"", id);
        MHD_add_response_header(r, "Content-Disposition", disposition);
    }
    return r;
}

/* ---- services ----------------------------------------------------------- */

static bool add_name(const char *name, void *payload)
{
    return json_array_append_new(payload, taskspan__json_text(name)) == 0;
}

static struct MHD_Response *services(unsigned *st, taskspan__api *api)
{
    json_t *arr = json_array();

    if (arr == NULL) {
        return NULL;
    }
    taskspan_code rc = taskspan__vstore_services(api->store, add_name, arr);
    if (rc != TASKSPAN_OK) {
        json_decref(arr);
        return respond_code(st, rc);
    }
    return respond_json(st, 200, json_pack("{s:o}", "services", arr));
}

/* ---- stream ------------------------------------------------------------- */

static struct MHD_Response *stream(unsigned *st, taskspan__api *api,
                                   struct MHD_Connection *conn)
{
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   "Last-Event-ID");
    const char *trace = arg(conn, "trace");
    int64_t after = 0;
    char id[33];

    if (last == NULL || last[0] == '\0') {
        last = arg(conn, "last_event_id");
    }
    if (last != NULL && (!parse_i64(last, &after) || after < 0)) {
        return respond_error(st, 400,
                             "Last-Event-ID must be a stream event id");
    }
    if (trace != NULL && !parse_trace_id(id, trace, strlen(trace))) {
        return respond_error(st, 400, "trace must be 32 hex digits");
    }
    struct MHD_Response *r = taskspan__stream_open(
        api->hub, after, trace != NULL ? id : NULL, st);
    if (r != NULL) {
        common_headers(r);
    }
    return r;
}

/* ---- the UI's files ----------------------------------------------------- */

static struct MHD_Response *asset(unsigned *st, const char *url)
{
#ifdef TASKSPAN_HAVE_UI_ASSETS
    const taskspan__ui_asset *a = taskspan__ui_asset_find(
        strcmp(url, "/") == 0 ? "/index.html" : url);
    if (a != NULL) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            a->len, (void *)(uintptr_t)a->data, MHD_RESPMEM_PERSISTENT);
        if (r == NULL) {
            return NULL;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                a->content_type);
        /* Files change with the binary; revalidate rather than guess. */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        common_headers(r);
        *st = 200;
        return r;
    }
#else
    if (strcmp(url, "/") == 0) {
        return respond_error(st, 404,
                             "this taskspan was built without the web UI; "
                             "the JSON API is under /api/");
    }
#endif
    return respond_error(st, 404, "not found");
}

/* ---- routing ------------------------------------------------------------ */

struct MHD_Response *taskspan__api_handle(unsigned *out_status,
                                          struct MHD_Connection *conn,
                                          const char *method, const char *url,
                                          void *payload)
{
    taskspan__api *api = payload;
    static const char prefix[] = "/api/traces/";
    const size_t plen = sizeof prefix - 1;
    char id[33];

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        struct MHD_Response *r = respond_error(
            out_status, 405, "only GET and HEAD are served here");
        if (r != NULL) {
            MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        }
        return r;
    }
    if (!host_allowed(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_HOST))) {
        return respond_error(out_status, 403,
                             "Host must be localhost or an IP address");
    }
    if (strcmp(url, "/api/traces") == 0) {
        return list_traces(out_status, api, conn);
    }
    if (strcmp(url, "/api/services") == 0) {
        return services(out_status, api);
    }
    if (strcmp(url, "/api/stream") == 0) {
        return stream(out_status, api, conn);
    }
    if (strncmp(url, prefix, plen) == 0) {
        const char *rest = url + plen;
        size_t n = strcspn(rest, "/");
        if (!parse_trace_id(id, rest, n)) {
            return respond_error(out_status, 400,
                                 "a trace id is 32 hex digits");
        }
        if (rest[n] == '\0') {
            return get_trace(out_status, api, id);
        }
        if (strcmp(rest + n, "/otlp.json") == 0) {
            return download(out_status, api, id);
        }
        return respond_error(out_status, 404, "not found");
    }
    if (strncmp(url, "/api/", 5) == 0) {
        return respond_error(out_status, 404, "no such API");
    }
    return asset(out_status, url);
}
