/*
 * test_event_wire.c -- what the buffer keeps of each event for the
 * exporters (schema 10: its export record, event_record.c, with its
 * payload's wire, event_wire.c), on a real buffer recorded through the
 * public API.
 *
 * What must hold: a span an exporter builds from the records (the
 * strings in them, the payload's wire copied when the limits leave it
 * whole, decoded when they cut it or a rule reads it) is byte for byte
 * the span encoded from the events' columns and JSON payloads, under
 * every span limit, with the same status when a rule reads the payload
 * (a failed work item, gate, step); payloads the flat reader declines (a
 * double, non-ASCII text, an escape, one past the wire's size bound) come
 * as JSON in the record; records that do not parse, an event too large
 * for one, and events written before schema 10 (with their schema-9
 * wires, or before schema 9 without) are read from their columns; and
 * upgrades add the column.
 */
#include "encode_otlp.h"
#include "event_record.h"
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

/* The task's events, as an exporter reads them (export true:
 * load_export) or from their columns (load_task). */
static void load(const char *db, bool export, taskspan__task_events *te)
{
    char err[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_config cfg = {.sync_mode = TASKSPAN_SYNC_NORMAL};
    void *st = NULL;
    assert_int_equal(
        taskspan__store_sqlite.open(&st, db, &cfg, err, sizeof err),
        TASKSPAN_OK);
    assert_int_equal((export ? taskspan__store_sqlite.load_export
                             : taskspan__store_sqlite.load_task)(
                         st, TASK, te, err, sizeof err),
                     TASKSPAN_OK);
    taskspan__store_sqlite.close(st);
}

/* Every span of the task as an exporter sends it under lim (built from
 * load_export's events, their payloads' wires where usable), compared
 * with the span encoded from the columns and JSON payloads. Returns how
 * many events were sent from wire bytes. */
static size_t check_same_bytes(const char *db, const taskspan__limits *lim)
{
    taskspan__task_events te_cols, te_export, te_lent;
    taskspan_spans *plain = NULL, *wired = NULL, *lent = NULL;
    size_t used = 0;

    load(db, false, &te_cols);
    load(db, true, &te_export);
    load(db, true, &te_lent);
    assert_int_equal(te_export.n_events, te_cols.n_events);
    assert_int_equal(taskspan__spans_build(&plain, TASK, &te_cols),
                     TASKSPAN_OK);
    assert_int_equal(
        taskspan__spans_build_wired(&wired, TASK, &te_export, lim, 0),
        TASKSPAN_OK);
    /* Borrowed: te_lent's strings and wires are used where they lie, so
     * it stays until the spans are encoded (ASan and valgrind would see a
     * copy missed in the other, freed at once). */
    assert_int_equal(taskspan__spans_build_wired(&lent, TASK, &te_lent, lim,
                                                 TASKSPAN__SPANS_BORROW),
                     TASKSPAN_OK);
    taskspan__task_events_free(&te_cols);
    taskspan__task_events_free(&te_export);
    assert_int_equal(taskspan_spans_count(wired), taskspan_spans_count(plain));
    assert_int_equal(taskspan_spans_count(lent), taskspan_spans_count(plain));
    for (size_t i = 0; i < taskspan_spans_count(plain); i++) {
        const taskspan_span *p = taskspan_spans_get(plain, i);
        const taskspan_span *w = taskspan_spans_get(wired, i);
        const taskspan_span *l = taskspan_spans_get(lent, i);
        const taskspan__event_wire *wires = taskspan__spans_event_wires(wired,
                                                                        i);
        uint8_t *a = NULL, *b = NULL, *c = NULL;
        size_t na = 0, nb = 0, nc = 0;
        assert_int_equal(p->status, w->status);
        assert_string_equal(p->status_message, w->status_message);
        assert_int_equal(taskspan__encode_span(&a, &na, p, lim), TASKSPAN_OK);
        assert_int_equal(taskspan__encode_span_wired(&b, &nb, w, wires, lim),
                         TASKSPAN_OK);
        assert_int_equal(
            taskspan__encode_span_wired(
                &c, &nc, l, taskspan__spans_event_wires(lent, i), lim),
            TASKSPAN_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        assert_int_equal(na, nc);
        assert_memory_equal(a, c, na);
        free(a);
        free(b);
        free(c);
        for (size_t k = 0; wires != NULL && k < w->n_events; k++) {
            used += wires[k].bytes != NULL;
        }
    }
    /* What an exporter keeps of its spans once they are encoded. */
    taskspan__spans_forget_events(lent);
    taskspan__task_events_free(&te_lent);
    for (size_t i = 0; i < taskspan_spans_count(lent); i++) {
        const taskspan_span *l = taskspan_spans_get(lent, i);
        assert_int_equal(l->n_events, 0);
        assert_null(taskspan__spans_event_wires(lent, i));
        assert_string_equal(l->name, taskspan_spans_get(plain, i)->name);
    }
    taskspan_spans_free(plain);
    taskspan_spans_free(wired);
    taskspan_spans_free(lent);
    return used;
}

/* The seqs, comma-separated, of the events load_export gives with a
 * JSON payload (no wire), in json (cap bytes). Returns how many events it
 * gives in all. */
static size_t export_json_seqs(const char *db, char *json, size_t cap)
{
    taskspan__task_events te;
    size_t len = 0;
    load(db, true, &te);
    json[0] = '\0';
    for (size_t i = 0; i < te.n_events; i++) {
        const taskspan__stored_event *e = &te.events[i];
        /* One or the other, never both nor neither. */
        assert_true((e->payload_json == NULL) != (e->wire == NULL));
        if (e->payload_json != NULL) {
            len += (size_t)snprintf(json + len, cap - len, "%s%lld",
                                    len > 0 ? "," : "", (long long)e->seq);
        }
    }
    size_t n = te.n_events;
    taskspan__task_events_free(&te);
    return n;
}

/* Every event of the 15 recorded has a record and no schema-9 wire; an
 * exporter gets the payload's wire for all but the double, the non-ASCII
 * text, the escape and the one past the wire's size bound, whose records
 * hold their JSON. */
static void test_which_events_get_bytes(void **state)
{
    fixture *f = *state;
    char json[64];
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events"), 15);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events "
                                      "WHERE export_record IS NOT NULL "
                                      "AND otlp IS NULL"),
                     15);
    assert_int_equal(export_json_seqs(f->db, json, sizeof json), 15);
    assert_string_equal(json, "6,7,8,9");
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

/* A recorder on the fixture's buffer, export off. */
static taskspan *reopen(const char *db)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    o.db_path = db;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    assert_int_equal(taskspan_open(&ts, &o, err), TASKSPAN_OK);
    return ts;
}

/* One more work span, of two events with a one-field payload each. */
static void append_work_d(const char *db)
{
    taskspan *ts = reopen(db);
    const taskspan_attr one[] = {taskspan_attr_str("work_item_id", "wi_d")};
    emit(ts, "work_item_start", "work_d", "worker", "executing", one, 1);
    emit(ts, "work_item_done", "work_d", "worker", "executing", one, 1);
    taskspan_close(ts);
}

/* Records that do not parse are not used: the event is read from its
 * columns (these have no schema-9 wire, so their payloads are encoded
 * from the JSON). */
static void test_bad_records_are_not_used(void **state)
{
    fixture *f = *state;
    char json[64];
    /* No record; a version this library does not know; a record cut
     * short; a wire cut short (its last field); a JSON payload without
     * its NUL. */
    sql_run(f->db, "UPDATE task_events SET export_record = NULL "
                   "WHERE seq = 1;"
                   "UPDATE task_events SET export_record = x'02' || "
                   "substr(export_record, 2) WHERE seq = 2;"
                   "UPDATE task_events SET export_record = "
                   "substr(export_record, 1, 5) WHERE seq = 3;"
                   "UPDATE task_events SET export_record = "
                   "substr(export_record, 1, length(export_record) - 1) "
                   "WHERE seq = 4;"
                   "UPDATE task_events SET export_record = "
                   "substr(export_record, 1, length(export_record) - 1) "
                   "WHERE seq = 7");
    taskspan__limits lim = limits(128, SIZE_MAX);
    assert_int_equal(check_same_bytes(f->db, &lim), 7);
    assert_int_equal(export_json_seqs(f->db, json, sizeof json), 15);
    assert_string_equal(json, "1,2,3,4,6,7,8,9");
}

/* An event whose record would pass TASKSPAN__RECORD_MAX gets none, and
 * is read from its columns. */
static void test_too_large_for_a_record(void **state)
{
    fixture *f = *state;
    char *big = malloc(TASKSPAN__RECORD_MAX + 1);
    assert_non_null(big);
    memset(big, 'z', TASKSPAN__RECORD_MAX);
    big[TASKSPAN__RECORD_MAX] = '\0';

    taskspan *ts = reopen(f->db);
    const taskspan_attr one[] = {taskspan_attr_str("big", big)};
    emit(ts, "work_item_start", "work_d", "worker", "executing", one, 1);
    emit(ts, "work_item_done", "work_d", "worker", "executing", NULL, 0);
    taskspan_close(ts);
    free(big);

    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events "
                                      "WHERE export_record IS NULL"),
                     1);
    taskspan__limits lim = limits(128, SIZE_MAX);
    assert_int_equal(check_same_bytes(f->db, &lim), 12);
    /* The 100-byte string is cut: its event is encoded from the wire's
     * fields, decoded. */
    lim = limits(128, 10);
    assert_int_equal(check_same_bytes(f->db, &lim), 11);
}

/* The schema-9 wire of each event's payload, in task_events.otlp, as a
 * library of schema 9 wrote it. */
static void write_schema_9_wires(const char *db_path)
{
    sqlite3 *db = sql_open(db_path);
    sqlite3_stmt *sel = sql_prep(db, "SELECT id, payload FROM task_events",
                                 NULL, 0, NULL);
    sqlite3_stmt *upd = sql_prep(
        db, "UPDATE task_events SET otlp = ?2 WHERE id = ?1", NULL, 0, NULL);
    taskspan__arena scratch = {0};
    while (sqlite3_step(sel) == SQLITE_ROW) {
        uint8_t wire[TASKSPAN__WIRE_MAX];
        size_t n = taskspan__event_wire_make(
            wire, sizeof wire, (const char *)sqlite3_column_text(sel, 1),
            &scratch);
        taskspan__arena_reset(&scratch);
        if (n > 0) {
            sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
            sqlite3_bind_blob(upd, 2, wire, (int)n, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(upd), SQLITE_DONE);
            sqlite3_reset(upd);
        }
    }
    taskspan__arena_free(&scratch);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    sqlite3_close(db);
}

/* A schema-9 buffer (wires in otlp, no records) opens as schema 10 with
 * the column: its events are read from their columns, wires and all,
 * damaged wires encoded from their payloads; the next events get
 * records. */
static void test_upgrade_from_schema_9(void **state)
{
    fixture *f = *state;
    sql_run(f->db, "BEGIN;" SCHEMA_10_TO_9 "PRAGMA user_version = 9;"
                   "COMMIT;");
    write_schema_9_wires(f->db);
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
    assert_int_equal(sql_count(f->db, "PRAGMA user_version"), 10);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events "
                                      "WHERE export_record IS NULL"),
                     15);

    append_work_d(f->db);
    assert_int_equal(check_same_bytes(f->db, &lim), 8);
}

/* A schema-8 buffer opens as schema 10 with both columns: its events have
 * neither and are encoded from their payloads; the next events get
 * records. */
static void test_upgrade_from_schema_8(void **state)
{
    fixture *f = *state;
    sql_run(f->db,
            "BEGIN;" SCHEMA_10_TO_9 SCHEMA_9_TO_8 "PRAGMA user_version = 8;"
            "COMMIT;");

    taskspan__limits lim = limits(128, SIZE_MAX);
    assert_int_equal(check_same_bytes(f->db, &lim), 0);
    assert_int_equal(sql_count(f->db, "PRAGMA user_version"), 10);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM task_events "
                                      "WHERE otlp IS NULL AND "
                                      "export_record IS NULL"),
                     15);

    append_work_d(f->db);
    assert_int_equal(check_same_bytes(f->db, &lim), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_which_events_get_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_same_bytes_under_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_records_are_not_used, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_too_large_for_a_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_schema_9, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_schema_8, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
