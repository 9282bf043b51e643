#!/usr/bin/env bash
# cli_inspect.sh -- `taskspan tasks`, `events`, `status`, `gc`, and the
# progress of `taskspan export`, run as a user runs them, on real buffers.
#
#   - the seed's 20 events (tools/record_seed, delivered to the test
#     collector) come back from `events` in seq order, as a table and as
#     JSON lines that node parses;
#   - every task state is provoked for real: finished and failed (the demo
#     runner), running (a runner_spawn naming a live process), crashed (one
#     naming a `sleep` killed with SIGKILL, and the demo runner itself killed
#     with SIGKILL in the middle of a work item), pruned (by gc);
#   - `status` agrees with what was recorded and delivered;
#   - `gc --older-than 0s` deletes the delivered tasks and keeps the pending,
#     running, crashed and newest ones; a pruned task says so;
#   - `export --once` prints progress lines past 1000 spans (stderr is not a
#     terminal here);
#   - bad arguments exit 2 with one line; a missing buffer and a file of
#     garbage exit 1 with one clear line and are left as they were.
#
# Needs node and the collector's modules (npm ci --prefix tests/collector).
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
coll=$src/tests/collector
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/cli_inspect.XXXXXX")

# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=cli_inspect
# shellcheck source=lib/background.bash
source "$src/tests/integration/lib/background.bash"

checks=0
fail() {
    echo "FAIL: cli_inspect: $*" >&2
    exit 1
}
pass() { checks=$((checks + 1)); }

while IFS= read -r v; do
    unset "$v"
done < <(env | sed -n 's/^\(OTEL_[A-Za-z0-9_]*\)=.*/\1/p')
unset TRACEPARENT TASKSPAN_TEST_EXPORT_MODE TASKSPAN_TEST_CLOSE_MS

command -v node >/dev/null 2>&1 || fail "node is not installed: run 'npm ci --prefix tests/collector' with Node 18+"
if [ ! -d "$coll/node_modules/protobufjs" ]; then
    fail "the collector's node modules are missing: run npm ci --prefix tests/collector (in $src)"
fi

read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
demo_bin=$bin/examples/taskspan-demo-runner
cli_bin=$bin/src/cli/taskspan
for f in "$demo_bin" "$cli_bin" "$bin/tests/record_seed" "$bin/tests/record_spans"; do
    [ -x "$f" ] || fail "missing program $f (build first)"
done
# cli runs the command under test, under the checker when there is one
# (TASKSPAN_WRAP, e.g. valgrind: about 2 s a run). The commands that only
# build fixtures or poll (fx, demo, record_seed) run without it: other
# tests check them under valgrind.
cli() { "${wrap[@]}" "$cli_bin" "$@"; }
fx() { "$cli_bin" "$@"; }
demo() { OTEL_SDK_DISABLED=true "$demo_bin" "$@"; }

# expect_fail STATUS NAME ARGS...: the command exits STATUS with exactly one
# line on stderr and nothing on stdout; the line is left in $tmp/err.
expect_fail() {
    local want=$1 name=$2 st=0
    shift 2
    cli "$@" >"$tmp/out" 2>"$tmp/err" || st=$?
    [ "$st" -eq "$want" ] || fail "$name: exited $st, want $want: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$name: not one line on stderr: $(cat "$tmp/err")"
    [ ! -s "$tmp/out" ] || fail "$name: wrote to stdout: $(cat "$tmp/out")"
}

# state_of TASK: the STATE column of `taskspan tasks` for TASK.
state_of() {
    fx tasks | awk -v t="$1" 'NR > 1 && $1 == t { print $2 }'
}

# Start the collector (every request gets 200).
node "$coll/collector.js" --port 0 --log "$tmp/col.jsonl" \
    --ready-file "$tmp/col.port" >"$tmp/col.out" 2>&1 &
col_pid=$!
bg_pids+=("$col_pid")
deadline=$((SECONDS + 15))
while [ ! -s "$tmp/col.port" ]; do
    kill -0 "$col_pid" 2>/dev/null || fail "the collector did not start: $(cat "$tmp/col.out")"
    [ $SECONDS -lt $deadline ] || fail "the collector was not ready within 15 s"
    sleep 0.05
done
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$(cat "$tmp/col.port")
endpoint=$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces
export TASKSPAN_DB=$tmp/buffer.db

# ---- the seed, delivered ----
"$bin/tests/record_seed" task-abc-123 20000 >"$tmp/seed.out" 2>&1 ||
    fail "record_seed failed: $(cat "$tmp/seed.out")"
grep -q 'delivered_total=4 ' "$tmp/seed.out" || fail "the seed was not delivered: $(cat "$tmp/seed.out")"

cli events --help >"$tmp/help" || fail "events --help exited $?"
grep -q 'usage: taskspan events' "$tmp/help" || fail "events --help: $(cat "$tmp/help")"
for c in tasks status gc; do
    fx "$c" --help >"$tmp/help" || fail "$c --help exited $?"
    grep -q "usage: taskspan $c" "$tmp/help" || fail "$c --help: $(cat "$tmp/help")"
done
fx --help | grep -q '^  gc ' || fail "taskspan --help does not list gc"
pass

cli events task-abc-123 >"$tmp/ev.txt" 2>"$tmp/err" || fail "events exited $?: $(cat "$tmp/err")"
head -n 1 "$tmp/ev.txt" | grep -q '^  SEQ  TIME .*EVENT_TYPE .*ACTOR .*SPAN_ID .*PARENT_SPAN_ID .*PHASE .*PAYLOAD$' ||
    fail "events: unexpected header: $(head -n 1 "$tmp/ev.txt")"
[ "$(tail -n +2 "$tmp/ev.txt" | wc -l)" -eq 20 ] || fail "events: not 20 rows: $(cat "$tmp/ev.txt")"
[ "$(tail -n +2 "$tmp/ev.txt" | awk '{ print $1 }' | tr '\n' ' ')" = "$(seq 1 20 | tr '\n' ' ')" ] ||
    fail "events: seq is not 1..20 in order: $(cat "$tmp/ev.txt")"
want_types="runner_spawn phase_enter phase_exit phase_enter work_item_dispatched work_item_start lease_acquired work_item_done work_item_dispatched work_item_start lease_acquired work_item_failed phase_exit phase_enter gate_start gate_result phase_exit runner_exit recovery_detected recovery_requeued "
[ "$(tail -n +2 "$tmp/ev.txt" | awk '{ print $4 }' | tr '\n' ' ')" = "$want_types" ] ||
    fail "events: event types differ from the seed: $(cat "$tmp/ev.txt")"
awk '$1 == 6' "$tmp/ev.txt" | grep -q 'work_item_start  *worker  *work_wi_001  *main  *executing  *{"work_item_id":"wi_001"' ||
    fail "events: row 6 does not show actor, span, parent, phase and payload: $(awk '$1 == 6' "$tmp/ev.txt")"
awk '$1 == 1' "$tmp/ev.txt" | grep -q 'runner_spawn  *runner  *main  *-  *-  *{"runner_pid":' ||
    fail "events: row 1 does not show '-' for what was not recorded: $(awk '$1 == 1' "$tmp/ev.txt")"
pass

cli events --json task-abc-123 >"$tmp/ev.jsonl" || fail "events --json exited $?"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
if (lines.length !== 20) throw new Error("not 20 lines: " + lines.length);
lines.forEach((l, i) => {
  const o = JSON.parse(l);
  if (o.seq !== i + 1) throw new Error("line " + (i + 1) + " has seq " + o.seq);
  if (o.task_id !== "task-abc-123") throw new Error("task_id " + o.task_id);
  if (typeof o.payload !== "object" || o.payload === null) throw new Error("payload is not an object: " + l);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(o.time)) throw new Error("time " + o.time);
  if (o.incarnation !== 1) throw new Error("incarnation " + o.incarnation);
});
const f = JSON.parse(lines[11]);
if (f.event_type !== "work_item_failed" || f.span_id !== "work_wi_002" || f.parent_span_id !== "main" ||
    f.payload.error !== "compile error in test_parser.c") throw new Error("seq 12: " + lines[11]);
const s = JSON.parse(lines[0]);
if (s.phase !== null || s.parent_span_id !== null || typeof s.payload.runner_pid !== "number") throw new Error("seq 1: " + lines[0]);
' "$tmp/ev.jsonl" || fail "events --json lines do not parse as the seed's events"
pass

# ---- every state, for real ----
demo --task T-finished --items 2 --item-ms 1 >"$tmp/demo1.out" 2>&1 ||
    fail "demo runner failed: $(cat "$tmp/demo1.out")"
demo --task T-failed --items 2 --fail-item 1 --item-ms 1 >"$tmp/demo2.out" 2>&1 ||
    fail "demo runner failed: $(cat "$tmp/demo2.out")"
sleep 300 &
live_pid=$!
bg_pids+=("$live_pid")
fx emit --task T-running --type runner_spawn --actor runner "runner_pid:=$live_pid" >/dev/null
sleep 300 &
dead_pid=$!
bg_pids+=("$dead_pid")
fx emit --task T-crashed-sleep --type runner_spawn --actor runner "runner_pid:=$dead_pid" >/dev/null
[ "$(state_of T-crashed-sleep)" = running ] || fail "a runner whose process lives is $(state_of T-crashed-sleep), not running"
kill -KILL "$dead_pid"
wait "$dead_pid" 2>/dev/null || true
forget "$dead_pid"
# The demo runner killed with SIGKILL while item 1 works (2 s per item).
# Not through demo(): a function in the background is a subshell, and the
# SIGKILL must reach the runner itself.
OTEL_SDK_DISABLED=true "$demo_bin" --task T-crashed-demo --items 3 \
    --item-ms 2000 >"$tmp/demo3.out" 2>&1 &
demo_pid=$!
bg_pids+=("$demo_pid")
deadline=$((SECONDS + 60))
until fx events T-crashed-demo 2>/dev/null | grep -q ' lease_acquired '; do
    kill -0 "$demo_pid" 2>/dev/null || fail "the demo runner ended early: $(cat "$tmp/demo3.out")"
    [ $SECONDS -lt $deadline ] || fail "the demo runner recorded no lease_acquired within 60 s"
    sleep 0.1
done
[ "$(state_of T-crashed-demo)" = running ] || fail "the working demo runner is $(state_of T-crashed-demo), not running"
kill -KILL "$demo_pid"
st=0
wait "$demo_pid" 2>/dev/null || st=$?
forget "$demo_pid"
[ "$st" -eq 137 ] || fail "the demo runner exited $st, not by SIGKILL"
pass

cli tasks >"$tmp/tasks.txt" || fail "tasks exited $?"
head -n 1 "$tmp/tasks.txt" | grep -q '^TASK  *STATE  *EVENTS  *SEQ  *INC  *FIRST  *LAST  *DELIVERED  *PENDING  *REJECTED$' ||
    fail "tasks: unexpected header: $(head -n 1 "$tmp/tasks.txt")"
for want in task-abc-123:failed T-finished:finished T-failed:failed \
    T-running:running T-crashed-sleep:crashed T-crashed-demo:crashed; do
    t=${want%%:*} s=${want#*:}
    got=$(awk -v t="$t" 'NR > 1 && $1 == t { print $2 }' "$tmp/tasks.txt")
    [ "$got" = "$s" ] || fail "task $t is '$got', want $s: $(cat "$tmp/tasks.txt")"
done
awk '$1 == "task-abc-123" { exit !($3 == 20 && $4 == 20 && $5 == 1 && $8 == 4 && $9 == 0) }' "$tmp/tasks.txt" ||
    fail "tasks: the seed should show 20 events, seq 20, 1 incarnation, 4 delivered: $(grep task-abc-123 "$tmp/tasks.txt")"
pass

cli tasks --json >"$tmp/tasks.jsonl" || fail "tasks --json exited $?"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const by = Object.fromEntries(rows.map(r => [r.task_id, r]));
if (rows.length !== 6) throw new Error(rows.length + " tasks");
if (by["T-crashed-demo"].state !== "crashed" || by["T-crashed-demo"].runner_pid <= 0) throw new Error(JSON.stringify(by["T-crashed-demo"]));
if (by["T-failed"].exit_reason === "done") throw new Error("T-failed exit_reason");
if (by["T-running"].exit_reason !== null) throw new Error("T-running exit_reason");
if (by["task-abc-123"].spans_delivered !== 4) throw new Error("seed delivered");
' "$tmp/tasks.jsonl" || fail "tasks --json: $(cat "$tmp/tasks.jsonl")"
pass

# ---- status ----
# The file's own schema version, read once, with a busy timeout: read in
# the pipeline below, beside the CLI, it could meet the CLI's close (the
# last connection checkpoints and removes the WAL under an exclusive lock)
# and get "database is locked" (CI, once).
schema=$(sqlite3 -cmd '.timeout 10000' "$TASKSPAN_DB" 'PRAGMA user_version')
[ -n "$schema" ] || fail "could not read the schema version"
cli status >"$tmp/status.txt" || fail "status exited $?"
total_events=$(awk 'NR > 1 { n += $3 } END { print n }' "$tmp/tasks.txt")
grep -qx "buffer:          $TASKSPAN_DB" "$tmp/status.txt" || fail "status: path: $(cat "$tmp/status.txt")"
grep -qx "schema version:  $schema" "$tmp/status.txt" || fail "status: schema: $(cat "$tmp/status.txt")"
grep -qx 'tasks:           6' "$tmp/status.txt" || fail "status: tasks: $(cat "$tmp/status.txt")"
grep -qx "events:          $total_events" "$tmp/status.txt" || fail "status: events ($total_events): $(cat "$tmp/status.txt")"
grep -qx 'spans:           4 delivered, 0 pending, 0 rejected' "$tmp/status.txt" || fail "status: spans: $(cat "$tmp/status.txt")"
grep -qx "endpoint:        $endpoint" "$tmp/status.txt" || fail "status: endpoint: $(cat "$tmp/status.txt")"
grep -qx 'oldest pending:  none' "$tmp/status.txt" || fail "status: oldest pending: $(cat "$tmp/status.txt")"
size=$(sed -n 's/^size: *\([0-9]*\) bytes.*/\1/p' "$tmp/status.txt")
[ "${size:-0}" -gt 0 ] || fail "status: size: $(cat "$tmp/status.txt")"
cli status --json | node -e '
const o = JSON.parse(require("fs").readFileSync(0, "utf8"));
if (o.schema_version !== Number(process.argv[1]) || o.tasks !== 6 || o.spans_delivered !== 4 || o.db_bytes <= 0) throw new Error(JSON.stringify(o));
' "$schema" || fail "status --json does not parse or disagrees"
pass

# ---- gc ----
# Deliver what is closed (the demo tasks), then leave one finished task
# pending behind a collector that is down.
fx export --once --timeout 20000 >"$tmp/exp.out" 2>&1 || fail "export failed: $(cat "$tmp/exp.out")"
demo --task T-pending --items 1 --item-ms 1 >"$tmp/demo4.out" 2>&1 ||
    fail "demo runner failed: $(cat "$tmp/demo4.out")"
dead_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();})')
st=0
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$dead_port fx export --once --timeout 500 >"$tmp/exp2.out" 2>&1 || st=$?
[ "$st" -eq 1 ] || fail "export to a dead collector exited $st: $(cat "$tmp/exp2.out")"
pending=$(awk '$1 == "T-pending" { print $9 }' <(fx tasks))
[ "${pending:-0}" -ge 1 ] || fail "T-pending has no pending span: $(fx tasks)"
# The newest event belongs to a task of its own (gc keeps that one).
fx emit --task T-anchor --type note >/dev/null
fx tasks >"$tmp/tasks1.txt"
ev_pending=$(awk '$1 == "T-pending" { print $3 }' "$tmp/tasks1.txt")
ev_finished=$(awk '$1 == "T-finished" { print $3 }' "$tmp/tasks1.txt")
ev_failed=$(awk '$1 == "T-failed" { print $3 }' "$tmp/tasks1.txt")

cli gc --older-than 7d >"$tmp/gc0.out" || fail "gc --older-than 7d exited $?"
grep -q '^taskspan gc: pruned 0 tasks' "$tmp/gc0.out" || fail "gc 7d pruned recent tasks: $(cat "$tmp/gc0.out")"
cli gc --older-than 0s >"$tmp/gc.out" 2>"$tmp/err" || fail "gc exited $?: $(cat "$tmp/err")"
# Pruned: the seed (20 events, 4 spans), T-finished and T-failed (3 spans
# each). Kept: T-pending (pending), T-running, T-anchor (running), the two
# crashed tasks (their spans are open: never delivered).
grep -q "^taskspan gc: pruned 3 tasks older than 0s ($((20 + ev_finished + ev_failed)) events, 10 spans deleted); kept 5 " "$tmp/gc.out" ||
    fail "gc: want 3 pruned (the seed, T-finished, T-failed; 10 spans), 5 kept: $(cat "$tmp/gc.out")"
grep -q '^taskspan gc: buffer [0-9]* -> [0-9]* bytes; [0-9]* bytes free' "$tmp/gc.out" ||
    fail "gc: no sizes: $(cat "$tmp/gc.out")"
cli tasks >"$tmp/tasks2.txt"
for want in task-abc-123:pruned T-finished:pruned T-failed:pruned T-pending:finished \
    T-running:running T-crashed-sleep:crashed T-crashed-demo:crashed T-anchor:running; do
    t=${want%%:*} s=${want#*:}
    got=$(awk -v t="$t" 'NR > 1 && $1 == t { print $2 }' "$tmp/tasks2.txt")
    [ "$got" = "$s" ] || fail "after gc, task $t is '$got', want $s: $(cat "$tmp/tasks2.txt")"
done
awk '$1 == "task-abc-123" { exit !($3 == 0 && $4 == 20) }' "$tmp/tasks2.txt" ||
    fail "the pruned seed should keep seq 20 with 0 events: $(grep task-abc-123 "$tmp/tasks2.txt")"
awk -v n="$ev_pending" '$1 == "T-pending" { exit !($3 == n && $9 >= 1) }' "$tmp/tasks2.txt" ||
    fail "gc touched the pending task: $(grep T-pending "$tmp/tasks2.txt")"
pass
expect_fail 1 "events of a pruned task" events task-abc-123
grep -q "^taskspan events: task 'task-abc-123' was pruned by gc" "$tmp/err" || fail "pruned task: $(cat "$tmp/err")"
# A late event continues the seq.
seq=$(fx emit --task task-abc-123 --type note)
[ "$seq" = 21 ] || fail "a late event of a pruned task got seq $seq, not 21"
pass

# ---- export progress past 1000 spans ----
big_db=$tmp/big.db
# record_spans is a fixture, not what is tested: it runs without the
# checker (3300 emits under valgrind would cost a minute).
TASKSPAN_DB=$big_db TASKSPAN_TEST_EXPORT_MODE=off "$bin/tests/record_spans" 1 1100 big >"$tmp/big.out" ||
    fail "record_spans failed: $(cat "$tmp/big.out")"
TASKSPAN_DB=$big_db OTEL_BSP_MAX_EXPORT_BATCH_SIZE=200 cli export --once --timeout 60000 >"$tmp/bigexp.out" 2>"$tmp/bigexp.err" ||
    fail "export of 1101 spans failed: $(cat "$tmp/bigexp.out" "$tmp/bigexp.err")"
grep -q '^taskspan export: 1101 spans delivered, 0 rejected, 0 pending' "$tmp/bigexp.out" || fail "big export: $(cat "$tmp/bigexp.out")"
grep -qx 'taskspan export: progress 1101/1101 spans' "$tmp/bigexp.err" ||
    fail "big export: no final progress line on stderr: $(cat "$tmp/bigexp.err")"
! grep -q $'\r' "$tmp/bigexp.err" || fail "big export drew a terminal bar into a file"
# On a terminal (script(1) gives the command one), a bar redrawn in place.
# Without the checker: the run above already took this code under it, and
# the bar is only other text.
if command -v script >/dev/null 2>&1; then
    TASKSPAN_DB=$tmp/big2.db TASKSPAN_TEST_EXPORT_MODE=off "$bin/tests/record_spans" 1 1100 big2 >/dev/null ||
        fail "record_spans failed"
    TASKSPAN_DB=$tmp/big2.db OTEL_BSP_MAX_EXPORT_BATCH_SIZE=200 script -qec \
        "'$cli_bin' export --once --timeout 60000 >'$tmp/tty.out'" /dev/null >"$tmp/tty.screen" ||
        fail "export on a terminal failed: $(cat "$tmp/tty.screen")"
    grep -q '^taskspan export: 1101 spans delivered' "$tmp/tty.out" || fail "export on a terminal: $(cat "$tmp/tty.out")"
    grep -q $'\rtaskspan export: \[#\{40\}\] 1101/1101 spans (100%)' "$tmp/tty.screen" ||
        fail "export on a terminal drew no bar: $(od -c "$tmp/tty.screen" | head -20)"
    ! grep -q 'progress' "$tmp/tty.screen" || fail "export on a terminal printed log lines"
fi
# A small export stays quiet.
[ ! -s "$tmp/exp.out" ] || ! grep -q progress "$tmp/exp.out" || fail "a small export printed progress: $(cat "$tmp/exp.out")"
pass

# ---- usage errors: exit 2, one line that says what to do ----
expect_fail 2 "tasks --bogus" tasks --bogus
grep -q "^taskspan tasks: unknown argument '--bogus'; see 'taskspan tasks --help'$" "$tmp/err" || fail "tasks --bogus: $(cat "$tmp/err")"
expect_fail 2 "events without a task" events
grep -q '^taskspan events: which task?' "$tmp/err" || fail "events: $(cat "$tmp/err")"
expect_fail 2 "gc --older-than 7x" gc --older-than 7x
grep -q "^taskspan gc: --older-than '7x' is not a duration; give a whole number and a unit" "$tmp/err" || fail "gc 7x: $(cat "$tmp/err")"
if [ -z "${TASKSPAN_WRAP:-}" ]; then # argument parsing only: once is enough
    expect_fail 2 "events with two tasks" events a b
    expect_fail 2 "status extra" status extra
    expect_fail 2 "gc --older-than -1d" gc --older-than=-1d
    expect_fail 2 "gc --older-than without a value" gc --older-than
    grep -q 'needs a value' "$tmp/err" || fail "gc --older-than: $(cat "$tmp/err")"
    expect_fail 2 "tasks --db without a value" tasks --db
fi
pass

# Under a checker (valgrind) every run costs about a second: two commands
# (one read-only, one writing) stand for the four there.
cmds=(tasks status "events T" gc)
[ -z "${TASKSPAN_WRAP:-}" ] || cmds=("events T" gc)

# ---- a missing buffer: exit 1, nothing created ----
for c in "${cmds[@]}"; do
    read -r -a args <<<"$c"
    expect_fail 1 "$c on a missing buffer" "${args[@]}" --db "$tmp/none/buffer.db"
    grep -q "^taskspan ${args[0]}: no buffer at $tmp/none/buffer.db.*; pass --db PATH or set TASKSPAN_DB$" "$tmp/err" ||
        fail "$c on a missing buffer: $(cat "$tmp/err")"
    [ ! -e "$tmp/none" ] || fail "$c created something"
done
pass

# ---- a file of garbage: exit 1, the file untouched ----
for i in $(seq 1 200); do printf 'this is not a database %d\n' "$i"; done >"$tmp/garbage.db"
cp "$tmp/garbage.db" "$tmp/garbage.orig"
for c in "${cmds[@]}"; do
    read -r -a args <<<"$c"
    expect_fail 1 "$c on garbage" "${args[@]}" --db "$tmp/garbage.db"
    grep -q "^taskspan ${args[0]}: $tmp/garbage.db is not a taskspan buffer" "$tmp/err" ||
        fail "$c on garbage: $(cat "$tmp/err")"
    cmp -s "$tmp/garbage.db" "$tmp/garbage.orig" || fail "$c changed the garbage file"
done
pass

# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "cli_inspect: $checks checks passed"
