#!/usr/bin/env node
// Helpers for reading a collector.js request log (JSON lines). Usable as a module:
//
//   const check = require('./tests/collector/check.js');
//   const recs = check.readLog('requests.jsonl');
//   const rows = check.summarize(recs);          // unique spans of 2xx-answered requests
//   const problems = check.conformanceProblems(recs);
//
// or as a CLI:
//
//   node check.js summary requests.jsonl
//   node check.js assert-conformance requests.jsonl
//   node check.js wait requests.jsonl SPANS [TIMEOUT_S]   (wait until >= SPANS unique spans were accepted)
'use strict';

const fs = require('fs');

/** All records of a log file (a missing file reads as no records). */
function readLog(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

/** True when the collector answered the request with a 2xx (a reset is not an answer). */
function accepted(rec) {
  const r = rec.response;
  return !!(rec.request && r && !r.reset && r.status >= 200 && r.status < 300);
}

/** Every span of the given records, with its resource, scope and request number. */
function spansOf(records) {
  const out = [];
  for (const rec of records) {
    for (const rs of (rec.request && rec.request.resourceSpans) || []) {
      for (const ss of rs.scopeSpans || []) {
        for (const span of ss.spans || []) {
          out.push({ n: rec.n, span, resource: rs.resource || {}, scope: ss.scope || {} });
        }
      }
    }
  }
  return out;
}

/** AnyValue (toObject form) -> JS value. Ints become Numbers when safe, else stay strings. */
function anyValue(v) {
  if (!v) return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) {
    const n = Number(v.intValue);
    return Number.isSafeInteger(n) ? n : v.intValue;
  }
  if ('doubleValue' in v) return typeof v.doubleValue === 'string' ? Number(v.doubleValue) : v.doubleValue;
  if ('arrayValue' in v) return ((v.arrayValue && v.arrayValue.values) || []).map(anyValue);
  if ('kvlistValue' in v) return attrs((v.kvlistValue && v.kvlistValue.values) || []);
  if ('bytesValue' in v) return v.bytesValue; // base64
  return undefined;
}

/** [KeyValue] -> {key: value}. */
function attrs(list) {
  const o = {};
  for (const kv of list || []) o[kv.key] = anyValue(kv.value);
  return o;
}

/**
 * Unique spans (by traceId+spanId) of the accepted requests, sorted by start time.
 * Each row: {traceId, spanId, parentSpanId, name, statusCode, events, start, end,
 * count (copies received), identical (all copies had the same JSON), span, resource}.
 */
function summarize(records) {
  const byKey = new Map();
  for (const s of spansOf(records.filter(accepted))) {
    const key = `${s.span.traceId}/${s.span.spanId}`;
    const json = JSON.stringify(s.span);
    const row = byKey.get(key);
    if (row) {
      row.count++;
      if (json !== row.json) row.identical = false;
      continue;
    }
    byKey.set(key, {
      traceId: s.span.traceId || '',
      spanId: s.span.spanId || '',
      parentSpanId: s.span.parentSpanId || '',
      name: s.span.name || '',
      statusCode: (s.span.status && s.span.status.code) || 0,
      events: (s.span.events || []).length,
      start: s.span.startTimeUnixNano || '0',
      end: s.span.endTimeUnixNano || '0',
      count: 1,
      identical: true,
      json,
      span: s.span,
      resource: s.resource,
    });
  }
  const rows = [...byKey.values()];
  rows.sort((a, b) => {
    const d = BigInt(a.start) - BigInt(b.start);
    if (d !== 0n) return d < 0n ? -1 : 1;
    return a.traceId < b.traceId ? -1 : a.traceId > b.traceId ? 1 : 0;
  });
  for (const r of rows) delete r.json;
  return rows;
}

/** One line per row: traceId spanId parent|- "name" status.code events=N start end xCOUNT identical|DIFFERENT */
function formatSummary(rows) {
  return rows.map((r) => [
    r.traceId, r.spanId, r.parentSpanId || '-', JSON.stringify(r.name), r.statusCode,
    `events=${r.events}`, r.start, r.end, `x${r.count}`, r.identical ? 'identical' : 'DIFFERENT',
  ].join(' '));
}

const isHex = (s, bytes) => typeof s === 'string' && s.length === bytes * 2 && /^[0-9a-f]*$/.test(s);
const isZero = (s) => /^0*$/.test(s);

function duplicateKeys(list) {
  const seen = new Set();
  const dups = new Set();
  for (const kv of list || []) (seen.has(kv.key) ? dups : seen).add(kv.key);
  return [...dups];
}

/**
 * Problems found in the log: decode/verify errors, and per span: trace id not 16
 * non-zero bytes, span id not 8 non-zero bytes, parent neither empty nor 8 bytes,
 * empty name, missing or inverted timestamps, duplicate attribute keys, bad link ids.
 * Returns an array of strings (empty = conformant).
 */
function conformanceProblems(records) {
  const p = [];
  for (const rec of records) {
    if (rec.decodeError) p.push(`request ${rec.n}: decodeError: ${rec.decodeError}`);
    if (rec.verifyError) p.push(`request ${rec.n}: verifyError: ${rec.verifyError}`);
    for (const rs of (rec.request && rec.request.resourceSpans) || []) {
      for (const k of duplicateKeys(rs.resource && rs.resource.attributes)) p.push(`request ${rec.n}: duplicate resource attribute "${k}"`);
    }
  }
  for (const { n, span } of spansOf(records)) {
    const id = `request ${n} span ${span.spanId || '?'} "${span.name || ''}"`;
    if (!isHex(span.traceId, 16) || isZero(span.traceId)) p.push(`${id}: trace id is not 16 non-zero bytes (${span.traceId || 'empty'})`);
    if (!isHex(span.spanId, 8) || isZero(span.spanId)) p.push(`${id}: span id is not 8 non-zero bytes (${span.spanId || 'empty'})`);
    if (span.parentSpanId !== undefined && (!isHex(span.parentSpanId, 8) || isZero(span.parentSpanId))) {
      p.push(`${id}: parent span id is neither empty nor 8 non-zero bytes (${span.parentSpanId})`);
    }
    if (!span.name) p.push(`${id}: empty name`);
    const start = BigInt(span.startTimeUnixNano || '0');
    const end = BigInt(span.endTimeUnixNano || '0');
    if (start === 0n) p.push(`${id}: start_time_unix_nano missing`);
    if (end === 0n) p.push(`${id}: end_time_unix_nano missing`);
    if (end < start) p.push(`${id}: end ${end} < start ${start}`);
    for (const k of duplicateKeys(span.attributes)) p.push(`${id}: duplicate attribute key "${k}"`);
    (span.events || []).forEach((ev, i) => {
      for (const k of duplicateKeys(ev.attributes)) p.push(`${id}: event ${i} duplicate attribute key "${k}"`);
    });
    (span.links || []).forEach((l, i) => {
      if (!isHex(l.traceId, 16) || isZero(l.traceId)) p.push(`${id}: link ${i} trace id is not 16 non-zero bytes`);
      if (!isHex(l.spanId, 8) || isZero(l.spanId)) p.push(`${id}: link ${i} span id is not 8 non-zero bytes`);
    });
  }
  return p;
}

/** Resolves with the summary once at least `minSpans` unique spans were accepted. */
async function waitForSpans(file, minSpans, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = summarize(readLog(file));
    if (rows.length >= minSpans) return rows;
    if (Date.now() > deadline) throw new Error(`timeout: ${rows.length}/${minSpans} spans in ${file}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function usage() {
  process.stderr.write('usage: node check.js summary|assert-conformance LOG\n       node check.js wait LOG SPANS [TIMEOUT_S]\n');
  process.exit(2);
}

async function cli(argv) {
  const [cmd, file, ...rest] = argv;
  if (!cmd || !file) usage();
  if (cmd !== 'wait' && !fs.existsSync(file)) throw new Error(`no such log: ${file}`);
  if (cmd === 'summary') {
    for (const line of formatSummary(summarize(readLog(file)))) console.log(line);
    return 0;
  }
  if (cmd === 'assert-conformance') {
    const recs = readLog(file);
    const problems = conformanceProblems(recs);
    for (const line of problems) console.log(`FAIL ${line}`);
    const spans = spansOf(recs).length;
    console.log(`conformance: ${problems.length ? 'FAILED' : 'OK'} (${recs.length} requests, ${spans} spans, ${problems.length} problems)`);
    return problems.length ? 1 : 0;
  }
  if (cmd === 'wait') {
    const n = Number(rest[0]);
    if (!Number.isInteger(n)) usage();
    const rows = await waitForSpans(file, n, Number(rest[1] || 10) * 1000);
    for (const line of formatSummary(rows)) console.log(line);
    return 0;
  }
  usage();
  return 2;
}

if (require.main === module) {
  cli(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
    process.stderr.write(`check: ${e.message}\n`);
    process.exit(1);
  });
}

module.exports = { readLog, accepted, spansOf, anyValue, attrs, summarize, formatSummary, conformanceProblems, waitForSpans };
