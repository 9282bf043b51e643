#!/usr/bin/env bash
# export_crashed.sh -- a runner killed with kill -9 whose task gets no new
# runner: `taskspan export` leaves its spans alone within the grace period,
# then (runner process gone, TASKSPAN_CRASH_GRACE_MS passed) closes them as
# crashed and delivers them to a real receiver. The restarted demo runner
# then sweeps, requeues, resumes and finishes the task, and the crashed
# spans already delivered are not sent a second time.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/crashed.XXXXXX" 2>/dev/null || mktemp -d)
bg_name=export_crashed
# shellcheck source=lib/background.bash
. "$(dirname "$0")/lib/background.bash"
export TASKSPAN_DB=$tmp/buffer.db
unset TRACEPARENT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT TASKSPAN_CRASH_GRACE_MS
# The runners record only; `taskspan export` delivers.
export OTEL_SDK_DISABLED=true
fail() {
  echo "FAIL: $*" >&2
  echo "--- receiver:" >&2; cat "$tmp/recv" >&2 2>/dev/null || true
  exit 1
}
cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }
demo() { ${TASKSPAN_WRAP:-} "$bin/examples/taskspan-demo-runner" "$@"; }
q() { sqlite3 "$TASKSPAN_DB" "$1"; }

# 1. A receiver on a free loopback port.
${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" serve --listen 127.0.0.1:0 \
  --print --ready-file "$tmp/ready" >"$tmp/recv" 2>&1 &
bg_pids+=($!)
for _ in $(seq 300); do [ -s "$tmp/ready" ] && break; sleep 0.1; done
[ -s "$tmp/ready" ] || fail "receiver not ready after 30 s"
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$(cat "$tmp/ready")

# 2. A runner working on its first item for ten minutes, killed -9 as soon
# as that item started.
${TASKSPAN_WRAP:-} "$bin/examples/taskspan-demo-runner" --task T-crash \
  --items 3 --item-ms 600000 >"$tmp/run1" 2>&1 &
runner=$!
bg_pids+=("$runner")
for _ in $(seq 600); do
  [ -s "$TASKSPAN_DB" ] &&
    [ "$(q "SELECT count(*) FROM task_events WHERE task_id='T-crash' AND event_type='work_item_start'" 2>/dev/null || echo 0)" = 1 ] &&
    break
  sleep 0.1
done
[ "$(q "SELECT count(*) FROM task_events WHERE task_id='T-crash' AND event_type='work_item_start'")" = 1 ] ||
  fail "the runner never started its first item"
kill -9 "$runner"
wait "$runner" 2>/dev/null || true
forget "$runner"

# 3. Within the grace period (the default 30 s): nothing closed, nothing
# sent.
cli export --once --timeout 10000 >"$tmp/exp1" || fail "export 1: $(cat "$tmp/exp1")"
grep -q ' 0 spans delivered' "$tmp/exp1" || fail "export 1 delivered: $(cat "$tmp/exp1")"
[ "$(q "SELECT count(*) FROM crashed_incarnations")" = 0 ] || fail "closed within the grace period"

# 4. Grace 0: the runner's pid is gone, so its spans close as crashed and go.
TASKSPAN_CRASH_GRACE_MS=0 cli export --once --timeout 10000 >"$tmp/exp2" ||
  fail "export 2: $(cat "$tmp/exp2")"
grep -q ' 2 spans delivered' "$tmp/exp2" || fail "export 2: $(cat "$tmp/exp2")"
for _ in $(seq 100); do [ "$(grep -c '^span ' "$tmp/recv")" -ge 2 ] && break; sleep 0.1; done
main1=$(grep -E '^span [0-9a-f]{32} [0-9a-f]{16} parent=- main status=ERROR ' "$tmp/recv" | awk '{print $3}')
[ -n "$main1" ] || fail "no crashed main span received"
grep -qE "^span [0-9a-f]{32} [0-9a-f]{16} parent=$main1 work_wi_001 status=ERROR " "$tmp/recv" ||
  fail "no crashed work_wi_001 under main"
cli tree T-crash >"$tmp/tree1"
grep -q 'Span: main \[incarnation 1\] .*ERROR: runner ended without runner_exit (killed or crashed))$' "$tmp/tree1" ||
  fail "tree 1: $(cat "$tmp/tree1")"

# 5. The runner comes back: sweep (the dead holder's lease counts as
# expired at once), requeue, resume, finish.
demo --task T-crash --items 3 --item-ms 5 >"$tmp/run2" || fail "runner 2 exited $?: $(cat "$tmp/run2")"
grep -q '^resumed task T-crash: 1 expired leases, 1 requeued, from checkpoint none$' "$tmp/run2" ||
  fail "runner 2: $(cat "$tmp/run2")"
[ "$(q "SELECT group_concat(state) FROM work_items WHERE task_id='T-crash' ORDER BY work_item_id")" = "3,3,3" ] ||
  fail "items not all done"
[ "$(q "SELECT json_extract(payload, '$.retry_count') FROM task_events WHERE task_id='T-crash' AND event_type='recovery_requeued'")" = 1 ] ||
  fail "no recovery_requeued with retry_count 1"
cli export --once --timeout 10000 >"$tmp/exp3" || fail "export 3: $(cat "$tmp/exp3")"
for _ in $(seq 100); do grep -q ' recovery_sweep status=' "$tmp/recv" && break; sleep 0.1; done
grep -q ' recovery_sweep status=UNSET ' "$tmp/recv" || fail "no recovery_sweep span"
[ "$(grep -c " $main1 parent=" "$tmp/recv")" = 1 ] || fail "the crashed main was sent again"
[ "$(grep -cE ' parent=- main status=' "$tmp/recv")" = 2 ] || fail "expected two main spans"
cli tree T-crash >"$tmp/tree2"
grep -q 'Span: main \[incarnation 2\] .*, ok)$' "$tmp/tree2" || fail "tree 2: $(cat "$tmp/tree2")"
grep -q ' open)' "$tmp/tree2" && fail "a span is still open: $(cat "$tmp/tree2")"
ok_to_clean=1
echo "export_crashed: all checks passed"
