/*
 * cmd_gc.c -- `taskspan gc`: delete what was delivered long ago. Only tasks
 * that are no longer running and whose every span was delivered (or
 * rejected for good) lose their events, once their last event is older
 * than the retention; nothing pending or open is ever deleted
 * (taskspan_gc() in taskspan.h says exactly what is kept).
 */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The default retention: a week of delivered history stays inspectable. */
#define DEFAULT_RETENTION "7d"

static void gc_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan gc [--db PATH] [--older-than DURATION]\n\n"
            "Delete the events and delivered spans of every task that is\n"
            "not running, whose spans were all delivered (or rejected for\n"
            "good), and whose last event is older than DURATION: a whole\n"
            "number with a unit, s, m, h, d or w (e.g. 12h, 7d, 0s).\n"
            "Default " DEFAULT_RETENTION ". Nothing pending or open is ever "
            "deleted.\n");
}

/* "7d" -> seconds; 0 when s is not a duration. */
static int parse_duration(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int64_t unit;
    if (errno != 0 || end == s || v < 0 || s[0] == '-' || s[0] == '+') {
        return 0;
    }
    if (strcmp(end, "s") == 0 || (v == 0 && *end == '\0')) {
        unit = 1;
    } else if (strcmp(end, "m") == 0) {
        unit = 60;
    } else if (strcmp(end, "h") == 0) {
        unit = 3600;
    } else if (strcmp(end, "d") == 0) {
        unit = 86400;
    } else if (strcmp(end, "w") == 0) {
        unit = 7 * 86400;
    } else {
        return 0;
    }
    if (v > INT64_MAX / unit) {
        return 0;
    }
    *out = (int64_t)v * unit;
    return 1;
}

int cmd_gc(int argc, char **argv)
{
    const char *db = NULL, *older = DEFAULT_RETENTION;
    int64_t seconds = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            gc_usage(stdout);
            return CLI_OK;
        } else if (strncmp(argv[i], "--db", 4) == 0 &&
                   (argv[i][4] == '\0' || argv[i][4] == '=')) {
            if (cli_take_value("taskspan gc", argc, argv, &i, &db) != CLI_OK) {
                return CLI_USAGE;
            }
        } else if (strncmp(argv[i], "--older-than", 12) == 0 &&
                   (argv[i][12] == '\0' || argv[i][12] == '=')) {
            if (cli_take_value("taskspan gc", argc, argv, &i, &older) !=
                CLI_OK) {
                return CLI_USAGE;
            }
        } else {
            fprintf(stderr,
                    "taskspan gc: unknown argument '%s'; see "
                    "'taskspan gc --help'\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    if (!parse_duration(older, &seconds)) {
        fprintf(stderr,
                "taskspan gc: --older-than '%s' is not a duration; give a "
                "whole number and a unit (s, m, h, d, w), e.g. 7d or 12h\n",
                older);
        return CLI_USAGE;
    }
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.flags = TASKSPAN_OPEN_NO_CREATE;
    o.export_mode = TASKSPAN_EXPORT_OFF; /* gc sends nothing */
    o.close_timeout_ms = -1;
    taskspan *ts = cli_open("taskspan gc", &o);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    taskspan_gc_report r;
    taskspan_code rc = taskspan_gc(&r, ts, seconds);
    printf("taskspan gc: pruned %llu tasks older than %s (%llu events, %llu "
           "spans deleted); kept %llu old tasks that are running or not "
           "fully delivered\n",
           (unsigned long long)r.tasks_pruned, older,
           (unsigned long long)r.events_deleted,
           (unsigned long long)r.spans_deleted,
           (unsigned long long)r.tasks_kept);
    printf("taskspan gc: buffer %llu -> %llu bytes; %llu bytes free inside "
           "it for new events\n",
           (unsigned long long)r.bytes_before,
           (unsigned long long)r.bytes_after,
           (unsigned long long)r.bytes_free);
    int status = CLI_OK;
    if (rc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan gc: %s (%s); what was pruned stays pruned, run it "
                "again to finish\n",
                taskspan_errmsg(ts), taskspan_strerror(rc));
        status = CLI_FAILURE;
    }
    taskspan_close(ts);
    return status;
}
