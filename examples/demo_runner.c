/*
 * demo_runner.c -- taskspan-demo-runner: a small task runner that lives the
 * runner-events report's lifecycle through libtaskspan's public API:
 * planning -> executing N work items (each added to the task's queue,
 * leased, started, renewed, checkpointed, done or failed) -> verifying
 * with gates -> exit; and, started again for a task whose runner was
 * killed, the report's recovery story.
 *
 * It is both the demo and a fixture other tools and tests rely on, so its
 * flags and its behaviour are stable:
 *
 *   --task ID        task id (default demo-<pid>)
 *   --items N        work items wi_001 .. wi_<N> (default 3)
 *   --fail-item K    item K (1-based) fails; 0: none (default)
 *   --item-ms MS     how long each item works (default 100); the lease is
 *                    renewed half-way
 *   --lease-ms MS    lease TTL (default 30000)
 *   --max-retries N  how often the recovery sweep requeues an item before
 *                    it gives up on it (default 3)
 *
 * A fresh task (no work item wi_001 in the buffer) records, in order:
 * runner_spawn; phase_enter/progress/exit planning; phase_enter executing;
 * per item: work_item_dispatched, work_item_start, lease_acquired,
 * lease_renewed, then checkpoint_begin, checkpoint_commit (sequence
 * number = the task's next), checkpoint_verified, work_item_done -- or
 * work_item_failed for --fail-item; phase_exit executing; verifying with
 * gate "doctor" passed; runner_exit ("done", or "done_with_failures" when
 * an item failed). 5 + 8 per done item + 5 per failed item + 6 events.
 *
 * A task that has work items already (its runner was killed, or it ran
 * before) is resumed: runner_spawn (this closes the killed incarnation's
 * spans, ERROR, taskspan.crashed, and links the new main span to the old
 * one); taskspan_recovery_sweep with TASKSPAN_SWEEP_RECORD_EMPTY:
 * recovery_detected always, then recovery_requeued for every item whose
 * lease expired -- a lease of a process that is gone (the killed runner)
 * counts as expired at once, so no TTL has to pass; taskspan_recovery_resume:
 * recovery_resumed_from_checkpoint when a verified checkpoint exists;
 * phase_enter executing; then the items not DONE or FAILED, in order, as
 * above (items added before are not dispatched again); the rest as for a
 * fresh task. It prints one line "resumed task T: E expired leases, R
 * requeued, from checkpoint S" (S = "none" without one) before the summary.
 *
 * The buffer is the library's default (TASKSPAN_DB, else the state
 * directory). Like any runner it treats telemetry as best effort: a failed
 * call is reported on stderr and the work goes on. Exit status: 0 when
 * every event was recorded, 1 when some call failed, 2 for a usage error.
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
    long lease_ms;
    long max_retries;
    int64_t pid;
    char holder[64];
    unsigned emit_failures;
    unsigned items_failed;
    int64_t last_seq;
} demo;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: taskspan-demo-runner [--task ID] [--items N] "
            "[--fail-item K] [--item-ms MS]\n"
            "                            [--lease-ms MS] "
            "[--max-retries N]\n\n"
            "Runs a demo task and records its lifecycle with libtaskspan.\n"
            "Started again for a task whose runner was killed, it sweeps "
            "the\nexpired leases, resumes from the last verified checkpoint "
            "and\nfinishes the remaining items.\n"
            "  --task ID         task id (default: demo-<pid>)\n"
            "  --items N         work items to execute (default 3, "
            "0..100000)\n"
            "  --fail-item K     make item K (1-based) fail; 0 for none "
            "(default 0)\n"
            "  --item-ms MS      how long each item works (default 100)\n"
            "  --lease-ms MS     lease time-to-live (default 30000)\n"
            "  --max-retries N   requeues of an item before giving up "
            "(default 3)\n"
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

/* A lease call that did not grant: say so (another runner holds the item,
 * or a sweep took it away) and leave the item alone. */
static int granted(demo *d, taskspan_lease_outcome o, const char *id,
                   const char *what)
{
    static const char *const names[] = {"", "granted", "held by another",
                                        "lost", "finished"};
    if (o == TASKSPAN_LEASE_GRANTED) {
        return 1;
    }
    printf("item %s: %s: lease %s\n", id, what,
           (unsigned)o < 5 ? names[o] : "?");
    (void)d;
    return 0;
}

/* The checkpoint after an item's work: commit its evidence, verify it. */
static void checkpoint_item(demo *d, long i, const char *id,
                            const char *const *ev)
{
    char step[48];
    int64_t n = 0;

    snprintf(step, sizeof step, "step-%ld", i);
    check(d,
          taskspan_emit_checkpoint_begin(&d->last_seq, d->ts, d->task, step,
                                         "work_item", id, NULL),
          "checkpoint_begin");
    check(d,
          taskspan_checkpoint_commit(&n, d->ts, d->task, 0, NULL, "work_item",
                                     id, ev, 1, NULL),
          "checkpoint_commit");
    if (n > 0) {
        check(d, taskspan_checkpoint_verify(d->ts, d->task, n, 1, NULL, NULL),
              "checkpoint_verified");
    }
}

static void run_item(demo *d, long i)
{
    char id[32], title[64], evidence[64];
    taskspan_lease_outcome o = TASKSPAN_LEASE_LOST;
    taskspan_work_item it;

    snprintf(id, sizeof id, "wi_%03ld", i);
    snprintf(title, sizeof title, "demo work item %ld", i);
    if (taskspan_work_item_get(&it, d->ts, d->task, id) == TASKSPAN_OK &&
        (it.state == TASKSPAN_ITEM_DONE || it.state == TASKSPAN_ITEM_FAILED)) {
        d->items_failed += it.state == TASKSPAN_ITEM_FAILED;
        return; /* finished by an earlier incarnation */
    }
    check(d,
          taskspan_work_item_add(NULL, NULL, d->ts, d->task, id, title, i,
                                 "queued for a worker"),
          "work_item_dispatched");
    /* The report's order: the worker starts, then takes the lease. */
    check(d,
          taskspan_emit_work_item_start(&d->last_seq, d->ts, d->task, id,
                                        "demo", NULL),
          "work_item_start");
    check(d,
          taskspan_lease_acquire(&o, NULL, d->ts, d->task, id, d->holder,
                                 d->lease_ms, NULL),
          "lease_acquired");
    if (!granted(d, o, id, "acquire")) {
        return;
    }
    sleep_ms(d->item_ms / 2);
    check(d,
          taskspan_lease_renew(&o, NULL, d->ts, d->task, id, d->holder,
                               d->lease_ms, "half-way heartbeat"),
          "lease_renewed");
    if (!granted(d, o, id, "renew")) {
        return;
    }
    sleep_ms(d->item_ms - d->item_ms / 2);
    if (i == d->fail_item) {
        check(d,
              taskspan_work_item_fail(&o, NULL, d->ts, d->task, id, d->holder,
                                      title,
                                      "demo failure requested by "
                                      "--fail-item",
                                      NULL),
              "work_item_failed");
        d->items_failed++;
        return;
    }
    snprintf(evidence, sizeof evidence, "out/%s.txt", id);
    const char *ev[] = {evidence};
    checkpoint_item(d, i, id, ev);
    check(d,
          taskspan_work_item_finish(&o, NULL, d->ts, d->task, id, d->holder,
                                    title, ev, 1, NULL),
          "work_item_done");
    granted(d, o, id, "finish");
}

/* The killed runner's leases back to the queue, and where to resume. */
static void recover(demo *d)
{
    taskspan_recovery_report *rep = NULL;
    taskspan_checkpoint *cp = NULL;

    check(d,
          taskspan_recovery_sweep(&rep, d->ts, d->task, d->max_retries,
                                  TASKSPAN_SWEEP_RECORD_EMPTY,
                                  "runner restarted"),
          "recovery_detected");
    check(d,
          taskspan_recovery_resume(&cp, d->ts, d->task,
                                   "continuing after the last verified "
                                   "checkpoint"),
          "recovery_resumed_from_checkpoint");
    char from[32] = "none";
    if (cp != NULL) {
        snprintf(from, sizeof from, "%" PRId64, cp->sequence_number);
    }
    printf("resumed task %s: %zu expired leases, %zu requeued, from "
           "checkpoint %s\n",
           d->task, rep != NULL ? rep->n_items : 0,
           rep != NULL ? rep->n_requeued : 0, from);
    taskspan_checkpoint_free(cp);
    taskspan_recovery_report_free(rep);
}

static void run_task(demo *d)
{
    int64_t *seq = &d->last_seq;
    const char *t = d->task;
    taskspan_work_item first;
    int resuming = taskspan_work_item_get(&first, d->ts, t, "wi_001") ==
                   TASKSPAN_OK;

    check(d,
          taskspan_emit_runner_spawn(seq, d->ts, t, d->pid, taskspan_version(),
                                     resuming ? "demo runner, resuming"
                                              : "demo runner"),
          "runner_spawn");
    if (resuming) {
        recover(d);
    } else {
        check(d, taskspan_emit_phase_enter(seq, d->ts, t, "planning", NULL),
              "phase_enter");
        check(d,
              taskspan_emit_phase_progress(seq, d->ts, t, "planning", 1, 1,
                                           "plan ready"),
              "phase_progress");
        check(d, taskspan_emit_phase_exit(seq, d->ts, t, "planning", NULL),
              "phase_exit");
    }
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
    check(d,
          taskspan_emit_runner_exit(seq, d->ts, t, d->pid,
                                    d->items_failed > 0 ? "done_with_failures"
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
        } else if (strcmp(a, "--lease-ms") == 0 && v != NULL &&
                   parse_long(v, 1, 604800000, &d->lease_ms)) {
        } else if (strcmp(a, "--max-retries") == 0 && v != NULL &&
                   parse_long(v, 0, 1000000, &d->max_retries)) {
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
    demo d = {.items = 3,
              .fail_item = 0,
              .item_ms = 100,
              .lease_ms = 30000,
              .max_retries = 3};

    d.pid = (int64_t)getpid();
    snprintf(d.holder, sizeof d.holder, "demo-runner-%" PRId64, d.pid);
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
