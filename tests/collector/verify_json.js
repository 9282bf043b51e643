#!/usr/bin/env node
// verify_json.js -- check an OTLP JSON dump (`taskspan dump --format
// otlp-json`) against the official OpenTelemetry schema.
//
//   node verify_json.js FILE
//
// Loads FILE (one ExportTraceServiceRequest object), turns the hex trace and
// span ids into bytes (the schema's fromObject reads bytes fields as base64
// or buffers; OTLP JSON carries them as hex), builds the message with
// ExportTraceServiceRequest.fromObject, verifies it, encodes and decodes it
// again and compares the two objects. Prints "spans: N" and exits 0, or
// prints the problem and exits 1 (2 for a usage error).
'use strict';

const fs = require('fs');
const path = require('path');

let protobuf, root;
try {
  protobuf = require('protobufjs/minimal');
  root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js');
} catch (e) {
  console.error(`verify_json: the collector's node modules are missing: run 'npm ci --prefix tests/collector' (${e.message})`);
  process.exit(1);
}
if (!protobuf.util.Long) {
  console.error('verify_json: protobufjs has no Long support: 64-bit fields would lose precision');
  process.exit(1);
}
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

function fail(msg) {
  console.error(`verify_json: ${msg}`);
  process.exit(1);
}

const HEX_ID = { traceId: 32, spanId: 16, parentSpanId: 16 };

/** Replace hex id strings by Buffers, in place, checking their form. */
function idsToBytes(node, where) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => idsToBytes(v, `${where}[${i}]`));
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if (k in HEX_ID && typeof v === 'string') {
      if (!new RegExp(`^[0-9a-f]{${HEX_ID[k]}}$`).test(v)) {
        fail(`${where}.${k} is not ${HEX_ID[k]} lowercase hex digits: ${JSON.stringify(v)}`);
      }
      node[k] = Buffer.from(v, 'hex');
    } else {
      idsToBytes(v, `${where}.${k}`);
    }
  }
}

/** OTLP JSON rules the schema's fromObject would forgive. */
function checkForm(obj) {
  const int64 = /^-?[0-9]+$/;
  const walk = (node, where) => {
    if (Array.isArray(node)) return node.forEach((v, i) => walk(v, `${where}[${i}]`));
    if (node === null || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (/_/.test(k)) fail(`${where}.${k}: field names are lowerCamelCase in OTLP JSON`);
      if (/UnixNano$/.test(k) || k === 'intValue') {
        if (typeof v !== 'string' || !int64.test(v)) fail(`${where}.${k} must be a decimal string, got ${JSON.stringify(v)}`);
      }
      if ((k === 'kind' || k === 'code') && !Number.isInteger(v)) fail(`${where}.${k} must be an integer enum, got ${JSON.stringify(v)}`);
      walk(v, `${where}.${k}`);
    }
  };
  walk(obj, '$');
}

function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: node verify_json.js FILE');
    process.exit(2);
  }
  let text;
  try {
    text = fs.readFileSync(argv[0], 'utf8');
  } catch (e) {
    fail(`cannot read ${argv[0]}: ${e.message}`);
  }
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length !== 1) fail(`expected one line of JSON, got ${lines.length}`);
  let obj;
  try {
    obj = JSON.parse(lines[0]);
  } catch (e) {
    fail(`not JSON: ${e.message}`);
  }
  if (obj === null || typeof obj !== 'object' || !Array.isArray(obj.resourceSpans)) {
    fail('not an ExportTraceServiceRequest: no resourceSpans array');
  }
  checkForm(obj);
  idsToBytes(obj, '$');
  // verify() checks a message, not the JSON form (64-bit integers as
  // strings are the JSON form's): build the message, then verify it.
  let msg;
  try {
    msg = Request.fromObject(obj);
  } catch (e) {
    fail(`the schema rejects the dump: ${e.message}`);
  }
  const err = Request.verify(msg);
  if (err) fail(`the message built from the dump does not verify: ${err}`);

  // Round trip: encode, decode, and compare the object forms.
  const opts = { longs: String, bytes: String, enums: Number, defaults: false };
  const bytes = Request.encode(msg).finish();
  const back = Request.decode(bytes);
  const a = JSON.stringify(Request.toObject(msg, opts));
  const b = JSON.stringify(Request.toObject(back, opts));
  if (a !== b) fail('encoding and decoding the message changed it');

  let spans = 0;
  for (const rs of back.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        if (s.traceId.length !== 16 || s.spanId.length !== 8) fail(`span ${s.name}: bad id length`);
        if (s.name === '') fail('a span has no name');
        spans++;
      }
    }
  }
  console.log(`spans: ${spans}`);
}

if (require.main === module) {
  main(process.argv.slice(2));
}
module.exports = { idsToBytes, checkForm, dir: path.dirname(__filename) };
