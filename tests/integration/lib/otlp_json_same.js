#!/usr/bin/env node
// otlp_json_same.js -- whether two OTLP/JSON ExportTraceServiceRequest
// files hold the same spans: every span with its resource and scope,
// compared field by field, whatever the grouping and order.
//
//   node otlp_json_same.js A.json B.json    (exit 0 same, 1 different)
'use strict';
const fs = require('fs');

// Keys sorted; an empty array left out (proto3: the same as absent).
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v).sort()) {
      if (!(Array.isArray(v[k]) && v[k].length === 0)) o[k] = canon(v[k]);
    }
    return o;
  }
  return v;
}

function spans(file) {
  const req = JSON.parse(fs.readFileSync(file, 'utf8'));
  const out = new Map();
  for (const rs of req.resourceSpans || []) {
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        out.set(`${s.traceId}/${s.spanId}`, JSON.stringify(canon({ resource: rs.resource || {}, scope: ss.scope || {}, span: s })));
      }
    }
  }
  return out;
}

const a = spans(process.argv[2]), b = spans(process.argv[3]);
let bad = 0;
if (a.size !== b.size) { console.log(`span count: ${a.size} vs ${b.size}`); bad++; }
for (const [k, v] of a) {
  if (b.get(k) !== v) {
    const w = b.get(k) || '';
    let i = 0;
    while (i < v.length && v[i] === w[i]) i++;
    console.log(`span ${k} differs at ${i}:\n  ${v.slice(Math.max(0, i - 80), i + 80)}\n  ${w.slice(Math.max(0, i - 80), i + 80)}`);
    bad++;
  }
}
if (bad) process.exit(1);
console.log(`same: ${a.size} spans`);
