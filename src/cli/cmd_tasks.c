/*
 * cmd_tasks.c -- `taskspan tasks`: every task of a buffer with its state
 * (running, finished, failed, crashed, pruned), its event count and seq,
 * its incarnations, the time of its first and last event, and where its
 * spans stand (delivered, pending, rejected). A table, or JSON lines.
 */
#include "cmd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tasks_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan tasks [--db PATH] [--json]\n\n"
            "List the tasks of the buffer (default $TASKSPAN_DB or the\n"
            "per-user state directory), in the order of their first event:\n"
            "state (running, finished, failed, crashed, pruned), events,\n"
            "last seq, incarnations, first and last event time (UTC), and\n"
            "spans delivered, pending and rejected.\n"
            "  --json   one JSON object per task and line\n");
}

static void print_table(const taskspan_task_list *l)
{
    size_t n = taskspan_task_list_count(l);
    int w = 4;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(taskspan_task_list_get(l, i)->task_id);
        w = len > w ? len : w;
    }
    printf("%-*s  %-8s  %6s  %6s  %3s  %-24s  %-24s  %9s  %7s  %8s\n", w,
           "TASK", "STATE", "EVENTS", "SEQ", "INC", "FIRST", "LAST",
           "DELIVERED", "PENDING", "REJECTED");
    for (size_t i = 0; i < n; i++) {
        const taskspan_task_info *t = taskspan_task_list_get(l, i);
        char first[40], last[40];
        cli_format_time(first, sizeof first, t->first_ns);
        cli_format_time(last, sizeof last, t->last_ns);
        printf("%-*s  %-8s  %6lld  %6lld  %3lld  %-24s  %-24s  %9llu  %7llu  "
               "%8llu\n",
               w, t->task_id, taskspan_task_state_name(t->state),
               (long long)t->n_events, (long long)t->last_seq,
               (long long)t->incarnations, first, last,
               (unsigned long long)t->spans_delivered,
               (unsigned long long)t->spans_pending,
               (unsigned long long)t->spans_rejected);
    }
}

static int print_json(const taskspan_task_list *l)
{
    size_t n = taskspan_task_list_count(l);
    for (size_t i = 0; i < n; i++) {
        const taskspan_task_info *t = taskspan_task_list_get(l, i);
        char first[40], last[40];
        cli_format_time(first, sizeof first, t->first_ns);
        cli_format_time(last, sizeof last, t->last_ns);
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:o, s:I, "
            "s:I, s:I}",
            "task_id", t->task_id, "state", taskspan_task_state_name(t->state),
            "events", (json_int_t)t->n_events, "last_seq",
            (json_int_t)t->last_seq, "incarnations",
            (json_int_t)t->incarnations, "first_ns", (json_int_t)t->first_ns,
            "last_ns", (json_int_t)t->last_ns, "first", first, "last", last,
            "runner_pid", (json_int_t)t->runner_pid, "exit_reason",
            t->exit_reason != NULL ? json_string(t->exit_reason) : json_null(),
            "spans_delivered", (json_int_t)t->spans_delivered, "spans_pending",
            (json_int_t)t->spans_pending, "spans_rejected",
            (json_int_t)t->spans_rejected);
        char *line = o != NULL
                         ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)
                         : NULL;
        json_decref(o);
        if (line == NULL) {
            fprintf(stderr, "taskspan tasks: out of memory writing JSON\n");
            return CLI_FAILURE;
        }
        printf("%s\n", line);
        free(line);
    }
    return CLI_OK;
}

int cmd_tasks(int argc, char **argv)
{
    const char *db = NULL;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tasks_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strncmp(argv[i], "--db", 4) == 0 &&
                   (argv[i][4] == '\0' || argv[i][4] == '=')) {
            if (cli_take_value("taskspan tasks", argc, argv, &i, &db) !=
                CLI_OK) {
                return CLI_USAGE;
            }
        } else {
            fprintf(stderr,
                    "taskspan tasks: unknown argument '%s'; see "
                    "'taskspan tasks --help'\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    taskspan *ts = cli_open_readonly("taskspan tasks", db);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    taskspan_task_list *l = NULL;
    taskspan_code rc = taskspan_list_tasks(&l, ts);
    int status = CLI_OK;
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan tasks: %s (%s)\n", taskspan_errmsg(ts),
                taskspan_strerror(rc));
        status = CLI_FAILURE;
    } else if (json) {
        status = print_json(l);
    } else {
        print_table(l);
    }
    taskspan_task_list_free(l);
    taskspan_close(ts);
    return status;
}
