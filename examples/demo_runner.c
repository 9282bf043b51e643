/*
 * demo_runner.c -- taskspan-demo-runner: a small task runner that lives the
 * runner-events report's lifecycle through libtaskspan's public API:
 * planning -> executing N work items (each dispatched, started, leased,
 * renewed, checkpointed, done or failed) -> verifying with gates -> exit.
 *
 * It is both the demo and a fixture other tools and tests rely on, so its
 * flags are stable: --task, --items, --fail-item, --item-ms, --help. The
 * buffer is the library's default (TASKSPAN_DB, else the state directory).
 *
 * Like any runner it treats telemetry as best effort: a failed emit is
 * reported on stderr and the work goes on. Exit status: 0 when every event
 * was recorded, 1 when some emit failed, 2 for a usage error.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct demo {
    taskspan *ts;
    const char *task;
    long items;
    long fail_item;
    long item_ms;
    int64_t pid;
    unsigned emit_failures;
    int64_t last_seq;
} demo;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan-demo-runner [--task ID] [--items N] "
            "[--fail-item K] [--item-ms MS]\n\n"
            "Runs a demo task and records its lifecycle with libtaskspan.\n"
            "  --task ID       task id (default: demo-<pid>)\n"
            "  --items N       work items to execute (default 3, 0..100000)\n"
            "  --fail-item K   make item K (1-based) fail; 0 for none "
            "(default 0)\n"
            "  --item-ms MS    how long each item works (default 100)\n"
            "The buffer is $TASKSPAN_DB, else "
            "$XDG_STATE_HOME/taskspan/buffer.db.\n");
}

/* Parse a whole decimal number within [lo, hi]; false otherwise. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return 0;
    }
    *out = v;
    return 1;
}

/* Telemetry is best effort: report, count, and keep working. */
static void check(demo *d, taskspan_code rc, const char *what)
{
    if (rc != TASKSPAN_OK) {
        char msg[TASKSPAN_ERRBUF_SIZE];
        taskspan_errmsg_copy(d->ts, msg, sizeof msg);
        fprintf(stderr, "taskspan-demo-runner: recording %s failed: %s (%s)\n",
                what, taskspan_strerror(rc), msg);
        d->emit_failures++;
    }
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static void run_item(demo *d, long i)
{
    char id[32], title[64], ckpt[48], step[48], evidence[64];
    const char *holder = "worker-1";
    int64_t *seq = &d->last_seq;

    snprintf(id, sizeof id, "wi_%03ld", i);
    snprintf(title, sizeof title, "demo work item %ld", i);
    check(d,
          taskspan_emit_work_item_dispatched(seq, d->ts, d->task, id, title, i,
                                             "queued for a worker"),
          "work_item_dispatched");
    check(d,
          taskspan_emit_work_item_start(seq, d->ts, d->task, id, "demo", NULL),
          "work_item_start");
    check(d,
          taskspan_emit_lease_acquired(seq, d->ts, d->task, id, holder, 30,
                                       NULL),
          "lease_acquired");
    sleep_ms(d->item_ms / 2);
    check(d,
          taskspan_emit_lease_renewed(seq, d->ts, d->task, id, holder, 30,
                                      "half-way heartbeat"),
          "lease_renewed");
    sleep_ms(d->item_ms - d->item_ms / 2);
    if (i == d->fail_item) {
        check(d,
              taskspan_emit_work_item_failed(seq, d->ts, d->task, id, title,
                                             "demo failure requested by "
                                             "--fail-item",
                                             NULL),
              "work_item_failed");
        return;
    }
    snprintf(step, sizeof step, "step-%ld", i);
    snprintf(ckpt, sizeof ckpt, "ckpt-%s-%ld", d->task, i);
    snprintf(evidence, sizeof evidence, "out/%s.txt", id);
    const char *ev[] = {evidence};
    check(d,
          taskspan_emit_checkpoint_begin(seq, d->ts, d->task, step,
                                         "work_item", id, NULL),
          "checkpoint_begin");
    check(d,
          taskspan_emit_checkpoint_commit(seq, d->ts, d->task, ckpt,
                                          "work_item", i, ev, 1, NULL),
          "checkpoint_commit");
    check(d,
          taskspan_emit_checkpoint_verified(seq, d->ts, d->task, ckpt,
                                            "work_item", 1, NULL),
          "checkpoint_verified");
    check(d,
          taskspan_emit_work_item_done(seq, d->ts, d->task, id, title, ev, 1,
                                       NULL),
          "work_item_done");
}

static void run_task(demo *d)
{
    int64_t *seq = &d->last_seq;
    const char *t = d->task;

    check(d,
          taskspan_emit_runner_spawn(seq, d->ts, t, d->pid, taskspan_version(),
                                     "demo runner"),
          "runner_spawn");
    check(d, taskspan_emit_phase_enter(seq, d->ts, t, "planning", NULL),
          "phase_enter");
    check(d,
          taskspan_emit_phase_progress(seq, d->ts, t, "planning", 1, 1,
                                       "plan ready"),
          "phase_progress");
    check(d, taskspan_emit_phase_exit(seq, d->ts, t, "planning", NULL),
          "phase_exit");
    check(d, taskspan_emit_phase_enter(seq, d->ts, t, "executing", NULL),
          "phase_enter");
    for (long i = 1; i <= d->items; i++) {
        run_item(d, i);
    }
    check(d, taskspan_emit_phase_exit(seq, d->ts, t, "executing", NULL),
          "phase_exit");
    check(d, taskspan_emit_phase_enter(seq, d->ts, t, "verifying", NULL),
          "phase_enter");
    check(d, taskspan_emit_gate_start(seq, d->ts, t, "doctor", 60, NULL),
          "gate_start");
    check(d,
          taskspan_emit_gate_result(seq, d->ts, t, "doctor", "passed", 1, 0,
                                    0.05, NULL),
          "gate_result");
    check(d, taskspan_emit_phase_exit(seq, d->ts, t, "verifying", NULL),
          "phase_exit");
    check(
        d,
        taskspan_emit_runner_exit(seq, d->ts, t, d->pid,
                                  d->fail_item > 0 && d->fail_item <= d->items
                                      ? "done_with_failures"
                                      : "done",
                                  d->items, NULL),
        "runner_exit");
}

/* Every flag but --help takes a value, so arguments come in pairs. */
/* Deliver the task's spans now (at most 5 s; what is left stays buffered
 * for `taskspan export`) and say where they went. */
static void report_export(demo *d)
{
    taskspan_export_stats st;
    taskspan_code rc = TASKSPAN_OK;
    if (taskspan_get_export_stats(&st, d->ts) == TASKSPAN_OK && st.enabled) {
        rc = taskspan_flush(d->ts, 5000);
    }
    if (taskspan_get_export_stats(&st, d->ts) != TASKSPAN_OK) {
        return;
    }
    if (!st.enabled) {
        printf("export is off%s%s; `taskspan export` delivers the spans "
               "later\n",
               st.config_warnings[0] ? ": " : "", st.config_warnings);
    } else if (rc == TASKSPAN_OK) {
        printf("exported %llu spans to %s\n",
               (unsigned long long)st.spans_delivered, st.endpoint);
    } else {
        printf("%llu spans not delivered yet to %s (%s); they stay in the "
               "buffer for `taskspan export`\n",
               (unsigned long long)st.spans_pending, st.endpoint,
               st.last_error[0] ? st.last_error : taskspan_strerror(rc));
    }
}

static int parse_args(demo *d, int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--task") == 0 && v != NULL && v[0] != '\0') {
            d->task = v;
        } else if (strcmp(a, "--items") == 0 && v != NULL &&
                   parse_long(v, 0, 100000, &d->items)) {
        } else if (strcmp(a, "--fail-item") == 0 && v != NULL &&
                   parse_long(v, 0, 100000, &d->fail_item)) {
        } else if (strcmp(a, "--item-ms") == 0 && v != NULL &&
                   parse_long(v, 0, 3600000, &d->item_ms)) {
        } else {
            fprintf(stderr,
                    "taskspan-demo-runner: bad argument '%s'%s; see "
                    "--help\n",
                    a, v == NULL ? " (missing value)" : "");
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    static char default_task[64];
    char err[TASKSPAN_ERRBUF_SIZE];
    demo d = {.items = 3, .fail_item = 0, .item_ms = 100};

    d.pid = (int64_t)getpid();
    snprintf(default_task, sizeof default_task, "demo-%" PRId64, d.pid);
    d.task = default_task;
    if (!parse_args(&d, argc, argv)) {
        return 2;
    }
    taskspan_code rc = taskspan_open(&d.ts, NULL, err);
    if (rc != TASKSPAN_OK) {
        /* A real runner would go on without telemetry; the demo has nothing
         * to show without a buffer, so it stops here. */
        fprintf(stderr, "taskspan-demo-runner: cannot open the buffer: %s\n",
                err);
        return 1;
    }
    run_task(&d);
    printf("task %s: %" PRId64 " events recorded in %s\n", d.task, d.last_seq,
           taskspan_db_path(d.ts));
    report_export(&d);
    if (d.emit_failures > 0) {
        printf("%u events could not be recorded (see above)\n",
               d.emit_failures);
    }
    taskspan_close(d.ts);
    return d.emit_failures > 0 ? 1 : 0;
}
