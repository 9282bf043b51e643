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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int64_t taskspan__now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
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
        o->sync_mode != TASKSPAN_SYNC_FULL) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "sync_mode %d is not a taskspan_sync_mode",
                              (int)o->sync_mode);
    }
    if (o->busy_timeout_ms < 0) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "busy_timeout_ms is negative");
    }
    if (o->flags &
        ~(unsigned)(TASKSPAN_OPEN_NO_CREATE | TASKSPAN_OPEN_READONLY)) {
        return taskspan__fail(err, errlen, TASKSPAN_E_INVALID_ARG,
                              "unknown flags 0x%x", o->flags);
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_open(taskspan **out, const taskspan_options *opts,
                            char *errbuf)
{
    static const taskspan_options defaults = TASKSPAN_OPTIONS_INIT;
    const taskspan_options *o = opts != NULL ? opts : &defaults;
    char msg[TASKSPAN__MSG_SIZE] = "";
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
        taskspan__store_config cfg = {
            .sync_mode = o->sync_mode,
            .busy_timeout_ms = o->busy_timeout_ms,
            .flags = o->flags,
        };
        code = ts->store_ops->open(&ts->store, ts->db_path, &cfg, msg,
                                   sizeof msg);
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
    if (ts->store != NULL) {
        ts->store_ops->close(ts->store);
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

taskspan_code taskspan_emit(int64_t *out_seq, taskspan *ts,
                            const taskspan_event *ev)
{
    char msg[TASKSPAN__MSG_SIZE] = "";
    char *payload = NULL;
    int64_t seq = 0;
    taskspan_code code;

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
        .starts_incarnation = strcmp(ev->event_type, "runner_spawn") == 0,
        .has_trace_context = ts->has_trace_context,
        .trace_flags = ts->trace_flags,
    };
    memcpy(rec.trace_id, ts->trace_id, sizeof rec.trace_id);
    memcpy(rec.parent_span_id, ts->parent_span_id, sizeof rec.parent_span_id);

    pthread_mutex_lock(&ts->lock);
    code = ts->store_ops->append(ts->store, &rec, &seq, msg, sizeof msg);
    pthread_mutex_unlock(&ts->lock);
    free(payload);
    if (code != TASKSPAN_OK) {
        return taskspan__record_failure(ts, code, true, msg);
    }
    atomic_fetch_add(&ts->events_recorded, 1);
    if (out_seq != NULL) {
        *out_seq = seq;
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
    code = ts->store_ops->load_task(ts->store, task_id, &te, msg, sizeof msg);
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
