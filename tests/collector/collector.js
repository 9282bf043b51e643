#!/usr/bin/env node
// Scripted OTLP/HTTP (protobuf) trace receiver for libtaskspan tests.
//
//   node collector.js --port 0 --plan plan.json --log requests.jsonl [--ready-file F]
//                     [--max-body BYTES]
//
// Requests are decoded with the official OpenTelemetry schema as compiled by the
// OpenTelemetry JS project (@opentelemetry/otlp-proto-exporter-base 0.51.1,
// build/src/generated/root.js, protobufjs static code). See README.md for the plan
// and log formats.
'use strict';

const fs = require('fs');
const http = require('http');
const zlib = require('zlib');
const crypto = require('crypto');
const protobuf = require('protobufjs/minimal');
const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js');

const TRACE = root.opentelemetry.proto.trace.v1;
const COLLECTOR = root.opentelemetry.proto.collector.trace.v1;
const ExportTraceServiceRequest = COLLECTOR.ExportTraceServiceRequest;
const ExportTraceServiceResponse = COLLECTOR.ExportTraceServiceResponse;

// Without long.js protobufjs decodes fixed64 as JS numbers and loses precision on
// nanosecond timestamps. protobufjs 7 depends on long, so this should never fire.
if (!protobuf.util.Long) {
  throw new Error('protobufjs has no Long support (package "long" missing): 64-bit fields would lose precision');
}

const DEFAULT_MAX_BODY = 64 * 1024 * 1024; // OTLP spec's recommended server limit
const TRACES_PATH = '/v1/traces';
const PROTOBUF = 'application/x-protobuf';

// google.rpc.Code values used in the Status bodies (the code is informational in OTLP).
const RPC_CODE_FOR_HTTP = {
  400: 3, // INVALID_ARGUMENT
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 12, // UNIMPLEMENTED (what the OTel Collector maps 404 from)
  405: 12,
  413: 8, // RESOURCE_EXHAUSTED
  415: 3,
  429: 8, // RESOURCE_EXHAUSTED
  500: 13, // INTERNAL
  502: 14, // UNAVAILABLE
  503: 14, // UNAVAILABLE
  504: 4, // DEADLINE_EXCEEDED
};

// ---------------------------------------------------------------------------
// Protobuf helpers

/** google.rpc.Status { int32 code = 1; string message = 2; } (details not emitted). */
function encodeRpcStatus(code, message) {
  const w = protobuf.Writer.create();
  if (code) w.uint32((1 << 3) | 0).int32(code);
  if (message) w.uint32((2 << 3) | 2).string(message);
  return Buffer.from(w.finish());
}

function encodeExportResponse(partial) {
  if (!partial) return Buffer.alloc(0); // full success: partial_success unset => empty message
  const msg = ExportTraceServiceResponse.fromObject({
    partialSuccess: {
      rejectedSpans: String(partial.rejected || 0),
      errorMessage: partial.message || '',
    },
  });
  return Buffer.from(ExportTraceServiceResponse.encode(msg).finish());
}

/**
 * The 0.51.1 schema predates Span.flags (field 16, fixed32) and Span.Link.flags
 * (field 6, fixed32), so protobufjs skips them as unknown fields. This walks the wire
 * format along request(1) -> ResourceSpans.scope_spans(2) -> ScopeSpans.spans(2) ->
 * Span (links = 13) and returns the flags it finds, in document order:
 * [[[{flags, links: [flags|undefined...]}]]] indexed [resourceSpans][scopeSpans][spans].
 */
function scanFlags(buf) {
  function fields(bytes, onField) {
    const r = protobuf.Reader.create(bytes);
    while (r.pos < r.len) {
      const tag = r.uint32();
      const no = tag >>> 3;
      const wt = tag & 7;
      if (wt === 2) onField(no, wt, r.bytes());
      else if (wt === 5) onField(no, wt, r.fixed32());
      else r.skipType(wt);
    }
  }
  const out = [];
  fields(buf, (no, wt, rsBytes) => {
    if (no !== 1 || wt !== 2) return;
    const rs = [];
    out.push(rs);
    fields(rsBytes, (no2, wt2, ssBytes) => {
      if (no2 !== 2 || wt2 !== 2) return;
      const ss = [];
      rs.push(ss);
      fields(ssBytes, (no3, wt3, spanBytes) => {
        if (no3 !== 2 || wt3 !== 2) return;
        const span = { flags: undefined, links: [] };
        ss.push(span);
        fields(spanBytes, (no4, wt4, v) => {
          if (no4 === 16 && wt4 === 5) span.flags = v;
          else if (no4 === 13 && wt4 === 2) {
            let linkFlags;
            fields(v, (no5, wt5, lv) => { if (no5 === 6 && wt5 === 5) linkFlags = lv; });
            span.links.push(linkFlags);
          }
        });
      });
    });
  });
  return out;
}

/**
 * The sha256 of each Span message's own bytes, in document order (the order of
 * check.spansOf on the decoded request): request(1) -> ResourceSpans.scope_spans(2)
 * -> ScopeSpans.spans(2). It lets a test prove that two copies of a span were
 * byte-identical on the wire even when they travelled in different batches.
 */
function scanSpanHashes(buf) {
  const out = [];
  const each = (bytes, want, fn) => {
    const r = protobuf.Reader.create(bytes);
    while (r.pos < r.len) {
      const tag = r.uint32();
      if ((tag >>> 3) === want && (tag & 7) === 2) fn(r.bytes());
      else r.skipType(tag & 7);
    }
  };
  each(buf, 1, (rs) => each(rs, 2, (ss) => each(ss, 2, (span) => out.push(sha256(span)))));
  return out;
}

const ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId']);

/** Replace Buffers: ids -> lowercase hex, any other bytes (AnyValue.bytesValue) -> base64. */
function normalizeBytes(value, key) {
  if (value instanceof Uint8Array) {
    const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return ID_KEYS.has(key) ? b.toString('hex') : b.toString('base64');
  }
  if (Array.isArray(value)) return value.map((v) => normalizeBytes(v, key));
  if (value && typeof value === 'object') {
    const o = {};
    for (const [k, v] of Object.entries(value)) o[k] = normalizeBytes(v, k);
    return o;
  }
  return value;
}

/** Decoded message -> plain JSON-able object (see README "Log format"). */
function requestToLogObject(msg, inflated) {
  const obj = normalizeBytes(
    ExportTraceServiceRequest.toObject(msg, { longs: String, enums: Number, defaults: false, json: true }),
  );
  // Attach flags found by the wire scan (absent on the wire => no "flags" key).
  let flags = [];
  try { flags = scanFlags(inflated); } catch (e) { flags = []; }
  (obj.resourceSpans || []).forEach((rs, i) => {
    (rs.scopeSpans || []).forEach((ss, j) => {
      (ss.spans || []).forEach((span, k) => {
        const f = flags[i] && flags[i][j] && flags[i][j][k];
        if (!f) return;
        if (f.flags !== undefined) span.flags = f.flags;
        (span.links || []).forEach((link, l) => {
          if (f.links[l] !== undefined) link.flags = f.links[l];
        });
      });
    });
  });
  return obj;
}

function countSpans(obj) {
  let n = 0;
  for (const rs of (obj && obj.resourceSpans) || []) {
    for (const ss of rs.scopeSpans || []) n += (ss.spans || []).length;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Plan

const STEP_KEYS = new Set(['status', 'partial', 'retryAfter', 'message', 'code', 'reset', 'hang', 'delay', 'note']);

function validateStep(step, where) {
  if (!step || typeof step !== 'object' || Array.isArray(step)) throw new Error(`${where}: step must be an object`);
  for (const k of Object.keys(step)) {
    if (!STEP_KEYS.has(k)) throw new Error(`${where}: unknown key "${k}"`);
  }
  if (step.status !== undefined && !(Number.isInteger(step.status) && step.status >= 200 && step.status <= 599)) {
    throw new Error(`${where}: status must be an integer 200..599`);
  }
  for (const k of ['hang', 'delay']) {
    if (step[k] !== undefined && !(Number.isFinite(step[k]) && step[k] >= 0)) throw new Error(`${where}: ${k} must be ms >= 0`);
  }
  if (step.retryAfter !== undefined && typeof step.retryAfter !== 'string' && typeof step.retryAfter !== 'number') {
    throw new Error(`${where}: retryAfter must be a string or number`);
  }
  if (step.partial !== undefined) {
    const p = step.partial;
    if (!p || typeof p !== 'object' || !(Number.isInteger(p.rejected ?? 0) && (p.rejected ?? 0) >= 0)) {
      throw new Error(`${where}: partial must be {"rejected": N>=0, "message": "..."}`);
    }
  }
  return step;
}

function loadPlan(file) {
  if (!file) return { steps: [], default: { status: 200 } };
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  const plan = Array.isArray(raw) ? { steps: raw } : raw;
  if (!plan || !Array.isArray(plan.steps || [])) throw new Error('plan: expected an array or {"steps": [...], "default": {...}}');
  const steps = (plan.steps || []).map((s, i) => validateStep(s, `plan step ${i}`));
  const dflt = plan.default === undefined ? { status: 200 } : validateStep(plan.default, 'plan default');
  return { steps, default: dflt };
}

/** "+3s" / "+3" => IMF-fixdate at least 3 s ahead; anything else is sent verbatim. */
function formatRetryAfter(v) {
  const s = String(v);
  const m = /^\+(\d+(?:\.\d+)?)s?$/.exec(s);
  if (!m) return s;
  const at = Math.ceil((Date.now() + Number(m[1]) * 1000) / 1000) * 1000;
  return new Date(at).toUTCString(); // e.g. "Tue, 25 Nov 2025 17:42:03 GMT"
}

// ---------------------------------------------------------------------------
// Server

function parseArgs(argv) {
  const args = { port: 0, plan: null, log: null, readyFile: null, maxBody: DEFAULT_MAX_BODY };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') args.port = Number(next());
    else if (a === '--plan') args.plan = next();
    else if (a === '--log') args.log = next();
    else if (a === '--ready-file') args.readyFile = next();
    else if (a === '--max-body') args.maxBody = Number(next());
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: node collector.js --port 0 --plan plan.json --log requests.jsonl [--ready-file F] [--max-body BYTES]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) throw new Error('--port must be 0..65535');
  if (!args.log) throw new Error('--log is required');
  if (!(Number.isInteger(args.maxBody) && args.maxBody > 0)) throw new Error('--max-body must be a positive integer');
  return args;
}

function pickHeaders(h) {
  const out = {};
  for (const k of ['content-type', 'content-encoding', 'content-length', 'user-agent', 'accept-encoding', 'authorization']) {
    if (h[k] !== undefined) out[k] = h[k];
  }
  for (const [k, v] of Object.entries(h)) if (k.startsWith('x-')) out[k] = v;
  return out;
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

function startCollector(opts) {
  const plan = opts.planObject || loadPlan(opts.plan);
  const maxBody = opts.maxBody || DEFAULT_MAX_BODY;
  const logFd = fs.openSync(opts.log, 'w');
  const timers = new Set();
  let nextN = 1;
  let stepIndex = 0;

  const log = (rec) => fs.writeSync(logFd, JSON.stringify(rec) + '\n');
  const later = (ms, fn) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };

  function nextStep() {
    if (stepIndex < plan.steps.length) return { index: stepIndex, step: plan.steps[stepIndex++] };
    return { index: null, step: plan.default };
  }

  function send(res, status, body, extraHeaders) {
    if (res.socket && res.socket.destroyed) return;
    const headers = Object.assign({ 'Content-Type': PROTOBUF, 'Content-Length': body.length }, extraHeaders || {});
    res.writeHead(status, headers);
    res.end(body);
  }

  function sendError(res, status, message, extraHeaders, code) {
    send(res, status, encodeRpcStatus(code ?? RPC_CODE_FOR_HTTP[status] ?? 2, message), extraHeaders);
  }

  /** Answer one plan step; returns the "response" description for the log. */
  function answer(res, step, stepIdx) {
    const desc = { step: stepIdx };
    const delay = (step.delay || 0) + (step.hang || 0);
    if (step.hang !== undefined) desc.hangMs = step.hang;
    if (step.delay !== undefined) desc.delayMs = step.delay;
    if (step.reset) {
      desc.reset = true;
      desc.status = null;
      later(delay, () => res.socket && res.socket.destroy());
      return desc;
    }
    const status = step.status || 200;
    desc.status = status;
    const headers = {};
    if (step.retryAfter !== undefined) {
      headers['Retry-After'] = formatRetryAfter(step.retryAfter);
      desc.retryAfter = headers['Retry-After'];
    }
    let body;
    if (status >= 200 && status < 300) {
      body = encodeExportResponse(step.partial);
      if (step.partial) desc.partial = { rejected: step.partial.rejected || 0, message: step.partial.message || '' };
    } else {
      const code = step.code ?? RPC_CODE_FOR_HTTP[status] ?? 2;
      const message = step.message ?? http.STATUS_CODES[status] ?? 'error';
      body = encodeRpcStatus(code, message);
      desc.rpcStatus = { code, message };
    }
    desc.bodyBytes = body.length;
    if (delay > 0) later(delay, () => send(res, status, body, headers));
    else send(res, status, body, headers);
    return desc;
  }

  const server = http.createServer((req, res) => {
    const n = nextN++;
    const rec = {
      n,
      time: new Date().toISOString(),
      method: req.method,
      path: req.url,
      headers: pickHeaders(req.headers),
      bodyBytes: 0,
      sha256: null,
      inflatedBytes: null,
      inflatedSha256: null,
      reencodedBytes: null,
      spanCount: 0,
      decodeError: null,
      verifyError: null,
      response: null,
      request: null,
    };
    const chunks = [];
    let size = 0;
    let tooBig = false;
    const hash = crypto.createHash('sha256');
    req.on('data', (c) => {
      size += c.length;
      hash.update(c);
      if (size > maxBody) tooBig = true; // keep draining so the client can read our 413
      else chunks.push(c);
    });
    req.on('error', () => {});
    req.on('end', () => {
      rec.bodyBytes = size;
      rec.sha256 = hash.digest('hex');
      const reply = (status, message, extra) => {
        rec.response = { status, rpcStatus: { code: RPC_CODE_FOR_HTTP[status] ?? 2, message } };
        log(rec);
        sendError(res, status, message, extra);
      };
      const pathOnly = req.url.split('?')[0];
      if (pathOnly !== TRACES_PATH) return reply(404, `unknown path ${pathOnly}`);
      if (req.method !== 'POST') return reply(405, `method ${req.method} not allowed`, { Allow: 'POST' });
      const ctype = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
      if (ctype !== PROTOBUF) return reply(415, `unsupported content type "${req.headers['content-type'] || ''}" (only ${PROTOBUF})`);
      const enc = String(req.headers['content-encoding'] || 'identity').trim().toLowerCase();
      if (!['identity', 'gzip', 'none', ''].includes(enc)) return reply(415, `unsupported content encoding "${enc}"`);
      if (tooBig) return reply(413, `request body larger than ${maxBody} bytes`);

      let body = Buffer.concat(chunks);
      if (enc === 'gzip') {
        try {
          body = zlib.gunzipSync(body, { maxOutputLength: maxBody });
        } catch (e) {
          if (e.code === 'ERR_BUFFER_TOO_LARGE') return reply(413, `inflated body larger than ${maxBody} bytes`);
          rec.decodeError = `gunzip: ${e.message}`;
          return reply(400, rec.decodeError);
        }
      }
      rec.inflatedBytes = body.length;
      rec.inflatedSha256 = sha256(body);

      let msg;
      try {
        msg = ExportTraceServiceRequest.decode(body);
      } catch (e) {
        rec.decodeError = String(e && e.message ? e.message : e);
        return reply(400, `cannot decode ExportTraceServiceRequest: ${rec.decodeError}`);
      }
      rec.reencodedBytes = ExportTraceServiceRequest.encode(msg).finish().length;
      // Official conformance check: verify() on the toObject form (Long objects and
      // Buffers are what verify() accepts for 64-bit and bytes fields).
      rec.verifyError = ExportTraceServiceRequest.verify(ExportTraceServiceRequest.toObject(msg)) || null;
      rec.request = requestToLogObject(msg, body);
      rec.spanCount = countSpans(rec.request);
      // Added for the kill -9 tests: per-span hashes (see scanSpanHashes).
      try { rec.spanSha256 = scanSpanHashes(body); } catch (e) { rec.spanSha256 = null; }
      if (rec.verifyError) return reply(400, `ExportTraceServiceRequest.verify: ${rec.verifyError}`);

      const { index, step } = nextStep();
      rec.response = answer(res, step, index);
      log(rec);
    });
  });
  server.keepAliveTimeout = 5000;

  let closed = false;
  function close(cb) {
    if (closed) return cb && cb();
    closed = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    server.close(() => {
      try { fs.closeSync(logFd); } catch (e) { /* already closed */ }
      if (cb) cb();
    });
    if (server.closeAllConnections) server.closeAllConnections();
  }

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port || 0, '127.0.0.1', () => {
      resolve({ server, port: server.address().port, close });
    });
  });
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
    args.planObject = loadPlan(args.plan);
  } catch (e) {
    process.stderr.write(`collector: ${e.message}\n`);
    process.exit(2);
  }
  const c = await startCollector(args);
  if (args.readyFile) {
    const tmp = `${args.readyFile}.tmp${process.pid}`;
    fs.writeFileSync(tmp, `${c.port}\n`);
    fs.renameSync(tmp, args.readyFile);
  }
  process.stdout.write(`listening ${c.port}\n`);
  const stop = () => c.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`collector: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
}

module.exports = { startCollector, loadPlan, encodeRpcStatus, encodeExportResponse, formatRetryAfter, scanFlags, scanSpanHashes, root };
