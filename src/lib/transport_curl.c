/*
 * transport_curl.c -- one OTLP/HTTP POST over libcurl, and Retry-After.
 *
 * The only file that includes <curl/curl.h>. A transport owns one easy
 * handle and one multi handle, both reused across posts, so the connection
 * to the collector stays open between batches (OTLP: clients SHOULD keep
 * connections alive). The transfer is driven through the multi interface in
 * short polls, so a shutdown (the caller's abort flag) ends it within
 * POLL_MS; an idle curl_easy_perform() calls its progress callback only
 * about once a second. Request bodies are gzip'd here with zlib, and the
 * outcome is classified for retry as the OTLP specification says.
 */
#include "transport.h"

#define ZLIB_CONST /* next_in is const: the request body is never written */

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

/* OTLP: a client MUST limit the response body it reads, after
 * decompression; 4 MiB is the recommended default. */
#define MAX_RESPONSE_BYTES ((size_t)4 * 1024 * 1024)
/* How often the transfer loop looks at the abort flag while idle. */
#define POLL_MS 50
/* Connecting never takes longer than this, whatever the request timeout. */
#define MAX_CONNECT_MS 10000
/* A Retry-After further away than a day is taken as a day. */
#define RETRY_AFTER_CAP_S 86400

typedef struct curl_transport {
    CURL *easy;
    CURLM *multi; /* holds the connection cache between posts */
    struct curl_slist *headers;
    char *url; /* the endpoint as messages show it (see display_url) */
    bool gzip;
    int timeout_ms;
    int limit_ms; /* set by transport_limit(); 0: none */
    /* The post in progress, written by the callbacks. */
    const atomic_bool *stop;
    bool aborted;   /* stop was seen */
    bool too_large; /* the response passed MAX_RESPONSE_BYTES */
    bool nomem;     /* the response buffer could not grow */
    uint8_t *body;
    size_t body_len;
    size_t body_cap;
    bool has_retry_after;
    char retry_after[64]; /* "" when the value did not fit: invalid */
    char errbuf[CURL_ERROR_SIZE];
} curl_transport;

/* ---- process-wide initialisation ----------------------------------------- */

/* curl_global_init() is not thread-safe on older libcurls and is needed once
 * per process; curl_global_cleanup() is never called, because another part
 * of the program may still be using libcurl. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- callbacks ----------------------------------------------------------- */

/* Collect the response body, at most MAX_RESPONSE_BYTES of it. Returning
 * less than len makes curl fail the transfer with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *payload)
{
    curl_transport *t = payload;
    size_t len = size * nmemb;

    if (len > MAX_RESPONSE_BYTES - t->body_len) {
        t->too_large = true;
        return 0;
    }
    if (len > t->body_cap - t->body_len) {
        size_t cap = t->body_cap > 0 ? t->body_cap : 4096;
        while (cap < t->body_len + len) {
            cap *= 2;
        }
        if (cap > MAX_RESPONSE_BYTES) {
            cap = MAX_RESPONSE_BYTES;
        }
        uint8_t *p = realloc(t->body, cap);
        if (p == NULL) {
            t->nomem = true;
            return 0;
        }
        t->body = p;
        t->body_cap = cap;
    }
    memcpy(t->body + t->body_len, data, len);
    t->body_len += len;
    return len;
}

/* Keep the value of the last Retry-After header of the final response.
 * curl passes every header line, with its CRLF, of every response, so a
 * status line (a 1xx before the real answer) starts the collection over. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *payload)
{
    static const char name[] = "retry-after:";
    const size_t name_len = sizeof name - 1;
    curl_transport *t = payload;
    size_t len = size * nmemb;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        t->has_retry_after = false;
        t->retry_after[0] = '\0';
        return len;
    }
    if (len < name_len || strncasecmp(data, name, name_len) != 0) {
        return len;
    }
    const char *v = data + name_len;
    size_t vlen = len - name_len;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && strchr(" \t\r\n", v[vlen - 1]) != NULL) {
        vlen--;
    }
    t->has_retry_after = true;
    t->retry_after[0] = '\0';
    if (vlen < sizeof t->retry_after) {
        memcpy(t->retry_after, v, vlen);
        t->retry_after[vlen] = '\0';
    }
    return len;
}

/* Called by curl during the transfer: a non-zero return aborts it. */
static int on_progress(void *payload, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    curl_transport *t = payload;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (t->stop != NULL && atomic_load(t->stop)) {
        t->aborted = true;
        return 1;
    }
    return 0;
}

/* ---- open and close ------------------------------------------------------ */

/* The endpoint as messages show it: without user:password@, a query or a
 * fragment, any of which may carry a secret. OUT: malloc'd, NULL on OOM. */
static char *display_url(const char *url)
{
    const char *sep = strstr(url, "://");
    const char *host = sep != NULL ? sep + 3 : url;
    size_t auth_len = strcspn(host, "/?#");
    const char *rest = host;

    for (size_t i = 0; i < auth_len; i++) {
        if (host[i] == '@') {
            rest = host + i + 1;
        }
    }
    size_t head_len = (size_t)(host - url);
    size_t rest_len = strcspn(rest, "?#");
    char *out = malloc(head_len + rest_len + 1);
    if (out != NULL) {
        memcpy(out, url, head_len);
        memcpy(out + head_len, rest, rest_len);
        out[head_len + rest_len] = '\0';
    }
    return out;
}

/* Append line to *list; false on OOM (the list is then unchanged). */
static bool add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL) {
        return false;
    }
    *list = l;
    return true;
}

/* The request headers: ours, then the configured ones. "Expect:" stops curl
 * from sending "Expect: 100-continue" for a large body, which would cost a
 * round trip (or a one-second wait on servers that ignore it). */
static taskspan_code build_headers(curl_transport *t,
                                   const taskspan__export_config *cfg,
                                   char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->n_headers; i++) {
        const char *h = cfg->headers[i];
        if (h == NULL || strpbrk(h, "\r\n") != NULL) {
            return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "request header %zu is missing or "
                                  "contains a line break",
                                  i + 1);
        }
    }
    bool ok = add_header(&t->headers, "Content-Type: application/x-protobuf");
    ok = ok && add_header(&t->headers, "Expect:");
    if (cfg->gzip) {
        ok = ok && add_header(&t->headers, "Content-Encoding: gzip");
    }
    for (size_t i = 0; ok && i < cfg->n_headers; i++) {
        ok = add_header(&t->headers, cfg->headers[i]);
    }
    if (!ok) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                              "out of memory building request headers");
    }
    return TASKSPAN_OK;
}

/* Set an option on t->easy; on failure name it in err and goto done. */
#define SETOPT(opt, val)                                                      \
    do {                                                                      \
        c = curl_easy_setopt(t->easy, opt, val);                              \
        if (c != CURLE_OK) {                                                  \
            what = #opt;                                                      \
            goto done;                                                        \
        }                                                                     \
    } while (0)

/* Everything about the request that does not change between posts. */
static taskspan_code setup_easy(curl_transport *t,
                                const taskspan__export_config *cfg, char *err,
                                size_t errlen)
{
    CURLcode c = CURLE_OK;
    const char *what = NULL;
    char ua[64];
    long connect_ms = MAX_CONNECT_MS;

    snprintf(ua, sizeof ua, "OTel-OTLP-Exporter-C-taskspan/%s",
             taskspan_version());
    if (cfg->timeout_ms > 0 && cfg->timeout_ms < connect_ms) {
        connect_ms = cfg->timeout_ms;
    }
    SETOPT(CURLOPT_URL, cfg->endpoint);
    /* Signals are process-wide; a library thread must not use them (curl
     * would use SIGALRM for DNS timeouts with the synchronous resolver). */
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_HTTPHEADER, t->headers);
    /* CURLOPT_USERAGENT rather than a header line, so that a User-Agent in
     * the configured headers replaces it instead of being sent twice. */
    SETOPT(CURLOPT_USERAGENT, ua);
    if (cfg->timeout_ms > 0) {
        SETOPT(CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
    }
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 deprecated the bitmask */
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /* A redirect is answered as the status it is: OTLP defines none. */
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    if (cfg->ca_file != NULL) {
        SETOPT(CURLOPT_CAINFO, cfg->ca_file);
    }
    if (cfg->client_cert != NULL) {
        SETOPT(CURLOPT_SSLCERT, cfg->client_cert);
    }
    if (cfg->client_key != NULL) {
        SETOPT(CURLOPT_SSLKEY, cfg->client_key);
    }
    SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, (void *)t);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)t);
    SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
    SETOPT(CURLOPT_XFERINFODATA, (void *)t);
    SETOPT(CURLOPT_NOPROGRESS, 0L);
    /* "" offers every encoding this libcurl can undo, and undoes it; a
     * libcurl built without zlib refuses, and responses come plain. */
    (void)curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "");
done:
    if (c != CURLE_OK) {
        return taskspan__fail(
            err, errlen,
            c == CURLE_OUT_OF_MEMORY ? TASKSPAN_E_NOMEM : TASKSPAN_E_TRANSPORT,
            "libcurl refused %s: %s", what, curl_easy_strerror(c));
    }
    return TASKSPAN_OK;
}

#undef SETOPT

static void transport_close(void *tp)
{
    curl_transport *t = tp;

    if (t == NULL) {
        return;
    }
    /* The easy handle is never left in the multi (see run_transfer). */
    if (t->easy != NULL) {
        curl_easy_cleanup(t->easy);
    }
    if (t->multi != NULL) {
        curl_multi_cleanup(t->multi);
    }
    curl_slist_free_all(t->headers);
    free(t->url);
    free(t->body);
    free(t);
}

/* Create a transport for cfg. Strings are copied (libcurl copies the
 * options it is given), so cfg may be freed afterwards. */
static taskspan_code transport_open(void **out,
                                    const taskspan__export_config *cfg,
                                    char *err, size_t errlen)
{
    taskspan_code rc;
    curl_transport *t;

    *out = NULL;
    if (cfg == NULL || cfg->endpoint == NULL || cfg->endpoint[0] == '\0') {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "no OTLP traces endpoint configured");
    }
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        return taskspan__fail(err, errlen, TASKSPAN_E_TRANSPORT,
                              "curl_global_init failed: %s",
                              curl_easy_strerror(global_rc));
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                              "out of memory opening the transport");
    }
    t->gzip = cfg->gzip;
    t->timeout_ms = cfg->timeout_ms;
    t->url = display_url(cfg->endpoint);
    t->easy = curl_easy_init();
    t->multi = curl_multi_init();
    if (t->url == NULL || t->easy == NULL || t->multi == NULL) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                            "out of memory opening the transport");
        goto done;
    }
    rc = build_headers(t, cfg, err, errlen);
    if (rc == TASKSPAN_OK) {
        rc = setup_easy(t, cfg, err, errlen);
    }
done:
    if (rc != TASKSPAN_OK) {
        transport_close(t);
        return rc;
    }
    *out = t;
    return TASKSPAN_OK;
}

/* ---- one post ------------------------------------------------------------ */

/* gzip in (RFC 1952: deflate with windowBits 15 + 16). OUT: *out
 * (malloc'd), *out_len. */
static taskspan_code gzip_body(uint8_t **out, size_t *out_len,
                               const uint8_t *in, size_t len, char *err,
                               size_t errlen)
{
    z_stream z;
    uint8_t *buf;
    int zrc;

    *out = NULL;
    *out_len = 0;
    /* zlib counts in uInt; a body this large is refused long before. */
    if (len > UINT_MAX / 2) {
        return taskspan__fail(err, errlen, TASKSPAN_E_ENCODE,
                              "request body of %zu bytes is too large to "
                              "gzip",
                              len);
    }
    memset(&z, 0, sizeof z);
    zrc = deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                       Z_DEFAULT_STRATEGY);
    if (zrc != Z_OK) {
        return taskspan__fail(
            err, errlen,
            zrc == Z_MEM_ERROR ? TASKSPAN_E_NOMEM : TASKSPAN_E_ENCODE,
            "gzip of the request body failed (zlib %d)", zrc);
    }
    /* deflateBound() covers the gzip header and trailer, so one
     * deflate(Z_FINISH) call always completes. */
    uLong bound = deflateBound(&z, (uLong)len);
    buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&z);
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                              "out of memory compressing the request body");
    }
    z.next_in = in;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)bound;
    zrc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return taskspan__fail(err, errlen, TASKSPAN_E_ENCODE,
                              "gzip of the request body failed (zlib %d)",
                              zrc);
    }
    *out = buf;
    *out_len = (size_t)(bound - z.avail_out);
    return TASKSPAN_OK;
}

/* Drive the transfer to its end, looking at the abort flag every POLL_MS
 * while nothing happens (on_progress covers the busy moments). The easy
 * handle leaves the multi at the end; its connection stays in the multi's
 * cache for the next post. Returns the transfer's result. */
static CURLcode run_transfer(curl_transport *t)
{
    CURLcode rc = CURLE_FAILED_INIT;
    CURLMcode mc = curl_multi_add_handle(t->multi, t->easy);

    if (mc != CURLM_OK) {
        return mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY
                                         : CURLE_FAILED_INIT;
    }
    for (;;) {
        int running = 0;
        int left = 0;
        CURLMsg *m;
        bool done = false;

        mc = curl_multi_perform(t->multi, &running);
        if (mc != CURLM_OK) {
            break;
        }
        for (;;) {
            m = curl_multi_info_read(t->multi, &left);
            if (m == NULL) {
                break;
            }
            if (m->msg == CURLMSG_DONE && m->easy_handle == t->easy) {
                rc = m->data.result;
                done = true;
            }
        }
        if (done || running == 0) {
            break;
        }
        if (t->stop != NULL && atomic_load(t->stop)) {
            t->aborted = true;
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        mc = curl_multi_poll(t->multi, NULL, 0, POLL_MS, NULL);
        if (mc != CURLM_OK) {
            break;
        }
    }
    if (mc == CURLM_OUT_OF_MEMORY) {
        rc = CURLE_OUT_OF_MEMORY;
    }
    curl_multi_remove_handle(t->multi, t->easy);
    return rc;
}

/* Write into out->message "<what>: <url> (<curl's detail>)", one line. */
static void fail_message(const curl_transport *t, CURLcode c, const char *what,
                         taskspan__http_result *out)
{
    const char *detail = t->errbuf[0] != '\0' ? t->errbuf
                                              : curl_easy_strerror(c);

    /* Through taskspan__fail: truncating a long URL is intended here. */
    (void)taskspan__fail(out->message, sizeof out->message, out->code,
                         "%s: %s (%s)", what, t->url, detail);
    for (char *p = out->message; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20) {
            *p = ' ';
        }
    }
}

/* A transfer that got a complete response. OTLP: 429, 502, 503 and 504
 * SHOULD be retried; every other 4xx and 5xx MUST NOT be. A 1xx or 3xx as
 * the final answer is not OTLP either, so it is not retried. */
static void classify_status(const curl_transport *t, long status,
                            taskspan__http_result *out)
{
    if (status >= 200 && status <= 299) {
        out->code = TASKSPAN_OK;
        return;
    }
    out->code = TASKSPAN_E_HTTP_STATUS;
    out->retryable = status == 429 || status == 502 || status == 503 ||
                     status == 504;
    (void)taskspan__fail(out->message, sizeof out->message, out->code,
                         "HTTP %ld from %s", status, t->url);
}

/* A transfer that failed without a complete response. Failures that time or
 * a restarted collector can cure are retryable (OTLP: retry when the
 * connection fails or drops without a response); those that need the user
 * (certificates, the URL, a server that does not speak HTTP) are not. */
static void classify_error(const curl_transport *t, CURLcode c,
                           taskspan__http_result *out)
{
    const char *what = NULL;
    bool retry = true;
    long os_errno = 0;

    out->code = TASKSPAN_E_TRANSPORT;
    (void)curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno);
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        out->code = TASKSPAN_E_TIMEOUT;
        what = "timed out";
        break;
    case CURLE_COULDNT_CONNECT:
        what = os_errno == ECONNREFUSED ? "connection refused"
                                        : "cannot connect";
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        what = "cannot resolve host";
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        what = os_errno == ECONNRESET ? "connection reset"
                                      : "connection failed";
        break;
    case CURLE_GOT_NOTHING:
        what = "connection closed without a response";
        break;
    case CURLE_PARTIAL_FILE:
        what = "response cut short";
        break;
    case CURLE_SSL_CONNECT_ERROR:
        /* The handshake failed: often a reset or an overloaded server, and
         * at worst a misconfiguration whose batches stay buffered. */
        what = "TLS handshake failed";
        break;
    case CURLE_OUT_OF_MEMORY:
        out->code = TASKSPAN_E_NOMEM;
        what = "out of memory";
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
        what = "TLS certificate problem";
        retry = false;
        break;
    case CURLE_URL_MALFORMAT:
        what = "malformed URL";
        retry = false;
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* Also what curl says when the peer answers without an HTTP status
         * line (HTTP/0.9 is off), e.g. an endpoint on the gRPC port. */
        what = "unsupported protocol";
        retry = false;
        break;
    case CURLE_WEIRD_SERVER_REPLY:
        what = "not an HTTP response";
        retry = false;
        break;
    default:
        what = "request failed";
        break;
    }
    out->retryable = retry;
    fail_message(t, c, what, out);
}

/* Fill out from the finished transfer: flags our callbacks set first (they
 * explain the curl code), then curl's code, then the HTTP status. */
static void classify(curl_transport *t, CURLcode c, taskspan__http_result *out)
{
    long status = 0;

    (void)curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    out->status = status;
    if (t->has_retry_after) {
        out->retry_after_ms = taskspan__parse_retry_after(t->retry_after,
                                                          (int64_t)time(NULL));
    }
    if (t->aborted) {
        out->code = TASKSPAN_E_TIMEOUT;
        out->retryable = true;
        snprintf(out->message, sizeof out->message,
                 "export aborted at shutdown");
    } else if (t->too_large) {
        /* OTLP: an oversized response MUST be a non-retryable error. */
        out->code = TASKSPAN_E_ENCODE;
        out->retryable = false;
        (void)taskspan__fail(out->message, sizeof out->message, out->code,
                             "response from %s exceeded 4 MiB", t->url);
    } else if (t->nomem) {
        out->code = TASKSPAN_E_NOMEM;
        out->retryable = true;
        (void)taskspan__fail(out->message, sizeof out->message, out->code,
                             "out of memory reading the response from %s",
                             t->url);
    } else if (c != CURLE_OK) {
        classify_error(t, c, out);
    } else if (status == 0) {
        out->code = TASKSPAN_E_TRANSPORT;
        out->retryable = true;
        fail_message(t, c, "no HTTP status", out);
    } else {
        classify_status(t, status, out);
    }
    if (out->code == TASKSPAN_OK || out->code == TASKSPAN_E_HTTP_STATUS) {
        /* The body is handed over: a partial success or google.rpc.Status
         * the caller decodes. */
        out->body = t->body_len > 0 ? t->body : NULL;
        out->body_len = t->body_len;
        if (out->body != NULL) {
            t->body = NULL;
        }
    }
    /* Nothing of the response is kept: it may have been 4 MiB. */
    free(t->body);
    t->body = NULL;
    t->body_cap = 0;
    t->body_len = 0;
}

/* Forget the previous post's response and arm the callbacks. */
static void begin_post(curl_transport *t, const atomic_bool *stop)
{
    t->stop = stop;
    t->aborted = false;
    t->too_large = false;
    t->nomem = false;
    t->body_len = 0;
    t->has_retry_after = false;
    t->retry_after[0] = '\0';
    t->errbuf[0] = '\0';
}

static void result_init(taskspan__http_result *out)
{
    memset(out, 0, sizeof *out);
    out->code = TASKSPAN_E_TRANSPORT;
    out->retry_after_ms = -1;
}

/* POST body to the endpoint; see transport.h. Never blocks longer than the
 * configured timeout, nor more than POLL_MS after *stop becomes true. */
static void transport_post(void *tp, const uint8_t *body, size_t len,
                           const atomic_bool *stop, taskspan__http_result *out)
{
    curl_transport *t = tp;
    uint8_t *zbody = NULL;
    size_t zlen = 0;
    CURLcode c;

    result_init(out);
    if (stop != NULL && atomic_load(stop)) {
        out->code = TASKSPAN_E_TIMEOUT;
        out->retryable = true;
        snprintf(out->message, sizeof out->message,
                 "export aborted at shutdown");
        return;
    }
    if (t->gzip) {
        taskspan_code rc = gzip_body(&zbody, &zlen, body, len, out->message,
                                     sizeof out->message);
        if (rc != TASKSPAN_OK) {
            out->code = rc;
            out->retryable = rc == TASKSPAN_E_NOMEM;
            return;
        }
        body = zbody;
        len = zlen;
    }
    begin_post(t, stop);
    /* The caller's deadline, when it comes before the request timeout. */
    long effective = t->timeout_ms;
    if (t->limit_ms > 0 && (effective <= 0 || t->limit_ms < effective)) {
        effective = t->limit_ms;
    }
    (void)curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS,
                           effective > 0 ? effective : 0L);
    /* A NULL CURLOPT_POSTFIELDS would make curl read the body from its read
     * callback, which defaults to stdin. */
    c = curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS,
                         body != NULL ? (const void *)body : "");
    if (c == CURLE_OK) {
        c = curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)len);
    }
    if (c == CURLE_OK) {
        c = run_transfer(t);
    }
    classify(t, c, out);
    t->stop = NULL;
    free(zbody);
}

void taskspan__http_result_free(taskspan__http_result *r)
{
    if (r == NULL) {
        return;
    }
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

static void transport_limit(void *tp, int timeout_ms)
{
    curl_transport *t = tp;
    t->limit_ms = timeout_ms > 0 ? timeout_ms : 0;
}

const taskspan__transport_ops taskspan__transport_curl = {
    .name = "curl",
    .open = transport_open,
    .post = transport_post,
    .limit = transport_limit,
    .close = transport_close,
};

/* ---- Retry-After --------------------------------------------------------- */

static const char *const month_names[12] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};
static const char *const day_names[7] = {
    "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
};
static const char *const day_names_long[7] = {
    "Monday", "Tuesday",  "Wednesday", "Thursday",
    "Friday", "Saturday", "Sunday",
};

/* A broken-down UTC time, as an HTTP-date gives it. */
typedef struct http_date {
    int64_t year;
    int month; /* 1..12 */
    int day;
    int hour;
    int min;
    int sec;
} http_date;

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil), so no timegm() is needed. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of a day count from 1970-01-01 (Hinnant's civil_from_days). */
static int64_t year_of_days(int64_t z)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10); /* Jan and Feb: the next year */
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Match lit at *p, ignoring case; advance past it on success. */
static bool take_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);

    if (strncasecmp(*p, lit, n) != 0) {
        return false;
    }
    *p += n;
    return true;
}

/* Exactly n decimal digits at *p. */
static bool take_num(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* One of the n names; OUT: *idx, its index. */
static bool take_name(const char **p, const char *const *names, int n,
                      int *idx)
{
    for (int i = 0; i < n; i++) {
        if (take_lit(p, names[i])) {
            *idx = i;
            return true;
        }
    }
    return false;
}

/* "HH:MM:SS" */
static bool take_time(const char **p, http_date *d)
{
    return take_num(p, 2, &d->hour) && take_lit(p, ":") &&
           take_num(p, 2, &d->min) && take_lit(p, ":") &&
           take_num(p, 2, &d->sec);
}

static bool take_month(const char **p, http_date *d)
{
    int m;

    if (!take_name(p, month_names, 12, &m)) {
        return false;
    }
    d->month = m + 1;
    return true;
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf(const char *s, http_date *d)
{
    int wd, y;

    if (!(take_name(&s, day_names, 7, &wd) && take_lit(&s, ", ") &&
          take_num(&s, 2, &d->day) && take_lit(&s, " ") && take_month(&s, d) &&
          take_lit(&s, " ") && take_num(&s, 4, &y) && take_lit(&s, " ") &&
          take_time(&s, d) && take_lit(&s, " GMT"))) {
        return false;
    }
    d->year = y;
    return *s == '\0';
}

/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT". A two-digit year more than 50
 * years ahead of now is in the past century (RFC 7231, 7.1.1.1). */
static bool parse_rfc850(const char *s, int64_t now_year, http_date *d)
{
    int wd, yy;

    if (!(take_name(&s, day_names_long, 7, &wd) && take_lit(&s, ", ") &&
          take_num(&s, 2, &d->day) && take_lit(&s, "-") && take_month(&s, d) &&
          take_lit(&s, "-") && take_num(&s, 2, &yy) && take_lit(&s, " ") &&
          take_time(&s, d) && take_lit(&s, " GMT"))) {
        return false;
    }
    d->year = now_year - now_year % 100 + yy;
    if (d->year > now_year + 50) {
        d->year -= 100;
    }
    return *s == '\0';
}

/* asctime: "Sun Nov  6 08:49:37 1994" (a one-digit day is space-padded). */
static bool parse_asctime(const char *s, http_date *d)
{
    int wd, y;

    if (!(take_name(&s, day_names, 7, &wd) && take_lit(&s, " ") &&
          take_month(&s, d) && take_lit(&s, " "))) {
        return false;
    }
    if (*s == ' ') {
        s++;
        if (!take_num(&s, 1, &d->day)) {
            return false;
        }
    } else if (!take_num(&s, 2, &d->day)) {
        return false;
    }
    if (!(take_lit(&s, " ") && take_time(&s, d) && take_lit(&s, " ") &&
          take_num(&s, 4, &y))) {
        return false;
    }
    d->year = y;
    return *s == '\0';
}

static bool date_valid(const http_date *d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int last = mdays[d->month - 1];

    if (d->month == 2 && is_leap(d->year)) {
        last = 29;
    }
    /* 60 seconds: a leap second is a valid HTTP-date second. */
    return d->day >= 1 && d->day <= last && d->hour <= 23 && d->min <= 59 &&
           d->sec <= 60;
}

/* delay-seconds: digits only, saturating at the cap. */
static int64_t parse_seconds(const char *s, size_t n)
{
    int64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > RETRY_AFTER_CAP_S) {
            v = RETRY_AFTER_CAP_S;
        }
    }
    return v * 1000;
}

int64_t taskspan__parse_retry_after(const char *value, int64_t now_s)
{
    char buf[40];
    http_date d;
    size_t n;

    if (value == NULL) {
        return -1;
    }
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    n = strlen(value);
    while (n > 0 && strchr(" \t\r\n", value[n - 1]) != NULL) {
        n--;
    }
    if (n == 0) {
        return -1;
    }
    if (strspn(value, "0123456789") >= n) {
        return parse_seconds(value, n);
    }
    if (n >= sizeof buf) {
        return -1;
    }
    memcpy(buf, value, n);
    buf[n] = '\0';
    memset(&d, 0, sizeof d);
    int64_t now_days = now_s / 86400 - (now_s % 86400 < 0);
    if (!parse_imf(buf, &d) &&
        !parse_rfc850(buf, year_of_days(now_days), &d) &&
        !parse_asctime(buf, &d)) {
        return -1;
    }
    if (!date_valid(&d)) {
        return -1;
    }
    int64_t at = days_from_civil(d.year, d.month, d.day) * 86400 +
                 d.hour * 3600 + d.min * 60 + d.sec;
    if (at <= now_s) {
        return 0;
    }
    return (at - now_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : at - now_s) *
           1000;
}
