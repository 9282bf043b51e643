#!/usr/bin/env bash
# seed_with_emit.sh -- a shell runner records the seed's 20-event "Span
# Hierarchy Example" (shared/seed/runner-events-report.md) with nothing but
# `taskspan emit`, giving each event the span, parent, actor, phase and
# payload that the typed helpers give it (docs/span-model.md, the mapping
# table). `taskspan tree` must draw the seed's tree, and the same 20 events
# recorded through the C API (tests/tools/record_seed.c) must give the same
# rows and the same tree.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/seedemit.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TASKSPAN_DB=$tmp/buffer.db
unset TRACEPARENT
fail() { echo "FAIL: $*" >&2; exit 1; }

# TASKSPAN_WRAP (e.g. valgrind) runs the programs under a checker.
cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }
q() { sqlite3 "$TASKSPAN_DB" "$@"; }

# 1. The C API's recording. record_seed forces export on and flushes: give
# it a port where nobody listens and a short flush, whose timeout (exit 3)
# is expected; the events are committed before the flush either way.
set +e
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1 \
  ${TASKSPAN_WRAP:-} "$bin/tests/record_seed" S-capi 200 >"$tmp/capi" 2>&1
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "record_seed exited $rc: $(cat "$tmp/capi")"
grep -q '^events: 20 (seq 1-20)$' "$tmp/capi" || fail "record_seed: $(cat "$tmp/capi")"
# Its runner_pid and runner_version, so the payloads can match byte for byte.
pid=$(sed -n 's/^pid: \([0-9]*\)$/\1/p' "$tmp/capi")
version=$(cli --version | sed -n 's/^taskspan //p')
[ -n "$pid" ] && [ -n "$version" ] || fail "no pid or version: $(cat "$tmp/capi")"

# 2. The shell runner: one `taskspan emit` per event, as the placements
# table of src/lib/events.c puts it. Each prints its seq.
task=S-shell
seqs=""
e() {
  local seq
  seq=$(cli emit --task "$task" "$@") || fail "taskspan emit $* exited $?"
  seqs="$seqs $seq"
}
# on_main ACTOR TYPE [--phase P] FIELD...: an event on main, no parent.
on_main() { local actor=$1 type=$2; shift 2; e --actor "$actor" --type "$type" "$@"; }
# on_work ACTOR WORK_ITEM TYPE FIELD...: on work_<id> under main, phase
# executing, with work_item_id as the first payload field.
on_work() {
  local actor=$1 wi=$2 type=$3; shift 3
  e --span "work_$wi" --parent main --actor "$actor" --phase executing \
    --type "$type" work_item_id="$wi" "$@"
}
# on_sweep TYPE FIELD...: on recovery_sweep, no parent, phase recovery.
on_sweep() { local type=$1; shift; e --span recovery_sweep --actor recovery_sweep --phase recovery --type "$type" "$@"; }

on_main runner runner_spawn runner_pid:="$pid" runner_version="$version" \
  explanation="runner started for the task"
on_main runner phase_enter --phase planning explanation="generating the plan"
on_main runner phase_exit --phase planning explanation="plan ready"
on_main runner phase_enter --phase executing explanation="executing work items"
on_main runner work_item_dispatched --phase executing work_item_id=wi_001 \
  title="Implement the parser" index:=1 explanation="dispatched to a worker"
on_work worker wi_001 work_item_start work_type=code explanation="worker picked it up"
on_work lease_manager wi_001 lease_acquired lease_holder=worker-1 \
  lease_duration_seconds:=300 explanation="lease for 5 minutes"
on_work worker wi_001 work_item_done title="Implement the parser" \
  files_changed:='["src/parser.c","tests/test_parser.c"]' explanation="parser done"
on_main runner work_item_dispatched --phase executing work_item_id=wi_002 \
  title="Write parser tests" index:=2 explanation="dispatched to a worker"
on_work worker wi_002 work_item_start work_type=test explanation="worker picked it up"
on_work lease_manager wi_002 lease_acquired lease_holder=worker-2 \
  lease_duration_seconds:=300 explanation="lease for 5 minutes"
on_work worker wi_002 work_item_failed title="Write parser tests" \
  error="compile error in test_parser.c" explanation="the tests do not compile"
on_main runner phase_exit --phase executing explanation="work items finished"
on_main runner phase_enter --phase verifying explanation="running the DONE gates"
on_main gate_runner gate_start --phase verifying gate_name=doctor \
  timeout_seconds:=600 explanation="doctor gate started"
on_main gate_runner gate_result --phase verifying gate_name=doctor \
  status=passed passed:=true exit_code:=0 duration_seconds:=12.5 \
  explanation="doctor gate passed"
on_main runner phase_exit --phase verifying explanation="verification finished"
on_main runner runner_exit runner_pid:="$pid" exit_reason=done iterations:=2 \
  explanation="runner finished"
on_sweep recovery_detected expired_count:=1 work_item_ids:='["wi_003"]' \
  explanation="one lease expired"
on_sweep recovery_requeued work_item_id=wi_003 previous_holder=worker-3 \
  retry_count:=1 max_retries:=3 explanation="requeued after lease expiry"
[ "$seqs" = "$(printf ' %s' $(seq 1 20))" ] || fail "emit printed seqs:$seqs"

# 3. The seed's tree: 4 spans, main (12 events), work_wi_001 (3),
# work_wi_002 (3, ERROR), recovery_sweep (2), every event in seq order.
# Durations vary from run to run: they become "D".
normalize() {
  sed -e 's/^Task: [^ ]* (trace [0-9a-f]\{32\})$/Task: TASK (trace TRACE)/' \
      -e 's/, [0-9]*\.[0-9]* s, /, D s, /'
}
cli tree "$task" >"$tmp/tree.shell" || fail "taskspan tree exited $?"
grep -q "^Task: $task (trace $("$bin/tests/trace_id" "$task"))\$" "$tmp/tree.shell" ||
  fail "tree header: $(head -n 1 "$tmp/tree.shell")"
[ "$(grep -c 'Span: ' "$tmp/tree.shell")" -eq 4 ] || fail "want 4 spans: $(cat "$tmp/tree.shell")"
grep -q '^├── Span: main \[incarnation 1\] (12 events, [0-9.]* s, ok)$' "$tmp/tree.shell" || fail "main span"
grep -q '^│   ├── Span: work_wi_001 \[incarnation 1\] (3 events, [0-9.]* s, ok)$' "$tmp/tree.shell" || fail "work_wi_001 span"
grep -q '^│   ├── Span: work_wi_002 \[incarnation 1\] (3 events, [0-9.]* s, ERROR: compile error in test_parser.c)$' "$tmp/tree.shell" ||
  fail "work_wi_002 span"
grep -q '^└── Span: recovery_sweep \[incarnation 1\] (2 events, [0-9.]* s, ok)$' "$tmp/tree.shell" || fail "recovery_sweep span"
[ "$(sed -n 's/.*Event: [a-z_]* (seq=\([0-9]*\).*/\1/p' "$tmp/tree.shell" | tr '\n' ' ')" = "$(seq 1 20 | tr '\n' ' ')" ] ||
  fail "event lines not in seq order: $(cat "$tmp/tree.shell")"
normalize <"$tmp/tree.shell" >"$tmp/tree.shell.n"
cat >"$tmp/tree.want" <<'EOF'
Task: TASK (trace TRACE)
├── Span: main [incarnation 1] (12 events, D s, ok)
│   ├── Event: runner_spawn (seq=1)
│   ├── Event: phase_enter (seq=2, phase=planning)
│   ├── Event: phase_exit (seq=3, phase=planning)
│   ├── Event: phase_enter (seq=4, phase=executing)
│   ├── Event: work_item_dispatched (seq=5, phase=executing, work_item_id=wi_001)
│   ├── Span: work_wi_001 [incarnation 1] (3 events, D s, ok)
│   │   ├── Event: work_item_start (seq=6, phase=executing, work_item_id=wi_001)
│   │   ├── Event: lease_acquired (seq=7, phase=executing, work_item_id=wi_001)
│   │   └── Event: work_item_done (seq=8, phase=executing, work_item_id=wi_001)
│   ├── Event: work_item_dispatched (seq=9, phase=executing, work_item_id=wi_002)
│   ├── Span: work_wi_002 [incarnation 1] (3 events, D s, ERROR: compile error in test_parser.c)
│   │   ├── Event: work_item_start (seq=10, phase=executing, work_item_id=wi_002)
│   │   ├── Event: lease_acquired (seq=11, phase=executing, work_item_id=wi_002)
│   │   └── Event: work_item_failed (seq=12, phase=executing, work_item_id=wi_002, error=compile error in test_parser.c)
│   ├── Event: phase_exit (seq=13, phase=executing)
│   ├── Event: phase_enter (seq=14, phase=verifying)
│   ├── Event: gate_start (seq=15, phase=verifying, gate_name=doctor)
│   ├── Event: gate_result (seq=16, phase=verifying, gate_name=doctor, passed=true)
│   ├── Event: phase_exit (seq=17, phase=verifying)
│   └── Event: runner_exit (seq=18, exit_reason=done)
└── Span: recovery_sweep [incarnation 1] (2 events, D s, ok)
    ├── Event: recovery_detected (seq=19, phase=recovery, expired_count=1)
    └── Event: recovery_requeued (seq=20, phase=recovery, work_item_id=wi_003, retry_count=1)
EOF
diff -u "$tmp/tree.want" "$tmp/tree.shell.n" >&2 || fail "the shell runner's tree is not the seed's"

# 4. Shell and C API agree: the same rows (span, parent, actor, phase,
# payload with its types and key order, incarnation) and the same tree.
rows() {
  q "SELECT seq, event_type, span_id, ifnull(parent_span_id, '-'),
     ifnull(actor, '-'), ifnull(phase, '-'), payload, incarnation
     FROM task_events WHERE task_id='$1' ORDER BY seq"
}
rows S-capi >"$tmp/rows.capi"
rows "$task" >"$tmp/rows.shell"
[ "$(wc -l <"$tmp/rows.capi")" -eq 20 ] || fail "record_seed recorded $(wc -l <"$tmp/rows.capi") rows"
diff -u "$tmp/rows.capi" "$tmp/rows.shell" >&2 || fail "emit's rows differ from the typed helpers'"
cli tree S-capi | normalize >"$tmp/tree.capi.n"
diff -u "$tmp/tree.capi.n" "$tmp/tree.shell.n" >&2 || fail "emit's tree differs from the typed helpers'"
echo "seed_with_emit: all checks passed"
