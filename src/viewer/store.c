/*
 * store.c -- the viewer's span store on SQLite (see store.h).
 *
 * DESIGN
 * spans holds one row per (trace_id, span_id): the span, its resource and
 * its scope as packed protobuf (what arrived, so a download gives back
 * exactly that), plus the columns the queries need. Its INTEGER PRIMARY
 * KEY AUTOINCREMENT seq is the live stream's event id: it only grows, and
 * AUTOINCREMENT never hands out a number twice, even after eviction.
 * traces holds one summary row per trace, recomputed from spans for each
 * trace a request touched (a request's spans mostly share few traces), so
 * listing never aggregates. trace_events and trace_attrs index event names
 * and scalar attribute values (span and resource) per trace for the
 * event= and attr= filters.
 *
 * Ingest: one transaction per request. An attribute index row is written
 * once per request and trace (a trace's spans share most values: its task
 * id, its resource), and checkpoints run on a thread of their own
 * (store_checkpoint.c), not in the request's commit. Measured with
 * bench/viewer.sh, the commit's checkpoint was a quarter of an ingest.
 *
 * Size: the cap counts the stored blobs plus a fixed per-span overhead
 * (SPAN_OVERHEAD, roughly what the row and its index entries take). The
 * file itself may stay larger: SQLite reuses freed pages, it does not
 * shrink the file.
 */
#include "store.h"

#include "../lib/internal.h"
#include "../lib/store_sqlite.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#define SCHEMA_VERSION 1
#define SPAN_OVERHEAD 256
/* Attribute values longer than this are not indexed (still stored). */
#define MAX_INDEXED_VALUE 256
#define ANY_VALUE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__##x

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

struct taskspan__vstore {
    pthread_mutex_t lock;
    sqlite3 *db;
    taskspan__ckpt *ckpt; /* NULL: SQLite checkpoints in the commits */
    int64_t max_bytes;
    int64_t total_bytes; /* SUM(traces.bytes), kept in step */
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS spans ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  trace_id TEXT NOT NULL,"
    "  span_id TEXT NOT NULL,"
    "  parent_span_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  service TEXT NOT NULL,"
    "  task_id TEXT,"
    "  start_ns INTEGER NOT NULL,"
    "  end_ns INTEGER NOT NULL,"
    "  status_code INTEGER NOT NULL,"
    "  n_events INTEGER NOT NULL,"
    "  span BLOB NOT NULL,"
    "  resource BLOB NOT NULL,"
    "  scope BLOB NOT NULL,"
    "  received_ns INTEGER NOT NULL,"
    "  UNIQUE (trace_id, span_id));"
    "CREATE TABLE IF NOT EXISTS traces ("
    "  trace_id TEXT PRIMARY KEY NOT NULL,"
    "  task_id TEXT,"
    "  service TEXT NOT NULL,"
    "  root_name TEXT NOT NULL,"
    "  start_ns INTEGER NOT NULL,"
    "  end_ns INTEGER NOT NULL,"
    "  span_count INTEGER NOT NULL,"
    "  error_count INTEGER NOT NULL,"
    "  event_count INTEGER NOT NULL,"
    "  root_ended INTEGER NOT NULL,"
    "  updated_ns INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns);"
    "CREATE INDEX IF NOT EXISTS traces_service ON traces (service, start_ns);"
    "CREATE INDEX IF NOT EXISTS traces_task ON traces (task_id);"
    "CREATE INDEX IF NOT EXISTS traces_updated ON traces (updated_ns);"
    "CREATE TABLE IF NOT EXISTS trace_events ("
    "  name TEXT NOT NULL, trace_id TEXT NOT NULL,"
    "  PRIMARY KEY (name, trace_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS trace_events_trace ON trace_events (trace_id);"
    "CREATE TABLE IF NOT EXISTS trace_attrs ("
    "  key TEXT NOT NULL, value TEXT NOT NULL, trace_id TEXT NOT NULL,"
    "  PRIMARY KEY (key, value, trace_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS trace_attrs_trace ON trace_attrs (trace_id);";

/* ---- small helpers ------------------------------------------------------ */

static taskspan_code db_fail(taskspan__vstore *st, char *err, size_t errlen,
                             const char *what)
{
    return taskspan__fail(err, errlen, TASKSPAN_E_IO, "viewer store: %s: %s",
                          what, sqlite3_errmsg(st->db));
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Bind a blob that may be empty: a NULL pointer would bind SQL NULL. */
static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
    return sqlite3_bind_blob(s, i, n > 0 ? p : "", (int)n, SQLITE_STATIC);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t != NULL ? (const char *)t : "";
}

/* Pack m (NULL: nothing) into a malloc'd buffer. */
static bool pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (m == NULL) {
        return true;
    }
    *len = protobuf_c_message_get_packed_size(m);
    *out = malloc(*len > 0 ? *len : 1);
    if (*out == NULL) {
        return false;
    }
    protobuf_c_message_pack(m, *out);
    return true;
}

static const char *string_attr(pb_kv **kvs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kvs[i]->key, key) == 0 && kvs[i]->value != NULL &&
            kvs[i]->value->value_case == ANY_VALUE(VALUE_STRING_VALUE)) {
            return kvs[i]->value->string_value;
        }
    }
    return NULL;
}

/* mkdir -p of the directory part of path, mode 0700. */
static void make_parent_dirs(const char *path)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s", path);

    if (n < 0 || (size_t)n >= sizeof buf) {
        return; /* sqlite3_open_v2 reports the real problem */
    }
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            (void)mkdir(buf, 0700);
            *p = '/';
        }
    }
}

/* ---- open and close ---------------------------------------------------- */

/* The writer's busy handler: wait up to about 5 s for the lock, in 100 us
 * steps (the checkpointer holds it for a moment). */
static int store_busy(void *arg, int count)
{
    (void)arg;
    if (count >= 50000) {
        return 0;
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
    return 1;
}

taskspan_code taskspan__vstore_open(taskspan__vstore **out, const char *path,
                                    int64_t max_bytes, char *err,
                                    size_t errlen)
{
    *out = NULL;
    taskspan__vstore *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    st->max_bytes = max_bytes;
    make_parent_dirs(path);
    int rc = sqlite3_open_v2(path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    taskspan_code trc = TASKSPAN_OK;
    sqlite3_stmt *s = NULL;
    if (rc != SQLITE_OK) {
        trc = taskspan__fail(
            err, errlen, TASKSPAN_E_IO, "cannot open the viewer store %s: %s",
            path, st->db != NULL ? sqlite3_errmsg(st->db) : "out of memory");
        goto done;
    }
    sqlite3_busy_handler(st->db, store_busy, NULL);
    /* WAL: readers (the API) never block the writer. NORMAL: a commit
     * survives a crash of this process, which is all a viewer needs. A
     * 32 MiB page cache: span and index keys are random, so each request
     * touches many pages. */
    if (sqlite3_exec(st->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     " PRAGMA cache_size=-32768;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        trc = db_fail(st, err, errlen, path);
        goto done;
    }
    /* user_version tells a viewer store (1) from a new file (0) and from
     * anything else, such as a recorder buffer given by mistake. */
    int version = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        version = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    s = NULL;
    if (version < 0) {
        trc = db_fail(st, err, errlen, path);
        goto done;
    }
    if (version != 0 && version != SCHEMA_VERSION) {
        trc = taskspan__fail(err, errlen, TASKSPAN_E_SCHEMA,
                             "%s is not a viewer store of this version "
                             "(user_version %d)",
                             path, version);
        goto done;
    }
    if (version == 0) {
        if (sqlite3_prepare_v2(st->db,
                               "SELECT count(*) FROM sqlite_master WHERE "
                               "name NOT IN ('spans','traces',"
                               "'trace_events','trace_attrs',"
                               "'sqlite_sequence') AND type='table'",
                               -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) > 0) {
            trc = taskspan__fail(err, errlen, TASKSPAN_E_SCHEMA,
                                 "%s holds other tables: not a viewer store",
                                 path);
        }
        sqlite3_finalize(s);
        s = NULL;
        if (trc != TASKSPAN_OK) {
            goto done;
        }
    }
    if (sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, "PRAGMA user_version=1", NULL, NULL, NULL) !=
            SQLITE_OK) {
        trc = db_fail(st, err, errlen, path);
        goto done;
    }
    if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(SUM(bytes),0) FROM traces",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        st->total_bytes = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        trc = taskspan__fail(err, errlen, TASKSPAN_E_NOMEM,
                             "cannot create a mutex");
        goto done;
    }
    /* Should it not start, SQLite checkpoints in the commits as before. */
    (void)taskspan__ckpt_start(&st->ckpt, st->db, false, store_busy, NULL);
done:
    if (trc != TASKSPAN_OK) {
        sqlite3_close(st->db);
        free(st);
        return trc;
    }
    *out = st;
    return TASKSPAN_OK;
}

void taskspan__vstore_close(taskspan__vstore *st)
{
    if (st == NULL) {
        return;
    }
    taskspan__ckpt_stop(st->ckpt); /* before the writer's close */
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* ---- ingest ------------------------------------------------------------- */

/* The statements of one ingest, prepared once per call. */
typedef struct ingest {
    taskspan__vstore *st;
    sqlite3_stmt *find, *del, *ins, *ev, *attr;
    /* Prepared on first use: the trace summaries (summarise). */
    sqlite3_stmt *scan, *span_cols, *put, *bytes;
    struct sum_span *sum_spans; /* one trace's spans, reused */
    char (*sum_ids)[17];        /* ... their ids, sorted */
    size_t cap_sum;
    char (*touched)[33];           /* trace ids this request wrote */
    uint64_t *indexed;             /* hashes of the attribute rows written */
    size_t n_indexed, cap_indexed; /* ... (open addressing, 0 = empty) */
    size_t n_touched, cap_touched;
    int64_t stored;
    int64_t rejected;
    int64_t now_ns;
} ingest;

static bool all_zero(const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] != 0) {
            return false;
        }
    }
    return true;
}

static bool touch(ingest *in, const char *trace_id)
{
    for (size_t i = in->n_touched; i > 0; i--) {
        if (strcmp(in->touched[i - 1], trace_id) == 0) {
            return true;
        }
    }
    if (in->n_touched == in->cap_touched) {
        size_t ncap = in->cap_touched == 0 ? 8 : in->cap_touched * 2;
        void *p = realloc(in->touched, ncap * sizeof *in->touched);
        if (p == NULL) {
            return false;
        }
        in->touched = p;
        in->cap_touched = ncap;
    }
    memcpy(in->touched[in->n_touched++], trace_id, 33);
    return true;
}

/* A scalar value as index text; false for arrays, maps, bytes and values
 * too long to index. */
static bool value_text(const pb_any *v, char *buf, size_t size)
{
    if (v == NULL) {
        return false;
    }
    switch (v->value_case) {
    case ANY_VALUE(VALUE_STRING_VALUE):
        if (strlen(v->string_value) > MAX_INDEXED_VALUE) {
            return false;
        }
        snprintf(buf, size, "%s", v->string_value);
        return true;
    case ANY_VALUE(VALUE_INT_VALUE):
        snprintf(buf, size, "%" PRId64, v->int_value);
        return true;
    case ANY_VALUE(VALUE_BOOL_VALUE):
        snprintf(buf, size, "%s", v->bool_value ? "true" : "false");
        return true;
    case ANY_VALUE(VALUE_DOUBLE_VALUE):
        snprintf(buf, size, "%.17g", v->double_value);
        return true;
    default:
        return false;
    }
}

/* Whether this request already wrote the attribute row (key, value,
 * trace_id); records it if not. The row is known by a 64-bit hash: two
 * rows of one request share one with a chance of about n^2 / 2^65, and
 * the second of them would then go unindexed (still stored). -1 when out
 * of memory. */
static int indexed_before(ingest *in, const char *key, const char *value,
                          const char *trace_id)
{
    char buf[2 * (MAX_INDEXED_VALUE + 32) + 40];
    int len = snprintf(buf, sizeof buf, "%s%c%s%c%s", key, 0, value, 0,
                       trace_id);
    uint64_t h = XXH3_64bits(buf, (size_t)len < sizeof buf ? (size_t)len
                                                           : sizeof buf);
    h = h != 0 ? h : 1;
    if (2 * (in->n_indexed + 1) > in->cap_indexed) {
        size_t ncap = in->cap_indexed == 0 ? 1024 : 2 * in->cap_indexed;
        uint64_t *t = calloc(ncap, sizeof *t);
        if (t == NULL) {
            return -1;
        }
        for (size_t i = 0; i < in->cap_indexed; i++) {
            uint64_t v = in->indexed[i];
            size_t j = (size_t)v & (ncap - 1);
            while (v != 0 && t[j] != 0) {
                j = (j + 1) & (ncap - 1);
            }
            if (v != 0) {
                t[j] = v;
            }
        }
        free(in->indexed);
        in->indexed = t;
        in->cap_indexed = ncap;
    }
    size_t j = (size_t)h & (in->cap_indexed - 1);
    while (in->indexed[j] != 0) {
        if (in->indexed[j] == h) {
            return 1;
        }
        j = (j + 1) & (in->cap_indexed - 1);
    }
    in->indexed[j] = h;
    in->n_indexed++;
    return 0;
}

static int index_attrs(ingest *in, const char *trace_id, pb_kv **kvs, size_t n)
{
    char buf[MAX_INDEXED_VALUE + 32];

    for (size_t i = 0; i < n; i++) {
        if (!value_text(kvs[i]->value, buf, sizeof buf) ||
            strlen(kvs[i]->key) > MAX_INDEXED_VALUE) {
            continue;
        }
        int seen = indexed_before(in, kvs[i]->key, buf, trace_id);
        if (seen != 0) {
            if (seen < 0) {
                return -1;
            }
            continue;
        }
        sqlite3_reset(in->attr);
        sqlite3_bind_text(in->attr, 1, kvs[i]->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(in->attr, 2, buf, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(in->attr, 3, trace_id, -1, SQLITE_STATIC);
        if (sqlite3_step(in->attr) != SQLITE_DONE) {
            return -1;
        }
    }
    return 0;
}

static bool same_blob(sqlite3_stmt *s, int col, const uint8_t *p, size_t n)
{
    size_t len = (size_t)sqlite3_column_bytes(s, col);
    const void *b = sqlite3_column_blob(s, col);

    return len == n && (n == 0 || memcmp(b, p, n) == 0);
}

/* Store one span. Returns 0, or -1 on an SQLite failure. */
static int ingest_span(ingest *in, const pb_span *sp, const char *service,
                       const uint8_t *res, size_t res_len, const uint8_t *scp,
                       size_t scp_len, pb_kv **res_attrs, size_t n_res_attrs)
{
    char trace_id[33], span_id[17], parent[17] = "";
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = -1;

    hex(trace_id, sp->trace_id.data, 16);
    hex(span_id, sp->span_id.data, 8);
    if (sp->parent_span_id.len == 8) {
        hex(parent, sp->parent_span_id.data, 8);
    }
    if (!pack(&sp->base, &blob, &len)) {
        return -1;
    }
    sqlite3_reset(in->find);
    sqlite3_bind_text(in->find, 1, trace_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(in->find, 2, span_id, -1, SQLITE_STATIC);
    int step = sqlite3_step(in->find);
    if (step == SQLITE_ROW) {
        bool same = same_blob(in->find, 0, blob, len) &&
                    same_blob(in->find, 1, res, res_len) &&
                    same_blob(in->find, 2, scp, scp_len);
        sqlite3_reset(in->find);
        if (same) {
            rc = 0; /* received again: stored once */
            goto done;
        }
        sqlite3_reset(in->del);
        sqlite3_bind_text(in->del, 1, trace_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(in->del, 2, span_id, -1, SQLITE_STATIC);
        if (sqlite3_step(in->del) != SQLITE_DONE) {
            goto done;
        }
    } else if (step != SQLITE_DONE) {
        goto done;
    }
    sqlite3_reset(in->find);
    const char *task = string_attr(sp->attributes, sp->n_attributes,
                                   "taskspan.task_id");
    sqlite3_stmt *s = in->ins;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, span_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, parent, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, sp->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, service, -1, SQLITE_STATIC);
    if (task != NULL) {
        sqlite3_bind_text(s, 6, task, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 6);
    }
    /* Times above INT64_MAX (year 2262) are clamped, not wrapped. */
    sqlite3_bind_int64(s, 7,
                       sp->start_time_unix_nano > INT64_MAX
                           ? INT64_MAX
                           : (int64_t)sp->start_time_unix_nano);
    sqlite3_bind_int64(s, 8,
                       sp->end_time_unix_nano > INT64_MAX
                           ? INT64_MAX
                           : (int64_t)sp->end_time_unix_nano);
    sqlite3_bind_int(s, 9, sp->status != NULL ? (int)sp->status->code : 0);
    sqlite3_bind_int64(s, 10, (int64_t)sp->n_events);
    bind_blob(s, 11, blob, len);
    bind_blob(s, 12, res, res_len);
    bind_blob(s, 13, scp, scp_len);
    sqlite3_bind_int64(s, 14, in->now_ns);
    if (sqlite3_step(s) != SQLITE_DONE) {
        goto done;
    }
    for (size_t i = 0; i < sp->n_events; i++) {
        sqlite3_reset(in->ev);
        sqlite3_bind_text(in->ev, 1, sp->events[i]->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(in->ev, 2, trace_id, -1, SQLITE_STATIC);
        if (sqlite3_step(in->ev) != SQLITE_DONE) {
            goto done;
        }
    }
    if (index_attrs(in, trace_id, sp->attributes, sp->n_attributes) != 0 ||
        index_attrs(in, trace_id, res_attrs, n_res_attrs) != 0 ||
        !touch(in, trace_id)) {
        goto done;
    }
    in->stored++;
    rc = 0;
done:
    free(blob);
    return rc;
}

/* The stored bytes of a trace's summary row (0 if it has none). */
static int trace_bytes(ingest *in, const char *trace_id, int64_t *out)
{
    *out = 0;
    sqlite3_reset(in->bytes);
    sqlite3_bind_text(in->bytes, 1, trace_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(in->bytes);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(in->bytes, 0);
        rc = SQLITE_DONE;
    }
    sqlite3_reset(in->bytes);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* One span of a trace, as the summary's choice of root needs it. */
typedef struct sum_span {
    char span_id[17];
    char parent[17];
    int64_t seq;
    int64_t start_ns;
    bool has_task;
} sum_span;

static int span_id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Whether the trace holds a span with this id: ids is sorted. */
static bool has_span(const char (*ids)[17], size_t n, const char *id)
{
    return id[0] != '\0' && bsearch(id, ids, n, sizeof *ids, span_id_cmp);
}

/* The root of a trace: its first span by (has a parent, that parent is in
 * the trace, start time), the first in span id order on a tie; and the
 * span its task id comes from: the first by (has a parent, arrival) among
 * those with one. -1 when none. */
static void pick_root(const sum_span *sp, size_t n, const char (*ids)[17],
                      ptrdiff_t *root, ptrdiff_t *task)
{
    int best_rank = 0;
    *root = -1;
    *task = -1;
    for (size_t i = 0; i < n; i++) {
        bool child = sp[i].parent[0] != '\0';
        int rank = child ? (has_span(ids, n, sp[i].parent) ? 2 : 1) : 0;
        if (*root < 0 || rank < best_rank ||
            (rank == best_rank && sp[i].start_ns < sp[*root].start_ns)) {
            *root = (ptrdiff_t)i;
            best_rank = rank;
        }
        if (sp[i].has_task &&
            (*task < 0 || (sp[*task].parent[0] != '\0') > child ||
             ((sp[*task].parent[0] != '\0') == child &&
              sp[i].seq < sp[*task].seq))) {
            *task = (ptrdiff_t)i;
        }
    }
}

/* Text columns of one span of the trace (service, name, task_id; NULL
 * where not wanted): malloc'd copies, NULL when the column is NULL. One
 * lookup for all of them. */
static int span_texts(ingest *in, const char *trace_id, const char *span_id,
                      char **out[3])
{
    sqlite3_stmt *s = in->span_cols;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, span_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    for (int col = 0; rc == SQLITE_ROW && col < 3; col++) {
        if (out[col] != NULL && sqlite3_column_type(s, col) != SQLITE_NULL) {
            *out[col] = strdup(col_text(s, col));
            rc = *out[col] != NULL ? SQLITE_ROW : SQLITE_NOMEM;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Recompute the summary row of one trace from its spans, in one pass over
 * them: the aggregates as they come, then the root and the task id. (One
 * SQL statement with correlated subqueries did this in 4 scans of the
 * trace and one lookup per span, about 40% of an ingest.) */
static int summarise(ingest *in, const char *trace_id)
{
    static const char scan_sql[] =
        "SELECT span_id, parent_span_id, seq, start_ns, end_ns,"
        " task_id IS NOT NULL, status_code, n_events,"
        " length(span) + length(resource) + length(scope)"
        " FROM spans WHERE trace_id=?";
    static const char cols_sql[] = "SELECT service, name, task_id FROM spans"
                                   " WHERE trace_id=? AND span_id=?";
    static const char put_sql[] =
        "INSERT OR REPLACE INTO traces (trace_id, task_id, service, root_name,"
        " start_ns, end_ns, span_count, error_count, event_count, root_ended,"
        " updated_ns, bytes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)";
    int64_t before = 0, start = INT64_MAX, end = INT64_MIN, errs = 0;
    int64_t evs = 0, bytes = 0;
    bool root_ended = false;
    size_t n = 0;
    int rc = -1;

    if ((in->scan == NULL &&
         sqlite3_prepare_v2(in->st->db, scan_sql, -1, &in->scan, NULL) !=
             SQLITE_OK) ||
        (in->span_cols == NULL &&
         sqlite3_prepare_v2(in->st->db, cols_sql, -1, &in->span_cols, NULL) !=
             SQLITE_OK) ||
        (in->put == NULL && sqlite3_prepare_v2(in->st->db, put_sql, -1,
                                               &in->put, NULL) != SQLITE_OK) ||
        (in->bytes == NULL &&
         sqlite3_prepare_v2(in->st->db,
                            "SELECT bytes FROM traces WHERE trace_id=?", -1,
                            &in->bytes, NULL) != SQLITE_OK) ||
        trace_bytes(in, trace_id, &before) != 0) {
        return -1;
    }
    sqlite3_stmt *s = in->scan;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == in->cap_sum) {
            size_t ncap = n == 0 ? 64 : 2 * n;
            void *p = realloc(in->sum_spans, ncap * sizeof *in->sum_spans);
            void *q = realloc(in->sum_ids, ncap * sizeof *in->sum_ids);
            if (p != NULL) {
                in->sum_spans = p;
            }
            if (q != NULL) {
                in->sum_ids = q;
            }
            if (p == NULL || q == NULL) {
                sqlite3_reset(s);
                return -1;
            }
            in->cap_sum = ncap;
        }
        sum_span *sp = &in->sum_spans[n];
        snprintf(sp->span_id, sizeof sp->span_id, "%s", col_text(s, 0));
        snprintf(sp->parent, sizeof sp->parent, "%s", col_text(s, 1));
        memcpy(in->sum_ids[n], sp->span_id, sizeof sp->span_id);
        sp->seq = sqlite3_column_int64(s, 2);
        sp->start_ns = sqlite3_column_int64(s, 3);
        int64_t end_ns = sqlite3_column_int64(s, 4);
        sp->has_task = sqlite3_column_int(s, 5) != 0;
        start = sp->start_ns < start ? sp->start_ns : start;
        end = end_ns > end ? end_ns : end;
        errs += sqlite3_column_int(s, 6) == 2;
        evs += sqlite3_column_int64(s, 7);
        bytes += sqlite3_column_int64(s, 8) + SPAN_OVERHEAD;
        root_ended = root_ended || (sp->parent[0] == '\0' && end_ns > 0);
        n++;
    }
    sqlite3_reset(s);
    if (step != SQLITE_DONE) {
        return -1;
    }
    if (n == 0) {
        return 0; /* nothing left to sum up */
    }
    ptrdiff_t root, task;
    qsort(in->sum_ids, n, sizeof *in->sum_ids, span_id_cmp);
    pick_root(in->sum_spans, n, (const char(*)[17])in->sum_ids, &root, &task);
    char *service = NULL, *name = NULL, *task_id = NULL;
    const char *root_id = in->sum_spans[root].span_id;
    /* The task id comes with the root's columns when the root has it (the
     * common case), else from a second lookup. */
    char **root_cols[3] = {&service, &name, task == root ? &task_id : NULL};
    char **task_cols[3] = {NULL, NULL, &task_id};
    if (span_texts(in, trace_id, root_id, root_cols) != 0 ||
        (task >= 0 && task != root &&
         span_texts(in, trace_id, in->sum_spans[task].span_id, task_cols) !=
             0)) {
        goto done;
    }
    s = in->put;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
    if (task_id != NULL) {
        sqlite3_bind_text(s, 2, task_id, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(s, 2);
    }
    sqlite3_bind_text(s, 3, service != NULL ? service : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, name != NULL ? name : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, start);
    sqlite3_bind_int64(s, 6, end);
    sqlite3_bind_int64(s, 7, (int64_t)n);
    sqlite3_bind_int64(s, 8, errs);
    sqlite3_bind_int64(s, 9, evs);
    sqlite3_bind_int(s, 10, root_ended);
    sqlite3_bind_int64(s, 11, in->now_ns);
    sqlite3_bind_int64(s, 12, bytes);
    if (sqlite3_step(s) == SQLITE_DONE) {
        in->st->total_bytes += bytes - before;
        rc = 0;
    }
    sqlite3_reset(s);
done:
    free(service);
    free(name);
    free(task_id);
    return rc;
}

static bool was_touched(const ingest *in, const char *trace_id)
{
    for (size_t i = 0; i < in->n_touched; i++) {
        if (strcmp(in->touched[i], trace_id) == 0) {
            return true;
        }
    }
    return false;
}

/* Delete one trace and everything that indexes it. */
static int delete_trace(taskspan__vstore *st, const char *trace_id)
{
    static const char *const sqls[] = {
        "DELETE FROM spans WHERE trace_id=?",
        "DELETE FROM trace_events WHERE trace_id=?",
        "DELETE FROM trace_attrs WHERE trace_id=?",
        "DELETE FROM traces WHERE trace_id=?",
    };

    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(st->db, sqls[i], -1, &s, NULL) != SQLITE_OK) {
            return -1;
        }
        sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            return -1;
        }
    }
    return 0;
}

/* Evict the least recently updated traces the request did not touch
 * while the store is over its cap. */
static int evict(ingest *in)
{
    taskspan__vstore *st = in->st;
    char victims[64][33];

    while (st->max_bytes > 0 && st->total_bytes > st->max_bytes) {
        sqlite3_stmt *s = NULL;
        size_t n = 0;
        int64_t freed = 0;
        if (sqlite3_prepare_v2(st->db,
                               "SELECT trace_id, bytes FROM traces ORDER BY "
                               "updated_ns, trace_id LIMIT 128",
                               -1, &s, NULL) != SQLITE_OK) {
            return -1;
        }
        while (sqlite3_step(s) == SQLITE_ROW && n < 64 &&
               st->total_bytes - freed > st->max_bytes) {
            const char *id = col_text(s, 0);
            if (strlen(id) != 32 || was_touched(in, id)) {
                continue;
            }
            memcpy(victims[n++], id, 33);
            freed += sqlite3_column_int64(s, 1);
        }
        sqlite3_finalize(s);
        if (n == 0) {
            return 0; /* only this request's traces are left */
        }
        for (size_t i = 0; i < n; i++) {
            if (delete_trace(st, victims[i]) != 0) {
                return -1;
            }
        }
        st->total_bytes -= freed;
    }
    return 0;
}

static int ingest_request(ingest *in, const taskspan__export_request *req)
{
    for (size_t i = 0; i < req->n_resource_spans; i++) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
            req->resource_spans[i];
        uint8_t *res = NULL;
        size_t res_len = 0;
        const char *service = NULL;
        if (rs->resource != NULL) {
            service = string_attr(rs->resource->attributes,
                                  rs->resource->n_attributes, "service.name");
        }
        if (!pack(rs->resource != NULL ? &rs->resource->base : NULL, &res,
                  &res_len)) {
            return -1;
        }
        for (size_t j = 0; j < rs->n_scope_spans; j++) {
            const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss =
                rs->scope_spans[j];
            uint8_t *scp = NULL;
            size_t scp_len = 0;
            if (!pack(ss->scope != NULL ? &ss->scope->base : NULL, &scp,
                      &scp_len)) {
                free(res);
                return -1;
            }
            for (size_t k = 0; k < ss->n_spans; k++) {
                if (all_zero(&ss->spans[k]->trace_id) ||
                    all_zero(&ss->spans[k]->span_id)) {
                    in->rejected++;
                    continue;
                }
                if (ingest_span(
                        in, ss->spans[k], service != NULL ? service : "", res,
                        res_len, scp, scp_len,
                        rs->resource != NULL ? rs->resource->attributes : NULL,
                        rs->resource != NULL ? rs->resource->n_attributes
                                             : 0) != 0) {
                    free(scp);
                    free(res);
                    return -1;
                }
            }
            free(scp);
        }
        free(res);
    }
    for (size_t i = 0; i < in->n_touched; i++) {
        if (summarise(in, in->touched[i]) != 0) {
            return -1;
        }
    }
    return evict(in);
}

static int64_t last_seq_locked(taskspan__vstore *st)
{
    sqlite3_stmt *s = NULL;
    int64_t seq = 0;

    if (sqlite3_prepare_v2(st->db,
                           "SELECT seq FROM sqlite_sequence WHERE "
                           "name='spans'",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        seq = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return seq;
}

taskspan_code taskspan__vstore_ingest(taskspan__vstore *st,
                                      const taskspan__export_request *req,
                                      int64_t now_ns, int64_t *out_stored,
                                      int64_t *out_rejected,
                                      int64_t *out_last_seq, char *err,
                                      size_t errlen)
{
    ingest in = {.st = st, .now_ns = now_ns};
    taskspan_code trc = TASKSPAN_OK;

    *out_stored = 0;
    *out_rejected = 0;
    pthread_mutex_lock(&st->lock);
    int64_t total_before = st->total_bytes;
    *out_last_seq = last_seq_locked(st);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
        SQLITE_OK) {
        trc = db_fail(st, err, errlen, "begin");
        goto out;
    }
    if (sqlite3_prepare_v2(st->db,
                           "SELECT span, resource, scope FROM spans WHERE "
                           "trace_id=? AND span_id=?",
                           -1, &in.find, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "DELETE FROM spans WHERE trace_id=? AND span_id=?",
                           -1, &in.del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(
            st->db,
            "INSERT INTO spans (trace_id, span_id, parent_span_id, name,"
            " service, task_id, start_ns, end_ns, status_code, n_events,"
            " span, resource, scope, received_ns)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            -1, &in.ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO trace_events VALUES (?,?)",
                           -1, &in.ev, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO trace_attrs VALUES (?,?,?)",
                           -1, &in.attr, NULL) != SQLITE_OK ||
        ingest_request(&in, req) != 0) {
        trc = db_fail(st, err, errlen, "storing spans");
    }
    sqlite3_finalize(in.find);
    sqlite3_finalize(in.del);
    sqlite3_finalize(in.ins);
    sqlite3_finalize(in.ev);
    sqlite3_finalize(in.attr);
    sqlite3_finalize(in.scan);
    sqlite3_finalize(in.span_cols);
    sqlite3_finalize(in.put);
    sqlite3_finalize(in.bytes);
    if (trc == TASKSPAN_OK &&
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        trc = db_fail(st, err, errlen, "commit");
    }
    if (trc != TASKSPAN_OK) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        st->total_bytes = total_before;
        goto out;
    }
    *out_stored = in.stored;
    *out_rejected = in.rejected;
    *out_last_seq = last_seq_locked(st);
out:
    pthread_mutex_unlock(&st->lock);
    free(in.touched);
    free(in.indexed);
    free(in.sum_spans);
    free(in.sum_ids);
    return trc;
}

int64_t taskspan__vstore_last_seq(taskspan__vstore *st)
{
    pthread_mutex_lock(&st->lock);
    int64_t seq = last_seq_locked(st);
    pthread_mutex_unlock(&st->lock);
    return seq;
}

/* ---- queries ------------------------------------------------------------ */

#define SUMMARY_COLUMNS                                                       \
    "trace_id, task_id, service, root_name, start_ns, end_ns, span_count,"    \
    " error_count, event_count, updated_ns, (root_ended=0 AND updated_ns>?1)"

#define RUNNING_SQL "(root_ended=0 AND updated_ns>?1)"

static taskspan_code run_summaries(taskspan__vstore *st, sqlite3_stmt *s,
                                   taskspan__vstore_trace_cb cb, void *payload,
                                   bool *any)
{
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        taskspan__trace_summary t = {
            .trace_id = col_text(s, 0),
            .task_id = sqlite3_column_type(s, 1) == SQLITE_NULL
                           ? NULL
                           : col_text(s, 1),
            .service = col_text(s, 2),
            .root_name = col_text(s, 3),
            .start_ns = sqlite3_column_int64(s, 4),
            .end_ns = sqlite3_column_int64(s, 5),
            .span_count = sqlite3_column_int64(s, 6),
            .error_count = sqlite3_column_int64(s, 7),
            .event_count = sqlite3_column_int64(s, 8),
            .updated_ns = sqlite3_column_int64(s, 9),
            .running = sqlite3_column_int(s, 10) != 0,
        };
        *any = true;
        if (!cb(&t, payload)) {
            return TASKSPAN_E_NOMEM;
        }
    }
    (void)st;
    return rc == SQLITE_DONE ? TASKSPAN_OK : TASKSPAN_E_IO;
}

taskspan_code taskspan__vstore_list(taskspan__vstore *st,
                                    const taskspan__vstore_filter *f,
                                    int64_t now_ns,
                                    taskspan__vstore_trace_cb cb,
                                    void *payload)
{
    char sql[1024];
    size_t used = 0;
    sqlite3_stmt *s = NULL;
    bool any = false;

#define ADD(text)                                                             \
    used += (size_t)snprintf(sql + used, sizeof sql - used, "%s", text)
    ADD("SELECT " SUMMARY_COLUMNS " FROM traces WHERE 1");
    if (f->service != NULL) {
        ADD(" AND service=?2");
    }
    if (f->task_id != NULL) {
        ADD(" AND task_id=?3");
    }
    if (f->event != NULL) {
        ADD(" AND trace_id IN (SELECT trace_id FROM trace_events"
            " WHERE name=?4)");
    }
    if (f->attr_key != NULL) {
        ADD(" AND trace_id IN (SELECT trace_id FROM trace_attrs"
            " WHERE key=?5 AND value=?6)");
    }
    if (f->has_from) {
        ADD(" AND start_ns>=?7");
    }
    if (f->has_to) {
        ADD(" AND start_ns<=?8");
    }
    if (f->status != NULL && strcmp(f->status, "running") == 0) {
        ADD(" AND " RUNNING_SQL);
    } else if (f->status != NULL && strcmp(f->status, "error") == 0) {
        ADD(" AND NOT " RUNNING_SQL " AND error_count>0");
    } else if (f->status != NULL) {
        ADD(" AND NOT " RUNNING_SQL " AND error_count=0");
    }
    ADD(" ORDER BY start_ns DESC, trace_id LIMIT ?9");
#undef ADD
    pthread_mutex_lock(&st->lock);
    taskspan_code trc = TASKSPAN_E_IO;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, now_ns - TASKSPAN__VSTORE_RUNNING_WINDOW_NS);
        sqlite3_bind_text(s, 2, f->service, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, f->task_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, f->event, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, f->attr_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, f->attr_value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, f->from_ns);
        sqlite3_bind_int64(s, 8, f->to_ns);
        sqlite3_bind_int64(s, 9, f->limit);
        trc = run_summaries(st, s, cb, payload, &any);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return trc;
}

taskspan_code taskspan__vstore_get(taskspan__vstore *st, const char *trace_id,
                                   int64_t now_ns,
                                   taskspan__vstore_trace_cb cb, void *payload)
{
    sqlite3_stmt *s = NULL;
    bool any = false;
    taskspan_code trc = TASKSPAN_E_IO;

    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(
            st->db, "SELECT " SUMMARY_COLUMNS " FROM traces WHERE trace_id=?2",
            -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, now_ns - TASKSPAN__VSTORE_RUNNING_WINDOW_NS);
        sqlite3_bind_text(s, 2, trace_id, -1, SQLITE_STATIC);
        trc = run_summaries(st, s, cb, payload, &any);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return trc == TASKSPAN_OK && !any ? TASKSPAN_E_NOT_FOUND : trc;
}

static taskspan_code run_spans(sqlite3_stmt *s, taskspan__vstore_span_cb cb,
                               void *payload, bool *any)
{
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        taskspan__stored_span sp = {
            .seq = sqlite3_column_int64(s, 0),
            .trace_id = col_text(s, 1),
            .span = sqlite3_column_blob(s, 2),
            .span_len = (size_t)sqlite3_column_bytes(s, 2),
            .resource = sqlite3_column_blob(s, 3),
            .resource_len = (size_t)sqlite3_column_bytes(s, 3),
            .scope = sqlite3_column_blob(s, 4),
            .scope_len = (size_t)sqlite3_column_bytes(s, 4),
        };
        *any = true;
        if (!cb(&sp, payload)) {
            return TASKSPAN_E_NOMEM;
        }
    }
    return rc == SQLITE_DONE ? TASKSPAN_OK : TASKSPAN_E_IO;
}

taskspan_code taskspan__vstore_trace_spans(taskspan__vstore *st,
                                           const char *trace_id,
                                           taskspan__vstore_span_cb cb,
                                           void *payload)
{
    sqlite3_stmt *s = NULL;
    bool any = false;
    taskspan_code trc = TASKSPAN_E_IO;

    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT seq, trace_id, span, resource, scope FROM "
                           "spans WHERE trace_id=? ORDER BY seq",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, trace_id, -1, SQLITE_STATIC);
        trc = run_spans(s, cb, payload, &any);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return trc == TASKSPAN_OK && !any ? TASKSPAN_E_NOT_FOUND : trc;
}

taskspan_code taskspan__vstore_spans_after(taskspan__vstore *st, int64_t after,
                                           const char *trace_id, int64_t limit,
                                           taskspan__vstore_span_cb cb,
                                           void *payload)
{
    sqlite3_stmt *s = NULL;
    bool any = false;
    taskspan_code trc = TASKSPAN_E_IO;

    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db,
                           trace_id != NULL
                               ? "SELECT seq, trace_id, span, resource, scope"
                                 " FROM spans WHERE trace_id=?3 AND seq>?1"
                                 " ORDER BY seq LIMIT ?2"
                               : "SELECT seq, trace_id, span, resource, scope"
                                 " FROM spans WHERE seq>?1 ORDER BY seq"
                                 " LIMIT ?2",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int64(s, 2, limit);
        if (trace_id != NULL) {
            sqlite3_bind_text(s, 3, trace_id, -1, SQLITE_STATIC);
        }
        trc = run_spans(s, cb, payload, &any);
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return trc;
}

taskspan_code taskspan__vstore_services(taskspan__vstore *st,
                                        taskspan__vstore_name_cb cb,
                                        void *payload)
{
    sqlite3_stmt *s = NULL;
    taskspan_code trc = TASKSPAN_E_IO;
    int rc = SQLITE_ERROR;

    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT DISTINCT service FROM traces WHERE "
                           "service<>'' ORDER BY service",
                           -1, &s, NULL) == SQLITE_OK) {
        trc = TASKSPAN_OK;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (!cb(col_text(s, 0), payload)) {
                trc = TASKSPAN_E_NOMEM;
                break;
            }
        }
        if (trc == TASKSPAN_OK && rc != SQLITE_DONE) {
            trc = TASKSPAN_E_IO;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return trc;
}
