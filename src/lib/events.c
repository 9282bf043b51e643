/*
 * events.c -- the typed helpers, one per event type of the runner-events
 * report (plus gate_retry, phase_progress, lease_lost and lease_takeover).
 *
 * Where an event goes (span, parent, actor, phase) is one table, placements[],
 * which docs/span-model.md mirrors; each helper only turns its parameters into
 * payload attributes and hands them to emit_typed(). A NULL string parameter
 * is left out of the payload, so the buffer never holds fake empty strings.
 */
#include "internal.h"
#include "payload_builder.h"

#include <stdio.h>
#include <string.h>

typedef enum span_kind {
    ON_MAIN,          /* span "main", no parent key */
    ON_WORK_ITEM,     /* span "work_<work_item_id>", parent "main" */
    ON_RECOVERY_SWEEP /* span "recovery_sweep", no parent key */
} span_kind;

typedef struct placement {
    const char *event_type;
    span_kind span;
    const char *actor;
    const char *phase; /* NULL: none, or the helper's phase parameter */
} placement;

enum {
    RUNNER_SPAWN,
    RUNNER_EXIT,
    PHASE_ENTER,
    PHASE_EXIT,
    PHASE_PROGRESS,
    CHECKPOINT_BEGIN,
    CHECKPOINT_COMMIT,
    CHECKPOINT_VERIFIED,
    CHECKPOINT_INVALID,
    GATE_START,
    GATE_RESULT,
    GATE_RETRY,
    WORK_ITEM_DISPATCHED,
    WORK_ITEM_START,
    WORK_ITEM_DONE,
    WORK_ITEM_FAILED,
    LEASE_ACQUIRED,
    LEASE_RENEWED,
    LEASE_LOST,
    LEASE_TAKEOVER,
    RECOVERY_DETECTED,
    RECOVERY_REQUEUED,
    RECOVERY_RESUMED,
    N_PLACEMENTS
};

/* The report's tables, row for row. Checkpoint events carry the phase
 * "execution" exactly as the report gives it (the runner's phases are named
 * planning/executing/verifying; existing queries on the report's data match
 * "execution" for checkpoints, so we keep it). */
static const placement placements[N_PLACEMENTS] = {
    [RUNNER_SPAWN] = {"runner_spawn", ON_MAIN, "runner", NULL},
    [RUNNER_EXIT] = {"runner_exit", ON_MAIN, "runner", NULL},
    [PHASE_ENTER] = {"phase_enter", ON_MAIN, "runner", NULL},
    [PHASE_EXIT] = {"phase_exit", ON_MAIN, "runner", NULL},
    [PHASE_PROGRESS] = {"phase_progress", ON_MAIN, "runner", NULL},
    [CHECKPOINT_BEGIN] = {"checkpoint_begin", ON_MAIN, "checkpoint_manager",
                          "execution"},
    [CHECKPOINT_COMMIT] = {"checkpoint_commit", ON_MAIN, "checkpoint_manager",
                           "execution"},
    [CHECKPOINT_VERIFIED] = {"checkpoint_verified", ON_MAIN,
                             "checkpoint_manager", "execution"},
    [CHECKPOINT_INVALID] = {"checkpoint_invalid", ON_MAIN,
                            "checkpoint_manager", "execution"},
    [GATE_START] = {"gate_start", ON_MAIN, "gate_runner", "verifying"},
    [GATE_RESULT] = {"gate_result", ON_MAIN, "gate_runner", "verifying"},
    [GATE_RETRY] = {"gate_retry", ON_MAIN, "gate_runner", "verifying"},
    [WORK_ITEM_DISPATCHED] = {"work_item_dispatched", ON_MAIN, "runner",
                              "executing"},
    [WORK_ITEM_START] = {"work_item_start", ON_WORK_ITEM, "worker",
                         "executing"},
    [WORK_ITEM_DONE] = {"work_item_done", ON_WORK_ITEM, "worker", "executing"},
    [WORK_ITEM_FAILED] = {"work_item_failed", ON_WORK_ITEM, "worker",
                          "executing"},
    [LEASE_ACQUIRED] = {"lease_acquired", ON_WORK_ITEM, "lease_manager",
                        "executing"},
    [LEASE_RENEWED] = {"lease_renewed", ON_WORK_ITEM, "lease_manager",
                       "executing"},
    [LEASE_LOST] = {"lease_lost", ON_WORK_ITEM, "lease_manager", "executing"},
    [LEASE_TAKEOVER] = {"lease_takeover", ON_WORK_ITEM, "lease_manager",
                        "executing"},
    [RECOVERY_DETECTED] = {"recovery_detected", ON_RECOVERY_SWEEP,
                           "recovery_sweep", "recovery"},
    [RECOVERY_REQUEUED] = {"recovery_requeued", ON_RECOVERY_SWEEP,
                           "recovery_sweep", "recovery"},
    [RECOVERY_RESUMED] = {"recovery_resumed_from_checkpoint", ON_MAIN,
                          "runner", "recovery"},
};

/* Emit an event of placements[which] with payload p. phase overrides the
 * table's phase (phase events name their phase). */
static taskspan_code emit_typed(int64_t *out_seq, taskspan *ts,
                                const char *task_id, int which,
                                const char *work_item_id, const char *phase,
                                payload *p)
{
    const placement *pl = &placements[which];
    char key[TASKSPAN_MAX_ID_LEN + 8];
    taskspan_event ev = TASKSPAN_EVENT_INIT;

    if (ts == NULL) {
        return TASKSPAN_E_INVALID_ARG;
    }
    ev.task_id = task_id;
    ev.event_type = pl->event_type;
    ev.actor = pl->actor;
    ev.phase = phase != NULL ? phase : pl->phase;
    ev.attrs = p->a;
    ev.n_attrs = p->n;
    switch (pl->span) {
    case ON_MAIN:
        ev.span_key = "main";
        break;
    case ON_RECOVERY_SWEEP:
        ev.span_key = "recovery_sweep";
        break;
    case ON_WORK_ITEM:
        if (work_item_id == NULL || work_item_id[0] == '\0' ||
            strlen(work_item_id) > TASKSPAN_MAX_ID_LEN - 5) {
            char msg[TASKSPAN__MSG_SIZE];
            snprintf(msg, sizeof msg,
                     "%s needs a work_item_id of 1 to %d "
                     "bytes",
                     pl->event_type, TASKSPAN_MAX_ID_LEN - 5);
            return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true,
                                            msg);
        }
        snprintf(key, sizeof key, "work_%s", work_item_id);
        ev.span_key = key;
        ev.parent_span_key = "main";
        break;
    }
    return taskspan_emit(out_seq, ts, &ev);
}

/* The placements[] lookup recovery.c uses, so the events it records in
 * its own transactions sit exactly where the typed helpers put them. */
bool taskspan__event_place(taskspan__append *rec, const char *event_type,
                           const char *work_item_id, char *key,
                           size_t key_size)
{
    for (int i = 0; i < N_PLACEMENTS; i++) {
        const placement *pl = &placements[i];
        if (strcmp(pl->event_type, event_type) != 0) {
            continue;
        }
        rec->event_type = pl->event_type;
        rec->actor = pl->actor;
        rec->phase = pl->phase;
        rec->parent_span_key = NULL;
        if (pl->span == ON_MAIN) {
            rec->span_key = "main";
        } else if (pl->span == ON_RECOVERY_SWEEP) {
            rec->span_key = "recovery_sweep";
        } else {
            snprintf(key, key_size, "work_%s", work_item_id);
            rec->span_key = key;
            rec->parent_span_key = "main";
        }
        return true;
    }
    return false;
}

/* Phase events must name their phase: it goes into the phase column. */
static taskspan_code need_phase(taskspan *ts, const char *type,
                                const char *phase)
{
    if (ts != NULL && (phase == NULL || phase[0] == '\0')) {
        char msg[TASKSPAN__MSG_SIZE];
        snprintf(msg, sizeof msg, "%s needs a phase", type);
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true, msg);
    }
    return TASKSPAN_OK;
}

taskspan_code taskspan_emit_runner_spawn(int64_t *out_seq, taskspan *ts,
                                         const char *task_id,
                                         int64_t runner_pid,
                                         const char *runner_version,
                                         const char *explanation)
{
    payload p = {.n = 0};
    add_int(&p, "runner_pid", runner_pid);
    add_str(&p, "runner_version", runner_version);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, RUNNER_SPAWN, NULL, NULL, &p);
}

taskspan_code taskspan_emit_runner_exit(
    int64_t *out_seq, taskspan *ts, const char *task_id, int64_t runner_pid,
    const char *exit_reason, int64_t iterations, const char *explanation)
{
    payload p = {.n = 0};
    add_int(&p, "runner_pid", runner_pid);
    add_str(&p, "exit_reason", exit_reason);
    add_int(&p, "iterations", iterations);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, RUNNER_EXIT, NULL, NULL, &p);
}

taskspan_code taskspan_emit_phase_enter(int64_t *out_seq, taskspan *ts,
                                        const char *task_id, const char *phase,
                                        const char *explanation)
{
    payload p = {.n = 0};
    taskspan_code code = need_phase(ts, "phase_enter", phase);
    if (code != TASKSPAN_OK) {
        return code;
    }
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, PHASE_ENTER, NULL, phase, &p);
}

taskspan_code taskspan_emit_phase_exit(int64_t *out_seq, taskspan *ts,
                                       const char *task_id, const char *phase,
                                       const char *explanation)
{
    payload p = {.n = 0};
    taskspan_code code = need_phase(ts, "phase_exit", phase);
    if (code != TASKSPAN_OK) {
        return code;
    }
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, PHASE_EXIT, NULL, phase, &p);
}

taskspan_code taskspan_emit_phase_progress(int64_t *out_seq, taskspan *ts,
                                           const char *task_id,
                                           const char *phase,
                                           int64_t completed, int64_t total,
                                           const char *explanation)
{
    payload p = {.n = 0};
    taskspan_code code = need_phase(ts, "phase_progress", phase);
    if (code != TASKSPAN_OK) {
        return code;
    }
    add_int(&p, "completed", completed);
    add_int(&p, "total", total);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, PHASE_PROGRESS, NULL, phase, &p);
}

taskspan_code taskspan_emit_checkpoint_begin(int64_t *out_seq, taskspan *ts,
                                             const char *task_id,
                                             const char *step_id,
                                             const char *checkpoint_type,
                                             const char *work_item_id,
                                             const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "step_id", step_id);
    add_str(&p, "checkpoint_type", checkpoint_type);
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, CHECKPOINT_BEGIN, NULL, NULL, &p);
}

taskspan_code taskspan_emit_checkpoint_commit(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type,
    int64_t sequence_number, const char *const *evidence,
    int64_t evidence_count, const char *explanation)
{
    payload p = {.n = 0};
    if (ts != NULL && evidence != NULL && evidence_count < 0) {
        return taskspan__record_failure(ts, TASKSPAN_E_INVALID_ARG, true,
                                        "evidence_count is negative");
    }
    add_str(&p, "checkpoint_id", checkpoint_id);
    add_str(&p, "checkpoint_type", checkpoint_type);
    add_int(&p, "sequence_number", sequence_number);
    add_int(&p, "evidence_count", evidence_count);
    add_strs(&p, "evidence", evidence, (size_t)evidence_count);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, CHECKPOINT_COMMIT, NULL, NULL, &p);
}

taskspan_code taskspan_emit_checkpoint_verified(int64_t *out_seq, taskspan *ts,
                                                const char *task_id,
                                                const char *checkpoint_id,
                                                const char *checkpoint_type,
                                                int64_t evidence_count,
                                                const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "checkpoint_id", checkpoint_id);
    add_str(&p, "checkpoint_type", checkpoint_type);
    p.a[p.n++] = taskspan_attr_bool("verified", 1);
    add_int(&p, "evidence_count", evidence_count);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, CHECKPOINT_VERIFIED, NULL, NULL,
                      &p);
}

taskspan_code taskspan_emit_checkpoint_invalid(int64_t *out_seq, taskspan *ts,
                                               const char *task_id,
                                               const char *checkpoint_id,
                                               const char *checkpoint_type,
                                               const char *reason,
                                               const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "checkpoint_id", checkpoint_id);
    add_str(&p, "checkpoint_type", checkpoint_type);
    p.a[p.n++] = taskspan_attr_bool("verified", 0);
    add_str(&p, "reason", reason);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, CHECKPOINT_INVALID, NULL, NULL,
                      &p);
}

taskspan_code taskspan_emit_gate_start(int64_t *out_seq, taskspan *ts,
                                       const char *task_id,
                                       const char *gate_name,
                                       int64_t timeout_seconds,
                                       const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "gate_name", gate_name);
    add_int(&p, "timeout_seconds", timeout_seconds);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, GATE_START, NULL, NULL, &p);
}

taskspan_code taskspan_emit_gate_result(
    int64_t *out_seq, taskspan *ts, const char *task_id, const char *gate_name,
    const char *status, int passed, int64_t exit_code, double duration_seconds,
    const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "gate_name", gate_name);
    add_str(&p, "status", status);
    p.a[p.n++] = taskspan_attr_bool("passed", passed);
    add_int(&p, "exit_code", exit_code);
    p.a[p.n++] = taskspan_attr_double("duration_seconds", duration_seconds);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, GATE_RESULT, NULL, NULL, &p);
}

taskspan_code taskspan_emit_gate_retry(int64_t *out_seq, taskspan *ts,
                                       const char *task_id,
                                       const char *gate_name, int64_t attempt,
                                       int64_t max_attempts,
                                       const char *reason,
                                       const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "gate_name", gate_name);
    add_int(&p, "attempt", attempt);
    add_int(&p, "max_attempts", max_attempts);
    add_str(&p, "reason", reason);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, GATE_RETRY, NULL, NULL, &p);
}

taskspan_code taskspan_emit_work_item_dispatched(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *title, int64_t index,
    const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "title", title);
    add_int(&p, "index", index);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, WORK_ITEM_DISPATCHED, NULL, NULL,
                      &p);
}

taskspan_code taskspan_emit_work_item_start(int64_t *out_seq, taskspan *ts,
                                            const char *task_id,
                                            const char *work_item_id,
                                            const char *work_type,
                                            const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "work_type", work_type);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, WORK_ITEM_START, work_item_id,
                      NULL, &p);
}

taskspan_code taskspan_emit_work_item_done(int64_t *out_seq, taskspan *ts,
                                           const char *task_id,
                                           const char *work_item_id,
                                           const char *title,
                                           const char *const *files_changed,
                                           size_t n_files_changed,
                                           const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "title", title);
    add_strs(&p, "files_changed", files_changed, n_files_changed);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, WORK_ITEM_DONE, work_item_id, NULL,
                      &p);
}

taskspan_code taskspan_emit_work_item_failed(int64_t *out_seq, taskspan *ts,
                                             const char *task_id,
                                             const char *work_item_id,
                                             const char *title,
                                             const char *error,
                                             const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "title", title);
    add_str(&p, "error", error);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, WORK_ITEM_FAILED, work_item_id,
                      NULL, &p);
}

taskspan_code taskspan_emit_lease_acquired(int64_t *out_seq, taskspan *ts,
                                           const char *task_id,
                                           const char *work_item_id,
                                           const char *lease_holder,
                                           int64_t lease_duration_seconds,
                                           const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "lease_holder", lease_holder);
    add_int(&p, "lease_duration_seconds", lease_duration_seconds);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, LEASE_ACQUIRED, work_item_id, NULL,
                      &p);
}

taskspan_code taskspan_emit_lease_renewed(int64_t *out_seq, taskspan *ts,
                                          const char *task_id,
                                          const char *work_item_id,
                                          const char *lease_holder,
                                          int64_t extended_by_seconds,
                                          const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "lease_holder", lease_holder);
    add_int(&p, "extended_by_seconds", extended_by_seconds);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, LEASE_RENEWED, work_item_id, NULL,
                      &p);
}

taskspan_code taskspan_emit_lease_lost(int64_t *out_seq, taskspan *ts,
                                       const char *task_id,
                                       const char *work_item_id,
                                       const char *lease_holder,
                                       const char *reason,
                                       const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "lease_holder", lease_holder);
    add_str(&p, "reason", reason);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, LEASE_LOST, work_item_id, NULL,
                      &p);
}

taskspan_code taskspan_emit_lease_takeover(int64_t *out_seq, taskspan *ts,
                                           const char *task_id,
                                           const char *work_item_id,
                                           const char *previous_holder,
                                           const char *new_holder,
                                           const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "previous_holder", previous_holder);
    add_str(&p, "new_holder", new_holder);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, LEASE_TAKEOVER, work_item_id, NULL,
                      &p);
}

taskspan_code taskspan_emit_recovery_detected(int64_t *out_seq, taskspan *ts,
                                              const char *task_id,
                                              int64_t expired_count,
                                              const char *const *work_item_ids,
                                              size_t n_work_item_ids,
                                              const char *explanation)
{
    payload p = {.n = 0};
    add_int(&p, "expired_count", expired_count);
    add_strs(&p, "work_item_ids", work_item_ids, n_work_item_ids);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, RECOVERY_DETECTED, NULL, NULL, &p);
}

taskspan_code taskspan_emit_recovery_requeued(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *work_item_id, const char *previous_holder, int64_t retry_count,
    int64_t max_retries, const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "previous_holder", previous_holder);
    add_int(&p, "retry_count", retry_count);
    add_int(&p, "max_retries", max_retries);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, RECOVERY_REQUEUED, NULL, NULL, &p);
}

taskspan_code taskspan_emit_recovery_resumed_from_checkpoint(
    int64_t *out_seq, taskspan *ts, const char *task_id,
    const char *checkpoint_id, const char *checkpoint_type,
    int64_t sequence_number, const char *work_item_id, const char *explanation)
{
    payload p = {.n = 0};
    add_str(&p, "checkpoint_id", checkpoint_id);
    add_str(&p, "checkpoint_type", checkpoint_type);
    add_int(&p, "sequence_number", sequence_number);
    add_str(&p, "work_item_id", work_item_id);
    add_str(&p, "explanation", explanation);
    return emit_typed(out_seq, ts, task_id, RECOVERY_RESUMED, NULL, NULL, &p);
}
