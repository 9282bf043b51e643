#!/usr/bin/env bash
# demo_and_tree.sh -- the README's main job, as a test: the real demo runner
# records a task into a real buffer, the seed's own SQL query reads it back
# gap-free, and `taskspan tree` draws the spans the span model built.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/demo.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TASKSPAN_DB=$tmp/buffer.db
unset TRACEPARENT
# Recording only: export has its own tests (export_*.sh).
export OTEL_SDK_DISABLED=true
fail() { echo "FAIL: $*" >&2; exit 1; }

# TASKSPAN_WRAP (e.g. valgrind) runs the programs under a checker.
demo() { ${TASKSPAN_WRAP:-} "$bin/examples/taskspan-demo-runner" "$@"; }
cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }

# 1. The demo records 4 items, the 2nd failing: 5 planning events, 8 per
# finished item, 5 for the failed one, 6 for verifying and exit = 40.
demo --task T-demo --items 4 --fail-item 2 --item-ms 5 >"$tmp/out" ||
  fail "demo runner exited $?"
grep -q "task T-demo: 40 events recorded in $TASKSPAN_DB" "$tmp/out" ||
  fail "demo summary: $(cat "$tmp/out")"

# 2. The seed's query runs unchanged; seq is 1..N with no gap.
sqlite3 "$TASKSPAN_DB" "SELECT event_type, span_id, parent_span_id, payload FROM task_events WHERE task_id='T-demo' ORDER BY seq" >"$tmp/rows"
[ "$(wc -l <"$tmp/rows")" -eq 40 ] || fail "expected 40 rows, got $(wc -l <"$tmp/rows")"
gaps=$(sqlite3 "$TASKSPAN_DB" "SELECT count(*) FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM task_events WHERE task_id='T-demo') WHERE seq != rn")
[ "$gaps" -eq 0 ] || fail "$gaps seq values out of place"
head -n 1 "$tmp/rows" | grep -q '^runner_spawn|main||{"runner_pid":' || fail "first row: $(head -n 1 "$tmp/rows")"
tail -n 1 "$tmp/rows" | grep -q '^runner_exit|main||.*"exit_reason":"done_with_failures"' || fail "last row: $(tail -n 1 "$tmp/rows")"
grep -q '^work_item_start|work_wi_003|main|' "$tmp/rows" || fail "work_item_start of wi_003 not on work_wi_003 under main"
[ "$(sqlite3 "$TASKSPAN_DB" "SELECT count(*) FROM task_events WHERE task_id='T-demo' AND NOT json_valid(payload)")" -eq 0 ] ||
  fail "a payload is not valid JSON"

# 3. The tree: main with 4 work spans, wi_002 in ERROR, all closed.
cli tree T-demo >"$tmp/tree" || fail "taskspan tree exited $?"
grep -q '^Task: T-demo (trace [0-9a-f]\{32\})$' "$tmp/tree" || fail "tree header: $(head -n 1 "$tmp/tree")"
grep -q '^└── Span: main \[incarnation 1\] (24 events, [0-9.]* s, ok)$' "$tmp/tree" || fail "main line missing: $(cat "$tmp/tree")"
[ "$(grep -c '    ├── Span: work_wi_00[1-4]' "$tmp/tree")" -eq 4 ] || fail "expected 4 work spans under main"
grep -q 'Span: work_wi_002 .*ERROR: demo failure requested by --fail-item' "$tmp/tree" || fail "wi_002 not in ERROR"
grep -q ' open)' "$tmp/tree" && fail "a span is still open after runner_exit"

# 4. Usage errors exit 2 with a helpful line; a missing buffer exits 1.
set +e
cli tree >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'usage: taskspan tree' "$tmp/err" || fail "no-task usage: rc=$rc $(cat "$tmp/err")"
cli tree --bogus T >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown option: rc=$rc"
cli frobnicate >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown command: rc=$rc"
cli tree --db "$tmp/missing.db" T >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'no buffer at' "$tmp/err" || fail "missing db: rc=$rc $(cat "$tmp/err")"
[ ! -e "$tmp/missing.db" ] || fail "inspecting a missing buffer created it"
cli tree NO-SUCH-TASK >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "no events for task 'NO-SUCH-TASK'" "$tmp/err" || fail "unknown task: rc=$rc $(cat "$tmp/err")"
head -c 4096 /dev/urandom >"$tmp/junk.db"
cli tree --db "$tmp/junk.db" T >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'not a taskspan buffer' "$tmp/err" || fail "corrupt db: rc=$rc $(cat "$tmp/err")"
demo --items -1 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "demo bad --items: rc=$rc"
set -e
echo "demo_and_tree: all checks passed"
