/*
 * test_event_wire.c -- the payload bytes the buffer keeps beside each event
 * (schema 9, event_wire.c), on a real buffer recorded through the public
 * API.
 *
 * What must hold: a span sent from the stored bytes is byte for byte the
 * span encoded from the payloads, under every span limit (the bytes are
 * used only when the limits leave them whole, and the attributes after
 * them are cut as before), with the same status when a rule reads the
 * payload (a failed work item, gate, step); payloads the flat reader
 * declines (a double,
 * non-ASCII text, an escape, one past the size bound) get no bytes; bytes
 * that do not parse, and events written before schema 9, are encoded from
 * their payloads; and an upgrade from schema 8 adds the column.
 */
#include "encode_otlp.h"
#include "event_wire.h"
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
#include <sqlite3.h>

#include "common/test_util.h"

#define TASK "wire-task"
#define MANY 20 /* fields of the widest payload */

typedef struct fixture {
    char *dir;
    char *db;
} fixture;

static void emit(taskspan *ts, const char *type, const char *key,
                 const char *actor, const char *phase,
                 const taskspan_attr *attrs, size_t n)
{
    taskspan_event ev = TASKSPAN_EVENT_INIT;
    ev.task_id = TASK;
    ev.event_type = type;
    ev.span_key = key;
    ev.parent_span_key = strcmp(key, "main") != 0 ? "main" : NULL;
    ev.actor = actor;
    ev.phase = phase;
    ev.attrs = attrs;
    ev.n_attrs = n;
    assert_int_equal(taskspan_emit(NULL, ts, &ev), TASKSPAN_OK);
}

/* One task whose spans hold every kind of payload: flat ones of each
 * type (bytes), a wide one, a long string, an empty one, and the kinds
 * the flat reader declines (no bytes). */
static void record(const char *db)
{
    static const char *const files[] = {"a.c", "b.c"};
    static const int64_t counts[] = {1, -2, 3};
    static const int flags[] = {1, 0};
    char long_str[101], huge[TASKSPAN__WIRE_MAX + 10];
    char keys[MANY][8];
    taskspan_attr wide[MANY];
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;

    memset(long_str, 'x', sizeof long_str - 1);
    long_str[sizeof long_str - 1] = '\0';
    memset(huge, 'y', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    for (int i = 0; i < MANY; i++) {
        snprintf(keys[i], sizeof keys[i], "k%02d", i);
        wide[i] = taskspan_attr_int(keys[i], i);
    }
    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    o.traceparent = "";
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);

    const taskspan_attr flat[] = {
        taskspan_attr_str("work_item_id", "wi_1"),
        taskspan_attr_int("attempt", -7),
        taskspan_attr_bool("retry", 1),
        taskspan_attr_array("files", TASKSPAN_ATTR_STRING_ARRAY, files, 2),
        taskspan_attr_array("counts", TASKSPAN_ATTR_INT_ARRAY, counts, 3),
        taskspan_attr_array("flags", TASKSPAN_ATTR_BOOL_ARRAY, flags, 2),
        taskspan_attr_array("none", TASKSPAN_ATTR_STRING_ARRAY, NULL, 0),
    };
    const taskspan_attr lng[] = {taskspan_attr_str("long", long_str)};
    const taskspan_attr dbl[] = {taskspan_attr_double("ratio", 0.5)};
    const taskspan_attr utf[] = {taskspan_attr_str("name", "caf\xc3\xa9")};
    const taskspan_attr esc[] = {taskspan_attr_str("quote", "a \"b\"\n")};
    const taskspan_attr big[] = {taskspan_attr_str("huge", huge)};

    emit(ts, "runner_spawn", "main", "runner", NULL, NULL, 0);
    emit(ts, "work_item_start", "work_a", "worker", "executing", flat,
         ARRAY_LEN(flat));
    emit(ts, "lease_acquired", "work_a", NULL, "executing", wide, MANY);
    emit(ts, "lease_renewed", "work_a", "lease", NULL, lng, 1);
    emit(ts, "work_item_done", "work_a", NULL, NULL, NULL, 0);
    emit(ts, "work_item_start", "work_b", "worker", "executing", dbl, 1);
    emit(ts, "lease_acquired", "work_b", "worker", "executing", utf, 1);
    emit(ts, "lease_renewed", "work_b", "worker", "executing", esc, 1);
    emit(ts, "work_item_done", "work_b", "worker", "executing", big, 1);
    /* Events whose rules read their payloads: a failed work item, a
     * failed gate, a step that ended with an exit code. */
    const taskspan_attr boom[] = {taskspan_attr_str("error", "boom")};
    const taskspan_attr gate[] = {taskspan_attr_str("gate_name", "lint"),
                                  taskspan_attr_bool("passed", 0)};
    const taskspan_attr code[] = {taskspan_attr_int("exit_code", 3)};
    emit(ts, "work_item_start", "work_c", "worker", "executing", NULL, 0);
    emit(ts, "work_item_failed", "work_c", "worker", "executing", boom, 1);
    emit(ts, "gate_result", "main", "runner", "verifying", gate, 2);
    emit(ts, "step_start", "step_x", "runner", "verifying", NULL, 0);
    emit(ts, "step_end", "step_x", "runner", "verifying", code, 1);
    emit(ts, "runner_exit", "main", "runner", NULL, NULL, 0);
    taskspan_close(ts);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = new_tmpdir("wire");
    f->db = path_join(f->dir, "buffer.db");
    record(f->db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rm_rf(f->dir);
    free(f->db);
    free(f->dir);
    free(f);
    return 0;
}

/* Run sql on db_path; asserts it worked. */
static void sql_run(const char *db_path, const char *sql)
{
    sqlite3 *db = sql_open(db_path);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Column 0 of sql's first row on db_path, as an integer. */
static int64_t sql_count(const char *db_path, const char *sql)
{
    sqlite3 *db = sql_open(db_path);
    int64_t n = sql_int(db, sql, NULL, 0, NULL);
    sqlite3_close(db);
    return n;
}

static taskspan__limits limits(size_t event_attrs, size_t value_len)
{
    return (taskspan__limits){
        .span_attrs = 128,
        .span_events = 32768,
        .span_links = 128,
        .event_attrs = event_attrs,
        .link_attrs = 128,
        .value_len = value_len,
    };
}

static void load(const char *db, taskspan__task_events *te)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_config cfg = {.sync_mode = TASKSPAN_SYNC_NORMAL};
    void *st = NULL;
    assert_int_equal(
        taskspan__store_sqlite.open(&st, db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    assert_int_equal(
        taskspan__store_sqlite.load_task(st, TASK, te, err, sizeof err),
        TASKSPAN_OK);
    taskspan__store_sqlite.close(st);
}

/* Every span of the task sent from the stored bytes under lim, compared
 * with the span encoded from the payloads. Returns how many events were
 * sent from bytes. */
static size_t check_same_bytes(const char *db, const taskspan__limits *lim)
{
    taskspan__task_events te;
    taskspan_spans *plain = NULL, *wired = NULL;
    size_t used = 0;

    load(db, &te);
    assert_int_equal(taskspan__spans_build(&plain, TASK, &te), TASKSPAN_OK);
    assert_int_equal(taskspan__spans_build_wired(&wired, TASK, &te, lim),
                     TASKSPAN_OK);
    taskspan__task_events_free(&te);
    assert_int_equal(taskspan_spans_count(wired), taskspan_spans_count(plain));
    for (size_t i = 0; i < taskspan_spans_count(plain); i++) {
        const taskspan_span *p = taskspan_spans_get(plain, i);
        const taskspan_span *w = taskspan_spans_get(wired, i);
        const taskspan__event_wire *wires = taskspan__spans_event_wires(wired,
                                                                        i);
        uint8_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        assert_int_equal(p->status, w->status);
        assert_string_equal(p->status_message, w->status_message);
        assert_int_equal(taskspan__encode_span(&a, &na, p, lim), TASKSPAN_OK);
        assert_int_equal(taskspan__encode_span_wired(&b, &nb, w, wires, lim),
                         TASKSPAN_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        free(a);
        free(b);
        for (size_t k = 0; wires != NULL && k < w->n_events; k++) {
            used += wires[k].bytes != NULL;
        }
    }
    taskspan_spans_free(plain);
    taskspan_spans_free(wired);
    return used;
}

/* Events with stored bytes, of the 15 recorded: all but the double, the
 * non-ASCII text, the escape and the one past the size bound. */
static void test_which_events_get_bytes(void **state)
{
    fixture *f = *state;
    sqlite3 *db = sql_open(f->db);
    sqlite3_stmt *st = sql_prep(
        db,
        "SELECT group_concat(seq) FROM (SELECT seq FROM "
        "task_events WHERE otlp IS NULL ORDER BY seq)",
        NULL, 0, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "6,7,8,9");
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events"), 15);
}

/* Under each limit, the spans sent from bytes are the spans encoded from
 * the payloads; the bytes are used exactly when the limits leave them
 * whole. */
static void test_same_bytes_under_limits(void **state)
{
    fixture *f = *state;
    struct {
        taskspan__limits lim;
        size_t used; /* events sent from bytes */
    } cases[] = {
        /* The defaults: all eleven. */
        {limits(128, SIZE_MAX), 11},
        /* The 100-byte string is cut: its event is encoded. */
        {limits(128, 50), 10},
        {limits(128, 100), 11},
        /* The 20 fields fit, the tail after them is cut to one. */
        {limits(MANY + 1, SIZE_MAX), 11},
        {limits(MANY, SIZE_MAX), 11},
        /* Neither 7 nor 20 fields fit in 5: those two are encoded, cut. */
        {limits(5, SIZE_MAX), 9},
        /* Only the five empty payloads (no field, no string) fit. */
        {limits(0, SIZE_MAX), 5},
        {limits(0, 0), 5},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        assert_int_equal(check_same_bytes(f->db, &cases[i].lim),
                         cases[i].used);
    }
}

/* Bytes that do not parse, or are not exactly the fields their header
 * counts, are not sent: the event is encoded from its payload. */
static void test_bad_bytes_are_not_used(void **state)
{
    fixture *f = *state;
    /* A cut header; a header cut short; a field cut short; a field too
     * many; not a field 3. */
    sql_run(f->db, "UPDATE task_events SET otlp = x'80' WHERE seq = 2;"
                   "UPDATE task_events SET otlp = x'0380' WHERE seq = 3;"
                   "UPDATE task_events SET otlp = x'01001a050a01' "
                   "WHERE seq = 4;"
                   "UPDATE task_events SET otlp = x'00001a00' "
                   "WHERE seq = 1;"
                   "UPDATE task_events SET otlp = x'0100120100' "
                   "WHERE seq = 5");
    taskspan__limits lim = limits(128, SIZE_MAX);
    assert_int_equal(check_same_bytes(f->db, &lim), 6);
}

/* A schema-8 buffer opens as schema 9 with the column: its events have no
 * bytes and are encoded from their payloads; the next event gets bytes. */
static void test_upgrade_from_schema_8(void **state)
{
    fixture *f = *state;
    sql_run(f->db, "BEGIN;" SCHEMA_9_TO_8 "PRAGMA user_version = 8;"
                   "COMMIT;");

    taskspan__limits lim = limits(128, SIZE_MAX);
    assert_int_equal(check_same_bytes(f->db, &lim), 0);
    assert_int_equal(sql_count(f->db, "PRAGMA user_version"), 9);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events "
                                      "WHERE otlp IS NULL"),
                     15);

    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    o.db_path = f->db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    const taskspan_attr one[] = {taskspan_attr_str("work_item_id", "wi_d")};
    emit(ts, "work_item_start", "work_d", "worker", "executing", one, 1);
    emit(ts, "work_item_done", "work_d", "worker", "executing", one, 1);
    taskspan_close(ts);
    assert_int_equal(check_same_bytes(f->db, &lim), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_which_events_get_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_same_bytes_under_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_bytes_are_not_used, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_schema_8, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
