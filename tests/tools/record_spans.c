/*
 * record_spans.c -- test tool: a load of closed spans for the export tests.
 *
 *   record_spans N_TASKS SPANS_PER_TASK [TASK_PREFIX]
 *
 * For each task "<TASK_PREFIX>-<i>" (prefix default "load", i from 1) it
 * records runner_spawn, then SPANS_PER_TASK work items (work_item_start,
 * lease_acquired, work_item_done: one closed work span each), then
 * runner_exit (which closes main), and closes the recorder without a flush.
 * It prints the number of closed spans it produced,
 * N_TASKS * (SPANS_PER_TASK + 1), alone on one line.
 *
 * The buffer is $TASKSPAN_DB. TASKSPAN_TEST_EXPORT_MODE picks the export
 * mode: "on", "off" or "auto" (the default: on unless OTEL_SDK_DISABLED).
 * TASKSPAN_TEST_CLOSE_MS, when set, is the close_timeout_ms option
 * (negative: close at once). Every other export setting comes from the
 * OTEL_* environment variables.
 * Exit: 0 when every event was recorded, 1 otherwise, 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int parse_count(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

static unsigned failures;

static void check(taskspan *ts, taskspan_code rc, const char *what)
{
    if (rc != TASKSPAN_OK) {
        char msg[TASKSPAN_ERRBUF_SIZE];
        taskspan_errmsg_copy(ts, msg, sizeof msg);
        if (failures < 10) {
            fprintf(stderr, "record_spans: %s failed: %s (%s)\n", what,
                    taskspan_strerror(rc), msg);
        }
        failures++;
    }
}

int main(int argc, char **argv)
{
    long n_tasks = 0, per_task = 0;
    const char *prefix = "load";

    if (argc < 3 || argc > 4 || !parse_count(argv[1], 1000000, &n_tasks) ||
        !parse_count(argv[2], 1000000, &per_task)) {
        fprintf(stderr,
                "usage: record_spans N_TASKS SPANS_PER_TASK [TASK_PREFIX]\n");
        return 2;
    }
    if (argc == 4 && argv[3][0] != '\0') {
        prefix = argv[3];
    }

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    const char *mode = getenv("TASKSPAN_TEST_EXPORT_MODE");
    if (mode == NULL || mode[0] == '\0' || strcasecmp(mode, "auto") == 0) {
        o.export_mode = TASKSPAN_EXPORT_AUTO;
    } else if (strcasecmp(mode, "on") == 0) {
        o.export_mode = TASKSPAN_EXPORT_ON;
    } else if (strcasecmp(mode, "off") == 0) {
        o.export_mode = TASKSPAN_EXPORT_OFF;
    } else {
        fprintf(stderr,
                "record_spans: TASKSPAN_TEST_EXPORT_MODE='%s' is not "
                "on, off or auto\n",
                mode);
        return 2;
    }
    const char *close_ms = getenv("TASKSPAN_TEST_CLOSE_MS");
    if (close_ms != NULL && close_ms[0] != '\0') {
        char *end;
        errno = 0;
        long v = strtol(close_ms, &end, 10);
        if (errno != 0 || end == close_ms || *end != '\0' || v < -1 ||
            v > 3600000) {
            fprintf(stderr,
                    "record_spans: TASKSPAN_TEST_CLOSE_MS='%s' is not a "
                    "number of ms\n",
                    close_ms);
            return 2;
        }
        o.close_timeout_ms = (int)v;
    }
    o.traceparent = "";

    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "record_spans: open failed: %s (%s)\n", err,
                taskspan_strerror(rc));
        return 1;
    }
    int64_t pid = (int64_t)getpid();
    for (long i = 1; i <= n_tasks; i++) {
        char task[128];
        snprintf(task, sizeof task, "%s-%ld", prefix, i);
        check(ts,
              taskspan_emit_runner_spawn(NULL, ts, task, pid,
                                         taskspan_version(), NULL),
              "runner_spawn");
        for (long k = 1; k <= per_task; k++) {
            char id[32];
            const char *files[] = {"out/result.txt"};
            snprintf(id, sizeof id, "wi_%03ld", k);
            check(ts,
                  taskspan_emit_work_item_start(NULL, ts, task, id, "load",
                                                NULL),
                  "work_item_start");
            check(ts,
                  taskspan_emit_lease_acquired(NULL, ts, task, id, "worker-1",
                                               30, NULL),
                  "lease_acquired");
            check(ts,
                  taskspan_emit_work_item_done(NULL, ts, task, id, "load item",
                                               files, 1, NULL),
                  "work_item_done");
        }
        check(ts,
              taskspan_emit_runner_exit(NULL, ts, task, pid, "done", per_task,
                                        NULL),
              "runner_exit");
    }
    printf("%ld\n", n_tasks * (per_task + 1));
    fflush(stdout);
    taskspan_close(ts);
    if (failures > 0) {
        fprintf(stderr, "record_spans: %u events could not be recorded\n",
                failures);
        return 1;
    }
    return 0;
}
