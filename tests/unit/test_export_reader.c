/*
 * test_export_reader.c -- the exporter's read-ahead (export_reader.c) on a
 * real buffer: it hands out each task's new spans in the order of the
 * list, exactly what reading the task in the caller's thread gives (same
 * spans, same bytes); a task that is gone gives none; the spans settled
 * (export_done, rejected rows) are not news; stopping with tasks read but not taken frees them
 * (ASan and valgrind check that), and so does an abort.
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

#define N_TASKS 6
#define ITEMS 5 /* work spans per task; task i has i + 1 closed (at most 5) */

typedef struct fixture {
    char *dir;
    char *db;
    char *tasks[N_TASKS + 1]; /* the last one has no events */
    void *store;              /* read by the tests' own thread */
    void *reader_store;       /* the reader's */
    taskspan__limits limits;
} fixture;

static void record(const char *db, char *const *tasks)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;

    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    for (int t = 0; t < N_TASKS; t++) {
        assert_int_equal(
            taskspan_emit_runner_spawn(NULL, ts, tasks[t], 1, "1.0", NULL),
            TASKSPAN_OK);
        for (int i = 0; i < ITEMS; i++) {
            char wi[16];
            snprintf(wi, sizeof wi, "wi_%d", i);
            assert_int_equal(taskspan_emit_work_item_start(NULL, ts, tasks[t],
                                                           wi, "build", NULL),
                             TASKSPAN_OK);
            if (i <= t) {
                assert_int_equal(
                    taskspan_emit_work_item_done(NULL, ts, tasks[t], wi, NULL,
                                                 NULL, 0, NULL),
                    TASKSPAN_OK);
            }
        }
    }
    taskspan_close(ts);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_config cfg = {.sync_mode = TASKSPAN_SYNC_NORMAL};

    assert_non_null(f);
    f->dir = new_tmpdir("reader");
    f->db = path_join(f->dir, "buffer.db");
    for (int t = 0; t <= N_TASKS; t++) {
        f->tasks[t] = malloc(16);
        assert_non_null(f->tasks[t]);
        snprintf(f->tasks[t], 16, "task-%d", t);
    }
    record(f->db, f->tasks);
    assert_int_equal(
        taskspan__store_sqlite.open(&f->store, f->db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    assert_int_equal(taskspan__store_sqlite.open(&f->reader_store, f->db, &cfg,
                                                 err, sizeof err),
                     TASKSPAN_OK);
    f->limits = (taskspan__limits){
        .span_attrs = 128,
        .span_events = 32768,
        .span_links = 128,
        .event_attrs = 128,
        .link_attrs = 128,
        .value_len = SIZE_MAX,
    };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    taskspan__store_sqlite.close(f->reader_store);
    taskspan__store_sqlite.close(f->store);
    rm_rf(f->dir);
    for (int t = 0; t <= N_TASKS; t++) {
        free(f->tasks[t]);
    }
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

/* The same spans with the same bytes. */
static void assert_same_news(const taskspan__task_news *a,
                             const taskspan__task_news *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->bytes, b->bytes);
    for (size_t k = 0; k < a->n; k++) {
        assert_int_equal(a->index[k], b->index[k]);
        assert_int_equal(a->lens[k], b->lens[k]);
        assert_memory_equal(a->bodies[k], b->bodies[k], a->lens[k]);
    }
}

/* In list order, what the caller's thread reads; the closed work spans
 * only (main is open: no runner_exit); none for a task without events.
 * Read by the thread alone (own_store NULL), or by the thread and the
 * consumer, which reads the next tasks itself rather than wait. */
static void in_order_as_inline(fixture *f, void *own_store)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    atomic_bool abort_flag;
    taskspan__export_reader *r = NULL;

    atomic_init(&abort_flag, false);
    assert_int_equal(taskspan__export_reader_start(
                         &r, &taskspan__store_sqlite, f->reader_store,
                         f->tasks, N_TASKS + 1, &f->limits, &abort_flag),
                     TASKSPAN_OK);
    for (int t = 0; t <= N_TASKS; t++) {
        taskspan__task_news got, want;
        assert_int_equal(
            taskspan__export_reader_next(r, own_store, &got, err, sizeof err),
            TASKSPAN_OK);
        assert_int_equal(
            taskspan__task_news_read(&want, &taskspan__store_sqlite, f->store,
                                     f->tasks[t], &f->limits, err, sizeof err),
            TASKSPAN_OK);
        size_t closed = t < ITEMS ? (size_t)t + 1 : ITEMS;
        assert_int_equal(got.n, t < N_TASKS ? closed : 0);
        assert_same_news(&got, &want);
        for (size_t k = 0; k < got.n; k++) {
            const taskspan_span *s = taskspan_spans_get(got.spans,
                                                        got.index[k]);
            assert_false(s->is_open);
            assert_int_equal(strncmp(s->name, "work_", 5), 0);
        }
        taskspan__task_news_free(&got);
        taskspan__task_news_free(&want);
    }
    taskspan__export_reader_stop(r);
}

static void test_in_order_as_inline(void **state)
{
    in_order_as_inline(*state, NULL);
}

static void test_in_order_read_by_both(void **state)
{
    fixture *f = *state;
    in_order_as_inline(f, f->store);
}

/* A rejected row for a task's span (the key of span k of news). */
static taskspan__new_span row_of(const taskspan__task_news *news, size_t k,
                                 const char *task, uint8_t *key)
{
    const taskspan_span *s = taskspan_spans_get(news->spans, news->index[k]);
    memcpy(key, s->trace_id, 16);
    memcpy(key + 16, s->span_id, 8);
    return (taskspan__new_span){
        .trace_id = key,
        .span_id = key + 16,
        .task_id = task,
        .name = s->name,
        .end_ns = s->end_ns,
        .body_len = news->lens[k],
        .trace_shared = news->trace_shared,
    };
}

static void read_news(fixture *f, taskspan__task_news *news)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    assert_int_equal(taskspan__task_news_read(news, &taskspan__store_sqlite,
                                              f->store, f->tasks[2],
                                              &f->limits, err, sizeof err),
                     TASKSPAN_OK);
}

/* Settled spans are not news: the first export_done of the task's closed
 * spans in close order, and those with a row (rejected). A row right
 * after the last span to send moves that span's done_after past it; rows
 * before the first one, done_rows. */
static void test_settled_spans_are_not_news(void **state)
{
    fixture *f = *state;
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__task_news all, news;
    uint8_t keys[3][TASKSPAN__SPAN_KEY_LEN];

    read_news(f, &all);
    assert_int_equal(all.n, 3);
    assert_int_equal(all.closed, 3);
    assert_int_equal(all.done_read, 0);
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(all.done_after[k], (int64_t)k + 1);
    }

    taskspan__task_done done = {.task_id = f->tasks[2], .epoch = 0, .done = 1};
    assert_int_equal(taskspan__store_sqlite.tasks_settle(f->store, &done, 1, 1,
                                                         NULL, 0, NULL, err,
                                                         sizeof err),
                     TASKSPAN_OK);
    read_news(f, &news);
    assert_int_equal(news.done_read, 1);
    assert_int_equal(news.n, 2);
    assert_int_equal(news.index[0], all.index[1]);
    assert_int_equal(news.index[1], all.index[2]);
    assert_memory_equal(news.bodies[0], all.bodies[1], all.lens[1]);
    taskspan__task_news_free(&news);

    /* The third span rejected: the second one's done_after covers it. */
    taskspan__new_span rej = row_of(&all, 2, f->tasks[2], keys[2]);
    assert_int_equal(taskspan__store_sqlite.tasks_settle(f->store, NULL, 0, 0,
                                                         &rej, 1, "test", err,
                                                         sizeof err),
                     TASKSPAN_OK);
    read_news(f, &news);
    assert_int_equal(news.n, 1);
    assert_int_equal(news.index[0], all.index[1]);
    assert_int_equal(news.done_after[0], 3);
    assert_int_equal(news.done_rows, 1);
    taskspan__task_news_free(&news);

    /* The second one too: nothing to send, the rows settle up to 3. */
    rej = row_of(&all, 1, f->tasks[2], keys[1]);
    assert_int_equal(taskspan__store_sqlite.tasks_settle(f->store, NULL, 0, 0,
                                                         &rej, 1, "test", err,
                                                         sizeof err),
                     TASKSPAN_OK);
    read_news(f, &news);
    assert_int_equal(news.n, 0);
    assert_int_equal(news.done_rows, 3);
    assert_int_equal(news.closed, 3);
    taskspan__task_news_free(&news);
    taskspan__task_news_free(&all);
}

/* Stopped with tasks read ahead and not taken, and stopped by an abort
 * before the end of the list: nothing leaks, nothing hangs. */
static void test_stop_early(void **state)
{
    fixture *f = *state;
    char err[TASKSPAN__MSG_SIZE] = "";
    atomic_bool abort_flag;
    taskspan__export_reader *r = NULL;
    taskspan__task_news news;

    atomic_init(&abort_flag, false);
    assert_int_equal(taskspan__export_reader_start(
                         &r, &taskspan__store_sqlite, f->reader_store,
                         f->tasks, N_TASKS, &f->limits, &abort_flag),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan__export_reader_next(r, f->store, &news, err, sizeof err),
        TASKSPAN_OK);
    taskspan__task_news_free(&news);
    taskspan__export_reader_stop(r); /* up to 4 tasks read ahead */

    atomic_store(&abort_flag, true);
    assert_int_equal(taskspan__export_reader_start(
                         &r, &taskspan__store_sqlite, f->reader_store,
                         f->tasks, N_TASKS, &f->limits, &abort_flag),
                     TASKSPAN_OK);
    /* Aborted before the first task: the next one never comes. */
    assert_int_equal(
        taskspan__export_reader_next(r, f->store, &news, err, sizeof err),
        TASKSPAN_E_TIMEOUT);
    assert_int_equal(news.n, 0);
    taskspan__export_reader_stop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order_as_inline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_in_order_read_by_both, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_settled_spans_are_not_news, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
