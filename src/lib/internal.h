/*
 * internal.h -- what the modules of libtaskspan share and nothing else sees.
 *
 * Holds the recorder's struct, the internal interface of the buffer store
 * (an ops table, so a journal can later sit in front of SQLite without any
 * caller changing), the payload codec, id derivation and the error helpers.
 * Names are taskspan__ (two underscores): internal, no API promise.
 */
#ifndef TASKSPAN_INTERNAL_H
#define TASKSPAN_INTERNAL_H

#include "taskspan/taskspan.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TASKSPAN__MSG_SIZE 256

/* ---- errors ------------------------------------------------------------ */

/* Format a one-line message into buf (size bytes). Returns code, so a failure
 * site reads: return taskspan__fail(err, n, TASKSPAN_E_X, "...", ...). */
taskspan_code taskspan__fail(char *buf, size_t size, taskspan_code code,
                             const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- ids ---------------------------------------------------------------- */

/* The trace id a task gets when it was not started inside a trace. */
void taskspan__derive_trace_id(uint8_t out[16], const char *task_id);

/* The span id of the span (key, incarnation, ordinal) of a trace. Never all
 * zero. ordinal counts earlier spans with the same key and incarnation.
 * task_id: NULL for a task whose trace id is its own (derived from its id);
 * else the task, hashed in too, for a task that joined a trace other tasks
 * may share (docs/span-model.md, "Span instances and their ids"). */
void taskspan__derive_span_id(uint8_t out[8], const uint8_t trace_id[16],
                              const char *task_id, const char *span_key,
                              int64_t incarnation, int64_t ordinal);

/* ---- payload codec (attributes <-> JSON) ------------------------------- */

/* Encode attrs as one JSON object. OUT: *out_json, malloc'd, caller frees. */
taskspan_code taskspan__payload_encode(char **out_json,
                                       const taskspan_attr *attrs,
                                       size_t n_attrs, char *err,
                                       size_t errlen);

/* A decoded payload: attributes plus the memory that backs them. attrs
 * may start as the caller's array (fixed, cap entries), which is never
 * freed: a list that stays small then costs no malloc. {0} starts
 * empty, on the heap. */
typedef struct taskspan__attr_list {
    taskspan_attr *attrs;
    size_t n;
    size_t cap;
    taskspan_attr *fixed;
} taskspan__attr_list;

/* Decode a JSON object into typed attributes appended to *list. Strings and
 * arrays are allocated from *arena (see taskspan__arena). A payload that is
 * not an object yields one string attribute "payload" holding it. */
struct taskspan__arena;
taskspan_code taskspan__payload_decode(taskspan__attr_list *list,
                                       struct taskspan__arena *arena,
                                       const char *json);

/* The fast path of taskspan__payload_decode() (payload_flat.c): a flat
 * object of plain ASCII strings, integers and booleans. *handled is false,
 * with nothing appended, for any other text: decode it with jansson. */
taskspan_code taskspan__payload_decode_flat(taskspan__attr_list *list,
                                            struct taskspan__arena *arena,
                                            const char *json, bool *handled);

/* taskspan__payload_decode() without the fast path (for its tests). */
taskspan_code taskspan__payload_decode_json(taskspan__attr_list *list,
                                            struct taskspan__arena *arena,
                                            const char *json);

/* ---- arena: many small allocations freed at once ------------------------ */

typedef struct taskspan__arena {
    struct taskspan__arena_block *head;
} taskspan__arena;

void *taskspan__arena_alloc(taskspan__arena *a, size_t size);
char *taskspan__arena_strdup(taskspan__arena *a, const char *s);
void taskspan__arena_free(taskspan__arena *a);
/* Empty a for reuse, keeping its newest block: a scratch arena filled
 * and emptied per call (event_wire.c at each insert) mallocs nothing
 * after its first use, as long as each fill fits one block. */
void taskspan__arena_reset(taskspan__arena *a);

/* Append one attribute to list (copying nothing: the caller owns what the
 * attribute points at). Returns TASKSPAN_E_NOMEM on failure. */
taskspan_code taskspan__attr_list_push(taskspan__attr_list *list,
                                       taskspan_attr attr);
void taskspan__attr_list_free(taskspan__attr_list *list);

/* ---- the buffer store --------------------------------------------------- */

typedef struct taskspan__store_config {
    taskspan_sync_mode sync_mode;
    int busy_timeout_ms;
    unsigned flags; /* TASKSPAN_OPEN_* */
    /* The size cap (taskspan__buffer_cap_resolve) appends stop at; 0 for
     * none. Other writers (schema, resources, export) are not capped. */
    int64_t max_bytes;
    /* Only the recorder's own read-write open may move a damaged buffer
     * aside and start a new one; the exporters' connections never do. */
    bool may_repair;
} taskspan__store_config;

/* The buffer's size and what the cap and the disk refused (a store's). */
typedef struct taskspan__store_capacity {
    int64_t max_bytes;        /* the cap emits stop at */
    int64_t used_bytes;       /* page_count * page_size */
    int64_t reusable_bytes;   /* freelist pages within used_bytes */
    uint64_t refused_cap;     /* appends refused at the cap */
    uint64_t refused_disk;    /* appends refused by a full disk or limit */
    uint64_t pruned_for_room; /* delivered tasks pruned at the cap */
} taskspan__store_capacity;

/* One event to append. The store assigns seq and incarnation. */
typedef struct taskspan__append {
    const char *task_id;
    const char *event_type;
    const char *actor;
    const char *span_key;
    const char *parent_span_key;
    const char *phase;
    const char *payload_json;
    int64_t ts_ns;
    int64_t resource_id;     /* the recorder's resource row, 0 for none */
    bool starts_incarnation; /* runner_spawn */
    /* The trace the task joins if this event creates it (from TRACEPARENT). */
    bool has_trace_context;
    uint8_t trace_id[16];
    uint8_t parent_span_id[8];
    uint8_t trace_flags;
} taskspan__append;

/* One stored event, as the span model reads it. Strings are arena-owned. */
typedef struct taskspan__stored_event {
    int64_t seq;
    int64_t incarnation;
    int64_t ts_ns;
    int64_t resource_id; /* 0 for none */
    const char *event_type;
    const char *actor;
    const char *span_key;
    const char *parent_span_key;
    const char *phase;
    /* The payload's JSON; NULL (from load_export only) when its wire
     * holds it. */
    const char *payload_json;
    /* The payload's wire (event_wire.c), from its record (schema 10,
     * event_record.c) or task_events.otlp (schema 9); NULL for none. */
    const uint8_t *wire;
    size_t wire_len;
} taskspan__stored_event;

/* A task's stored trace context and events, in seq order. */
typedef struct taskspan__task_events {
    bool has_trace_context;
    /* Its span ids hash the task id too (tasks.id_scheme 2: a task created
     * by a library of schema 6 or later). */
    bool span_ids_by_task;
    /* How many of its closed spans, in close order, are settled
     * (tasks.export_done, schema 8), and how many times gc pruned it
     * (tasks.export_epoch): export progress read in one epoch never
     * applies in another. */
    int64_t export_done;
    int64_t export_epoch;
    uint8_t trace_id[16];
    uint8_t parent_span_id[8];
    taskspan__stored_event *events;
    size_t n_events;
    /* Incarnations found cut off by a crash before any new runner_spawn
     * (recovery.c): the seq of the last event of each, ascending. The span
     * model closes the incarnation's open spans right after that event,
     * exactly as the next runner_spawn would. In the arena. */
    int64_t *crash_closed_seqs;
    size_t n_crash_closed;
    taskspan__arena arena; /* backs events and their strings */
} taskspan__task_events;

void taskspan__task_events_free(taskspan__task_events *te);

/* What an exporter found when it examined a task: its events up to
 * upto_seq (0: none left), whether a span of it is still open, and how
 * many of its spans are closed. gone: the task has no events left (pruned
 * by hand): what it had pending can never be built again. */
typedef struct taskspan__examined {
    const char *task_id;
    int64_t upto_seq;
    bool open;
    bool gone;
    int64_t closed;
    int64_t done;  /* settled with nothing sent (rows): export_done >= it */
    int64_t epoch; /* the task's export_epoch when it was read */
} taskspan__examined;

/* Delivery state of a span's row in export_spans (schema 8: rows only for
 * rejected spans, and those older buffers left). */
typedef enum taskspan__span_state {
    TASKSPAN__SPAN_PENDING = 0,
    TASKSPAN__SPAN_DELIVERED = 1,
    TASKSPAN__SPAN_REJECTED = 2
} taskspan__span_state;

/* A span's key for export: trace id (16 bytes), then span id (8). */
#define TASKSPAN__SPAN_KEY_LEN 24

/* A span rejected for good, to keep in export_spans with the reason. */
typedef struct taskspan__new_span {
    const uint8_t *trace_id; /* 16 bytes */
    const uint8_t *span_id;  /* 8 bytes */
    const char *task_id;
    const char *name;
    int64_t resource_id;
    int64_t end_ns;
    size_t body_len;
    /* Its task was recorded with a trace context (traceparent): other
     * tasks may share its trace id (export_spans.trace_shared). */
    bool trace_shared;
} taskspan__new_span;

/* A task whose closed spans past export_done an exporter is about to send
 * (tasks_lease): done is the export_done it read (or settled itself). */
typedef struct taskspan__task_lease {
    const char *task_id;
    int64_t epoch; /* its export_epoch as read */
    int64_t done;
    int64_t closed; /* its closed spans: export_closed >= it once leased */
    bool ok;        /* OUT: leased (or renewed) by the caller */
} taskspan__task_lease;

/* A task's new export_done after a request (tasks_settle). */
typedef struct taskspan__task_done {
    const char *task_id;
    int64_t epoch; /* its export_epoch as read: no effect in another */
    int64_t done;
} taskspan__task_done;

/* A task a flush waits for: settled once an exporter examined it up to
 * seq and delivered every closed span it found (flush_targets). */
typedef struct taskspan__flush_target {
    char *task_id;
    int64_t seq;
} taskspan__flush_target;

void taskspan__flush_targets_free(taskspan__flush_target *t, size_t n);

typedef struct taskspan__export_counts {
    uint64_t pending, delivered, rejected;
    char last_error[256];
    int64_t last_error_ns;
} taskspan__export_counts;

/* The store's operations. Every function writes a one-line message into err
 * (errlen bytes) when it fails. A store handle is used by one thread at a
 * time: the recorder serialises calls with its mutex. */
typedef struct taskspan__store_ops {
    const char *name;
    taskspan_code (*open)(void **out, const char *path,
                          const taskspan__store_config *cfg, char *err,
                          size_t errlen);
    /* Commit one event; OUT: *out_seq. Durable when it returns OK. */
    taskspan_code (*append)(void *store, const taskspan__append *ev,
                            int64_t *out_seq, char *err, size_t errlen);
    /* Read a task's events. OUT: *out (free with taskspan__task_events_free).
     * TASKSPAN_E_NOT_FOUND when the task has no event. */
    taskspan_code (*load_task)(void *store, const char *task_id,
                               taskspan__task_events *out, char *err,
                               size_t errlen);
    /* The same for an exporter (NULL: load_task), faster: an event whose
     * payload has a wire may come without its JSON (payload_json NULL;
     * the span model reads the wire). */
    taskspan_code (*load_export)(void *store, const char *task_id,
                                 taskspan__task_events *out, char *err,
                                 size_t errlen);
    void (*close)(void *store);
    /* Size, cap and refusals. OUT: *out. */
    taskspan_code (*capacity)(void *store, taskspan__store_capacity *out,
                              char *err, size_t errlen);
    /* What open did that the caller should hear about (a damaged buffer
     * moved aside), or "". Borrowed, valid until close. */
    const char *(*open_notice)(const void *store);

    /* ---- the export side (exporter.c) ---- */

    /* The id of the resource row holding attrs_json, created if new. */
    taskspan_code (*resource_put)(void *store, const char *attrs_json,
                                  int64_t *out_id, char *err, size_t errlen);
    /* The attrs JSON of resource id. OUT: *out_json (malloc'd). */
    taskspan_code (*resource_get)(void *store, int64_t id, char **out_json,
                                  char *err, size_t errlen);
    /* Export progress (schema 8) is kept per task, in its tasks row: the
     * number of its closed spans, in close order
     * (taskspan__spans_close_order), that are settled (export_done), how
     * many an exporter found closed (export_closed), and a lease
     * (export_owner, export_until) that lets one exporter at a time send
     * the spans past export_done, or, with no owner, keeps every exporter
     * from sending them until a retry time. No row per span, but for
     * rejected ones (store_export.c).
     *
     * The live tasks (export_live) with an event past the last one an
     * exporter examined, and, with with_pending, those with closed spans
     * not yet settled that owner may send now (its own lease, or none in
     * force). OUT: *out_tasks (malloc'd array of malloc'd strings),
     * *out_fresh (malloc'd: whether task i has events not examined). */
    taskspan_code (*changed_tasks)(void *store, const char *owner,
                                   int64_t now_ns, bool with_pending,
                                   char ***out_tasks, bool **out_fresh,
                                   size_t *out_n, char *err, size_t errlen);
    /* Record, in one transaction, that each task of marks was examined up
     * to its upto_seq with that many spans closed (the counts only in the
     * epoch it was read in), and end owner's leases on them. A task with
     * no open span, no unsettled span and no later event leaves the live
     * ones until its next event. A task found gone
     * gives up its unsettled spans: OUT: *out_given_up, how many (they
     * can never be built again). */
    taskspan_code (*tasks_examined)(void *store, const char *owner,
                                    const taskspan__examined *marks, size_t n,
                                    uint64_t *out_given_up, char *err,
                                    size_t errlen);
    /* The spans of task_id with a row in export_spans (settled: rejected,
     * or delivered by an older version), as sorted 24-byte keys (trace
     * id, then span id). trace_id is the task's (all its spans are in
     * it); trace_shared, whether it came from a trace context, which
     * other tasks may share. Without, the keys are read by trace id, and
     * a task whose derived trace id another one had too would get that
     * one's keys as well: harmless, no two spans share a key. OUT:
     * *out_keys (malloc'd, n * 24 bytes), *out_n. */
    taskspan_code (*task_span_keys)(void *store, const char *task_id,
                                    const uint8_t trace_id[16],
                                    bool trace_shared, uint8_t **out_keys,
                                    size_t *out_n, char *err, size_t errlen);
    /* Lease, in one transaction, each task of leases whose export_epoch
     * and export_done are still leases[i]'s (not pruned by gc, nothing
     * settled since it was read) and whose lease is owner's or not in
     * force at now_ns, for owner until until_ns; its export_closed moves
     * up to
     * leases[i].closed (the spans it is about to send count as pending
     * from now on, whatever becomes of the exporter). OUT: leases[i].ok. */
    taskspan_code (*tasks_lease)(void *store, const char *owner,
                                 int64_t now_ns, int64_t until_ns,
                                 taskspan__task_lease *leases, size_t n,
                                 char *err, size_t errlen);
    /* After a request's answer, in one transaction: move each task's
     * export_done up to dones[i].done (never down; not at all if gc pruned
     * the task since: its epoch moved), add delivered to the
     * buffer's count of delivered spans, and keep the rejected spans
     * (when the answer rejected them for good) with error. */
    taskspan_code (*tasks_settle)(void *store,
                                  const taskspan__task_done *dones, size_t n,
                                  uint64_t delivered,
                                  const taskspan__new_span *rejected,
                                  size_t n_rejected, const char *error,
                                  char *err, size_t errlen);
    /* End owner's leases on tasks[0..n): no exporter sends their spans
     * before retry_at_ns (wall clock; 0: at once). */
    taskspan_code (*tasks_retry)(void *store, const char *owner,
                                 char *const *tasks, size_t n,
                                 int64_t retry_at_ns, char *err,
                                 size_t errlen);
    /* Remember the last export error (shown by `taskspan status`). */
    taskspan_code (*note_error)(void *store, const char *error, int64_t at_ns,
                                char *err, size_t errlen);
    /* Counts and the last error, for taskspan_get_export_stats(). */
    taskspan_code (*export_counts)(void *store, taskspan__export_counts *out,
                                   char *err, size_t errlen);
    /* What a flush waits for: the live tasks with an event not examined
     * or a closed span not settled, each with its last seq now. OUT:
     * *out (free with taskspan__flush_targets_free). */
    taskspan_code (*flush_targets)(void *store, taskspan__flush_target **out,
                                   size_t *out_n, char *err, size_t errlen);
    /* The first target from *from on that is not settled yet (*from moves
     * past the settled ones before it; n when none is left). With
     * out_spans, also how many closed spans of targets[*from..n) are known
     * not to be settled. */
    taskspan_code (*targets_pending)(void *store,
                                     const taskspan__flush_target *targets,
                                     size_t n, size_t *from,
                                     int64_t *out_spans, char *err,
                                     size_t errlen);
    /* Whether a retention pass could prune anything: one of the oldest
     * events (the first by id) older than cutoff_ns, or a task left
     * without events. A few index probes, where the pass itself joins
     * every task's rows. */
    taskspan_code (*prune_due)(void *store, int64_t cutoff_ns, bool *out_due,
                               char *err, size_t errlen);
    /* Give the exporter's connection a page cache that holds a discovery
     * batch (its writes would spill to the file otherwise). */
    void (*export_tune)(void *store);
    /* Work items, checkpoints and crashed incarnations (recovery.h). */
    const struct taskspan__recovery_ops *recovery;

    /* ---- the journal mode (journal.c) ---- */

    /* Commit evs in one transaction (seq assigned here) together with
     * journal key's moved offset. Nothing is committed on failure. */
    taskspan_code (*append_batch)(void *store, const taskspan__append *evs,
                                  size_t n, const char *key, int64_t offset,
                                  char *err, size_t errlen);
    /* How far journal key was moved (0 when unknown). */
    taskspan_code (*journal_offset)(void *store, const char *key, int64_t *out,
                                    char *err, size_t errlen);
    /* Forget journal key (its file is gone). */
    taskspan_code (*journal_forget)(void *store, const char *key, char *err,
                                    size_t errlen);
} taskspan__store_ops;

extern const taskspan__store_ops taskspan__store_sqlite;

/* ---- the size cap (buffer_cap.c) ---------------------------------------- */

/* The cap in force: the option when not 0, else TASKSPAN_MAX_BYTES, else
 * TASKSPAN_DEFAULT_MAX_BYTES. A malformed variable is ignored with a
 * one-line warning in warn (warnlen bytes, "" when none). A bad option is
 * TASKSPAN_E_INVALID_ARG with the message in err. */
taskspan_code taskspan__buffer_cap_resolve(int64_t *out, int64_t option,
                                           const char *env_value, char *warn,
                                           size_t warnlen, char *err,
                                           size_t errlen);

/* Parse a size: a whole number of bytes, optionally followed by K, M, G or
 * T (with or without "iB"; powers of 1024). False when malformed. */
bool taskspan__parse_size(const char *text, int64_t *out);

/* ---- the recorder -------------------------------------------------------- */

/* struct taskspan (the recorder) is private to recorder.c. */

/* Record a failure of an API call on ts: its message (under the lock) and
 * the failure counter when counted is true. Returns code. */
taskspan_code taskspan__record_failure(taskspan *ts, taskspan_code code,
                                       bool counted, const char *msg);

/* Nanoseconds since the UNIX epoch, from CLOCK_REALTIME. */
int64_t taskspan__now_ns(void);

/* CLOCK_MONOTONIC in nanoseconds: for deadlines and waits, which wall
 * clock jumps must not move. */
int64_t taskspan__mono_ns(void);

/* ---- typed events (events.c) -------------------------------------------- */

/* Place event_type as its typed helper does: set rec's event_type, actor,
 * phase, span_key and parent_span_key. A work-item span key is written
 * into key (key_size bytes, at least TASKSPAN_MAX_ID_LEN + 8). false for a
 * type without a typed helper. */
bool taskspan__event_place(taskspan__append *rec, const char *event_type,
                           const char *work_item_id, char *key,
                           size_t key_size);

/* ---- the span model ------------------------------------------------------ */

/* Build the spans of te (see spanmodel.c). OUT: *out, free with
 * taskspan_spans_free(). */
taskspan_code taskspan__spans_build(taskspan_spans **out, const char *task_id,
                                    const taskspan__task_events *te);

/* The attributes a span event has after its payload's fields, into out:
 * taskspan.seq, then taskspan.actor and taskspan.phase when recorded.
 * Returns how many (1 to 3). The span model adds them to an event's
 * attributes; the encoder writes them after a payload it has as bytes
 * (event_wire.c). */
size_t taskspan__event_tail(taskspan_attr out[3], int64_t seq,
                            const char *actor, const char *phase);
#define TASKSPAN__ATTR_SEQ "taskspan.seq"
#define TASKSPAN__ATTR_ACTOR "taskspan.actor"
#define TASKSPAN__ATTR_PHASE "taskspan.phase"

/* taskspan__spans_build for an exporter with limits lim: an event whose
 * payload's stored bytes lim leaves whole (event_wire.c) has no
 * attributes in its taskspan_span_event; the bytes are in
 * taskspan__spans_event_wires(), and taskspan__encode_span_wired() adds
 * the tail (taskspan__event_tail). Such spans are for sending only.
 * flags: TASKSPAN__SPANS_BORROW, or 0. */
struct taskspan__limits;
taskspan_code taskspan__spans_build_wired(taskspan_spans **out,
                                          const char *task_id,
                                          const taskspan__task_events *te,
                                          const struct taskspan__limits *lim,
                                          unsigned flags);
/* The spans' events use te's strings and wires (their names, actors,
 * phases and payload bytes) where they lie instead of copies: te must
 * outlive them, or taskspan__spans_forget_events() must run first. */
#define TASKSPAN__SPANS_BORROW 1u
/* Drop the events of every span (n_events 0, no wires), keeping the
 * rest: after an exporter has encoded them. */
void taskspan__spans_forget_events(taskspan_spans *spans);
/* The payloads' bytes of span i of a result of
 * taskspan__spans_build_wired: one entry per event of the span (bytes
 * NULL: its attributes are in its taskspan_span_event), or NULL when
 * none of them has bytes. */
struct taskspan__event_wire;
const struct taskspan__event_wire *taskspan__spans_event_wires(
    const taskspan_spans *spans, size_t i);

/* The resource row of span i's first event (0 for none). */
int64_t taskspan__spans_resource_id(const taskspan_spans *spans, size_t i);
/* What closed span i: 2 x the seq of the event that closed it, or 2 x that
 * seq + 1 when a crash mark after that event did (the next runner_spawn
 * closes with its own seq); -1 while it is open. Sorted by this key, then
 * by index, a task's closed spans only ever grow at the end of the list
 * as events and crash marks are added, each keeping its bytes
 * (tests/unit/test_close_order.c): one count can say how many of them
 * were delivered. */
int64_t taskspan__spans_close_key(const taskspan_spans *spans, size_t i);
/* The indexes of the closed spans of spans in that order: by close key,
 * then by index. A task's export_done (schema 8) counts how many of the
 * first ones are settled. OUT: *out (malloc'd, *out_n entries; not NULL
 * on success even when there are none). TASKSPAN_E_NOMEM. */
taskspan_code taskspan__spans_close_order(const taskspan_spans *spans,
                                          size_t **out, size_t *out_n);

#endif /* TASKSPAN_INTERNAL_H */
