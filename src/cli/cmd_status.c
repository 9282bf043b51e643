/*
 * cmd_status.c -- `taskspan status`: what a buffer holds and how far its
 * delivery is: the file and its size, schema version, tasks, events, spans
 * by delivery state, the endpoint, the last export error and the oldest
 * span still waiting.
 */
#include "cmd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void status_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan status [--db PATH] [--json]\n\n"
            "Show the buffer (default $TASKSPAN_DB or the per-user state\n"
            "directory): its size, schema version, tasks, events, spans\n"
            "delivered / pending / rejected, the OTLP endpoint, the last\n"
            "export error and the oldest span waiting for delivery.\n"
            "  --json   the same as one JSON object\n");
}

static void print_text(const taskspan_buffer_status *s)
{
    char when[40];
    printf("buffer:          %s\n", s->path);
    printf("size:            %llu bytes (file %llu, wal %llu)\n",
           (unsigned long long)(s->db_bytes + s->wal_bytes),
           (unsigned long long)s->db_bytes, (unsigned long long)s->wal_bytes);
    printf("schema version:  %d\n", s->schema_version);
    printf("tasks:           %llu\n", (unsigned long long)s->tasks);
    printf("events:          %llu\n", (unsigned long long)s->events);
    printf("spans:           %llu delivered, %llu pending, %llu rejected\n",
           (unsigned long long)s->spans_delivered,
           (unsigned long long)s->spans_pending,
           (unsigned long long)s->spans_rejected);
    printf("endpoint:        %s\n", s->endpoint[0] ? s->endpoint : "-");
    if (s->last_error[0] != '\0') {
        cli_format_time(when, sizeof when, s->last_error_ns);
        printf("last error:      %s: %s\n", when, s->last_error);
    } else {
        printf("last error:      none\n");
    }
    if (s->spans_pending > 0) {
        cli_format_time(when, sizeof when, s->oldest_pending_ns);
        printf("oldest pending:  %s (task %s)\n", when,
               s->oldest_pending_task);
    } else {
        printf("oldest pending:  none\n");
    }
}

static int print_json(const taskspan_buffer_status *s)
{
    char err_at[40], oldest[40];
    cli_format_time(err_at, sizeof err_at, s->last_error_ns);
    cli_format_time(oldest, sizeof oldest, s->oldest_pending_ns);
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:s, s:o, s:o, s:o, "
        "s:o}",
        "path", s->path, "db_bytes", (json_int_t)s->db_bytes, "wal_bytes",
        (json_int_t)s->wal_bytes, "schema_version", s->schema_version, "tasks",
        (json_int_t)s->tasks, "events", (json_int_t)s->events,
        "spans_delivered", (json_int_t)s->spans_delivered, "spans_pending",
        (json_int_t)s->spans_pending, "spans_rejected",
        (json_int_t)s->spans_rejected, "endpoint", s->endpoint, "last_error",
        s->last_error[0] ? json_string(s->last_error) : json_null(),
        "last_error_time",
        s->last_error[0] ? json_string(err_at) : json_null(),
        "oldest_pending_time",
        s->spans_pending ? json_string(oldest) : json_null(),
        "oldest_pending_task",
        s->spans_pending ? json_string(s->oldest_pending_task) : json_null());
    char *line = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)
                           : NULL;
    json_decref(o);
    if (line == NULL) {
        fprintf(stderr, "taskspan status: out of memory writing JSON\n");
        return CLI_FAILURE;
    }
    printf("%s\n", line);
    free(line);
    return CLI_OK;
}

int cmd_status(int argc, char **argv)
{
    const char *db = NULL;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            status_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strncmp(argv[i], "--db", 4) == 0 &&
                   (argv[i][4] == '\0' || argv[i][4] == '=')) {
            if (cli_take_value("taskspan status", argc, argv, &i, &db) !=
                CLI_OK) {
                return CLI_USAGE;
            }
        } else {
            fprintf(stderr,
                    "taskspan status: unknown argument '%s'; see "
                    "'taskspan status --help'\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    taskspan *ts = cli_open_readonly("taskspan status", db);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    taskspan_buffer_status st;
    taskspan_code rc = taskspan_get_buffer_status(&st, ts);
    int status = CLI_OK;
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan status: %s (%s)\n", taskspan_errmsg(ts),
                taskspan_strerror(rc));
        status = CLI_FAILURE;
    } else if (json) {
        status = print_json(&st);
    } else {
        print_text(&st);
    }
    taskspan_close(ts);
    return status;
}
