/*
 * cmd_emit.c -- `taskspan emit`: record one event from a shell. A runner
 * written in shell records its whole lifecycle with it: the same span key,
 * parent, actor, phase and typed payload that the C API's typed helpers
 * record give the same spans (docs/span-model.md, the mapping table).
 *
 * Payload fields are key=text (a string) or key:=JSON, where JSON is one
 * scalar (3, 2.5, true, "text") or a flat array of one scalar type. The
 * JSON is parsed with jansson, which the library already depends on.
 */
#include "cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void emit_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan emit --task T --type TYPE [--span KEY] "
            "[--parent KEY]\n"
            "                     [--actor A] [--phase P] [--ts NS] "
            "[--db PATH]\n"
            "                     [--] [FIELD...]\n\n"
            "Record one event of task T in the buffer and print its seq.\n"
            "The event is committed before the command exits.\n\n"
            "  --task T      the task (required)\n"
            "  --type TYPE   the event type, e.g. runner_spawn (required)\n"
            "  --span KEY    the span key (default main), e.g. work_wi_001\n"
            "  --parent KEY  the parent span key, e.g. main\n"
            "  --actor A     who records it, e.g. runner, worker\n"
            "  --phase P     e.g. planning, executing, verifying\n"
            "  --ts NS       the time in ns since the epoch (default: now)\n"
            "  --db PATH     the buffer (default $TASKSPAN_DB, else the\n"
            "                per-user state directory)\n"
            "Options also take their value as --name=VALUE.\n\n"
            "FIELD is one payload field; fields keep the order given:\n"
            "  key=text          a string\n"
            "  key:=3            an integer (int64)\n"
            "  key:=2.5          a number (double)\n"
            "  key:=true         a boolean (or false)\n"
            "  key:='\"text\"'     a string, written as JSON\n"
            "  key:='[\"a\",\"b\"]'  an array of strings; [1,2], [1.5,2] "
            "and\n"
            "                    [true,false] give integer, number and\n"
            "                    boolean arrays\n\n"
            "To record what a typed helper records, give its span, parent,\n"
            "actor and phase (docs/span-model.md, the mapping table):\n"
            "  taskspan emit --task T --type work_item_start "
            "--span work_wi_1 \\\n"
            "      --parent main --actor worker --phase executing \\\n"
            "      work_item_id=wi_1 work_type=code\n\n"
            "Export is off: this command never waits for the network. The\n"
            "spans reach the collector through a runner's exporter on the\n"
            "same buffer, or through 'taskspan export'. A task first\n"
            "recorded while TRACEPARENT is set joins that trace.\n\n"
            "Exit status: 0 recorded, 1 not recorded (the buffer failed),\n"
            "2 bad arguments (nothing recorded).\n");
}

typedef struct emit_opts {
    const char *task, *type, *span, *parent, *actor, *phase, *ts, *db;
} emit_opts;

/* The values of key:=JSON fields: the parsed JSON (whose strings the
 * attributes borrow) and the item arrays, all freed together. */
typedef struct field_store {
    json_t **json;
    void **items;
    size_t n_json, n_items;
} field_store;

static void field_store_free(field_store *fs)
{
    for (size_t i = 0; i < fs->n_json; i++) {
        json_decref(fs->json[i]);
    }
    for (size_t i = 0; i < fs->n_items; i++) {
        free(fs->items[i]);
    }
    free(fs->json);
    free(fs->items);
}

/* Where the value of the option named by the first n bytes of arg goes;
 * NULL if no option has that name. */
static const char **option_slot(emit_opts *o, const char *arg, size_t n)
{
    static const char *const names[] = {
        "--task",  "--type",  "--span", "--parent",
        "--actor", "--phase", "--ts",   "--db",
    };
    const char **slots[] = {
        &o->task,  &o->type,  &o->span, &o->parent,
        &o->actor, &o->phase, &o->ts,   &o->db,
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == n && strncmp(arg, names[i], n) == 0) {
            return slots[i];
        }
    }
    return NULL;
}

/* --ts: a strict decimal int64 >= 0. */
static bool parse_ns(const char *s, int64_t *out)
{
    char *end = NULL;

    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* The scalar kinds of a flat array. */
enum { K_NONE, K_STR, K_INT, K_REAL, K_BOOL, K_BAD };

static int json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return K_STR;
    case JSON_INTEGER:
        return K_INT;
    case JSON_REAL:
        return K_REAL;
    case JSON_TRUE:
    case JSON_FALSE:
        return K_BOOL;
    default:
        return K_BAD;
    }
}

/* The common kind of an array's items: integers and reals mix into reals
 * (as the span model reads such an array back); K_NONE when empty. */
static int array_kind(const json_t *arr)
{
    int kind = K_NONE;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        int k = json_kind(json_array_get(arr, i));
        if (k == K_BAD) {
            return K_BAD;
        }
        if (kind == K_NONE || kind == k) {
            kind = k;
        } else if ((kind == K_INT && k == K_REAL) ||
                   (kind == K_REAL && k == K_INT)) {
            kind = K_REAL;
        } else {
            return K_BAD;
        }
    }
    return kind;
}

/* Fill a with the items of arr, of kind kind; the items go to fs. */
static bool set_array(taskspan_attr *a, field_store *fs, const json_t *arr,
                      int kind)
{
    static const size_t item_size[] = {
        [K_STR] = sizeof(const char *),
        [K_INT] = sizeof(int64_t),
        [K_REAL] = sizeof(double),
        [K_BOOL] = sizeof(int),
    };
    static const taskspan_attr_type type[] = {
        [K_STR] = TASKSPAN_ATTR_STRING_ARRAY,
        [K_INT] = TASKSPAN_ATTR_INT_ARRAY,
        [K_REAL] = TASKSPAN_ATTR_DOUBLE_ARRAY,
        [K_BOOL] = TASKSPAN_ATTR_BOOL_ARRAY,
    };
    size_t n = json_array_size(arr);

    if (kind == K_NONE) {
        /* JSON [] has no item type; the model reads it as strings. */
        *a = taskspan_attr_array(a->key, TASKSPAN_ATTR_STRING_ARRAY, NULL, 0);
        return true;
    }
    void *items = calloc(n, item_size[kind]);
    if (items == NULL) {
        return false;
    }
    fs->items[fs->n_items++] = items;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (kind == K_STR) {
            ((const char **)items)[i] = json_string_value(v);
        } else if (kind == K_INT) {
            ((int64_t *)items)[i] = (int64_t)json_integer_value(v);
        } else if (kind == K_REAL) {
            ((double *)items)[i] = json_number_value(v);
        } else {
            ((int *)items)[i] = json_is_true(v);
        }
    }
    *a = taskspan_attr_array(a->key, type[kind], items, n);
    return true;
}

/* key:=JSON. Returns CLI_OK, or CLI_USAGE / CLI_FAILURE after printing
 * why. a->key is already set. */
static int set_json(taskspan_attr *a, field_store *fs, const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (v == NULL) {
        fprintf(stderr,
                "taskspan emit: field '%s': '%s' is not JSON (%s); write "
                "%s=TEXT for a string\n",
                a->key, text, jerr.text, a->key);
        return CLI_USAGE;
    }
    fs->json[fs->n_json++] = v;
    switch (json_kind(v)) {
    case K_STR:
        *a = taskspan_attr_str(a->key, json_string_value(v));
        return CLI_OK;
    case K_INT:
        *a = taskspan_attr_int(a->key, (int64_t)json_integer_value(v));
        return CLI_OK;
    case K_REAL:
        *a = taskspan_attr_double(a->key, json_real_value(v));
        return CLI_OK;
    case K_BOOL:
        *a = taskspan_attr_bool(a->key, json_is_true(v));
        return CLI_OK;
    default:
        break;
    }
    if (!json_is_array(v)) {
        fprintf(stderr,
                "taskspan emit: field '%s': %s cannot be recorded; give a "
                "string, a number, true/false or a flat array\n",
                a->key, json_is_null(v) ? "null" : "an object");
        return CLI_USAGE;
    }
    int kind = array_kind(v);
    if (kind == K_BAD) {
        fprintf(stderr,
                "taskspan emit: field '%s': an array must hold scalars of "
                "one type: strings, numbers or booleans, e.g. "
                "'[\"a\",\"b\"]' or [1,2]\n",
                a->key);
        return CLI_USAGE;
    }
    if (!set_array(a, fs, v, kind)) {
        fprintf(stderr, "taskspan emit: out of memory\n");
        return CLI_FAILURE;
    }
    return CLI_OK;
}

/* One FIELD argument, key=text or key:=JSON, into a. The key points into
 * arg, which is cut at the '=' (argv is ours to modify). */
static int parse_field(taskspan_attr *a, field_store *fs, char *arg)
{
    char *eq = strchr(arg, '=');
    bool json = eq != NULL && eq > arg && eq[-1] == ':';
    char *key_end = json ? eq - 1 : eq;

    if (eq == NULL || key_end == arg) {
        fprintf(stderr,
                "taskspan emit: '%s' is not a field: write key=text or "
                "key:=JSON (3, 2.5, true, '[\"a\",\"b\"]'); see 'taskspan "
                "emit --help'\n",
                arg);
        return CLI_USAGE;
    }
    *key_end = '\0';
    a->key = arg;
    if (!json) {
        *a = taskspan_attr_str(arg, eq + 1);
        return CLI_OK;
    }
    return set_json(a, fs, eq + 1);
}

/* Options, then the fields into attrs (argc entries). Returns CLI_OK, or
 * CLI_USAGE / CLI_FAILURE after printing why; *help for --help. */
static int parse_args(emit_opts *o, taskspan_attr *attrs, size_t *n_attrs,
                      field_store *fs, int argc, char **argv, bool *help)
{
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (options_done || arg[0] != '-') {
            int rc = parse_field(&attrs[*n_attrs], fs, arg);
            if (rc != CLI_OK) {
                return rc;
            }
            ++*n_attrs;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return CLI_OK;
        }
        const char *eq = strchr(arg, '=');
        size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const char **slot = option_slot(o, arg, n);
        if (slot == NULL) {
            fprintf(stderr,
                    "taskspan emit: unknown option '%s'; see 'taskspan "
                    "emit --help'\n",
                    arg);
            return CLI_USAGE;
        }
        if (cli_take_value("taskspan emit", argc, argv, &i, slot) != CLI_OK) {
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* The checks the library cannot make: what is required, and --ts. */
static int check_opts(const emit_opts *o, int64_t *ts_ns)
{
    if (o->task == NULL) {
        fprintf(stderr, "taskspan emit: which task? pass --task T; see "
                        "'taskspan emit --help'\n");
        return CLI_USAGE;
    }
    if (o->type == NULL) {
        fprintf(stderr, "taskspan emit: which event? pass --type TYPE, e.g. "
                        "--type runner_spawn\n");
        return CLI_USAGE;
    }
    if (o->ts != NULL && !parse_ns(o->ts, ts_ns)) {
        fprintf(stderr,
                "taskspan emit: --ts '%s' is not a time: give "
                "nanoseconds since the epoch, e.g. $(date +%%s%%N)\n",
                o->ts);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int record(const emit_opts *o, int64_t ts_ns,
                  const taskspan_attr *attrs, size_t n_attrs)
{
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_code rc = cli_open_recorder(&ts, o->db, err);

    if (rc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan emit: %s (%s); pass --db PATH or set "
                "TASKSPAN_DB\n",
                err, taskspan_strerror(rc));
        return CLI_FAILURE;
    }
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = o->task;
    ev.event_type = o->type;
    ev.span_key = o->span;
    ev.parent_span_key = o->parent;
    ev.actor = o->actor;
    ev.phase = o->phase;
    ev.ts_ns = ts_ns;
    ev.attrs = attrs;
    ev.n_attrs = n_attrs;
    int64_t seq = 0;
    int status = CLI_OK;
    rc = taskspan_emit(&seq, ts, &ev);
    if (rc == TASKSPAN_E_INVALID_ARG) {
        /* The library's checks of the arguments: names, sizes, keys. */
        fprintf(stderr,
                "taskspan emit: %s; nothing was recorded; see 'taskspan "
                "emit --help'\n",
                taskspan_errmsg(ts));
        status = CLI_USAGE;
    } else if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan emit: %s (%s); nothing was recorded%s\n",
                taskspan_errmsg(ts), taskspan_strerror(rc),
                taskspan_code_is_retryable(rc) ? ", try again" : "");
        status = CLI_FAILURE;
    } else {
        printf("%" PRId64 "\n", seq);
        if (fflush(stdout) != 0) {
            status = CLI_FAILURE; /* recorded, but the seq was lost */
        }
    }
    taskspan_close(ts);
    return status;
}

int cmd_emit(int argc, char **argv)
{
    emit_opts o = {0};
    field_store fs = {0};
    bool help = false;
    int64_t ts_ns = 0;
    size_t n_attrs = 0;
    /* At most one attribute, one JSON value and one item array per
     * argument. */
    size_t cap = argc > 0 ? (size_t)argc : 1;
    taskspan_attr *attrs = calloc(cap, sizeof *attrs);
    fs.json = calloc(cap, sizeof *fs.json);
    fs.items = calloc(cap, sizeof *fs.items);

    int status = CLI_FAILURE;
    if (attrs == NULL || fs.json == NULL || fs.items == NULL) {
        fprintf(stderr, "taskspan emit: out of memory\n");
    } else {
        status = parse_args(&o, attrs, &n_attrs, &fs, argc, argv, &help);
    }
    if (status == CLI_OK && help) {
        emit_usage(stdout);
    } else if (status == CLI_OK) {
        status = check_opts(&o, &ts_ns);
        if (status == CLI_OK) {
            status = record(&o, ts_ns, attrs, n_attrs);
        }
    }
    field_store_free(&fs);
    free(attrs);
    return status;
}
