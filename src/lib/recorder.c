/*
 * recorder.c -- the recorder handle: open and close, where the buffer lives,
 * the trace context a runner was started in, and the generic emit.
 *
 * A recorder owns one store connection. A mutex serialises the calls on it,
 * which makes one recorder safe to share between threads; processes share
 * the buffer file through SQLite's own locking. Emit validates and encodes
 * outside the mutex, so threads only queue for the commit itself.
 */
#include "internal.h"

#include "config.h"
#include "encode_otlp.h"
#include "exporter.h"
#include "inspect.h"
#include "journal.h"
#include "recovery.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TASKSPAN__MAGIC 0x7a5c5ba9u

struct taskspan {
    unsigned magic;
    char *db_path;
    const taskspan__store_ops *store_ops;
    void *store;
    /* The journal mode's journal (journal.c), or NULL. */
    taskspan__journal *journal;
    taskspan__store_config store_cfg;
    unsigned flags;
    /* Trace context from TRACEPARENT or the traceparent option. */
    bool has_trace_context;
    uint8_t trace_id[16];
    uint8_t parent_span_id[8];
    uint8_t trace_flags;
    /* Export: the configuration, this process's resource row, the
     * background exporter (NULL when export is off) and the one flush
     * uses when there is no background exporter (created on demand). */
    bool have_config;
    taskspan__export_config export_cfg;
    int64_t resource_id;
    taskspan__exporter *exporter;
    taskspan__exporter *inline_exporter;
    int close_timeout_ms;
    atomic_uint closes_since_wake;
    /* Serialises store calls and guards errmsg and inline_exporter. */
    pthread_mutex_t lock;
    char errmsg[TASKSPAN__MSG_SIZE];
    /* What open did that the runner should hear about, or "". */
    char open_warning[3 * TASKSPAN__MSG_SIZE];
    atomic_uint_fast64_t events_recorded;
    atomic_uint_fast64_t events_failed;
    atomic_int last_error;
};

int64_t taskspan__now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t taskspan__mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* mkdir -p for the directories of path (not the file itself). Only used for
 * the default location: a path the user gave names a directory they own. */
static int make_parent_dirs(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return ENOMEM;
    }
    for (char *p = copy + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            free(copy);
            return e;
        }
        *p = '/';
    }
    free(copy);
    return 0;
}

static char *join_path(const char *dir, const char *rest)
{
    size_t n = strlen(dir) + strlen(rest) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s%s", dir, rest);
    }
    return p;
}

/* The buffer path: the option, else TASKSPAN_DB, else the XDG state dir. */
static taskspan_code resolve_db_path(char **out, const taskspan_options *o,
                                     char *err, size_t errlen)
{
    const char *env;

    *out = NULL;
    if (o->db_path != NULL) {
        if (o->db_path[0] == '\0') {
            return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "db_path is empty");
        }
        *out = strdup(o->db_path);
    } else if ((env = getenv("TASKSPAN_DB")) != NULL && env[0] != '\0') {
        *out = strdup(env);
    } else {
        if ((env = getenv("XDG_STATE_HOME")) != NULL && env[0] == '/') {
            *out = join_path(env, "/taskspan/buffer.db");
        } else if ((env = getenv("HOME")) != NULL && env[0] == '/') {
            *out = join_path(env, "/.local/state/taskspan/buffer.db");
        } else {
            return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                                  "no buffer path: set TASKSPAN_DB, "
                                  "XDG_STATE_HOME or HOME");
        }
        if (*out != NULL &&
            !(o->flags & (TASKSPAN_OPEN_NO_CREATE | TASKSPAN_OPEN_READONLY))) {
            int e = make_parent_dirs(*out);
            if (e != 0) {
                taskspan_code code = e == EACCES || e == EROFS
                                         ? TASKSPAN_E_READONLY
                                         : TASKSPAN_E_IO;
                taskspan__fail(err, errlen, code,
                               "cannot create the "
                               "directory of %s: %s",
                               *out, strerror(e));
                free(*out);
                *out = NULL;
                return code;
            }
        }
    }
    if (*out == NULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_NOMEM, "out of memory");
    }
    return TASKSPAN_OK;
}

/* The trace the recorder's new tasks join: the option wins over the
 * environment; an invalid option is an error, an invalid environment
 * variable is ignored (the runner's environment must not stop recording). */
static taskspan_code resolve_trace_context(taskspan *ts,
                                           const taskspan_options *o,
                                           char *err, size_t errlen)
{
    const char *tp = o->traceparent;
    bool explicit_option = tp != NULL;

    if (tp == NULL) {
        tp = getenv("TRACEPARENT");
    }
    if (tp == NULL || tp[0] == '\0') {
        return TASKSPAN_OK;
    }
    if (taskspan_traceparent_parse(ts->trace_id, ts->parent_span_id,
                                   &ts->trace_flags, tp) == TASKSPAN_OK) {
        ts->has_trace_context = true;
        return TASKSPAN_OK;
    }
    if (explicit_option) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "traceparent '%.60s' is not a valid W3C "
                              "traceparent",
                              tp);
    }
    return TASKSPAN_OK;
}

static taskspan_code check_options(const taskspan_options *o, char *err,
                                   size_t errlen)
{
    if (o->version < 1 || o->version > TASKSPAN_OPTIONS_VERSION) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "options version %d is not supported "
                              "(initialise with TASKSPAN_OPTIONS_INIT)",
                              o->version);
    }
    if (o->sync_mode != TASKSPAN_SYNC_NORMAL &&
        o->sync_mode != TASKSPAN_SYNC_FULL &&
        o->sync_mode != TASKSPAN_SYNC_JOURNAL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "sync_mode %d is not a taskspan_sync_mode",
                              (int)o->sync_mode);
    }
    if (o->busy_timeout_ms < 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "busy_timeout_ms is negative");
    }
    if (o->flags &
        ~(unsigned)(TASKSPAN_OPEN_NO_CREATE | TASKSPAN_OPEN_READONLY |
                    TASKSPAN_OPEN_VERIFY)) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "unknown flags 0x%x", o->flags);
    }
    return TASKSPAN_OK;
}

static const char *env_lookup(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

/* Record this process's resource once, so each event can name it. */
static taskspan_code store_resource(taskspan *ts, char *err, size_t errlen)
{
    char *json = NULL;
    taskspan_code rc = taskspan__payload_encode(
        &json, ts->export_cfg.resource.attrs, ts->export_cfg.resource.n, err,
        errlen);
    if (rc == TASKSPAN_OK) {
        rc = ts->store_ops->resource_put(ts->store, json, &ts->resource_id,
                                         err, errlen);
    }
    free(json);
    return rc;
}

/* Resolve the export configuration, record the resource, and start the
 * background exporter when export is on. */
static taskspan_code setup_export(taskspan *ts, const taskspan_options *o,
                                  char *err, size_t errlen)
{
    taskspan_code rc = taskspan__config_load(&ts->export_cfg, o, env_lookup,
                                             NULL, err, errlen);
    if (rc != TASKSPAN_OK) {
        return rc;
    }
    ts->have_config = true;
    ts->close_timeout_ms = ts->export_cfg.close_timeout_ms;
    rc = store_resource(ts, err, errlen);
    if (rc == TASKSPAN_OK && ts->export_cfg.enabled) {
        rc = taskspan__exporter_new(&ts->exporter, ts->db_path, &ts->store_cfg,
                                    &ts->export_cfg, NULL, true, err, errlen);
    }
    return rc;
}

/* Move what this recorder's journal holds into the store; the caller
 * holds ts->lock. A no-op outside the journal mode. */
static taskspan_code journal_drain_locked(taskspan *ts, char *err,
                                          size_t errlen)
{
    size_t n = 0;
    if (ts->journal == NULL) {
        return TASKSPAN_OK;
    }
    return taskspan__journal_move(ts->journal, ts->store_ops, ts->store, &n,
                                  err, errlen);
}

/* The journal thread's pass: move, then let the exporter look. A failure
 * (a busy or full buffer) leaves the events in the journal for the next
 * pass and is remembered as the recorder's last message. */
static void journal_mover(void *ctx)
{
    taskspan *ts = ctx;
    char msg[TASKSPAN__MSG_SIZE] = "";
    size_t n = 0;

    pthread_mutex_lock(&ts->lock);
    taskspan_code rc = taskspan__journal_move(ts->journal, ts->store_ops,
                                              ts->store, &n, msg, sizeof msg);
    if (rc != TASKSPAN_OK) {
        snprintf(ts->errmsg, sizeof ts->errmsg, "%s", msg);
    }
    pthread_mutex_unlock(&ts->lock);
    if (n > 0 && ts->exporter != NULL) {
        taskspan__exporter_wake(ts->exporter);
    }
}

static bool journal_wanted(const taskspan_options *o)
{
    const char *env = getenv("TASKSPAN_JOURNAL");
    return o->sync_mode == TASKSPAN_SYNC_JOURNAL ||
           (o->sync_mode == TASKSPAN_SYNC_NORMAL && env != NULL &&
            strcmp(env, "1") == 0);
}

/* A writable open moves the journals of recorders that died (in any
 * mode: the next run finds them), then starts its own when asked. */
static taskspan_code setup_journal(taskspan *ts, const taskspan_options *o,
                                   char *err, size_t errlen)
{
    size_t n = 0;
    taskspan_code rc = taskspan__journal_replay(ts->db_path, ts->store_ops,
                                                ts->store, &n, err, errlen);
    if (rc == TASKSPAN_OK && journal_wanted(o)) {
        rc = taskspan__journal_open(&ts->journal, ts->db_path, journal_mover,
                                    ts, err, errlen);
    }
    return rc;
}

taskspan_code taskspan_open(taskspan **out, const taskspan_options *opts,
                            char *errbuf)
{
    static const taskspan_options defaults = TASKSPAN_OPTIONS_INIT;
    taskspan_options current = TASKSPAN_OPTIONS_INIT;
    const taskspan_options *o = opts != NULL ? opts : &defaults;

    /* An older caller's struct ends at the last field of its version (flags
     * for 1, close_timeout_ms for 2): copy what it has and keep the
     * defaults for the rest, never reading past its end. */
    if (opts != NULL && (opts->version == 1 || opts->version == 2)) {
        size_t end = opts->version == 1
                         ? offsetof(taskspan_options, flags) +
                               sizeof opts->flags
                         : offsetof(taskspan_options, close_timeout_ms) +
                               sizeof opts->close_timeout_ms;
        memcpy(&current, opts, end);
        current.version = TASKSPAN_OPTIONS_VERSION;
        o = &current;
    }
    char msg[TASKSPAN__MSG_SIZE] = "";
    char cap_warning[TASKSPAN__MSG_SIZE] = "";
    int64_t max_bytes = 0;
    taskspan_code code;
    taskspan *ts = NULL;

    if (errbuf != NULL) {
        errbuf[0] = '\0';
    }
    if (out == NULL) {
        code = taskspan__fail(msg, sizeof msg, TASKSPAN_E_INVALID_ARG,
                              "out is NULL");
        goto done;
    }
    *out = NULL;
    code = check_options(o, msg, sizeof msg);
    if (code == TASKSPAN_OK) {
        code = taskspan__buffer_cap_resolve(
            &max_bytes, o->max_bytes, getenv("TASKSPAN_MAX_BYTES"),
            cap_warning, sizeof cap_warning, msg, sizeof msg);
    }
    if (code != TASKSPAN_OK) {
        goto done;
    }
    ts = calloc(1, sizeof *ts);
    if (ts == NULL) {
        code = taskspan__fail(msg, sizeof msg, TASKSPAN_E_NOMEM,
                              "out of memory");
        goto done;
    }
    ts->magic = TASKSPAN__MAGIC;
    ts->flags = o->flags;
    ts->store_ops = &taskspan__store_sqlite;
    if (pthread_mutex_init(&ts->lock, NULL) != 0) {
        free(ts);
        ts = NULL;
        code = taskspan__fail(msg, sizeof msg, TASKSPAN_E_NOMEM,
                              "cannot create a mutex");
        goto done;
    }
    code = resolve_trace_context(ts, o, msg, sizeof msg);
    if (code == TASKSPAN_OK) {
        code = resolve_db_path(&ts->db_path, o, msg, sizeof msg);
    }
    if (code == TASKSPAN_OK) {
        ts->store_cfg = (taskspan__store_config){
            .sync_mode = o->sync_mode == TASKSPAN_SYNC_FULL
                             ? TASKSPAN_SYNC_FULL
                             : TASKSPAN_SYNC_NORMAL,
            .busy_timeout_ms = o->busy_timeout_ms,
            .flags = o->flags,
            .max_bytes = max_bytes,
            .may_repair = !(
                o->flags & (TASKSPAN_OPEN_NO_CREATE | TASKSPAN_OPEN_READONLY)),
        };
        code = ts->store_ops->open(&ts->store, ts->db_path, &ts->store_cfg,
                                   msg, sizeof msg);
        /* The exporters' connections reuse store_cfg: they never repair. */
        ts->store_cfg.may_repair = false;
    }
    if (code == TASKSPAN_OK) {
        const char *notice = ts->store_ops->open_notice(ts->store);
        snprintf(ts->open_warning, sizeof ts->open_warning, "%s%s%s", notice,
                 notice[0] != '\0' && cap_warning[0] != '\0' ? "; " : "",
                 cap_warning);
    }
    if (code == TASKSPAN_OK && !(o->flags & TASKSPAN_OPEN_READONLY)) {
        code = setup_export(ts, o, msg, sizeof msg);
    }
    if (code == TASKSPAN_OK && !(o->flags & TASKSPAN_OPEN_READONLY)) {
        code = setup_journal(ts, o, msg, sizeof msg);
    }
    if (code == TASKSPAN_OK) {
        *out = ts;
        ts = NULL;
    }
done:
    taskspan_close(ts);
    if (code != TASKSPAN_OK && errbuf != NULL) {
        snprintf(errbuf, TASKSPAN_ERRBUF_SIZE, "%s", msg);
    }
    return code;
}

void taskspan_close(taskspan *ts)
{
    if (ts == NULL) {
        return;
    }
    /* The journal first, so the exporters see its events: move them all;
     * the file goes only when that worked (else the next open replays). */
    if (ts->journal != NULL) {
        char msg[TASKSPAN__MSG_SIZE];
        taskspan__journal_stop(ts->journal);
        pthread_mutex_lock(&ts->lock);
        bool moved = journal_drain_locked(ts, msg, sizeof msg) == TASKSPAN_OK;
        taskspan__journal_close(ts->journal, ts->store_ops, ts->store, moved);
        ts->journal = NULL;
        pthread_mutex_unlock(&ts->lock);
    }
    /* The exporters first: the background one delivers what it can
     * within close_timeout_ms, and both use their own connections. */
    taskspan__exporter_free(ts->exporter, ts->close_timeout_ms);
    taskspan__exporter_free(ts->inline_exporter, 0);
    if (ts->store != NULL) {
        ts->store_ops->close(ts->store);
    }
    if (ts->have_config) {
        taskspan__config_free(&ts->export_cfg);
    }
    pthread_mutex_destroy(&ts->lock);
    free(ts->db_path);
    ts->magic = 0;
    free(ts);
}

const char *taskspan_db_path(const taskspan *ts)
{
    return ts != NULL ? ts->db_path : NULL;
}

const char *taskspan_errmsg(const taskspan *ts)
{
    return ts != NULL ? ts->errmsg : "recorder is NULL";
}

void taskspan_errmsg_copy(const taskspan *ts, char *buf, size_t size)
{
    if (buf == NULL || size == 0) {
        return;
    }
    if (ts == NULL) {
        snprintf(buf, size, "recorder is NULL");
        return;
    }
    /* The lock is logically const: reading the message must not race a
     * writer of it. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&ts->lock;
    pthread_mutex_lock(lock);
    snprintf(buf, size, "%s", ts->errmsg);
    pthread_mutex_unlock(lock);
}

taskspan_code taskspan_get_stats(taskspan_stats *out, const taskspan *ts)
{
    if (out == NULL || ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    out->events_recorded = atomic_load(&ts->events_recorded);
    out->events_failed = atomic_load(&ts->events_failed);
    out->last_error = (taskspan_code)atomic_load(&ts->last_error);
    return TASKSPAN_OK;
}

const char *taskspan_open_warning(const taskspan *ts)
{
    return ts != NULL ? ts->open_warning : "recorder is NULL";
}

taskspan_code taskspan_get_capacity(taskspan_capacity *out, taskspan *ts)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__store_capacity c;

    if (out == NULL || ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&ts->lock);
    taskspan_code rc = ts->store_ops->capacity(ts->store, &c, msg, sizeof msg);
    pthread_mutex_unlock(&ts->lock);
    if (rc != TASKSPAN_OK) {
        return taskspan__record_failure(ts, rc, false, msg);
    }
    out->max_bytes = (uint64_t)c.max_bytes;
    out->used_bytes = (uint64_t)c.used_bytes;
    out->reusable_bytes = (uint64_t)c.reusable_bytes;
    out->refused_cap = c.refused_cap;
    out->refused_disk = c.refused_disk;
    out->tasks_pruned_for_room = c.pruned_for_room;
    return TASKSPAN_OK;
}

taskspan_code taskspan__record_failure(taskspan *ts, taskspan_code code,
                                       bool counted, const char *msg)
{
    pthread_mutex_lock(&ts->lock);
    snprintf(ts->errmsg, sizeof ts->errmsg, "%s", msg);
    pthread_mutex_unlock(&ts->lock);
    if (counted) {
        atomic_fetch_add(&ts->events_failed, 1);
        atomic_store(&ts->last_error, (int)code);
    }
    return code;
}

/* ---- emit ---------------------------------------------------------------- */

static bool name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
           c == ':';
}

/* A required or optional text field: present when required, not empty when
 * present, within max bytes, and (for names) made of name characters. */
static bool field_ok(const char *what, const char *v, bool required,
                     size_t max, bool is_name, char *err, size_t errlen)
{
    if (v == NULL) {
        if (required) {
            taskspan__fail(err, errlen, 0, "%s is NULL", what);
        }
        return !required;
    }
    size_t n = strlen(v);
    if (n == 0) {
        taskspan__fail(err, errlen, 0, "%s is empty", what);
        return false;
    }
    if (n > max) {
        taskspan__fail(err, errlen, 0, "%s is %zu bytes, more than %zu", what,
                       n, max);
        return false;
    }
    for (size_t i = 0; is_name && i < n; i++) {
        if (!name_char_ok(v[i])) {
            taskspan__fail(err, errlen, 0,
                           "%s '%.64s' has a character "
                           "other than letters, digits, '_', '.', '-', ':'",
                           what, v);
            return false;
        }
    }
    return true;
}

static bool event_ok(const taskspan_event *ev, char *err, size_t errlen)
{
    if (ev->version < 1 || ev->version > TASKSPAN_EVENT_VERSION) {
        taskspan__fail(err, errlen, 0,
                       "event version %d is not supported "
                       "(initialise with TASKSPAN_EVENT_INIT)",
                       ev->version);
        return false;
    }
    if (ev->ts_ns < 0) {
        taskspan__fail(err, errlen, 0, "ts_ns is negative");
        return false;
    }
    /* Task ids and span keys are the runner's own identifiers (paths, UUIDs,
     * "work_<id>"): any text but empty. Types, actors and phases are names. */
    return field_ok("task_id", ev->task_id, true, TASKSPAN_MAX_ID_LEN, false,
                    err, errlen) &&
           field_ok("event_type", ev->event_type, true, TASKSPAN_MAX_NAME_LEN,
                    true, err, errlen) &&
           field_ok("actor", ev->actor, false, TASKSPAN_MAX_NAME_LEN, true,
                    err, errlen) &&
           field_ok("span_key", ev->span_key, false, TASKSPAN_MAX_ID_LEN,
                    false, err, errlen) &&
           field_ok("parent_span_key", ev->parent_span_key, false,
                    TASKSPAN_MAX_ID_LEN, false, err, errlen) &&
           field_ok("phase", ev->phase, false, TASKSPAN_MAX_NAME_LEN, true,
                    err, errlen);
}

/* Like the OTel batch processor, wake the exporter early once a batch of
 * spans may have closed, instead of waiting for the schedule delay. */
static void note_closing(taskspan *ts, const char *type)
{
    static const char *const closing[] = {
        "work_item_done", "work_item_failed",  "runner_exit",
        "runner_spawn",   "recovery_requeued", "recovery_detected",
    };
    size_t len = strlen(type);
    bool step_end = len > 4 && strcmp(type + len - 4, "_end") == 0;

    if (ts->exporter == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof closing / sizeof closing[0]; i++) {
        if (step_end || strcmp(type, closing[i]) == 0) {
            unsigned n = atomic_fetch_add(&ts->closes_since_wake, 1) + 1;
            if (n >= ts->export_cfg.max_batch_spans ||
                ts->export_cfg.schedule_delay_ms == 0) {
                atomic_store(&ts->closes_since_wake, 0);
                taskspan__exporter_wake(ts->exporter);
            }
            return;
        }
    }
}

taskspan_code taskspan_emit(int64_t *out_seq, taskspan *ts,
                            const taskspan_event *ev)
{
    /* Only the first byte: clearing all of it was a measurable part of
     * an emit in the journal mode. */
    char msg[TASKSPAN__MSG_SIZE];
    char *payload = NULL;
    int64_t seq = 0;
    taskspan_code code;

    msg[0] = '\0';

    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (ev == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true,
                                        "event is NULL");
    }
    if (!event_ok(ev, msg, sizeof msg)) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
    }
    code = taskspan__payload_encode(&payload, ev->attrs, ev->n_attrs, msg,
                                    sizeof msg);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, true, msg);
    }
    taskspan__append rec = {
        .task_id = ev->task_id,
        .event_type = ev->event_type,
        .actor = ev->actor,
        .span_key = ev->span_key != NULL ? ev->span_key : "main",
        .parent_span_key = ev->parent_span_key,
        .phase = ev->phase,
        .payload_json = payload,
        .ts_ns = ev->ts_ns != 0 ? ev->ts_ns : taskspan__now_ns(),
        .resource_id = ts->resource_id,
        .starts_incarnation = strcmp(ev->event_type, "runner_spawn") == 0,
        .has_trace_context = ts->has_trace_context,
        .trace_flags = ts->trace_flags,
    };
    memcpy(rec.trace_id, ts->trace_id, sizeof rec.trace_id);
    memcpy(rec.parent_span_id, ts->parent_span_id, sizeof rec.parent_span_id);

    if (ts->journal != NULL) {
        code = taskspan__journal_append(ts->journal, &rec, msg, sizeof msg);
    } else {
        pthread_mutex_lock(&ts->lock);
        code = ts->store_ops->append(ts->store, &rec, &seq, msg, sizeof msg);
        pthread_mutex_unlock(&ts->lock);
    }
    free(payload);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, true, msg);
    }
    atomic_fetch_add(&ts->events_recorded, 1);
    if (out_seq != NULL) {
        *out_seq = seq;
    }
    note_closing(ts, ev->event_type);
    return TASKSPAN_OK;
}

/* One recovery transaction (recovery.c) on the recorder's store, under
 * its lock, with the append template every event of it starts from. */
taskspan_code taskspan__recorder_run(taskspan *ts, taskspan__recovery_fn fn,
                                     void *ctx, bool counted)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    size_t n_events = 0;
    taskspan__append tmpl = {
        .resource_id = ts->resource_id,
        .has_trace_context = ts->has_trace_context,
        .trace_flags = ts->trace_flags,
    };
    memcpy(tmpl.trace_id, ts->trace_id, sizeof tmpl.trace_id);
    memcpy(tmpl.parent_span_id, ts->parent_span_id,
           sizeof tmpl.parent_span_id);

    pthread_mutex_lock(&ts->lock);
    /* Journaled events first, so seqs keep the order of the calls. */
    taskspan_code code = journal_drain_locked(ts, msg, sizeof msg);
    if (code == TASKSPAN_OK) {
        code = fn(ts->store_ops->recovery, ts->store, &tmpl, ctx, &n_events,
                  msg, sizeof msg);
    }
    pthread_mutex_unlock(&ts->lock);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, counted, msg);
    }
    if (n_events > 0) {
        atomic_fetch_add(&ts->events_recorded, n_events);
        note_closing(ts, "work_item_done");
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_task_spans(taskspan_spans **out, taskspan *ts,
                                  const char *task_id)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__task_events te;
    taskspan_code code;

    if (out != NULL) {
        *out = NULL;
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL || task_id == NULL || task_id[0] == '\0') {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, false,
                                        out == NULL ? "out is NULL"
                                                    : "task_id is empty");
    }
    pthread_mutex_lock(&ts->lock);
    code = journal_drain_locked(ts, msg, sizeof msg);
    if (code == TASKSPAN_OK) {
        code = ts->store_ops->load_task(ts->store, task_id, &te, msg,
                                        sizeof msg);
    }
    pthread_mutex_unlock(&ts->lock);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, false, msg);
    }
    code = taskspan__spans_build(out, task_id, &te);
    taskspan__task_events_free(&te);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, false,
                                        "out of memory "
                                        "building the spans");
    }
    return TASKSPAN_OK;
}

/* ---- export -------------------------------------------------------------- */

/* The exporter flush uses: the background one, else one made on demand
 * (which runs in the caller's thread). */
static taskspan_code flush_exporter(taskspan *ts, taskspan__exporter **out,
                                    char *err, size_t errlen)
{
    taskspan_code rc = TASKSPAN_OK;
    if (ts->exporter != NULL) {
        *out = ts->exporter;
        return TASKSPAN_OK;
    }
    if (ts->export_cfg.disabled_reason[0] != '\0') {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG, "%s",
                              ts->export_cfg.disabled_reason);
    }
    pthread_mutex_lock(&ts->lock);
    if (ts->inline_exporter == NULL) {
        rc = taskspan__exporter_new(&ts->inline_exporter, ts->db_path,
                                    &ts->store_cfg, &ts->export_cfg, NULL,
                                    false, err, errlen);
    }
    *out = ts->inline_exporter;
    pthread_mutex_unlock(&ts->lock);
    return rc;
}

taskspan_code taskspan_flush(taskspan *ts, int timeout_ms)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__exporter *ex = NULL;

    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (!ts->have_config) {
        return taskspan__record_failure(ts, TASKSPAN_E_READONLY, false,
                                        "the recorder was opened read-only");
    }
    pthread_mutex_lock(&ts->lock);
    taskspan_code rc = journal_drain_locked(ts, msg, sizeof msg);
    pthread_mutex_unlock(&ts->lock);
    if (rc == TASKSPAN_OK) {
        rc = flush_exporter(ts, &ex, msg, sizeof msg);
    }
    if (rc == TASKSPAN_OK) {
        rc = taskspan__exporter_flush(ex, timeout_ms, msg, sizeof msg);
    }
    if (rc != TASKSPAN_OK) {
        return taskspan__record_failure(ts, rc, false, msg);
    }
    return TASKSPAN_OK;
}

static void add_counts(taskspan_export_stats *out,
                       const taskspan__exporter *ex)
{
    taskspan__exporter_counts c;
    if (ex == NULL) {
        return;
    }
    taskspan__exporter_counts_get(ex, &c);
    out->spans_delivered += c.spans_delivered;
    out->spans_rejected += c.spans_rejected;
    out->requests_ok += c.requests_ok;
    out->requests_failed += c.requests_failed;
    out->partial_rejected += c.partial_rejected;
}

taskspan_code taskspan_get_export_stats(taskspan_export_stats *out,
                                        taskspan *ts)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    taskspan__export_counts counts;

    if (out == NULL || ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    out->enabled = ts->exporter != NULL;
    add_counts(out, ts->exporter);
    pthread_mutex_lock(&ts->lock);
    add_counts(out, ts->inline_exporter);
    taskspan_code rc = ts->store_ops->export_counts(ts->store, &counts, msg,
                                                    sizeof msg);
    pthread_mutex_unlock(&ts->lock);
    if (rc != TASKSPAN_OK) {
        return taskspan__record_failure(ts, rc, false, msg);
    }
    out->spans_pending = counts.pending;
    out->spans_delivered_total = counts.delivered;
    out->spans_rejected_total = counts.rejected;
    out->last_error_ns = counts.last_error_ns;
    snprintf(out->last_error, sizeof out->last_error, "%s", counts.last_error);
    if (ts->have_config) {
        snprintf(out->endpoint, sizeof out->endpoint, "%.*s",
                 (int)sizeof out->endpoint - 1,
                 ts->export_cfg.endpoint != NULL ? ts->export_cfg.endpoint
                                                 : "");
        snprintf(out->config_warnings, sizeof out->config_warnings, "%.*s",
                 (int)sizeof out->config_warnings - 1,
                 ts->export_cfg.warnings);
    }
    return TASKSPAN_OK;
}

/* ---- dump ---------------------------------------------------------------- */

/* One resource of a dump: its row id and decoded attributes. */
typedef struct dump_resource {
    int64_t id;
    taskspan__attr_list attrs; /* empty: use the own resource */
    bool own;
} dump_resource;

/* Everything one dump holds; freed by dump_free(). */
typedef struct dump_state {
    taskspan_spans *spans;
    taskspan__export_config cfg; /* when the recorder has none */
    bool have_cfg;
    const taskspan__export_config *use_cfg; /* NULL: defaults */
    taskspan_span *copies;      /* one per span, open ones adjusted */
    taskspan_attr **open_attrs; /* per span: attrs + taskspan.open */
    size_t n;
    dump_resource *res;
    size_t n_res;
    size_t *res_of; /* per span: its index in res */
    taskspan__arena arena;
} dump_state;

static void dump_free(dump_state *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->open_attrs != NULL) {
            free(d->open_attrs[i]);
        }
    }
    for (size_t i = 0; i < d->n_res; i++) {
        taskspan__attr_list_free(&d->res[i].attrs);
    }
    free(d->open_attrs);
    free(d->copies);
    free(d->res);
    free(d->res_of);
    taskspan__arena_free(&d->arena);
    if (d->have_cfg) {
        taskspan__config_free(&d->cfg);
    }
    taskspan_spans_free(d->spans);
}

/* The span as the dump shows it: an open one gets an end time (its last
 * event's) and taskspan.open = true. */
static taskspan_code dump_span(dump_state *d, size_t i)
{
    const taskspan_span *s = taskspan_spans_get(d->spans, i);
    taskspan_span *c = &d->copies[i];

    *c = *s;
    if (!s->is_open) {
        return TASKSPAN_OK;
    }
    c->end_ns = s->n_events > 0 ? s->events[s->n_events - 1].time_ns
                                : s->start_ns;
    taskspan_attr *a = malloc((s->n_attrs + 1) * sizeof *a);
    if (a == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    if (s->n_attrs > 0) {
        memcpy(a, s->attrs, s->n_attrs * sizeof *a);
    }
    a[s->n_attrs] = taskspan_attr_bool("taskspan.open", 1);
    d->open_attrs[i] = a;
    c->attrs = a;
    c->n_attrs = s->n_attrs + 1;
    return TASKSPAN_OK;
}

/* The index in d->res of resource row id, reading the row if new. */
static taskspan_code dump_resource_of(taskspan *ts, dump_state *d, int64_t id,
                                      size_t *out, char *err, size_t errlen)
{
    char *json = NULL;
    taskspan_code rc = TASKSPAN_OK;

    for (size_t r = 0; r < d->n_res; r++) {
        if (d->res[r].id == id) {
            *out = r;
            return TASKSPAN_OK;
        }
    }
    dump_resource *r = &d->res[d->n_res];
    r->id = id;
    r->own = true;
    if (id != 0) {
        pthread_mutex_lock(&ts->lock);
        rc = ts->store_ops->resource_get(ts->store, id, &json, err, errlen);
        pthread_mutex_unlock(&ts->lock);
        if (rc == TASKSPAN_OK) {
            rc = taskspan__payload_decode(&r->attrs, &d->arena, json);
            r->own = rc != TASKSPAN_OK;
        } else if (rc == TASKSPAN_E_NOT_FOUND) {
            rc = TASKSPAN_OK; /* pruned by hand: use our own */
        }
    }
    free(json);
    *out = d->n_res++;
    return rc;
}

/* Build the dump of d's spans in the chosen format. */
static taskspan_code dump_encode(dump_state *d, const taskspan__limits *lim,
                                 int json, char **out, size_t *out_len)
{
    taskspan__span_group *groups = calloc(d->n_res, sizeof *groups);
    taskspan__resource_group *pgroups = calloc(d->n_res, sizeof *pgroups);
    const taskspan_span **order = calloc(d->n ? d->n : 1, sizeof *order);
    uint8_t **bodies = calloc(d->n ? d->n : 1, sizeof *bodies);
    size_t *lens = calloc(d->n ? d->n : 1, sizeof *lens);
    uint8_t **res_bytes = calloc(d->n_res ? d->n_res : 1, sizeof *res_bytes);
    size_t k = 0;
    taskspan_code rc = TASKSPAN_E_NOMEM;
    const taskspan__export_config *cfg = d->use_cfg;

    if ((d->n_res > 0 && (groups == NULL || pgroups == NULL)) ||
        order == NULL || bodies == NULL || lens == NULL || res_bytes == NULL) {
        goto done;
    }
    rc = TASKSPAN_OK;
    for (size_t r = 0; r < d->n_res && rc == TASKSPAN_OK; r++) {
        const dump_resource *res = &d->res[r];
        taskspan__span_group *g = &groups[r];
        if (res->own) {
            g->resource = cfg != NULL ? cfg->resource.attrs : NULL;
            g->n_resource = cfg != NULL ? cfg->resource.n : 0;
        } else {
            g->resource = res->attrs.attrs;
            g->n_resource = res->attrs.n;
        }
        g->spans = &order[k];
        pgroups[r].spans = (const uint8_t *const *)&bodies[k];
        pgroups[r].span_lens = &lens[k];
        /* Stable grouping: spans keep their order within a resource. */
        for (size_t i = 0; i < d->n && rc == TASKSPAN_OK; i++) {
            if (d->res_of[i] != r) {
                continue;
            }
            order[k] = &d->copies[i];
            if (!json) {
                rc = taskspan__encode_span(&bodies[k], &lens[k], &d->copies[i],
                                           lim);
            }
            k++;
            g->n_spans++;
        }
        pgroups[r].n_spans = g->n_spans;
        if (!json && rc == TASKSPAN_OK) {
            rc = taskspan__encode_resource(&res_bytes[r],
                                           &pgroups[r].resource_len,
                                           g->resource, g->n_resource);
            pgroups[r].resource = res_bytes[r];
        }
    }
    if (rc == TASKSPAN_OK && json) {
        rc = taskspan__encode_json_request(out, out_len, groups, d->n_res,
                                           lim);
    } else if (rc == TASKSPAN_OK) {
        uint8_t *buf = NULL;
        size_t len = 0;
        rc = taskspan__encode_request(&buf, &len, pgroups, d->n_res);
        uint8_t *p = rc == TASKSPAN_OK ? realloc(buf, len + 1) : NULL;
        if (rc == TASKSPAN_OK && p == NULL) {
            free(buf);
            rc = TASKSPAN_E_NOMEM;
        } else if (rc == TASKSPAN_OK) {
            p[len] = '\0';
            *out = (char *)p;
            *out_len = len;
        }
    }
done:
    for (size_t i = 0; bodies != NULL && i < d->n; i++) {
        free(bodies[i]);
    }
    for (size_t r = 0; res_bytes != NULL && r < d->n_res; r++) {
        free(res_bytes[r]);
    }
    free(groups);
    free(pgroups);
    free(order);
    free(bodies);
    free(lens);
    free(res_bytes);
    return rc;
}

taskspan_code taskspan_task_dump(char **out, size_t *out_len, taskspan *ts,
                                 const char *task_id, int json)
{
    /* The SDK spec's defaults, for when no configuration can be read. */
    static const taskspan__limits defaults = {128, 32768, 128,
                                              128, 128,   SIZE_MAX};
    char msg[TASKSPAN__MSG_SIZE] = "";
    dump_state d = {0};
    taskspan_code rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (out_len != NULL) {
        *out_len = 0;
    }
    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    if (out == NULL || out_len == NULL) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, false,
                                        out == NULL ? "out is NULL"
                                                    : "out_len is NULL");
    }
    rc = taskspan_task_spans(&d.spans, ts, task_id);
    if (rc != TASKSPAN_OK) {
        return rc; /* the message is recorded */
    }
    /* A read-only recorder has no export configuration: read one now, for
     * the limits and this process's resource (the fallback resource). */
    if (ts->have_config) {
        d.use_cfg = &ts->export_cfg;
    } else if (taskspan__config_load(&d.cfg, NULL, env_lookup, NULL, msg,
                                     sizeof msg) == TASKSPAN_OK) {
        d.have_cfg = true;
        d.use_cfg = &d.cfg;
    }
    msg[0] = '\0';
    d.n = taskspan_spans_count(d.spans);
    d.copies = calloc(d.n ? d.n : 1, sizeof *d.copies);
    d.open_attrs = calloc(d.n ? d.n : 1, sizeof *d.open_attrs);
    d.res = calloc(d.n ? d.n : 1, sizeof *d.res);
    d.res_of = calloc(d.n ? d.n : 1, sizeof *d.res_of);
    rc = d.copies && d.open_attrs && d.res && d.res_of ? TASKSPAN_OK
                                                       : TASKSPAN_E_NOMEM;
    for (size_t i = 0; i < d.n && rc == TASKSPAN_OK; i++) {
        rc = dump_span(&d, i);
        if (rc == TASKSPAN_OK) {
            rc = dump_resource_of(ts, &d,
                                  taskspan__spans_resource_id(d.spans, i),
                                  &d.res_of[i], msg, sizeof msg);
        }
    }
    if (rc == TASKSPAN_OK) {
        rc = dump_encode(&d,
                         d.use_cfg != NULL ? &d.use_cfg->limits : &defaults,
                         json, out, out_len);
    }
    dump_free(&d);
    if (rc != TASKSPAN_OK) {
        if (msg[0] == '\0') {
            snprintf(msg, sizeof msg, "dumping task '%s': %s", task_id,
                     taskspan_strerror(rc));
        }
        return taskspan__record_failure(ts, rc, false, msg);
    }
    return TASKSPAN_OK;
}

void taskspan_free(void *p)
{
    free(p);
}

void taskspan__recorder_drain(taskspan *ts)
{
    char msg[TASKSPAN__MSG_SIZE];
    if (ts == NULL || ts->journal == NULL) {
        return;
    }
    pthread_mutex_lock(&ts->lock);
    if (journal_drain_locked(ts, msg, sizeof msg) != TASKSPAN_OK) {
        snprintf(ts->errmsg, sizeof ts->errmsg, "%s", msg);
    }
    pthread_mutex_unlock(&ts->lock);
}

void taskspan__recorder_store_config(const taskspan *ts,
                                     taskspan__store_config *out)
{
    *out = ts->store_cfg;
}
