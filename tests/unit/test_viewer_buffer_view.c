/*
 * test_viewer_buffer_view.c -- `taskspan serve --db`'s view of a recorder
 * buffer (buffer_view.c): its trace list takes the tasks with the newest
 * last event, and a task's last event may be newer than its tasks row says
 * (the row is written at most once a second: docs/buffer.md). A task
 * whose row is the oldest of all but whose last event is the newest must
 * be listed first, in a buffer of the current schema and in one that an
 * older library wrote (schema 6, which the read-only view does not
 * upgrade).
 */
#include "viewer/buffer_view.h"

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

/* More tasks than the view lists. */
#define N_TASKS (TASKSPAN__BUFFER_VIEW_MAX_TASKS + 5)
#define MS ((int64_t)1000000)
#define BASE ((int64_t)1700000000 * 1000 * MS)

static void emit_at(taskspan *ts, const char *task, const char *type,
                    int64_t ts_ns)
{
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = task;
    ev.event_type = type;
    ev.actor = "runner";
    ev.ts_ns = ts_ns;
    assert_int_equal(taskspan_emit(NULL, ts, &ev), TASKSPAN_OK);
}

typedef struct listed {
    int n;
    char first_task[32];
    bool saw_task0;
} listed;

static bool collect(const taskspan__trace_summary *t, void *payload)
{
    listed *l = payload;
    if (l->n == 0) {
        snprintf(l->first_task, sizeof l->first_task, "%s",
                 t->task_id != NULL ? t->task_id : "");
    }
    if (t->task_id != NULL && strcmp(t->task_id, "task-000") == 0) {
        l->saw_task0 = true;
    }
    l->n++;
    return true;
}

/* The buffer: task-000's row is written at BASE, the others' 100 ms and
 * more later; then task-000 gets an event 900 ms after its row, newer than
 * any other task's, and too soon to write its row again. */
static void record_tasks(const char *db)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;

    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    for (int k = 0; k < N_TASKS; k++) {
        char task[16];
        snprintf(task, sizeof task, "task-%03d", k);
        emit_at(ts, task, "phase_enter",
                k == 0 ? BASE : BASE + 100 * MS + k * MS / 2);
    }
    emit_at(ts, "task-000", "phase_exit", BASE + 900 * MS);
    taskspan_close(ts);
}

static void check_list(const char *db)
{
    taskspan__buffer_view *bv = NULL;
    char msg[256] = "";
    assert_int_equal(taskspan__buffer_view_open(&bv, db, msg, sizeof msg),
                     TASKSPAN_OK);
    taskspan__vstore_filter f = {.limit = 1000};
    listed l = {0};
    assert_int_equal(taskspan__buffer_view_list(bv, &f, collect, &l),
                     TASKSPAN_OK);
    assert_int_equal(l.n, TASKSPAN__BUFFER_VIEW_MAX_TASKS);
    assert_true(l.saw_task0);
    assert_string_equal(l.first_task, "task-000");
    taskspan__buffer_view_close(bv);
}

static void test_newest_last_event_first(void **state)
{
    char *dir = new_tmpdir("bview");
    char *db = path_join(dir, "buffer.db");

    (void)state;
    record_tasks(db);
    check_list(db);
    rm_rf(dir);
    free(db);
    free(dir);
}

static void test_older_schema(void **state)
{
    char *dir = new_tmpdir("bview6");
    char *db = path_join(dir, "buffer.db");

    (void)state;
    record_tasks(db);
    sqlite3 *s = sql_open(db);
    assert_int_equal(
        sqlite3_exec(
            s,
            "BEGIN;" SCHEMA_10_TO_9 SCHEMA_9_TO_8 SCHEMA_8_TO_7 SCHEMA_7_TO_6
            "PRAGMA user_version = 6;"
            "COMMIT;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(s);
    check_list(db);
    s = sql_open(db);
    assert_int_equal(sql_int(s, "PRAGMA user_version", NULL, 0, NULL), 6);
    sqlite3_close(s);
    rm_rf(dir);
    free(db);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest_last_event_first),
        cmocka_unit_test(test_older_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
