/*
 * span_states.c -- test tool: the export state of every closed span the
 * exporters of a buffer found, as JSON, for the shell tests that compare
 * what a collector received with what the buffer says was delivered.
 *
 *   span_states
 *
 * The buffer is $TASKSPAN_DB. Since schema 8 a span's state is not a row:
 * a task's closed spans in close order (taskspan__spans_close_order), the
 * first export_done of them settled, those up to export_closed found and
 * pending; a rejected span keeps a row with its reason. This tool derives
 * each span's state that way, with the library's own span model, and
 * prints one JSON array, one object per span:
 *   {"task", "traceId", "spanId", "name", "state" (0 pending, 1 delivered,
 *    2 rejected), "last_error", "claim_until" (the task's export_until, ns,
 *    as text: a lease's end or a retry time), "claim_owner"}
 * Exit: 0, 1 when the buffer cannot be read.
 */
#include "internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
}

static void json_str(const char *s)
{
    if (s == NULL) {
        printf("null");
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            printf("\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            printf("\\u%04x", *s);
        } else {
            putchar(*s);
        }
    }
    putchar('"');
}

/* The reason kept for span s of task when it was rejected, or NULL. */
static char *rejected_reason(sqlite3 *db, const char *task,
                             const taskspan_span *s)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    sqlite3_prepare_v2(db,
                       "SELECT coalesce(last_error, '') FROM export_spans"
                       " WHERE task_id = ?1 AND trace_id = ?2"
                       " AND span_id = ?3 AND state = 2",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, task, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, s->trace_id, 16, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, s->span_id, 8, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out = strdup((const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
}

int main(void)
{
    const char *path = getenv("TASKSPAN_DB");
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char err[TASKSPAN_ERRBUF_SIZE] = "";
    taskspan *ts = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool first = true;

    o.flags = TASKSPAN_OPEN_READONLY;
    o.traceparent = "";
    if (path == NULL || taskspan_open(&ts, &o, err) != TASKSPAN_OK ||
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT task_id, export_done, export_closed,"
                           " CAST(export_until AS TEXT), export_owner"
                           " FROM tasks WHERE export_closed > 0"
                           " ORDER BY tnum",
                           -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "span_states: cannot read the buffer %s: %s%s\n",
                path ? path : "($TASKSPAN_DB unset)", err,
                db ? sqlite3_errmsg(db) : "");
        return 1;
    }
    sqlite3_busy_timeout(db, 5000);
    printf("[");
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *task = (const char *)sqlite3_column_text(st, 0);
        int64_t done = sqlite3_column_int64(st, 1);
        int64_t closed = sqlite3_column_int64(st, 2);
        const char *until = (const char *)sqlite3_column_text(st, 3);
        const char *owner = (const char *)sqlite3_column_text(st, 4);
        taskspan_spans *spans = NULL;
        size_t *order = NULL, n = 0;
        if (taskspan_task_spans(&spans, ts, task) != TASKSPAN_OK ||
            taskspan__spans_close_order(spans, &order, &n) != TASKSPAN_OK) {
            taskspan_spans_free(spans);
            continue; /* pruned: its spans are gone */
        }
        for (size_t p = 0; p < n && (int64_t)p < closed; p++) {
            const taskspan_span *s = taskspan_spans_get(spans, order[p]);
            char *reason = rejected_reason(db, task, s);
            int state = reason != NULL ? 2 : (int64_t)p < done ? 1 : 0;
            printf("%s\n{\"task\":", first ? "" : ",");
            first = false;
            json_str(task);
            printf(",\"traceId\":\"");
            hex(s->trace_id, 16);
            printf("\",\"spanId\":\"");
            hex(s->span_id, 8);
            printf("\",\"name\":");
            json_str(s->name);
            printf(",\"state\":%d,\"last_error\":", state);
            json_str(reason);
            printf(",\"claim_until\":");
            json_str(until);
            printf(",\"claim_owner\":");
            json_str(owner);
            printf("}");
            free(reason);
        }
        free(order);
        taskspan_spans_free(spans);
    }
    printf("]\n");
    sqlite3_finalize(st);
    sqlite3_close(db);
    taskspan_close(ts);
    return 0;
}
