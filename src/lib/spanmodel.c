/*
 * spanmodel.c -- a task's events, in seq order, become OpenTelemetry spans.
 *
 * The model is a pure function of the stored events (and the trace context
 * stored with the task), so building it twice gives the same spans and ids.
 * The rules, mirrored in docs/span-model.md:
 *   - A span is an instance of (span key, runner incarnation, ordinal). An
 *     event goes to the open instance of its key in its incarnation; if there
 *     is none (first event, or the previous instance closed), a new instance
 *     opens at that event, with ordinal = number of earlier instances.
 *   - Closing events: runner_exit closes main (and, as unfinished, whatever
 *     else of that incarnation is still open); work_item_done/_failed close
 *     their span; a recovery sweep closes once it has requeued as many items
 *     as recovery_detected's expired_count said had expired.
 *   - A runner_spawn starts incarnation N+1; every span of an earlier
 *     incarnation still open then was cut off by a crash or kill: it closes
 *     at its last event with status ERROR and taskspan.crashed = true.
 *     An incarnation the exporter found dead before any new runner_spawn
 *     (te->crash_closed_seqs: its runner process gone, no event for a grace
 *     period) closes the same way right after its last event, so both
 *     paths give byte-identical spans.
 *   - Parent: the latest instance of the event's parent_span_id key in the
 *     same incarnation; none (or not found) makes a root span, whose parent
 *     is the TRACEPARENT span the task joined, if any.
 */
#include "event_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_INDEX ((size_t)-1)

/* The status message of a span cut off by a crash. It must not say what
 * closed the span (the next runner_spawn, or the exporter after its grace
 * period): both must produce the same bytes. */
#define CRASHED_MESSAGE "runner ended without runner_exit (killed or crashed)"

typedef enum close_kind {
    CLOSE_NORMAL,  /* by the span's own closing event */
    CLOSE_FAILED,  /* by work_item_failed */
    CLOSE_AT_EXIT, /* still open when its runner exited */
    CLOSE_CRASHED  /* still open when a new incarnation began */
} close_kind;

typedef struct gate_state {
    const char *name;
    bool failed;
    struct gate_state *next;
} gate_state;

typedef struct builder {
    const char *key;
    bool on_main; /* key is "main" */
    const char *parent_key;
    int64_t incarnation;
    int64_t ordinal;
    size_t parent_index;
    size_t prev_instance; /* the previous instance of (key, incarnation) */
    int64_t start_ns, end_ns, last_ns;
    bool open;
    bool opened_by_start; /* work span opened by work_item_start */
    bool crashed;
    int64_t close_key; /* see taskspan__spans_close_key() */
    taskspan_status status;
    const char *status_message;
    size_t *ev; /* indices into the task's events */
    size_t n_ev, cap_ev;
    int64_t sweep_expected; /* -1: unknown */
    int64_t sweep_requeued;
    gate_state *gates;
} builder;

/* (key, incarnation) -> latest instance, as an open-addressing hash table. */
typedef struct slot {
    const char *key;
    int64_t incarnation;
    size_t latest;
} slot;

typedef struct model {
    const taskspan__task_events *te;
    const char *id_task;    /* hashed into span ids: NULL, or the task */
    taskspan__arena *arena; /* the result's arena: strings that outlive us */
    builder *spans;
    size_t n_spans, cap_spans;
    slot *slots;
    size_t n_slots, cap_slots; /* cap_slots is a power of two */
    int64_t incarnation;       /* of the last event seen */
    size_t next_closure;       /* next entry of te->crash_closed_seqs */
    int64_t incarnation_last_ns;
    bool incarnation_exited; /* its runner said runner_exit */
    int64_t close_key;       /* what closes a span now: 2 seq (+ 1) */
    /* The last event's type, actor and phase (the events' strings) and
     * their copies in the arena: the next events mostly repeat them
     * (load_task shares equal strings), so the copy is shared too. */
    const char *copied_from[3];
    const char *copies[3];
    /* The span key (the event's string) and incarnation of the last event
     * and the latest instance of that span: the events of a span mostly
     * come one after another, and load_task shares their key's string. */
    const char *last_key;
    int64_t last_incarnation;
    size_t last_idx;
    const char *kind_of; /* the event type string kind was found for */
    int kind;            /* a rule_kind */
    /* The spans' event lists (builder.ev): freed with the model. */
    taskspan__arena scratch;
    /* Built for an exporter with these limits (build_wired), or NULL. */
    const taskspan__limits *wire_lim;
    /* The events' strings and wires are used where they lie, not copied:
     * the caller keeps te until it is done with the events (build_wired,
     * TASKSPAN__SPANS_BORROW). */
    bool borrow;
} model;

struct taskspan_spans {
    taskspan_span *spans;
    int64_t *resource_ids; /* of each span's first event; 0 for none */
    int64_t *close_keys;   /* taskspan__spans_close_key() */
    /* Built wired: the stored payload bytes of each span's events, or
     * NULL for a span none of whose events has them
     * (taskspan__spans_event_wires). */
    taskspan__event_wire **wires;
    size_t n;
    taskspan__arena arena;
};

/* A table index only: 8 bytes of the key at a time, each mixed in with a
 * multiply (the byte-wise FNV it replaces was 1.5 % of an export's
 * instructions: about three lookups per span, of keys of 20 bytes). */
static uint64_t slot_hash(const char *key, int64_t incarnation)
{
    const uint64_t mul = 0x9e3779b97f4a7c15ull;
    size_t n = strlen(key);
    uint64_t h = (uint64_t)incarnation ^ ((uint64_t)n * mul);
    for (; n >= 8; key += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = (h ^ w) * mul;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, key, n);
    h = (h ^ w) * mul;
    /* The high bits, where a multiply puts what differs, reach the low
     * ones the table uses (murmur3's final mix). */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static slot *slot_find(model *m, const char *key, int64_t incarnation)
{
    if (m->cap_slots == 0) {
        return NULL;
    }
    size_t mask = m->cap_slots - 1;
    for (size_t i = slot_hash(key, incarnation) & mask;; i = (i + 1) & mask) {
        slot *s = &m->slots[i];
        if (s->key == NULL) {
            return NULL;
        }
        if (s->incarnation == incarnation && strcmp(s->key, key) == 0) {
            return s;
        }
    }
}

static bool slot_grow(model *m)
{
    size_t cap = m->cap_slots ? m->cap_slots * 2 : 64;
    slot *old = m->slots;
    size_t old_cap = m->cap_slots;
    m->slots = calloc(cap, sizeof *m->slots);
    if (m->slots == NULL) {
        m->slots = old;
        return false;
    }
    m->cap_slots = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == NULL) {
            continue;
        }
        size_t j = slot_hash(old[i].key, old[i].incarnation) & (cap - 1);
        while (m->slots[j].key != NULL) {
            j = (j + 1) & (cap - 1);
        }
        m->slots[j] = old[i];
    }
    free(old);
    return true;
}

/* Record span index idx as the latest instance of (key, incarnation). */
static bool slot_set(model *m, const char *key, int64_t incarnation,
                     size_t idx)
{
    slot *s = slot_find(m, key, incarnation);
    if (s != NULL) {
        s->latest = idx;
        return true;
    }
    if ((m->n_slots + 1) * 2 > m->cap_slots && !slot_grow(m)) {
        return false;
    }
    size_t mask = m->cap_slots - 1;
    size_t i = slot_hash(key, incarnation) & mask;
    while (m->slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    m->slots[i] = (slot){key, incarnation, idx};
    m->n_slots++;
    return true;
}

static size_t latest_instance(model *m, const char *key, int64_t incarnation)
{
    slot *s = slot_find(m, key, incarnation);
    return s != NULL ? s->latest : NO_INDEX;
}

/* ---- payload lookups ---------------------------------------------------- */

/* e's payload's fields appended to list: from its JSON, or, when an
 * exporter loaded it without (load_export), from its wire. Damaged wire
 * bytes lose the payload's fields, not the event. */
static taskspan_code payload_decode(taskspan__attr_list *list,
                                    taskspan__arena *arena,
                                    const taskspan__stored_event *e)
{
    if (e->payload_json == NULL && e->wire != NULL) {
        bool ok;
        return taskspan__event_wire_decode(e->wire, e->wire_len, arena, list,
                                           &ok);
    }
    return taskspan__payload_decode(
        list, arena, e->payload_json != NULL ? e->payload_json : "{}");
}

/* The payload field key of event e, decoded; false if absent. */
static bool payload_field(const taskspan__stored_event *e, const char *key,
                          taskspan_attr *out, taskspan__arena *scratch)
{
    taskspan__attr_list list = {0};
    bool found = false;
    if (payload_decode(&list, scratch, e) == TASKSPAN_OK) {
        for (size_t i = 0; i < list.n && !found; i++) {
            if (strcmp(list.attrs[i].key, key) == 0) {
                *out = list.attrs[i];
                found = true;
            }
        }
    }
    taskspan__attr_list_free(&list);
    return found;
}

static const char *payload_str(model *m, const taskspan__stored_event *e,
                               const char *key)
{
    taskspan_attr a;
    if (payload_field(e, key, &a, m->arena) &&
        a.type == TASKSPAN_ATTR_STRING) {
        return a.value.s;
    }
    return NULL;
}

static bool payload_int(model *m, const taskspan__stored_event *e,
                        const char *key, int64_t *out)
{
    taskspan_attr a;
    if (payload_field(e, key, &a, m->arena) && a.type == TASKSPAN_ATTR_INT) {
        *out = a.value.i;
        return true;
    }
    return false;
}

static bool payload_bool(model *m, const taskspan__stored_event *e,
                         const char *key, bool dflt)
{
    taskspan_attr a;
    if (payload_field(e, key, &a, m->arena) && a.type == TASKSPAN_ATTR_BOOL) {
        return a.value.b != 0;
    }
    return dflt;
}

/* ---- building ------------------------------------------------------------ */

static void close_span(const model *m, builder *b, int64_t end_ns,
                       close_kind how, const char *message)
{
    b->close_key = m->close_key;
    b->open = false;
    b->end_ns = end_ns < b->start_ns ? b->start_ns : end_ns;
    if (how == CLOSE_FAILED || how == CLOSE_CRASHED) {
        b->status = TASKSPAN_STATUS_ERROR;
        b->status_message = message;
        b->crashed = how == CLOSE_CRASHED;
    } else if (how == CLOSE_AT_EXIT && message != NULL) {
        b->status = TASKSPAN_STATUS_ERROR;
        b->status_message = message;
    }
}

/* A new incarnation began: close what the previous ones left open. */
static void close_previous_incarnations(model *m)
{
    for (size_t i = 0; i < m->n_spans; i++) {
        builder *b = &m->spans[i];
        if (!b->open) {
            continue;
        }
        int64_t end = b->last_ns;
        if (b->on_main && m->incarnation_last_ns > end) {
            end = m->incarnation_last_ns; /* main spans its children */
        }
        /* Incarnations >= 1 began with runner_spawn, so they had a runner
         * that should have said runner_exit; incarnation 0 had none. A span
         * opened after a clean runner_exit (the report's sweep runs then)
         * was not cut off by a crash: it ends at its last event. */
        if (b->incarnation >= 1 && !m->incarnation_exited) {
            close_span(m, b, end, CLOSE_CRASHED, CRASHED_MESSAGE);
        } else if (b->sweep_expected >= 0) {
            close_span(m, b, end, CLOSE_AT_EXIT,
                       "recovery sweep ended before requeueing every item");
        } else {
            close_span(m, b, end, CLOSE_NORMAL, NULL);
        }
    }
}

/* runner_exit: main closed; close what its incarnation still has open. */
static void close_at_exit(model *m, const builder *main_span, int64_t ts)
{
    for (size_t i = 0; i < m->n_spans; i++) {
        builder *b = &m->spans[i];
        if (!b->open || b->incarnation != main_span->incarnation) {
            continue;
        }
        const char *msg = NULL;
        if (b->opened_by_start) {
            msg = "work item was not finished when its runner exited";
        } else if (b->sweep_expected >= 0) {
            msg = "recovery sweep ended before requeueing every item";
        }
        close_span(m, b, b->last_ns > ts ? ts : b->last_ns, CLOSE_AT_EXIT,
                   msg);
    }
}

static void note_gate(model *m, builder *b, const taskspan__stored_event *e)
{
    const char *name = payload_str(m, e, "gate_name");
    bool passed = payload_bool(m, e, "passed", true);
    gate_state *g;

    if (name == NULL) {
        name = "";
    }
    for (g = b->gates; g != NULL; g = g->next) {
        if (strcmp(g->name, name) == 0) {
            break;
        }
    }
    if (g == NULL) {
        g = taskspan__arena_alloc(m->arena, sizeof *g);
        if (g == NULL) {
            return;
        }
        g->name = name;
        g->next = b->gates;
        b->gates = g;
    }
    g->failed = !passed; /* the latest result of a gate decides */
}

/* Close a step's span at its *_end event: ERROR when the payload says the
 * step failed (an error text, a non-zero exit_code, or a signal). */
static void close_step(model *m, builder *b, const taskspan__stored_event *e)
{
    const char *error = payload_str(m, e, "error");
    int64_t code = 0, sig = 0;
    char *msg = NULL;

    if (error == NULL && payload_int(m, e, "signal", &sig) && sig != 0) {
        msg = taskspan__arena_alloc(m->arena, 48);
        if (msg != NULL) {
            snprintf(msg, 48, "killed by signal %lld", (long long)sig);
        }
    } else if (error == NULL && payload_int(m, e, "exit_code", &code) &&
               code != 0) {
        msg = taskspan__arena_alloc(m->arena, 48);
        if (msg != NULL) {
            snprintf(msg, 48, "exited with code %lld", (long long)code);
        }
    }
    if (error != NULL || msg != NULL) {
        close_span(m, b, e->ts_ns, CLOSE_FAILED, error != NULL ? error : msg);
    } else {
        close_span(m, b, e->ts_ns, CLOSE_NORMAL, NULL);
    }
}

/* The event types the closing rules tell apart. */
typedef enum rule_kind {
    RULE_NONE,
    RULE_RUNNER_EXIT,
    RULE_GATE_RESULT,
    RULE_WORK_START,
    RULE_WORK_DONE,
    RULE_WORK_FAILED,
    RULE_SWEEP_DETECTED,
    RULE_SWEEP_REQUEUED,
    RULE_STEP_END
} rule_kind;

#define KIND(literal, kind)                                                   \
    {                                                                         \
        literal, sizeof literal - 1, kind                                     \
    }

/* Runs for most events (the benchmark span's four types alternate), so
 * the length is measured once and only a type as long is compared. */
static rule_kind classify(const char *type)
{
    static const struct {
        const char *type;
        size_t len;
        rule_kind kind;
    } kinds[] = {
        KIND("runner_exit", RULE_RUNNER_EXIT),
        KIND("gate_result", RULE_GATE_RESULT),
        KIND("work_item_start", RULE_WORK_START),
        KIND("work_item_done", RULE_WORK_DONE),
        KIND("work_item_failed", RULE_WORK_FAILED),
        KIND("recovery_detected", RULE_SWEEP_DETECTED),
        KIND("recovery_requeued", RULE_SWEEP_REQUEUED),
    };
    size_t n = strlen(type);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (n == kinds[i].len && memcmp(type, kinds[i].type, n) == 0) {
            return kinds[i].kind;
        }
    }
    /* "<step>_end" (exec_end of `taskspan exec`, or a runner's own pair
     * such as build_start/build_end) ends the step's span. */
    return n > 4 && memcmp(type + n - 4, "_end", 4) == 0 ? RULE_STEP_END
                                                         : RULE_NONE;
}

#undef KIND

/* The kind of e's type, told apart once per string: load_task shares the
 * type of consecutive events, and most events repeat the one before. */
static rule_kind rule_of(model *m, const taskspan__stored_event *e)
{
    if (e->event_type != m->kind_of) {
        m->kind = (int)classify(e->event_type);
        m->kind_of = e->event_type;
    }
    return (rule_kind)m->kind;
}

/* Apply the closing rules of event e to its span b. Only runner_exit ends
 * main: a work or recovery event put on main by hand must not close it. */
static void apply_rules(model *m, builder *b, const taskspan__stored_event *e)
{
    bool on_main = b->on_main;
    rule_kind kind = rule_of(m, e);

    if (kind == RULE_RUNNER_EXIT && on_main) {
        close_span(m, b, e->ts_ns, CLOSE_NORMAL, NULL);
        m->incarnation_exited = true;
        close_at_exit(m, b, e->ts_ns);
    } else if (kind == RULE_GATE_RESULT) {
        note_gate(m, b, e);
    } else if (on_main) {
        return;
    } else if (kind == RULE_WORK_START) {
        b->opened_by_start = true;
    } else if (kind == RULE_WORK_DONE) {
        close_span(m, b, e->ts_ns, CLOSE_NORMAL, NULL);
    } else if (kind == RULE_WORK_FAILED) {
        const char *err = payload_str(m, e, "error");
        close_span(m, b, e->ts_ns, CLOSE_FAILED,
                   err != NULL ? err : "work item failed");
    } else if (kind == RULE_SWEEP_DETECTED) {
        int64_t n = -1;
        payload_int(m, e, "expired_count", &n);
        b->sweep_expected = n < 0 ? -1 : n;
        b->sweep_requeued = 0;
        if (n == 0) {
            close_span(m, b, e->ts_ns, CLOSE_NORMAL, NULL);
        }
    } else if (kind == RULE_SWEEP_REQUEUED) {
        b->sweep_requeued++;
        if (b->sweep_expected >= 0 && b->sweep_requeued >= b->sweep_expected) {
            close_span(m, b, e->ts_ns, CLOSE_NORMAL, NULL);
        }
    } else if (kind == RULE_STEP_END) {
        close_step(m, b, e);
    }
}

static builder *new_span(model *m, const taskspan__stored_event *e,
                         size_t prev)
{
    if (m->n_spans == m->cap_spans) {
        size_t cap = m->cap_spans ? m->cap_spans * 2 : 16;
        builder *p = realloc(m->spans, cap * sizeof *p);
        if (p == NULL) {
            return NULL;
        }
        m->spans = p;
        m->cap_spans = cap;
    }
    size_t idx = m->n_spans;
    builder *b = &m->spans[idx];
    memset(b, 0, sizeof *b);
    b->key = e->span_key;
    b->on_main = strcmp(b->key, "main") == 0;
    b->parent_key = e->parent_span_key;
    b->incarnation = e->incarnation;
    b->ordinal = prev == NO_INDEX ? 0 : m->spans[prev].ordinal + 1;
    b->prev_instance = prev;
    b->start_ns = b->last_ns = e->ts_ns;
    b->open = true;
    b->sweep_expected = -1;
    b->parent_index = NO_INDEX;
    if (e->parent_span_key != NULL) {
        b->parent_index = latest_instance(m, e->parent_span_key,
                                          e->incarnation);
    }
    if (!slot_set(m, b->key, b->incarnation, idx)) {
        return NULL;
    }
    m->n_spans++;
    return b;
}

static taskspan_code add_event(model *m, size_t ei)
{
    const taskspan__stored_event *e = &m->te->events[ei];

    /* Whatever closes now, this event closes (a new incarnation's first
     * event closes the spans the previous ones left open). */
    m->close_key = 2 * e->seq;
    if (e->incarnation != m->incarnation) {
        close_previous_incarnations(m);
        m->incarnation = e->incarnation;
        m->incarnation_exited = false;
        m->incarnation_last_ns = e->ts_ns;
    }
    if (e->ts_ns > m->incarnation_last_ns) {
        m->incarnation_last_ns = e->ts_ns;
    }
    size_t idx = m->last_idx != NO_INDEX && e->span_key == m->last_key &&
                         e->incarnation == m->last_incarnation
                     ? m->last_idx
                     : latest_instance(m, e->span_key, e->incarnation);
    builder *b = idx != NO_INDEX ? &m->spans[idx] : NULL;
    if (b == NULL || !b->open) {
        b = new_span(m, e, idx);
        if (b == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        idx = (size_t)(b - m->spans);
    }
    m->last_key = e->span_key;
    m->last_incarnation = e->incarnation;
    m->last_idx = idx;
    if (b->n_ev == b->cap_ev) {
        /* From the scratch arena: the old list stays there unused, at
         * most as much again as the lists themselves. */
        size_t cap = b->cap_ev ? b->cap_ev * 2 : 8;
        size_t *p = taskspan__arena_alloc(&m->scratch, cap * sizeof *p);
        if (p == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        if (b->n_ev > 0) {
            memcpy(p, b->ev, b->n_ev * sizeof *p);
        }
        b->ev = p;
        b->cap_ev = cap;
    }
    b->ev[b->n_ev++] = ei;
    if (e->ts_ns > b->last_ns) {
        b->last_ns = e->ts_ns;
    }
    apply_rules(m, b, e);
    /* The incarnation was found dead after this event: close what it left
     * open now, exactly as its successor's runner_spawn would have. */
    while (m->next_closure < m->te->n_crash_closed &&
           m->te->crash_closed_seqs[m->next_closure] <= e->seq) {
        if (m->te->crash_closed_seqs[m->next_closure++] == e->seq) {
            m->close_key = 2 * e->seq + 1; /* after the event's own */
            close_previous_incarnations(m);
        }
    }
    return TASKSPAN_OK;
}

/* ---- output -------------------------------------------------------------- */

/* s (an event's string, field k of copied_from) in the result's arena:
 * the previous event's copy when it is the same string. */
static const char *event_str(model *m, int k, const char *s)
{
    if (m->borrow) {
        return s;
    }
    if (s == NULL || s != m->copied_from[k]) {
        m->copies[k] = taskspan__arena_strdup(m->arena, s);
        m->copied_from[k] = m->copies[k] != NULL ? s : NULL;
    }
    return m->copies[k];
}

/* The span event of e, but for its attributes. */
static void fill_event_head(model *m, taskspan_span_event *out,
                            const taskspan__stored_event *e)
{
    out->name = event_str(m, 0, e->event_type);
    out->time_ns = e->ts_ns;
    out->seq = e->seq;
    out->actor = event_str(m, 1, e->actor);
    out->phase = event_str(m, 2, e->phase);
}

/* w's bytes, copied into the result, as *dst. */
static taskspan_code copy_wire(model *m, taskspan__event_wire *dst,
                               const taskspan__event_wire *w)
{
    if (m->borrow) {
        *dst = *w;
        return TASKSPAN_OK;
    }
    uint8_t *bytes = taskspan__arena_alloc(m->arena, w->len);
    if (bytes == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    memcpy(bytes, w->bytes, w->len);
    *dst = (taskspan__event_wire){bytes, w->len, w->n_attrs};
    return TASKSPAN_OK;
}

size_t taskspan__event_tail(taskspan_attr out[3], int64_t seq,
                            const char *actor, const char *phase)
{
    size_t n = 0;
    out[n++] = taskspan_attr_int(TASKSPAN__ATTR_SEQ, seq);
    if (actor != NULL) {
        out[n++] = taskspan_attr_str(TASKSPAN__ATTR_ACTOR, actor);
    }
    if (phase != NULL) {
        out[n++] = taskspan_attr_str(TASKSPAN__ATTR_PHASE, phase);
    }
    return n;
}

/* The attributes of e's span event, its head filled: the payload's
 * fields, then the tail (taskspan__event_tail). */
static taskspan_code fill_event(model *m, taskspan_span_event *out,
                                const taskspan__stored_event *e)
{
    taskspan_attr fixed[16], tail[3];
    taskspan__attr_list list = {fixed, 0, 16, fixed};
    taskspan_code rc = payload_decode(&list, m->arena, e);
    size_t n_tail = taskspan__event_tail(tail, e->seq, out->actor, out->phase);
    for (size_t i = 0; rc == TASKSPAN_OK && i < n_tail; i++) {
        rc = taskspan__attr_list_push(&list, tail[i]);
    }
    if (rc == TASKSPAN_OK) {
        out->attrs = taskspan__arena_alloc(m->arena,
                                           list.n * sizeof *list.attrs);
        if (out->attrs == NULL || out->name == NULL) {
            rc = TASKSPAN_E_NOMEM;
        } else {
            memcpy((void *)out->attrs, list.attrs,
                   list.n * sizeof *list.attrs);
            out->n_attrs = list.n;
        }
    }
    taskspan__attr_list_free(&list);
    return rc;
}

static taskspan_code fill_span_attrs(model *m, taskspan_span *out,
                                     const builder *b, const char *task_id)
{
    taskspan_attr *a = taskspan__arena_alloc(m->arena, 5 * sizeof *a);
    size_t n = 0;
    if (a == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    a[n++] = taskspan_attr_str("taskspan.task_id", task_id);
    a[n++] = taskspan_attr_str("taskspan.span_key", out->name);
    a[n++] = taskspan_attr_int("taskspan.incarnation", b->incarnation);
    if (b->ordinal > 0) {
        a[n++] = taskspan_attr_int("taskspan.instance", b->ordinal);
    }
    if (b->crashed) {
        a[n++] = taskspan_attr_bool("taskspan.crashed", 1);
    }
    out->attrs = a;
    out->n_attrs = n;
    return TASKSPAN_OK;
}

/* The main span of the incarnation before b's, if it is in the result. */
static size_t previous_main(model *m, const builder *b)
{
    if (!b->on_main || b->incarnation <= 1) {
        return NO_INDEX;
    }
    return latest_instance(m, "main", b->incarnation - 1);
}

static taskspan_code fill_span(model *m, taskspan_spans *res, size_t i,
                               const uint8_t trace_id[16], const char *task_id)
{
    const builder *b = &m->spans[i];
    taskspan_span *out = &res->spans[i];
    const taskspan__task_events *te = m->te;

    memcpy(out->trace_id, trace_id, 16);
    out->name = taskspan__arena_strdup(m->arena, b->key);
    if (out->name == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    taskspan__derive_span_id(out->span_id, trace_id, m->id_task, b->key,
                             b->incarnation, b->ordinal);
    out->incarnation = b->incarnation;
    out->parent_index = b->parent_index;
    if (b->parent_index != NO_INDEX && b->parent_index < i) {
        /* Filled already (spans are filled in order): its id as is. */
        memcpy(out->parent_span_id, res->spans[b->parent_index].span_id, 8);
        out->has_parent = 1;
    } else if (b->parent_index != NO_INDEX) {
        const builder *p = &m->spans[b->parent_index];
        taskspan__derive_span_id(out->parent_span_id, trace_id, m->id_task,
                                 p->key, p->incarnation, p->ordinal);
        out->has_parent = 1;
    } else if (te->has_trace_context) {
        memcpy(out->parent_span_id, te->parent_span_id, 8);
        out->has_parent = 1;
    }
    out->start_ns = b->start_ns;
    out->end_ns = b->open ? 0 : b->end_ns;
    out->is_open = b->open;
    out->status = b->status;
    out->status_message = b->status_message != NULL ? b->status_message : "";
    for (const gate_state *g = b->gates; g != NULL; g = g->next) {
        if (g->failed && out->status != TASKSPAN_STATUS_ERROR) {
            size_t n = strlen(g->name) + sizeof "gate '' failed";
            char *msg = taskspan__arena_alloc(m->arena, n);
            if (msg == NULL) {
                return TASKSPAN_E_NOMEM;
            }
            snprintf(msg, n, "gate '%s' failed", g->name);
            out->status = TASKSPAN_STATUS_ERROR;
            out->status_message = msg;
        }
    }
    taskspan_code rc = fill_span_attrs(m, out, b, task_id);
    taskspan_span_event *evs = taskspan__arena_alloc(m->arena,
                                                     b->n_ev * sizeof *evs);
    if (rc == TASKSPAN_OK && evs == NULL) {
        rc = TASKSPAN_E_NOMEM;
    }
    for (size_t k = 0; rc == TASKSPAN_OK && k < b->n_ev; k++) {
        const taskspan__stored_event *e = &te->events[b->ev[k]];
        taskspan__event_wire w;
        bool wired = m->wire_lim != NULL &&
                     taskspan__event_wire_usable(e->wire, e->wire_len,
                                                 m->wire_lim, &w);
        if (wired && res->wires[i] == NULL) {
            res->wires[i] = taskspan__arena_alloc(
                m->arena, b->n_ev * sizeof *res->wires[i]);
            if (res->wires[i] == NULL) {
                rc = TASKSPAN_E_NOMEM;
                break;
            }
            memset(res->wires[i], 0, b->n_ev * sizeof *res->wires[i]);
        }
        fill_event_head(m, &evs[k], e);
        if (wired) {
            /* No attributes: the encoder adds the tail to the bytes. */
            rc = evs[k].name != NULL ? copy_wire(m, &res->wires[i][k], &w)
                                     : TASKSPAN_E_NOMEM;
        } else {
            rc = fill_event(m, &evs[k], e);
        }
    }
    out->events = evs;
    out->n_events = b->n_ev;
    size_t prev = previous_main(m, b);
    if (rc == TASKSPAN_OK && prev != NO_INDEX) {
        taskspan_span_link *l = taskspan__arena_alloc(m->arena, sizeof *l);
        if (l == NULL) {
            return TASKSPAN_E_NOMEM;
        }
        const builder *p = &m->spans[prev];
        memcpy(l->trace_id, trace_id, 16);
        taskspan__derive_span_id(l->span_id, trace_id, m->id_task, p->key,
                                 p->incarnation, p->ordinal);
        l->reason = "previous_incarnation";
        out->links = l;
        out->n_links = 1;
    }
    return rc;
}

static void model_free(model *m)
{
    taskspan__arena_free(&m->scratch);
    free(m->spans);
    free(m->slots);
}

taskspan_code taskspan__spans_build(taskspan_spans **out, const char *task_id,
                                    const taskspan__task_events *te)
{
    return taskspan__spans_build_wired(out, task_id, te, NULL, 0);
}

taskspan_code taskspan__spans_build_wired(taskspan_spans **out,
                                          const char *task_id,
                                          const taskspan__task_events *te,
                                          const taskspan__limits *lim,
                                          unsigned flags)
{
    taskspan_code rc = TASKSPAN_OK;
    uint8_t trace_id[16];
    taskspan_spans *res = calloc(1, sizeof *res);
    model m = {.te = te,
               .last_idx = NO_INDEX,
               .wire_lim = lim,
               .borrow = (flags & TASKSPAN__SPANS_BORROW) != 0};

    *out = NULL;
    if (res == NULL) {
        return TASKSPAN_E_NOMEM;
    }
    m.arena = &res->arena;
    m.incarnation = te->n_events > 0 ? te->events[0].incarnation : 0;
    for (size_t i = 0; rc == TASKSPAN_OK && i < te->n_events; i++) {
        rc = add_event(&m, i);
    }
    if (te->has_trace_context) {
        memcpy(trace_id, te->trace_id, 16);
    } else {
        taskspan__derive_trace_id(trace_id, task_id);
    }
    /* Tasks that joined one trace context must not share span ids. */
    m.id_task = te->has_trace_context && te->span_ids_by_task ? task_id : NULL;
    const char *tid = taskspan__arena_strdup(m.arena, task_id);
    if (rc == TASKSPAN_OK && m.n_spans > 0) {
        res->spans = taskspan__arena_alloc(m.arena,
                                           m.n_spans * sizeof *res->spans);
        res->resource_ids = taskspan__arena_alloc(
            m.arena, m.n_spans * sizeof *res->resource_ids);
        res->close_keys = taskspan__arena_alloc(
            m.arena, m.n_spans * sizeof *res->close_keys);
        res->wires = taskspan__arena_alloc(m.arena,
                                           m.n_spans * sizeof *res->wires);
        if (res->spans == NULL || tid == NULL || res->resource_ids == NULL ||
            res->close_keys == NULL || res->wires == NULL) {
            rc = TASKSPAN_E_NOMEM;
        } else {
            memset(res->spans, 0, m.n_spans * sizeof *res->spans);
            memset(res->wires, 0, m.n_spans * sizeof *res->wires);
        }
    }
    for (size_t i = 0; rc == TASKSPAN_OK && i < m.n_spans; i++) {
        rc = fill_span(&m, res, i, trace_id, tid);
        res->resource_ids[i] = te->events[m.spans[i].ev[0]].resource_id;
        res->close_keys[i] = m.spans[i].open ? -1 : m.spans[i].close_key;
    }
    res->n = m.n_spans;
    model_free(&m);
    if (rc != TASKSPAN_OK) {
        taskspan_spans_free(res);
        return rc;
    }
    *out = res;
    return TASKSPAN_OK;
}

const taskspan__event_wire *taskspan__spans_event_wires(
    const taskspan_spans *spans, size_t i)
{
    return spans != NULL && i < spans->n ? spans->wires[i] : NULL;
}

void taskspan__spans_forget_events(taskspan_spans *spans)
{
    for (size_t i = 0; spans != NULL && i < spans->n; i++) {
        spans->spans[i].events = NULL;
        spans->spans[i].n_events = 0;
        spans->wires[i] = NULL;
    }
}

int64_t taskspan__spans_resource_id(const taskspan_spans *spans, size_t i)
{
    return spans != NULL && i < spans->n ? spans->resource_ids[i] : 0;
}

int64_t taskspan__spans_close_key(const taskspan_spans *spans, size_t i)
{
    return spans != NULL && i < spans->n ? spans->close_keys[i] : -1;
}

/* For qsort_r-free sorting: the keys travel with the indexes. */
typedef struct close_pos {
    int64_t key;
    size_t index;
} close_pos;

static int close_pos_cmp(const void *a, const void *b)
{
    const close_pos *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

taskspan_code taskspan__spans_close_order(const taskspan_spans *spans,
                                          size_t **out, size_t *out_n)
{
    size_t n = taskspan_spans_count(spans), k = 0;
    close_pos *pos = malloc((n ? n : 1) * sizeof *pos);
    size_t *order = malloc((n ? n : 1) * sizeof *order);

    *out = NULL;
    *out_n = 0;
    if (pos == NULL || order == NULL) {
        free(pos);
        free(order);
        return TASKSPAN_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (spans->close_keys[i] >= 0) {
            pos[k++] = (close_pos){spans->close_keys[i], i};
        }
    }
    /* Spans are created in event order, and most close in it too, but
     * for the first, main, which closes last: the common case is sorted
     * already, or but for its first span, which qsort does not check. */
    bool sorted = true;
    for (size_t i = 2; i < k && sorted; i++) {
        sorted = close_pos_cmp(&pos[i - 1], &pos[i]) < 0;
    }
    if (!sorted) {
        qsort(pos, k, sizeof *pos, close_pos_cmp);
    } else if (k > 1) {
        /* The rest is sorted: the first goes before the first it
         * precedes (binary search), the ones before it one step up. */
        close_pos first = pos[0];
        size_t lo = 1, hi = k;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (close_pos_cmp(&pos[mid], &first) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        memmove(&pos[0], &pos[1], (lo - 1) * sizeof *pos);
        pos[lo - 1] = first;
    }
    for (size_t i = 0; i < k; i++) {
        order[i] = pos[i].index;
    }
    free(pos);
    *out = order;
    *out_n = k;
    return TASKSPAN_OK;
}

size_t taskspan_spans_count(const taskspan_spans *spans)
{
    return spans != NULL ? spans->n : 0;
}

const taskspan_span *taskspan_spans_get(const taskspan_spans *spans, size_t i)
{
    if (spans == NULL || i >= spans->n) {
        return NULL;
    }
    return &spans->spans[i];
}

void taskspan_spans_free(taskspan_spans *spans)
{
    if (spans == NULL) {
        return;
    }
    taskspan__arena_free(&spans->arena);
    free(spans);
}
