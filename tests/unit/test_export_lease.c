/*
 * test_export_lease.c -- the export leases of buffer schema 8
 * (store_export.c) on a real buffer, through two connections as two
 * exporters would hold them: a task leased by one is refused to the other
 * until the lease runs out or ends; a lease is refused when the task's
 * export_done moved since it was read (another exporter settled its
 * spans); a retry time keeps every exporter from leasing it; and a task
 * that gc pruned after an exporter read it can be neither leased, settled
 * nor marked with the counts of its old events (the epoch), which would
 * otherwise hide the first spans of its later events for good.
 */
#include "export_reader.h"
#include "store_sqlite.h"

#include <taskspan/taskspan.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/test_util.h"

#define TASK "lease-task"
#define SEC 1000000000LL

typedef struct fixture {
    char *dir;
    char *db;
    void *a, *b; /* two exporters' connections */
    taskspan__limits limits;
} fixture;

/* A finished task: runner_spawn, two work items done, runner_exit; long
 * ago, so gc with any retention may prune it. */
static void record(const char *db)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, TASK, 1, "1", NULL),
                     TASKSPAN_OK);
    for (int i = 0; i < 2; i++) {
        char wi[16];
        snprintf(wi, sizeof wi, "wi_%d", i);
        assert_int_equal(
            taskspan_emit_work_item_start(NULL, ts, TASK, wi, "x", NULL),
            TASKSPAN_OK);
        assert_int_equal(taskspan_emit_work_item_done(NULL, ts, TASK, wi, NULL,
                                                      NULL, 0, NULL),
                         TASKSPAN_OK);
    }
    assert_int_equal(
        taskspan_emit_runner_exit(NULL, ts, TASK, 0, "done", 1, NULL),
        TASKSPAN_OK);
    taskspan_close(ts);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_config cfg = {.sync_mode = TASKSPAN_SYNC_NORMAL};
    assert_non_null(f);
    f->dir = new_tmpdir("lease");
    f->db = path_join(f->dir, "buffer.db");
    record(f->db);
    assert_int_equal(
        taskspan__store_sqlite.open(&f->a, f->db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan__store_sqlite.open(&f->b, f->db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    f->limits = (taskspan__limits){128, 32768, 128, 128, 128, SIZE_MAX};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    taskspan__store_sqlite.close(f->a);
    taskspan__store_sqlite.close(f->b);
    rm_rf(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

static void read_task(fixture *f, void *conn, taskspan__task_news *news)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    assert_int_equal(taskspan__task_news_read(news, &taskspan__store_sqlite,
                                              conn, TASK, &f->limits, err,
                                              sizeof err),
                     TASKSPAN_OK);
}

/* Lease TASK through conn for owner at now, as read in news. */
static bool lease(void *conn, const char *owner, int64_t now,
                  const taskspan__task_news *news)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__task_lease l = {.task_id = TASK,
                              .epoch = news->epoch,
                              .done = news->done_read,
                              .closed = news->closed};
    assert_int_equal(taskspan__store_sqlite.tasks_lease(conn, owner, now,
                                                        now + 10 * SEC, &l, 1,
                                                        err, sizeof err),
                     TASKSPAN_OK);
    return l.ok;
}

static void settle_all(void *conn, const taskspan__task_news *news)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__task_done d = {
        .task_id = TASK, .epoch = news->epoch, .done = news->closed};
    assert_int_equal(
        taskspan__store_sqlite.tasks_settle(conn, &d, 1, (uint64_t)news->n,
                                            NULL, 0, NULL, err, sizeof err),
        TASKSPAN_OK);
}

static void mark(void *conn, const char *owner,
                 const taskspan__task_news *news)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    uint64_t given_up = 0;
    taskspan__examined m = {.task_id = TASK,
                            .upto_seq = news->upto_seq,
                            .open = news->open,
                            .closed = news->closed,
                            .done = news->done_rows,
                            .epoch = news->epoch};
    assert_int_equal(taskspan__store_sqlite.tasks_examined(
                         conn, owner, &m, 1, &given_up, err, sizeof err),
                     TASKSPAN_OK);
    assert_int_equal(given_up, 0);
}

/* The task's export columns as one text: done/closed/epoch/owner. */
static char *progress(fixture *f)
{
    sqlite3 *db = sql_open(f->db);
    sqlite3_stmt *st = sql_prep(db,
                                "SELECT export_done || '/' || export_closed"
                                " || '/' || export_epoch || '/' ||"
                                " coalesce(export_owner, '-')"
                                " FROM tasks WHERE task_id = ?1",
                                TASK, 0, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void assert_progress(fixture *f, const char *want)
{
    char *got = progress(f);
    assert_string_equal(got, want);
    free(got);
}

/* One exporter at a time; the other after the lease ends or runs out. */
static void test_one_owner_at_a_time(void **state)
{
    fixture *f = *state;
    taskspan__task_news na, nb;
    int64_t now = taskspan__now_ns();

    read_task(f, f->a, &na);
    read_task(f, f->b, &nb);
    assert_int_equal(na.closed, 3); /* main, wi_0, wi_1 */
    assert_int_equal(na.n, 3);
    assert_true(lease(f->a, "A", now, &na));
    assert_progress(f, "0/3/0/A");
    assert_false(lease(f->b, "B", now, &nb));
    assert_true(lease(f->a, "A", now, &na)); /* A renews its own */
    /* Past A's lease (10 s), B may take the task over. */
    assert_true(lease(f->b, "B", now + 11 * SEC, &nb));
    assert_progress(f, "0/3/0/B");
    taskspan__task_news_free(&na);
    taskspan__task_news_free(&nb);
}

/* Settled since it was read: the lease is refused, so nothing settled is
 * sent again; read again, there is nothing to send. */
static void test_settled_since_read(void **state)
{
    fixture *f = *state;
    taskspan__task_news na, nb;
    int64_t now = taskspan__now_ns();

    read_task(f, f->a, &na);
    read_task(f, f->b, &nb);
    assert_true(lease(f->a, "A", now, &na));
    settle_all(f->a, &na);
    mark(f->a, "A", &na); /* ends A's lease */
    assert_progress(f, "3/3/0/-");
    assert_false(lease(f->b, "B", now, &nb));
    taskspan__task_news_free(&nb);
    read_task(f, f->b, &nb);
    assert_int_equal(nb.n, 0);
    assert_int_equal(nb.done_read, 3);
    taskspan__task_news_free(&na);
    taskspan__task_news_free(&nb);
}

/* A retry time (no owner): no exporter leases the task until it passes. */
static void test_retry_time(void **state)
{
    fixture *f = *state;
    taskspan__task_news na;
    char err[TASKSPAN__MSG_SIZE] = "";
    int64_t now = taskspan__now_ns();
    char *tasks[] = {TASK};

    read_task(f, f->a, &na);
    assert_true(lease(f->a, "A", now, &na));
    assert_int_equal(taskspan__store_sqlite.tasks_retry(
                         f->a, "A", tasks, 1, now + 5 * SEC, err, sizeof err),
                     TASKSPAN_OK);
    assert_false(lease(f->a, "A", now, &na));
    assert_false(lease(f->b, "B", now + 4 * SEC, &na));
    assert_true(lease(f->b, "B", now + 6 * SEC, &na));
    taskspan__task_news_free(&na);
}

/* A reads the task; B delivers it and gc prunes it; then A's lease, its
 * settle and its marks must all leave the task alone: its progress
 * counts nothing of the events gc deleted. Its next events' spans start
 * at 0 and are sent. */
static void test_pruned_since_read(void **state)
{
    fixture *f = *state;
    taskspan__task_news na, nb;
    int64_t now = taskspan__now_ns();

    read_task(f, f->a, &na);
    read_task(f, f->b, &nb);
    assert_true(lease(f->b, "B", now, &nb));
    settle_all(f->b, &nb);
    mark(f->b, "B", &nb);
    assert_progress(f, "3/3/0/-");

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    taskspan *ts = NULL;
    taskspan_gc_report r;
    o.db_path = f->db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, NULL), TASKSPAN_OK);
    assert_int_equal(taskspan_gc(&r, ts, 0), TASKSPAN_OK);
    assert_int_equal(r.tasks_pruned, 1);
    assert_int_equal(r.spans_deleted, 3);
    assert_progress(f, "0/0/1/-");

    /* A, with what it read before the prune: refused, and no effect. */
    assert_int_equal(na.done_read, 0);
    assert_false(lease(f->a, "A", now, &na));
    settle_all(f->a, &na);
    mark(f->a, "A", &na);
    assert_progress(f, "0/0/1/-");

    /* A later run of the task: its spans are the only ones, from 0. */
    assert_int_equal(taskspan_emit_runner_spawn(NULL, ts, TASK, 2, "1", NULL),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan_emit_runner_exit(NULL, ts, TASK, 0, "done", 2, NULL),
        TASKSPAN_OK);
    taskspan_close(ts);
    taskspan__task_news nc;
    read_task(f, f->a, &nc);
    assert_int_equal(nc.epoch, 1);
    assert_int_equal(nc.done_read, 0);
    assert_int_equal(nc.closed, 1); /* main of the new run */
    assert_int_equal(nc.n, 1);
    assert_true(lease(f->a, "A", now, &nc));
    taskspan__task_news_free(&na);
    taskspan__task_news_free(&nb);
    taskspan__task_news_free(&nc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_owner_at_a_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_settled_since_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruned_since_read, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
