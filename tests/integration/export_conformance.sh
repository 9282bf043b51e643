#!/usr/bin/env bash
# export_conformance.sh -- what libtaskspan exports is what its buffer holds,
# decoded by the official OpenTelemetry schema (tests/collector).
#
# One scripted collector (every request answered 200) receives:
#   1. the report's 20-event "Span Hierarchy Example" (tools/record_seed,
#      export on, taskspan_flush);
#   2. the demo runner's task (--items 3 --fail-item 2), and one with 1000
#      work items (about 4000 events on main: none may be dropped);
#   3. a crashed incarnation: the demo runner killed with SIGKILL in the
#      middle of a work item, then run again for the same task.
# Then `check.js assert-conformance` and `conformance.js` compare every
# request with the buffer (task_events, the tasks' export progress,
# resources) and with docs/export.md and docs/span-model.md.
#
# Needs node and the collector's modules: npm ci --prefix tests/collector.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
coll=$src/tests/collector
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/export_conformance.XXXXXX")
started=$(date +%s)

# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=export_conformance
# shellcheck source=lib/background.bash
source "$src/tests/integration/lib/background.bash"

checks=0
fail() {
    echo "FAIL: export_conformance: $*" >&2
    exit 1
}
pass() { checks=$((checks + 1)); }

# Nothing from the caller's environment may steer the exporters.
while IFS= read -r v; do
    unset "$v"
done < <(env | sed -n 's/^\(OTEL_[A-Za-z0-9_]*\)=.*/\1/p')
unset TRACEPARENT TASKSPAN_TEST_EXPORT_MODE TASKSPAN_TEST_CLOSE_MS

command -v node >/dev/null 2>&1 ||
    fail "node is not installed: the export tests need Node 18+ and 'npm ci --prefix tests/collector'"
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 (the CLI) is not installed"
if [ ! -d "$coll/node_modules/protobufjs" ] ||
    [ ! -f "$coll/node_modules/@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js" ]; then
    fail "the collector's node modules are missing in $coll/node_modules: run 'npm ci --prefix tests/collector' in $src"
fi

# TASKSPAN_WRAP (e.g. valgrind) runs our C programs under a checker.
# An array, so that a wrapper with options splits into words (and none
# stays empty).
read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
demo_bin=$bin/examples/taskspan-demo-runner
cli_bin=$bin/src/cli/taskspan
for f in "$demo_bin" "$cli_bin" "$bin/tests/record_seed" "$bin/tests/trace_id"; do
    [ -x "$f" ] || fail "missing program $f (build first)"
done
demo() { "${wrap[@]}" "$demo_bin" "$@"; }
cli() { "${wrap[@]}" "$cli_bin" "$@"; }
tool() {
    local name=$1
    shift
    "${wrap[@]}" "$bin/tests/$name" "$@"
}

# start_collector NAME [PLAN]: sets COL_PID, COL_PORT; log $tmp/NAME.jsonl.
start_collector() {
    local name=$1 plan=${2:-}
    local args=(--port 0 --log "$tmp/$name.jsonl" --ready-file "$tmp/$name.port")
    [ -n "$plan" ] && args+=(--plan "$plan")
    rm -f "$tmp/$name.port"
    node "$coll/collector.js" "${args[@]}" >"$tmp/$name.out" 2>&1 &
    COL_PID=$!
    bg_pids+=("$COL_PID")
    local deadline=$((SECONDS + 15))
    while [ ! -s "$tmp/$name.port" ]; do
        kill -0 "$COL_PID" 2>/dev/null ||
            fail "collector $name did not start: $(cat "$tmp/$name.out")"
        [ $SECONDS -lt $deadline ] || fail "collector $name not ready within 15 s"
        sleep 0.05
    done
    COL_PORT=$(cat "$tmp/$name.port")
}

# stop_collector PID: SIGTERM, wait at most 5 s, then SIGKILL.
stop_collector() {
    local pid=$1 deadline=$((SECONDS + 5))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# Run a command with a bound; fail if it takes longer.
bounded() {
    local limit=$1
    shift
    timeout --signal=KILL "$limit" "$@"
}

export TASKSPAN_DB=$tmp/buffer.db
export OTEL_SERVICE_NAME=conformance-test
# Resource attributes from the environment; OTEL_SERVICE_NAME wins over the
# service.name given here, and values are percent-decoded.
export OTEL_RESOURCE_ATTRIBUTES='deployment.environment=conformance,team=payments%2Fcore,service.name=not-this-one'
db() { sqlite3 -cmd ".timeout 5000" "$TASKSPAN_DB" "$@"; }

start_collector main
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$COL_PORT
endpoint=http://127.0.0.1:$COL_PORT/v1/traces

# 1. The seed's 20 events, export on, flushed.
seed_task="task-abc-123"
set +e
bounded 60 "${wrap[@]}" "$bin/tests/record_seed" "$seed_task" 10000 >"$tmp/seed.out" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || fail "record_seed exited $rc: $(cat "$tmp/seed.out")"
pass
grep -q '^events: 20 (seq 1-20)$' "$tmp/seed.out" || fail "record_seed did not record 20 events: $(cat "$tmp/seed.out")"
pass
grep -q '^flush: success$' "$tmp/seed.out" || fail "record_seed flush: $(cat "$tmp/seed.out")"
pass
grep -q '^stats: enabled=1 delivered=4 rejected=0 .* pending=0 delivered_total=4 rejected_total=0$' "$tmp/seed.out" ||
    fail "record_seed stats: $(grep '^stats' "$tmp/seed.out")"
pass
grep -qx "endpoint: $endpoint" "$tmp/seed.out" || fail "record_seed endpoint: $(grep '^endpoint' "$tmp/seed.out")"
pass

# 2. The demo runner's task; it flushes (5 s at most) before it exits.
demo_task=T-demo-export
set +e
bounded 60 "${wrap[@]}" "$demo_bin" --task "$demo_task" --items 3 --fail-item 2 --item-ms 5 >"$tmp/demo.out" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || fail "demo runner exited $rc: $(cat "$tmp/demo.out")"
grep -qx "exported 4 spans to $endpoint" "$tmp/demo.out" || fail "demo runner output: $(cat "$tmp/demo.out")"
pass

# 2b. A big task: 1000 work items, about 4000 events on main; the default
# event limit (32768) keeps them all (docs/export.md, "Limits").
big_task=T-demo-1000
set +e
bounded 120 "${wrap[@]}" "$demo_bin" --task "$big_task" --items 1000 --item-ms 0 >"$tmp/big.out" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || fail "demo runner (1000 items) exited $rc: $(cat "$tmp/big.out")"
grep -qx "exported 1001 spans to $endpoint" "$tmp/big.out" || fail "demo runner (1000 items) output: $(cat "$tmp/big.out")"
pass

# 3. A crashed incarnation: kill -9 while item 1 works (2 s per item), once
# its lease is taken; then a new runner for the same task.
crash_task=T-crash
"${wrap[@]}" "$demo_bin" --task "$crash_task" --items 3 --fail-item 2 --item-ms 2000 >"$tmp/crash1.out" 2>&1 &
crash_pid=$!
bg_pids+=("$crash_pid")
deadline=$((SECONDS + 30))
until [ "$(db "SELECT count(*) FROM task_events WHERE task_id='$crash_task' AND event_type='lease_acquired'" 2>/dev/null || echo 0)" -ge 1 ]; do
    kill -0 "$crash_pid" 2>/dev/null || fail "the first $crash_task runner ended early: $(cat "$tmp/crash1.out")"
    [ $SECONDS -lt $deadline ] || fail "the first $crash_task runner recorded no lease_acquired within 30 s"
    sleep 0.05
done
sleep 0.3
kill -KILL "$crash_pid" 2>/dev/null || fail "the first $crash_task runner was already gone"
set +e
wait "$crash_pid" 2>/dev/null
rc=$?
forget "$crash_pid"
set -e
[ $rc -eq 137 ] || fail "the killed runner exited $rc, not by SIGKILL"
pass
n=$(db "SELECT count(*) FROM task_events WHERE task_id='$crash_task' AND event_type IN ('runner_exit','work_item_done','work_item_failed')")
[ "$n" -eq 0 ] || fail "the killed runner got as far as a closing event ($n): kill it earlier"
n=$(db "SELECT export_closed FROM tasks WHERE task_id='$crash_task'")
[ "$n" -eq 0 ] || fail "$n spans of the killed runner were found closed while all were open (only closed spans are exported)"
pass
set +e
bounded 60 "${wrap[@]}" "$demo_bin" --task "$crash_task" --items 3 --fail-item 2 --item-ms 5 >"$tmp/crash2.out" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || fail "the resumed $crash_task runner exited $rc: $(cat "$tmp/crash2.out")"
# Its own 5 spans (main, the recovery sweep, work_wi_001 again after the
# sweep requeued it, work_wi_002, work_wi_003) plus the killed
# incarnation's main and work_wi_001.
grep -qx "exported 7 spans to $endpoint" "$tmp/crash2.out" || fail "resumed runner output: $(cat "$tmp/crash2.out")"
pass
[ "$(db "SELECT count(DISTINCT incarnation) FROM task_events WHERE task_id='$crash_task'")" -eq 2 ] ||
    fail "$crash_task should have 2 incarnations"
pass

# Nothing is left: `taskspan export --once` has nothing to do (exit 0).
set +e
bounded 30 "${wrap[@]}" "$cli_bin" export --once --timeout 5000 >"$tmp/export.out" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || fail "taskspan export --once after full delivery exited $rc: $(cat "$tmp/export.out")"
grep -q ' 0 rejected, 0 pending' "$tmp/export.out" || fail "taskspan export output: $(cat "$tmp/export.out")"
pass
stop_collector "$COL_PID"

# The buffer's view, for conformance.js.
json_rows() { # SQL -> a JSON array ([] when no row)
    local out
    out=$(db -json "$1")
    [ -n "$out" ] || out='[]'
    printf '%s' "$out"
}
case_json() { # KIND TASK [ITEMS FAIL]
    local kind=$1 task=$2 trace
    trace=$(tool trace_id "$task") || fail "trace_id $task failed"
    printf '{"kind":"%s","task":"%s","traceId":"%s","items":%s,"failItem":%s,"events":' \
        "$kind" "$task" "$trace" "${3:-0}" "${4:-0}"
    json_rows "SELECT seq, event_type, actor, span_id AS span_key, parent_span_id AS parent_key, phase, payload, CAST(ts_ns AS TEXT) AS ts, incarnation, resource_id FROM task_events WHERE task_id='$task' ORDER BY seq"
    printf ',"exportProgress":'
    json_rows "SELECT export_done AS done, export_closed AS closed, export_live AS live, (SELECT count(*) FROM export_spans WHERE task_id='$task') AS rows FROM tasks WHERE task_id='$task'"
    printf '}'
}
version=$(cli --version | sed -n 's/^taskspan //p')
[ -n "$version" ] || fail "taskspan --version printed no version"
{
    printf '{"serviceName":"%s","sdkVersion":"%s","hostName":"%s",' \
        "$OTEL_SERVICE_NAME" "$version" "$(uname -n)"
    printf '"resourceAttributes":{"deployment.environment":"conformance","team":"payments/core"},"resources":'
    json_rows "SELECT id, attrs FROM resources ORDER BY id"
    printf ',"cases":['
    case_json seed "$seed_task"
    printf ','
    case_json demo "$demo_task" 3 2
    printf ','
    case_json demo "$big_task" 1000 0
    printf ','
    case_json crash "$crash_task" 3 2
    printf ']}\n'
} >"$tmp/expectations.json"

node "$coll/check.js" assert-conformance "$tmp/main.jsonl" >"$tmp/assert.out" 2>&1 ||
    fail "check.js assert-conformance: $(cat "$tmp/assert.out")"
pass
set +e
node "$coll/conformance.js" "$tmp/main.jsonl" "$tmp/expectations.json" >"$tmp/conformance.out" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ]; then
    cat "$tmp/conformance.out" >&2
    fail "conformance.js found problems (above)"
fi
n=$(sed -n 's/^conformance: \([0-9][0-9]*\) checks passed, 0 failed$/\1/p' "$tmp/conformance.out")
[ -n "$n" ] || fail "conformance.js output: $(cat "$tmp/conformance.out")"
checks=$((checks + n))

# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "export_conformance: $checks checks passed ($(($(date +%s) - started)) s)"
