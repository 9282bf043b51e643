# shellcheck shell=bash disable=SC2154 # bin, src, tmp, wrap come from the caller
# kill9.bash -- the kill -9 engine of tests/integration/kill9_random.sh and
# bench/kill9.sh: real runner processes (tests/tools/kill9_runner) killed
# with SIGKILL at random points, restarted until their task finishes, their
# spans exported by their own background exporters (killed with them) to
# the test collector.
#
# The witness: kill9_runner writes "<seq> <event_type>" to a pipe after
# each emit RETURNED. The engine reads that pipe; whatever it read was
# returned before the kill. After each run it checks the buffer against it:
#   - every witnessed event is in the buffer, with its seq and type (lost
#     events are counted in K9_LOST and are a failure);
#   - the run's events are the seqs right after the previous run's, with no
#     gap, and the buffer holds at most one event more than the witness
#     (the emit that had committed but not yet returned when the kill came;
#     counted in K9_INFLIGHT), and none more when the run was not killed.
# A restart is told what a runner reads from its own state after a crash:
# the leases the dead runner held (recovery_detected/requeued) and the last
# verified checkpoint (recovery_resumed_from_checkpoint), read here from
# the buffer's events with sqlite3. (The library's own sweep and resume,
# taskspan_recovery_sweep/resume, are killed at random by kill9_demo.sh
# through the demo runner, which has no witness.)
#
# The caller sets bin, src, tmp, wrap (an array) and TASKSPAN_DB, defines
# fail MSG, sources tests/integration/lib/background.bash, then calls
# k9_seed, k9_start_collector, k9_calibrate, k9_task ... per task, and
# k9_finish, which runs the final export and tests/collector/kill9_check.js
# on everything that arrived, and k9_figures.
#
# Kill points, from the seeded $RANDOM (k9_seed prints the seed): half of
# the kills come right after the N-th witness line (N uniform over the
# events left to record, so the kill lands inside an emit, a sleep or the
# exporter), half after a delay uniform over the wall time left (so also
# inside exec, open, schema creation, close and its last export pass).

K9_KILLS=0       # runs that died of SIGKILL
K9_MISSED=0      # kill attempts that found the runner already exited
K9_RUNS=0        # runner processes started
K9_WITNESSED=0   # witness lines read
K9_LOST=0        # witnessed events not in the buffer (must stay 0)
K9_INFLIGHT=0    # events committed whose witness line never came
K9_FULL_MS=0     # wall time of a full run without a kill (calibration)
k9_runner=$bin/tests/kill9_runner
k9_coll=$src/tests/collector

k9_now_ms() { date +%s%3N; }
k9_db() { sqlite3 -cmd ".timeout 5000" "$TASKSPAN_DB" "$@"; }
# k9_has_schema: the buffer exists and has its tables (a runner killed
# before or while it created them leaves none; never create the file here).
k9_has_schema() {
    [ -s "$TASKSPAN_DB" ] &&
        [ "$(k9_db "SELECT count(*) FROM sqlite_master WHERE name = 'tasks'")" = 1 ]
}

# k9_seed [SEED]: seed $RANDOM (KILL9_SEED, else the clock) and say so.
k9_seed() {
    K9_SEED=${1:-${KILL9_SEED:-$(($(date +%s%N) % 1000000007))}}
    RANDOM=$K9_SEED
    echo "kill9: seed $K9_SEED (rerun with KILL9_SEED=$K9_SEED)"
}

# k9_start_collector: the test collector, answering 200 to everything;
# sets the OTEL_* variables of every runner.
k9_start_collector() {
    mkdir -p "$tmp/collector"
    node "$k9_coll/collector.js" --port 0 --log "$tmp/requests.jsonl" \
        --ready-file "$tmp/collector/port" >"$tmp/collector/out" 2>&1 &
    K9_COL_PID=$!
    bg_pids+=("$K9_COL_PID")
    local deadline=$((SECONDS + 15))
    while [ ! -s "$tmp/collector/port" ]; do
        kill -0 "$K9_COL_PID" 2>/dev/null ||
            fail "collector did not start: $(cat "$tmp/collector/out")"
        [ $SECONDS -lt $deadline ] || fail "collector not ready within 15 s"
        sleep 0.05
    done
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$(cat "$tmp/collector/port")
    export OTEL_EXPORTER_OTLP_ENDPOINT
    export OTEL_SERVICE_NAME=kill9
    # Export passes while the runner works, so the kills also hit the
    # exporter: claims, requests in flight, settles.
    export OTEL_BSP_SCHEDULE_DELAY=${K9_SCHEDULE_DELAY:-20}
    export OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4
    # A killed exporter's claim lasts the request timeout + 10 s.
    export OTEL_EXPORTER_OTLP_TIMEOUT=1000
    unset OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_TRACES_ENDPOINT TRACEPARENT
}

k9_stop_collector() {
    local deadline=$((SECONDS + 5))
    kill -TERM "$K9_COL_PID" 2>/dev/null || true
    while kill -0 "$K9_COL_PID" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -9 "$K9_COL_PID" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$K9_COL_PID" 2>/dev/null || true
    forget "$K9_COL_PID"
}

# k9_state TASK: what the buffer says about TASK after a run; sets
# S_INC (current incarnation, 0: none), S_EXITED (runner_exit recorded in
# it), S_PID (its runner's pid), S_EXPIRED (work items it leased and did
# not finish, comma-separated), S_CKPT ("checkpoint_id,sequence_number" of
# the last verified checkpoint of any incarnation), S_LAST (last seq).
k9_state() {
    local t=$1 row
    if ! k9_has_schema; then
        S_INC=0 S_EXITED=0 S_PID=0 S_EXPIRED='' S_CKPT='' S_LAST=0
        return
    fi
    row=$(k9_db "
WITH cur AS (SELECT incarnation AS inc FROM tasks WHERE task_id = '$t'),
ev AS (SELECT e.* FROM task_events e, cur
       WHERE e.task_id = '$t' AND e.incarnation = cur.inc)
SELECT coalesce((SELECT inc FROM cur), 0),
  (SELECT count(*) FROM ev WHERE event_type = 'runner_exit'),
  coalesce((SELECT json_extract(payload, '\$.runner_pid') FROM ev
            WHERE event_type = 'runner_spawn'), 0),
  coalesce((SELECT group_concat(w, ',') FROM (
     SELECT DISTINCT json_extract(a.payload, '\$.work_item_id') AS w
     FROM ev a WHERE a.event_type = 'lease_acquired' AND NOT EXISTS (
       SELECT 1 FROM ev d
       WHERE d.event_type IN ('work_item_done', 'work_item_failed')
         AND json_extract(d.payload, '\$.work_item_id') =
             json_extract(a.payload, '\$.work_item_id'))
     ORDER BY w)), ''),
  coalesce((SELECT json_extract(c.payload, '\$.checkpoint_id') || ',' ||
                   json_extract(c.payload, '\$.sequence_number')
     FROM task_events v JOIN task_events c
       ON c.task_id = v.task_id AND c.event_type = 'checkpoint_commit'
      AND json_extract(c.payload, '\$.checkpoint_id') =
          json_extract(v.payload, '\$.checkpoint_id')
     WHERE v.task_id = '$t' AND v.event_type = 'checkpoint_verified'
     ORDER BY v.seq DESC LIMIT 1), ''),
  coalesce((SELECT max(seq) FROM task_events WHERE task_id = '$t'), 0);")
    IFS='|' read -r S_INC S_EXITED S_PID S_EXPIRED S_CKPT S_LAST <<<"$row"
    [ -n "$S_LAST" ] || fail "cannot read the state of task $t from the buffer"
}

# k9_restart_args: the runner's arguments for a restart after k9_state.
k9_restart_args() {
    K9_ARGS=()
    local ckpt_seq
    if [ -n "$S_CKPT" ]; then
        ckpt_seq=${S_CKPT##*,}
        K9_ARGS+=(--resume "$S_CKPT,$(printf 'wi_%03d' "$ckpt_seq")"
            --from-item $((ckpt_seq + 1)))
    fi
    if [ -n "$S_EXPIRED" ]; then
        K9_ARGS+=(--expired "$S_EXPIRED" --holder "worker-$S_PID")
    fi
}

# k9_run TASK ITEMS ITEM_MS HOW [ARGS...]: one runner process. HOW is
# "none" (let it finish), "lines:N" (kill after the N-th witness line),
# "after:WORD:N" (after the N-th line naming WORD) or "ms:D" (after D ms).
# Then checks the run against the buffer (see the top of this file).
k9_run() {
    local task=$1 items=$2 item_ms=$3 how=$4
    shift 4
    local run=$((K9_RUNS + 1)) fifo=$tmp/fifo w
    local pid rc line n=0 want word hits=0 t0 t_kill=0 killed=false before
    K9_RUNS=$run
    w=$tmp/witness/$task.$run
    mkdir -p "$tmp/witness"
    before=0
    if k9_has_schema; then
        before=$(k9_db "SELECT coalesce(max(seq), 0) FROM task_events WHERE task_id = '$task'")
    fi
    rm -f "$fifo"
    mkfifo "$fifo"
    t0=$(k9_now_ms)
    # K9_RUNNER_ARGS: options every runner gets (kill9_full.sh: --sync
    # full), split into words on purpose.
    # shellcheck disable=SC2086
    OTEL_EXPORTER_OTLP_HEADERS="x-kill9-run=$run" "${wrap[@]}" "$k9_runner" \
        --task "$task" --items "$items" --item-ms "$item_ms" \
        ${K9_RUNNER_ARGS:-} "$@" \
        >"$fifo" 2>>"$tmp/runner.err" &
    pid=$!
    bg_pids+=("$pid")
    exec 3<"$fifo"
    rm -f "$fifo"
    : >"$w"
    case $how in
    lines:*)
        want=${how#lines:}
        while [ "$n" -lt "$want" ] && IFS= read -r -t 60 -u 3 line; do
            printf '%s\n' "$line" >>"$w"
            n=$((n + 1))
        done
        ;;
    after:*)
        word=${how#after:}
        want=${word#*:}
        word=${word%%:*}
        while [ "$hits" -lt "$want" ] && IFS= read -r -t 60 -u 3 line; do
            printf '%s\n' "$line" >>"$w"
            [ "${line#* }" != "$word" ] || hits=$((hits + 1))
        done
        ;;
    ms:*)
        sleep "$(printf '%d.%03d' $((${how#ms:} / 1000)) $((${how#ms:} % 1000)))"
        ;;
    esac
    # Kill, drain the rest of the witness (the pipe ends when the runner is
    # gone) and reap it, with the shell's "Killed" notice sent to /dev/null.
    {
        if [ "$how" != none ]; then
            t_kill=$(k9_now_ms)
            kill -KILL "$pid" 2>/dev/null || true
        fi
        cat <&3 >>"$w"
        exec 3<&-
        set +e
        wait "$pid"
        rc=$?
        set -e
    } 2>/dev/null
    K9_RUN_MS=$(($(k9_now_ms) - t0))
    forget "$pid"
    if [ $rc -eq 137 ]; then
        killed=true
        K9_KILLS=$((K9_KILLS + 1))
    elif [ $rc -ne 0 ]; then
        fail "run $run of $task exited $rc: $(tail -n 5 "$tmp/runner.err")"
    elif [ "$how" != none ]; then
        K9_MISSED=$((K9_MISSED + 1))
    fi
    k9_check_run "$task" "$run" "$before" "$w" "$killed"
    printf '{"run":"%s","task":"%s","how":"%s","killed":%s,"startMs":%s,"killMs":%s,"witnessed":%s,"inflight":%s}\n' \
        "$run" "$task" "$how" "$killed" "$t0" "$t_kill" "$K9_RUN_W" \
        "$K9_RUN_EXTRA" >>"$tmp/runs.jsonl"
    K9_RUN_KILLED=$killed
}

# k9_check_run TASK RUN BEFORE WITNESS KILLED: the witness against the
# buffer. Sets K9_RUN_W (witness lines) and K9_RUN_EXTRA.
k9_check_run() {
    local task=$1 run=$2 before=$3 w=$4 killed=$5 rows=$tmp/rows lost after
    : >"$rows"
    if [ "${TASKSPAN_JOURNAL:-}" = 1 ]; then
        # The journal mode: what a killed runner journaled reaches the
        # buffer at the next open (here), and its witness has no seqs (0:
        # a seq is assigned when the event is moved), so the order of the
        # event types is what proves the seqs.
        "$k9_runner" --replay || fail "run $run of $task: replaying the journal failed"
        K9_JOURNALED=$((${K9_JOURNALED:-0} + $(grep -c '^0 ' "$w" || true)))
        sed 's/^[0-9]* /X /' "$w" >"$w.types"
        w=$w.types
    fi
    k9_has_schema || [ -s "$w" ] || { K9_RUN_W=0 K9_RUN_EXTRA=0 && return; }
    if [ "${TASKSPAN_JOURNAL:-}" = 1 ]; then
        k9_db "SELECT 'X ' || event_type FROM task_events
               WHERE task_id = '$task' AND seq > $before ORDER BY seq" >"$rows"
    else
        k9_db "SELECT seq || ' ' || event_type FROM task_events
               WHERE task_id = '$task' AND seq > $before ORDER BY seq" >"$rows"
    fi
    K9_RUN_W=$(wc -l <"$w")
    K9_WITNESSED=$((K9_WITNESSED + K9_RUN_W))
    after=$(wc -l <"$rows")
    lost=$(grep -cvxFf "$rows" "$w" || true)
    if [ "$lost" -ne 0 ]; then
        K9_LOST=$((K9_LOST + lost))
        echo "LOST: run $run of $task: $lost witnessed events are not in the buffer:" >&2
        grep -vxFf "$rows" "$w" | head -n 5 >&2
        fail "events whose emit had returned were lost (run $run, task $task)"
    fi
    # The run's events are the next seqs, in the witnessed order.
    head -n "$K9_RUN_W" "$rows" | cmp -s - "$w" ||
        fail "run $run of $task: the witness is not the run's first $K9_RUN_W events (seq $((before + 1)) on): $(diff <(head -n "$K9_RUN_W" "$rows") "$w" | head -n 6)"
    [ "$K9_RUN_W" -eq 0 ] || [ "${TASKSPAN_JOURNAL:-}" = 1 ] ||
        [ "$(head -n 1 "$w" | cut -d' ' -f1)" -eq $((before + 1)) ] ||
        fail "run $run of $task: first witnessed seq $(head -n 1 "$w"), want $((before + 1))"
    K9_RUN_EXTRA=$((after - K9_RUN_W))
    if [ "$killed" = true ]; then
        [ "$K9_RUN_EXTRA" -le 1 ] ||
            fail "run $run of $task: $K9_RUN_EXTRA events in the buffer that the killed runner never returned from (at most the one emit in flight)"
    else
        [ "$K9_RUN_EXTRA" -eq 0 ] ||
            fail "run $run of $task: $K9_RUN_EXTRA buffered events that no returned emit reported"
    fi
    K9_INFLIGHT=$((K9_INFLIGHT + K9_RUN_EXTRA))
}

# k9_gapless TASK: seq is 1..max(seq), each once, and the tasks row's
# last_seq (a floor, written now and then: docs/buffer.md) is not past it.
k9_gapless() {
    local row
    row=$(k9_db "SELECT count(*), coalesce(max(seq), 0), count(DISTINCT seq),
                 (SELECT max(last_seq, coalesce((SELECT max(seq) FROM
                   task_events e WHERE e.task_id = '$1'), 0))
                  FROM tasks WHERE task_id = '$1')
                 FROM task_events WHERE task_id = '$1'")
    local n max distinct last
    IFS='|' read -r n max distinct last <<<"$row"
    if [ "$n" != "$max" ] || [ "$n" != "$distinct" ] || [ "$n" != "$last" ]; then
        fail "task $1: seq is not gap-free: $n events, max seq $max, $distinct distinct, last_seq $last"
    fi
}

# k9_calibrate ITEMS ITEM_MS: one task run to the end without a kill; its
# wall time bounds the random delays.
k9_calibrate() {
    k9_run k9-calibrate "$1" "$2" none
    K9_FULL_MS=$K9_RUN_MS
    K9_FULL_EVENTS=$K9_RUN_W
    k9_gapless k9-calibrate
    echo "kill9: a full run takes $K9_FULL_MS ms, $K9_FULL_EVENTS events"
}

# k9_task TASK ITEMS ITEM_MS KILLS [FIRST_HOW]: run TASK and kill it until
# KILLS kills have landed on a live runner or the task finished (the first
# kill at FIRST_HOW if given, the rest at random points of what is left of
# the run), then restart it until it finishes. Every restart gets the
# recovery arguments.
k9_task() {
    local task=$1 items=$2 item_ms=$3 kills=$4 first=${5:-} how
    local landed=0 tries=0 done_items ev_left ms_left
    K9_ARGS=()
    S_INC=0 S_EXITED=0 S_CKPT=''
    while [ $landed -lt "$kills" ] && [ $tries -lt $((kills * 3)) ]; do
        tries=$((tries + 1))
        done_items=0
        [ -z "$S_CKPT" ] || done_items=${S_CKPT##*,}
        ev_left=$((K9_FULL_EVENTS - 8 * done_items))
        ms_left=$((K9_FULL_MS - item_ms * done_items))
        if [ $tries -eq 1 ] && [ -n "$first" ]; then
            how=$first
        elif [ $((RANDOM % 2)) -eq 0 ]; then
            how=lines:$((RANDOM % (ev_left + 1)))
        else
            how=ms:$((RANDOM % (ms_left + 1)))
        fi
        k9_run "$task" "$items" "$item_ms" "$how" "${K9_ARGS[@]}"
        [ "$K9_RUN_KILLED" = false ] || landed=$((landed + 1))
        k9_state "$task"
        [ "$S_EXITED" -eq 0 ] || break # it finished before the kill
        k9_restart_args
    done
    # Let it finish ("none" never kills, so one run normally does).
    tries=0
    while [ "$S_INC" -eq 0 ] || [ "$S_EXITED" -eq 0 ]; do
        tries=$((tries + 1))
        [ $tries -le 3 ] || fail "task $task does not finish"
        k9_run "$task" "$items" "$item_ms" none "${K9_ARGS[@]}"
        k9_state "$task"
        k9_restart_args
    done
    k9_gapless "$task"
}

# k9_finish: the final `taskspan export` (it waits out the claims of the
# killed exporters), then the collector-side checks. Prints the figures.
k9_finish() {
    local t0 rc tasks
    t0=$(k9_now_ms)
    set +e
    OTEL_EXPORTER_OTLP_HEADERS="x-kill9-run=final" timeout --signal=KILL 120 \
        "${wrap[@]}" "$bin/src/cli/taskspan" export --once --timeout 60000 \
        >"$tmp/export.out" 2>&1
    rc=$?
    set -e
    [ $rc -eq 0 ] || fail "the final taskspan export exited $rc: $(cat "$tmp/export.out")"
    K9_EXPORT_MS=$(($(k9_now_ms) - t0))
    k9_stop_collector
    tasks=$(k9_db "SELECT task_id FROM tasks ORDER BY task_id")
    mkdir -p "$tmp/dumps"
    for t in $tasks; do
        "${wrap[@]}" "$bin/src/cli/taskspan" dump --format otlp-json \
            -o "$tmp/dumps/$t.json" "$t" ||
            fail "taskspan dump $t failed"
    done
    k9_db -json "SELECT task_id, seq, event_type, span_id, incarnation,
                 payload FROM task_events ORDER BY task_id, seq" \
        >"$tmp/events.json"
    # Each closed span the exporters found, with its export state
    # (schema 8 derives it from the tasks' progress: tools/span_states).
    "$bin/tests/span_states" >"$tmp/export_spans.json" ||
        fail "span_states failed"
    node "$k9_coll/kill9_check.js" --log "$tmp/requests.jsonl" \
        --events "$tmp/events.json" --spans "$tmp/export_spans.json" \
        --runs "$tmp/runs.jsonl" --dumps "$tmp/dumps" \
        ${K9_REQUIRE_SEED:+--require-seed-sequence} >"$tmp/check.out" 2>&1 ||
        fail "kill9_check: $(cat "$tmp/check.out")"
    cat "$tmp/check.out"
    K9_DUPLICATES=$(sed -n 's/^duplicates: \([0-9]*\).*/\1/p' "$tmp/check.out")
}

# k9_figures: the summary the note quotes.
k9_figures() {
    echo "kill9: kills tried: $K9_KILLS (SIGKILL delivered to a live runner; $K9_MISSED more found it already exited)"
    echo "kill9: runner processes: $K9_RUNS; events witnessed as returned: $K9_WITNESSED"
    echo "kill9: events lost: $K9_LOST"
    echo "kill9: events committed but never returned (emit in flight at the kill): $K9_INFLIGHT"
    echo "kill9: duplicates seen at the collector: ${K9_DUPLICATES:-?}"
    echo "kill9: final export took $K9_EXPORT_MS ms (it waits for the leases of killed exporters)"
}
