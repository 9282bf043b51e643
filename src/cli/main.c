/*
 * main.c -- the taskspan command: a table of subcommands in the style of git.
 */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *desc;
} command;

static const command commands[] = {
    {"dump", cmd_dump, "write a task's spans as OTLP JSON or protobuf"},
    {"emit", cmd_emit, "record one event of a task (for shell runners)"},
    {"events", cmd_events, "list a task's events in seq order"},
    {"exec", cmd_exec, "run a command as a step of a task, traced"},
    {"export", cmd_export, "deliver buffered spans to the OTLP endpoint"},
    {"gc", cmd_gc, "delete delivered data older than the retention"},
#ifdef TASKSPAN_CLI_HAVE_SERVE
    {"serve", cmd_serve, "receive OTLP/HTTP traces (a local collector)"},
#endif
    {"status", cmd_status, "the buffer: size, counts, delivery backlog"},
    {"tasks", cmd_tasks, "list the tasks of the buffer and their state"},
    {"tree", cmd_tree, "draw a task's spans and events as a tree"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: taskspan [--version] [--help] <command> [<args>]\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].desc);
    }
    fprintf(out, "\n'taskspan <command> --help' describes a command.\n");
}

int cli_take_value(const char *who, int argc, char **argv, int *i,
                   const char **slot)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    if (eq != NULL) {
        *slot = eq + 1;
    } else if (*i + 1 < argc) {
        *slot = argv[++*i];
    } else {
        fprintf(stderr, "%s: %s needs a value; see '%s --help'\n", who, arg,
                who);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* Say what the open did that the user should know: a damaged buffer it
 * moved aside, a malformed TASKSPAN_MAX_BYTES it ignored. */
static void warn_open(const char *who, const taskspan *ts)
{
    const char *w = taskspan_open_warning(ts);
    if (w[0] != '\0') {
        fprintf(stderr, "%s: warning: %s\n", who, w);
    }
}

taskspan *cli_open(const char *who, taskspan_options *o)
{
    char err[TASKSPAN_ERRBUF_SIZE];
    taskspan *ts = NULL;

    o->traceparent = ""; /* a command joins no trace of its own */
    taskspan_code rc = taskspan_open(&ts, o, err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "%s: %s (%s); pass --db PATH or set TASKSPAN_DB\n",
                who, err, taskspan_strerror(rc));
        return NULL;
    }
    warn_open(who, ts);
    return ts;
}

taskspan *cli_open_readonly(const char *who, const char *db_path)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db_path;
    o.flags = TASKSPAN_OPEN_READONLY;
    return cli_open(who, &o);
}

taskspan_code cli_open_recorder(taskspan **out, const char *db_path, char *err)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db_path;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.close_timeout_ms = -1;
    /* o.traceparent stays NULL: the TRACEPARENT environment variable. */
    taskspan_code rc = taskspan_open(out, &o, err);
    if (rc == TASKSPAN_OK) {
        warn_open("taskspan", *out);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("taskspan %s\n", taskspan_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "taskspan: '%s' is not a command; see 'taskspan --help'\n",
            argv[1]);
    return CLI_USAGE;
}
