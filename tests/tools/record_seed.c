/*
 * record_seed.c -- test tool: record the runner-events report's "Span
 * Hierarchy Example" (20 events, seq 1-20) for one task through the typed
 * helpers, with export ON, then flush and report.
 *
 *   record_seed TASK_ID [FLUSH_TIMEOUT_MS]      (default 10000)
 *
 * The buffer is $TASKSPAN_DB; the endpoint, service name, batch size and
 * every other export setting come from the OTEL_* environment variables.
 * Output (stdout):
 *   pid: <pid>                       this process (runner_pid, process.pid)
 *   events: 20 (seq 1-20)
 *   flush: <taskspan_strerror of the flush result>
 *   flush message: <taskspan_errmsg>  (only when the flush failed)
 *   stats: enabled=... delivered=... rejected=... requests_ok=...
 *          requests_failed=... partial_rejected=... pending=...
 *          delivered_total=... rejected_total=...
 *   endpoint: <url>
 *   last_error: <text>
 * Exit: 0 when the flush returned TASKSPAN_OK, 3 for TASKSPAN_E_TIMEOUT,
 * 1 for any other failure (an emit, the open, the flush), 2 for usage.
 */
#include <taskspan/taskspan.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void check(taskspan *ts, taskspan_code rc, int64_t seq,
                  int64_t want_seq, const char *what)
{
    if (rc != TASKSPAN_OK) {
        char msg[TASKSPAN_ERRBUF_SIZE];
        taskspan_errmsg_copy(ts, msg, sizeof msg);
        fprintf(stderr, "record_seed: %s failed: %s (%s)\n", what,
                taskspan_strerror(rc), msg);
        failures++;
    } else if (seq != want_seq) {
        fprintf(stderr,
                "record_seed: %s got seq %" PRId64 ", want %" PRId64 "\n",
                what, seq, want_seq);
        failures++;
    }
}

/* Emit, then check the result and the seq: the call runs before s is read. */
#define EMIT(want_seq, what, call)                                            \
    do {                                                                      \
        taskspan_code emit_rc_ = (call);                                      \
        check(ts, emit_rc_, s, (want_seq), (what));                           \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || argv[1][0] == '\0') {
        fprintf(stderr, "usage: record_seed TASK_ID [FLUSH_TIMEOUT_MS]\n");
        return 2;
    }
    const char *t = argv[1];
    long timeout_ms = 10000;
    if (argc == 3) {
        char *end;
        errno = 0;
        timeout_ms = strtol(argv[2], &end, 10);
        if (errno != 0 || end == argv[2] || *end != '\0' ||
            timeout_ms > 3600000 || timeout_ms < -1) {
            fprintf(stderr, "record_seed: bad timeout '%s'\n", argv[2]);
            return 2;
        }
    }

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    o.export_mode = TASKSPAN_EXPORT_ON;
    o.traceparent = "";
    taskspan_code rc = taskspan_open(&ts, &o, err);
    if (rc != TASKSPAN_OK) {
        fprintf(stderr, "record_seed: open failed: %s (%s)\n", err,
                taskspan_strerror(rc));
        return 1;
    }
    int64_t pid = (int64_t)getpid();
    int64_t s = 0;
    const char *files_wi_001[] = {"src/parser.c", "tests/test_parser.c"};
    const char *expired[] = {"wi_003"};

    printf("pid: %" PRId64 "\n", pid);
    /* main: seq 1-5 */
    EMIT(1, "runner_spawn",
         taskspan_emit_runner_spawn(&s, ts, t, pid, taskspan_version(),
                                    "runner started for the task"));
    EMIT(2, "phase_enter planning",
         taskspan_emit_phase_enter(&s, ts, t, "planning",
                                   "generating the plan"));
    EMIT(3, "phase_exit planning",
         taskspan_emit_phase_exit(&s, ts, t, "planning", "plan ready"));
    EMIT(4, "phase_enter executing",
         taskspan_emit_phase_enter(&s, ts, t, "executing",
                                   "executing work items"));
    EMIT(5, "work_item_dispatched wi_001",
         taskspan_emit_work_item_dispatched(&s, ts, t, "wi_001",
                                            "Implement the parser", 1,
                                            "dispatched to a worker"));
    /* work_wi_001: seq 6-8 */
    EMIT(6, "work_item_start wi_001",
         taskspan_emit_work_item_start(&s, ts, t, "wi_001", "code",
                                       "worker picked it up"));
    EMIT(7, "lease_acquired wi_001",
         taskspan_emit_lease_acquired(&s, ts, t, "wi_001", "worker-1", 300,
                                      "lease for 5 minutes"));
    EMIT(8, "work_item_done wi_001",
         taskspan_emit_work_item_done(&s, ts, t, "wi_001",
                                      "Implement the parser", files_wi_001, 2,
                                      "parser done"));
    EMIT(9, "work_item_dispatched wi_002",
         taskspan_emit_work_item_dispatched(&s, ts, t, "wi_002",
                                            "Write parser tests", 2,
                                            "dispatched to a worker"));
    /* work_wi_002: seq 10-12, fails */
    EMIT(10, "work_item_start wi_002",
         taskspan_emit_work_item_start(&s, ts, t, "wi_002", "test",
                                       "worker picked it up"));
    EMIT(11, "lease_acquired wi_002",
         taskspan_emit_lease_acquired(&s, ts, t, "wi_002", "worker-2", 300,
                                      "lease for 5 minutes"));
    EMIT(12, "work_item_failed wi_002",
         taskspan_emit_work_item_failed(
             &s, ts, t, "wi_002", "Write parser tests",
             "compile error in test_parser.c", "the tests do not compile"));
    /* main: seq 13-18 */
    EMIT(13, "phase_exit executing",
         taskspan_emit_phase_exit(&s, ts, t, "executing",
                                  "work items finished"));
    EMIT(14, "phase_enter verifying",
         taskspan_emit_phase_enter(&s, ts, t, "verifying",
                                   "running the DONE gates"));
    EMIT(15, "gate_start doctor",
         taskspan_emit_gate_start(&s, ts, t, "doctor", 600,
                                  "doctor gate started"));
    EMIT(16, "gate_result doctor",
         taskspan_emit_gate_result(&s, ts, t, "doctor", "passed", 1, 0, 12.5,
                                   "doctor gate passed"));
    EMIT(17, "phase_exit verifying",
         taskspan_emit_phase_exit(&s, ts, t, "verifying",
                                  "verification finished"));
    EMIT(18, "runner_exit",
         taskspan_emit_runner_exit(&s, ts, t, pid, "done", 2,
                                   "runner finished"));
    /* recovery_sweep: seq 19-20 */
    EMIT(19, "recovery_detected",
         taskspan_emit_recovery_detected(&s, ts, t, 1, expired, 1,
                                         "one lease expired"));
    EMIT(20, "recovery_requeued",
         taskspan_emit_recovery_requeued(&s, ts, t, "wi_003", "worker-3", 1, 3,
                                         "requeued after lease expiry"));
    printf("events: %" PRId64 " (seq 1-%" PRId64 ")\n", s, s);
    fflush(stdout);

    rc = taskspan_flush(ts, (int)timeout_ms);
    printf("flush: %s\n", taskspan_strerror(rc));
    if (rc != TASKSPAN_OK) {
        char msg[TASKSPAN_ERRBUF_SIZE];
        taskspan_errmsg_copy(ts, msg, sizeof msg);
        printf("flush message: %s\n", msg);
    }
    taskspan_export_stats st;
    taskspan_code src = taskspan_get_export_stats(&st, ts);
    if (src == TASKSPAN_OK) {
        printf("stats: enabled=%d delivered=%llu rejected=%llu "
               "requests_ok=%llu requests_failed=%llu partial_rejected=%llu "
               "pending=%llu delivered_total=%llu rejected_total=%llu\n",
               st.enabled, (unsigned long long)st.spans_delivered,
               (unsigned long long)st.spans_rejected,
               (unsigned long long)st.requests_ok,
               (unsigned long long)st.requests_failed,
               (unsigned long long)st.partial_rejected,
               (unsigned long long)st.spans_pending,
               (unsigned long long)st.spans_delivered_total,
               (unsigned long long)st.spans_rejected_total);
        printf("endpoint: %s\n", st.endpoint);
        printf("last_error: %s\n", st.last_error);
        if (st.config_warnings[0] != '\0') {
            printf("config_warnings: %s\n", st.config_warnings);
        }
    } else {
        printf("stats: failed: %s\n", taskspan_strerror(src));
        failures++;
    }
    fflush(stdout);
    taskspan_close(ts);
    if (failures > 0) {
        return 1;
    }
    return rc == TASKSPAN_OK ? 0 : rc == TASKSPAN_E_TIMEOUT ? 3 : 1;
}
