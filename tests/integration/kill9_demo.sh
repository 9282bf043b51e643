#!/usr/bin/env bash
# kill9_demo.sh -- the seed's "Kill -9 Recovery Visible" sequence, for real,
# with the demo runner (build/examples/taskspan-demo-runner) and its own
# background exporter sending to the test collector:
#
#   D-1  the runner commits and verifies item 1's checkpoint and takes item
#        2's lease; it is killed (SIGKILL). Started again on the same task it
#        records runner_spawn, recovery_detected (the dead runner's lease of
#        wi_002), recovery_requeued (wi_002), recovery_resumed_from_checkpoint
#        (item 1's checkpoint) and finishes the task (runner_exit). Asserted
#        in the buffer, event by event, and at the collector: one trace, the
#        killed incarnation's main span crashed, the recovery events on
#        recovery_sweep and main, every span arrived.
#   D-2  the same runner killed 10 times at random points (seeded; the seed
#        is printed, KILL9_SEED reproduces it), then run to the end (a task
#        that finished before a kill is followed by D-3, ...); each work
#        item is done exactly once whatever the kills.
#
# Both go through tests/collector/kill9_check.js (see kill9_random.sh for the
# kill -9 suite with a witness of every returned emit): every event of the
# buffer at the collector on its span, gap-free seq, crashed incarnations
# marked, duplicates byte-identical and only from killed runners.
set -euo pipefail
k9_test=kill9_demo
# shellcheck source-path=SCRIPTDIR source=lib/kill9_test.bash
source "$(dirname "$0")/lib/kill9_test.bash"
demo_bin=$bin/examples/taskspan-demo-runner
[ -x "$demo_bin" ] || fail "missing program $demo_bin (build first)"

# demo_start TASK ITEMS ITEM_MS: the demo runner in the background; sets
# D_PID and D_RUN (its x-kill9-run header).
demo_start() {
    K9_RUNS=$((K9_RUNS + 1))
    D_RUN=$K9_RUNS
    D_T0=$(k9_now_ms)
    OTEL_EXPORTER_OTLP_HEADERS="x-kill9-run=$D_RUN" "${wrap[@]}" "$demo_bin" \
        --task "$1" --items "$2" --item-ms "$3" >"$tmp/demo.$D_RUN.out" 2>&1 &
    D_PID=$!
    bg_pids+=("$D_PID")
}

# demo_end HOW TASK: kill it now ("kill") or let it finish ("wait"); log the
# run for kill9_check.js. Sets D_RC.
demo_end() {
    local t_kill=0 killed=false
    {
        if [ "$1" = kill ]; then
            t_kill=$(k9_now_ms)
            kill -KILL "$D_PID" 2>/dev/null || true
        fi
        set +e
        timeout_wait "$D_PID"
        D_RC=$?
        set -e
    } 2>/dev/null
    forget "$D_PID"
    if [ $D_RC -eq 137 ]; then
        killed=true
        K9_KILLS=$((K9_KILLS + 1))
    elif [ $D_RC -ne 0 ]; then
        fail "demo runner (run $D_RUN) exited $D_RC: $(cat "$tmp/demo.$D_RUN.out")"
    fi
    printf '{"run":"%s","task":"%s","how":"%s","killed":%s,"startMs":%s,"killMs":%s}\n' \
        "$D_RUN" "$2" "$1" "$killed" "$D_T0" "$t_kill" >>"$tmp/runs.jsonl"
}

# timeout_wait PID: wait for it, killing it after 120 s (a hang).
timeout_wait() {
    local deadline=$((SECONDS + 120))
    while kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; do
        [ $SECONDS -lt $deadline ] || kill -KILL "$1" 2>/dev/null || true
        sleep 0.02
    done
    wait "$1"
}

count() { # count TASK EVENT_TYPE [INCARNATION]
    k9_has_schema || {
        echo 0
        return
    }
    k9_db "SELECT count(*) FROM task_events WHERE task_id = '$1'
           AND event_type = '$2' ${3:+AND incarnation = $3}"
}

# done_once TASK ITEMS: the library records a work item's done with its
# state change in one transaction, and a resumed runner skips DONE items,
# so whatever the kills, each item is done exactly once.
done_once() {
    local rows
    rows=$(k9_db "SELECT count(*) || ' ' || coalesce(min(n), 0) || ' ' || coalesce(max(n), 0)
                  FROM (SELECT count(*) AS n FROM task_events
                        WHERE task_id = '$1' AND event_type = 'work_item_done'
                        GROUP BY json_extract(payload, '\$.work_item_id'))")
    [ "$rows" = "$2 1 1" ] ||
        fail "task $1: want each of $2 items done exactly once (items, min, max times): $rows"
}

k9_seed "${KILL9_SEED:-}"
k9_start_collector

# D-1: killed with item 1 checkpointed and item 2 leased.
demo_start D-1 4 400
deadline=$((SECONDS + 60))
until [ "$(count D-1 checkpoint_verified)" -ge 1 ] && [ "$(count D-1 lease_acquired)" -ge 2 ]; do
    kill -0 "$D_PID" 2>/dev/null || fail "the demo runner ended before item 2: $(cat "$tmp/demo.$D_RUN.out")"
    [ $SECONDS -lt $deadline ] || fail "the demo runner did not reach item 2 within 60 s"
    sleep 0.02
done
demo_end kill D-1
[ $D_RC -eq 137 ] || fail "the demo runner was not killed (exit $D_RC)"
[ "$(count D-1 work_item_done)" -eq 1 ] ||
    fail "the kill should come during item 2: $(k9_db "SELECT seq, event_type FROM task_events WHERE task_id = 'D-1'")"
ckpt=$(k9_db "SELECT json_extract(payload, '\$.checkpoint_id') FROM task_events
              WHERE task_id = 'D-1' AND event_type = 'checkpoint_verified'")
[ -n "$ckpt" ] || fail "no verified checkpoint before the kill"
demo_start D-1 4 20
demo_end wait D-1
grep -q '^resumed task D-1: ' "$tmp/demo.$D_RUN.out" ||
    fail "the restarted demo runner did not say it resumed: $(cat "$tmp/demo.$D_RUN.out")"
# The restart's first events are the report's recovery sequence.
first=$(k9_db "SELECT group_concat(event_type, ' ') FROM (SELECT event_type
               FROM task_events WHERE task_id = 'D-1' AND incarnation = 2
               ORDER BY seq LIMIT 4)")
[ "$first" = "runner_spawn recovery_detected recovery_requeued recovery_resumed_from_checkpoint" ] ||
    fail "the restart began with: $first"
row=$(k9_db "SELECT json_extract(payload, '\$.expired_count') || ' ' ||
             json_extract(payload, '\$.work_item_ids') FROM task_events
             WHERE task_id = 'D-1' AND event_type = 'recovery_detected'")
[ "$row" = '1 ["wi_002"]' ] || fail "recovery_detected should name the dead runner's lease of wi_002: $row"
row=$(k9_db "SELECT json_extract(payload, '\$.work_item_id') FROM task_events
             WHERE task_id = 'D-1' AND event_type = 'recovery_requeued'")
[ "$row" = wi_002 ] || fail "recovery_requeued: $row"
row=$(k9_db "SELECT json_extract(payload, '\$.checkpoint_id') FROM task_events
             WHERE task_id = 'D-1' AND event_type = 'recovery_resumed_from_checkpoint'")
[ "$row" = "$ckpt" ] || fail "resumed from '$row', want the verified checkpoint '$ckpt'"
[ "$(count D-1 runner_exit 2)" -eq 1 ] || fail "the resumed runner did not finish the task"
[ "$(count D-1 work_item_done)" -eq 4 ] || fail "want 4 items done in all: $(count D-1 work_item_done)"
k9_gapless D-1
done_once D-1 4
echo "ok - D-1: checkpoint $ckpt committed, runner killed, recovery detected, resumed from $ckpt, task finished"

# D-2...: ten kills that land on a live runner, at random points of its
# run (the first run of a task takes 10 items x 40 ms); a task that
# finished before its kill makes way for the next one.
landed=$K9_KILLS tries=0 task=2
while [ $((K9_KILLS - landed)) -lt 10 ]; do
    tries=$((tries + 1))
    [ $tries -le 40 ] || fail "only $((K9_KILLS - landed)) of $tries kills landed on a live runner"
    demo_start "D-$task" 10 40
    sleep "0.$(printf '%03d' $((RANDOM % 450)))"
    demo_end kill "D-$task"
    if [ "$(count "D-$task" runner_exit)" -gt 0 ]; then
        k9_gapless "D-$task"
        done_once "D-$task" 10
        task=$((task + 1))
    fi
done
demo_start "D-$task" 10 40
demo_end wait "D-$task"
[ "$(count "D-$task" runner_exit)" -ge 1 ] || fail "D-$task did not finish"
k9_gapless "D-$task"
done_once "D-$task" 10
echo "ok - D-2..D-$task: 10 random kills landed on a live runner in $tries tries; every task finished, each item done once"

K9_REQUIRE_SEED=1 k9_finish
echo "kill9_demo: kills $K9_KILLS; duplicates seen $K9_DUPLICATES; final export $K9_EXPORT_MS ms"
# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "kill9_demo: all checks passed ($((SECONDS - started)) s)"
