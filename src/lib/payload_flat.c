/*
 * payload_flat.c -- a fast reader for the payloads the library writes
 * itself: one flat JSON object whose values are plain ASCII strings,
 * integers and booleans, or arrays of one of these.
 *
 * Why: the exporter rebuilds spans from stored events, and parsing each
 * event's payload with jansson (a tree of json_t, a hash table per object)
 * was a quarter of the export's CPU. This reader goes straight from the
 * text to attributes in the arena. It accepts only what it can decode
 * exactly as jansson would and gives up on anything else (escapes,
 * non-ASCII bytes, numbers with a fraction or exponent or more than 18
 * digits, null, nested objects, arrays of mixed or nested values or of
 * more than 64, duplicate keys, malformed text),
 * in which case taskspan__payload_decode() parses the text with jansson as
 * before. So the result never depends on which reader ran
 * (tests/unit/test_payload_flat.c checks both on the same inputs).
 */
#include "internal.h"

#include <string.h>

#define FLAT_MAX_ATTRS 64
#define FLAT_MAX_ITEMS 64
#define FLAT_MAX_DIGITS 18 /* always fits an int64_t */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

/* A string of printable ASCII without escapes; p at the opening quote.
 * The copy goes to the arena; NULL when not such a string. */
static const char *plain_string(const char **pp, taskspan__arena *arena,
                                bool *nomem)
{
    const char *p = *pp + 1, *start = p;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e || c == '\\') {
            return NULL;
        }
        p++;
    }
    size_t len = (size_t)(p - start);
    char *s = taskspan__arena_alloc(arena, len + 1);
    if (s == NULL) {
        *nomem = true;
        return NULL;
    }
    memcpy(s, start, len);
    s[len] = '\0';
    *pp = p + 1;
    return s;
}

/* An integer as JSON writes it (no leading zeros, no fraction). */
static bool plain_int(const char **pp, int64_t *out)
{
    const char *p = *pp;
    bool neg = *p == '-';
    int64_t v = 0;
    int digits = 0;

    p += neg;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9') {
        return false;
    }
    while (*p >= '0' && *p <= '9') {
        if (++digits > FLAT_MAX_DIGITS) {
            return false;
        }
        v = v * 10 + (*p++ - '0');
    }
    if (digits == 0 || *p == '.' || *p == 'e' || *p == 'E') {
        return false;
    }
    *out = neg ? -v : v;
    *pp = p;
    return true;
}

/* A scalar of an array: its type (STRING, INT or BOOL) and value. */
static bool plain_scalar(const char **pp, taskspan_attr *a,
                         taskspan__arena *arena, bool *nomem);

/* An array of plain strings, of integers or of booleans, all of one kind,
 * as jansson's reader makes it (payload.c): an empty one is an empty
 * string array. p at the '['. */
static bool plain_array(const char **pp, taskspan_attr *a,
                        taskspan__arena *arena, bool *nomem)
{
    taskspan_attr items[FLAT_MAX_ITEMS];
    size_t n = 0;
    const char *p = skip_ws(*pp + 1);

    while (*p != ']') {
        if (n == FLAT_MAX_ITEMS || (n > 0 && *p++ != ',')) {
            return false;
        }
        p = skip_ws(p);
        if (!plain_scalar(&p, &items[n], arena, nomem) ||
            (n > 0 && items[n].type != items[0].type)) {
            return false;
        }
        n++;
        p = skip_ws(p);
    }
    taskspan_attr_type t = n == 0 ? TASKSPAN_ATTR_STRING_ARRAY
                           : items[0].type == TASKSPAN_ATTR_STRING
                               ? TASKSPAN_ATTR_STRING_ARRAY
                           : items[0].type == TASKSPAN_ATTR_INT
                               ? TASKSPAN_ATTR_INT_ARRAY
                               : TASKSPAN_ATTR_BOOL_ARRAY;
    size_t elem = t == TASKSPAN_ATTR_STRING_ARRAY ? sizeof(const char *)
                  : t == TASKSPAN_ATTR_INT_ARRAY  ? sizeof(int64_t)
                                                  : sizeof(int);
    void *v = taskspan__arena_alloc(arena, n * elem);
    if (v == NULL) {
        *nomem = true;
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (t == TASKSPAN_ATTR_STRING_ARRAY) {
            ((const char **)v)[i] = items[i].value.s;
        } else if (t == TASKSPAN_ATTR_INT_ARRAY) {
            ((int64_t *)v)[i] = items[i].value.i;
        } else {
            ((int *)v)[i] = items[i].value.b;
        }
    }
    a->type = t;
    a->value.array.items = v;
    a->value.array.count = n;
    *pp = p + 1;
    return true;
}

static bool plain_value(const char **pp, taskspan_attr *a,
                        taskspan__arena *arena, bool *nomem)
{
    if (**pp == '[') {
        return plain_array(pp, a, arena, nomem);
    }
    return plain_scalar(pp, a, arena, nomem);
}

static bool plain_scalar(const char **pp, taskspan_attr *a,
                         taskspan__arena *arena, bool *nomem)
{
    const char *p = *pp;
    if (*p == '"') {
        a->type = TASKSPAN_ATTR_STRING;
        a->value.s = plain_string(&p, arena, nomem);
        *pp = p;
        return a->value.s != NULL;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        a->type = TASKSPAN_ATTR_BOOL;
        a->value.b = *p == 't';
        *pp = p + (*p == 't' ? 4 : 5);
        return true;
    }
    a->type = TASKSPAN_ATTR_INT;
    return plain_int(pp, &a->value.i);
}

taskspan_code taskspan__payload_decode_flat(taskspan__attr_list *list,
                                            taskspan__arena *arena,
                                            const char *json, bool *handled)
{
    taskspan_attr attrs[FLAT_MAX_ATTRS];
    size_t n = 0;
    bool nomem = false;
    const char *p = skip_ws(json);

    *handled = false;
    if (*p++ != '{') {
        return TASKSPAN_OK;
    }
    p = skip_ws(p);
    while (*p != '}') {
        if (n == FLAT_MAX_ATTRS || (n > 0 && *p++ != ',')) {
            return nomem ? TASKSPAN_E_NOMEM : TASKSPAN_OK;
        }
        p = skip_ws(p);
        taskspan_attr *a = &attrs[n];
        memset(a, 0, sizeof *a);
        if (*p != '"' || (a->key = plain_string(&p, arena, &nomem)) == NULL) {
            return nomem ? TASKSPAN_E_NOMEM : TASKSPAN_OK;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(attrs[i].key, a->key) == 0) {
                return TASKSPAN_OK; /* jansson keeps the last: let it */
            }
        }
        p = skip_ws(p);
        if (*p++ != ':') {
            return TASKSPAN_OK;
        }
        p = skip_ws(p);
        if (!plain_value(&p, a, arena, &nomem)) {
            return nomem ? TASKSPAN_E_NOMEM : TASKSPAN_OK;
        }
        n++;
        p = skip_ws(p);
    }
    if (*skip_ws(p + 1) != '\0') {
        return TASKSPAN_OK;
    }
    for (size_t i = 0; i < n; i++) {
        taskspan_code rc = taskspan__attr_list_push(list, attrs[i]);
        if (rc != TASKSPAN_OK) {
            return rc;
        }
    }
    *handled = true;
    return TASKSPAN_OK;
}
