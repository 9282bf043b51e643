/*
 * cmd_events.c -- `taskspan events TASK`: a task's events in seq order,
 * with the columns of the runner-events report's task_events table (seq,
 * event_type, actor, span_id, parent_span_id, phase, payload) plus the
 * event's time and incarnation. A table for a person, or JSON lines for a
 * program (one object per event, the payload as an object).
 */
#include "cmd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void events_usage(FILE *out)
{
    fprintf(out, "usage: taskspan events [--db PATH] [--json] TASK\n\n"
                 "List the events of TASK in seq order: seq, time (UTC),\n"
                 "incarnation, event_type, actor, span_id, parent_span_id,\n"
                 "phase and payload; '-' where nothing was recorded.\n"
                 "  --json   one JSON object per event and line\n");
}

static const char *or_dash(const char *s)
{
    return s != NULL ? s : "-";
}

static int width_of(const char *s, int w)
{
    int len = (int)strlen(or_dash(s));
    return len > w ? len : w;
}

static void print_table(const taskspan_event_list *l)
{
    size_t n = taskspan_event_list_count(l);
    int w_type = 10, w_actor = 5, w_span = 7, w_parent = 14, w_phase = 5;
    for (size_t i = 0; i < n; i++) {
        const taskspan_event_row *e = taskspan_event_list_get(l, i);
        w_type = width_of(e->event_type, w_type);
        w_actor = width_of(e->actor, w_actor);
        w_span = width_of(e->span_key, w_span);
        w_parent = width_of(e->parent_span_key, w_parent);
        w_phase = width_of(e->phase, w_phase);
    }
    printf("%5s  %-24s  %3s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n", "SEQ",
           "TIME", "INC", w_type, "EVENT_TYPE", w_actor, "ACTOR", w_span,
           "SPAN_ID", w_parent, "PARENT_SPAN_ID", w_phase, "PHASE", "PAYLOAD");
    for (size_t i = 0; i < n; i++) {
        const taskspan_event_row *e = taskspan_event_list_get(l, i);
        char when[40];
        cli_format_time(when, sizeof when, e->ts_ns);
        printf("%5lld  %-24s  %3lld  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n",
               (long long)e->seq, when, (long long)e->incarnation, w_type,
               e->event_type, w_actor, or_dash(e->actor), w_span,
               or_dash(e->span_key), w_parent, or_dash(e->parent_span_key),
               w_phase, or_dash(e->phase), e->payload_json);
    }
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static int print_json(const char *task, const taskspan_event_list *l)
{
    size_t n = taskspan_event_list_count(l);
    for (size_t i = 0; i < n; i++) {
        const taskspan_event_row *e = taskspan_event_list_get(l, i);
        char when[40];
        cli_format_time(when, sizeof when, e->ts_ns);
        /* The payload is a JSON object in the buffer; one that does not
         * parse (a hand-edited buffer) is shown as its text. */
        json_t *payload = json_loads(e->payload_json, JSON_DECODE_ANY, NULL);
        if (payload == NULL) {
            payload = json_string(e->payload_json);
        }
        json_t *o = json_pack(
            "{s:s, s:I, s:I, s:s, s:I, s:s, s:o, s:s, s:o, s:o, s:o}",
            "task_id", task, "seq", (json_int_t)e->seq, "ts_ns",
            (json_int_t)e->ts_ns, "time", when, "incarnation",
            (json_int_t)e->incarnation, "event_type", e->event_type, "actor",
            str_or_null(e->actor), "span_id", e->span_key, "parent_span_id",
            str_or_null(e->parent_span_key), "phase", str_or_null(e->phase),
            "payload", payload);
        char *line = o != NULL
                         ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)
                         : NULL;
        json_decref(o);
        if (line == NULL) {
            fprintf(stderr, "taskspan events: out of memory writing JSON\n");
            return CLI_FAILURE;
        }
        printf("%s\n", line);
        free(line);
    }
    return CLI_OK;
}

int cmd_events(int argc, char **argv)
{
    const char *db = NULL, *task = NULL;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            events_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strncmp(argv[i], "--db", 4) == 0 &&
                   (argv[i][4] == '\0' || argv[i][4] == '=')) {
            if (cli_take_value("taskspan events", argc, argv, &i, &db) !=
                CLI_OK) {
                return CLI_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr,
                    "taskspan events: unknown option '%s'; see "
                    "'taskspan events --help'\n",
                    argv[i]);
            return CLI_USAGE;
        } else if (task == NULL) {
            task = argv[i];
        } else {
            fprintf(stderr, "taskspan events: one TASK only; see "
                            "'taskspan events --help'\n");
            return CLI_USAGE;
        }
    }
    if (task == NULL) {
        fprintf(stderr, "taskspan events: which task? usage: taskspan "
                        "events [--db PATH] [--json] TASK ('taskspan tasks' "
                        "lists them)\n");
        return CLI_USAGE;
    }
    taskspan *ts = cli_open_readonly("taskspan events", db);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    taskspan_event_list *l = NULL;
    taskspan_code rc = taskspan_task_events(&l, ts, task);
    int status = CLI_OK;
    if (rc != TASKSPAN_OK) {
        if (rc == TASKSPAN_E_NOT_FOUND) {
            fprintf(stderr,
                    "taskspan events: %s; 'taskspan tasks' lists the "
                    "tasks\n",
                    taskspan_errmsg(ts));
        } else {
            fprintf(stderr, "taskspan events: %s (%s)\n", taskspan_errmsg(ts),
                    taskspan_strerror(rc));
        }
        status = CLI_FAILURE;
    } else if (json) {
        status = print_json(task, l);
    } else {
        print_table(l);
    }
    taskspan_event_list_free(l);
    taskspan_close(ts);
    return status;
}
