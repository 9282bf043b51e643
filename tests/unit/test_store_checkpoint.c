/*
 * test_store_checkpoint.c -- the checkpointer (store_checkpoint.c): an
 * appending connection never checkpoints in its own commits while the
 * thread keeps up, the WAL is started over again and again, it stays
 * bounded under a stream with no pause at all, a reader holding old
 * frames wedges nothing, every event is there, and close returns with the
 * -wal file gone. No timing is asserted: the waits
 * below only give the thread its turn.
 */
#include "store_sqlite.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "common/test_util.h"

#define TASK "task-ckpt"
#define FRAME_BYTES (4096 + 24)

typedef struct fixture {
    char *dir;
    char *db;
    char wal[4096];
    void *store;
    int64_t appended;
    int64_t max_wal;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_config cfg = {.sync_mode = TASKSPAN_SYNC_NORMAL,
                                  .max_bytes = (int64_t)1 << 30};

    assert_non_null(f);
    f->dir = new_tmpdir("ckpt");
    f->db = path_join(f->dir, "buffer.db");
    snprintf(f->wal, sizeof f->wal, "%s-wal", f->db);
    assert_int_equal(
        taskspan__store_sqlite.open(&f->store, f->db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    taskspan__store_sqlite.close(f->store);
    rm_rf(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

static void note_wal_size(fixture *f)
{
    struct stat sb;
    if (stat(f->wal, &sb) == 0 && sb.st_size > f->max_wal) {
        f->max_wal = sb.st_size;
    }
}

static void append_n(fixture *f, int n)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    for (int i = 0; i < n; i++) {
        taskspan__append ev = {
            .task_id = TASK,
            .event_type = "work_item_start",
            .actor = "worker",
            .span_key = "work_wi_000001",
            .parent_span_key = "main",
            .phase = "executing",
            .payload_json = "{\"work_item_id\":\"wi_000001\",\"index\":1}",
            .ts_ns = 1700000000000000000LL + f->appended,
        };
        int64_t seq = 0;
        assert_int_equal(taskspan__store_sqlite.append(f->store, &ev, &seq,
                                                       err, sizeof err),
                         TASKSPAN_OK);
        assert_int_equal(seq, ++f->appended);
        if (i % 64 == 0) {
            note_wal_size(f);
        }
    }
}

/* Until the thread has nothing left to do (it was woken, and ran). */
static void wait_idle(fixture *f)
{
    taskspan__ckpt_stats st;
    struct timespec ms = {.tv_sec = 0, .tv_nsec = 1000000};
    for (int i = 0; i < 600000; i++) {
        taskspan__sqlite_ckpt_stats(f->store, &st);
        if (st.idle) {
            return;
        }
        nanosleep(&ms, NULL);
    }
    fail_msg("the checkpointer never became idle");
}

/* Every event appended, seq 1..n, read by another connection. */
static void check_all_there(fixture *f)
{
    sqlite3 *db = sql_open(f->db);
    assert_int_equal(sql_int(db,
                             "SELECT count(*) FROM task_events"
                             " WHERE task_id = ?1",
                             TASK, 0, NULL),
                     f->appended);
    assert_int_equal(sql_int(db,
                             "SELECT max(seq) - min(seq) + 1 FROM task_events"
                             " WHERE task_id = ?1",
                             TASK, 0, NULL),
                     f->appended);
    sqlite3_close(db);
}

/* Emits in bursts, the thread given its turn after each: the writer never
 * checkpoints itself, and the WAL is started over, staying small. */
static void test_writer_never_checkpoints(void **state)
{
    fixture *f = *state;
    taskspan__ckpt_stats st;

    for (int round = 0; round < 24; round++) {
        append_n(f, 1500); /* about 1500 frames */
        wait_idle(f);
    }
    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_true(st.running);
    assert_int_equal(st.inline_ckpts, 0);
    assert_true(st.passive > 0);
    /* Whether the WAL got to the FULL step (4000 frames) or was started
     * over after a PASSIVE one caught up in a pause depends on how fast
     * the disk was: either way it was started over. */
    assert_true(st.restarts > 0);
    assert_true(st.max_frames < TASKSPAN__CKPT_HARD_FRAMES);
    assert_true(f->max_wal <
                (int64_t)TASKSPAN__CKPT_HARD_FRAMES * FRAME_BYTES);
    check_all_there(f);
}

/* A stream with no pause: whether or not the thread keeps up, the WAL
 * stays bounded (a writer far ahead checkpoints in its commit), where it
 * would reach ~250 MB if nothing started it over. */
static void test_stream_stays_bounded(void **state)
{
    fixture *f = *state;
    taskspan__ckpt_stats st;

    append_n(f, 20000);
    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_true(st.restarts > 0);
    assert_true(f->max_wal <=
                (int64_t)2 * TASKSPAN__CKPT_HARD_FRAMES * FRAME_BYTES);
    check_all_there(f);
}

/* Close while the thread may be in the middle of a checkpoint: it
 * returns, the last close removes the -wal file, every event is kept. */
static void test_close_mid_checkpoint(void **state)
{
    fixture *f = *state;
    struct stat sb;

    append_n(f, 3000);
    taskspan__store_sqlite.close(f->store);
    f->store = NULL;
    assert_int_not_equal(stat(f->wal, &sb), 0);
    check_all_there(f);
}

/* A reader keeps the first frames needed: nothing can start the WAL over,
 * it passes the hard limit and the writer tries in its commits, and
 * nothing wedges; once the reader is gone the WAL is started over. */
static void test_reader_holds_the_wal(void **state)
{
    fixture *f = *state;
    taskspan__ckpt_stats st;

    append_n(f, 100);
    sqlite3 *r = sql_open(f->db);
    assert_int_equal(sqlite3_exec(r, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sql_int(r, "SELECT count(*) FROM task_events", NULL, 0, NULL), 100);
    /* An append writes 1 or 2 frames (docs/buffer.md): append until the
     * WAL is past the hard limit, at most one append per frame of it. */
    int appended = 0;
    do {
        append_n(f, 1000);
        appended += 1000;
        taskspan__sqlite_ckpt_stats(f->store, &st);
    } while (st.max_frames < TASKSPAN__CKPT_HARD_FRAMES + 1000 &&
             appended < TASKSPAN__CKPT_HARD_FRAMES + 2000);
    assert_int_equal(st.restarts, 0);
    assert_true(st.inline_ckpts > 0);
    assert_true(st.max_frames >= TASKSPAN__CKPT_HARD_FRAMES);
    assert_int_equal(sqlite3_exec(r, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(r);
    append_n(f, 200);
    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_true(st.restarts > 0);
    check_all_there(f);
}

/* A connection that never appends (the exporters', read-only ones) has no
 * checkpointer thread. */
static void test_no_thread_without_append(void **state)
{
    fixture *f = *state;
    taskspan__ckpt_stats st;

    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_false(st.running);
    assert_int_equal(st.passive, 0);
}

/* A writer that appends a few events (a taskspan emit, say) starts no
 * thread; one that keeps appending starts it at the first wake-up. */
static void test_thread_starts_when_needed(void **state)
{
    fixture *f = *state;
    taskspan__ckpt_stats st;

    append_n(f, 20); /* about 20 frames */
    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_false(st.running);
    append_n(f, 1500); /* past 1000 frames */
    wait_idle(f);
    taskspan__sqlite_ckpt_stats(f->store, &st);
    assert_true(st.running);
    assert_true(st.passive > 0);
    assert_int_equal(st.inline_ckpts, 0);
    check_all_there(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writer_never_checkpoints, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stream_stays_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_mid_checkpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reader_holds_the_wal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_thread_without_append, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_thread_starts_when_needed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
