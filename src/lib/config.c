/*
 * config.c -- the exporter's configuration, resolved once at open from the
 * options (which win) and the OpenTelemetry environment variables.
 *
 * Every variable is one row of `settings` below: its names, its type, its
 * default, where it lands and a help line. The rules are the OTel spec's
 * (configuration/sdk-environment-variables.md, protocol/exporter.md): an
 * empty value is unset; only "true" (any case) is true; enum values ignore
 * case (and, here, surrounding blanks); the per-signal variant (TRACES_,
 * SPAN_) wins over the generic variable. A malformed value never fails the
 * open: it is ignored with one line in cfg->warnings. Durations and
 * timeouts are whole milliseconds, and a timeout of 0 means no limit (so
 * timeout_ms and export_timeout_ms may be 0). Only a bad option fails.
 * A NULL getenv function reads the process environment.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The default of a length limit that has none; stored as SIZE_MAX. */
#define NO_LIMIT (-1LL)

/* How much of a bad value a warning quotes. */
#define SHOWN_MAX 60

#define DEFAULT_ENDPOINT "http://localhost:4318/v1/traces"
#define DEFAULT_CLOSE_TIMEOUT_MS 5000

struct loader;
struct setting;

/* A special setting's parser. Returns TASKSPAN_E_NOMEM on an allocation
 * failure only: a bad value is a warning, never an error. */
typedef taskspan_code (*load_fn)(struct loader *ld, const struct setting *s);

/* How a plain (numeric or enum) setting is stored and described. */
typedef struct value_type {
    void (*store)(taskspan__export_config *cfg, size_t offset, long long v);
    const char *expect;       /* "a number of milliseconds", "gzip or none" */
    const char *const *names; /* enum names by value; NULL for a number */
} value_type;

typedef struct setting {
    const char *name;       /* the generic variable */
    const char *specific;   /* the variant that wins over it, or NULL */
    const value_type *type; /* a plain setting, or NULL ... */
    load_fn load;           /* ... and then this parses it */
    long long def;          /* the default of a plain setting */
    long long min, max;     /* the range a number must fall in */
    size_t offset;          /* of its field in taskspan__export_config */
    const char *help;
} setting;

/* The state of one taskspan__config_load() call. */
typedef struct loader {
    taskspan__export_config *cfg;
    taskspan_export_mode mode;
    const char *opt_endpoint;     /* borrowed from the options */
    const char *opt_service_name; /* borrowed from the options */
    int opt_close_timeout_ms;
    taskspan__getenv_fn env;
    void *env_ctx;
    const char *env_service_name; /* OTEL_SERVICE_NAME, borrowed */
    const char *exe_name;         /* in the resource arena, or NULL */
    bool warnings_full;
} loader;

/* ---- small string helpers ----------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Trim s in place; returns the first character that is not blank. */
static char *trim(char *s)
{
    size_t n;

    while (is_blank(*s)) {
        s++;
    }
    n = strlen(s);
    while (n > 0 && is_blank(s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/* Whether v, less surrounding blanks, is word in any case. */
static bool equals_word(const char *v, size_t len, const char *word)
{
    while (len > 0 && is_blank(*v)) {
        v++;
        len--;
    }
    while (len > 0 && is_blank(v[len - 1])) {
        len--;
    }
    return len == strlen(word) && strncasecmp(v, word, len) == 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Undo %XX escapes in place. False for a '%' not followed by two hex
 * digits, and for %00, which no C string can hold. */
static bool percent_decode(char *s)
{
    char *out = s;

    while (*s != '\0') {
        if (*s != '%') {
            *out++ = *s++;
            continue;
        }
        int hi = hex_value(s[1]);
        int lo = hi < 0 ? -1 : hex_value(s[2]);
        if (lo < 0 || (hi == 0 && lo == 0)) {
            return false;
        }
        *out++ = (char)(hi * 16 + lo);
        s += 3;
    }
    *out = '\0';
    return true;
}

/* A copy of a..+alen, b and c; NULL when out of memory. */
static char *concat3(const char *a, size_t alen, const char *b, const char *c)
{
    size_t blen = strlen(b);
    size_t clen = strlen(c);
    char *out = malloc(alen + blen + clen + 1);

    if (out != NULL) {
        memcpy(out, a, alen);
        memcpy(out + alen, b, blen);
        memcpy(out + alen + blen, c, clen + 1);
    }
    return out;
}

/* ---- warnings and the disabled reason ----------------------------------- */

/* Write v into out (at least SHOWN_MAX + 4 bytes) as a warning quotes it:
 * at most SHOWN_MAX bytes, cut on a UTF-8 boundary and marked "...", with
 * control characters as '?' so that one warning stays one line. */
static void show_value(char *out, const char *v)
{
    size_t n = strlen(v);
    size_t cut = n > SHOWN_MAX ? SHOWN_MAX : n;

    while (cut < n && cut > 0 && ((unsigned char)v[cut] & 0xc0) == 0x80) {
        cut--;
    }
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)v[i];
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    memcpy(out + cut, cut < n ? "..." : "", cut < n ? 4 : 1);
}

/* Append one line to cfg->warnings. Once the buffer is full, the last line
 * ends in "..." and later lines are dropped. */
static void append_warning(loader *ld, const char *line)
{
    char *buf = ld->cfg->warnings;
    size_t size = sizeof ld->cfg->warnings;
    size_t used = strlen(buf);
    int n;

    if (ld->warnings_full) {
        return;
    }
    n = snprintf(buf + used, size - used, "%s%s", used > 0 ? "\n" : "", line);
    if (n < 0 || (size_t)n >= size - used) {
        memcpy(buf + size - 4, "...", 4);
        ld->warnings_full = true;
    }
}

/* Add the warning "NAME='value' <what>" (value NULL: "NAME: <what>"). */
static void warn(loader *ld, const char *name, const char *value,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void warn(loader *ld, const char *name, const char *value,
                 const char *fmt, ...)
{
    char line[sizeof ld->cfg->warnings];
    char shown[SHOWN_MAX + 4];
    va_list ap;
    int n;

    if (value != NULL) {
        show_value(shown, value);
        n = snprintf(line, sizeof line, "%s='%s' ", name, shown);
    } else {
        n = snprintf(line, sizeof line, "%s: ", name);
    }
    if (n < 0 || (size_t)n >= sizeof line) {
        n = 0;
    }
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    append_warning(ld, line);
}

/* Mark the configuration unusable for export: export is off and
 * disabled_reason says why (the first reason is kept: the one the user
 * meets first, reading the table top down). Export turned off on purpose
 * (the option, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none) leaves the
 * reason empty, because an explicit flush may still export then. */
static void unusable(loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void unusable(loader *ld, const char *fmt, ...)
{
    va_list ap;

    ld->cfg->enabled = false;
    if (ld->cfg->disabled_reason[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(ld->cfg->disabled_reason, sizeof ld->cfg->disabled_reason, fmt,
              ap);
    va_end(ap);
}

/* ---- reading variables -------------------------------------------------- */

/* A variable's value; NULL when unset or empty (the spec: empty = unset). */
static const char *get(loader *ld, const char *name)
{
    const char *v;

    if (name == NULL) {
        return NULL;
    }
    v = ld->env(name, ld->env_ctx);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The specific variant's value if set, else the generic one's; *out_name
 * says which variable it came from. */
static const char *get_either(loader *ld, const setting *s,
                              const char **out_name)
{
    const char *v = get(ld, s->specific);

    *out_name = s->specific;
    if (v == NULL) {
        *out_name = s->name;
        v = get(ld, s->name);
    }
    return v;
}

static const char *real_getenv(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

/* ---- plain settings: numbers and enums ---------------------------------- */

static void store_int(taskspan__export_config *cfg, size_t offset, long long v)
{
    *(int *)(void *)((char *)cfg + offset) = (int)v;
}

static void store_size(taskspan__export_config *cfg, size_t offset,
                       long long v)
{
    *(size_t *)(void *)((char *)cfg + offset) = v == NO_LIMIT ? SIZE_MAX
                                                              : (size_t)v;
}

static void store_bool(taskspan__export_config *cfg, size_t offset,
                       long long v)
{
    *(bool *)(void *)((char *)cfg + offset) = v != 0;
}

static const char *const compression_names[] = {"none", "gzip", NULL};
static const char *const bool_names[] = {"false", "true", NULL};

static const value_type type_ms = {store_int, "a number of milliseconds",
                                   NULL};
static const value_type type_count = {store_size, "a whole number", NULL};
static const value_type type_bytes = {store_size, "a number of bytes", NULL};
static const value_type type_compression = {store_bool, "gzip or none",
                                            compression_names};

/* Parse a whole decimal number, blanks around it allowed. */
static bool parse_whole(const char *v, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(v, &end, 10);
    if (errno != 0 || end == v) {
        return false;
    }
    while (is_blank(*end)) {
        end++;
    }
    return *end == '\0';
}

/* Parse v as one of names (any case); *out is its index. */
static bool parse_enum(const char *const *names, const char *v, long long *out)
{
    for (long long i = 0; names[i] != NULL; i++) {
        if (equals_word(v, strlen(v), names[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

static bool parse_plain(const setting *s, const char *v, long long *out)
{
    if (s->type->names != NULL) {
        return parse_enum(s->type->names, v, out);
    }
    return parse_whole(v, out) && *out >= s->min && *out <= s->max;
}

/* Warn that variable name of s holds v, which is not valid; val is what
 * is used instead. */
static void warn_plain(loader *ld, const setting *s, const char *name,
                       const char *v, long long val)
{
    char range[64] = "";
    char used[32];

    if (s->type->names != NULL) {
        snprintf(used, sizeof used, "%s", s->type->names[val]);
    } else {
        if (s->max == INT_MAX) {
            snprintf(range, sizeof range, " (%lld or more)", s->min);
        } else {
            snprintf(range, sizeof range, " (%lld to %lld)", s->min, s->max);
        }
        if (val == NO_LIMIT) {
            snprintf(used, sizeof used, "no limit");
        } else {
            snprintf(used, sizeof used, "%lld", val);
        }
    }
    warn(ld, name, v, "is not %s%s; using %s", s->type->expect, range, used);
}

/* Resolve a plain setting: a valid specific value wins; else the generic
 * value, else the default. A bad value is warned about with what is used
 * in its place, and a bad generic value only when it would have been used. */
static void load_plain(loader *ld, const setting *s)
{
    const char *sv = get(ld, s->specific);
    const char *gv = NULL;
    long long val = s->def;
    long long n;

    if (sv != NULL && parse_plain(s, sv, &n)) {
        val = n;
    } else {
        gv = get(ld, s->name);
        if (gv != NULL && parse_plain(s, gv, &n)) {
            val = n;
        } else if (gv != NULL) {
            warn_plain(ld, s, s->name, gv, val);
        }
        if (sv != NULL) {
            warn_plain(ld, s, s->specific, sv, val);
        }
    }
    s->type->store(ld->cfg, s->offset, val);
}

/* ---- export on or off --------------------------------------------------- */

static taskspan_code load_sdk_disabled(loader *ld, const setting *s)
{
    const char *v = get(ld, s->name);
    long long on = 0;

    /* ON and OFF are the caller's explicit choice; only AUTO asks. */
    if (ld->mode != TASKSPAN_EXPORT_AUTO || v == NULL) {
        return TASKSPAN_OK;
    }
    if (!parse_enum(bool_names, v, &on)) {
        warn(ld, s->name, v, "is neither true nor false; using false");
    } else if (on) {
        ld->cfg->enabled = false;
    }
    return TASKSPAN_OK;
}

/* OTEL_TRACES_EXPORTER is a comma-separated list of exporter names. This
 * SDK has one exporter, otlp; "none" alone turns it off. */
static taskspan_code load_traces_exporter(loader *ld, const setting *s)
{
    const char *v = get(ld, s->name);
    bool otlp = false, none = false, other = false;

    if (ld->mode != TASKSPAN_EXPORT_AUTO || v == NULL) {
        return TASKSPAN_OK;
    }
    for (const char *p = v; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (equals_word(p, len, "otlp")) {
            otlp = true;
        } else if (equals_word(p, len, "none")) {
            none = true;
        } else if (!equals_word(p, len, "")) {
            other = true;
        }
        p += len + (p[len] == ',');
    }
    if (other) {
        warn(ld, s->name, v,
             "names an exporter taskspan does not have (it has otlp and "
             "none); using %s",
             none && !otlp ? "none" : "otlp");
    }
    if (none && !otlp) {
        ld->cfg->enabled = false;
    }
    return TASKSPAN_OK;
}

static taskspan_code load_protocol(loader *ld, const setting *s)
{
    const char *name;
    const char *v = get_either(ld, s, &name);
    char shown[SHOWN_MAX + 4];

    if (v == NULL || equals_word(v, strlen(v), "http/protobuf")) {
        return TASKSPAN_OK;
    }
    /* Not an error: the recorder records anyway and export stays off,
     * saying why, rather than sending bytes the collector cannot read. */
    show_value(shown, v);
    unusable(ld,
             "%s=%s is not supported: taskspan exports http/protobuf; "
             "unset it or set http/protobuf",
             name, shown);
    warn(ld, name, v, "is not supported (only http/protobuf); export is off");
    return TASKSPAN_OK;
}

/* ---- the endpoint ------------------------------------------------------- */

/* Where the path of url begins (just after the host and port), or 0 when
 * url is not an http:// or https:// URL with a host, or holds a blank or a
 * control character. */
static size_t url_path_offset(const char *url)
{
    size_t i, host;

    if (strncasecmp(url, "http://", 7) == 0) {
        i = 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        i = 8;
    } else {
        return 0;
    }
    for (const char *p = url; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return 0;
        }
    }
    host = i;
    while (url[i] != '\0' && url[i] != '/' && url[i] != '?' && url[i] != '#') {
        if (url[i] == '@') {
            host = i + 1; /* skip user:password@ */
        }
        i++;
    }
    return host == i || url[host] == ':' ? 0 : i;
}

/* OTEL_EXPORTER_OTLP_ENDPOINT is a base: append v1/traces with exactly one
 * '/' before it, keeping any query. OTEL-CPP appends "/v1/traces" blindly,
 * which turns "http://c:4318/" into "http://c:4318//v1/traces". */
static char *traces_url_from_base(const char *url, size_t path_at)
{
    size_t query = path_at + strcspn(url + path_at, "?#");
    size_t end = query;

    while (end > path_at && url[end - 1] == '/') {
        end--;
    }
    return concat3(url, end, "/v1/traces", url + query);
}

/* OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is, except that a URL with
 * no path gets the root path "/" (the spec's only exception). */
static char *traces_url_as_is(const char *url, size_t path_at)
{
    return concat3(url, path_at, url[path_at] == '/' ? "" : "/",
                   url + path_at);
}

static taskspan_code endpoint_from_env(loader *ld, const char *name,
                                       const char *v, bool is_base)
{
    size_t path_at = url_path_offset(v);
    char shown[SHOWN_MAX + 4];

    if (path_at == 0) {
        /* The user meant some collector: sending to localhost instead
         * would hide the mistake, so export stays off until it is fixed.
         * The bad URL is kept, so that nothing can send by accident. */
        show_value(shown, v);
        unusable(ld,
                 "%s=%s is not an http:// or https:// URL with a host; fix "
                 "or unset it",
                 name, shown);
        warn(ld, name, v, "is not an http:// or https:// URL; export is off");
        ld->cfg->endpoint = strdup(v);
    } else if (is_base) {
        ld->cfg->endpoint = traces_url_from_base(v, path_at);
    } else {
        ld->cfg->endpoint = traces_url_as_is(v, path_at);
    }
    return ld->cfg->endpoint != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
}

static taskspan_code load_endpoint(loader *ld, const setting *s)
{
    const char *v;

    if (ld->opt_endpoint != NULL) {
        ld->cfg->endpoint = strdup(ld->opt_endpoint); /* checked already */
        return ld->cfg->endpoint != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    }
    v = get(ld, s->specific);
    if (v != NULL) {
        return endpoint_from_env(ld, s->specific, v, false);
    }
    v = get(ld, s->name);
    if (v != NULL) {
        return endpoint_from_env(ld, s->name, v, true);
    }
    ld->cfg->endpoint = strdup(DEFAULT_ENDPOINT);
    return ld->cfg->endpoint != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
}

/* ---- key=value lists: headers and resource attributes ------------------- */

typedef struct kv {
    char *key;
    char *value;
    size_t idx; /* 1-based position in the variable, for warnings */
} kv;

typedef struct kv_list {
    char *buf; /* a copy of the variable, cut in place */
    kv *items;
    size_t n;
} kv_list;

static void kv_list_free(kv_list *l)
{
    free(l->buf);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Split one entry "key=value" (blanks trimmed, value percent-decoded, key
 * too when decode_key) into *item. On a malformed entry, write why into
 * why (whylen bytes) and return false. */
static bool kv_entry(kv *item, char *entry, size_t idx, bool decode_key,
                     char *why, size_t whylen)
{
    char *eq = strchr(entry, '=');

    if (eq == NULL) {
        snprintf(why, whylen, "entry %zu has no '='", idx);
        return false;
    }
    *eq = '\0';
    item->idx = idx;
    item->key = trim(entry);
    item->value = trim(eq + 1);
    if (decode_key && !percent_decode(item->key)) {
        snprintf(why, whylen, "entry %zu has a bad %%XX escape", idx);
        return false;
    }
    if (item->key[0] == '\0') {
        snprintf(why, whylen, "entry %zu has an empty key", idx);
        return false;
    }
    if (!percent_decode(item->value)) {
        snprintf(why, whylen, "entry %zu has a bad %%XX escape", idx);
        return false;
    }
    return true;
}

/* Split text, "k1=v1,k2=v2" (W3C Baggage without properties), into *out.
 * Empty entries (a trailing comma) are skipped. Returns TASKSPAN_OK,
 * TASKSPAN_E_NOMEM, or TASKSPAN_E_INVALID_ARG with why set when an entry
 * is malformed. Free *out with kv_list_free() in every case. */
static taskspan_code kv_split(kv_list *out, const char *text, bool decode_key,
                              char *why, size_t whylen)
{
    size_t cap = 1;
    size_t idx = 0;
    char *p;

    memset(out, 0, sizeof *out);
    for (const char *c = text; *c != '\0'; c++) {
        cap += *c == ',';
    }
    out->buf = strdup(text);
    out->items = calloc(cap, sizeof *out->items);
    if (out->buf == NULL || out->items == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    p = out->buf;
    while (p != NULL) {
        char *comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        idx++;
        char *entry = trim(p);
        if (entry[0] != '\0') {
            if (!kv_entry(&out->items[out->n], entry, idx, decode_key, why,
                          whylen)) {
                return TASKSPAN_E_INVALID_ARG;
            }
            out->n++;
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return TASKSPAN_OK;
}

/* An RFC 9110 token: what an HTTP header name must be. */
static bool is_http_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    for (; *s != '\0'; s++) {
        char c = *s;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                     (c >= 'A' && c <= 'Z');
        if (!alnum && strchr(extra, c) == NULL) {
            return false;
        }
    }
    return true;
}

/* Whether s holds a control character other than a tab: a CR or LF would
 * let a value inject another header line. */
static bool has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return true;
        }
    }
    return false;
}

/* Set header key (replacing one of the same name, in any case). */
static taskspan_code header_put(taskspan__export_config *cfg, const char *key,
                                const char *value)
{
    size_t klen = strlen(key);
    char *line = concat3(key, klen, ": ", value);
    char **grown;

    if (line == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    for (size_t i = 0; i < cfg->n_headers; i++) {
        if (strncasecmp(cfg->headers[i], key, klen) == 0 &&
            cfg->headers[i][klen] == ':') {
            free(cfg->headers[i]);
            cfg->headers[i] = line;
            return TASKSPAN_OK;
        }
    }
    grown = realloc(cfg->headers, (cfg->n_headers + 1) * sizeof *grown);
    if (grown == NULL) {
        free(line);
        return TASKSPAN_E_NOMEM;
    }
    cfg->headers = grown;
    cfg->headers[cfg->n_headers++] = line;
    return TASKSPAN_OK;
}

/* Check the entries of a headers variable; false (why set) if one is bad. */
static bool headers_valid(const kv_list *l, char *why, size_t whylen)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!is_http_token(l->items[i].key)) {
            snprintf(why, whylen,
                     "entry %zu has a key that is not an HTTP "
                     "token",
                     l->items[i].idx);
            return false;
        }
        if (has_control(l->items[i].value)) {
            snprintf(why, whylen, "entry %zu has a control character",
                     l->items[i].idx);
            return false;
        }
    }
    return true;
}

/* Add the headers of variable name, or none of them if one is malformed. */
static taskspan_code headers_from(loader *ld, const char *name)
{
    const char *v = get(ld, name);
    char why[96] = "";
    kv_list l;
    taskspan_code rc;

    if (v == NULL) {
        return TASKSPAN_OK;
    }
    rc = kv_split(&l, v, false, why, sizeof why);
    if (rc == TASKSPAN_OK && !headers_valid(&l, why, sizeof why)) {
        rc = TASKSPAN_E_INVALID_ARG;
    }
    if (rc == TASKSPAN_E_INVALID_ARG) {
        /* Headers carry credentials: name the problem, not the value. */
        warn(ld, name, NULL, "%s; ignoring the whole variable", why);
        rc = TASKSPAN_OK;
        goto done;
    }
    for (size_t i = 0; i < l.n && rc == TASKSPAN_OK; i++) {
        rc = header_put(ld->cfg, l.items[i].key, l.items[i].value);
    }
done:
    kv_list_free(&l);
    return rc;
}

/* The generic headers first, then the per-signal ones, which replace
 * headers of the same name (as OTEL-CPP does). */
static taskspan_code load_headers(loader *ld, const setting *s)
{
    taskspan_code rc = headers_from(ld, s->name);

    if (rc == TASKSPAN_OK) {
        rc = headers_from(ld, s->specific);
    }
    return rc;
}

/* ---- files -------------------------------------------------------------- */

/* A certificate or key path: copied as given. A path that cannot be found
 * is kept, with a warning, so that the transport fails on it with a clear
 * TLS error rather than quietly connecting without it. */
static taskspan_code load_path(loader *ld, const setting *s)
{
    const char *name;
    const char *v = get_either(ld, s, &name);
    char **field = (char **)(void *)((char *)ld->cfg + s->offset);
    struct stat st;

    if (v == NULL) {
        return TASKSPAN_OK;
    }
    *field = strdup(v);
    if (*field == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    if (stat(v, &st) != 0) {
        warn(ld, name, v, "cannot be found (%s); using it anyway",
             strerror(errno));
    }
    return TASKSPAN_OK;
}

/* ---- variables that are read but not applied ---------------------------- */

static taskspan_code load_ignored(loader *ld, const setting *s)
{
    (void)ld;
    (void)s;
    return TASKSPAN_OK;
}

static taskspan_code load_config_file(loader *ld, const setting *s)
{
    const char *v = get(ld, s->name);

    if (v != NULL) {
        warn(ld, s->name, v,
             "is not supported (no declarative configuration); using the "
             "OTEL_* variables");
    }
    return TASKSPAN_OK;
}

/* ---- the resource ------------------------------------------------------- */

/* Set attribute a, replacing an attribute with the same key: the later
 * source wins and every key appears once. a.key must live in the arena. */
static taskspan_code resource_put(loader *ld, taskspan_attr a)
{
    taskspan__attr_list *l = &ld->cfg->resource;

    if (a.key == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->attrs[i].key, a.key) == 0) {
            l->attrs[i] = a;
            return TASKSPAN_OK;
        }
    }
    return taskspan__attr_list_push(l, a);
}

/* Set a string attribute; key and value are copied into the arena. */
static taskspan_code resource_put_str(loader *ld, const char *key,
                                      const char *value)
{
    taskspan__arena *a = &ld->cfg->resource_arena;
    char *v = taskspan__arena_strdup(a, value);

    if (v == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    return resource_put(ld,
                        taskspan_attr_str(taskspan__arena_strdup(a, key), v));
}

static const taskspan_attr *resource_find(loader *ld, const char *key)
{
    for (size_t i = 0; i < ld->cfg->resource.n; i++) {
        if (strcmp(ld->cfg->resource.attrs[i].key, key) == 0) {
            return &ld->cfg->resource.attrs[i];
        }
    }
    return NULL;
}

/* The base name of this process's executable, in buf; NULL if unknown
 * (no /proc, as on macOS). */
static const char *read_exe_name(char *buf, size_t size)
{
    static const char deleted[] = " (deleted)";
    const size_t dlen = sizeof deleted - 1;
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    const char *base;

    if (n <= 0) {
        return NULL;
    }
    buf[n] = '\0';
    /* Linux marks an executable replaced since it started; the name is
     * still the one the process was started as. */
    if ((size_t)n > dlen && strcmp(buf + n - dlen, deleted) == 0) {
        buf[(size_t)n - dlen] = '\0';
    }
    base = strrchr(buf, '/');
    base = base != NULL ? base + 1 : buf;
    return base[0] != '\0' ? base : NULL;
}

/* What taskspan finds out by itself: process.pid, process.executable.name,
 * host.name. They come first so that OTEL_RESOURCE_ATTRIBUTES can correct
 * them (a container may want the node's host.name), as in the OTel SDKs,
 * where the environment's attributes win over the detectors'. */
static taskspan_code detect_resource(loader *ld)
{
    taskspan__arena *a = &ld->cfg->resource_arena;
    char path[4096];
    char host[256];
    const char *exe = read_exe_name(path, sizeof path);
    taskspan_code rc;

    if (exe != NULL) {
        ld->exe_name = taskspan__arena_strdup(a, exe);
        if (ld->exe_name == NULL) {
            return TASKSPAN_E_NOMEM;
        }
    }
    const char *pid_key = taskspan__arena_strdup(a, "process.pid");
    rc = resource_put(ld, taskspan_attr_int(pid_key, (int64_t)getpid()));
    if (rc == TASKSPAN_OK) {
        rc = resource_put_str(ld, "process.executable.name",
                              exe != NULL ? exe : "unknown");
    }
    /* POSIX leaves the result unterminated when the name is truncated. */
    host[sizeof host - 1] = '\0';
    if (rc == TASKSPAN_OK && gethostname(host, sizeof host - 1) == 0 &&
        host[0] != '\0') {
        rc = resource_put_str(ld, "host.name", host);
    }
    return rc;
}

/* OTEL_RESOURCE_ATTRIBUTES: keys and values percent-decoded. If any entry
 * is malformed, the whole variable is discarded, as the spec says. */
static taskspan_code load_resource_attrs(loader *ld, const setting *s)
{
    const char *v = get(ld, s->name);
    char why[96] = "";
    kv_list l;
    taskspan_code rc;

    if (v == NULL) {
        return TASKSPAN_OK;
    }
    rc = kv_split(&l, v, true, why, sizeof why);
    if (rc == TASKSPAN_E_INVALID_ARG) {
        warn(ld, s->name, v, "%s; ignoring the whole variable", why);
        rc = TASKSPAN_OK;
        goto done;
    }
    for (size_t i = 0; i < l.n && rc == TASKSPAN_OK; i++) {
        rc = resource_put_str(ld, l.items[i].key, l.items[i].value);
    }
done:
    kv_list_free(&l);
    return rc;
}

static taskspan_code load_service_name(loader *ld, const setting *s)
{
    ld->env_service_name = get(ld, s->name);
    return TASKSPAN_OK;
}

/* Complete the resource. Precedence, later wins:
 *   1. detected: process.pid, process.executable.name, host.name;
 *   2. OTEL_RESOURCE_ATTRIBUTES;
 *   3. telemetry.sdk.name/language/version: facts about this library that
 *      no variable can change (the Go SDK orders them last too);
 *   4. service.name: the service_name option, else OTEL_SERVICE_NAME, else
 *      service.name from step 2, else "unknown_service:<executable>"
 *      ("unknown_service" when the executable is unknown, per semconv). */
static taskspan_code finish_resource(loader *ld)
{
    const char *service = ld->opt_service_name;
    const taskspan_attr *from_env = resource_find(ld, "service.name");
    char fallback[300];
    taskspan_code rc;

    rc = resource_put_str(ld, "telemetry.sdk.name", "taskspan");
    if (rc == TASKSPAN_OK) {
        rc = resource_put_str(ld, "telemetry.sdk.language", "c");
    }
    if (rc == TASKSPAN_OK) {
        rc = resource_put_str(ld, "telemetry.sdk.version", taskspan_version());
    }
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    if (service == NULL) {
        service = ld->env_service_name;
    }
    if (service == NULL && from_env != NULL &&
        from_env->type == TASKSPAN_ATTR_STRING && from_env->value.s[0]) {
        return TASKSPAN_OK; /* step 2 named it */
    }
    if (service == NULL) {
        snprintf(fallback, sizeof fallback, "unknown_service%s%s",
                 ld->exe_name != NULL ? ":" : "",
                 ld->exe_name != NULL ? ld->exe_name : "");
        service = fallback;
    }
    return resource_put_str(ld, "service.name", service);
}

/* ---- the table ---------------------------------------------------------- */

#define OFFSET(field) offsetof(taskspan__export_config, field)
#define OTLP "OTEL_EXPORTER_OTLP_"
#define OTLP_TRACES "OTEL_EXPORTER_OTLP_TRACES_"

/* Every variable taskspan reads, in the order they are resolved: what
 * turns export off comes first, so disabled_reason names the first
 * unusable setting. */
static const setting settings[] = {
    {.name = "OTEL_CONFIG_FILE",
     .load = load_config_file,
     .help = "Declarative configuration: not supported; a warning says so."},
    {.name = "OTEL_SDK_DISABLED",
     .load = load_sdk_disabled,
     .help = "true: no export (export_mode AUTO only). Default false."},
    {.name = "OTEL_TRACES_EXPORTER",
     .load = load_traces_exporter,
     .help = "otlp (default) or none: no export (export_mode AUTO only)."},
    {.name = OTLP "PROTOCOL",
     .specific = OTLP_TRACES "PROTOCOL",
     .load = load_protocol,
     .help = "Only http/protobuf (default); another value turns export "
             "off."},
    {.name = OTLP "ENDPOINT",
     .specific = OTLP_TRACES "ENDPOINT",
     .load = load_endpoint,
     .help = "Base URL, /v1/traces appended; the TRACES_ variant is the "
             "full URL. Default http://localhost:4318/v1/traces."},
    {.name = OTLP "HEADERS",
     .specific = OTLP_TRACES "HEADERS",
     .load = load_headers,
     .help = "key=value,... (values percent-decoded) added to each "
             "request; TRACES_ keys replace generic ones."},
    {.name = OTLP "TIMEOUT",
     .specific = OTLP_TRACES "TIMEOUT",
     .type = &type_ms,
     .def = 10000,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(timeout_ms),
     .help = "One request's time limit, ms; 0: none. Default 10000."},
    {.name = OTLP "COMPRESSION",
     .specific = OTLP_TRACES "COMPRESSION",
     .type = &type_compression,
     .def = 0,
     .offset = OFFSET(gzip),
     .help = "gzip or none (default)."},
    {.name = OTLP "CERTIFICATE",
     .specific = OTLP_TRACES "CERTIFICATE",
     .load = load_path,
     .offset = OFFSET(ca_file),
     .help = "PEM file of the CAs that verify the collector."},
    {.name = OTLP "CLIENT_CERTIFICATE",
     .specific = OTLP_TRACES "CLIENT_CERTIFICATE",
     .load = load_path,
     .offset = OFFSET(client_cert),
     .help = "PEM client certificate chain for mTLS."},
    {.name = OTLP "CLIENT_KEY",
     .specific = OTLP_TRACES "CLIENT_KEY",
     .load = load_path,
     .offset = OFFSET(client_key),
     .help = "PEM client private key for mTLS."},
    {.name = "OTEL_BSP_SCHEDULE_DELAY",
     .type = &type_ms,
     .def = 5000,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(schedule_delay_ms),
     .help = "Longest wait, ms, before closed spans are sent. Default 5000."},
    {.name = "OTEL_BSP_EXPORT_TIMEOUT",
     .type = &type_ms,
     .def = 30000,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(export_timeout_ms),
     .help = "Time limit, ms, of one batch, retries included; 0: none. "
             "Default 30000."},
    {.name = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
     .type = &type_count,
     .def = 512,
     .min = 1,
     .max = INT_MAX,
     .offset = OFFSET(max_batch_spans),
     .help = "Most spans in one request. Default 512. Not checked against "
             "OTEL_BSP_MAX_QUEUE_SIZE: taskspan has no queue."},
    {.name = "OTEL_BSP_MAX_QUEUE_SIZE",
     .load = load_ignored,
     .help = "Ignored: spans wait in the buffer file, not in a queue, so "
             "none is ever dropped."},
    {.name = "TASKSPAN_MAX_REQUEST_BYTES",
     .type = &type_bytes,
     .def = 4 * 1024 * 1024,
     .min = 64 * 1024,
     .max = 64 * 1024 * 1024, /* the OTLP spec's maximum request size */
     .offset = OFFSET(max_request_bytes),
     .help = "Largest request body, bytes (64 KiB to 64 MiB). Default 4 MiB, "
             "far below the Collector's 20 MiB."},
    {.name = "TASKSPAN_CRASH_GRACE_MS",
     .type = &type_ms,
     .def = 30000,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(crash_grace_ms),
     .help = "How long, ms, a runner that died without runner_exit must "
             "have recorded nothing before export closes its spans as "
             "crashed. Default 30000."},
    {.name = "TASKSPAN_RETENTION_SECONDS",
     .type = &type_count,
     .def = 7 * 24 * 3600,
     .min = 0,
     .max = 100LL * 366 * 24 * 3600,
     .offset = OFFSET(retention_s),
     .help = "How long, seconds, the exporter keeps the events of an ended "
             "task whose spans were all delivered; then it prunes them as "
             "`taskspan gc` does. 0: never (prune with `taskspan gc`). "
             "Default 604800 (7 days)."},
    {.name = "OTEL_ATTRIBUTE_COUNT_LIMIT",
     .specific = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
     .type = &type_count,
     .def = 128,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.span_attrs),
     .help = "Most attributes on a span. Default 128."},
    /* The spec's default is 128, but main holds an event per step of a
     * task: one with 1,000 work items has about 4,000, and a task's
     * history is what taskspan is for, so nothing should be dropped. */
    {.name = "OTEL_SPAN_EVENT_COUNT_LIMIT",
     .type = &type_count,
     .def = 32768,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.span_events),
     .help = "Most events on a span. Default 32768 (taskspan's own)."},
    {.name = "OTEL_SPAN_LINK_COUNT_LIMIT",
     .type = &type_count,
     .def = 128,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.span_links),
     .help = "Most links on a span. Default 128."},
    {.name = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
     .type = &type_count,
     .def = 128,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.event_attrs),
     .help = "Most attributes on a span event. Default 128."},
    {.name = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
     .type = &type_count,
     .def = 128,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.link_attrs),
     .help = "Most attributes on a link. Default 128."},
    {.name = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
     .specific = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
     .type = &type_count,
     .def = NO_LIMIT,
     .min = 0,
     .max = INT_MAX,
     .offset = OFFSET(limits.value_len),
     .help = "Longest string attribute value, bytes. Default no limit."},
    {.name = "OTEL_RESOURCE_ATTRIBUTES",
     .load = load_resource_attrs,
     .help = "key=value,... (percent-decoded) added to the resource."},
    {.name = "OTEL_SERVICE_NAME",
     .load = load_service_name,
     .help = "service.name; wins over OTEL_RESOURCE_ATTRIBUTES'. Default "
             "unknown_service:<executable>."},
};

/* ---- options ------------------------------------------------------------ */

/* Check the options and copy what this module reads into ld. A version 1
 * struct ends before export_mode: its version 2 fields are not read. */
static taskspan_code take_options(loader *ld, const taskspan_options *o,
                                  char *err, size_t errlen)
{
    if (o == NULL) {
        return TASKSPAN_OK;
    }
    if (o->version < 1 || o->version > TASKSPAN_OPTIONS_VERSION) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "options version %d is not supported "
                              "(initialise with TASKSPAN_OPTIONS_INIT)",
                              o->version);
    }
    if (o->version < 2) {
        return TASKSPAN_OK;
    }
    if (o->export_mode != TASKSPAN_EXPORT_AUTO &&
        o->export_mode != TASKSPAN_EXPORT_OFF &&
        o->export_mode != TASKSPAN_EXPORT_ON) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "export_mode %d is not a taskspan_export_mode",
                              (int)o->export_mode);
    }
    if (o->endpoint != NULL && url_path_offset(o->endpoint) == 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "endpoint '%.60s' is not an http:// or "
                              "https:// URL with a host",
                              o->endpoint);
    }
    if (o->service_name != NULL && o->service_name[0] == '\0') {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "service_name is empty");
    }
    ld->mode = o->export_mode;
    ld->opt_endpoint = o->endpoint;
    ld->opt_service_name = o->service_name;
    ld->opt_close_timeout_ms = o->close_timeout_ms;
    return TASKSPAN_OK;
}

static void apply_options(loader *ld)
{
    taskspan__export_config *cfg = ld->cfg;

    cfg->enabled = ld->mode != TASKSPAN_EXPORT_OFF;
    if (ld->opt_close_timeout_ms == 0) {
        cfg->close_timeout_ms = DEFAULT_CLOSE_TIMEOUT_MS;
    } else if (ld->opt_close_timeout_ms < 0) {
        cfg->close_timeout_ms = 0; /* close at once */
    } else {
        cfg->close_timeout_ms = ld->opt_close_timeout_ms;
    }
}

/* ---- entry points ------------------------------------------------------- */

taskspan_code taskspan__config_load(taskspan__export_config *out,
                                    const taskspan_options *opts,
                                    taskspan__getenv_fn env, void *env_ctx,
                                    char *err, size_t errlen)
{
    loader ld = {.cfg = out, .mode = TASKSPAN_EXPORT_AUTO};
    taskspan_code rc;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (out == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "out is NULL");
    }
    memset(out, 0, sizeof *out);
    ld.env = env != NULL ? env : real_getenv;
    ld.env_ctx = env_ctx;
    rc = take_options(&ld, opts, err, errlen);
    if (rc != TASKSPAN_OK) {
        goto done;
    }
    apply_options(&ld);
    rc = detect_resource(&ld);
    for (size_t i = 0; i < ARRAY_LEN(settings) && rc == TASKSPAN_OK; i++) {
        if (settings[i].type != NULL) {
            load_plain(&ld, &settings[i]);
        } else {
            rc = settings[i].load(&ld, &settings[i]);
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = finish_resource(&ld);
    }
    if (rc == TASKSPAN_E_NOMEM) {
        taskspan__fail(err, errlen, rc, "out of memory");
    }
done:
    if (rc != TASKSPAN_OK) {
        taskspan__config_free(out);
    }
    return rc;
}

void taskspan__config_free(taskspan__export_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->endpoint);
    for (size_t i = 0; i < cfg->n_headers; i++) {
        free(cfg->headers[i]);
    }
    free(cfg->headers);
    free(cfg->ca_file);
    free(cfg->client_cert);
    free(cfg->client_key);
    taskspan__attr_list_free(&cfg->resource);
    taskspan__arena_free(&cfg->resource_arena);
    memset(cfg, 0, sizeof *cfg);
}
