/*
 * cmd_dump.c -- `taskspan dump TASK --format otlp-json|otlp-proto`: every
 * span of a task as an OTLP ExportTraceServiceRequest, JSON or protobuf,
 * on stdout or in a file, without a collector. It prints what
 * taskspan_task_dump() returns.
 */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dump_usage(FILE *out)
{
    fprintf(out, "usage: taskspan dump [--db PATH] [-o FILE] --format FORMAT "
                 "TASK\n\n"
                 "Write every span of TASK (from the buffer at PATH, default\n"
                 "$TASKSPAN_DB or the per-user state directory) as one OTLP\n"
                 "ExportTraceServiceRequest, as the exporter would send it.\n"
                 "Open spans are included, ending at their last event, with\n"
                 "the attribute taskspan.open=true.\n"
                 "  --format otlp-json   OTLP JSON, one line\n"
                 "  --format otlp-proto  protobuf bytes\n"
                 "  -o FILE              write to FILE instead of stdout\n");
}

/* Write len bytes of data (and a newline for JSON) to path, or stdout. */
static int write_out(const char *path, const char *data, size_t len, int json)
{
    FILE *f = path != NULL ? fopen(path, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "taskspan dump: cannot open %s: %s; check the path\n",
                path, strerror(errno));
        return CLI_FAILURE;
    }
    int ok = fwrite(data, 1, len, f) == len &&
             (!json || fputc('\n', f) != EOF);
    ok = fflush(f) == 0 && ok;
    if (path != NULL) {
        ok = fclose(f) == 0 && ok;
    }
    if (!ok) {
        fprintf(stderr, "taskspan dump: writing %s failed: %s\n",
                path != NULL ? path : "stdout", strerror(errno));
        return CLI_FAILURE;
    }
    return CLI_OK;
}

int cmd_dump(int argc, char **argv)
{
    const char *db = NULL, *task = NULL, *format = NULL, *path = NULL;
    int json;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            dump_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "taskspan dump: bad argument '%s'; see "
                    "'taskspan dump --help'\n",
                    argv[i]);
            return CLI_USAGE;
        } else if (task == NULL) {
            task = argv[i];
        } else {
            fprintf(stderr, "taskspan dump: one TASK only; see "
                            "'taskspan dump --help'\n");
            return CLI_USAGE;
        }
    }
    if (task == NULL) {
        fprintf(stderr, "taskspan dump: which task? usage: taskspan dump "
                        "[--db PATH] [-o FILE] --format FORMAT TASK\n");
        return CLI_USAGE;
    }
    if (format == NULL) {
        fprintf(stderr, "taskspan dump: which format? pass --format "
                        "otlp-json or --format otlp-proto\n");
        return CLI_USAGE;
    }
    if (strcmp(format, "otlp-json") == 0) {
        json = 1;
    } else if (strcmp(format, "otlp-proto") == 0) {
        json = 0;
    } else {
        fprintf(stderr,
                "taskspan dump: unknown format '%s'; pass --format "
                "otlp-json or --format otlp-proto\n",
                format);
        return CLI_USAGE;
    }
    taskspan *ts = cli_open_readonly("taskspan dump", db);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    char *data = NULL;
    size_t len = 0;
    taskspan_code rc = taskspan_task_dump(&data, &len, ts, task, json);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "taskspan dump: %s (%s); check TASK and --db\n",
                taskspan_errmsg(ts), taskspan_strerror(rc));
        taskspan_close(ts);
        return CLI_FAILURE;
    }
    int status = write_out(path, data, len, json);
    taskspan_free(data);
    taskspan_close(ts);
    return status;
}
