#!/usr/bin/env bash
# kill9_exporter.sh -- the two exporter deaths docs/durability.md names.
#
#   window  kill -9 of the exporter between the collector's 2xx and the
#           commit that marks the spans delivered. The test holds the
#           buffer's write lock (a sqlite3 shell inside BEGIN IMMEDIATE)
#           from the moment the request reached the collector, which answers
#           200 after 1.5 s: the exporter gets its 2xx and waits for the
#           lock to record it; then it is killed. The spans stay pending,
#           their task leased by the dead exporter; once the lease runs out
#           (request timeout + 10 s) the next `taskspan export` sends them
#           again: the same spans, byte for byte, and then marks them
#           delivered.
#   down    shutdown while the collector is down (the OpenTelemetry
#           Collector's open bug #15677 loses the queue there): a runner
#           records a whole task with export on while the collector answers
#           503 to everything, and closes; nothing is deleted (every event,
#           every closed span pending); then the collector is stopped, a
#           second `taskspan export` fails against the dead port and again
#           deletes nothing; with a healthy collector on the same port,
#           everything arrives once.
# export_faults.sh covers the neighbours: k (record with the collector's
# port closed, export later), n (close with a request hanging), o (an
# exporter killed while its request hangs, before any answer).
#
# Needs node with the collector's modules and the sqlite3 shell.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
coll=$src/tests/collector
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/kill9_exporter.XXXXXX")
started=$SECONDS

# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=kill9_exporter
# shellcheck source=lib/background.bash
source "$src/tests/integration/lib/background.bash"
scenario=setup
fail() {
    echo "FAIL: kill9_exporter: scenario $scenario: $*" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node is not installed (the test collector needs Node 18+)"
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 (the CLI) is not installed"
[ -d "$coll/node_modules/protobufjs" ] ||
    fail "the collector's node modules are missing: npm ci --prefix tests/collector"
while IFS= read -r v; do
    unset "$v"
done < <(env | sed -n 's/^\(OTEL_[A-Za-z0-9_]*\)=.*/\1/p')
unset TRACEPARENT TASKSPAN_TEST_EXPORT_MODE TASKSPAN_TEST_CLOSE_MS
read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
cli=$bin/src/cli/taskspan

db() { sqlite3 -cmd ".timeout 5000" "$TASKSPAN_DB" "$@"; }
# state_count N: the buffer's spans in state N (0 pending, 1 delivered, 2
# rejected), derived from the tasks' export progress (tools/span_states).
state_count() { "$bin/tests/span_states" | grep -c "\"state\":$1," || true; }
now_ms() { date +%s%3N; }

# start_collector DIR [PORT] [PLAN]: sets COL_PID, COL_PORT and the endpoint.
start_collector() {
    local dir=$1 port=${2:-0} plan=${3:-}
    local args=(--port "$port" --log "$dir/requests.jsonl" --ready-file "$dir/port")
    if [ -n "$plan" ]; then
        printf '%s\n' "$plan" >"$dir/plan.json"
        args+=(--plan "$dir/plan.json")
    fi
    rm -f "$dir/port"
    node "$coll/collector.js" "${args[@]}" >"$dir/collector.out" 2>&1 &
    COL_PID=$!
    bg_pids+=("$COL_PID")
    local deadline=$((SECONDS + 15))
    while [ ! -s "$dir/port" ]; do
        kill -0 "$COL_PID" 2>/dev/null || fail "collector did not start: $(cat "$dir/collector.out")"
        [ $SECONDS -lt $deadline ] || fail "collector not ready within 15 s"
        sleep 0.05
    done
    COL_PORT=$(cat "$dir/port")
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$COL_PORT
}

stop_collector() {
    local deadline=$((SECONDS + 5))
    kill -TERM "$COL_PID" 2>/dev/null || true
    while kill -0 "$COL_PID" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -9 "$COL_PID" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$COL_PID" 2>/dev/null || true
    forget "$COL_PID"
}

# js EXPR...: evaluate a JavaScript expression over the collector's log L
# (check.js loaded as C); prints its value.
js() {
    L=$dir/requests.jsonl COLLECTOR_DIR=$coll node -e "
const C = require(process.env.COLLECTOR_DIR + '/check.js');
const L = C.readLog(process.env.L);
const keys = (r) => C.spansOf([r]).map((s) => s.span.traceId + '/' + s.span.spanId);
console.log((() => { $1 })());"
}

# export_once OUT ARGS...: `taskspan export --once`, bounded; sets RC.
export_once() {
    local out=$1
    shift
    set +e
    timeout --signal=KILL 90 "${wrap[@]}" "$cli" export --once "$@" >"$out" 2>&1
    RC=$?
    set -e
}

# ---------------------------------------------------------------------------
# window: killed between the 2xx and the commit that records it.

# The wait channel of pid's thread that sleeps in a nanosleep (SQLite's busy
# handler), else of its first thread: the export may run in any thread of
# the process (`taskspan export` flushes in a thread of its own). "0" where
# the kernel hides wait channels.
sleeping_wchan() {
    local f w first=
    for f in /proc/"$1"/task/*/wchan; do
        w=$(cat "$f" 2>/dev/null) || continue
        [ -n "$first" ] || first=$w
        if [ "${w%nanosleep}" != "$w" ]; then
            echo "$w"
            return
        fi
    done
    echo "${first:-0}"
}

s_window() {
    local xp lk deadline t_answer claimed owner gap until_ms wchan
    scenario=window
    dir=$tmp/window
    mkdir -p "$dir"
    export TASKSPAN_DB=$dir/buffer.db
    export OTEL_SERVICE_NAME=kill9-exporter
    # Three closed spans, recorded with export off.
    TASKSPAN_TEST_EXPORT_MODE=off "${wrap[@]}" "$bin/tests/record_spans" 1 2 >"$dir/record.out" 2>&1 ||
        fail "record_spans: $(cat "$dir/record.out")"
    start_collector "$dir" 0 '{"steps": [{"status": 200, "delay": 1500}], "default": {"status": 200}}'
    export OTEL_EXPORTER_OTLP_TIMEOUT=3000
    OTEL_EXPORTER_OTLP_HEADERS="x-exporter=victim" "${wrap[@]}" "$cli" export --once --timeout 30000 \
        >"$dir/victim.out" 2>&1 &
    xp=$!
    bg_pids+=("$xp")
    deadline=$((SECONDS + 30))
    until [ -s "$dir/requests.jsonl" ]; do
        kill -0 "$xp" 2>/dev/null || fail "the exporter ended before sending: $(cat "$dir/victim.out")"
        [ $SECONDS -lt $deadline ] || fail "the exporter sent nothing within 30 s"
        sleep 0.01
    done
    t_answer=$(js 'return Date.parse(L[0].time) + 1500')
    # The request is at the collector, the answer 1.5 s away: take the
    # write lock now, so that the exporter cannot record the delivery.
    # shellcheck disable=SC2016 # $i is the lock holder's shell variable
    printf 'BEGIN IMMEDIATE;\n.system touch %s/locked; i=0; while [ ! -e %s/release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\nCOMMIT;\n' \
        "$dir" "$dir" | sqlite3 -cmd ".timeout 5000" "$TASKSPAN_DB" >"$dir/lock.out" 2>&1 &
    lk=$!
    bg_pids+=("$lk")
    deadline=$((SECONDS + 10))
    until [ -e "$dir/locked" ]; do
        [ $SECONDS -lt $deadline ] || fail "could not take the buffer's write lock: $(cat "$dir/lock.out")"
        sleep 0.01
    done
    [ "$(now_ms)" -lt "$t_answer" ] || fail "the lock came after the collector's answer (machine too slow?)"
    # Wait until the 2xx went out and the exporter, having read it, sleeps
    # in SQLite's busy handler (its busy timeout is 5 s): its kernel wait
    # channel turns from poll to nanosleep. Where the kernel hides wait
    # channels ("0"), a second after the answer has to do.
    while [ "$(now_ms)" -lt $((t_answer + 1000)) ]; do sleep 0.05; done
    wchan=$(sleeping_wchan "$xp")
    while [ "$wchan" != 0 ] && [ "${wchan%nanosleep}" = "$wchan" ] &&
        [ "$(now_ms)" -lt $((t_answer + 3500)) ]; do
        sleep 0.05
        wchan=$(sleeping_wchan "$xp")
    done
    [ "$wchan" = 0 ] || [ "${wchan%nanosleep}" != "$wchan" ] ||
        fail "the exporter never waited for the lock (wait channel $wchan)"
    [ "$(js 'return L[0].response.status')" = 200 ] || fail "the collector did not answer 200: $(js 'return JSON.stringify(L[0].response)')"
    kill -0 "$xp" 2>/dev/null || fail "the exporter ended: $(cat "$dir/victim.out")"
    echo "    exporter waits in $wchan with the 2xx in hand"
    kill -KILL "$xp"
    { wait "$xp"; } 2>/dev/null || true
    forget "$xp"
    touch "$dir/release"
    wait "$lk" || fail "the lock holder failed: $(cat "$dir/lock.out")"
    forget "$lk"
    # The delivery was never recorded: pending, their task still leased
    # by the dead.
    claimed=$(db "SELECT sum(export_closed - export_done) FROM tasks WHERE export_owner IS NOT NULL")
    [ "$claimed" = 3 ] && [ "$(state_count 0)" -eq 3 ] ||
        fail "want the 3 spans pending and leased by the killed exporter: $(db 'SELECT task_id, export_done, export_closed, export_owner FROM tasks')"
    owner=$(db "SELECT DISTINCT export_owner FROM tasks WHERE export_owner IS NOT NULL")
    until_ms=$(db "SELECT max(export_until) / 1000000 FROM tasks WHERE export_owner IS NOT NULL")
    [ "$(js 'return L.length')" -eq 1 ] || fail "more than one request before the kill"
    export_once "$dir/next.out" --timeout 30000
    [ $RC -eq 0 ] || fail "the next taskspan export exited $RC: $(cat "$dir/next.out")"
    grep -q 'taskspan export: 3 spans delivered, 0 rejected, 0 pending' "$dir/next.out" ||
        fail "next export: $(cat "$dir/next.out")"
    stop_collector
    [ "$(js 'return L.length')" -eq 2 ] || fail "want 2 requests, got $(js 'return L.length')"
    [ "$(js 'return C.accepted(L[0]) && C.accepted(L[1])')" = true ] || fail "both requests should be answered 2xx"
    [ "$(js 'return JSON.stringify(keys(L[0])) === JSON.stringify(keys(L[1]))')" = true ] ||
        fail "the re-send carries other spans: $(js 'return keys(L[0]) + " vs " + keys(L[1])')"
    [ "$(js 'return JSON.stringify(L[0].spanSha256) === JSON.stringify(L[1].spanSha256) && L[0].spanSha256.length === 3')" = true ] ||
        fail "the re-sent spans are not byte-identical: $(js 'return L[0].spanSha256 + " vs " + L[1].spanSha256')"
    [ "$(state_count 1)" -eq 3 ] ||
        fail "the re-sent spans are not marked delivered: $(db 'SELECT task_id, export_done, export_closed FROM tasks')"
    # Not before the dead exporter's lease ran out (its request timeout,
    # 3 s, + 10 s from when it leased; the log has ms precision).
    gap=$(js 'return Date.parse(L[1].time) - Date.parse(L[0].time)')
    [ "$(js 'return Date.parse(L[1].time)')" -ge $((until_ms - 2)) ] ||
        fail "re-sent $(($(js 'return Date.parse(L[1].time)') - until_ms)) ms before the dead exporter's lease ran out"
    echo "    lease of $owner ran out; re-sent after $gap ms: 3 spans, byte-identical$([ "$(js 'return L[0].sha256 === L[1].sha256')" = true ] && echo ', the whole request too')"
    echo "ok - window ($((SECONDS - t_scenario)) s)"
}

# ---------------------------------------------------------------------------
# down: shutdown with the collector failing, then gone: nothing deleted.
s_down() {
    local events spans port
    scenario=down
    dir=$tmp/down
    mkdir -p "$dir/up"
    export TASKSPAN_DB=$dir/buffer.db
    export OTEL_SERVICE_NAME=kill9-exporter
    export OTEL_BSP_SCHEDULE_DELAY=50 OTEL_EXPORTER_OTLP_TIMEOUT=1000
    start_collector "$dir" 0 '{"steps": [], "default": {"status": 503, "message": "down for maintenance"}}'
    port=$COL_PORT
    # A whole task, export on; close (5 s at most) meets only 503s.
    "${wrap[@]}" "$bin/tests/kill9_runner" --task T-down --items 3 --item-ms 5 \
        >"$dir/witness" 2>"$dir/runner.err" || fail "kill9_runner: $(cat "$dir/runner.err")"
    [ "$(js 'return L.length')" -ge 1 ] || fail "the runner's exporter never tried the collector"
    [ "$(js 'return L.every((r) => r.response.status === 503)')" = true ] || fail "a request was not answered 503"
    events=$(wc -l <"$dir/witness")
    "${wrap[@]}" "$cli" dump --format otlp-json -o "$dir/dump.json" T-down || fail "taskspan dump failed"
    spans=$(node -e "const r = require('$dir/dump.json'); let n = 0; for (const rs of r.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length; console.log(n)")
    check_kept() { # WHEN: every event and every span still there, pending
        [ "$(db "SELECT count(*) FROM task_events WHERE task_id = 'T-down'")" -eq "$events" ] ||
            fail "$1: events were deleted: $(db "SELECT count(*) FROM task_events") of $events left"
        [ "$(state_count 0)" -eq "$spans" ] ||
            fail "$1: want all $spans spans pending: $(db 'SELECT task_id, export_done, export_closed FROM tasks')"
    }
    check_kept "after the runner closed during 503s"
    [ "$(db "SELECT count(*) FROM tasks WHERE export_until > 0")" -ge 1 ] ||
        fail "no retry time was kept after the 503s: the 503 path was not exercised"
    stop_collector
    export_once "$dir/export1.out" --timeout 1500
    [ $RC -eq 1 ] || fail "taskspan export with the collector gone exited $RC: $(cat "$dir/export1.out")"
    check_kept "after an export against the dead port"
    start_collector "$dir/up" "$port"
    # The 503s set a retry time in the buffer; export waits it out.
    export_once "$dir/export2.out" --timeout 60000
    [ $RC -eq 0 ] || fail "taskspan export with the collector up exited $RC: $(cat "$dir/export2.out")"
    grep -q "taskspan export: $spans spans delivered, 0 rejected, 0 pending" "$dir/export2.out" ||
        fail "export: $(cat "$dir/export2.out")"
    stop_collector
    dir=$dir/up
    [ "$(js 'const n = C.summarize(L); return n.length + "/" + n.every((r) => r.count === 1)')" = "$spans/true" ] ||
        fail "want each of the $spans spans once: $(js 'return C.summarize(L).map((r) => r.name + "x" + r.count).join(" ")')"
    echo "    $events events and $spans spans kept through close and a failed export, then delivered once each"
    echo "ok - down ($((SECONDS - t_scenario)) s)"
}

t_scenario=$SECONDS
s_window
t_scenario=$SECONDS
s_down
# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "kill9_exporter: all checks passed ($((SECONDS - started)) s)"
