/*
 * test_recovery.c -- work items, leases, checkpoints, the recovery sweep
 * and resume, through the public API on real buffer files; the crash cases
 * kill a real child process with SIGKILL while it holds a lease or is in
 * the middle of state changes, and check what the parent finds.
 */
#include <taskspan/taskspan.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/test_util.h"

static int setup(void **state)
{
    return fx_open(state, "recovery");
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The task's event types in seq order, one per line. */
static char *event_types(const char *db, const char *task)
{
    sqlite3 *h = sql_open(db);
    sqlite3_stmt *st = sql_prep(h,
                                "SELECT event_type FROM task_events"
                                " WHERE task_id = ?1 ORDER BY seq",
                                task, 0, NULL);
    size_t cap = 4096, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        while (len + strlen(t) + 2 >= cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        len += (size_t)snprintf(out + len, cap - len, "%s\n", t);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
}

static int64_t count(const char *db, const char *sql, const char *t1,
                     int64_t i2, const char *t3)
{
    sqlite3 *h = sql_open(db);
    int64_t n = sql_int(h, sql, t1, i2, t3);
    sqlite3_close(h);
    return n;
}

static int64_t n_events(const char *db, const char *task)
{
    return count(db, "SELECT count(*) FROM task_events WHERE task_id = ?1",
                 task, 0, NULL);
}

static void test_lease_lifecycle(void **state)
{
    fx *f = *state;
    taskspan_work_item it;
    taskspan_lease_outcome o;
    int added = -1;

    assert_int_equal(taskspan_work_item_add(&added, &it, f->ts, "T", "wi_1",
                                            "first", 1, NULL),
                     TASKSPAN_OK);
    assert_int_equal(added, 1);
    assert_int_equal(it.state, TASKSPAN_ITEM_QUEUED);
    /* Adding again changes and records nothing. */
    assert_int_equal(taskspan_work_item_add(&added, NULL, f->ts, "T", "wi_1",
                                            "again", 1, NULL),
                     TASKSPAN_OK);
    assert_int_equal(added, 0);
    assert_int_equal(n_events(f->db, "T"), 1);

    assert_int_equal(
        taskspan_lease_acquire(&o, &it, f->ts, "T", "wi_1", "w1", 60000, NULL),
        TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
    assert_int_equal(it.state, TASKSPAN_ITEM_LEASED);
    assert_int_equal(it.attempts, 1);
    assert_string_equal(it.holder, "w1");
    assert_int_equal(it.holder_pid, (int64_t)getpid());
    assert_true(it.lease_expires_ns > it.updated_ns);

    /* Another holder: HELD, nothing recorded; its renew: LOST, recorded. */
    assert_int_equal(
        taskspan_lease_acquire(&o, &it, f->ts, "T", "wi_1", "w2", 60000, NULL),
        TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_HELD);
    assert_string_equal(it.holder, "w1");
    assert_int_equal(
        taskspan_lease_renew(&o, NULL, f->ts, "T", "wi_1", "w2", 60000, NULL),
        TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_LOST);

    assert_int_equal(taskspan_lease_renew(&o, &it, f->ts, "T", "wi_1", "w1",
                                          90000, "heartbeat"),
                     TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
    assert_int_equal(it.attempts, 1);
    const char *files[] = {"a.c"};
    assert_int_equal(taskspan_work_item_finish(&o, &it, f->ts, "T", "wi_1",
                                               "w1", "first", files, 1, NULL),
                     TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
    assert_int_equal(it.state, TASKSPAN_ITEM_DONE);
    assert_string_equal(it.holder, "");
    /* Finished: every lease call says so and records nothing. */
    assert_int_equal(
        taskspan_lease_acquire(&o, NULL, f->ts, "T", "wi_1", "w1", 1000, NULL),
        TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_FINISHED);
    assert_int_equal(taskspan_work_item_get(&it, f->ts, "T", "wi_1"),
                     TASKSPAN_OK);
    assert_int_equal(it.state, TASKSPAN_ITEM_DONE);

    char *types = event_types(f->db, "T");
    assert_string_equal(types, "work_item_dispatched\nlease_acquired\n"
                               "lease_lost\nlease_renewed\nwork_item_done\n");
    free(types);
    /* The work span closed OK; the lease_lost names the wrong holder. */
    assert_int_equal(count(f->db,
                           "SELECT count(*) FROM task_events WHERE "
                           "event_type = 'lease_lost' AND span_id = "
                           "'work_wi_1' AND json_extract(payload, "
                           "'$.lease_holder') = ?1",
                           "w2", 0, NULL),
                     1);
}

static void test_release_fail_and_errors(void **state)
{
    fx *f = *state;
    taskspan_work_item it;
    taskspan_lease_outcome o;
    taskspan_stats st;

    assert_int_equal(
        taskspan_work_item_add(NULL, NULL, f->ts, "T", "x", NULL, 0, NULL),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan_lease_acquire(&o, NULL, f->ts, "T", "x", "w", 5000, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_lease_release(&o, &it, f->ts, "T", "x", "w",
                                            "shutting down", NULL),
                     TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
    assert_int_equal(it.state, TASKSPAN_ITEM_QUEUED);
    /* Not the holder any more: finish and fail are LOST. */
    assert_int_equal(taskspan_work_item_finish(&o, NULL, f->ts, "T", "x", "w",
                                               NULL, NULL, 0, NULL),
                     TASKSPAN_OK);
    assert_int_equal(o, TASKSPAN_LEASE_LOST);
    assert_int_equal(
        taskspan_lease_acquire(&o, &it, f->ts, "T", "x", "w", 5000, NULL),
        TASKSPAN_OK);
    assert_int_equal(it.attempts, 2);
    assert_int_equal(taskspan_work_item_fail(&o, &it, f->ts, "T", "x", "w",
                                             NULL, "boom", NULL),
                     TASKSPAN_OK);
    assert_int_equal(it.state, TASKSPAN_ITEM_FAILED);

    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "T"), TASKSPAN_OK);
    const taskspan_span *last = NULL;
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        last = taskspan_spans_get(sp, i);
    }
    assert_string_equal(last->name, "work_x");
    assert_int_equal(last->status, TASKSPAN_STATUS_ERROR);
    assert_string_equal(last->status_message, "boom");
    taskspan_spans_free(sp);

    /* Errors: nothing recorded, counted as failures, message set. */
    int64_t before = n_events(f->db, "T");
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    uint64_t failed = st.events_failed;
    assert_int_equal(
        taskspan_lease_acquire(&o, NULL, f->ts, "T", "x", "w", 0, NULL),
        TASKSPAN_E_INVALID_ARG);
    assert_non_null(strstr(taskspan_errmsg(f->ts), "ttl_ms"));
    assert_int_equal(
        taskspan_lease_acquire(&o, NULL, f->ts, "T", "nope", "w", 10, NULL),
        TASKSPAN_E_NOT_FOUND);
    assert_int_equal(
        taskspan_lease_acquire(NULL, NULL, f->ts, "T", "x", "w", 10, NULL),
        TASKSPAN_E_INVALID_ARG);
    assert_int_equal(
        taskspan_work_item_add(NULL, NULL, f->ts, "", "x", NULL, 0, NULL),
        TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_work_item_get(&it, f->ts, "T", "nope"),
                     TASKSPAN_E_NOT_FOUND);
    assert_int_equal(taskspan_get_stats(&st, f->ts), TASKSPAN_OK);
    assert_true(st.events_failed >= failed + 4);
    assert_int_equal(n_events(f->db, "T"), before);
    assert_int_equal(
        taskspan_lease_acquire(&o, NULL, NULL, "T", "x", "w", 10, NULL),
        TASKSPAN_E_INVALID_ARG);
}

static void test_checkpoints(void **state)
{
    fx *f = *state;
    int64_t n = 0;
    taskspan_checkpoint *cp = NULL;
    const char *ev[] = {"out/a.txt", "sha256:00ff"};

    /* No checkpoint yet: resume says "from scratch" and records nothing. */
    assert_int_equal(taskspan_recovery_resume(&cp, f->ts, "C", NULL),
                     TASKSPAN_OK);
    assert_null(cp);
    assert_int_equal(
        taskspan_work_item_add(NULL, NULL, f->ts, "C", "wi", NULL, 0, NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_checkpoint_commit(&n, f->ts, "C", 0, NULL,
                                                "work_item", "wi", ev, 2,
                                                NULL),
                     TASKSPAN_OK);
    assert_int_equal(n, 1);
    assert_int_equal(taskspan_checkpoint_commit(&n, f->ts, "C", 0, "mine",
                                                NULL, NULL, NULL, 0, NULL),
                     TASKSPAN_OK);
    assert_int_equal(n, 2);
    assert_int_equal(taskspan_checkpoint_commit(&n, f->ts, "C", 7, NULL, NULL,
                                                NULL, NULL, 0, NULL),
                     TASKSPAN_OK);
    assert_int_equal(n, 7);
    int64_t before = n_events(f->db, "C");
    assert_int_equal(taskspan_checkpoint_commit(&n, f->ts, "C", 7, NULL, NULL,
                                                NULL, NULL, 0, NULL),
                     TASKSPAN_E_INVALID_ARG);
    assert_int_equal(taskspan_checkpoint_commit(&n, f->ts, "C", 0, NULL, NULL,
                                                "missing", NULL, 0, NULL),
                     TASKSPAN_E_NOT_FOUND);
    assert_int_equal(n_events(f->db, "C"), before);

    /* Nothing verified yet. */
    assert_int_equal(taskspan_checkpoint_last_verified(&cp, f->ts, "C"),
                     TASKSPAN_OK);
    assert_null(cp);
    assert_int_equal(taskspan_checkpoint_verify(f->ts, "C", 1, 1, NULL, NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_checkpoint_verify(f->ts, "C", 7, 0, "bad digest", NULL),
        TASKSPAN_OK);
    assert_int_equal(taskspan_checkpoint_verify(f->ts, "C", 3, 1, NULL, NULL),
                     TASKSPAN_E_NOT_FOUND);

    assert_int_equal(taskspan_recovery_resume(&cp, f->ts, "C", "restart"),
                     TASKSPAN_OK);
    assert_non_null(cp);
    assert_int_equal(cp->sequence_number, 1);
    assert_string_equal(cp->checkpoint_id, "ckpt-1");
    assert_string_equal(cp->checkpoint_type, "work_item");
    assert_string_equal(cp->work_item_id, "wi");
    assert_int_equal(cp->state, TASKSPAN_CHECKPOINT_VERIFIED);
    assert_int_equal(cp->n_evidence, 2);
    assert_string_equal(cp->evidence[1], "sha256:00ff");
    assert_true(cp->event_seq > 0);
    taskspan_checkpoint_free(cp);

    taskspan_work_item it;
    assert_int_equal(taskspan_work_item_get(&it, f->ts, "C", "wi"),
                     TASKSPAN_OK);
    assert_int_equal(it.last_checkpoint, 1);
    char *types = event_types(f->db, "C");
    assert_string_equal(types, "work_item_dispatched\ncheckpoint_commit\n"
                               "checkpoint_commit\ncheckpoint_commit\n"
                               "checkpoint_verified\ncheckpoint_invalid\n"
                               "recovery_resumed_from_checkpoint\n");
    free(types);
    /* The commit event's seq is the one the checkpoint row names. */
    assert_int_equal(count(f->db,
                           "SELECT count(*) FROM checkpoints c JOIN "
                           "task_events e ON e.task_id = c.task_id AND "
                           "e.seq = c.event_seq WHERE c.task_id = ?1 AND "
                           "e.event_type = 'checkpoint_commit' AND "
                           "json_extract(e.payload, '$.sequence_number') = "
                           "c.sequence_number",
                           "C", 0, NULL),
                     3);
}

/* Expiry by time, retry counts, giving up after max_retries, and a sweep
 * that finds nothing. */
static void test_sweep_by_time(void **state)
{
    fx *f = *state;
    taskspan_lease_outcome o;
    taskspan_recovery_report *rep = NULL;

    assert_int_equal(taskspan_recovery_sweep(&rep, f->ts, "S", 1, 0, NULL),
                     TASKSPAN_OK);
    assert_int_equal(rep->n_items, 0);
    assert_int_equal(rep->detected_seq, 0);
    taskspan_recovery_report_free(rep);
    assert_int_equal(
        count(f->db, "SELECT count(*) FROM task_events", NULL, 0, NULL), 0);

    assert_int_equal(
        taskspan_work_item_add(NULL, NULL, f->ts, "S", "a", NULL, 0, NULL),
        TASKSPAN_OK);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(
            taskspan_lease_acquire(&o, NULL, f->ts, "S", "a", "w", 1, NULL),
            TASKSPAN_OK);
        assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
        /* A lease of this (live) process expires only by time; a bounded
         * wait until it has. */
        for (int i = 0; i < 200; i++) {
            sleep_ms(2);
            assert_int_equal(
                taskspan_recovery_sweep(&rep, f->ts, "S", 1, 0, "sweep"),
                TASKSPAN_OK);
            if (rep->n_items > 0) {
                break;
            }
            taskspan_recovery_report_free(rep);
            rep = NULL;
        }
        assert_non_null(rep);
        assert_int_equal(rep->n_items, 1);
        assert_string_equal(rep->items[0].previous_holder, "w");
        assert_int_equal(rep->items[0].previous_pid, (int64_t)getpid());
        assert_int_equal(rep->items[0].retry_count, 1);
        assert_int_equal(rep->items[0].requeued, round == 0);
        assert_true(rep->detected_seq > 0);
        taskspan_recovery_report_free(rep);
        rep = NULL;
    }
    taskspan_work_item it;
    assert_int_equal(taskspan_work_item_get(&it, f->ts, "S", "a"),
                     TASKSPAN_OK);
    assert_int_equal(it.state, TASKSPAN_ITEM_FAILED);
    assert_int_equal(it.retry_count, 1);
    assert_int_equal(it.attempts, 2);

    assert_int_equal(taskspan_recovery_sweep(&rep, f->ts, "S", 1,
                                             TASKSPAN_SWEEP_RECORD_EMPTY,
                                             NULL),
                     TASKSPAN_OK);
    assert_int_equal(rep->n_items, 0);
    assert_true(rep->detected_seq > 0);
    taskspan_recovery_report_free(rep);

    char *types = event_types(f->db, "S");
    assert_string_equal(types, "work_item_dispatched\nlease_acquired\n"
                               "recovery_detected\nrecovery_requeued\n"
                               "lease_acquired\nrecovery_detected\n"
                               "work_item_failed\nrecovery_detected\n");
    free(types);
    /* Every sweep span closed: requeued its count, or had nothing. */
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "S"), TASKSPAN_OK);
    size_t sweeps = 0;
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        if (strcmp(s->name, "recovery_sweep") == 0) {
            sweeps++;
            assert_false(s->is_open);
            assert_int_equal(s->status, TASKSPAN_STATUS_UNSET);
        }
    }
    assert_int_equal(sweeps, 3);
    taskspan_spans_free(sp);
    assert_int_equal(count(f->db,
                           "SELECT count(*) FROM task_events WHERE "
                           "event_type = 'recovery_detected' AND "
                           "json_extract(payload, '$.abandoned_count') = 1",
                           NULL, 0, NULL),
                     1);
}

/* The child's side of the kill tests: a runner on its own recorder. */
static taskspan *child_open(const char *db)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;
    o.db_path = db;
    o.traceparent = "";
    o.export_mode = TASKSPAN_EXPORT_OFF;
    if (taskspan_open(&ts, &o, NULL) != TASKSPAN_OK) {
        _exit(3);
    }
    return ts;
}

/* A child takes a 60 s lease, commits and verifies a checkpoint, says so
 * on a pipe and waits; the parent kills it with SIGKILL. The parent's
 * sweep requeues the item at once (the holder's process is gone), the
 * resume finds the checkpoint, and the parent finishes the item. */
static void test_sigkill_holder_then_recover(void **state)
{
    fx *f = *state;
    int pfd[2];
    char c = 0;
    taskspan_lease_outcome o;

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        taskspan *ts = child_open(f->db);
        int64_t n = 0;
        const char *ev[] = {"step1.out"};
        if (taskspan_emit_runner_spawn(NULL, ts, "K", getpid(), NULL, NULL) ||
            taskspan_work_item_add(NULL, NULL, ts, "K", "wi_1", NULL, 1,
                                   NULL) ||
            taskspan_work_item_add(NULL, NULL, ts, "K", "wi_2", NULL, 2,
                                   NULL) ||
            taskspan_lease_acquire(&o, NULL, ts, "K", "wi_1", "child", 60000,
                                   NULL) ||
            taskspan_checkpoint_commit(&n, ts, "K", 0, NULL, "step", "wi_1",
                                       ev, 1, NULL) ||
            taskspan_checkpoint_verify(ts, "K", n, 1, NULL, NULL)) {
            _exit(4);
        }
        if (write(pfd[1], "r", 1) != 1) {
            _exit(5);
        }
        for (;;) {
            pause(); /* killed here, lease held, no runner_exit */
        }
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* The parent is the next runner. */
    assert_int_equal(taskspan_emit_runner_spawn(NULL, f->ts, "K", getpid(),
                                                NULL, "restart"),
                     TASKSPAN_OK);
    taskspan_recovery_report *rep = NULL;
    assert_int_equal(
        taskspan_recovery_sweep(&rep, f->ts, "K", 3, 0, "after kill -9"),
        TASKSPAN_OK);
    assert_int_equal(rep->n_items, 1);
    assert_int_equal(rep->n_requeued, 1);
    assert_string_equal(rep->items[0].work_item_id, "wi_1");
    assert_string_equal(rep->items[0].previous_holder, "child");
    assert_int_equal(rep->items[0].previous_pid, (int64_t)pid);
    assert_int_equal(rep->items[0].retry_count, 1);
    taskspan_recovery_report_free(rep);

    taskspan_checkpoint *cp = NULL;
    assert_int_equal(taskspan_recovery_resume(&cp, f->ts, "K", NULL),
                     TASKSPAN_OK);
    assert_non_null(cp);
    assert_int_equal(cp->sequence_number, 1);
    assert_string_equal(cp->evidence[0], "step1.out");
    taskspan_checkpoint_free(cp);

    for (int i = 1; i <= 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "wi_%d", i);
        assert_int_equal(taskspan_lease_acquire(&o, NULL, f->ts, "K", id,
                                                "parent", 60000, NULL),
                         TASKSPAN_OK);
        assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
        assert_int_equal(taskspan_work_item_finish(&o, NULL, f->ts, "K", id,
                                                   "parent", NULL, NULL, 0,
                                                   NULL),
                         TASKSPAN_OK);
        assert_int_equal(o, TASKSPAN_LEASE_GRANTED);
    }
    assert_int_equal(
        taskspan_emit_runner_exit(NULL, f->ts, "K", getpid(), "done", 1, NULL),
        TASKSPAN_OK);

    /* The trace: main#1 and the child's work span crashed, main#2 links
     * to main#1, the sweep closed, everything closed. */
    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "K"), TASKSPAN_OK);
    int crashed = 0, linked = 0;
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        assert_false(s->is_open);
        if (attr_find(s->attrs, s->n_attrs, "taskspan.crashed") != NULL) {
            assert_int_equal(s->incarnation, 1);
            assert_int_equal(s->status, TASKSPAN_STATUS_ERROR);
            crashed++;
        }
        if (strcmp(s->name, "main") == 0 && s->incarnation == 2) {
            assert_int_equal(s->n_links, 1);
            linked++;
        }
    }
    assert_int_equal(crashed, 2); /* main#1, work_wi_1#1 */
    assert_int_equal(linked, 1);
    taskspan_spans_free(sp);
    taskspan_work_item it;
    assert_int_equal(taskspan_work_item_get(&it, f->ts, "K", "wi_1"),
                     TASKSPAN_OK);
    assert_int_equal(it.state, TASKSPAN_ITEM_DONE);
    assert_int_equal(it.attempts, 2);
    assert_int_equal(it.retry_count, 1);
}

/* A supervisor (not a runner: no runner_spawn) sweeps after the runner
 * was killed. The sweep closes the dead incarnation after its last event,
 * so the killed main span ends where the runner died, not at the sweep,
 * and the sweep's own span is a separate, normally closed span. */
static void test_supervisor_sweep_closes_dead_runner(void **state)
{
    fx *f = *state;
    int pfd[2];
    char c = 0;
    taskspan_lease_outcome o;

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        taskspan *ts = child_open(f->db);
        if (taskspan_emit_runner_spawn(NULL, ts, "V", getpid(), NULL, NULL) ||
            taskspan_work_item_add(NULL, NULL, ts, "V", "w", NULL, 1, NULL) ||
            taskspan_emit_work_item_start(NULL, ts, "V", "w", NULL, NULL) ||
            taskspan_lease_acquire(&o, NULL, ts, "V", "w", "child", 60000,
                                   NULL) ||
            write(pfd[1], "r", 1) != 1) {
            _exit(4);
        }
        for (;;) {
            pause();
        }
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    sleep_ms(5); /* so the sweep's time differs from the last event's */

    taskspan_recovery_report *rep = NULL;
    assert_int_equal(
        taskspan_recovery_sweep(&rep, f->ts, "V", -1, 0, "supervisor"),
        TASKSPAN_OK);
    assert_int_equal(rep->n_requeued, 1);
    taskspan_recovery_report_free(rep);

    sqlite3 *h = sql_open(f->db);
    int64_t last = sql_int(h,
                           "SELECT ts_ns FROM task_events WHERE task_id = ?1"
                           " AND event_type = 'lease_acquired'",
                           "V", 0, NULL);
    int64_t upto = sql_int(h,
                           "SELECT upto_seq FROM crashed_incarnations"
                           " WHERE task_id = ?1 AND incarnation = 1",
                           "V", 0, NULL);
    assert_int_equal(upto, 4); /* spawn, dispatched, start, acquired */
    sqlite3_close(h);

    taskspan_spans *sp = NULL;
    assert_int_equal(taskspan_task_spans(&sp, f->ts, "V"), TASKSPAN_OK);
    int mains = 0, sweeps = 0;
    for (size_t i = 0; i < taskspan_spans_count(sp); i++) {
        const taskspan_span *s = taskspan_spans_get(sp, i);
        assert_false(s->is_open);
        assert_int_equal(s->incarnation, 1);
        if (strcmp(s->name, "main") == 0) {
            mains++;
            assert_int_equal(s->end_ns, last);
            assert_int_equal(s->status, TASKSPAN_STATUS_ERROR);
            assert_non_null(
                attr_find(s->attrs, s->n_attrs, "taskspan.crashed"));
        } else if (strcmp(s->name, "recovery_sweep") == 0) {
            sweeps++;
            assert_true(s->start_ns > last);
            assert_int_equal(s->status, TASKSPAN_STATUS_UNSET);
            assert_null(attr_find(s->attrs, s->n_attrs, "taskspan.crashed"));
        }
    }
    assert_int_equal(mains, 1);
    assert_int_equal(sweeps, 1);
    taskspan_spans_free(sp);
}

/* Killed at a random moment of a stream of state changes, the buffer
 * still has every state change with its event and no event without its
 * state: the counts in the tables and in task_events agree. */
static void test_sigkill_mid_stream_is_atomic(void **state)
{
    fx *f = *state;
    int pfd[2];
    char c = 0;
    const char *wrap = getenv("TASKSPAN_WRAP");
    int rounds = wrap != NULL && wrap[0] != '\0' ? 2 : 5;

    for (int round = 0; round < rounds; round++) {
        char task[16];
        snprintf(task, sizeof task, "A%d", round);
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            taskspan *ts = child_open(f->db);
            taskspan_lease_outcome o;
            for (int i = 0; i < 100000; i++) {
                char id[16];
                int64_t n = 0;
                snprintf(id, sizeof id, "i%d", i);
                taskspan_work_item_add(NULL, NULL, ts, task, id, NULL, i,
                                       NULL);
                taskspan_lease_acquire(&o, NULL, ts, task, id, "c", 60000,
                                       NULL);
                taskspan_checkpoint_commit(&n, ts, task, 0, NULL, NULL, id,
                                           NULL, 0, NULL);
                taskspan_checkpoint_verify(ts, task, n, 1, NULL, NULL);
                taskspan_work_item_finish(&o, NULL, ts, task, id, "c", NULL,
                                          NULL, 0, NULL);
                if (i == 3 && write(pfd[1], "r", 1) != 1) {
                    _exit(5);
                }
            }
            _exit(0);
        }
        close(pfd[1]);
        assert_int_equal(read(pfd[0], &c, 1), 1);
        close(pfd[0]);
        sleep_ms(1 + (rand() % 20));
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, NULL, 0), pid);

        sqlite3 *h = sql_open(f->db);
#define Q(sql) sql_int(h, sql, task, 0, NULL)
        int64_t items = Q("SELECT count(*) FROM work_items"
                          " WHERE task_id = ?1");
        assert_true(items >= 4);
        assert_int_equal(items, Q("SELECT count(*) FROM task_events WHERE "
                                  "task_id = ?1 AND event_type = "
                                  "'work_item_dispatched'"));
        assert_int_equal(Q("SELECT coalesce(sum(attempts), 0) FROM "
                           "work_items WHERE task_id = ?1"),
                         Q("SELECT count(*) FROM task_events WHERE task_id "
                           "= ?1 AND event_type = 'lease_acquired'"));
        assert_int_equal(Q("SELECT count(*) FROM work_items WHERE task_id = "
                           "?1 AND state = 3"),
                         Q("SELECT count(*) FROM task_events WHERE task_id "
                           "= ?1 AND event_type = 'work_item_done'"));
        assert_int_equal(Q("SELECT count(*) FROM checkpoints WHERE task_id "
                           "= ?1"),
                         Q("SELECT count(*) FROM task_events WHERE task_id "
                           "= ?1 AND event_type = 'checkpoint_commit'"));
        assert_int_equal(Q("SELECT count(*) FROM checkpoints WHERE task_id "
                           "= ?1 AND verified = 1"),
                         Q("SELECT count(*) FROM task_events WHERE task_id "
                           "= ?1 AND event_type = 'checkpoint_verified'"));
        assert_int_equal(Q("SELECT count(*) FROM work_items WHERE task_id = "
                           "?1 AND last_checkpoint > 0"),
                         Q("SELECT count(*) FROM checkpoints WHERE task_id "
                           "= ?1"));
#undef Q
        sqlite3_close(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lease_lifecycle, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_fail_and_errors, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_by_time, setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_holder_then_recover,
                                        setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_supervisor_sweep_closes_dead_runner, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_mid_stream_is_atomic,
                                        setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
