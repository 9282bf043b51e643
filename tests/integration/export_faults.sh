#!/usr/bin/env bash
# export_faults.sh -- docs/export.md's delivery promises against a collector
# that fails in every way the OTLP spec describes.
#
# One scenario per fault, each with its own buffer and its own scripted
# collector (tests/collector/collector.js, a plan per scenario). The real
# library exports: `taskspan export --once` (deterministic batches: the
# buffer is recorded with export off first) or the recorder's background
# thread (tools/record_seed: export on, OTEL_BSP_SCHEDULE_DELAY=200). Every
# scenario asserts from the collector's log and from the buffer
# (tests/tools/span_states: 0 pending, 1 delivered, 2 rejected; the reason
# of a rejected one), and
# ends with the no-loss check: every delivered span was received in exactly
# one 2xx-answered request, no rejected span was accepted, nothing is left
# pending, every copy of a span was byte-identical (docs/export.md).
#
#   a1 429 + Retry-After: 1, then 200 (export --once): identical re-send >= 1 s later
#   a2 the same through the background thread and taskspan_flush
#   b  503 + Retry-After as an HTTP-date (+2 s): re-sent after ~2 s
#   c  502 then 504, no Retry-After: exponential backoff with jitter
#   d  500: rejected for good, reason kept, never re-sent; export exits 0
#   e  400: the same
#   f  200 with partial_success: delivered, not retried, last error noted
#   g  connection reset: retried
#   h  a hang past OTEL_EXPORTER_OTLP_TIMEOUT (background thread): retried,
#      bounded
#   i  gzip: inflated bodies equal the uncompressed export of the same buffer
#   l  two `taskspan export --once` at once on one buffer: each span once
#   m  413: the batch is halved and re-sent at once; a single span rejected
#   q  the OTel span limits and dropped counts
#   r  Retry-After capped at 15 minutes; an unreadable one means backoff
#   k  collector down (export fails, says why), then up on the same port
#   t  a span encoded again whose task's events were deleted by hand:
#      rejected with the reason, the others delivered
# and, in the "lifecycle" group that export_faults_b.sh runs:
#   a3 a flush that times out in a Retry-After; the retry time is shared
#      through the buffer with the next exporter
#   n  close with a request in flight is bounded by close_timeout_ms
#   p  the pass at close delivers what closed
#   o  a lease outlives its killed exporter (timeout + 10 s), then the
#      spans are re-sent byte for byte
#
# Needs node and the collector's modules: npm ci --prefix tests/collector.
set -euo pipefail
# The group of scenarios to run (see the end of this file); the test's name.
group=${1:-answers}
case $group in
answers) name=export_faults ;;
lifecycle) name=export_faults_b ;;
*)
    echo "usage: export_faults.sh [answers|lifecycle]" >&2
    exit 2
    ;;
esac
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
coll=$src/tests/collector
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/export_faults${1:+_$1}.XXXXXX")
started=$SECONDS

# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=$name
# shellcheck source=lib/background.bash
source "$src/tests/integration/lib/background.bash"

passed=0
scenario=setup
fail() {
    echo "FAIL: $name: scenario $scenario: $*" >&2
    echo "$name: $passed passed, 1 failed" >&2
    exit 1
}

while IFS= read -r v; do
    unset "$v"
done < <(env | sed -n 's/^\(OTEL_[A-Za-z0-9_]*\)=.*/\1/p')
unset TRACEPARENT TASKSPAN_TEST_EXPORT_MODE TASKSPAN_TEST_CLOSE_MS TASKSPAN_DB

command -v node >/dev/null 2>&1 ||
    fail "node is not installed: the export tests need Node 18+ and 'npm ci --prefix tests/collector'"
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 (the CLI) is not installed"
if [ ! -d "$coll/node_modules/protobufjs" ] ||
    [ ! -f "$coll/node_modules/@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js" ]; then
    fail "the collector's node modules are missing in $coll/node_modules: run 'npm ci --prefix tests/collector' in $src"
fi

# An array, so that a wrapper with options splits into words (and none
# stays empty).
read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
cli_bin=$bin/src/cli/taskspan
for f in "$cli_bin" "$bin/tests/record_seed" "$bin/tests/record_spans"; do
    [ -x "$f" ] || fail "missing program $f (build first)"
done

# ---------------------------------------------------------------------------
# Helpers

# run LIMIT_S OUT CMD...: run a program (under TASKSPAN_WRAP), bounded; RC
# and ELAPSED_MS are set.
run() {
    local limit=$1 out=$2 t0
    shift 2
    t0=$(date +%s%N)
    set +e
    timeout --signal=KILL "$limit" "${wrap[@]}" "$@" >"$out" 2>&1
    RC=$?
    set -e
    ELAPSED_MS=$((($(date +%s%N) - t0) / 1000000))
    [ $RC -ne 137 ] || fail "$(basename "$1") was killed after ${limit}s (hung): $(cat "$out")"
}

# start_collector DIR [PORT]: plan DIR/plan.json if present; sets COL_PID
# and COL_PORT; log DIR/requests.jsonl.
start_collector() {
    local dir=$1 port=${2:-0}
    local args=(--port "$port" --log "$dir/requests.jsonl" --ready-file "$dir/port")
    [ -f "$dir/plan.json" ] && args+=(--plan "$dir/plan.json")
    rm -f "$dir/port"
    node "$coll/collector.js" "${args[@]}" >"$dir/collector.out" 2>&1 &
    COL_PID=$!
    bg_pids+=("$COL_PID")
    local deadline=$((SECONDS + 15))
    while [ ! -s "$dir/port" ]; do
        kill -0 "$COL_PID" 2>/dev/null ||
            fail "collector did not start: $(cat "$dir/collector.out")"
        [ $SECONDS -lt $deadline ] || fail "collector not ready within 15 s"
        sleep 0.05
    done
    COL_PORT=$(cat "$dir/port")
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$COL_PORT
}

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

# begin NAME: a fresh directory and buffer; the common export settings.
begin() {
    scenario=$1
    dir=$tmp/$1
    mkdir -p "$dir"
    export TASKSPAN_DB=$dir/buffer.db
    export OTEL_SERVICE_NAME=export-faults
    export OTEL_BSP_SCHEDULE_DELAY=200
    export OTEL_BSP_MAX_EXPORT_BATCH_SIZE=3
    unset OTEL_EXPORTER_OTLP_TIMEOUT OTEL_EXPORTER_OTLP_COMPRESSION OTEL_EXPORTER_OTLP_ENDPOINT
    t_scenario=$SECONDS
    recorder_exe=
}

done_scenario() {
    passed=$((passed + 1))
    echo "ok $passed - $scenario ($((SECONDS - t_scenario)) s)"
}

db() { sqlite3 -cmd ".timeout 5000" "$TASKSPAN_DB" "$@"; }

# The export state of every span the exporters found, as JSON, for the
# helper: derived from the tasks' export progress (schema 8) and the rows
# of the rejected spans by tests/tools/span_states.
spans_json() {
    "$bin/tests/span_states" >"$dir/spans.json" || fail "span_states failed"
}

# record N_TASKS PER_TASK: closed spans in the buffer, export off.
record_off() {
    TASKSPAN_TEST_EXPORT_MODE=off run 60 "$dir/record.out" "$bin/tests/record_spans" "$1" "$2"
    [ $RC -eq 0 ] || fail "record_spans exited $RC: $(cat "$dir/record.out")"
    [ "$(tail -n 1 "$dir/record.out")" = "$(($1 * ($2 + 1)))" ] ||
        fail "record_spans printed '$(cat "$dir/record.out")', want $(($1 * ($2 + 1)))"
    recorder_exe=record_spans
}

# export_once OUT [ARGS...]: `taskspan export --once`, bounded; RC set.
export_once() {
    local out=$1
    shift
    run 60 "$out" "$cli_bin" export --once "$@"
}

h() { node "$tmp/helper.js" "$@"; }
hcheck() { # hcheck WHAT ARGS...: a helper check that must pass
    local what=$1
    shift
    h "$@" >"$dir/helper.out" 2>&1 || fail "$what: $(cat "$dir/helper.out")"
    sed 's/^/    /' "$dir/helper.out"
}

# The no-loss check (j) for the current scenario.
verify_delivery() {
    spans_json
    local exe=()
    [ -n "$recorder_exe" ] && exe=(--exe "$recorder_exe")
    hcheck "no span lost or duplicated (j)" verify "$dir/requests.jsonl" "$dir/spans.json" "${exe[@]}" "$@"
}

# state_count N: spans in state N (0 pending, 1 delivered, 2 rejected).
state_count() { "$bin/tests/span_states" | grep -c "\"state\":$1," || true; }
# The counts of the three states, for failure messages.
state_counts() { echo "pending $(state_count 0), delivered $(state_count 1), rejected $(state_count 2)"; }

# ---------------------------------------------------------------------------
# The log helper (node, on check.js).

cat >"$tmp/helper.js" <<'EOF'
'use strict';
const fs = require('fs');
const check = require(process.env.COLLECTOR_DIR + '/check.js');

const die = (msg) => { console.log(`FAIL ${msg}`); process.exit(1); };
const say = (msg) => console.log(msg);
const ms = (rec) => Date.parse(rec.time);
const key = (s) => `${s.traceId}/${s.spanId}`;
const keysOf = (rec) => check.spansOf([rec]).map((s) => key(s.span));
const byN = (recs, n) => recs.find((r) => r.n === n) || die(`no request ${n} in the log (${recs.length} requests)`);
const read = (f) => (fs.existsSync(f) ? check.readLog(f) : die(`no log ${f}`));
// Answered with a 2xx that reached the client: a hang the client gave up on
// (hangMs >= its timeout) is logged as 200 but never arrived.
const delivered = (rec, hangTimeout) => check.accepted(rec) &&
  !(rec.response.hangMs !== undefined && hangTimeout !== undefined && rec.response.hangMs >= hangTimeout);

function opts(args) {
  const o = {};
  for (let i = 0; i < args.length; i++) if (args[i].startsWith('--')) o[args[i].slice(2)] = args[i + 1] && !args[i + 1].startsWith('--') ? args[++i] : true;
  return o;
}

const cmds = {
  // verify LOG SPANS.json [--hang-timeout MS] [--pending N]
  verify(log, spansFile, ...rest) {
    const o = opts(rest);
    const recs = read(log);
    const rows = JSON.parse(fs.readFileSync(spansFile, 'utf8'));
    const hang = o['hang-timeout'] !== undefined ? Number(o['hang-timeout']) : undefined;
    const problems = check.conformanceProblems(recs);
    if (problems.length) die(`conformance: ${problems.join('; ')}`);
    for (const r of recs) {
      if (r.verifyError || r.decodeError) die(`request ${r.n}: ${r.verifyError || r.decodeError}`);
      if ((r.headers['content-type'] || '') !== 'application/x-protobuf') die(`request ${r.n}: Content-Type ${r.headers['content-type']}`);
    }
    const got = new Map(); // key -> number of delivered copies
    const json = new Map(); // key -> the JSON of its first copy
    for (const r of recs) {
      for (const s of check.spansOf([r])) {
        const k = key(s.span);
        const j = JSON.stringify(s.span);
        if (json.has(k) && json.get(k) !== j) die(`span ${k} "${s.span.name}" was sent with different content in request ${r.n}`);
        json.set(k, j);
        if (delivered(r, hang)) got.set(k, (got.get(k) || 0) + 1);
      }
    }
    const inBuffer = new Set(rows.map(key));
    for (const k of json.keys()) if (!inBuffer.has(k)) die(`span ${k} was received but is not in the buffer (span_states)`);
    let nDelivered = 0, nRejected = 0, nPending = 0;
    for (const row of rows) {
      const k = key(row);
      const n = got.get(k) || 0;
      const st = Number(row.state);
      if (st === 1) {
        nDelivered++;
        if (n === 0) die(`span ${k} "${row.name}" is marked delivered but no 2xx-answered request carried it (lost)`);
        if (n > 1) die(`span ${k} "${row.name}" arrived in ${n} 2xx-answered requests (duplicate without an exporter crash)`);
      } else if (st === 2) {
        nRejected++;
        if (n > 0) die(`span ${k} "${row.name}" is marked rejected but was accepted ${n} times`);
        if (!row.last_error) die(`rejected span ${k} keeps no reason`);
      } else if (st === 0) {
        nPending++;
      } else die(`span ${k}: unknown state ${row.state}`);
    }
    const wantPending = o.pending !== undefined ? Number(o.pending) : 0;
    if (nPending !== wantPending) die(`${nPending} spans still pending in the buffer, want ${wantPending}`);
    if (rows.length === 0) die('the buffer has no export rows');
    // The resource is the recording process's, whoever exports (docs/export.md: one
    // ResourceSpans per resource).
    if (o.exe) {
      for (const r of recs) {
        for (const rs of (r.request && r.request.resourceSpans) || []) {
          const a = check.attrs((rs.resource || {}).attributes);
          if (a['process.executable.name'] !== o.exe) die(`request ${r.n}: resource process.executable.name ${a['process.executable.name']}, want the recorder ${o.exe}`);
          if (a['service.name'] !== 'export-faults') die(`request ${r.n}: service.name ${a['service.name']}`);
        }
      }
    }
    say(`verify: ${recs.length} requests, ${nDelivered} spans delivered exactly once, ${nRejected} rejected, ${nPending} pending, every copy identical`);
  },
  // resend LOG N MIN_MS MAX_MS [--same-body]: request N failed; the next request carrying
  // its spans carries exactly them, MIN..MAX ms later (and the same bytes).
  resend(log, nArg, minArg, maxArg, ...rest) {
    const o = opts(rest);
    const recs = read(log);
    const r1 = byN(recs, Number(nArg));
    if (check.accepted(r1) && r1.response.hangMs === undefined) die(`request ${r1.n} was accepted (status ${r1.response.status}): nothing to re-send`);
    const k1 = keysOf(r1);
    if (k1.length === 0) die(`request ${r1.n} carried no span`);
    const r2 = recs.find((r) => r.n > r1.n && keysOf(r).some((k) => k1.includes(k)));
    if (!r2) die(`the spans of request ${r1.n} were never sent again`);
    const gap = ms(r2) - ms(r1);
    const k2 = keysOf(r2);
    if (o['same-body']) {
      if (JSON.stringify(k2) !== JSON.stringify(k1)) die(`request ${r2.n} re-sent [${k2}] instead of [${k1}]`);
      if (r2.sha256 !== r1.sha256) die(`request ${r2.n} is not a byte-identical re-send of request ${r1.n} (sha256 ${r2.sha256} vs ${r1.sha256})`);
    } else {
      for (const k of k1) if (!k2.includes(k)) die(`request ${r2.n} re-sent only part of request ${r1.n}'s spans`);
    }
    // Retry-After: never before the time the collector named (log times have ms precision).
    const ra = r1.response.retryAfter;
    if (ra !== undefined) {
      // An unreadable value counts as none (the backoff applies).
      const at = /^\d+$/.test(ra) ? ms(r1) + Number(ra) * 1000 : Date.parse(ra);
      if (!Number.isNaN(at) && ms(r2) < at - 2) die(`request ${r2.n} came at ${r2.time}, before the Retry-After of request ${r1.n} (${ra})`);
    }
    // A lease's end (epoch ms, read from the buffer): no other exporter
    // may send the leased spans before it.
    if (o['not-before'] !== undefined && ms(r2) < Number(o['not-before']) - 2) die(`request ${r2.n} came at ${r2.time}, ${Number(o['not-before']) - ms(r2)} ms before the lease ended`);
    if (gap < Number(minArg)) die(`request ${r2.n} came ${gap} ms after request ${r1.n}, before the ${minArg} ms the answer asked for`);
    if (gap > Number(maxArg)) die(`request ${r2.n} came ${gap} ms after request ${r1.n}, later than ${maxArg} ms`);
    say(`resend: request ${r1.n} (${r1.response.reset ? 'reset' : r1.response.hangMs !== undefined ? `hang ${r1.response.hangMs} ms` : r1.response.status}) -> request ${r2.n} after ${gap} ms${o['same-body'] ? ', byte-identical' : ''}`);
  },
  // rejected LOG SPANS.json N: request N's spans are exactly the rejected ones, never re-sent.
  rejected(log, spansFile, nArg) {
    const recs = read(log);
    const rows = JSON.parse(fs.readFileSync(spansFile, 'utf8'));
    const r = byN(recs, Number(nArg));
    const k = keysOf(r).sort();
    const rej = rows.filter((x) => Number(x.state) === 2).map(key).sort();
    if (JSON.stringify(k) !== JSON.stringify(rej)) die(`the rejected spans [${rej}] are not request ${r.n}'s [${k}]`);
    for (const later of recs.filter((x) => x.n > r.n)) {
      if (keysOf(later).some((x) => k.includes(x))) die(`request ${later.n} re-sent a span rejected in request ${r.n}`);
    }
    say(`rejected: the ${k.length} spans of request ${r.n} are rejected and were never sent again`);
  },
  // count LOG: the number of requests
  count(log) {
    say(String(read(log).length));
  },
  // field LOG N PATH: one value of request N, e.g. response.retryAfter, spanCount
  field(log, nArg, p) {
    let v = byN(read(log), Number(nArg));
    for (const part of p.split('.')) v = v === undefined || v === null ? undefined : v[part];
    say(v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  },
  // subset LOG N M: request M's spans are a subset of request N's
  subset(log, nArg, mArg) {
    const recs = read(log);
    const a = keysOf(byN(recs, Number(nArg)));
    const b = keysOf(byN(recs, Number(mArg)));
    for (const x of b) if (!a.includes(x)) die(`request ${mArg} carries ${x}, not in request ${nArg}`);
    say(`subset: request ${mArg}'s ${b.length} spans come from request ${nArg}'s ${a.length}`);
  },
  // limits LOG: record_seed's spans encoded with OTEL_SPAN_EVENT_COUNT_LIMIT=5,
  // OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT=3, OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2,
  // OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=4: the first ones kept, the rest counted as dropped.
  limits(log) {
    const rows = check.summarize(read(log));
    const by = (name) => rows.find((r) => r.name === name) || die(`no span ${name}`);
    const want = { main: 12, work_wi_001: 3, work_wi_002: 3, recovery_sweep: 2 };
    for (const [name, total] of Object.entries(want)) {
      const sp = by(name).span;
      const kept = Math.min(total, 5);
      if ((sp.events || []).length !== kept) die(`${name}: ${(sp.events || []).length} events kept, want ${kept}`);
      if ((sp.droppedEventsCount || 0) !== total - kept) die(`${name}: droppedEventsCount ${sp.droppedEventsCount}, want ${total - kept}`);
      const keys = (sp.attributes || []).map((kv) => kv.key);
      if (JSON.stringify(keys) !== JSON.stringify(['taskspan.task_id', 'taskspan.span_key'])) die(`${name}: span attributes ${keys}`);
      if ((sp.droppedAttributesCount || 0) !== 1) die(`${name}: droppedAttributesCount ${sp.droppedAttributesCount}, want 1`);
      for (const ev of sp.events || []) {
        const n = (ev.attributes || []).length;
        if (n > 3) die(`${name} ${ev.name}: ${n} attributes kept, limit 3`);
        if (n + (ev.droppedAttributesCount || 0) < 4) die(`${name} ${ev.name}: ${n} kept + ${ev.droppedAttributesCount || 0} dropped is fewer than it has`);
      }
      const strs = [];
      const walk = (v) => { if (!v) return; if ('stringValue' in v) strs.push(v.stringValue); if (v.arrayValue) (v.arrayValue.values || []).forEach(walk); };
      for (const kv of sp.attributes || []) walk(kv.value);
      for (const ev of sp.events || []) for (const kv of ev.attributes || []) walk(kv.value);
      for (const x of strs) if ([...x].length > 4) die(`${name}: string value "${x}" is longer than OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=4`);
    }
    const main = by('main').span;
    const names = main.events.map((e) => e.name);
    if (JSON.stringify(names) !== JSON.stringify(['runner_spawn', 'phase_enter', 'phase_exit', 'phase_enter', 'work_item_dispatched'])) die(`main kept ${names}, not its first 5 events`);
    const spawn = main.events[0];
    const a = check.attrs(spawn.attributes);
    if (JSON.stringify(Object.keys(a)) !== JSON.stringify(['runner_pid', 'runner_version', 'explanation'])) die(`runner_spawn kept ${Object.keys(a)}, not its first 3 attributes`);
    if ((spawn.droppedAttributesCount || 0) !== 2) die(`runner_spawn droppedAttributesCount ${spawn.droppedAttributesCount}, want 2 (taskspan.seq, taskspan.actor)`);
    if (a.explanation !== 'runn') die(`runner_spawn explanation "${a.explanation}", want "runn" (cut to 4)`);
    const res = check.attrs(rows[0].resource.attributes);
    if (res['service.name'] !== 'export-faults') die(`the span limits must not cut the resource: service.name "${res['service.name']}"`);
    say('limits: first 5 events, 3 event attributes, 2 span attributes kept, values cut to 4 characters, dropped counts filled in');
  },
  // held LOG SPANS.json N MIN_S MAX_S: request N's spans are pending and not sendable
  // before MIN..MAX seconds after the request (the retry time kept in the buffer).
  held(log, spansFile, nArg, minArg, maxArg) {
    const r = byN(read(log), Number(nArg));
    const rows = new Map(JSON.parse(fs.readFileSync(spansFile, 'utf8')).map((x) => [key(x), x]));
    const ks = keysOf(r);
    if (ks.length === 0) die(`request ${r.n} carried no span`);
    for (const k of ks) {
      const row = rows.get(k) || die(`span ${k} is not in the buffer`);
      if (Number(row.state) !== 0) die(`span ${k} of request ${r.n} is in state ${row.state}, want pending`);
      const s = (Number(BigInt(row.claim_until) / 1000000n) - ms(r)) / 1000;
      if (s < Number(minArg) || s > Number(maxArg)) die(`span ${k} of request ${r.n} is held ${s} s, want ${minArg}..${maxArg} s (Retry-After ${r.response.retryAfter})`);
    }
    say(`held: request ${r.n}'s ${ks.length} spans wait ${minArg}..${maxArg} s (Retry-After ${r.response.retryAfter})`);
  },
  // gap LOG N M MIN_MS MAX_MS: request M arrived MIN..MAX ms after request N
  gap(log, nArg, mArg, minArg, maxArg) {
    const recs = read(log);
    const d = ms(byN(recs, Number(mArg))) - ms(byN(recs, Number(nArg)));
    if (d < Number(minArg) || d > Number(maxArg)) die(`request ${mArg} came ${d} ms after request ${nArg}, want ${minArg}..${maxArg} ms`);
    say(`gap: request ${mArg} came ${d} ms after request ${nArg}`);
  },
  // gzip LOG_GZ LOG_PLAIN: the same requests, compressed and not.
  gzip(logA, logB) {
    const a = read(logA);
    const b = read(logB);
    if (a.length === 0) die('no gzip request');
    if (a.length !== b.length) die(`${a.length} gzip requests vs ${b.length} plain ones`);
    a.forEach((r, i) => {
      const p = b[i];
      if (r.headers['content-encoding'] !== 'gzip') die(`gzip request ${r.n}: Content-Encoding ${r.headers['content-encoding']}`);
      if (r.bodyBytes === r.inflatedBytes || r.sha256 === r.inflatedSha256) die(`gzip request ${r.n} was not compressed`);
      if (p.headers['content-encoding'] !== undefined && p.headers['content-encoding'] !== 'identity') die(`plain request ${p.n}: Content-Encoding ${p.headers['content-encoding']}`);
      if (p.sha256 !== p.inflatedSha256) die(`plain request ${p.n}: raw and inflated bodies differ`);
      if (r.inflatedSha256 !== p.sha256) die(`gzip request ${r.n} inflates to sha256 ${r.inflatedSha256}, the plain export of the same buffer sent ${p.sha256}`);
      if (JSON.stringify(r.request) !== JSON.stringify(p.request)) die(`gzip request ${r.n} decodes differently from plain request ${p.n}`);
    });
    say(`gzip: ${a.length} gzip requests (${a.reduce((s, r) => s + r.bodyBytes, 0)} bytes) inflate to the ${b.length} plain ones (${b.reduce((s, r) => s + r.bodyBytes, 0)} bytes)`);
  },
};

const [cmd, ...args] = process.argv.slice(2);
if (!cmds[cmd]) die(`unknown helper command ${cmd}`);
cmds[cmd](...args);
EOF
export COLLECTOR_DIR=$coll

plan() { printf '%s\n' "$1" >"$dir/plan.json"; }

# ---------------------------------------------------------------------------
# Scenarios

# a1: 429 with Retry-After: 1, then 200. Recorded with export AUTO and
# OTEL_SDK_DISABLED=true (nothing may be sent), then `taskspan export --once`.
s_a1() {
    begin a1-429-retry-after
    plan '{"steps": [{"status": 429, "retryAfter": "1", "message": "slow down"}], "default": {"status": 200}}'
    start_collector "$dir"
    OTEL_SDK_DISABLED=true TASKSPAN_TEST_EXPORT_MODE=auto run 60 "$dir/record.out" "$bin/tests/record_spans" 2 2
    recorder_exe=record_spans
    [ $RC -eq 0 ] || fail "record_spans exited $RC: $(cat "$dir/record.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 0 ] || fail "a recorder with OTEL_SDK_DISABLED=true exported"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    grep -q 'taskspan export: 6 spans delivered, 0 rejected, 0 pending' "$dir/export.out" ||
        fail "export output: $(cat "$dir/export.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 3 ] ||
        fail "want 3 requests (429, its re-send, the second batch), got $(h count "$dir/requests.jsonl")"
    hcheck "429 re-send" resend "$dir/requests.jsonl" 1 950 3000 --same-body
    # No span's bytes are stored: the first request went out from memory
    # at discovery, the re-send was encoded again from the task's events,
    # and the two requests are byte for byte the same (--same-body).
    [ "$(db 'SELECT count(*) FROM export_bodies')" -eq 0 ] ||
        fail "span bodies were stored: $(db 'SELECT count(*) FROM export_bodies')"
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# a2: the same fault through the recorder's background thread and
# taskspan_flush (record_seed: export on).
s_a2() {
    begin a2-429-background
    plan '{"steps": [{"status": 429, "retryAfter": "1"}], "default": {"status": 200}}'
    start_collector "$dir"
    run 60 "$dir/seed.out" "$bin/tests/record_seed" T-a2 15000
    recorder_exe=record_seed
    [ $RC -eq 0 ] || fail "record_seed exited $RC: $(cat "$dir/seed.out")"
    grep -q '^flush: success$' "$dir/seed.out" || fail "flush: $(cat "$dir/seed.out")"
    grep -q ' requests_failed=1 ' "$dir/seed.out" || fail "want 1 failed request in the stats: $(grep '^stats' "$dir/seed.out")"
    grep -q ' pending=0 delivered_total=4 rejected_total=0$' "$dir/seed.out" || fail "stats: $(grep '^stats' "$dir/seed.out")"
    hcheck "429 re-send by the background thread" resend "$dir/requests.jsonl" 1 950 4000
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# a3: the retry time is shared through the buffer: the runner's flush
# times out during a 429's Retry-After (3 s); a `taskspan export --once`
# started at once must not send those spans before the 3 s are over.
s_a3() {
    begin a3-retry-after-shared
    plan '{"steps": [{"status": 429, "retryAfter": "3"}], "default": {"status": 200}}'
    start_collector "$dir"
    run 60 "$dir/seed.out" "$bin/tests/record_seed" T-a3 400
    recorder_exe=record_seed
    [ $RC -eq 3 ] || fail "record_seed's flush should time out (exit 3), exited $RC: $(cat "$dir/seed.out")"
    grep -q '^flush: the operation timed out$' "$dir/seed.out" || fail "flush: $(cat "$dir/seed.out")"
    grep -q ' pending=[1-9]' "$dir/seed.out" || fail "the timed-out flush should leave spans pending: $(grep '^stats' "$dir/seed.out")"
    [ "$ELAPSED_MS" -lt 4000 ] || fail "close waited out the Retry-After ($ELAPSED_MS ms): it should give up at once"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    hcheck "the re-send waited for the Retry-After set by another exporter" resend "$dir/requests.jsonl" 1 2950 6000
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# b: 503 with Retry-After as an HTTP-date 2 s ahead.
s_b() {
    begin b-503-http-date
    record_off 2 2
    plan '{"steps": [{"status": 503, "retryAfter": "+2s"}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    h field "$dir/requests.jsonl" 1 response.retryAfter |
        grep -q '^[A-Z][a-z][a-z], [0-9][0-9] [A-Z][a-z][a-z] [0-9]\{4\} [0-9:]\{8\} GMT$' ||
        fail "the collector did not send an HTTP-date: $(h field "$dir/requests.jsonl" 1 response.retryAfter)"
    hcheck "503 re-send after the HTTP-date" resend "$dir/requests.jsonl" 1 1900 4500 --same-body
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# c: 502, then 504, no Retry-After: backoff 1 s +-50 %, then 2 s +-50 %.
s_c() {
    begin c-502-504-backoff
    record_off 2 2
    plan '{"steps": [{"status": 502}, {"status": 504}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 4 ] ||
        fail "want 4 requests (502, 504, 200, 200), got $(h count "$dir/requests.jsonl")"
    hcheck "502 re-send" resend "$dir/requests.jsonl" 1 450 2000 --same-body
    hcheck "504 re-send" resend "$dir/requests.jsonl" 2 950 3500 --same-body
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# d, e: 500 and 400 are final: the batch is rejected, kept with the reason,
# never re-sent; export reports it and exits 0 (nothing left pending).
s_rejected() { # NAME CODE MESSAGE
    local code=$2 msg=$3 reason
    begin "$1"
    record_off 3 2 # 9 spans: three requests of 3
    plan "{\"steps\": [{\"status\": 200}, {\"status\": $code, \"message\": \"$msg\"}], \"default\": {\"status\": 200}}"
    start_collector "$dir"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC after a $code (nothing is pending): $(cat "$dir/export.out")"
    grep -q 'taskspan export: 6 spans delivered, 3 rejected, 0 pending' "$dir/export.out" ||
        fail "export output does not show the rejected spans: $(cat "$dir/export.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 3 ] ||
        fail "want 3 requests (no retry of the $code), got $(h count "$dir/requests.jsonl")"
    [ "$(state_count 2)-$(state_count 1)" = 3-6 ] ||
        fail "want 3 rejected and 6 delivered spans: $(state_counts)"
    reason=$(db "SELECT DISTINCT last_error FROM export_spans WHERE state = 2")
    case $reason in
    "HTTP $code from http://127.0.0.1:$COL_PORT/v1/traces"*"$msg"*) ;;
    *) fail "the rejected spans' reason should be 'HTTP $code from <url>: <Status.message \"$msg\">': '$reason'" ;;
    esac
    spans_json
    hcheck "rejected batch" rejected "$dir/requests.jsonl" "$dir/spans.json" 2
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}
s_d() { s_rejected d-500-rejected 500 "internal boom"; }
s_e() { s_rejected e-400-rejected 400 "bad data in span"; }

# f: 200 with partial_success: delivered, not retried, the message noted.
# The traces endpoint comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which
# wins over OTEL_EXPORTER_OTLP_ENDPOINT (here a dead port).
s_f() {
    begin f-partial-success
    record_off 2 2
    plan '{"steps": [{"status": 200, "partial": {"rejected": 1, "message": "x"}}], "default": {"status": 200}}'
    start_collector "$dir"
    local traces=$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=$traces OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 \
        export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 2 ] ||
        fail "want 2 requests (a partial success is not retried), got $(h count "$dir/requests.jsonl")"
    [ "$(state_count 1)" -eq 6 ] || fail "want all 6 spans delivered: $(state_counts)"
    local last
    last=$(db "SELECT text_value FROM export_state WHERE name = 'last_error'")
    case $last in
    *"rejected 1 "*": x") ;;
    *) fail "export_state last_error should record the partial rejection (1 span, message x): '$last'" ;;
    esac
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# g: the connection is dropped without an answer: retried.
s_g() {
    begin g-reset
    record_off 2 2
    plan '{"steps": [{"reset": true}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    hcheck "re-send after a reset" resend "$dir/requests.jsonl" 1 450 2500 --same-body
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# h: the collector hangs 3 s; the client gives up after 500 ms, retries.
s_h() {
    begin h-hang-timeout
    plan '{"steps": [{"hang": 3000}], "default": {"status": 200}}'
    start_collector "$dir"
    OTEL_EXPORTER_OTLP_TIMEOUT=500 run 30 "$dir/seed.out" "$bin/tests/record_seed" T-h 15000
    recorder_exe=record_seed
    [ $RC -eq 0 ] || fail "record_seed exited $RC: $(cat "$dir/seed.out")"
    grep -q '^flush: success$' "$dir/seed.out" || fail "flush: $(cat "$dir/seed.out")"
    [ "$ELAPSED_MS" -lt 8000 ] || fail "the run took $ELAPSED_MS ms: the 500 ms timeout did not bound the hung request"
    grep -q ' requests_failed=1 ' "$dir/seed.out" || fail "want 1 failed request: $(grep '^stats' "$dir/seed.out")"
    local last
    last=$(db "SELECT text_value FROM export_state WHERE name = 'last_error'")
    case $last in
    *"timed out"*) ;;
    *) fail "last_error should say the request timed out: '$last'" ;;
    esac
    hcheck "re-send after the timeout" resend "$dir/requests.jsonl" 1 900 3000
    stop_collector "$COL_PID"
    verify_delivery --hang-timeout 500
    echo "    record_seed with a hung collector took $ELAPSED_MS ms"
    done_scenario
}

# i: gzip. Two copies of one buffer: A exported with gzip, B without.
s_i() {
    local colA colB x
    begin i-gzip
    record_off 2 4 # 10 spans: 4 requests
    sqlite3 "$TASKSPAN_DB" ".backup '$dir/a.db'"
    sqlite3 "$TASKSPAN_DB" ".backup '$dir/b.db'"
    mkdir -p "$dir/a" "$dir/b"
    start_collector "$dir/a"
    colA=$COL_PID
    TASKSPAN_DB=$dir/a.db OTEL_EXPORTER_OTLP_COMPRESSION=gzip run 60 "$dir/a/export.out" "$cli_bin" export --once --timeout 20000
    [ $RC -eq 0 ] || fail "gzip export exited $RC: $(cat "$dir/a/export.out")"
    start_collector "$dir/b"
    colB=$COL_PID
    TASKSPAN_DB=$dir/b.db run 60 "$dir/b/export.out" "$cli_bin" export --once --timeout 20000
    [ $RC -eq 0 ] || fail "plain export exited $RC: $(cat "$dir/b/export.out")"
    hcheck "gzip bodies" gzip "$dir/a/requests.jsonl" "$dir/b/requests.jsonl"
    stop_collector "$colA"
    stop_collector "$colB"
    for x in a b; do
        TASKSPAN_DB=$dir/$x.db
        cp "$dir/$x/requests.jsonl" "$dir/requests.jsonl"
        verify_delivery
    done
    done_scenario
}

# l: two `taskspan export --once` at the same time on one buffer of 200
# spans, batches of 10, against one (slightly slow) collector.
s_l() {
    local x1 x2 rc1 rc2 d1 d2
    begin l-two-exporters
    record_off 20 9 # 200 spans
    export OTEL_BSP_MAX_EXPORT_BATCH_SIZE=10
    plan '{"steps": [], "default": {"status": 200, "delay": 40}}'
    start_collector "$dir"
    set +e
    timeout --signal=KILL 60 "${wrap[@]}" "$cli_bin" export --once --timeout 30000 >"$dir/x1.out" 2>&1 &
    x1=$!
    timeout --signal=KILL 60 "${wrap[@]}" "$cli_bin" export --once --timeout 30000 >"$dir/x2.out" 2>&1 &
    x2=$!
    bg_pids+=("$x1" "$x2")
    wait "$x1"
    rc1=$?
    wait "$x2"
    rc2=$?
    forget "$x1"
    forget "$x2"
    set -e
    [ "$rc1-$rc2" = 0-0 ] ||
        fail "the two exporters exited $rc1 and $rc2: $(cat "$dir/x1.out" "$dir/x2.out")"
    d1=$(sed -n 's/^taskspan export: \([0-9]*\) spans delivered.*/\1/p' "$dir/x1.out")
    d2=$(sed -n 's/^taskspan export: \([0-9]*\) spans delivered.*/\1/p' "$dir/x2.out")
    [ -n "$d1" ] || fail "export 1 output: $(cat "$dir/x1.out")"
    [ -n "$d2" ] || fail "export output: $(cat "$dir/x1.out" "$dir/x2.out")"
    [ $((d1 + d2)) -eq 200 ] || fail "the exporters delivered $d1 + $d2 spans, want 200 in all"
    [ "$d1" -gt 0 ] || fail "one exporter did all the work ($d1 + $d2): the leases were not exercised"
    [ "$d2" -gt 0 ] || fail "one exporter did all the work ($d1 + $d2): the leases were not exercised"
    stop_collector "$COL_PID"
    [ "$(state_count 1)" -eq 200 ] || fail "want 200 delivered spans: $(state_counts)"
    verify_delivery
    echo "    the exporters delivered $d1 and $d2 spans"
    done_scenario
}

# m: 413: the batch is put back at once and halved, down to one span; a
# single span that is still too large is rejected.
s_m() {
    local reason
    begin m-413-halved
    record_off 2 2 # 6 spans
    export OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4
    plan '{"steps": [{"status": 413}, {"status": 413}, {"status": 413, "message": "span too large"}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    grep -q 'taskspan export: 5 spans delivered, 1 rejected, 0 pending' "$dir/export.out" ||
        fail "export output: $(cat "$dir/export.out")"
    [ "$(h field "$dir/requests.jsonl" 1 spanCount)" -eq 4 ] ||
        fail "first request: $(h field "$dir/requests.jsonl" 1 spanCount) spans, want 4"
    [ "$(h field "$dir/requests.jsonl" 2 spanCount)" -eq 2 ] ||
        fail "after a 413 the batch should be halved to 2 spans, got $(h field "$dir/requests.jsonl" 2 spanCount)"
    [ "$(h field "$dir/requests.jsonl" 3 spanCount)" -eq 1 ] ||
        fail "after a second 413 the batch should be 1 span, got $(h field "$dir/requests.jsonl" 3 spanCount)"
    hcheck "413 re-send" subset "$dir/requests.jsonl" 1 2
    hcheck "413 re-send" subset "$dir/requests.jsonl" 2 3
    hcheck "413 re-send at once" gap "$dir/requests.jsonl" 1 3 0 900
    spans_json
    hcheck "the single span answered 413 is rejected" rejected "$dir/requests.jsonl" "$dir/spans.json" 3
    reason=$(db "SELECT last_error FROM export_spans WHERE state = 2")
    case $reason in
    "HTTP 413 from "*"span too large"*) ;;
    *) fail "the rejected span's reason: '$reason'" ;;
    esac
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# r: Retry-After is capped at 15 minutes (seconds or an HTTP-date); an
# unreadable one falls back to the backoff. Each `taskspan export --once`
# gives up (exit 1) while the spans wait; the wait is kept in the buffer.
s_r() {
    begin r-retry-after-cap
    record_off 3 2 # 9 spans: three batches of 3
    plan '{"steps": [{"status": 429, "retryAfter": "100000"}, {"status": 503, "retryAfter": "Wed, 21 Oct 2099 07:28:00 GMT"}, {"status": 429, "retryAfter": "soon"}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export1.out" --timeout 800
    [ $RC -eq 1 ] || fail "export during a 100000 s Retry-After exited $RC, want 1: $(cat "$dir/export1.out")"
    export_once "$dir/export2.out" --timeout 800
    [ $RC -eq 1 ] || fail "export during a Retry-After in 2099 exited $RC, want 1: $(cat "$dir/export2.out")"
    export_once "$dir/export3.out" --timeout 2500
    [ $RC -eq 1 ] || fail "third export exited $RC, want 1 (6 spans still held): $(cat "$dir/export3.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 4 ] ||
        fail "want 4 requests (one per batch, the unreadable Retry-After's retried), got $(h count "$dir/requests.jsonl")"
    spans_json
    hcheck "Retry-After in seconds capped" held "$dir/requests.jsonl" "$dir/spans.json" 1 895 905
    hcheck "Retry-After as a far HTTP-date capped" held "$dir/requests.jsonl" "$dir/spans.json" 2 895 905
    hcheck "unreadable Retry-After: backoff" resend "$dir/requests.jsonl" 3 450 1700 --same-body
    stop_collector "$COL_PID"
    verify_delivery --pending 6
    done_scenario
}

# q: the OTel span limits, applied when a span is encoded, with the dropped
# counts filled in (docs/export.md, "Limits").
s_q() {
    begin q-span-limits
    start_collector "$dir"
    OTEL_SPAN_EVENT_COUNT_LIMIT=5 OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT=3 OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2 \
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=4 run 60 "$dir/seed.out" "$bin/tests/record_seed" T-q 15000
    recorder_exe=record_seed
    [ $RC -eq 0 ] || fail "record_seed exited $RC: $(cat "$dir/seed.out")"
    hcheck "span limits" limits "$dir/requests.jsonl"
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# k: collector down, then up on the same port.
s_k() {
    local port last_down
    begin k-collector-down-up
    mkdir -p "$dir/probe"
    start_collector "$dir/probe" # only to find a free port
    port=$COL_PORT
    stop_collector "$COL_PID"
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port
    # Recorded with export on: the background thread meets the dead port
    # and close gives up at once; the spans stay in the buffer.
    TASKSPAN_TEST_EXPORT_MODE=on run 60 "$dir/record.out" "$bin/tests/record_spans" 3 2
    recorder_exe=record_spans
    [ $RC -eq 0 ] || fail "record_spans exited $RC: $(cat "$dir/record.out")"
    [ "$ELAPSED_MS" -lt 10000 ] || fail "recording with the collector down took $ELAPSED_MS ms"
    export_once "$dir/export1.out" --timeout 1500
    [ $RC -eq 1 ] || fail "taskspan export --once with the collector down exited $RC, want 1: $(cat "$dir/export1.out")"
    [ "$ELAPSED_MS" -lt 5000 ] || fail "export --once --timeout 1500 took $ELAPSED_MS ms"
    grep -q ' 9 pending' "$dir/export1.out" || fail "the failed export does not show the 9 pending spans: $(cat "$dir/export1.out")"
    [ "$(state_count 0)" -eq 9 ] || fail "want 9 pending spans: $(state_counts)"
    last_down=$(db "SELECT text_value FROM export_state WHERE name = 'last_error'")
    case $last_down in
    *"connection refused"*) ;;
    *) fail "export_state last_error should say the connection was refused: '$last_down'" ;;
    esac
    start_collector "$dir" "$port"
    [ "$COL_PORT" = "$port" ] || fail "the collector came up on $COL_PORT, not $port"
    export_once "$dir/export2.out" --timeout 30000
    [ $RC -eq 0 ] || fail "taskspan export --once with the collector up exited $RC: $(cat "$dir/export2.out")"
    grep -q 'taskspan export: 9 spans delivered, 0 rejected, 0 pending' "$dir/export2.out" ||
        fail "export output: $(cat "$dir/export2.out")"
    stop_collector "$COL_PID"
    verify_delivery
    # Checked last, so that a failure here still lets the rest of k run:
    # docs/export.md keeps the last error "so `taskspan export` and the
    # statistics show why spans are waiting".
    grep -qi 'connection refused' "$dir/export1.out" ||
        fail "the failed 'taskspan export --once' does not say why the spans wait (docs/export.md: the last error is kept 'so taskspan export and the statistics show why spans are waiting'; export_state has '$last_down'); its output was: $(cat "$dir/export1.out")"
    done_scenario
}

# u: a request the flush's own deadline cuts short says nothing about the
# collector, so the reason kept is the failure before it: a 503, then a
# request that hangs past `export --once --timeout 3000`.
s_u() {
    local last
    begin u-deadline-keeps-reason
    record_off 2 2
    plan '{"steps": [{"status": 503, "message": "overloaded"}, {"hang": 5000}], "default": {"status": 200}}'
    start_collector "$dir"
    export_once "$dir/export1.out" --timeout 3000
    [ $RC -eq 1 ] || fail "taskspan export --once exited $RC, want 1: $(cat "$dir/export1.out")"
    [ "$(h count "$dir/requests.jsonl")" -eq 2 ] ||
        fail "want the 503 and the hung request, got $(h count "$dir/requests.jsonl") requests"
    last=$(db "SELECT text_value FROM export_state WHERE name = 'last_error'")
    case $last in
    *"HTTP 503"*"overloaded"*) ;;
    *) fail "last_error should still give the 503, not the request the deadline cut: '$last'" ;;
    esac
    grep -q 'HTTP 503' "$dir/export1.out" ||
        fail "the failed export does not give the 503: $(cat "$dir/export1.out")"
    export_once "$dir/export2.out" --timeout 30000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export2.out")"
    grep -q 'taskspan export: 6 spans delivered, 0 rejected, 0 pending' "$dir/export2.out" ||
        fail "export output: $(cat "$dir/export2.out")"
    stop_collector "$COL_PID"
    verify_delivery --hang-timeout 5000
    echo "    $last"
    done_scenario
}

# n: close is bounded: the background thread's request hangs (10 s, request
# timeout 30 s); close_timeout_ms 1000 must abort it within about a second,
# leave the spans pending, and `taskspan export` delivers them later.
s_n() {
    begin n-close-bounded
    plan '{"steps": [{"hang": 10000}], "default": {"status": 200}}'
    start_collector "$dir"
    OTEL_EXPORTER_OTLP_TIMEOUT=30000 TASKSPAN_TEST_CLOSE_MS=1000 TASKSPAN_TEST_EXPORT_MODE=on \
        run 60 "$dir/record.out" "$bin/tests/record_spans" 2 2
    recorder_exe=record_spans
    [ $RC -eq 0 ] || fail "record_spans exited $RC: $(cat "$dir/record.out")"
    [ "$(h count "$dir/requests.jsonl")" -ge 1 ] || fail "the background thread sent nothing before close"
    [ "$ELAPSED_MS" -lt 3500 ] ||
        fail "close with close_timeout_ms=1000 and a hung request took $ELAPSED_MS ms (docs: at most close_timeout_ms, then abort within about a second)"
    [ "$(state_count 1)" -eq 0 ] || fail "spans of an unanswered request were marked delivered"
    export_once "$dir/export.out" --timeout 20000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    grep -q 'taskspan export: 6 spans delivered, 0 rejected, 0 pending' "$dir/export.out" ||
        fail "export output: $(cat "$dir/export.out")"
    stop_collector "$COL_PID"
    verify_delivery --hang-timeout 10000
    echo "    record_spans closed in $ELAPSED_MS ms with a request hanging"
    done_scenario
}

# o: a lease outlives its exporter: `taskspan export` is killed (SIGKILL)
# while its request hangs; its lease runs until the request timeout (1 s)
# plus 10 s, so the next exporter sends those spans only then, byte for
# byte the same (the duplicate window of docs/export.md).
s_o() {
    local xp deadline
    begin o-lease-outlives-exporter
    record_off 2 2
    plan '{"steps": [{"hang": 60000}], "default": {"status": 200}}'
    start_collector "$dir"
    export OTEL_EXPORTER_OTLP_TIMEOUT=1000
    "${wrap[@]}" "$cli_bin" export --once --timeout 30000 >"$dir/x1.out" 2>&1 &
    xp=$!
    bg_pids+=("$xp")
    deadline=$((SECONDS + 20))
    until [ -s "$dir/requests.jsonl" ]; do
        [ $SECONDS -lt $deadline ] || fail "the first exporter sent nothing within 20 s"
        sleep 0.01
    done
    kill -KILL "$xp" 2>/dev/null || fail "the first exporter ended before it could be killed: $(cat "$dir/x1.out")"
    wait "$xp" 2>/dev/null || true
    forget "$xp"
    # Request 1 held the 3 spans of the first task: the killed exporter
    # leaves its lease on that task, and them pending.
    [ "$(db "SELECT count(*) || '-' || sum(export_closed - export_done) FROM tasks WHERE export_owner IS NOT NULL")" = 1-3 ] ||
        fail "the killed exporter should leave its lease on the task of 3 spans: $(db 'SELECT task_id, export_done, export_closed, export_owner, export_until FROM tasks')"
    # The lease runs from when it was taken, a little before request 1
    # reached the collector (more so under valgrind): the exact bound is
    # the lease's end as the buffer has it.
    local claim_end_ms
    claim_end_ms=$(db "SELECT min(export_until) / 1000000 FROM tasks WHERE export_owner IS NOT NULL")
    export_once "$dir/export.out" --timeout 30000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export.out")"
    grep -q 'taskspan export: 6 spans delivered, 0 rejected, 0 pending' "$dir/export.out" ||
        fail "export output: $(cat "$dir/export.out")"
    hcheck "re-send once the dead exporter's lease expired" resend "$dir/requests.jsonl" 1 9000 16000 --same-body --not-before "$claim_end_ms"
    # The killed exporter sent those spans from memory, storing no bytes:
    # the second one encoded them again, identical (--same-body).
    [ "$(db 'SELECT count(*) FROM export_bodies')" -eq 0 ] ||
        fail "span bodies were stored: $(db 'SELECT count(*) FROM export_bodies')"
    stop_collector "$COL_PID"
    verify_delivery --hang-timeout 1000
    done_scenario
}

# p: close delivers: no pass runs while recording (schedule delay 60 s,
# batch 512), so the pass at close sends everything.
s_p() {
    begin p-close-delivers
    plan '{"steps": [], "default": {"status": 200}}'
    start_collector "$dir"
    OTEL_BSP_SCHEDULE_DELAY=60000 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=512 TASKSPAN_TEST_EXPORT_MODE=on \
        run 60 "$dir/record.out" "$bin/tests/record_spans" 3 3
    recorder_exe=record_spans
    [ $RC -eq 0 ] || fail "record_spans exited $RC: $(cat "$dir/record.out")"
    [ "$(state_count 1)" -eq 12 ] ||
        fail "close should deliver all 12 closed spans: $(state_counts)"
    stop_collector "$COL_PID"
    verify_delivery
    done_scenario
}

# t: spans are encoded again from their task when sent again; a span whose
# task's events were deleted by hand can no longer be: it is rejected with
# the reason, and the spans after it are still delivered.
s_t() {
    local port gone reason
    begin t-task-gone
    mkdir -p "$dir/probe"
    start_collector "$dir/probe" # only to find a free port
    port=$COL_PORT
    stop_collector "$COL_PID"
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port
    record_off 3 2 # 9 spans in 3 tasks
    export_once "$dir/export1.out" --timeout 1500
    [ $RC -eq 1 ] || fail "taskspan export --once with the collector down exited $RC, want 1: $(cat "$dir/export1.out")"
    [ "$(state_count 0)" -eq 9 ] || fail "want 9 pending spans: $(state_counts)"
    gone=$(db "SELECT task_id FROM tasks ORDER BY tnum LIMIT 1")
    db "DELETE FROM task_events WHERE task_id = '$gone'"
    start_collector "$dir" "$port"
    export_once "$dir/export2.out" --timeout 30000
    [ $RC -eq 0 ] || fail "taskspan export --once exited $RC: $(cat "$dir/export2.out")"
    grep -q 'taskspan export: 6 spans delivered, 3 rejected, 0 pending' "$dir/export2.out" ||
        fail "export output: $(cat "$dir/export2.out")"
    # Settled and without events, the task's rows then go with the
    # exporter's retention pass; the reason stays as the last error.
    [ "$(db "SELECT sum(export_done) FROM tasks WHERE task_id != '$gone'")" -eq 6 ] ||
        fail "the spans of the other tasks should be delivered: $(db 'SELECT task_id, export_done, export_closed FROM tasks')"
    reason=$(db "SELECT text_value FROM export_state WHERE name = 'last_error'")
    case $reason in
    *"task's events are gone"*) ;;
    *) fail "the rejected spans' reason: '$reason'" ;;
    esac
    [ "$(h count "$dir/requests.jsonl")" -ge 2 ] ||
        fail "want the 6 other spans in 2 or more requests, got $(h count "$dir/requests.jsonl")"
    stop_collector "$COL_PID"
    done_scenario
}

# ---------------------------------------------------------------------------
# Groups: this file runs the fault answers; export_faults_b.sh runs the
# exporter lifecycle (flush, close, leases), so each stays well under 90 s.
case $group in
answers) scenarios="a1 a2 b c d e f g h i l m q r k t u" ;;
lifecycle) scenarios="a3 n p o" ;;
esac
# A developer reruns one or two: TASKSPAN_TEST_SCENARIOS="k u".
scenarios=${TASKSPAN_TEST_SCENARIOS:-$scenarios}
for s in $scenarios; do
    "s_$s"
done

# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "$name: $passed passed, 0 failed ($((SECONDS - started)) s)"
