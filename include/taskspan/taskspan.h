/*
 * taskspan.h -- the public API of libtaskspan, and its only public header.
 *
 * A task runner links libtaskspan and records its lifecycle events (runner
 * spawn/exit, phases, work items, checkpoints, gates, leases, recovery).
 * Every event is committed to a local SQLite buffer before the call that
 * records it returns, so a crash of the runner loses nothing. The events of a
 * task are modeled as OpenTelemetry spans and span events (one trace per task).
 *
 * Everything declared here is API: names start with taskspan_ / TASKSPAN_.
 * Nothing else in the source tree is. Enums are append-only; a signature
 * that must change gets a _v2 function instead.
 *
 * Conventions used in every comment below:
 *   - Output parameters come first and are named out / out_*.
 *   - Ownership tags: "caller owns, free with X", "borrowed, valid until Y",
 *     "copied" (the library keeps its own copy; the caller's memory may be
 *     reused as soon as the call returns).
 *   - "Thread-safety:" says which calls may run concurrently on one handle.
 *
 * The header compiles as C99, C11 and C++.
 */
#ifndef TASKSPAN_TASKSPAN_H
#define TASKSPAN_TASKSPAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TASKSPAN_STATIC)
#define TASKSPAN_API
#elif defined(__GNUC__) || defined(__clang__)
#define TASKSPAN_API __attribute__((visibility("default")))
#else
#define TASKSPAN_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define TASKSPAN_VERSION_MAJOR 0
#define TASKSPAN_VERSION_MINOR 1
#define TASKSPAN_VERSION_PATCH 0
#define TASKSPAN_VERSION_STRING "0.1.0"
/** 0xMMmmpp: major, minor and patch, one byte each. */
#define TASKSPAN_VERSION_NUM                                                  \
    ((TASKSPAN_VERSION_MAJOR << 16) | (TASKSPAN_VERSION_MINOR << 8) |         \
     TASKSPAN_VERSION_PATCH)

/**
 * The version of the library actually linked, as "MAJOR.MINOR.PATCH".
 * @return static text, never NULL.
 * Thread-safety: any thread, any time.
 */
TASKSPAN_API const char *taskspan_version(void);

/** The linked library's TASKSPAN_VERSION_NUM. Thread-safety: any thread. */
TASKSPAN_API int taskspan_version_num(void);

/* ------------------------------------------------------------------------ */
/* Result codes                                                             */
/* ------------------------------------------------------------------------ */

/**
 * What every fallible function returns. Append-only: new codes are added
 * before TASKSPAN_CODE_LAST, existing values never change.
 */
typedef enum taskspan_code {
    TASKSPAN_OK = 0,
    /** An allocation failed. */
    TASKSPAN_E_NOMEM = 1,
    /** A bad argument; the message names it. */
    TASKSPAN_E_INVALID_ARG = 2,
    /** The buffer file could not be read or written. */
    TASKSPAN_E_IO = 3,
    /** Any other buffer database error. */
    TASKSPAN_E_STORE = 4,
    /** The buffer stayed locked past the busy timeout. */
    TASKSPAN_E_BUSY = 5,
    /** The buffer is at its size cap (max_bytes), or the disk or the file
     *  size limit is full. */
    TASKSPAN_E_FULL = 6,
    /** The buffer or its directory is read-only. */
    TASKSPAN_E_READONLY = 7,
    /** The buffer file is not a valid taskspan database. */
    TASKSPAN_E_CORRUPT = 8,
    /** The buffer's schema is newer than this library understands. */
    TASKSPAN_E_SCHEMA = 9,
    /** No such task, or no such file. */
    TASKSPAN_E_NOT_FOUND = 10,
    /** A value could not be encoded. */
    TASKSPAN_E_ENCODE = 11,
    /** The network request failed. */
    TASKSPAN_E_TRANSPORT = 12,
    /** The collector answered with an error. */
    TASKSPAN_E_HTTP_STATUS = 13,
    /** An operation did not finish in time. */
    TASKSPAN_E_TIMEOUT = 14,
    /** Never returned: the number of codes. */
    TASKSPAN_CODE_LAST
} taskspan_code;

/**
 * A fixed English description of a code, e.g. "the buffer file is corrupt".
 * @return static text, never NULL (an unknown code gets "unknown error").
 * Thread-safety: any thread, any time.
 */
TASKSPAN_API const char *taskspan_strerror(taskspan_code code);

/**
 * Whether trying the same call again later can succeed: 1 for transient
 * conditions (TASKSPAN_E_BUSY, TASKSPAN_E_IO, TASKSPAN_E_FULL,
 * TASKSPAN_E_NOMEM, TASKSPAN_E_TRANSPORT, TASKSPAN_E_TIMEOUT), 0 for
 * TASKSPAN_OK and for permanent ones (a bad argument, a corrupt or newer
 * buffer, a read-only buffer, ...). docs/errors.md explains each code.
 * Thread-safety: any thread, any time.
 */
TASKSPAN_API int taskspan_code_is_retryable(taskspan_code code);

/** Size of the error buffer that taskspan_open() may fill. */
#define TASKSPAN_ERRBUF_SIZE 256

/* ------------------------------------------------------------------------ */
/* Attributes                                                               */
/* ------------------------------------------------------------------------ */

/** The type of one attribute value. Append-only. */
typedef enum taskspan_attr_type {
    TASKSPAN_ATTR_STRING = 1,
    /** int64_t */
    TASKSPAN_ATTR_INT = 2,
    /** A finite double: NaN and infinities are rejected, because JSON
     *  cannot hold them. */
    TASKSPAN_ATTR_DOUBLE = 3,
    TASKSPAN_ATTR_BOOL = 4,
    TASKSPAN_ATTR_STRING_ARRAY = 5,
    TASKSPAN_ATTR_INT_ARRAY = 6,
    TASKSPAN_ATTR_DOUBLE_ARRAY = 7,
    TASKSPAN_ATTR_BOOL_ARRAY = 8
} taskspan_attr_type;

/**
 * One typed key/value pair: an event's payload field, or a span attribute.
 *
 * As input (taskspan_emit), every pointer is borrowed for the duration of the
 * call and copied into the buffer. As output (taskspan_span), every pointer is
 * owned by the taskspan_spans result that holds it.
 *
 * Arrays: items points at count elements of const char * (STRING_ARRAY),
 * int64_t (INT_ARRAY), double (DOUBLE_ARRAY) or int (BOOL_ARRAY, 0 or 1).
 * Build attributes with the taskspan_attr_*() helpers below.
 */
typedef struct taskspan_attr {
    const char *key;
    taskspan_attr_type type;
    union {
        const char *s;
        int64_t i;
        double d;
        int b;
        struct {
            const void *items;
            size_t count;
        } array;
    } value;
} taskspan_attr;

static inline taskspan_attr taskspan_attr_str(const char *key, const char *v)
{
    taskspan_attr a;
    a.key = key;
    a.type = TASKSPAN_ATTR_STRING;
    a.value.s = v;
    return a;
}

static inline taskspan_attr taskspan_attr_int(const char *key, int64_t v)
{
    taskspan_attr a;
    a.key = key;
    a.type = TASKSPAN_ATTR_INT;
    a.value.i = v;
    return a;
}

static inline taskspan_attr taskspan_attr_double(const char *key, double v)
{
    taskspan_attr a;
    a.key = key;
    a.type = TASKSPAN_ATTR_DOUBLE;
    a.value.d = v;
    return a;
}

static inline taskspan_attr taskspan_attr_bool(const char *key, int v)
{
    taskspan_attr a;
    a.key = key;
    a.type = TASKSPAN_ATTR_BOOL;
    a.value.b = v ? 1 : 0;
    return a;
}

/** An array attribute; type is one of the TASKSPAN_ATTR_*_ARRAY values. */
static inline taskspan_attr taskspan_attr_array(const char *key,
                                                taskspan_attr_type type,
                                                const void *items,
                                                size_t count)
{
    taskspan_attr a;
    a.key = key;
    a.type = type;
    a.value.array.items = items;
    a.value.array.count = count;
    return a;
}

/* Input limits, checked by taskspan_emit(); a value past one is
 * TASKSPAN_E_INVALID_ARG with a message that names the field. */
#define TASKSPAN_MAX_ID_LEN 256   /**< task id, span keys */
#define TASKSPAN_MAX_NAME_LEN 128 /**< event type, actor, phase, keys */
#define TASKSPAN_MAX_ATTRS 128    /**< attributes in one event */
#define TASKSPAN_MAX_PAYLOAD_BYTES 1048576 /**< one event's payload as JSON */

/* ------------------------------------------------------------------------ */
/* The recorder                                                             */
/* ------------------------------------------------------------------------ */

/** The recorder: one open buffer database. Opaque. */
typedef struct taskspan taskspan;

/* Flags for taskspan_options.flags. */
/** Fail with TASKSPAN_E_NOT_FOUND rather than create the buffer. */
#define TASKSPAN_OPEN_NO_CREATE 0x1
/** Inspect only: every emit fails with TASKSPAN_E_READONLY. */
#define TASKSPAN_OPEN_READONLY 0x2
/** Check every page of the buffer at open (SQLite's PRAGMA quick_check,
 *  about 0.1 s per 100 MB): damage anywhere is then found at open and
 *  handled as taskspan_open() describes. Without it, open reads only the
 *  header, the schema and the pages the next emit touches. */
#define TASKSPAN_OPEN_VERIFY 0x4

/** The durability of each commit; see docs/buffer.md. */
typedef enum taskspan_sync_mode {
    /** WAL with synchronous=NORMAL: an event survives a crash of the
     *  process (kill -9) once its emit returned. The default. */
    TASKSPAN_SYNC_NORMAL = 0,
    /** synchronous=FULL: also survives power loss and OS crashes, at the
     *  price of an fsync per commit. */
    TASKSPAN_SYNC_FULL = 1,
    /** The journal mode: an emit writes its event into this recorder's
     *  own append-only journal file (<db>.journal-<pid>-<nonce>), mapped
     *  with MAP_SHARED, without a system call, and returns; a background
     *  thread moves the events into the buffer in large transactions
     *  (every ~10 ms), where they get their seq. TASKSPAN_E_FULL when the
     *  disk has no room to extend the journal, or when 256 MiB of it wait
     *  to be moved and the buffer took none of it for 2 s (an emit waits
     *  that long for room first). Survives kill -9 once
     *  emit returned, like NORMAL; not power loss (no fsync). Readers of
     *  the buffer see an event once moved; this recorder's own reads,
     *  flush and close move everything first.
     *  The environment variable TASKSPAN_JOURNAL=1 selects it when
     *  sync_mode is TASKSPAN_SYNC_NORMAL. See docs/durability.md. */
    TASKSPAN_SYNC_JOURNAL = 2
} taskspan_sync_mode;

/** Whether the recorder exports spans in the background. */
typedef enum taskspan_export_mode {
    /** On, unless OTEL_SDK_DISABLED is "true" (the OTel SDKs' default). */
    TASKSPAN_EXPORT_AUTO = 0,
    /** Off: record only; `taskspan export` can deliver later. */
    TASKSPAN_EXPORT_OFF = 1,
    /** On, whatever OTEL_SDK_DISABLED says. */
    TASKSPAN_EXPORT_ON = 2
} taskspan_export_mode;

/** Version 1 has the fields up to flags; version 2 adds export settings;
 *  version 3 adds max_bytes. */
#define TASKSPAN_OPTIONS_VERSION 3

/** The buffer's size cap when neither the max_bytes option nor the
 *  TASKSPAN_MAX_BYTES environment variable sets one: 1 GiB. */
#define TASKSPAN_DEFAULT_MAX_BYTES ((int64_t)1 << 30)
/** The smallest cap accepted: 128 KiB. */
#define TASKSPAN_MIN_MAX_BYTES ((int64_t)128 * 1024)

/**
 * Options for taskspan_open(). Initialise with TASKSPAN_OPTIONS_INIT, then set
 * what you need: fields added in later versions keep working defaults.
 * Strings are copied by taskspan_open().
 */
typedef struct taskspan_options {
    int version; /**< TASKSPAN_OPTIONS_VERSION */
    /** The buffer file. NULL: the TASKSPAN_DB environment variable, else
     *  $XDG_STATE_HOME/taskspan/buffer.db, else
     *  $HOME/.local/state/taskspan/buffer.db. Missing directories of the
     *  default path are created (mode 0700). */
    const char *db_path;
    /** A W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>") that the tasks
     *  first recorded by this recorder join: their trace id and the parent
     *  of their root spans come from it. NULL: the TRACEPARENT environment
     *  variable, if set and valid. "" disables both. */
    const char *traceparent;
    taskspan_sync_mode sync_mode; /**< default TASKSPAN_SYNC_NORMAL */
    /** How long an emit waits for a buffer locked by another process or
     *  thread before it fails with TASKSPAN_E_BUSY. 0: 5000 ms. */
    int busy_timeout_ms;
    unsigned flags; /**< TASKSPAN_OPEN_* */
    /* Version 2. Every field's default comes from the OTEL_* environment
     * variables (docs/configuration.md), then the OTel spec's default. */
    /** Background export; read-only recorders never export. */
    taskspan_export_mode export_mode;
    /** The full traces URL, used as is. NULL:
     *  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT
     *  with "/v1/traces" appended, else http://localhost:4318/v1/traces. */
    const char *endpoint;
    /** service.name of the spans' resource. NULL: OTEL_SERVICE_NAME, else
     *  service.name in OTEL_RESOURCE_ATTRIBUTES, else
     *  "unknown_service:<executable name>". */
    const char *service_name;
    /** How long taskspan_close() may spend delivering closed spans before it
     *  returns (what is left stays buffered). 0: 5000 ms; negative: close
     *  at once. */
    int close_timeout_ms;
    /* Version 3. */
    /** The size cap of the buffer file, in bytes (at least
     *  TASKSPAN_MIN_MAX_BYTES). Once the database reaches it, emits fail
     *  with TASKSPAN_E_FULL and record nothing; what is stored stays.
     *  0: the TASKSPAN_MAX_BYTES environment variable, else
     *  TASKSPAN_DEFAULT_MAX_BYTES. docs/buffer.md has the policy. */
    int64_t max_bytes;
} taskspan_options;

/* clang-format off */
#define TASKSPAN_OPTIONS_INIT \
    { TASKSPAN_OPTIONS_VERSION, NULL, NULL, TASKSPAN_SYNC_NORMAL, 0, 0, \
      TASKSPAN_EXPORT_AUTO, NULL, NULL, 0, 0 }
/* clang-format on */

/**
 * Open a recorder on a buffer database, creating or migrating it as needed.
 *
 * @param out     receives the recorder; caller owns, free with
 *                taskspan_close(). Set to NULL on failure.
 * @param opts    NULL for all defaults; copied.
 * @param errbuf  NULL, or TASKSPAN_ERRBUF_SIZE bytes that receive a one-line
 *                message when the call fails (no handle exists yet to hold it).
 * @return TASKSPAN_OK; TASKSPAN_E_INVALID_ARG (bad option or TRACEPARENT
 *         given explicitly), TASKSPAN_E_NOT_FOUND (NO_CREATE and no file),
 *         TASKSPAN_E_CORRUPT, TASKSPAN_E_SCHEMA, TASKSPAN_E_READONLY,
 *         TASKSPAN_E_IO, TASKSPAN_E_BUSY, TASKSPAN_E_FULL (the open had to
 *         write and the disk is full), TASKSPAN_E_NOMEM.
 * An invalid TRACEPARENT environment variable is ignored, not an error: the
 * runner's own environment must not stop it from recording. So is a
 * malformed TASKSPAN_MAX_BYTES (see taskspan_open_warning()).
 * A damaged buffer (corrupt pages, a truncated file, a destroyed header) is
 * moved aside to "<path>.corrupt-<UTC time>" (with its -wal and -shm) and a
 * new buffer is started: the open returns TASKSPAN_OK and
 * taskspan_open_warning() says so. A read-only or NO_CREATE open never moves
 * anything: it fails with TASKSPAN_E_CORRUPT. A file that is someone else's
 * SQLite database, or not a database at all and not shaped like one, is
 * refused (TASKSPAN_E_CORRUPT) and left alone.
 * Thread-safety: any thread; distinct calls are independent.
 */
TASKSPAN_API taskspan_code taskspan_open(taskspan **out,
                                         const taskspan_options *opts,
                                         char *errbuf);

/**
 * Close the recorder and free it. Every event whose emit returned is already
 * committed, so closing never loses anything. NULL is a no-op.
 * Thread-safety: no other call may be running or start on this handle.
 */
TASKSPAN_API void taskspan_close(taskspan *ts);

/**
 * The buffer file this recorder writes.
 * @return borrowed, valid until taskspan_close().
 * Thread-safety: any thread.
 */
TASKSPAN_API const char *taskspan_db_path(const taskspan *ts);

/**
 * The message of the most recent failed call on this handle, e.g.
 * "task_id is empty" or "disk full writing /x/buffer.db"; "" when no call
 * has failed. A successful call does not clear it, so the root cause of the
 * last failure stays readable.
 * @return borrowed, valid until the next call on this handle from any
 *         thread. With several threads, use taskspan_errmsg_copy().
 */
TASKSPAN_API const char *taskspan_errmsg(const taskspan *ts);

/**
 * Copy the message taskspan_errmsg() would return into buf (size bytes,
 * always NUL-terminated when size > 0, truncated if needed).
 * Thread-safety: any thread, concurrently with emits.
 */
TASKSPAN_API void taskspan_errmsg_copy(const taskspan *ts, char *buf,
                                       size_t size);

/** Counters of one recorder since it was opened. */
typedef struct taskspan_stats {
    uint64_t events_recorded; /**< emits that committed their event */
    uint64_t events_failed;   /**< emits that returned an error */
    taskspan_code last_error; /**< code of the last failed emit, or OK */
} taskspan_stats;

/**
 * Read the recorder's counters into *out.
 * @return TASKSPAN_OK, or TASKSPAN_E_INVALID_ARG for a NULL argument.
 * Thread-safety: any thread, concurrently with emits.
 */
TASKSPAN_API taskspan_code taskspan_get_stats(taskspan_stats *out,
                                              const taskspan *ts);

/**
 * What taskspan_open() did that the runner should hear about, as one line,
 * or "" when nothing: a damaged buffer it moved aside (naming where it went)
 * and a malformed TASKSPAN_MAX_BYTES it ignored. Fixed at open.
 * @return borrowed, valid until taskspan_close(); never NULL ("recorder is
 *         NULL" for a NULL ts).
 * Thread-safety: any thread.
 */
TASKSPAN_API const char *taskspan_open_warning(const taskspan *ts);

/** The buffer's size against its cap. */
typedef struct taskspan_capacity {
    /** The cap emits stop at (option, TASKSPAN_MAX_BYTES or default). */
    uint64_t max_bytes;
    /** The database's size now: its pages, without the -wal file. */
    uint64_t used_bytes;
    /** Free pages inside used_bytes, which new events reuse first. */
    uint64_t reusable_bytes;
    /** Emits of this recorder refused because the buffer was at its cap. */
    uint64_t refused_cap;
    /** Emits of this recorder refused because the disk (or the file size
     *  limit, RLIMIT_FSIZE) was full. Both kinds are also in
     *  taskspan_stats.events_failed, with last_error TASKSPAN_E_FULL. */
    uint64_t refused_disk;
    /** Tasks this recorder pruned to make room at the cap: ended, every
     *  span delivered (docs/buffer.md, "The size cap"), whatever their age. */
    uint64_t tasks_pruned_for_room;
} taskspan_capacity;

/**
 * Read the buffer's size, its cap and the emits refused for lack of space.
 * @return TASKSPAN_OK, TASKSPAN_E_INVALID_ARG for a NULL argument, or a
 *         store error (the message says which).
 * Thread-safety: any thread, concurrently with emits.
 */
TASKSPAN_API taskspan_code taskspan_get_capacity(taskspan_capacity *out,
                                                 taskspan *ts);

/* ------------------------------------------------------------------------ */
/* Recording events                                                         */
/* ------------------------------------------------------------------------ */

#define TASKSPAN_EVENT_VERSION 1

/**
 * One event for taskspan_emit(). Initialise with TASKSPAN_EVENT_INIT.
 * Every pointer is borrowed for the call; the event is copied into the buffer.
 */
typedef struct taskspan_event {
    /** TASKSPAN_EVENT_VERSION */
    int version;
    /** Required, 1..TASKSPAN_MAX_ID_LEN bytes of any text. */
    const char *task_id;
    /** Required, e.g. "work_item_start": letters, digits, '_', '.', '-'
     *  and ':'. "runner_spawn" starts a new runner incarnation. */
    const char *event_type;
    /** Optional, e.g. "runner". */
    const char *actor;
    /** The span the event belongs to: "main", "work_<id>",
     *  "recovery_sweep" or any other name. NULL means "main". */
    const char *span_key;
    /** Optional: the span key of the parent span. */
    const char *parent_span_key;
    /** Optional, e.g. "executing". */
    const char *phase;
    /** Nanoseconds since the UNIX epoch; 0 means now. */
    int64_t ts_ns;
    /** The payload; may be NULL when n_attrs is 0. */
    const taskspan_attr *attrs;
    /** At most TASKSPAN_MAX_ATTRS, with unique keys. */
    size_t n_attrs;
} taskspan_event;

/* clang-format off */
#define TASKSPAN_EVENT_INIT \
    { TASKSPAN_EVENT_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0 }
/* clang-format on */

/**
 * Record one event: validate it, assign it the task's next seq and commit it
 * to the buffer. When this returns TASKSPAN_OK the event is committed: a
 * kill -9 of the process right after it loses nothing. (With
 * TASKSPAN_SYNC_NORMAL the commit reaches the OS at once and the disk at
 * the next checkpoint; TASKSPAN_SYNC_FULL also syncs it to the disk.)
 *
 * seq starts at 1 for each task and grows by exactly 1 per recorded event,
 * across threads and processes sharing the buffer file. An event of type
 * "runner_spawn" starts a new runner incarnation of its task.
 *
 * In the journal mode (TASKSPAN_SYNC_JOURNAL) the event is durable against
 * kill -9 when this returns, but its seq is assigned later, when the
 * background thread moves it into the buffer: *out_seq is then 0. The
 * seqs are gap-free per task all the same.
 *
 * @param out_seq  NULL, or receives the event's seq on success (0 in the
 *                 journal mode).
 * @return TASKSPAN_OK; TASKSPAN_E_INVALID_ARG; TASKSPAN_E_BUSY;
 *         TASKSPAN_E_FULL;
 *         TASKSPAN_E_READONLY; TASKSPAN_E_IO; TASKSPAN_E_CORRUPT;
 *         TASKSPAN_E_NOMEM; TASKSPAN_E_STORE. On failure nothing was recorded,
 *         the failure is counted (taskspan_get_stats) and described
 *         (taskspan_errmsg). The library never aborts, exits or prints.
 * Thread-safety: any number of threads may emit on one recorder at once.
 */
TASKSPAN_API taskspan_code taskspan_emit(int64_t *out_seq, taskspan *ts,
                                         const taskspan_event *ev);

/*
 * Typed helpers: one per event type of the runner-events report, plus
 * gate_retry, phase_progress, lease_lost and lease_takeover. Each places its
 * event on the span, actor and phase that docs/span-model.md lists, and
 * records its fields as the payload. For every helper:
 *   - out_seq, ts and task_id are as for taskspan_emit();
 *   - a NULL string field (including explanation) is left out of the payload;
 *     a work_item_id is required wherever it names the span;
 *   - numeric and boolean fields are always recorded;
 *   - thread-safety, errors and durability are those of taskspan_emit().
 */

/** runner_spawn on main (actor runner): a runner incarnation starts. */
TASKSPAN_API taskspan_code taskspan_emit_runner_spawn(
    int64_t *out_seq, taskspan *ts, const char *task_id, int64_t runner_pid,
    const char *runner_version, const char *explanation);

/** runner_exit on main (actor runner): the incarnation ends and main closes.
 *  exit_reason: e.g. "done", "failed", "cancelled". */
TASKSPAN_API taskspan_code taskspan_emit_runner_exit(
    int64_t *out_seq, taskspan *ts, const char *task_id, int64_t runner_pid,
    const char *exit_reason, int64_t iterations, const char *explanation);

/** phase_enter on main (actor runner), phase column = phase (required),
 *  e.g. "planning", "executing", "verifying". */
TASKSPAN_API taskspan_code taskspan_emit_phase_enter(int64_t *out_seq,
                                                     taskspan *ts,
                                                     const char *task_id,
                                                     const char *phase,
                                                     const char *explanation);

/** phase_exit on main (actor runner), phase column = phase (required). */
TASKSPAN_API taskspan_code taskspan_emit_phase_exit(int64_t *out_seq,
                                                    taskspan *ts,
                                                    const char *task_id,
                                                    const char *phase,
                                                    const char *explanation);

/** phase_progress on main (actor runner): completed of total units done. */
TASKSPAN_API taskspan_code taskspan_emit_phase_progress(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *phase,
    int64_t completed, int64_t total, const char *explanation);

/** checkpoint_begin on main (actor checkpoint_manager, phase execution). */
TASKSPAN_API taskspan_code taskspan_emit_checkpoint_begin(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *step_id,
    const char *checkpoint_type, const char *work_item_id,
    const char *explanation);

/** checkpoint_commit on main (actor checkpoint_manager, phase execution).
 *  evidence: NULL or evidence_count strings (file paths, digests, ...),
 *  recorded as a string array; evidence_count is recorded either way. */
TASKSPAN_API taskspan_code taskspan_emit_checkpoint_commit(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type,
    int64_t sequence_number, const char *const *evidence,
    int64_t evidence_count, const char *explanation);

/** checkpoint_verified on main (actor checkpoint_manager, phase execution);
 *  records verified=true. */
TASKSPAN_API taskspan_code taskspan_emit_checkpoint_verified(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type,
    int64_t evidence_count, const char *explanation);

/** checkpoint_invalid on main (actor checkpoint_manager, phase execution);
 *  records verified=false and the reason. */
TASKSPAN_API taskspan_code taskspan_emit_checkpoint_invalid(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type, const char *reason,
    const char *explanation);

/** gate_start on main (actor gate_runner, phase verifying). */
TASKSPAN_API taskspan_code taskspan_emit_gate_start(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *gate_name,
    int64_t timeout_seconds, const char *explanation);

/** gate_result on main (actor gate_runner, phase verifying). passed=0 sets
 *  main's status to ERROR unless a later gate_result of the same gate passes.
 *  status: e.g. "passed", "failed", "timeout". */
TASKSPAN_API taskspan_code taskspan_emit_gate_result(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *gate_name,
    const char *status, int passed, int64_t exit_code, double duration_seconds,
    const char *explanation);

/** gate_retry on main (actor gate_runner, phase verifying): attempt of
 *  max_attempts is about to run again. */
TASKSPAN_API taskspan_code taskspan_emit_gate_retry(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *gate_name,
    int64_t attempt, int64_t max_attempts, const char *reason,
    const char *explanation);

/** work_item_dispatched on main (actor runner, phase executing). */
TASKSPAN_API taskspan_code taskspan_emit_work_item_dispatched(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *title, int64_t index,
    const char *explanation);

/** work_item_start on work_<work_item_id>, parent main (actor worker, phase
 *  executing): opens the work item's span. */
TASKSPAN_API taskspan_code taskspan_emit_work_item_start(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *work_type, const char *explanation);

/** work_item_done on work_<work_item_id>, parent main (actor worker, phase
 *  executing): closes the span. files_changed: NULL or n_files_changed
 *  paths, recorded as a string array. */
TASKSPAN_API taskspan_code taskspan_emit_work_item_done(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *title,
    const char *const *files_changed, size_t n_files_changed,
    const char *explanation);

/** work_item_failed on work_<work_item_id>, parent main (actor worker, phase
 *  executing): closes the span with status ERROR and error as message. */
TASKSPAN_API taskspan_code taskspan_emit_work_item_failed(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *title, const char *error,
    const char *explanation);

/** lease_acquired on work_<work_item_id>, parent main (actor lease_manager,
 *  phase executing). */
TASKSPAN_API taskspan_code taskspan_emit_lease_acquired(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *lease_holder,
    int64_t lease_duration_seconds, const char *explanation);

/** lease_renewed on work_<work_item_id>, parent main (actor lease_manager,
 *  phase executing). */
TASKSPAN_API taskspan_code taskspan_emit_lease_renewed(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *lease_holder,
    int64_t extended_by_seconds, const char *explanation);

/** lease_lost on work_<work_item_id>, parent main (actor lease_manager,
 *  phase executing): the holder lost the lease (expired, revoked). */
TASKSPAN_API taskspan_code
taskspan_emit_lease_lost(int64_t *out_seq, taskspan *ts, const char *task_id,
                         const char *work_item_id, const char *lease_holder,
                         const char *reason, const char *explanation);

/** lease_takeover on work_<work_item_id>, parent main (actor lease_manager,
 *  phase executing): new_holder took the lease over from previous_holder. */
TASKSPAN_API taskspan_code taskspan_emit_lease_takeover(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *previous_holder,
    const char *new_holder, const char *explanation);

/** recovery_detected on recovery_sweep (actor recovery_sweep, phase
 *  recovery): opens a sweep span that closes once expired_count
 *  recovery_requeued events followed (at once when expired_count is 0).
 *  work_item_ids: NULL or n_work_item_ids ids, recorded as a string array. */
TASKSPAN_API taskspan_code taskspan_emit_recovery_detected(
    int64_t *out_seq, taskspan *ts, const char *task_id, int64_t expired_count,
    const char *const *work_item_ids, size_t n_work_item_ids,
    const char *explanation);

/** recovery_requeued on recovery_sweep (actor recovery_sweep, phase
 *  recovery). */
TASKSPAN_API taskspan_code taskspan_emit_recovery_requeued(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *previous_holder, int64_t retry_count,
    int64_t max_retries, const char *explanation);

/** recovery_resumed_from_checkpoint on main (actor runner, phase recovery). */
TASKSPAN_API taskspan_code taskspan_emit_recovery_resumed_from_checkpoint(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type,
    int64_t sequence_number, const char *work_item_id,
    const char *explanation);

/* ------------------------------------------------------------------------ */
/* Work items, leases, checkpoints and recovery                             */
/* ------------------------------------------------------------------------ */

/*
 * The state a runner needs to survive its own kill -9, kept in the buffer
 * file beside the events (docs/recovery.md): work items with leases,
 * checkpoints with sequence numbers and evidence, a recovery sweep and a
 * resume. Every call that changes state records the event that describes
 * the change in the SAME transaction: after a crash the buffer never holds
 * a state change without its event, or an event without its state.
 *
 * A work item moves QUEUED -> LEASED -> DONE or FAILED; a recovery sweep
 * moves an expired LEASED item back to QUEUED (retry_count + 1), or to
 * FAILED once it was requeued max_retries times.
 *
 * For every function of this section:
 *   - ts and task_id are as for taskspan_emit(); work_item_id and holder
 *     are 1..TASKSPAN_MAX_ID_LEN - 5 bytes of any text (work_item_id names
 *     the span work_<work_item_id>);
 *   - every input string is borrowed for the call and copied;
 *   - a NULL explanation (or title, reason) is left out of the payload;
 *   - errors: TASKSPAN_E_INVALID_ARG (the message names the argument),
 *     TASKSPAN_E_NOT_FOUND (no such work item or checkpoint), and the
 *     buffer errors of taskspan_emit() (TASKSPAN_E_BUSY, TASKSPAN_E_FULL,
 *     TASKSPAN_E_READONLY, TASKSPAN_E_IO, TASKSPAN_E_CORRUPT,
 *     TASKSPAN_E_NOMEM, TASKSPAN_E_STORE); on any error nothing changed and
 *     nothing was recorded, and taskspan_errmsg() says why. Contention is
 *     not an error: it is reported as a taskspan_lease_outcome;
 *   - Thread-safety: any thread, concurrently with emits; processes sharing
 *     the buffer file are serialised by its write lock, so two runners can
 *     never both be granted the lease of one item.
 */

/** Where a work item is. Append-only. */
typedef enum taskspan_item_state {
    TASKSPAN_ITEM_QUEUED = 1, /**< waiting for a lease */
    TASKSPAN_ITEM_LEASED = 2, /**< a holder works on it */
    TASKSPAN_ITEM_DONE = 3,
    TASKSPAN_ITEM_FAILED = 4
} taskspan_item_state;

/** A work item as the buffer holds it: a copy, owned by the caller. */
typedef struct taskspan_work_item {
    char id[TASKSPAN_MAX_ID_LEN + 1];
    taskspan_item_state state;
    /** Leases granted so far, the current one included. */
    int64_t attempts;
    /** Times a recovery sweep requeued it. */
    int64_t retry_count;
    /** The lease holder; "" unless LEASED. */
    char holder[TASKSPAN_MAX_ID_LEN + 1];
    /** The process that took the lease (this machine); 0 unless LEASED. */
    int64_t holder_pid;
    /** When the lease expires, ns since the epoch; 0 unless LEASED. */
    int64_t lease_expires_ns;
    /** sequence_number of the last checkpoint committed for it; 0: none. */
    int64_t last_checkpoint;
    /** When it last changed, ns since the epoch. */
    int64_t updated_ns;
} taskspan_work_item;

/** What a lease call found. Append-only. */
typedef enum taskspan_lease_outcome {
    /** Done: the caller holds the lease (acquire, renew), or the item
     *  changed as asked (release, finish, fail). */
    TASKSPAN_LEASE_GRANTED = 1,
    /** Another holder's lease is in force: nothing changed. */
    TASKSPAN_LEASE_HELD = 2,
    /** The caller does not hold the lease (it was swept, or never taken):
     *  nothing changed. */
    TASKSPAN_LEASE_LOST = 3,
    /** The item is already DONE or FAILED: nothing changed. */
    TASKSPAN_LEASE_FINISHED = 4
} taskspan_lease_outcome;

/**
 * Add a work item to a task, QUEUED, and record work_item_dispatched on
 * main (the typed helper's payload: work_item_id, title, index,
 * explanation). An item that exists already is left as it is and nothing
 * is recorded, so a resumed runner may add its items again.
 * @param out_added  NULL, or receives 1 when the item was added, 0 when it
 *                   existed.
 * @param out_item   NULL, or receives the item after the call (copied).
 */
TASKSPAN_API taskspan_code taskspan_work_item_add(
    int *out_added, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *title,
    int64_t index, const char *explanation);

/**
 * Read a work item into *out (copied). TASKSPAN_E_NOT_FOUND when the task
 * has no such item. Records nothing.
 */
TASKSPAN_API taskspan_code taskspan_work_item_get(taskspan_work_item *out,
                                                  taskspan *ts,
                                                  const char *task_id,
                                                  const char *work_item_id);

/**
 * Take the lease of a QUEUED item for holder, for ttl_ms milliseconds
 * (1 ms to 7 days), from this process (its pid is recorded). GRANTED: the
 * item is LEASED, attempts + 1, and lease_acquired is recorded on
 * work_<id> (the typed helper's payload: lease_holder,
 * lease_duration_seconds rounded up, explanation). The same holder asking
 * again renews (see below). A LEASED item of another holder gives HELD even
 * when that lease has expired: expired leases go back to the queue only
 * through a recovery sweep, which records why.
 * @param out       receives the outcome (required).
 * @param out_item  NULL, or receives the item after the call.
 */
TASKSPAN_API taskspan_code taskspan_lease_acquire(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    int64_t ttl_ms, const char *explanation);

/**
 * Extend holder's lease to now + ttl_ms and record lease_renewed on
 * work_<id> (lease_holder, extended_by_seconds, explanation). A lease past
 * its expiry that no sweep took away is still the holder's and renews.
 * LOST when the item is not leased to holder: lease_lost is recorded
 * (lease_holder, reason "not the lease holder"), so the trace shows the
 * worker that went on after losing its item. FINISHED when DONE/FAILED.
 */
TASKSPAN_API taskspan_code taskspan_lease_renew(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    int64_t ttl_ms, const char *explanation);

/**
 * Give holder's lease back without finishing: the item is QUEUED again
 * (attempts and retry_count unchanged) and lease_lost is recorded with
 * reason (NULL: "released"). LOST / FINISHED as for renew, with nothing
 * recorded.
 */
TASKSPAN_API taskspan_code taskspan_lease_release(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    const char *reason, const char *explanation);

/**
 * Finish holder's item: DONE, lease cleared, work_item_done recorded on
 * work_<id> (title, files_changed as for the typed helper). LOST (the
 * lease was swept: another worker may be redoing the item) and FINISHED
 * record nothing.
 */
TASKSPAN_API taskspan_code taskspan_work_item_finish(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    const char *title, const char *const *files_changed,
    size_t n_files_changed, const char *explanation);

/**
 * Fail holder's item: FAILED, lease cleared, work_item_failed recorded
 * (title, error, explanation; the span gets status ERROR). LOST and
 * FINISHED record nothing.
 */
TASKSPAN_API taskspan_code taskspan_work_item_fail(
    taskspan_lease_outcome *out, taskspan_work_item *out_item, taskspan *ts,
    const char *task_id, const char *work_item_id, const char *holder,
    const char *title, const char *error, const char *explanation);

/** A checkpoint's verification state. Append-only. */
typedef enum taskspan_checkpoint_state {
    TASKSPAN_CHECKPOINT_COMMITTED = 1, /**< not verified yet */
    TASKSPAN_CHECKPOINT_VERIFIED = 2,
    TASKSPAN_CHECKPOINT_INVALID = 3
} taskspan_checkpoint_state;

/** A checkpoint read back from the buffer. Every pointer is owned by the
 *  result: caller owns it, free with taskspan_checkpoint_free(). */
typedef struct taskspan_checkpoint {
    int64_t sequence_number; /**< per task, increasing, from 1 */
    const char *checkpoint_id;
    const char *checkpoint_type; /**< "" when none was given */
    const char *work_item_id;    /**< NULL when none was given */
    taskspan_checkpoint_state state;
    const char *const *evidence; /**< n_evidence strings */
    size_t n_evidence;
    int64_t event_seq;    /**< seq of its checkpoint_commit event */
    int64_t committed_ns; /**< time of that event */
} taskspan_checkpoint;

/**
 * Commit a checkpoint: store it (COMMITTED, with its evidence) and record
 * checkpoint_commit on main (checkpoint_id, checkpoint_type,
 * sequence_number, evidence_count, evidence, explanation: the typed
 * helper's payload; the work item is kept in the checkpoint's row).
 * With a work_item_id, that item's last_checkpoint becomes this one.
 * @param out_sequence_number  NULL, or receives the checkpoint's number.
 * @param sequence_number  0: the task's next number (highest + 1); else
 *                   a number greater than every earlier checkpoint's of the
 *                   task (TASKSPAN_E_INVALID_ARG otherwise).
 * @param checkpoint_id    NULL: "ckpt-<sequence_number>".
 * @param checkpoint_type  NULL or a name, e.g. "work_item".
 * @param work_item_id     NULL, or an existing work item of the task.
 * @param evidence   NULL or n_evidence strings (paths, digests, ...),
 *                   at most TASKSPAN_MAX_ATTRS of them.
 */
TASKSPAN_API taskspan_code taskspan_checkpoint_commit(
    int64_t *out_sequence_number, taskspan *ts, const char *task_id,
    int64_t sequence_number, const char *checkpoint_id,
    const char *checkpoint_type, const char *work_item_id,
    const char *const *evidence, size_t n_evidence, const char *explanation);

/**
 * Verify a committed checkpoint: valid != 0 makes it VERIFIED and records
 * checkpoint_verified (checkpoint_id, checkpoint_type, verified=true,
 * evidence_count); valid == 0 makes it INVALID and records
 * checkpoint_invalid with reason. Verifying again overwrites the verdict
 * and records the new one. TASKSPAN_E_NOT_FOUND for an unknown number.
 */
TASKSPAN_API taskspan_code taskspan_checkpoint_verify(
    taskspan *ts, const char *task_id, int64_t sequence_number, int valid,
    const char *reason, const char *explanation);

/**
 * The task's VERIFIED checkpoint with the highest sequence number, without
 * recording anything. *out is NULL (and TASKSPAN_OK returned) when the
 * task has none.
 * @param out  caller owns, free with taskspan_checkpoint_free().
 */
TASKSPAN_API taskspan_code taskspan_checkpoint_last_verified(
    taskspan_checkpoint **out, taskspan *ts, const char *task_id);

/** Free a checkpoint returned by this section. NULL is a no-op.
 *  Thread-safety: any thread. */
TASKSPAN_API void taskspan_checkpoint_free(taskspan_checkpoint *cp);

/** One item a recovery sweep took back from an expired lease. */
typedef struct taskspan_recovered_item {
    const char *work_item_id;
    const char *previous_holder;
    int64_t previous_pid;
    /** The item's retry_count after the sweep. */
    int64_t retry_count;
    /** 1: QUEUED again; 0: FAILED, it had been requeued max_retries
     *  times already. */
    int requeued;
} taskspan_recovered_item;

/** What a sweep did. Owned by the caller: free with
 *  taskspan_recovery_report_free(). */
typedef struct taskspan_recovery_report {
    size_t n_items; /**< expired leases found */
    size_t n_requeued;
    size_t n_failed;
    const taskspan_recovered_item *items; /**< n_items, requeued first */
    /** seq of the recovery_detected event; 0 when nothing was recorded. */
    int64_t detected_seq;
} taskspan_recovery_report;

/** Flag of taskspan_recovery_sweep(): record recovery_detected (with
 *  expired_count 0) even when no lease expired, so a restarted runner's
 *  trace shows that it looked. */
#define TASKSPAN_SWEEP_RECORD_EMPTY 0x1

/**
 * Find the task's expired leases and take their items back, in one
 * transaction. A lease is expired when its time has passed, or at once
 * when the process that took it is gone from this machine (killed or
 * exited: taskspan checks its pid), so a runner restarted after kill -9
 * needs not wait out the TTL. Each expired item with retry_count below
 * max_retries (negative: no limit) is QUEUED again with retry_count + 1;
 * one that reached it is FAILED.
 *
 * Recorded (when at least one lease expired, or with
 * TASKSPAN_SWEEP_RECORD_EMPTY): recovery_detected on recovery_sweep
 * (expired_count = the items requeued, work_item_ids = their ids, and
 * abandoned_count / abandoned_work_item_ids when some were failed), then
 * one recovery_requeued per requeued item (work_item_id, previous_holder,
 * retry_count, max_retries), which closes the sweep's span; and
 * work_item_failed on work_<id> for each failed one.
 *
 * A sweep is also the recovery of the task's runner: when the task's
 * current runner incarnation has no runner_exit and its runner_pid is gone
 * from this machine (a supervisor sweeping before any new runner_spawn),
 * that incarnation's spans are closed as crashed after its last event, in
 * the same transaction, exactly as the next runner_spawn would close them
 * (docs/span-model.md, "Crashed incarnations").
 *
 * @param out  NULL, or receives the report; caller owns, free with
 *             taskspan_recovery_report_free().
 * @param flags  0 or TASKSPAN_SWEEP_RECORD_EMPTY.
 */
TASKSPAN_API taskspan_code taskspan_recovery_sweep(
    taskspan_recovery_report **out, taskspan *ts, const char *task_id,
    int64_t max_retries, unsigned flags, const char *explanation);

/** Free a sweep report. NULL is a no-op. Thread-safety: any thread. */
TASKSPAN_API void taskspan_recovery_report_free(
    taskspan_recovery_report *report);

/**
 * Resume a task: find its last VERIFIED checkpoint and, in the same
 * transaction, record recovery_resumed_from_checkpoint on main
 * (checkpoint_id, checkpoint_type, sequence_number, work_item_id,
 * explanation). When the task has no verified checkpoint, *out is NULL,
 * nothing is recorded and TASKSPAN_OK is returned: start from scratch.
 * @param out  caller owns, free with taskspan_checkpoint_free().
 */
TASKSPAN_API taskspan_code taskspan_recovery_resume(taskspan_checkpoint **out,
                                                    taskspan *ts,
                                                    const char *task_id,
                                                    const char *explanation);

/* ------------------------------------------------------------------------ */
/* The span model: a task's events as OpenTelemetry-shaped spans            */
/* ------------------------------------------------------------------------ */

/** Span status, with the values of OTLP's Status.StatusCode. */
typedef enum taskspan_status {
    TASKSPAN_STATUS_UNSET = 0,
    TASKSPAN_STATUS_OK = 1,
    TASKSPAN_STATUS_ERROR = 2
} taskspan_status;

/** One span event: one recorded event. Owned by its taskspan_spans. */
typedef struct taskspan_span_event {
    const char *name; /**< the event type */
    int64_t time_ns;
    int64_t seq;
    const char *actor; /**< NULL if none was recorded */
    const char *phase; /**< NULL if none was recorded */
    /** The payload fields, then taskspan.seq, taskspan.actor and
     *  taskspan.phase (the last two when recorded). */
    const taskspan_attr *attrs;
    size_t n_attrs;
} taskspan_span_event;

/** A link from a span to another span of the same trace. */
typedef struct taskspan_span_link {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    const char *reason; /**< e.g. "previous_incarnation" */
} taskspan_span_link;

/** One span. Every pointer is owned by the taskspan_spans that holds it. */
typedef struct taskspan_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    /** All zero when has_parent is 0. */
    uint8_t parent_span_id[8];
    /** 0 for a root span of the trace. */
    int has_parent;
    /** Index of the parent in the same result, or (size_t)-1 when it is not
     *  in it (a root span, or a parent from TRACEPARENT). */
    size_t parent_index;
    /** The span key: "main", "work_wi_001", ... */
    const char *name;
    /** The runner incarnation: 1 for the first runner_spawn, 0 before any. */
    int64_t incarnation;
    int64_t start_ns;
    /** 0 while the span is open. */
    int64_t end_ns;
    /** 1 while no event has closed it. */
    int is_open;
    taskspan_status status;
    /** "" unless status is TASKSPAN_STATUS_ERROR. */
    const char *status_message;
    /** taskspan.task_id, taskspan.span_key, taskspan.incarnation, and
     *  taskspan.instance / taskspan.crashed when they apply. */
    const taskspan_attr *attrs;
    size_t n_attrs;
    /** In seq order. */
    const taskspan_span_event *events;
    size_t n_events;
    const taskspan_span_link *links;
    size_t n_links;
} taskspan_span;

/** The spans of one task. Opaque; read with the functions below. */
typedef struct taskspan_spans taskspan_spans;

/**
 * Build the spans of a task from the events in the buffer, as
 * docs/span-model.md describes. Ids are pure functions of the task, the span
 * key and the incarnation, so building again gives the same ids.
 *
 * @param out  receives the result; caller owns, free with
 *             taskspan_spans_free().
 * @return TASKSPAN_OK; TASKSPAN_E_NOT_FOUND when the task has no event;
 *         TASKSPAN_E_INVALID_ARG; TASKSPAN_E_NOMEM; a store error.
 * Thread-safety: any thread, concurrently with emits on the same recorder.
 */
TASKSPAN_API taskspan_code taskspan_task_spans(taskspan_spans **out,
                                               taskspan *ts,
                                               const char *task_id);

/** Number of spans, in the order of their first event. */
TASKSPAN_API size_t taskspan_spans_count(const taskspan_spans *spans);

/** Span i (0-based); NULL when i is out of range.
 *  @return borrowed, valid until taskspan_spans_free(). */
TASKSPAN_API const taskspan_span *taskspan_spans_get(
    const taskspan_spans *spans, size_t i);

/** Free a result of taskspan_task_spans(). NULL is a no-op. */
TASKSPAN_API void taskspan_spans_free(taskspan_spans *spans);

/* ------------------------------------------------------------------------ */
/* Inspecting a buffer                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Read what a buffer holds (its tasks, a task's events, the delivery
 * backlog) and prune what was delivered long ago. These calls open their
 * own short-lived connection to the recorder's buffer file, so they run
 * beside emits, the background exporter and other processes, and any
 * thread may call them at any time. A recorder opened with
 * TASKSPAN_OPEN_READONLY can do everything here except taskspan_gc().
 * docs/cli.md (`taskspan tasks`, `events`, `status`, `gc`) shows them at
 * work.
 */

/** What a task's events say about it. Append-only. */
typedef enum taskspan_task_state {
    /** Its latest incarnation has no runner_exit and its runner process is
     *  still there, or nothing tells (no runner_pid recorded; or no
     *  runner_spawn at all and a span is still open). */
    TASKSPAN_TASK_RUNNING = 0,
    /** Its latest incarnation ended with runner_exit (or, with no
     *  runner_spawn at all, every span closed) and did not fail. */
    TASKSPAN_TASK_FINISHED = 1,
    /** Ended as FINISHED does, but runner_exit's exit_reason is not a
     *  success word ("done", "success", "succeeded", "completed",
     *  "finished", "ok"; absent counts as success), or the latest instance
     *  of some span of that incarnation ended with status ERROR (a failed
     *  work item, a failed gate, a failed step). */
    TASKSPAN_TASK_FAILED = 2,
    /** Its latest incarnation has no runner_exit and the runner_pid of its
     *  runner_spawn names no live process on this machine (killed, or
     *  crashed). */
    TASKSPAN_TASK_CRASHED = 3,
    /** taskspan_gc() deleted its events; the task's seq counter is kept. */
    TASKSPAN_TASK_PRUNED = 4
} taskspan_task_state;

/** "running", "finished", "failed", "crashed", "pruned"; "unknown" for any
 *  other value. Static text. Thread-safety: any thread. */
TASKSPAN_API const char *taskspan_task_state_name(taskspan_task_state state);

/** One task of a buffer. Strings are owned by the taskspan_task_list. */
typedef struct taskspan_task_info {
    const char *task_id;
    taskspan_task_state state;
    int64_t n_events;     /**< events in the buffer (0 once pruned) */
    int64_t last_seq;     /**< the last seq handed out (kept by gc) */
    int64_t incarnations; /**< runner_spawn events ever recorded */
    int64_t first_ns;     /**< time of its first event in the buffer, or 0 */
    int64_t last_ns;      /**< time of its last event in the buffer, or 0 */
    /** runner_pid of the latest incarnation's runner_spawn, or 0. */
    int64_t runner_pid;
    /** exit_reason of the latest incarnation's runner_exit, or NULL. */
    const char *exit_reason;
    /** Its closed spans known to the exporters, by delivery state. Open
     *  spans, and closed ones no exporter has discovered yet, are in none. */
    uint64_t spans_delivered;
    uint64_t spans_pending;
    uint64_t spans_rejected;
} taskspan_task_info;

/** The tasks of a buffer. Opaque; read with the functions below. */
typedef struct taskspan_task_list taskspan_task_list;

/**
 * List every task of the buffer, in the order of their first event, with
 * their state (read from the events and the span model, and for a runner
 * that did not exit, from whether its process is alive).
 * @param out  receives the list; caller owns, free with
 *             taskspan_task_list_free(). An empty buffer gives an empty list.
 * @return TASKSPAN_OK; TASKSPAN_E_INVALID_ARG; TASKSPAN_E_NOMEM; a store
 *         error (TASKSPAN_E_CORRUPT, TASKSPAN_E_IO, TASKSPAN_E_BUSY, ...),
 *         described by taskspan_errmsg().
 * Thread-safety: any thread, concurrently with any other call on ts.
 */
TASKSPAN_API taskspan_code taskspan_list_tasks(taskspan_task_list **out,
                                               taskspan *ts);

/** Number of tasks in the list. */
TASKSPAN_API size_t taskspan_task_list_count(const taskspan_task_list *list);

/** Task i (0-based); NULL when i is out of range.
 *  @return borrowed, valid until taskspan_task_list_free(). */
TASKSPAN_API const taskspan_task_info *taskspan_task_list_get(
    const taskspan_task_list *list, size_t i);

/** Free a result of taskspan_list_tasks(). NULL is a no-op. */
TASKSPAN_API void taskspan_task_list_free(taskspan_task_list *list);

/** One recorded event, as the buffer's task_events row holds it. Strings
 *  are owned by the taskspan_event_list. */
typedef struct taskspan_event_row {
    int64_t seq;
    int64_t ts_ns;
    const char *event_type;
    const char *actor;           /**< NULL if none was recorded */
    const char *span_key;        /**< the span_id column: "main", ... */
    const char *parent_span_key; /**< the parent_span_id column, or NULL */
    const char *phase;           /**< NULL if none was recorded */
    int64_t incarnation;
    /** The payload as a JSON object text, e.g. {"runner_pid":42}. */
    const char *payload_json;
} taskspan_event_row;

/** The events of one task. Opaque; read with the functions below. */
typedef struct taskspan_event_list taskspan_event_list;

/**
 * Read every event of a task, in seq order.
 * @param out  receives the list; caller owns, free with
 *             taskspan_event_list_free().
 * @return TASKSPAN_OK; TASKSPAN_E_NOT_FOUND when the task has no event (the
 *         message says when taskspan_gc() pruned it); TASKSPAN_E_INVALID_ARG;
 *         TASKSPAN_E_NOMEM; a store error.
 * Thread-safety: any thread, concurrently with any other call on ts.
 */
TASKSPAN_API taskspan_code taskspan_task_events(taskspan_event_list **out,
                                                taskspan *ts,
                                                const char *task_id);

/** Number of events in the list. */
TASKSPAN_API size_t taskspan_event_list_count(const taskspan_event_list *list);

/** Event i (0-based, seq order); NULL when i is out of range.
 *  @return borrowed, valid until taskspan_event_list_free(). */
TASKSPAN_API const taskspan_event_row *taskspan_event_list_get(
    const taskspan_event_list *list, size_t i);

/** Free a result of taskspan_task_events(). NULL is a no-op. */
TASKSPAN_API void taskspan_event_list_free(taskspan_event_list *list);

/** What a buffer holds, for taskspan_get_buffer_status(). */
typedef struct taskspan_buffer_status {
    /** The buffer file; borrowed, valid until taskspan_close(). */
    const char *path;
    uint64_t db_bytes;  /**< size of the file itself */
    uint64_t wal_bytes; /**< size of its -wal file, 0 when there is none */
    int schema_version; /**< PRAGMA user_version of the file */
    uint64_t tasks;     /**< rows of the tasks table (pruned ones too) */
    uint64_t events;    /**< rows of task_events */
    /** Closed spans the exporters found and did not deliver yet. */
    uint64_t spans_pending;
    uint64_t spans_delivered; /**< delivered, ever, in this buffer */
    uint64_t spans_rejected;  /**< kept with the collector's reason */
    /** The traces URL an exporter of this process uses: the recorder's, or
     *  the one its OTEL_* environment gives when it has none (read-only). */
    char endpoint[512];
    /** The last export error of any exporter of this buffer, or "". */
    char last_error[256];
    int64_t last_error_ns; /**< when, or 0 */
    /** The oldest task (by its first event) with closed spans not yet
     *  delivered, and the end time of the first of them (0 when nothing is
     *  pending). */
    int64_t oldest_pending_ns;
    char oldest_pending_task[TASKSPAN_MAX_ID_LEN + 1];
} taskspan_buffer_status;

/**
 * Read the buffer's size, counts and delivery backlog into *out.
 * @return TASKSPAN_OK; TASKSPAN_E_INVALID_ARG; a store error.
 * Thread-safety: any thread, concurrently with any other call on ts.
 */
TASKSPAN_API taskspan_code
taskspan_get_buffer_status(taskspan_buffer_status *out, taskspan *ts);

/** What taskspan_gc() did. */
typedef struct taskspan_gc_report {
    uint64_t tasks_pruned;
    /** Tasks whose last event is past the cutoff but that were kept:
     *  running, or with a span open or not delivered yet. */
    uint64_t tasks_kept;
    uint64_t events_deleted;
    /** Settled (delivered or rejected) spans whose export record went
     *  with their task's events. */
    uint64_t spans_deleted;
    uint64_t bytes_before; /**< the file and its -wal before */
    uint64_t bytes_after;  /**< the file and its -wal after */
    /** Free pages inside the file after gc: SQLite reuses them for new
     *  events before the file grows (it does not shrink the file). */
    uint64_t bytes_free;
} taskspan_gc_report;

/**
 * Prune delivered data: delete the events and export rows of every task
 * that is not running, whose last event is older than older_than_seconds,
 * and whose every span is closed and delivered (or rejected for good by
 * the collector). Nothing pending, open or recent is ever deleted. The
 * task's row stays, so its seq continues without a gap if it gets another
 * event; taskspan_task_spans() and taskspan_task_events() then give
 * TASKSPAN_E_NOT_FOUND for it and taskspan_list_tasks() lists it as
 * TASKSPAN_TASK_PRUNED. Also kept: a task with events no exporter has
 * examined yet (an exporter may be reading it).
 * Each batch of tasks is one short write transaction, so runners and
 * exporters writing the same file only wait for one batch at a time.
 * @param out  NULL, or receives what was done (also on failure: what was
 *             done before it).
 * @param older_than_seconds  the retention, >= 0 (0: every finished task).
 * @return TASKSPAN_OK; TASKSPAN_E_INVALID_ARG; TASKSPAN_E_READONLY (a
 *         read-only recorder or file); TASKSPAN_E_BUSY; a store error.
 * Thread-safety: any thread, concurrently with any other call on ts.
 */
TASKSPAN_API taskspan_code taskspan_gc(taskspan_gc_report *out, taskspan *ts,
                                       int64_t older_than_seconds);

/* ------------------------------------------------------------------------ */
/* Export over OTLP/HTTP                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A recorder with export on runs one background thread. It turns the
 * buffer's closed spans into OTLP, POSTs them in batches to the traces
 * endpoint and marks a span delivered only after the request that carried
 * it got a 2xx. A collector that is down never slows or fails an emit: the
 * spans wait in the buffer. Any number of exporters (threads of several
 * recorders, `taskspan export` processes) may share a buffer; one of them
 * at a time holds a task's lease to send its spans. docs/export.md has
 * the details.
 */

/**
 * Deliver every span closed before this call, waiting at most timeout_ms
 * (negative: no limit). Spans not delivered in time stay in the buffer.
 * Works with or without the background exporter: without it, the export
 * runs in the calling thread.
 * @return TASKSPAN_OK when nothing closed is left undelivered (spans the
 *         collector rejected for good count as done: they are kept in the
 *         buffer, marked rejected with the reason); TASKSPAN_E_TIMEOUT;
 *         TASKSPAN_E_INVALID_ARG (NULL, or the export configuration is
 *         unusable: the message says why); TASKSPAN_E_READONLY; a store error.
 * Thread-safety: any thread, concurrently with emits.
 */
TASKSPAN_API taskspan_code taskspan_flush(taskspan *ts, int timeout_ms);

/** Delivery counters and state. */
typedef struct taskspan_export_stats {
    /** 1 when this recorder runs a background exporter. */
    int enabled;
    /** From this recorder since it was opened: */
    uint64_t spans_delivered;
    uint64_t spans_rejected; /**< rejected for good by the collector */
    uint64_t requests_ok;
    uint64_t requests_failed; /**< failed attempts, retried or not */
    /** Spans the collector reported in partial_success.rejected_spans. */
    uint64_t partial_rejected;
    /** From the buffer, all exporters: closed spans not yet delivered. */
    uint64_t spans_pending;
    uint64_t spans_delivered_total; /**< delivered, ever, in this buffer */
    /** Rejected spans kept in the buffer with their reason (gc deletes
     *  them with their task). */
    uint64_t spans_rejected_total;
    /** The last export error (any exporter of this buffer), or "". */
    char last_error[256];
    int64_t last_error_ns; /**< when, or 0 */
    /** The traces URL this recorder exports to. */
    char endpoint[512];
    /** Malformed OTEL_* variables that were ignored, or "". */
    char config_warnings[1024];
} taskspan_export_stats;

/**
 * Read export counters into *out.
 * @return TASKSPAN_OK, TASKSPAN_E_INVALID_ARG, or a store error.
 * Thread-safety: any thread, concurrently with emits.
 */
TASKSPAN_API taskspan_code
taskspan_get_export_stats(taskspan_export_stats *out, taskspan *ts);

/**
 * Dump every span of a task, as OTLP would carry it, without sending it:
 * the closed spans exactly as the exporter encodes them (same limits, from
 * OTEL_SPAN_*_LIMIT, same scope "taskspan"), and the open ones too, each
 * with its end time set to the time of its last event (its start when it
 * has none) and one more attribute, taskspan.open = true. Spans are grouped
 * by the resource recorded with their first event (this process's own
 * resource when none was recorded or the row is gone).
 *
 * @param out      receives the dump; caller owns, free with taskspan_free().
 *                 NUL-terminated in both formats (the NUL is not counted).
 * @param out_len  receives its length in bytes.
 * @param json     1: OTLP JSON, an ExportTraceServiceRequest object on one
 *                 line (UTF-8, no trailing newline; ids as lowercase hex,
 *                 64-bit integers as decimal strings, enums as integers);
 *                 0: the ExportTraceServiceRequest protobuf bytes.
 * @return TASKSPAN_OK; TASKSPAN_E_NOT_FOUND when the task has no event;
 *         TASKSPAN_E_INVALID_ARG; TASKSPAN_E_NOMEM; TASKSPAN_E_ENCODE;
 *         a store error.
 * Thread-safety: any thread, concurrently with emits on the same recorder.
 */
TASKSPAN_API taskspan_code taskspan_task_dump(char **out, size_t *out_len,
                                              taskspan *ts,
                                              const char *task_id, int json);

/**
 * Free memory the library returned to the caller with "free with
 * taskspan_free()" (e.g. the result of taskspan_task_dump()). NULL is a
 * no-op. Thread-safety: any thread.
 */
TASKSPAN_API void taskspan_free(void *p);

/* ------------------------------------------------------------------------ */
/* Ids and trace context                                                    */
/* ------------------------------------------------------------------------ */

/** Length of a traceparent header value, without the NUL. */
#define TASKSPAN_TRACEPARENT_LEN 55

/**
 * Parse a W3C traceparent ("00-<trace-id>-<parent-id>-<flags>", lowercase
 * hex). Version 00 must be exactly 55 characters; a higher version may carry
 * more fields after a '-'. All-zero ids and version ff are invalid.
 * @param out_trace_id  receives 16 bytes.  @param out_span_id  8 bytes.
 * @param out_flags     NULL, or receives the trace flags.
 * @return TASKSPAN_OK or TASKSPAN_E_INVALID_ARG. Thread-safety: any thread.
 */
TASKSPAN_API taskspan_code taskspan_traceparent_parse(uint8_t out_trace_id[16],
                                                      uint8_t out_span_id[8],
                                                      uint8_t *out_flags,
                                                      const char *text);

/**
 * Format a version-00 traceparent into out (TASKSPAN_TRACEPARENT_LEN + 1
 * bytes), e.g. to pass a span of a task to a child process.
 * @return TASKSPAN_OK, or TASKSPAN_E_INVALID_ARG for NULL or all-zero ids.
 */
TASKSPAN_API taskspan_code taskspan_traceparent_format(
    char out[TASKSPAN_TRACEPARENT_LEN + 1], const uint8_t trace_id[16],
    const uint8_t span_id[8], uint8_t flags);

/**
 * Write the 32 lowercase hex digits of a task's derived trace id into out
 * (33 bytes). This is the id a task gets when it was not started inside an
 * existing trace. @return TASKSPAN_OK or TASKSPAN_E_INVALID_ARG.
 */
TASKSPAN_API taskspan_code taskspan_task_trace_id_hex(char out[33],
                                                      const char *task_id);

#ifdef __cplusplus
}
#endif

#endif /* TASKSPAN_TASKSPAN_H */
