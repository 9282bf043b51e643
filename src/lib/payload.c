/*
 * payload.c -- an event's typed attributes to and from its JSON payload.
 *
 * The buffer keeps each payload as one JSON object (the seed's `payload`
 * column, readable with plain SQL). Types survive the round trip: jansson
 * keeps integers and reals apart (a real is always written with a '.' or an
 * exponent), booleans are JSON true/false, arrays are homogeneous JSON arrays.
 * Only this file includes <jansson.h>.
 */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *array_to_json(const taskspan_attr *a)
{
    json_t *arr = json_array();
    size_t n = a->value.array.count;
    const void *items = a->value.array.items;

    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = NULL;
        switch (a->type) {
        case TASKSPAN_ATTR_STRING_ARRAY: {
            const char *s = ((const char *const *)items)[i];
            v = s != NULL ? json_string(s) : NULL;
            break;
        }
        case TASKSPAN_ATTR_INT_ARRAY:
            v = json_integer(((const int64_t *)items)[i]);
            break;
        case TASKSPAN_ATTR_DOUBLE_ARRAY: {
            double d = ((const double *)items)[i];
            v = isfinite(d) ? json_real(d) : NULL;
            break;
        }
        case TASKSPAN_ATTR_BOOL_ARRAY:
            v = json_boolean(((const int *)items)[i]);
            break;
        default:
            break;
        }
        if (v == NULL || json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* Check one attribute; on failure write why into err. */
static bool attr_valid(const taskspan_attr *a, size_t idx, char *err,
                       size_t errlen)
{
    if (a->key == NULL || a->key[0] == '\0') {
        taskspan__fail(err, errlen, 0, "attribute %zu has an empty key", idx);
        return false;
    }
    if (strlen(a->key) > TASKSPAN_MAX_NAME_LEN) {
        taskspan__fail(err, errlen, 0,
                       "attribute key '%.32s...' is longer "
                       "than %d bytes",
                       a->key, TASKSPAN_MAX_NAME_LEN);
        return false;
    }
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        if (a->value.s == NULL) {
            taskspan__fail(err, errlen, 0, "attribute '%s' is a NULL string",
                           a->key);
            return false;
        }
        return true;
    case TASKSPAN_ATTR_DOUBLE:
        if (!isfinite(a->value.d)) {
            taskspan__fail(err, errlen, 0,
                           "attribute '%s' is not a finite "
                           "number",
                           a->key);
            return false;
        }
        return true;
    case TASKSPAN_ATTR_INT:
    case TASKSPAN_ATTR_BOOL:
        return true;
    case TASKSPAN_ATTR_STRING_ARRAY:
    case TASKSPAN_ATTR_INT_ARRAY:
    case TASKSPAN_ATTR_DOUBLE_ARRAY:
    case TASKSPAN_ATTR_BOOL_ARRAY:
        if (a->value.array.count > 0 && a->value.array.items == NULL) {
            taskspan__fail(err, errlen, 0,
                           "attribute '%s' has %zu items but "
                           "a NULL array",
                           a->key, a->value.array.count);
            return false;
        }
        return true;
    }
    taskspan__fail(err, errlen, 0, "attribute '%s' has unknown type %d",
                   a->key, (int)a->type);
    return false;
}

static json_t *attr_to_json(const taskspan_attr *a)
{
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        return json_string(a->value.s);
    case TASKSPAN_ATTR_INT:
        return json_integer(a->value.i);
    case TASKSPAN_ATTR_DOUBLE:
        return json_real(a->value.d);
    case TASKSPAN_ATTR_BOOL:
        return json_boolean(a->value.b);
    default:
        return array_to_json(a);
    }
}

/* Whether s can be written between JSON quotes as it is: printable ASCII
 * but the quote and the backslash (what jansson writes unescaped). */
static bool plain_text(const char *s, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\') {
            return false;
        }
    }
    *len = (size_t)(p - (const unsigned char *)s);
    return true;
}

/* v in decimal at out (no NUL); its length, or -1 when size is short.
 * snprintf's format parsing was a tenth of an emit. */
static int format_int(char *out, size_t size, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    /* Negative digits of a negative number: INT64_MIN has no positive. */
    int64_t x = v < 0 ? v : -v;
    do {
        tmp[n++] = (char)('0' - x % 10);
        x /= 10;
    } while (x != 0);
    if (v < 0) {
        tmp[n++] = '-';
    }
    if (n > size) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return (int)n;
}

/* The common payload (strings, integers and booleans of plain text, with
 * unique keys) written directly, byte for byte what jansson would write:
 * an emit then costs no JSON tree and no hash table. Returns false, having
 * written nothing, for anything else; jansson then does it (and reports
 * what is wrong). */
static bool encode_plain(char **out_json, const taskspan_attr *attrs,
                         size_t n_attrs)
{
    char buf[2048];
    size_t at = 0, len;

    if (n_attrs > 0 && attrs == NULL) {
        return false;
    }
    buf[at++] = '{';
    for (size_t i = 0; i < n_attrs; i++) {
        const taskspan_attr *a = &attrs[i];
        size_t klen;
        if (a->key == NULL || a->key[0] == '\0' ||
            !plain_text(a->key, &klen) || klen > TASKSPAN_MAX_NAME_LEN) {
            return false;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(attrs[k].key, a->key) == 0) {
                return false;
            }
        }
        if (sizeof buf - at < klen + 8) {
            return false;
        }
        if (i > 0) {
            buf[at++] = ',';
        }
        buf[at++] = '"';
        memcpy(buf + at, a->key, klen);
        at += klen;
        buf[at++] = '"';
        buf[at++] = ':';
        int n;
        switch (a->type) {
        case TASKSPAN_ATTR_STRING:
            if (a->value.s == NULL || !plain_text(a->value.s, &len) ||
                sizeof buf - at < len + 4) {
                return false;
            }
            buf[at++] = '"';
            memcpy(buf + at, a->value.s, len);
            at += len;
            buf[at++] = '"';
            break;
        case TASKSPAN_ATTR_INT:
            n = format_int(buf + at, sizeof buf - at, a->value.i);
            if (n < 0) {
                return false;
            }
            at += (size_t)n;
            break;
        case TASKSPAN_ATTR_BOOL:
            len = a->value.b ? 4 : 5;
            if (sizeof buf - at < len + 2) {
                return false;
            }
            memcpy(buf + at, a->value.b ? "true" : "false", len);
            at += len;
            break;
        default:
            return false;
        }
    }
    if (sizeof buf - at < 2 || at + 1 > TASKSPAN_MAX_PAYLOAD_BYTES) {
        return false;
    }
    buf[at++] = '}';
    char *out = malloc(at + 1);
    if (out == NULL) {
        return false;
    }
    memcpy(out, buf, at);
    out[at] = '\0';
    *out_json = out;
    return true;
}

taskspan_code taskspan__payload_encode(char **out_json,
                                       const taskspan_attr *attrs,
                                       size_t n_attrs, char *err,
                                       size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    json_t *obj = NULL;

    *out_json = NULL;
    if (n_attrs > TASKSPAN_MAX_ATTRS) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "%zu attributes, more than the limit of %d",
                              n_attrs, TASKSPAN_MAX_ATTRS);
    }
    if (n_attrs > 0 && attrs == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "n_attrs is %zu but attrs is NULL", n_attrs);
    }
    if (encode_plain(out_json, attrs, n_attrs)) {
        return TASKSPAN_OK;
    }
    obj = json_object();
    if (obj == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_attrs; i++) {
        const taskspan_attr *a = &attrs[i];
        if (!attr_valid(a, i, err, errlen)) {
            rc = TASKSPAN_E_INVALID_ARG;
            goto done;
        }
        if (json_object_get(obj, a->key) != NULL) {
            rc = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                "attribute key '%s' appears twice", a->key);
            goto done;
        }
        json_t *v = attr_to_json(a);
        if (v == NULL) {
            /* jansson returns NULL for invalid UTF-8, a NULL array string
             * or a non-finite array number, and for lack of memory. */
            rc = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                "attribute '%s' holds invalid UTF-8, a NULL "
                                "string or a non-finite number",
                                a->key);
            goto done;
        }
        if (json_object_set_new(obj, a->key, v) != 0) {
            rc = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                "attribute key '%s' is not valid UTF-8",
                                a->key);
            goto done;
        }
    }
    *out_json = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (*out_json == NULL) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
        goto done;
    }
    if (strlen(*out_json) > TASKSPAN_MAX_PAYLOAD_BYTES) {
        free(*out_json);
        *out_json = NULL;
        rc = taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                            "payload is larger than %d bytes as JSON",
                            TASKSPAN_MAX_PAYLOAD_BYTES);
    }
done:
    json_decref(obj);
    return rc;
}

/* ---- decoding ------------------------------------------------------------ */

taskspan_code taskspan__attr_list_push(taskspan__attr_list *list,
                                       taskspan_attr attr)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 8;
        bool fixed = list->attrs != NULL && list->attrs == list->fixed;
        taskspan_attr *p = fixed ? malloc(cap * sizeof *p)
                                 : realloc(list->attrs, cap * sizeof *p);
        if (p == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        if (fixed) {
            memcpy(p, list->attrs, list->n * sizeof *p);
        }
        list->attrs = p;
        list->cap = cap;
    }
    list->attrs[list->n++] = attr;
    return TASKSPAN_OK;
}

void taskspan__attr_list_free(taskspan__attr_list *list)
{
    if (list->attrs != list->fixed) {
        free(list->attrs);
    }
    list->attrs = list->fixed = NULL;
    list->n = list->cap = 0;
}

/* The element type of a JSON array: all strings, all integers, all numbers
 * (integers widen to doubles) or all booleans. A mixed or nested array has
 * no OTLP array type; it is kept as its JSON text instead. */
static taskspan_attr_type array_type(json_t *arr)
{
    bool any_str = false, any_int = false, any_real = false, any_bool = false;
    size_t i;
    json_t *v;

    json_array_foreach (arr, i, v) {
        if (json_is_string(v)) {
            any_str = true;
        } else if (json_is_integer(v)) {
            any_int = true;
        } else if (json_is_real(v)) {
            any_real = true;
        } else if (json_is_boolean(v)) {
            any_bool = true;
        } else {
            return TASKSPAN_ATTR_STRING;
        }
    }
    int kinds = any_str + (any_int || any_real) + any_bool;
    if (kinds > 1) {
        return TASKSPAN_ATTR_STRING;
    }
    if (any_bool) {
        return TASKSPAN_ATTR_BOOL_ARRAY;
    }
    if (any_real) {
        return TASKSPAN_ATTR_DOUBLE_ARRAY;
    }
    if (any_int) {
        return TASKSPAN_ATTR_INT_ARRAY;
    }
    return TASKSPAN_ATTR_STRING_ARRAY; /* empty, or all strings */
}

static taskspan_code decode_array(taskspan_attr *a, taskspan__arena *arena,
                                  json_t *arr)
{
    size_t n = json_array_size(arr), i;
    json_t *v;
    taskspan_attr_type t = array_type(arr);
    void *items = NULL;

    if (t == TASKSPAN_ATTR_STRING) {
        char *text = json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        a->type = TASKSPAN_ATTR_STRING;
        a->value.s = taskspan__arena_strdup(arena, text);
        free(text);
        return a->value.s != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    }
    size_t elem = t == TASKSPAN_ATTR_STRING_ARRAY   ? sizeof(const char *)
                  : t == TASKSPAN_ATTR_INT_ARRAY    ? sizeof(int64_t)
                  : t == TASKSPAN_ATTR_DOUBLE_ARRAY ? sizeof(double)
                                                    : sizeof(int);
    items = taskspan__arena_alloc(arena, n * elem);
    if (items == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    json_array_foreach (arr, i, v) {
        switch (t) {
        case TASKSPAN_ATTR_STRING_ARRAY: {
            const char *s = taskspan__arena_strdup(arena,
                                                   json_string_value(v));
            if (s == NULL) {
                return TASKSPAN_E_NOMEM;
            }
            ((const char **)items)[i] = s;
            break;
        }
        case TASKSPAN_ATTR_INT_ARRAY:
            ((int64_t *)items)[i] = json_integer_value(v);
            break;
        case TASKSPAN_ATTR_DOUBLE_ARRAY:
            ((double *)items)[i] = json_number_value(v);
            break;
        default:
            ((int *)items)[i] = json_is_true(v);
            break;
        }
    }
    a->type = t;
    a->value.array.items = items;
    a->value.array.count = n;
    return TASKSPAN_OK;
}

static taskspan_code decode_value(taskspan_attr *a, taskspan__arena *arena,
                                  json_t *v)
{
    if (json_is_string(v)) {
        a->type = TASKSPAN_ATTR_STRING;
        a->value.s = taskspan__arena_strdup(arena, json_string_value(v));
        return a->value.s != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
    }
    if (json_is_integer(v)) {
        a->type = TASKSPAN_ATTR_INT;
        a->value.i = json_integer_value(v);
        return TASKSPAN_OK;
    }
    if (json_is_real(v)) {
        a->type = TASKSPAN_ATTR_DOUBLE;
        a->value.d = json_real_value(v);
        return TASKSPAN_OK;
    }
    if (json_is_boolean(v)) {
        a->type = TASKSPAN_ATTR_BOOL;
        a->value.b = json_is_true(v);
        return TASKSPAN_OK;
    }
    if (json_is_array(v)) {
        return decode_array(a, arena, v);
    }
    /* null and nested objects have no OTLP scalar form: keep their JSON. */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    a->type = TASKSPAN_ATTR_STRING;
    a->value.s = taskspan__arena_strdup(arena, text);
    free(text);
    return a->value.s != NULL ? TASKSPAN_OK : TASKSPAN_E_NOMEM;
}

taskspan_code taskspan__payload_decode(taskspan__attr_list *list,
                                       taskspan__arena *arena,
                                       const char *json)
{
    bool handled = false;
    if (json != NULL) {
        taskspan_code rc = taskspan__payload_decode_flat(list, arena, json,
                                                         &handled);
        if (rc != TASKSPAN_OK || handled) {
            return rc;
        }
    }
    return taskspan__payload_decode_json(list, arena, json);
}

taskspan_code taskspan__payload_decode_json(taskspan__attr_list *list,
                                            taskspan__arena *arena,
                                            const char *json)
{
    taskspan_code rc = TASKSPAN_OK;
    const char *key;
    json_t *v;
    json_t *root = json_loads(json != NULL ? json : "{}",
                              JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    if (root == NULL || !json_is_object(root)) {
        /* A payload written by hand (e.g. with the sqlite3 shell) that is
         * not an object is still shown, never dropped. */
        taskspan_attr a = {.key = "payload", .type = TASKSPAN_ATTR_STRING};
        a.value.s = taskspan__arena_strdup(arena, json != NULL ? json : "");
        json_decref(root);
        if (a.value.s == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        return taskspan__attr_list_push(list, a);
    }
    json_object_foreach (root, key, v) {
        taskspan_attr a = {.key = taskspan__arena_strdup(arena, key)};
        if (a.key == NULL) {
            rc = TASKSPAN_E_NOMEM;
            break;
        }
        rc = decode_value(&a, arena, v);
        if (rc == TASKSPAN_OK) {
            rc = taskspan__attr_list_push(list, a);
        }
        if (rc != TASKSPAN_OK) {
            break;
        }
    }
    json_decref(root);
    return rc;
}
