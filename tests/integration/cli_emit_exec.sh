#!/usr/bin/env bash
# cli_emit_exec.sh -- `taskspan emit` and `taskspan exec`, the real binary on
# real buffers: seq numbers, typed payloads (checked with SQLite's
# json_type), usage errors, a corrupt buffer, exit statuses that telemetry
# never changes, signals, and the TRACEPARENT a step's command receives.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/emitexec.XXXXXX" 2>/dev/null || mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
export TASKSPAN_DB=$tmp/buffer.db
unset TRACEPARENT
# Export would be on (OTEL_SDK_DISABLED unset) towards a port where nobody
# listens: emit and exec must record with export off and never wait for it.
unset OTEL_SDK_DISABLED OTEL_TRACES_EXPORTER OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1
fail() { echo "FAIL: $*" >&2; exit 1; }

# TASKSPAN_WRAP (e.g. valgrind) runs the programs under a checker.
cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }
span_ids() { ${TASKSPAN_WRAP:-} "$bin/tests/span_ids" "$@"; }
q() { sqlite3 "$TASKSPAN_DB" "$@"; }
now_ms() { date +%s%3N; }

# Runs "$@" with errexit off; sets rc, and out/err to its stdout/stderr.
run() {
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
# The last run exited $1 and wrote one stderr line matching the ERE $2.
expect_error() {
  [ "$rc" -eq "$1" ] || fail "$3: exit $rc, want $1 (stderr: $err)"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$3: want one stderr line: $err"
  grep -Eq -- "$2" "$tmp/err" || fail "$3: stderr '$err' lacks /$2/"
}

# ---- emit ---------------------------------------------------------------

# 1. Successive events print 1, 2, 3; the event lands where it was told.
for want in 1 2 3; do
  run cli emit --task T-emit --type step --actor runner --phase planning n:=$want
  [ "$rc" -eq 0 ] && [ "$out" = "$want" ] || fail "emit #$want printed '$out' (rc=$rc, $err)"
  [ -z "$err" ] || fail "emit wrote to stderr: $err"
done
run cli emit --task T-emit --type work_item_start --span work_wi_1 --parent=main \
  --actor worker --phase executing --ts 1700000000123456789 work_item_id=wi_1
[ "$rc" -eq 0 ] && [ "$out" = 4 ] || fail "emit with every option: rc=$rc out=$out $err"
[ "$(q "SELECT event_type, span_id, parent_span_id, actor, phase, ts_ns FROM task_events WHERE task_id='T-emit' AND seq=4")" = \
  "work_item_start|work_wi_1|main|worker|executing|1700000000123456789" ] || fail "columns of seq 4: $(q "SELECT * FROM task_events WHERE task_id='T-emit' AND seq=4")"
[ "$(q "SELECT span_id || '|' || ifnull(parent_span_id, 'NULL') FROM task_events WHERE task_id='T-emit' AND seq=1")" = "main|NULL" ] ||
  fail "default span is not main without a parent"

# 2. Typed values keep their JSON types, in the order given.
run cli emit --task T-emit --type typed s=text empty= eq=a=b i:=3 neg:=-42 \
  d:=2.5 e:=1e3 t:=true f:=false qs:='"quoted"' arr:='["a","b"]' \
  ints:='[1,2]' reals:='[1.5,2]' bools:='[true,false]' none:='[]' \
  'a:b=colon key'
[ "$rc" -eq 0 ] && [ "$out" = 5 ] || fail "typed emit: rc=$rc out=$out $err"
types=$(q "SELECT json_type(payload,'\$.s'), json_type(payload,'\$.empty'),
  json_type(payload,'\$.eq'), json_type(payload,'\$.i'), json_type(payload,'\$.neg'),
  json_type(payload,'\$.d'), json_type(payload,'\$.e'), json_type(payload,'\$.t'),
  json_type(payload,'\$.f'), json_type(payload,'\$.qs'), json_type(payload,'\$.arr'),
  json_type(payload,'\$.arr[1]'), json_type(payload,'\$.ints[0]'),
  json_type(payload,'\$.reals[1]'), json_type(payload,'\$.bools[1]'),
  json_type(payload,'\$.none'), json_array_length(payload,'\$.none'),
  json_type(payload,'\$.\"a:b\"')
  FROM task_events WHERE task_id='T-emit' AND seq=5")
[ "$types" = "text|text|text|integer|integer|real|real|true|false|text|array|text|integer|real|false|array|0|text" ] ||
  fail "payload types: $types"
[ "$(q "SELECT payload FROM task_events WHERE task_id='T-emit' AND seq=5")" = \
  '{"s":"text","empty":"","eq":"a=b","i":3,"neg":-42,"d":2.5,"e":1000.0,"t":true,"f":false,"qs":"quoted","arr":["a","b"],"ints":[1,2],"reals":[1.5,2.0],"bools":[true,false],"none":[],"a:b":"colon key"}' ] ||
  fail "payload: $(q "SELECT payload FROM task_events WHERE task_id='T-emit' AND seq=5")"
run cli emit --task T-emit --type late -- -dash=1
[ "$rc" -eq 0 ] && [ "$(q "SELECT payload FROM task_events WHERE task_id='T-emit' AND seq=$out")" = '{"-dash":"1"}' ] ||
  fail "a field after -- : rc=$rc $err"

# 3. Bad arguments exit 2 with one line that says what to do; nothing is
# recorded.
before=$(q "SELECT count(*) FROM task_events")
run cli emit --type step;                          expect_error 2 'which task\? pass --task' "missing --task"
run cli emit --task T-emit;                        expect_error 2 'pass --type' "missing --type"
run cli emit --task T-emit --type x --bogus;       expect_error 2 "unknown option '--bogus'.*--help" "unknown option"
run cli emit --task T-emit --type x --span;        expect_error 2 '--span needs a value' "option without value"
run cli emit --task T-emit --type x --ts soon;     expect_error 2 "--ts 'soon' is not a time" "bad --ts"
run cli emit --task T-emit --type x --ts -1;       expect_error 2 "--ts '-1' is not a time" "negative --ts"
run cli emit --task T-emit --type x lonely;        expect_error 2 "'lonely' is not a field: write key=text or key:=JSON" "field without ="
run cli emit --task T-emit --type x =v;            expect_error 2 "'=v' is not a field" "empty key"
run cli emit --task T-emit --type x n:=three;      expect_error 2 "field 'n': 'three' is not JSON.*write n=TEXT" "bad JSON"
run cli emit --task T-emit --type x n:=99999999999999999999; expect_error 2 "field 'n'.*not JSON" "int64 overflow"
run cli emit --task T-emit --type x n:=null;       expect_error 2 "field 'n': null cannot be recorded" "null"
run cli emit --task T-emit --type x 'o:={"a":1}';  expect_error 2 "field 'o': an object cannot be recorded" "object"
run cli emit --task T-emit --type x 'm:=[1,"a"]';  expect_error 2 "field 'm': an array must hold scalars of one type" "mixed array"
run cli emit --task T-emit --type x 'm:=[[1]]';    expect_error 2 "field 'm': an array must hold scalars" "nested array"
run cli emit --task T-emit --type 'bad type';      expect_error 2 "event_type 'bad type' has a character.*nothing was recorded" "bad type name"
run cli emit --task T-emit --type x k=1 k=2;       expect_error 2 "attribute key 'k' appears twice" "duplicate key"
[ "$(q "SELECT count(*) FROM task_events")" -eq "$before" ] || fail "a rejected emit recorded something"
run cli emit --help
[ "$rc" -eq 0 ] && grep -q 'Export is off' "$tmp/out" && grep -q "taskspan export" "$tmp/out" ||
  fail "emit --help: rc=$rc"

# 4. A buffer that is not one: exit 1, one clear line, the file untouched.
head -c 4096 /dev/urandom >"$tmp/junk.db"
sum=$(cksum <"$tmp/junk.db")
run cli emit --db "$tmp/junk.db" --task T --type x
expect_error 1 'junk.db is not a taskspan buffer.*pass --db PATH' "corrupt buffer"
[ -z "$out" ] || fail "corrupt buffer printed a seq: $out"
[ "$(cksum <"$tmp/junk.db")" = "$sum" ] || fail "emit changed the corrupt file"
run cli emit --db "$tmp/no/such/dir/b.db" --task T --type x
[ "$rc" -eq 1 ] && [ -z "$out" ] || fail "emit into a missing directory: rc=$rc"

# ---- exec ---------------------------------------------------------------

cli emit --task T-exec --type runner_spawn --actor runner runner_pid:=$$ >/dev/null

# 5. The command's exit status is exec's, and nothing else is printed.
t0=$(now_ms)
run cli exec --task T-exec -- sh -c 'exit 7'
[ "$rc" -eq 7 ] && [ -z "$err" ] || fail "exit 7: rc=$rc stderr=$err"
[ $(($(now_ms) - t0)) -lt 5000 ] || fail "exec took $(($(now_ms) - t0)) ms with a dead collector"
run cli exec --task T-exec true
[ "$rc" -eq 0 ] || fail "exec true (no --): rc=$rc $err"
rows=$(q "SELECT event_type, actor, span_id, parent_span_id,
  json_type(payload,'\$.argv'), json_extract(payload,'\$.argv[2]'),
  json_type(payload,'\$.cwd'), json_type(payload,'\$.pid'),
  json_type(payload,'\$.exit_code'), json_extract(payload,'\$.exit_code'),
  json_type(payload,'\$.duration_seconds')
  FROM task_events WHERE task_id='T-exec' AND seq IN (2, 3) ORDER BY seq")
[ "$rows" = "exec_start|exec|exec_sh|main|array|exit 7|text|integer|||
exec_end|exec|exec_sh|main|||||integer|7|real" ] || fail "exec events: $rows"
[ "$(q "SELECT json_extract(payload,'\$.cwd') FROM task_events WHERE task_id='T-exec' AND seq=2")" = "$(pwd -P)" ] ||
  fail "exec_start cwd"

# 6. Telemetry that fails costs one warning line, never the exit status.
run cli exec --task T-exec --db "$tmp/no/such/dir/b.db" -- sh -c 'exit 7'
expect_error 7 '^taskspan exec: warning: cannot record the step: .*exit status is not affected$' "missing directory"
[ ! -e "$tmp/no" ] || fail "exec created the missing directory"
run cli exec --task T-exec --db /proc/taskspan-cli-test.db -- sh -c 'exit 7'
expect_error 7 'warning: cannot record the step' "read-only location"
run cli exec --task T-exec --db "$tmp/junk.db" -- sh -c 'echo "[${TRACEPARENT:-}]"; exit 7'
expect_error 7 'warning: cannot record the step: .*not a taskspan buffer' "corrupt buffer"
[ "$out" = "[]" ] || fail "TRACEPARENT set although nothing was recorded: $out"
if [ "$(id -u)" -ne 0 ]; then # root writes through a read-only mode
  mkdir "$tmp/ro" && cp "$TASKSPAN_DB" "$tmp/ro/b.db" && chmod a-w "$tmp/ro" "$tmp/ro/b.db"
  run cli exec --task T-exec --db "$tmp/ro/b.db" -- sh -c 'exit 7'
  expect_error 7 'warning: cannot record' "read-only buffer"
fi
run cli exec --task T-exec --span '' -- sh -c 'exit 7'
expect_error 7 'warning: cannot record exec_start: span_key is empty' "rejected event"
run cli exec --task T-exec --db "$tmp/no/such/dir/b.db" -- no-such-command-xyz
[ "$rc" -eq 127 ] || fail "missing command without telemetry: rc=$rc"

# 7. A command that cannot start: 127 not found, 126 not executable.
run cli exec --task T-exec -- no-such-command-xyz
expect_error 127 "cannot run 'no-such-command-xyz': command not found" "missing command"
[ "$(q "SELECT json_extract(payload,'\$.exit_code') || ' ' || json_extract(payload,'\$.error') FROM task_events WHERE task_id='T-exec' AND event_type='exec_end' ORDER BY seq DESC LIMIT 1")" = "127 command not found" ] ||
  fail "exec_end of a missing command"
printf 'echo hi\n' >"$tmp/noexec.sh" && chmod 644 "$tmp/noexec.sh"
run cli exec --task T-exec -- "$tmp/noexec.sh"
expect_error 126 "cannot run '.*noexec.sh': Permission denied" "not executable"

# 8. Killed by a signal: 128+N, and exec_end says which.
run cli exec --task T-exec --name selfkill -- sh -c 'kill -TERM $$'
[ "$rc" -eq 143 ] || fail "killed by SIGTERM: rc=$rc $err"
[ "$(q "SELECT json_type(payload,'\$.signal') || ' ' || json_extract(payload,'\$.signal') || ' ' || json_extract(payload,'\$.signal_name') || ' ' || ifnull(json_type(payload,'\$.exit_code'), '-') FROM task_events WHERE task_id='T-exec' AND span_id='exec_selfkill' AND event_type='exec_end'")" = "integer 15 SIGTERM -" ] ||
  fail "exec_end of a killed command"

# 9. SIGTERM and SIGINT sent to exec reach the command, whose own status
# comes back. Job control (set -m) keeps SIGINT of a background job from
# being ignored; $! is then exec itself (not through cli(), a subshell).
forwarded() { # SIGNAL STATUS
  rm -f "$tmp/ready"
  set +e
  (
    set -m
    ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" exec --task T-exec --name "trap$1" -- \
      sh -c 'trap "kill \$! 2>/dev/null; exit $1" '"$1"'; : >"$0"; sleep 20 & wait $!' \
      "$tmp/ready" "$2" &
    pid=$!
    for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
    kill -"$1" "$pid"
    wait "$pid"
  ) 2>/dev/null
  rc=$?
  set -e
  [ "$rc" -eq "$2" ] || fail "SIG$1 forwarding: exit $rc, want the command's $2"
}
forwarded TERM 42
forwarded INT 41

# 10. The command gets the step's span as TRACEPARENT: the task's trace id,
# the exec span's id, sampled.
run cli exec --task T-exec --name show -- sh -c 'echo "$TRACEPARENT"'
[ "$rc" -eq 0 ] || fail "exec echo: rc=$rc $err"
[[ $out =~ ^00-([0-9a-f]{32})-([0-9a-f]{16})-01$ ]] || fail "TRACEPARENT: '$out'"
tp_trace=${BASH_REMATCH[1]} tp_span=${BASH_REMATCH[2]}
cli tree T-exec >"$tmp/tree"
head -n 1 "$tmp/tree" | grep -q "^Task: T-exec (trace $tp_trace)\$" ||
  fail "TRACEPARENT trace $tp_trace is not the task's: $(head -n 1 "$tmp/tree")"
span_ids T-exec >"$tmp/ids"
main_id=$(awk '$1 == "main" { print $2 }' "$tmp/ids")
[ "$(awk '$1 == "exec_show" { print $2, $3 }' "$tmp/ids")" = "$tp_span $main_id" ] ||
  fail "TRACEPARENT span $tp_span is not exec_show's under main: $(cat "$tmp/ids")"

# 11. --span/--parent/--name, and a task first recorded inside a trace joins
# it: its spans carry the outer trace id, the command gets the step's span.
outer=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
run env TRACEPARENT=$outer ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" exec --task T-nested \
  --span build --parent '' -- sh -c 'echo "$TRACEPARENT"'
[ "$rc" -eq 0 ] || fail "nested exec: rc=$rc $err"
[[ $out =~ ^00-0af7651916cd43dd8448eb211c80319c-([0-9a-f]{16})-01$ ]] ||
  fail "nested TRACEPARENT: $out"
[ "$(span_ids T-nested)" = "build ${BASH_REMATCH[1]} b7ad6b7169203331" ] ||
  fail "nested span: $(span_ids T-nested), child got $out"
[ "$(q "SELECT DISTINCT span_id || '|' || ifnull(parent_span_id, 'NULL') FROM task_events WHERE task_id='T-nested'")" = "build|NULL" ] ||
  fail "--span/--parent '' not recorded"

# 12. How an exec span closes today: a second `sh` step.
run cli exec --task T-exec -- sh -c 'exit 3'
[ "$rc" -eq 3 ] || fail "second sh step: rc=$rc $err"
cli tree T-exec >"$tmp/tree"
# A step's span closes at its exec_end (docs/span-model.md, "Steps"), and
# a failed step is in ERROR: the second `sh` step is a span of its own.
[ "$(grep -c 'Span: exec_sh \[incarnation 1\] (2 events, [0-9.]* s, ERROR: exited with code [37])$' \
  "$tmp/tree")" -eq 2 ] || fail "exec_sh: $(cat "$tmp/tree")"
# What does not depend on the rule: runner_exit closes every step.
cli emit --task T-exec --type runner_exit --actor runner exit_reason=done >/dev/null
cli tree T-exec >"$tmp/tree"
grep -q ' open)' "$tmp/tree" && fail "a step span is open after runner_exit: $(cat "$tmp/tree")"
grep -q '^    ├── Span: exec_show \[incarnation 1\] (2 events, [0-9.]* s, ok)$' "$tmp/tree" ||
  fail "exec_show after runner_exit: $(cat "$tmp/tree")"

# Export stays off: with closed spans in the buffer and an exporter told
# to send at once, exec keeps its recorder open for a while, and no span
# is examined or leased and no failure to reach the (dead) collector is
# noted.
run env OTEL_BSP_SCHEDULE_DELAY=0 ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" \
  exec --task T-exec --name wait -- sleep 0.5
[ "$rc" -eq 0 ] && [ -z "$err" ] || fail "exec sleep: rc=$rc $err"
[ "$(q "SELECT count(*) FROM tasks WHERE export_closed > 0 OR export_owner IS NOT NULL OR export_seq > 0")" -eq 0 ] &&
  [ "$(q "SELECT count(*) FROM export_state WHERE name = 'last_error'")" -eq 0 ] ||
  fail "emit or exec exported: $(q "SELECT * FROM export_state")"

# 13. Usage errors: exit 2, nothing runs.
run cli exec -- touch "$tmp/ran";           expect_error 2 'which task\?' "exec without --task"
run cli exec --task T-exec;                 expect_error 2 'which command\?' "exec without a command"
run cli exec --task T-exec --bogus -- true; expect_error 2 "unknown option '--bogus'" "exec unknown option"
run cli exec --task T-exec --name '' -- touch "$tmp/ran"; expect_error 2 '--name is empty' "exec empty --name"
[ ! -e "$tmp/ran" ] || fail "a usage error ran the command"
run cli exec --help
[ "$rc" -eq 0 ] && grep -q 'Export is off' "$tmp/out" || fail "exec --help: rc=$rc"
echo "cli_emit_exec: all checks passed"
