/*
 * buffer_view.c -- tasks of a recorder buffer as viewer traces (see
 * buffer_view.h). Nothing is cached: each request rebuilds the spans of
 * the tasks it needs with taskspan_task_spans(), so an open span shows
 * the moment its event is committed.
 */
#include "buffer_view.h"

#include "span_json.h"

#include "../lib/internal.h"
#include "../lib/store_sqlite.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A trace id lookup looks at this many recent tasks. */
#define MAX_LOOKUP_TASKS 1000

struct taskspan__buffer_view {
    pthread_mutex_t lock;
    taskspan *ts;
    sqlite3 *db;            /* read-only: the task list */
    const char *recent_sql; /* recent_tasks_sql, as the file's schema has it */
};

/* The ?1 tasks with the newest last event, newest first, with the trace id
 * of the task's TRACEPARENT when it had one. The tasks row's updated_ns is
 * a floor of the last event's time, less than a second below it
 * (next_seq in store_sqlite.c): only the rows within a second of the ?1-th
 * newest floor can be among the newest, and only theirs are looked up in
 * task_events (one probe each), not every task's. */
static const char recent_tasks_sql[] =
    "SELECT task_id, " TASKSPAN__LIVE_UPDATED_NS " AS u, trace_id"
    " FROM tasks t WHERE t.updated_ns >= coalesce((SELECT updated_ns"
    "  FROM tasks ORDER BY updated_ns DESC LIMIT 1 OFFSET ?1 - 1), 0)"
    "  - " TASKSPAN__TASK_ROW_REFRESH_SQL " ORDER BY u DESC LIMIT ?1";
/* The same for a buffer of schema 6 or older (events by (task_id, seq)),
 * which the read-only viewer does not upgrade. */
static const char recent_tasks_sql_6[] =
    "SELECT task_id, max(t.updated_ns, coalesce((SELECT ts_ns FROM"
    "  task_events WHERE task_id = t.task_id ORDER BY seq DESC LIMIT 1),"
    "  0)) AS u, trace_id"
    " FROM tasks t WHERE t.updated_ns >= coalesce((SELECT updated_ns"
    "  FROM tasks ORDER BY updated_ns DESC LIMIT 1 OFFSET ?1 - 1), 0)"
    "  - " TASKSPAN__TASK_ROW_REFRESH_SQL " ORDER BY u DESC LIMIT ?1";

taskspan_code taskspan__buffer_view_open(taskspan__buffer_view **out,
                                         const char *path, char *err,
                                         size_t errlen)
{
    taskspan_options o = TASKSPAN_OPTIONS_INIT;
    char ebuf[TASKSPAN_ERRBUF_SIZE] = "";

    *out = NULL;
    taskspan__buffer_view *bv = calloc(1, sizeof *bv);
    if (bv == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    o.db_path = path;
    o.traceparent = "";
    o.flags = TASKSPAN_OPEN_READONLY | TASKSPAN_OPEN_NO_CREATE;
    o.export_mode = TASKSPAN_EXPORT_OFF;
    taskspan_code rc = taskspan_open(&bv->ts, &o, ebuf);
    if (rc != TASKSPAN_OK) {
        free(bv);
        return taskspan__fail(err, errlen, rc, "--db %s: %s", path, ebuf);
    }
    if (sqlite3_open_v2(path, &bv->db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        rc = taskspan__fail(err, errlen, TASKSPAN_E_IO, "--db %s: %s", path,
                            bv->db != NULL ? sqlite3_errmsg(bv->db)
                                           : "out of memory");
        sqlite3_close(bv->db);
        taskspan_close(bv->ts);
        free(bv);
        return rc;
    }
    sqlite3_busy_timeout(bv->db, 2000);
    bv->recent_sql = recent_tasks_sql;
    sqlite3_stmt *v = NULL;
    if (sqlite3_prepare_v2(bv->db, "PRAGMA user_version", -1, &v, NULL) ==
            SQLITE_OK &&
        sqlite3_step(v) == SQLITE_ROW && sqlite3_column_int(v, 0) < 7) {
        bv->recent_sql = recent_tasks_sql_6;
    }
    sqlite3_finalize(v);
    pthread_mutex_init(&bv->lock, NULL);
    *out = bv;
    return TASKSPAN_OK;
}

void taskspan__buffer_view_close(taskspan__buffer_view *bv)
{
    if (bv == NULL) {
        return;
    }
    sqlite3_close(bv->db);
    taskspan_close(bv->ts);
    pthread_mutex_destroy(&bv->lock);
    free(bv);
}

/* ---- rendering ---------------------------------------------------------- */

static json_t *attr_value(const taskspan_attr *a)
{
    json_t *arr;

    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        return taskspan__json_text(a->value.s);
    case TASKSPAN_ATTR_INT:
        return taskspan__json_ns(a->value.i);
    case TASKSPAN_ATTR_DOUBLE:
        return json_real(a->value.d);
    case TASKSPAN_ATTR_BOOL:
        return json_boolean(a->value.b);
    default:
        break;
    }
    arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->value.array.count; i++) {
        json_t *v = NULL;
        switch (a->type) {
        case TASKSPAN_ATTR_STRING_ARRAY:
            v = taskspan__json_text(
                ((const char *const *)a->value.array.items)[i]);
            break;
        case TASKSPAN_ATTR_INT_ARRAY:
            v = taskspan__json_ns(((const int64_t *)a->value.array.items)[i]);
            break;
        case TASKSPAN_ATTR_DOUBLE_ARRAY:
            v = json_real(((const double *)a->value.array.items)[i]);
            break;
        default:
            v = json_boolean(((const int *)a->value.array.items)[i]);
            break;
        }
        if (json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *attrs_json(const taskspan_attr *attrs, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++) {
        json_t *kv = json_pack("{s:o, s:o}", "key",
                               taskspan__json_text(attrs[i].key), "value",
                               attr_value(&attrs[i]));
        if (kv == NULL || json_array_append_new(a, kv) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *span_json(const taskspan_span *s, const char *service)
{
    json_t *events = json_array(), *links = json_array();

    for (size_t i = 0; events != NULL && i < s->n_events; i++) {
        const taskspan_span_event *e = &s->events[i];
        if (json_array_append_new(
                events, json_pack("{s:o, s:o, s:o}", "name",
                                  taskspan__json_text(e->name), "time_ns",
                                  taskspan__json_ns(e->time_ns), "attributes",
                                  attrs_json(e->attrs, e->n_attrs))) != 0) {
            json_decref(events);
            events = NULL;
        }
    }
    for (size_t i = 0; links != NULL && i < s->n_links; i++) {
        const taskspan_span_link *l = &s->links[i];
        json_t *la = json_array();
        if (la != NULL && l->reason != NULL) {
            json_array_append_new(
                la, json_pack("{s:s, s:o}", "key", "taskspan.link.reason",
                              "value", taskspan__json_text(l->reason)));
        }
        if (json_array_append_new(
                links, json_pack("{s:o, s:o, s:o}", "trace_id",
                                 taskspan__json_hex(l->trace_id, 16),
                                 "span_id", taskspan__json_hex(l->span_id, 8),
                                 "attributes", la)) != 0) {
            json_decref(links);
            links = NULL;
        }
    }
    return json_pack(
        "{s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:b, s:{s:i, s:o}, s:o, s:o, "
        "s:o}",
        "span_id", taskspan__json_hex(s->span_id, 8), "parent_span_id",
        taskspan__json_hex(s->parent_span_id, s->has_parent ? 8 : 0), "name",
        taskspan__json_text(s->name), "kind", 1, "service",
        taskspan__json_text(service), "start_ns",
        taskspan__json_ns(s->start_ns), "end_ns",
        s->is_open ? json_string("") : taskspan__json_ns(s->end_ns), "open",
        s->is_open != 0, "status", "code", (int)s->status, "message",
        taskspan__json_text(s->status_message), "attributes",
        attrs_json(s->attrs, s->n_attrs), "events", events, "links", links);
}

/* ---- tasks -------------------------------------------------------------- */

/* service.name of the newest resource the recorder wrote, or "". */
static void buffer_service(taskspan__buffer_view *bv, char *out, size_t size)
{
    sqlite3_stmt *s = NULL;

    out[0] = '\0';
    if (sqlite3_prepare_v2(bv->db,
                           "SELECT attrs FROM resources ORDER BY id DESC "
                           "LIMIT 1",
                           -1, &s, NULL) != SQLITE_OK) {
        return; /* an older buffer without resources */
    }
    if (sqlite3_step(s) == SQLITE_ROW) {
        json_t *j = json_loads((const char *)sqlite3_column_text(s, 0), 0,
                               NULL);
        const char *name = json_string_value(
            json_object_get(j, "service.name"));
        if (name != NULL) {
            snprintf(out, size, "%s", name);
        }
        json_decref(j);
    }
    sqlite3_finalize(s);
}

/* What one task looks like as a trace. */
typedef struct task_trace {
    taskspan__trace_summary sum;
    char trace_id[33];
    taskspan_spans *spans;
} task_trace;

static bool attr_equals(const taskspan_attr *a, const char *value)
{
    char buf[32];

    switch (a->type) {
    case TASKSPAN_ATTR_STRING:
        return strcmp(a->value.s, value) == 0;
    case TASKSPAN_ATTR_INT:
        snprintf(buf, sizeof buf, "%" PRId64, a->value.i);
        return strcmp(buf, value) == 0;
    case TASKSPAN_ATTR_BOOL:
        return strcmp(a->value.b ? "true" : "false", value) == 0;
    default:
        return false;
    }
}

/* Whether the task's spans pass the event= and attr= filters. */
static bool spans_match(const taskspan_spans *spans,
                        const taskspan__vstore_filter *f)
{
    bool ev = f->event == NULL, at = f->attr_key == NULL;

    for (size_t i = 0; i < taskspan_spans_count(spans); i++) {
        const taskspan_span *s = taskspan_spans_get(spans, i);
        for (size_t k = 0; !ev && k < s->n_events; k++) {
            ev = strcmp(s->events[k].name, f->event) == 0;
        }
        for (size_t k = 0; !at && k < s->n_attrs; k++) {
            at = strcmp(s->attrs[k].key, f->attr_key) == 0 &&
                 attr_equals(&s->attrs[k], f->attr_value);
        }
    }
    return ev && at;
}

/* Build t from the task's spans; false if the task has none. */
static bool load_task(taskspan__buffer_view *bv, task_trace *t,
                      const char *task_id, const char *service,
                      int64_t updated_ns)
{
    if (taskspan_task_spans(&t->spans, bv->ts, task_id) != TASKSPAN_OK ||
        taskspan_spans_count(t->spans) == 0) {
        taskspan_spans_free(t->spans);
        t->spans = NULL;
        return false;
    }
    taskspan__trace_summary *s = &t->sum;
    memset(s, 0, sizeof *s);
    s->task_id = task_id;
    s->service = service;
    s->updated_ns = updated_ns;
    s->root_name = "";
    for (size_t i = 0; i < taskspan_spans_count(t->spans); i++) {
        const taskspan_span *sp = taskspan_spans_get(t->spans, i);
        if (i == 0) {
            static const char digits[] = "0123456789abcdef";
            for (size_t k = 0; k < 16; k++) {
                t->trace_id[2 * k] = digits[sp->trace_id[k] >> 4];
                t->trace_id[2 * k + 1] = digits[sp->trace_id[k] & 15];
            }
            t->trace_id[32] = '\0';
            s->start_ns = sp->start_ns;
        }
        if (sp->start_ns < s->start_ns) {
            s->start_ns = sp->start_ns;
        }
        if (sp->end_ns > s->end_ns) {
            s->end_ns = sp->end_ns;
        }
        if (s->root_name[0] == '\0' && sp->parent_index == (size_t)-1) {
            s->root_name = sp->name;
        }
        s->span_count++;
        s->error_count += sp->status == TASKSPAN_STATUS_ERROR;
        s->event_count += (int64_t)sp->n_events;
        s->running = s->running || sp->is_open;
    }
    s->trace_id = t->trace_id;
    return true;
}

static bool summary_matches(const taskspan__trace_summary *s,
                            const taskspan__vstore_filter *f)
{
    if ((f->service != NULL && strcmp(s->service, f->service) != 0) ||
        (f->task_id != NULL && strcmp(s->task_id, f->task_id) != 0) ||
        (f->has_from && s->start_ns < f->from_ns) ||
        (f->has_to && s->start_ns > f->to_ns)) {
        return false;
    }
    if (f->status == NULL) {
        return true;
    }
    const char *st = s->running           ? "running"
                     : s->error_count > 0 ? "error"
                                          : "ok";
    return strcmp(st, f->status) == 0;
}

taskspan_code taskspan__buffer_view_list(taskspan__buffer_view *bv,
                                         const taskspan__vstore_filter *f,
                                         taskspan__vstore_trace_cb cb,
                                         void *payload)
{
    sqlite3_stmt *s = NULL;
    char service[256];
    taskspan_code rc = TASKSPAN_OK;
    int64_t matched = 0;

    pthread_mutex_lock(&bv->lock);
    buffer_service(bv, service, sizeof service);
    if (sqlite3_prepare_v2(bv->db, bv->recent_sql, -1, &s, NULL) !=
        SQLITE_OK) {
        pthread_mutex_unlock(&bv->lock);
        return TASKSPAN_E_IO;
    }
    sqlite3_bind_int(s, 1, TASKSPAN__BUFFER_VIEW_MAX_TASKS);
    while (matched < f->limit && sqlite3_step(s) == SQLITE_ROW) {
        task_trace t = {0};
        const char *task_id = (const char *)sqlite3_column_text(s, 0);
        if (task_id == NULL ||
            !load_task(bv, &t, task_id, service, sqlite3_column_int64(s, 1))) {
            continue;
        }
        if (summary_matches(&t.sum, f) && spans_match(t.spans, f)) {
            matched++;
            if (!cb(&t.sum, payload)) {
                rc = TASKSPAN_E_NOMEM;
            }
        }
        taskspan_spans_free(t.spans);
        if (rc != TASKSPAN_OK) {
            break;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&bv->lock);
    return rc;
}

/* The task whose trace is trace_id, among the MAX_LOOKUP_TASKS most
 * recently updated: its id (task_size bytes) and last update. Returns
 * TASKSPAN_OK, TASKSPAN_E_NOT_FOUND or TASKSPAN_E_IO. Under bv->lock. */
static taskspan_code find_task(taskspan__buffer_view *bv, const char *trace_id,
                               char *task, size_t task_size,
                               int64_t *updated_ns)
{
    sqlite3_stmt *s = NULL;
    taskspan_code rc = TASKSPAN_E_NOT_FOUND;
    uint8_t derived[16];
    char hex[33];

    if (sqlite3_prepare_v2(bv->db, bv->recent_sql, -1, &s, NULL) !=
        SQLITE_OK) {
        return TASKSPAN_E_IO;
    }
    sqlite3_bind_int(s, 1, MAX_LOOKUP_TASKS);
    while (rc == TASKSPAN_E_NOT_FOUND && sqlite3_step(s) == SQLITE_ROW) {
        const char *task_id = (const char *)sqlite3_column_text(s, 0);
        const uint8_t *tid = sqlite3_column_blob(s, 2);
        if (task_id == NULL || strlen(task_id) >= task_size) {
            continue;
        }
        /* The task's trace: from TRACEPARENT when it had one, else
         * derived from its id, as the recorder does. */
        if (tid == NULL || sqlite3_column_bytes(s, 2) != 16) {
            taskspan__derive_trace_id(derived, task_id);
            tid = derived;
        }
        for (size_t k = 0; k < 16; k++) {
            snprintf(hex + 2 * k, 3, "%02x", tid[k]);
        }
        if (strcmp(hex, trace_id) == 0) {
            snprintf(task, task_size, "%s", task_id);
            *updated_ns = sqlite3_column_int64(s, 1);
            rc = TASKSPAN_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

taskspan_code taskspan__buffer_view_trace(taskspan__buffer_view *bv,
                                          const char *trace_id,
                                          taskspan__vstore_trace_cb cb,
                                          void *payload, json_t **out_spans)
{
    char service[256];
    char task_id[TASKSPAN_MAX_ID_LEN + 1];
    int64_t updated_ns = 0;
    task_trace t = {0};

    *out_spans = NULL;
    pthread_mutex_lock(&bv->lock);
    buffer_service(bv, service, sizeof service);
    taskspan_code rc = find_task(bv, trace_id, task_id, sizeof task_id,
                                 &updated_ns);
    if (rc == TASKSPAN_OK &&
        !load_task(bv, &t, task_id, service, updated_ns)) {
        rc = TASKSPAN_E_NOT_FOUND;
    }
    if (rc == TASKSPAN_OK) {
        json_t *arr = json_array();
        for (size_t i = 0; arr != NULL && i < taskspan_spans_count(t.spans);
             i++) {
            if (json_array_append_new(
                    arr, span_json(taskspan_spans_get(t.spans, i), service)) !=
                0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        rc = arr != NULL && cb(&t.sum, payload) ? TASKSPAN_OK
                                                : TASKSPAN_E_NOMEM;
        if (rc == TASKSPAN_OK) {
            *out_spans = arr;
        } else {
            json_decref(arr);
        }
        taskspan_spans_free(t.spans);
    }
    pthread_mutex_unlock(&bv->lock);
    return rc;
}

taskspan_code taskspan__buffer_view_dump(taskspan__buffer_view *bv,
                                         const char *trace_id, char **out,
                                         size_t *out_len)
{
    char task_id[TASKSPAN_MAX_ID_LEN + 1];
    int64_t updated_ns = 0;

    *out = NULL;
    *out_len = 0;
    pthread_mutex_lock(&bv->lock);
    taskspan_code rc = find_task(bv, trace_id, task_id, sizeof task_id,
                                 &updated_ns);
    if (rc == TASKSPAN_OK) {
        rc = taskspan_task_dump(out, out_len, bv->ts, task_id, 1);
    }
    pthread_mutex_unlock(&bv->lock);
    return rc;
}
