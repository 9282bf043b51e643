#!/usr/bin/env node
// Self-test of collector.js and check.js.
//
// Phase A: the OFFICIAL OpenTelemetry JS SDK + OTLP/HTTP protobuf exporter (0.51.1 /
//          1.24.1) send spans to collector.js running as a child process with the plan
//          [{"status":503,"retryAfter":"1"},{"status":200}].
// Phase B: raw HTTP requests exercise the rest of the plan language and the error paths.
//
// Prints "selftest: N passed, M failed" and exits non-zero on any failure. < 30 s.
'use strict';

// The exporter reads OTEL_EXPORTER_OTLP_* from the environment; keep the test hermetic.
for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const zlib = require('zlib');
const { spawn, spawnSync } = require('child_process');
const protobuf = require('protobufjs/minimal');
const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js');
const api = require('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { Resource } = require('@opentelemetry/resources');
const check = require('./check.js');

const HERE = __dirname;
const COLLECTOR = path.join(HERE, 'collector.js');
const PB = root.opentelemetry.proto;

const watchdog = setTimeout(() => {
  console.log('FAIL selftest: overall timeout (28 s)');
  finish(true);
}, 28000);

let passed = 0;
let failed = 0;
const children = new Set();

function ok(cond, name, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail !== undefined ? `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
  }
  return !!cond;
}

function finish(timedOut) {
  for (const c of children) c.kill('SIGKILL');
  if (timedOut) failed++;
  console.log(`selftest: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'collector-selftest-'));

/** Start collector.js; resolves when it printed "listening <port>" and wrote the ready file. */
function startCollector(name, plan, extraArgs = []) {
  const planFile = path.join(tmp, `${name}.plan.json`);
  const log = path.join(tmp, `${name}.jsonl`);
  const ready = path.join(tmp, `${name}.port`);
  fs.writeFileSync(planFile, JSON.stringify(plan));
  const child = spawn(process.execPath, [COLLECTOR, '--port', '0', '--plan', planFile, '--log', log, '--ready-file', ready, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => { children.delete(child); resolve({ code, signal }); }));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${name}: collector did not start in 5 s`)), 5000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^listening (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ child, port: Number(m[1]), log, ready, exited, stdout: () => out });
      }
    });
    exited.then(({ code }) => reject(new Error(`${name}: collector exited early with ${code}`)));
  });
}

/** SIGTERM the collector and report how it exited and how long it took. */
async function stopCollector(c) {
  const t0 = Date.now();
  c.child.kill('SIGTERM');
  const timeout = new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 3000));
  const res = await Promise.race([c.exited, timeout]);
  return { ...res, ms: Date.now() - t0 };
}

/** One HTTP request without keep-alive; resolves {status, headers, body} or {error}. */
function request(port, { method = 'POST', path: p = '/v1/traces', headers = {}, body, timeout = 5000 } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: Date.now() - t0 }));
      res.on('error', (error) => resolve({ error, ms: Date.now() - t0 }));
    });
    req.setTimeout(timeout, () => req.destroy(new Error('client timeout')));
    req.on('error', (error) => resolve({ error, ms: Date.now() - t0 }));
    req.end(body);
  });
}

const hexToBuf = (h) => Buffer.from(h, 'hex');

/** A small valid request built with the official schema (ids given as hex). */
function buildRequest(spans) {
  const nowNs = BigInt(Date.now()) * 1000000n;
  return root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest.encode(
    root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest.fromObject({
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'raw' } }] },
        scopeSpans: [{
          scope: { name: 'raw' },
          spans: spans.map((s) => ({
            traceId: hexToBuf(s.traceId),
            spanId: hexToBuf(s.spanId),
            name: s.name,
            kind: 1,
            startTimeUnixNano: String(nowNs),
            endTimeUnixNano: String(nowNs + 1000n),
          })),
        }],
      }],
    }),
  ).finish();
}

/** Same request, but with Span.flags (field 16, fixed32) appended on the wire. */
function buildRequestWithFlags(span, flags) {
  const w = protobuf.Writer;
  const spanBytes = PB.trace.v1.Span.encode(PB.trace.v1.Span.fromObject({
    traceId: hexToBuf(span.traceId), spanId: hexToBuf(span.spanId), name: span.name,
    startTimeUnixNano: '1700000000000000001', endTimeUnixNano: '1700000000000000002',
  })).finish();
  const withFlags = Buffer.concat([spanBytes, Buffer.from(w.create().uint32((16 << 3) | 5).fixed32(flags).finish())]);
  const scopeSpans = w.create().uint32((2 << 3) | 2).bytes(withFlags).finish();
  const resourceSpans = w.create().uint32((2 << 3) | 2).bytes(scopeSpans).finish();
  return Buffer.from(w.create().uint32((1 << 3) | 2).bytes(resourceSpans).finish());
}

// ---------------------------------------------------------------------------
// Phase A: official OpenTelemetry JS exporter as the client

async function phaseA() {
  console.log('# phase A: official @opentelemetry/exporter-trace-otlp-proto 0.51.1 as client');
  const c = await startCollector('a', [{ status: 503, retryAfter: '1' }, { status: 200 }]);
  ok(fs.readFileSync(c.ready, 'utf8').trim() === String(c.port), 'ready file holds the listening port', fs.readFileSync(c.ready, 'utf8'));
  const url = `http://127.0.0.1:${c.port}/v1/traces`;

  // Batch: all three spans in one request; the first attempt gets 503 + Retry-After: 1.
  const provider = new BasicTracerProvider({ resource: new Resource({ 'service.name': 'collector-selftest' }) });
  const exporter = new OTLPTraceExporter({ url, headers: { 'x-selftest': 'batch' }, timeoutMillis: 8000 });
  provider.addSpanProcessor(new BatchSpanProcessor(exporter, { scheduledDelayMillis: 60000, exportTimeoutMillis: 9000 }));
  const tracer = provider.getTracer('selftest', '1.2.3');

  const rootSpan = tracer.startSpan('selftest.root', {
    kind: api.SpanKind.SERVER,
    attributes: { 'str.attr': 'hello', 'int.attr': 42, 'double.attr': 1.5, 'bool.attr': true, 'array.attr': ['a', 'b'] },
  });
  rootSpan.addEvent('checkpoint', { 'event.step': 7 });
  const ctx = api.trace.setSpan(api.ROOT_CONTEXT, rootSpan);
  const child = tracer.startSpan('selftest.child', { kind: api.SpanKind.CLIENT }, ctx);
  child.end();
  const errSpan = tracer.startSpan('selftest.error');
  errSpan.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' });
  errSpan.end();
  rootSpan.end();
  const t0 = Date.now();
  await provider.forceFlush();
  const flushMs = Date.now() - t0;
  await provider.shutdown();

  // Gzip: a separate exporter with compression, one span; the plan is exhausted -> default 200.
  // Not SimpleSpanProcessor: in 0.51.1 the proto exporter defers its first send by a
  // setImmediate (lazy protobufjs load), so SimpleSpanProcessor.forceFlush() resolves
  // before the request is even queued and shutdown() then drops it. BatchSpanProcessor's
  // forceFlush waits for the export callback.
  const provider2 = new BasicTracerProvider({ resource: new Resource({ 'service.name': 'collector-selftest-gzip' }) });
  provider2.addSpanProcessor(new BatchSpanProcessor(new OTLPTraceExporter({ url, compression: 'gzip', timeoutMillis: 5000 }), { scheduledDelayMillis: 60000 }));
  provider2.getTracer('selftest-gzip').startSpan('selftest.gzip').end();
  await provider2.forceFlush();
  await provider2.shutdown();

  const stop = await stopCollector(c);
  ok(stop.code === 0, 'collector exits 0 on SIGTERM', stop);

  const recs = check.readLog(c.log);
  ok(recs.length === 3, 'three requests logged (503, retried 200, gzip 200)', recs.map((r) => r.response && r.response.status));
  const [r1, r2, r3] = recs;
  if (!r1 || !r2 || !r3) return;
  ok(r1.response.status === 503 && r1.response.retryAfter === '1', 'first attempt answered 503 with Retry-After: 1', r1.response);
  ok(r2.response.status === 200, 'retry answered 200', r2.response);
  ok(r1.sha256 === r2.sha256, 'retry re-sent a byte-identical body');
  const gap = Date.parse(r2.time) - Date.parse(r1.time);
  // 0.51.1 waits exactly Retry-After seconds; its own backoff would wait >= 1500 ms.
  ok(gap >= 950 && gap < 1500, `exporter honoured Retry-After: 1 (retry after ${gap} ms; flush took ${flushMs} ms)`, gap);
  for (const r of recs) {
    ok(r.decodeError === null && r.verifyError === null, `request ${r.n}: decoded and verify() passed`, [r.decodeError, r.verifyError]);
    ok(r.headers['content-type'] === 'application/x-protobuf', `request ${r.n}: Content-Type application/x-protobuf`, r.headers);
    ok(/^OTel-OTLP-Exporter-JavaScript\/0\.51\.1$/.test(r.headers['user-agent'] || ''), `request ${r.n}: official User-Agent`, r.headers['user-agent']);
  }
  ok(r1.headers['x-selftest'] === 'batch', 'x-* header logged', r1.headers);
  ok(r3.headers['content-encoding'] === 'gzip' && r3.inflatedBytes > 0 && r3.bodyBytes !== r3.inflatedBytes,
    'gzip request inflated and decoded', { enc: r3.headers['content-encoding'], raw: r3.bodyBytes, inflated: r3.inflatedBytes });
  ok(r3.response.step === null && r3.response.status === 200, 'request after the plan got the default 200', r3.response);

  const rows = check.summarize(recs);
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  ok(rows.length === 4 && rows.every((r) => r.count === 1 && r.identical), 'summary: 4 unique accepted spans, each once', check.formatSummary(rows));
  const all = check.spansOf(recs);
  ok(all.length === 7, 'the 503-answered copy carried the same 3 spans', all.length);

  const R = byName['selftest.root'];
  const C = byName['selftest.child'];
  const E = byName['selftest.error'];
  if (!ok(R && C && E && byName['selftest.gzip'], 'spans arrived with the right names', Object.keys(byName))) return;
  ok(R.parentSpanId === '' && /^[0-9a-f]{32}$/.test(R.traceId) && /^[0-9a-f]{16}$/.test(R.spanId), 'root span: hex ids, no parent', R);
  ok(C.parentSpanId === R.spanId && C.traceId === R.traceId, 'child span: parent id and trace id of the root', { child: C.parentSpanId, root: R.spanId });
  ok(R.span.kind === 2 && C.span.kind === 3, 'span kinds SERVER=2 / CLIENT=3 (proto numbering)', [R.span.kind, C.span.kind]);
  const a = check.attrs(R.span.attributes);
  ok(a['str.attr'] === 'hello' && a['int.attr'] === 42 && a['double.attr'] === 1.5 && a['bool.attr'] === true &&
    JSON.stringify(a['array.attr']) === '["a","b"]', 'root span attributes (string/int/double/bool/array)', a);
  ok(R.span.attributes.find((kv) => kv.key === 'int.attr').value.intValue === '42', 'int64 attribute logged as a decimal string', R.span.attributes);
  ok(R.events === 1 && R.span.events[0].name === 'checkpoint' && check.attrs(R.span.events[0].attributes)['event.step'] === 7,
    'root span event with attribute', R.span.events);
  ok(E.statusCode === 2 && E.span.status.message === 'boom', 'error span: status ERROR (2) "boom"', E.span.status);
  ok(R.statusCode === 0 && C.statusCode === 0, 'other spans: status UNSET', [R.statusCode, C.statusCode]);
  const nowNs = BigInt(Date.now()) * 1000000n;
  ok(rows.every((r) => /^\d{19}$/.test(r.start) && BigInt(r.end) >= BigInt(r.start) && nowNs - BigInt(r.start) < 60n * 1000000000n),
    'fixed64 timestamps are exact 19-digit strings, end >= start, recent', rows.map((r) => [r.start, r.end]));
  ok(check.attrs(R.resource.attributes)['service.name'] === 'collector-selftest', 'resource service.name', R.resource);
  const scope = r2.request.resourceSpans[0].scopeSpans[0].scope;
  ok(scope.name === 'selftest' && scope.version === '1.2.3', 'instrumentation scope name/version', scope);
  ok(rows.every((r) => r.span.flags === undefined), 'no Span.flags on the wire from exporter 0.51.1');
  ok(check.conformanceProblems(recs).length === 0, 'check.conformanceProblems: none', check.conformanceProblems(recs));

  const sum = spawnSync(process.execPath, [path.join(HERE, 'check.js'), 'summary', c.log], { encoding: 'utf8', timeout: 10000 });
  const lines = sum.stdout.trim().split('\n');
  ok(sum.status === 0 && lines.length === 4 && lines.some((l) => l.startsWith(`${C.traceId} ${C.spanId} ${R.spanId} "selftest.child" 0 events=0 `)),
    'check.js summary CLI', sum.stdout + sum.stderr);
  console.log(lines.map((l) => `     ${l}`).join('\n'));
  const conf = spawnSync(process.execPath, [path.join(HERE, 'check.js'), 'assert-conformance', c.log], { encoding: 'utf8', timeout: 10000 });
  ok(conf.status === 0, 'check.js assert-conformance exits 0', conf.stdout + conf.stderr);
}

// ---------------------------------------------------------------------------
// Phase B: the plan language and error paths, with raw HTTP

async function phaseB() {
  console.log('# phase B: plan steps and error paths (raw HTTP)');
  const plan = {
    steps: [
      { status: 200, partial: { rejected: 2, message: 'two rejected' } },
      { status: 429, retryAfter: '+3s', message: 'slow down' },
      { reset: true },
      { delay: 300, status: 200 },
      { status: 200 },
      { hang: 5000 },
    ],
    default: { status: 202 },
  };
  const c = await startCollector('b', plan, ['--max-body', '4096']);
  const good = buildRequest([{ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', name: 'raw.ok' }]);
  const pbHeaders = { 'Content-Type': 'application/x-protobuf' };
  const Resp = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;

  // Not consuming plan steps: wrong path / method / type / undecodable / too large.
  let r = await request(c.port, { path: '/v1/metrics', headers: pbHeaders, body: good });
  ok(r.status === 404, 'other path -> 404', r.status);
  r = await request(c.port, { method: 'GET' });
  ok(r.status === 405, 'GET /v1/traces -> 405', r.status);
  r = await request(c.port, { headers: { 'Content-Type': 'application/json' }, body: '{}' });
  ok(r.status === 415 && r.headers['content-type'] === 'application/x-protobuf', 'application/json -> 415 (google.rpc.Status body)', r.status);
  r = await request(c.port, { headers: pbHeaders, body: Buffer.from([0x0a, 0x05, 0x01]) });
  ok(r.status === 400, 'truncated protobuf -> 400', r.status);
  r = await request(c.port, { headers: { ...pbHeaders, 'Content-Encoding': 'gzip' }, body: Buffer.from('not gzip') });
  ok(r.status === 400, 'bad gzip -> 400', r.status);
  r = await request(c.port, { headers: pbHeaders, body: Buffer.alloc(5000) });
  ok(r.status === 413, 'body over --max-body -> 413', r.status);
  r = await request(c.port, { headers: { ...pbHeaders, 'Content-Encoding': 'gzip' }, body: zlib.gzipSync(Buffer.alloc(5000)) });
  ok(r.status === 413, 'inflated body over --max-body -> 413', r.status);
  // Decodes, but verify() rejects it: an AnyValue with two members of the "value" oneof.
  const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
  const twoOneofs = Req.encode(Req.fromObject({ resourceSpans: [{ scopeSpans: [{ spans: [{
    traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2), name: 'two.oneofs', startTimeUnixNano: '1', endTimeUnixNano: '2',
    attributes: [{ key: 'k', value: { stringValue: 's', intValue: '5' } }],
  }] }] }] })).finish();
  r = await request(c.port, { headers: pbHeaders, body: twoOneofs });
  ok(r.status === 400, 'verify() failure -> 400', r.status);

  // Plan step 0: partial success.
  r = await request(c.port, { headers: { ...pbHeaders, 'X-Test-Case': 'partial' }, body: good });
  const decoded = r.status === 200 ? Resp.toObject(Resp.decode(r.body), { longs: Number }) : null;
  ok(r.status === 200 && r.headers['content-type'] === 'application/x-protobuf' && decoded && decoded.partialSuccess &&
    decoded.partialSuccess.rejectedSpans === 2 && decoded.partialSuccess.errorMessage === 'two rejected',
  'step 0: 200 with partial_success {2, "two rejected"}', decoded);
  // Step 1: 429, relative Retry-After as an IMF-fixdate, google.rpc.Status body.
  r = await request(c.port, { headers: pbHeaders, body: good });
  const ra = r.headers && r.headers['retry-after'];
  const ahead = Date.parse(ra) - Date.now();
  ok(r.status === 429 && /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(ra) && ahead > 1900 && ahead <= 4100,
    'step 1: 429 with Retry-After IMF-fixdate ~3 s ahead', { ra, ahead });
  const expectStatus = Buffer.concat([Buffer.from([0x08, 0x08, 0x12, 9]), Buffer.from('slow down')]);
  ok(r.body && r.body.equals(expectStatus), 'step 1: body is google.rpc.Status{code 8, "slow down"} byte for byte', r.body && r.body.toString('hex'));
  // Step 2: reset.
  r = await request(c.port, { headers: pbHeaders, body: good });
  ok(r.error && /ECONNRESET|socket hang up/.test(`${r.error.code} ${r.error.message}`), 'step 2: connection reset without answer', r.error && r.error.message);
  // Step 3: delayed 200.
  r = await request(c.port, { headers: pbHeaders, body: good });
  ok(r.status === 200 && r.body.length === 0 && r.ms >= 290, `step 3: 200 with empty body after delay (${r.ms} ms)`, r);
  // Step 4: accepted, but ids of the wrong length and Span.flags on the wire.
  const bad = buildRequest([{ traceId: '0102030405', spanId: '00000000000000000000', name: '' }]);
  const flagged = buildRequestWithFlags({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', name: 'raw.flags' }, 0x301);
  r = await request(c.port, { headers: pbHeaders, body: Buffer.concat([bad, flagged]) }); // concatenated messages merge
  ok(r.status === 200, 'step 4: 200 for a decodable request with bad ids', r.status);
  // Step 5: hang 5 s; the client gives up after 300 ms.
  r = await request(c.port, { headers: pbHeaders, body: good, timeout: 300 });
  ok(r.error && r.ms < 2000, `step 5: hang -> client timed out (${r.ms} ms)`, r.error && r.error.message);
  // Plan exhausted: default 202.
  r = await request(c.port, { headers: pbHeaders, body: good });
  ok(r.status === 202, 'after the plan: default 202', r.status);

  const stop = await stopCollector(c);
  ok(stop.code === 0 && stop.ms < 2000, `SIGTERM with a hanging request pending: exit 0 in ${stop.ms} ms`, stop);

  const recs = check.readLog(c.log);
  ok(recs.length === 15, '15 requests logged', recs.length);
  const statuses = recs.map((x) => (x.response.reset ? 'reset' : x.response.status));
  ok(JSON.stringify(statuses) === JSON.stringify([404, 405, 415, 400, 400, 413, 413, 400, 200, 429, 'reset', 200, 200, 200, 202]),
    'logged responses in order', statuses);
  ok(recs[3].decodeError && recs[4].decodeError && recs[4].decodeError.startsWith('gunzip'), 'decode errors logged', [recs[3].decodeError, recs[4].decodeError]);
  ok(recs[7].decodeError === null && /value: multiple values/.test(recs[7].verifyError || ''), 'verify() error logged (oneof with two members)', recs[7].verifyError);
  ok(recs[8].headers['x-test-case'] === 'partial' && recs[8].response.partial.rejected === 2, 'x-* header and partial response logged', recs[8]);
  ok(recs[13].response.hangMs === 5000, 'hang step logged', recs[13].response);
  const spans = check.spansOf([recs[12]]).map((s) => s.span);
  const flaggedSpan = spans.find((s) => s.name === 'raw.flags');
  ok(flaggedSpan && flaggedSpan.flags === 0x301 && recs[12].reencodedBytes === recs[12].inflatedBytes - 6,
    'Span.flags (unknown to the 0.51.1 schema) recovered by the wire scan', { flags: flaggedSpan && flaggedSpan.flags, re: recs[12].reencodedBytes, in: recs[12].inflatedBytes });
  const problems = check.conformanceProblems(recs);
  const want = ['decodeError', 'verifyError', 'trace id is not 16', 'span id is not 8', 'empty name'];
  ok(want.every((w) => problems.some((p) => p.includes(w))), 'conformanceProblems finds decode/verify errors, bad ids, empty name', problems);
  const conf = spawnSync(process.execPath, [path.join(HERE, 'check.js'), 'assert-conformance', c.log], { encoding: 'utf8', timeout: 10000 });
  ok(conf.status === 1 && /conformance: FAILED/.test(conf.stdout), 'check.js assert-conformance exits 1 on a bad log', conf.stdout);

  // Bad plan files are rejected up front.
  const badPlan = path.join(tmp, 'bad.plan.json');
  fs.writeFileSync(badPlan, JSON.stringify([{ stauts: 200 }]));
  const bp = spawnSync(process.execPath, [COLLECTOR, '--port', '0', '--plan', badPlan, '--log', path.join(tmp, 'bad.jsonl')], { encoding: 'utf8', timeout: 5000 });
  ok(bp.status === 2 && /unknown key "stauts"/.test(bp.stderr), 'a misspelt plan key is rejected (exit 2)', bp.stderr);
}

(async () => {
  try {
    await phaseA();
    await phaseB();
  } catch (e) {
    ok(false, 'selftest threw', e && e.stack ? e.stack : String(e));
  }
  clearTimeout(watchdog);
  fs.rmSync(tmp, { recursive: true, force: true });
  finish(false);
})();
