/*
 * cmd_export.c -- `taskspan export`: deliver what a buffer holds to the
 * configured OTLP endpoint, from outside the runner. This is how the spans
 * of a runner that died, or of one that records with export off, reach the
 * collector. It runs the library's own export loop through taskspan_flush().
 */
#include "cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void export_usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan export [--db PATH] [--once | --follow] "
            "[--timeout MS]\n\n"
            "Deliver the closed spans in the buffer to the OTLP endpoint\n"
            "(OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318).\n"
            "  --once        deliver what is there and exit (the default):\n"
            "                0 when everything was delivered, 1 otherwise\n"
            "  --follow      keep delivering until interrupted\n"
            "  --timeout MS  how long --once may take (default 60000)\n"
            "The spans of a runner killed without runner_exit are closed as\n"
            "crashed and delivered once its process is gone and its task\n"
            "has been silent for TASKSPAN_CRASH_GRACE_MS (default 30000).\n");
}

static int parse_ms(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 86400000) {
        return 0;
    }
    *out = v;
    return 1;
}

static void report(taskspan *ts, FILE *out)
{
    taskspan_export_stats st;
    if (taskspan_get_export_stats(&st, ts) != TASKSPAN_OK) {
        return;
    }
    fprintf(out,
            "taskspan export: %llu spans delivered, %llu rejected, %llu "
            "pending (endpoint %s)\n",
            (unsigned long long)st.spans_delivered,
            (unsigned long long)st.spans_rejected,
            (unsigned long long)st.spans_pending, st.endpoint);
    if (st.spans_pending > 0 && st.last_error[0] != '\0') {
        fprintf(out, "taskspan export: last error: %s\n", st.last_error);
    }
    if (st.config_warnings[0] != '\0') {
        fprintf(out, "taskspan export: configuration: %s\n",
                st.config_warnings);
    }
}

static int run_once(taskspan *ts, long timeout_ms)
{
    taskspan_code rc = taskspan_flush(ts, (int)timeout_ms);
    report(ts, stdout);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr,
                "taskspan export: %s (%s); the spans stay in the "
                "buffer: run it again once the collector is reachable\n",
                taskspan_errmsg(ts), taskspan_strerror(rc));
        return CLI_FAILURE;
    }
    return CLI_OK;
}

static int run_follow(taskspan *ts)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop_requested) {
        /* Short rounds, so an interrupt is served within a second. */
        taskspan_code rc = taskspan_flush(ts, 1000);
        if (rc != TASKSPAN_OK && rc != TASKSPAN_E_TIMEOUT) {
            fprintf(stderr, "taskspan export: %s\n", taskspan_errmsg(ts));
            return CLI_FAILURE;
        }
    }
    report(ts, stdout);
    return CLI_OK;
}

int cmd_export(int argc, char **argv)
{
    const char *db = NULL;
    int follow = 0;
    long timeout_ms = 60000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            export_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--once") == 0) {
            follow = 0;
        } else if (strcmp(argv[i], "--follow") == 0) {
            follow = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc &&
                   parse_ms(argv[i + 1], &timeout_ms)) {
            i++;
        } else {
            fprintf(stderr,
                    "taskspan export: bad argument '%s'; see "
                    "'taskspan export --help'\n",
                    argv[i]);
            return CLI_USAGE;
        }
    }
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    o.db_path = db;
    o.flags = TASKSPAN_OPEN_NO_CREATE;
    /* No background thread: this process's flushes do the work. */
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.close_timeout_ms = -1;
    taskspan *ts = cli_open("taskspan export", &o);
    if (ts == NULL) {
        return CLI_FAILURE;
    }
    int status = follow ? run_follow(ts) : run_once(ts, timeout_ms);
    taskspan_close(ts);
    return status;
}
