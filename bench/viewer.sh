#!/usr/bin/env bash
# viewer.sh -- what `taskspan serve` costs: starts it on a free loopback port
# with a fresh store in a temporary directory, then a Node client (the
# official OTLP protobuf schema from tests/collector) measures, over one
# keep-alive connection:
#   list_1        GET /api/traces (and ?task=) with 1 trace stored
#   ingest        POST REQUESTS requests of SPANS spans (traces of 10 spans,
#                 3 attributes and 1 event per span): spans/s
#   trace_10000   GET /api/traces/{id} of one 10,000-span trace (posted in
#                 requests of 1,000 spans): load time (the browser's render
#                 time is measured by tests/browser, not here)
#   list_N        GET /api/traces (and ?task=) with LIST_TRACES traces
#                 stored (1-span traces added in requests of 1,000)
# Prints a table and one "BENCH_JSON {...}" line per figure; checks only
# that every answer is a 200 with the expected span count. Never fails on a
# figure.
#
#   bench/viewer.sh [BUILD_DIR] [--short] [--dir DIR] [--runs R]
#   (full: 200 x 500 spans ingested, 100,000 traces listed, 20 GETs each;
#    --short: 20 x 500, 2,000 traces, 5 GETs of the 10,000-span trace; the
#    lists, about a millisecond each, get 20 GETs and one untimed first in
#    both modes: the median of 5, in CI, flagged a list as growing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  build=$1
  shift
fi
requests=200 spans=500 list_traces=100000 gets=20 list_gets=20 base=/tmp
while [ $# -gt 0 ]; do
  case $1 in
  --short) requests=20 list_traces=2000 gets=5 && shift ;;
  --dir) base=${2:?--dir needs a directory} && shift 2 ;;
  --runs) shift 2 ;; # common to every benchmark; one run here
  *) echo "usage: bench/viewer.sh [BUILD_DIR] [--short] [--dir DIR]" >&2 && exit 2 ;;
  esac
done
if [ ! -x "$build/src/cli/taskspan" ]; then
  echo "viewer.sh: no $build/src/cli/taskspan (build the CLI first)" >&2
  exit 2
fi
tmp=$(mktemp -d "$base/taskspan-viewer.XXXXXX")
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
"$build/src/cli/taskspan" serve --listen 127.0.0.1:0 --store "$tmp/v.db" \
  --ready-file "$tmp/port" >"$tmp/out" 2>&1 &
server=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { cat "$tmp/out" >&2; exit 1; }
echo "machine: $(uname -srm), $(nproc) cpus online; taskspan serve on 127.0.0.1:$(cat "$tmp/port"), store in $tmp"
NODE_PATH=$root/tests/collector/node_modules node - "$(cat "$tmp/port")" \
  "$requests" "$spans" "$list_traces" "$gets" "$list_gets" <<'JS'
const http = require('http');
const crypto = require('crypto');
const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js');
const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const [port, requests, spans, listTraces, gets, listGets] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let taskNo = 0;
// n spans; a new trace (and task) every perTrace spans; the first span of
// each trace is its root, the others its children.
function body(n, perTrace, trace) {
  const list = [];
  let rootId, task;
  for (let i = 0; i < n; i++) {
    const first = i % perTrace === 0;
    if (first) {
      if (!trace || perTrace < n) trace = crypto.randomBytes(16);
      rootId = crypto.randomBytes(8);
      task = `task-${taskNo++}`;
    }
    const t = BigInt(Date.now()) * 1000000n + BigInt(i);
    list.push({ traceId: trace, spanId: first ? rootId : crypto.randomBytes(8),
      parentSpanId: first ? undefined : rootId, name: first ? 'main' : `work_${i % 100}`, kind: 1,
      startTimeUnixNano: t.toString(), endTimeUnixNano: (t + 1000n).toString(),
      attributes: [{ key: 'taskspan.task_id', value: { stringValue: task } },
        { key: 'n', value: { intValue: i } }, { key: 'work_type', value: { stringValue: 'code_change' } }],
      events: [{ name: 'work_item_start', timeUnixNano: t.toString() }] });
  }
  const buf = Req.encode(Req.fromObject({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'bench' } }] }, scopeSpans: [{ scope: { name: 'bench' }, spans: list }] }] })).finish();
  return { buf, trace };
}
function request(method, path, buf) {
  return new Promise((resolve, reject) => {
    const headers = buf ? { 'Content-Type': 'application/x-protobuf', 'Content-Length': buf.length } : {};
    const r = http.request({ port, host: '127.0.0.1', method, path, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks))
        : reject(new Error(`${method} ${path}: status ${res.statusCode}`))));
    });
    r.on('error', reject);
    r.end(buf);
  });
}
const now = () => process.hrtime.bigint();
function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const rank = (p) => s[Math.min(s.length, Math.max(1, Math.ceil(s.length * p))) - 1];
  return { n: s.length, min: s[0], p50: rank(0.5), p99: rank(0.99), max: s[s.length - 1] };
}
async function timeGets(path, check, n = gets) {
  const ms = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const b = await request('GET', path);
    ms.push(Number(now() - t0) / 1e6);
    bytes = b.length;
    check(JSON.parse(b));
  }
  return { ...stats(ms), bytes };
}
const rows = [];
function out(name, fig) {
  rows.push([name, fig]);
  console.log(`BENCH_JSON ${JSON.stringify({ bench: 'viewer', case: name, ...fig })}`);
}
async function postAll(n, perTrace, chunk) {
  for (let done = 0; done < n; done += chunk) {
    await request('POST', '/v1/traces', body(Math.min(chunk, n - done), perTrace).buf);
  }
}
async function list(name, traces) {
  await request('GET', '/api/traces'); // untimed: the first after a burst of writes
  const all = await timeGets('/api/traces', (j) => { if (!j.traces || !j.traces.length) throw new Error('empty list'); }, listGets);
  out(`${name}`, { traces, path: '/api/traces', p50_ms: all.p50, p99_ms: all.p99, min_ms: all.min, max_ms: all.max, gets: all.n, bytes: all.bytes });
  const one = await timeGets('/api/traces?task=task-0', (j) => { if (j.traces.length !== 1) throw new Error(`task filter gave ${j.traces.length}`); }, listGets);
  out(`${name}_task`, { traces, path: '/api/traces?task=task-0', p50_ms: one.p50, p99_ms: one.p99, min_ms: one.min, max_ms: one.max, gets: one.n, bytes: one.bytes });
}
(async () => {
  let stored = 0;
  // 1. the trace list with one trace
  await request('POST', '/v1/traces', body(1, 1).buf);
  stored = 1;
  await list('list_1', stored);
  // 2. ingest
  const bodies = [];
  for (let i = 0; i < requests; i++) bodies.push(body(spans, 10).buf);
  let t0 = now();
  for (const b of bodies) await request('POST', '/v1/traces', b);
  const s = Number(now() - t0) / 1e9;
  stored += requests * spans / 10;
  out('ingest', { requests, spans_per_request: spans, seconds: s, spans_per_s: Math.round(requests * spans / s), requests_per_s: requests / s });
  // 3. one 10,000-span trace
  let trace;
  for (let i = 0; i < 10; i++) {
    const r = body(1000, 1000, trace);
    if (i > 0) r.buf = body(1000, 100000, trace).buf; // same trace, children only after the first
    trace = r.trace;
    await request('POST', '/v1/traces', r.buf);
  }
  stored += 1;
  const id = trace.toString('hex');
  const tr = await timeGets(`/api/traces/${id}`, (j) => { if (!j.spans || j.spans.length !== 10000) throw new Error(`trace has ${j.spans ? j.spans.length : 0} spans`); });
  out('trace_10000', { spans: 10000, path: '/api/traces/{id}', p50_ms: tr.p50, p99_ms: tr.p99, min_ms: tr.min, max_ms: tr.max, gets: tr.n, bytes: tr.bytes });
  // 4. the trace list with listTraces traces
  t0 = now();
  if (listTraces > stored) await postAll(listTraces - stored, 1, 1000);
  const fill = Number(now() - t0) / 1e9;
  stored = Math.max(stored, listTraces);
  console.log(`viewer: stored ${stored} traces (${fill.toFixed(1)} s to add the 1-span ones)`);
  await list(`list_${stored}`, stored);
  console.log('');
  console.log(`${'case'.padEnd(22)} ${'figure'.padStart(24)}`);
  for (const [name, f] of rows) {
    const v = f.spans_per_s !== undefined ? `${f.spans_per_s} spans/s`
      : `p50 ${f.p50_ms.toFixed(2)} ms, p99 ${f.p99_ms.toFixed(2)} ms (${f.gets} GETs, ${f.bytes} bytes)`;
    console.log(`${name.padEnd(22)} ${v}`);
  }
  agent.destroy();
})().catch((e) => { console.error(`viewer.sh: ${e.message}`); process.exit(1); });
JS
