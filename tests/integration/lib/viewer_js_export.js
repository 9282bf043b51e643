#!/usr/bin/env node
// viewer_js_export.js -- the OFFICIAL OpenTelemetry JS SDK and OTLP/HTTP
// protobuf exporter (tests/collector/node_modules) send a small trace to
// `taskspan serve`; then the viewer's API must show exactly what was sent.
//
//   NODE_PATH=tests/collector/node_modules node viewer_js_export.js BASE_URL [gzip]
//
// Prints "js_export: ok TRACE_ID" and exits 0, or the first mismatch and 1.
'use strict';
for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];

const http = require('http');
const api = require('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { Resource } = require('@opentelemetry/resources');

const base = process.argv[2];
const gzip = process.argv[3] === 'gzip';
const watchdog = setTimeout(() => fail('overall timeout (25 s)'), 25000);

function fail(msg) {
  console.log(`js_export: FAIL ${msg}`);
  process.exit(1);
}

function get(path) {
  return new Promise((resolve, reject) => {
    http.get(base + path, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
}

function hrToNs(t) {
  return (BigInt(t[0]) * 1000000000n + BigInt(t[1])).toString();
}

// The API's attribute value for what the SDK was given.
function expectValue(v) {
  if (Array.isArray(v)) return v.map(expectValue);
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  return v;
}

function attrsOf(list) {
  const o = {};
  for (const kv of list) o[kv.key] = kv.value;
  return o;
}

function same(a, b, what) {
  const x = JSON.stringify(a), y = JSON.stringify(b);
  if (x !== y) fail(`${what}: sent ${y}, stored ${x}`);
}

async function main() {
  const provider = new BasicTracerProvider({ resource: new Resource({ 'service.name': 'js-viewer-test' }) });
  const exporter = new OTLPTraceExporter({ url: `${base}/v1/traces`, timeoutMillis: 8000, ...(gzip ? { compression: 'gzip' } : {}) });
  const finished = [];
  provider.addSpanProcessor({ onStart() {}, onEnd(s) { finished.push(s); }, forceFlush: async () => {}, shutdown: async () => {} });
  provider.addSpanProcessor(new BatchSpanProcessor(exporter, { scheduledDelayMillis: 60000 }));
  const tracer = provider.getTracer('viewer-js-test', '1.2.3');
  const root = tracer.startSpan('js.root', {
    kind: api.SpanKind.SERVER,
    attributes: { 'taskspan.task_id': 'js-task', 'http.status': 200, ratio: 0.25, ok: true, tags: ['a', 'b'], nums: [1, 2] },
  });
  root.addEvent('checkpoint', { step: 3, note: 'half way' });
  const ctx = api.trace.setSpan(api.context.active(), root);
  const child = tracer.startSpan('js.child', { kind: api.SpanKind.CLIENT, attributes: { 'ünïcode': 'värde ✓' } }, ctx);
  child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'child failed' });
  child.end();
  root.end();
  await provider.forceFlush();
  await provider.shutdown();

  const traceId = root.spanContext().traceId;
  const r = await get(`/api/traces/${traceId}`);
  if (r.status !== 200) fail(`GET /api/traces/${traceId}: ${r.status} ${r.body}`);
  const got = JSON.parse(r.body);
  same(got.spans.length, finished.length, 'span count');
  same(got.service, 'js-viewer-test', 'trace service');
  same(got.task_id, 'js-task', 'task_id');
  for (const s of finished) {
    const g = got.spans.find((x) => x.span_id === s.spanContext().spanId);
    if (!g) fail(`span ${s.name} not stored`);
    same(g.name, s.name, 'name');
    same(g.parent_span_id, s.parentSpanId || '', `${s.name} parent`);
    same(g.kind, s.kind + 1, `${s.name} kind`); // SDK 0-based, OTLP 1-based
    same(g.start_ns, hrToNs(s.startTime), `${s.name} start`);
    same(g.end_ns, hrToNs(s.endTime), `${s.name} end`);
    same(g.status.code, s.status.code, `${s.name} status code`);
    same(g.status.message, s.status.message || '', `${s.name} status message`);
    same(g.service, 'js-viewer-test', `${s.name} service`);
    const want = {};
    for (const [k, v] of Object.entries(s.attributes)) want[k] = expectValue(v);
    same(attrsOf(g.attributes), want, `${s.name} attributes`);
    same(g.events.map((e) => e.name), s.events.map((e) => e.name), `${s.name} events`);
    s.events.forEach((e, i) => {
      same(g.events[i].time_ns, hrToNs(e.time), `${s.name} event time`);
      const wantE = {};
      for (const [k, v] of Object.entries(e.attributes || {})) wantE[k] = expectValue(v);
      same(attrsOf(g.events[i].attributes), wantE, `${s.name} event attributes`);
    });
  }
  clearTimeout(watchdog);
  console.log(`js_export: ok ${traceId}`);
}

main().catch((e) => fail(e.stack || String(e)));
