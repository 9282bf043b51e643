/*
 * kill9_runner.c -- test tool: a task runner that the kill -9 tests kill at
 * random points, and its own witness.
 *
 * It lives the runner-events report's lifecycle for one task (planning,
 * executing items: dispatched, start, lease acquired and renewed,
 * checkpoint begin/commit/verified, done; verifying with a gate; exit).
 * After each emit RETURNS it writes "<seq> <event_type>\n" to stdout with
 * one write(2). A line the test reads therefore proves that the emit had
 * returned before the process died: the kernel keeps what write() took,
 * whatever happens to the process next (tests/integration/kill9_*.sh).
 *
 *   kill9_runner --replay
 *   kill9_runner --task T [--items N] [--item-ms MS] [--sync normal|full]
 *                [--from-item K] [--expired WI[,WI...] --holder H]
 *                [--resume CKPT_ID,SEQUENCE_NUMBER,WORK_ITEM_ID]
 *
 * A restart is told what the test read from the buffer after the kill (as
 * a runner reads its own state): --expired lists the work items whose
 * lease the dead runner held (recovery_detected, one recovery_requeued
 * each, previous holder H), --resume the last verified checkpoint
 * (recovery_resumed_from_checkpoint), --from-item the first item to run.
 * A restart skips planning.
 *
 * The buffer is $TASKSPAN_DB; export follows the OTEL_* variables (on by
 * default). Exit: 0 when every emit succeeded, 1 otherwise, 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXPIRED 64

typedef struct run {
    taskspan *ts;
    const char *task;
    long items, item_ms, from_item;
    const char *expired[MAX_EXPIRED];
    size_t n_expired;
    const char *holder;
    char resume_ckpt[128], resume_item[64];
    long resume_seq; /* 0: no checkpoint to resume from */
    char holder_self[64];
    unsigned failures;
} run;

static void usage(void)
{
    fprintf(stderr, "usage: kill9_runner --task T [--items N] [--item-ms MS] "
                    "[--sync normal|full] [--from-item K]\n"
                    "       [--expired WI[,WI...] --holder H] "
                    "[--resume CKPT_ID,SEQUENCE_NUMBER,WORK_ITEM_ID]\n");
}

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

/* The witness line: written only after the emit returned OK, in one
 * write(2) so that a kill never leaves half a line that names a seq. */
static void witness(int64_t seq, const char *type)
{
    char line[128];
    int n = snprintf(line, sizeof line, "%" PRId64 " %s\n", seq, type);
    if (n <= 0 || (size_t)n >= sizeof line) {
        return;
    }
    ssize_t w;
    do {
        w = write(STDOUT_FILENO, line, (size_t)n);
    } while (w < 0 && errno == EINTR);
}

/* Report an emit: its witness line, or the failure on stderr. seq is read
 * through a pointer because the emit that sets it is an argument of the
 * same call, and C leaves the order of argument evaluation open. */
static void done(run *r, taskspan_code rc, const int64_t *seq,
                 const char *type)
{
    if (rc == TASKSPAN_OK) {
        witness(*seq, type);
        return;
    }
    char msg[TASKSPAN_ERRBUF_SIZE];
    taskspan_errmsg_copy(r->ts, msg, sizeof msg);
    fprintf(stderr, "kill9_runner: %s failed: %s (%s)\n", type,
            taskspan_strerror(rc), msg);
    r->failures++;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static void run_item(run *r, long i)
{
    char id[32], title[48], ckpt[160], step[32], evidence[48];
    const char *t = r->task;
    int64_t s = 0;

    snprintf(id, sizeof id, "wi_%03ld", i);
    snprintf(title, sizeof title, "item %ld", i);
    snprintf(step, sizeof step, "step-%ld", i);
    snprintf(ckpt, sizeof ckpt, "ckpt-%s-%ld", t, i);
    snprintf(evidence, sizeof evidence, "out/%s.txt", id);
    const char *ev[] = {evidence};

    done(r,
         taskspan_emit_work_item_dispatched(&s, r->ts, t, id, title, i, NULL),
         &s, "work_item_dispatched");
    done(r, taskspan_emit_work_item_start(&s, r->ts, t, id, "kill9", NULL), &s,
         "work_item_start");
    done(r,
         taskspan_emit_lease_acquired(&s, r->ts, t, id, r->holder_self, 30,
                                      NULL),
         &s, "lease_acquired");
    sleep_ms(r->item_ms / 2);
    done(r,
         taskspan_emit_lease_renewed(&s, r->ts, t, id, r->holder_self, 30,
                                     NULL),
         &s, "lease_renewed");
    sleep_ms(r->item_ms - r->item_ms / 2);
    done(r,
         taskspan_emit_checkpoint_begin(&s, r->ts, t, step, "work_item", id,
                                        NULL),
         &s, "checkpoint_begin");
    done(r,
         taskspan_emit_checkpoint_commit(&s, r->ts, t, ckpt, "work_item", i,
                                         ev, 1, NULL),
         &s, "checkpoint_commit");
    done(r,
         taskspan_emit_checkpoint_verified(&s, r->ts, t, ckpt, "work_item", 1,
                                           NULL),
         &s, "checkpoint_verified");
    done(r, taskspan_emit_work_item_done(&s, r->ts, t, id, title, ev, 1, NULL),
         &s, "work_item_done");
}

/* After a restart: the sweep of the dead runner's leases, then the resume
 * from its last verified checkpoint (the report's recovery sequence). */
static void recover(run *r)
{
    const char *t = r->task;
    int64_t s = 0;

    if (r->n_expired > 0) {
        done(r,
             taskspan_emit_recovery_detected(&s, r->ts, t,
                                             (int64_t)r->n_expired, r->expired,
                                             r->n_expired, "expired leases"),
             &s, "recovery_detected");
        for (size_t k = 0; k < r->n_expired; k++) {
            done(r,
                 taskspan_emit_recovery_requeued(&s, r->ts, t, r->expired[k],
                                                 r->holder, 1, 3, NULL),
                 &s, "recovery_requeued");
        }
    }
    if (r->resume_seq > 0) {
        done(r,
             taskspan_emit_recovery_resumed_from_checkpoint(
                 &s, r->ts, t, r->resume_ckpt, "work_item", r->resume_seq,
                 r->resume_item, NULL),
             &s, "recovery_resumed_from_checkpoint");
    }
}

static void run_task(run *r)
{
    const char *t = r->task;
    int64_t s = 0;
    int restart = r->from_item > 1 || r->n_expired > 0 || r->resume_seq > 0;

    done(r,
         taskspan_emit_runner_spawn(&s, r->ts, t, (int64_t)getpid(),
                                    taskspan_version(), "kill9 runner"),
         &s, "runner_spawn");
    if (restart) {
        recover(r);
    } else {
        done(r, taskspan_emit_phase_enter(&s, r->ts, t, "planning", NULL), &s,
             "phase_enter");
        done(r, taskspan_emit_phase_exit(&s, r->ts, t, "planning", NULL), &s,
             "phase_exit");
    }
    done(r, taskspan_emit_phase_enter(&s, r->ts, t, "executing", NULL), &s,
         "phase_enter");
    for (long i = r->from_item; i <= r->items; i++) {
        run_item(r, i);
    }
    done(r, taskspan_emit_phase_exit(&s, r->ts, t, "executing", NULL), &s,
         "phase_exit");
    done(r, taskspan_emit_phase_enter(&s, r->ts, t, "verifying", NULL), &s,
         "phase_enter");
    done(r, taskspan_emit_gate_start(&s, r->ts, t, "doctor", 60, NULL), &s,
         "gate_start");
    done(r,
         taskspan_emit_gate_result(&s, r->ts, t, "doctor", "passed", 1, 0,
                                   0.01, NULL),
         &s, "gate_result");
    done(r, taskspan_emit_phase_exit(&s, r->ts, t, "verifying", NULL), &s,
         "phase_exit");
    done(r,
         taskspan_emit_runner_exit(&s, r->ts, t, (int64_t)getpid(), "done",
                                   r->items, NULL),
         &s, "runner_exit");
}

/* "a,b,c" -> r->expired (pointers into the argument, which is edited). */
static int parse_expired(run *r, char *list)
{
    char *save = NULL;
    for (char *p = strtok_r(list, ",", &save); p != NULL;
         p = strtok_r(NULL, ",", &save)) {
        if (r->n_expired == MAX_EXPIRED) {
            return 0;
        }
        r->expired[r->n_expired++] = p;
    }
    return r->n_expired > 0;
}

/* "CKPT_ID,SEQUENCE_NUMBER,WORK_ITEM_ID" -> r->resume_*. */
static int parse_resume(run *r, const char *v)
{
    char seq[32];
    int n = sscanf(v, "%127[^,],%31[^,],%63s", r->resume_ckpt, seq,
                   r->resume_item);
    return n == 3 && parse_long(seq, 1, 1000000, &r->resume_seq);
}

static int parse_args(run *r, taskspan_options *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            return 0;
        } else if (strcmp(a, "--task") == 0 && v[0] != '\0') {
            r->task = v;
        } else if (strcmp(a, "--items") == 0 &&
                   parse_long(v, 1, 100000, &r->items)) {
        } else if (strcmp(a, "--item-ms") == 0 &&
                   parse_long(v, 0, 60000, &r->item_ms)) {
        } else if (strcmp(a, "--from-item") == 0 &&
                   parse_long(v, 1, 100001, &r->from_item)) {
        } else if (strcmp(a, "--expired") == 0 && parse_expired(r, v)) {
        } else if (strcmp(a, "--holder") == 0 && v[0] != '\0') {
            r->holder = v;
        } else if (strcmp(a, "--resume") == 0 && parse_resume(r, v)) {
        } else if (strcmp(a, "--sync") == 0 && strcmp(v, "normal") == 0) {
            o->sync_mode = TASKSPAN_SYNC_NORMAL;
        } else if (strcmp(a, "--sync") == 0 && strcmp(v, "full") == 0) {
            o->sync_mode = TASKSPAN_SYNC_FULL;
        } else {
            return 0;
        }
    }
    return r->task != NULL && (r->n_expired == 0 || r->holder != NULL);
}

int main(int argc, char **argv)
{
    run r = {.items = 5, .item_ms = 10, .from_item = 1};
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";

    /* --replay: open the buffer and close it, which moves the journals of
     * dead recorders (the journal mode) into it before the test reads. */
    if (argc == 2 && strcmp(argv[1], "--replay") == 0) {
        o.export_mode = TASKSPAN_EXPORT_OFF;
        if (taskspan_open(&r.ts, &o, err) != TASKSPAN_OK) {
            fprintf(stderr, "kill9_runner: open failed: %s\n", err);
            return 1;
        }
        taskspan_close(r.ts);
        return 0;
    }
    if (!parse_args(&r, &o, argc, argv)) {
        usage();
        return 2;
    }
    snprintf(r.holder_self, sizeof r.holder_self, "worker-%ld",
             (long)getpid());
    o.traceparent = "";
    taskspan_code rc = taskspan_open(&r.ts, &o, err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "kill9_runner: open failed: %s (%s)\n", err,
                taskspan_strerror(rc));
        return 1;
    }
    run_task(&r);
    taskspan_close(r.ts);
    return r.failures > 0 ? 1 : 0;
}
