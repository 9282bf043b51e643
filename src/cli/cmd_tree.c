/*
 * cmd_tree.c -- `taskspan tree TASK`: a task's spans drawn as the runner
 * events report draws them: each span with its events and child spans in seq
 * order, with duration, status and event count.
 */
#include "cmd.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tree_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan tree [--db PATH] TASK\n\n"
            "Draw the spans of TASK (from the buffer at PATH, default\n"
            "$TASKSPAN_DB or the per-user state directory) as a tree:\n"
            "spans with their duration, status and events in seq order.\n");
}

/* Payload fields worth showing beside an event name, in this order. */
static const char *const shown_fields[] = {
    "work_item_id",  "gate_name",   "passed",
    "checkpoint_id", "exit_reason", "expired_count",
    "error",         "retry_count", NULL,
};

static void print_attr_value(const taskspan_attr *a)
{
    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        printf("%s", a->value.s);
        break;
    case TASKSPAN_ATTR_INT:
        printf("%" PRId64, a->value.i);
        break;
    case TASKSPAN_ATTR_DOUBLE:
        printf("%g", a->value.d);
        break;
    case TASKSPAN_ATTR_BOOL:
        printf("%s", a->value.b ? "true" : "false");
        break;
    default:
        printf("[%zu items]", a->value.array.count);
        break;
    }
}

static void print_event(const taskspan_span_event *ev)
{
    printf("Event: %s (seq=%" PRId64, ev->name, ev->seq);
    if (ev->phase != NULL) {
        printf(", phase=%s", ev->phase);
    }
    for (size_t f = 0; shown_fields[f] != NULL; f++) {
        for (size_t i = 0; i < ev->n_attrs; i++) {
            if (strcmp(ev->attrs[i].key, shown_fields[f]) == 0) {
                printf(", %s=", ev->attrs[i].key);
                print_attr_value(&ev->attrs[i]);
            }
        }
    }
    printf(")\n");
}

static const char *status_text(const taskspan_span *s)
{
    if (s->is_open) {
        return "open";
    }
    return s->status == TASKSPAN_STATUS_ERROR ? "ERROR"
           : s->status == TASKSPAN_STATUS_OK  ? "OK"
                                              : "ok";
}

static void print_span_line(const taskspan_span *s)
{
    printf("Span: %s", s->name);
    if (s->incarnation > 0) {
        printf(" [incarnation %" PRId64 "]", s->incarnation);
    }
    printf(" (%zu events", s->n_events);
    if (!s->is_open) {
        printf(", %.3f s", (double)(s->end_ns - s->start_ns) / 1e9);
    }
    printf(", %s", status_text(s));
    if (s->status == TASKSPAN_STATUS_ERROR && s->status_message[0] != '\0') {
        printf(": %s", s->status_message);
    }
    printf(")\n");
}

/* The first seq of a span: where it sits among its parent's events. */
static int64_t first_seq(const taskspan_span *s)
{
    return s->n_events > 0 ? s->events[0].seq : INT64_MAX;
}

static void draw_span(const taskspan_spans *all, size_t idx,
                      const char *prefix);

/* Draw the events of span idx interleaved, by seq, with its child spans. */
static void draw_children(const taskspan_spans *all, size_t idx,
                          const char *prefix)
{
    const taskspan_span *s = taskspan_spans_get(all, idx);
    size_t n = taskspan_spans_count(all);
    size_t ev = 0, child = 0;
    size_t total = s->n_events;
    size_t drawn = 0;
    char next[1024];

    for (size_t c = 0; c < n; c++) {
        total += taskspan_spans_get(all, c)->parent_index == idx;
    }
    while (drawn < total) {
        /* The next child span, in result order (= order of first event). */
        while (child < n &&
               taskspan_spans_get(all, child)->parent_index != idx) {
            child++;
        }
        const taskspan_span *cs = child < n ? taskspan_spans_get(all, child)
                                            : NULL;
        bool take_child = cs != NULL && (ev >= s->n_events ||
                                         first_seq(cs) < s->events[ev].seq);
        drawn++;
        bool last = drawn == total;
        printf("%s%s", prefix, last ? "└── " : "├── ");
        snprintf(next, sizeof next, "%s%s", prefix, last ? "    " : "│   ");
        if (take_child) {
            print_span_line(cs);
            draw_children(all, child, next);
            child++;
        } else {
            print_event(&s->events[ev++]);
        }
    }
}

static void draw_span(const taskspan_spans *all, size_t idx,
                      const char *prefix)
{
    print_span_line(taskspan_spans_get(all, idx));
    draw_children(all, idx, prefix);
}

int cmd_tree(int argc, char **argv)
{
    const char *db = NULL, *task = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tree_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "taskspan tree: unknown option '%s'; see "
                    "'taskspan tree --help'\n",
                    argv[i]);
            return CLI_USAGE;
        } else if (task == NULL) {
            task = argv[i];
        } else {
            fprintf(stderr, "taskspan tree: one TASK only; see "
                            "'taskspan tree --help'\n");
            return CLI_USAGE;
        }
    }
    if (task == NULL) {
        fprintf(stderr, "taskspan tree: which task? usage: taskspan tree "
                        "[--db PATH] TASK\n");
        return CLI_USAGE;
    }
    taskspan *ts = cli_open_readonly("taskspan tree", db);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    taskspan_spans *spans = NULL;
    taskspan_code rc = taskspan_task_spans(&spans, ts, task);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan tree: %s\n", taskspan_errmsg(ts));
        taskspan_close(ts);
        return CLI_FAILURE;
    }
    char trace_hex[33] = "";
    const taskspan_span *first = taskspan_spans_get(spans, 0);
    for (int i = 0; i < 16; i++) {
        snprintf(trace_hex + 2 * i, 3, "%02x", first->trace_id[i]);
    }
    printf("Task: %s (trace %s)\n", task, trace_hex);
    size_t n = taskspan_spans_count(spans);
    size_t roots = 0, drawn = 0;
    for (size_t i = 0; i < n; i++) {
        roots += taskspan_spans_get(spans, i)->parent_index == (size_t)-1;
    }
    for (size_t i = 0; i < n; i++) {
        if (taskspan_spans_get(spans, i)->parent_index != (size_t)-1) {
            continue;
        }
        bool last = ++drawn == roots;
        printf("%s", last ? "└── " : "├── ");
        draw_span(spans, i, last ? "    " : "│   ");
    }
    taskspan_spans_free(spans);
    taskspan_close(ts);
    return CLI_OK;
}
