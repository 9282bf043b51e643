/*
 * span_ids.c -- test tool: print the ids of a task's spans, as the span
 * model builds them (taskspan tree does not show ids).
 *
 *   span_ids TASK_ID
 *
 * The buffer is $TASKSPAN_DB, opened read-only. One line per span, in the
 * model's order (that of their first events):
 *   <name> <span id, 16 hex> <parent span id, 16 hex, or "-">
 * Exit: 0, 1 when the buffer or the task cannot be read, 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <stdio.h>

static void print_id(const uint8_t id[8])
{
    for (int i = 0; i < 8; i++) {
        printf("%02x", id[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '\0') {
        fprintf(stderr, "usage: span_ids TASK_ID\n");
        return 2;
    }
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    o.flags = TASKSPAN_OPEN_READONLY;
    o.traceparent = "";
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "span_ids: open failed: %s\n", err);
        return 1;
    }
    taskspan_spans *spans = NULL;
    rc = taskspan_task_spans(&spans, ts, argv[1]);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "span_ids: %s\n", taskspan_errmsg(ts));
        taskspan_close(ts);
        return 1;
    }
    for (size_t i = 0; i < taskspan_spans_count(spans); i++) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        printf("%s ", s->name);
        print_id(s->span_id);
        printf(" ");
        if (s->has_parent) {
            print_id(s->parent_span_id);
        } else {
            printf("-");
        }
        printf("\n");
    }
    taskspan_spans_free(spans);
    taskspan_close(ts);
    return 0;
}
