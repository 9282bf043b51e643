#!/usr/bin/env bash
# viewer_ingest.sh -- how fast `taskspan serve` takes spans: starts it on a
# free loopback port with a fresh store, then a Node client (the official
# OTLP protobuf schema from tests/collector) POSTs REQUESTS requests of
# SPANS spans each (distinct traces of 10 spans, 3 attributes and 1 event
# per span) over one keep-alive connection, and prints spans/s. Measures,
# checks nothing but that every request got a 200.
#
#   bench/viewer_ingest.sh [BUILD_DIR] [REQUESTS] [SPANS]
#   (defaults: build 200 500)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
requests=${2:-200}
spans=${3:-500}
tmp=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
"$build/src/cli/taskspan" serve --listen 127.0.0.1:0 --store "$tmp/v.db" \
  --ready-file "$tmp/port" >"$tmp/out" 2>&1 &
server=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { cat "$tmp/out" >&2; exit 1; }
NODE_PATH=$root/tests/collector/node_modules node - "$(cat "$tmp/port")" \
  "$requests" "$spans" <<'JS'
const http = require('http');
const crypto = require('crypto');
const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js');
const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const [port, requests, spans] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function body() {
  const list = [];
  let trace;
  for (let i = 0; i < spans; i++) {
    if (i % 10 === 0) trace = crypto.randomBytes(16);
    const t = BigInt(Date.now()) * 1000000n + BigInt(i);
    list.push({ traceId: trace, spanId: crypto.randomBytes(8), name: `span-${i % 10}`, kind: 1,
      startTimeUnixNano: t.toString(), endTimeUnixNano: (t + 1000n).toString(),
      attributes: [{ key: 'taskspan.task_id', value: { stringValue: `task-${i}` } },
        { key: 'n', value: { intValue: i } }, { key: 'ok', value: { boolValue: true } }],
      events: [{ name: 'work_item_start', timeUnixNano: t.toString() }] });
  }
  return Req.encode(Req.fromObject({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'bench' } }] }, scopeSpans: [{ scope: { name: 'bench' }, spans: list }] }] })).finish();
}
function post(buf) {
  return new Promise((resolve, reject) => {
    const r = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/traces', agent,
      headers: { 'Content-Type': 'application/x-protobuf', 'Content-Length': buf.length } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    r.on('error', reject);
    r.end(buf);
  });
}
(async () => {
  const bodies = [];
  for (let i = 0; i < requests; i++) bodies.push(body());
  const t0 = process.hrtime.bigint();
  for (const b of bodies) await post(b);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`viewer_ingest: ${requests} requests x ${spans} spans in ${s.toFixed(2)} s: ` +
    `${Math.round(requests * spans / s)} spans/s, ${(requests / s).toFixed(1)} requests/s`);
  agent.destroy();
})().catch((e) => { console.error(`viewer_ingest: ${e.message}`); process.exit(1); });
JS
