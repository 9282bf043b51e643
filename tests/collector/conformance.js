#!/usr/bin/env node
// conformance.js -- checks what libtaskspan exported against what its buffer holds.
//
//   node conformance.js requests.jsonl expectations.json
//
// requests.jsonl is collector.js's log (every request answered 200). expectations.json is
// written by tests/integration/export_conformance.sh from the buffer and the tools:
//
//   {
//     "serviceName": "conformance-test",        // OTEL_SERVICE_NAME of the recorders
//     "sdkVersion": "0.1.0",                     // `taskspan --version`
//     "hostName": "vm",                          // uname -n
//     "resourceAttributes": {"team": "a/b"},     // what OTEL_RESOURCE_ATTRIBUTES must add
//     "resources": [{"id": 1, "attrs": "{...}"}],        // SELECT id, attrs FROM resources
//     "cases": [{
//       "kind": "seed" | "demo" | "crash",
//       "task": "task-abc-123",
//       "traceId": "534c...",                   // tools/trace_id (taskspan_task_trace_id_hex)
//       "events": [{"seq", "event_type", "actor", "span_key", "parent_key", "phase",
//                   "payload" (JSON text), "ts" (ts_ns as text), "incarnation",
//                   "resource_id"}],             // task_events, ORDER BY seq
//       "exportSpans": [{"traceId", "spanId", "name", "state", "last_error"}],
//       "items": 3, "failItem": 2               // demo and crash cases (failItem 0: none)
//     }]
//   }
//
// The expected spans are derived from the stored events as docs/span-model.md says (one
// span per span key and incarnation in these cases; times are the events' ts_ns; crashed
// incarnations; links), and the OTLP side from docs/export.md. On top of that, the seed
// case checks the fixed ids of docs/span-model.md's worked example and the exact payload
// values that tests/tools/record_seed.c records.
//
// Prints one "FAIL ..." line per failed check and "conformance: N checks passed, M failed";
// exits 0 only when nothing failed.
'use strict';

const fs = require('fs');
const path = require('path');
const check = require(path.join(__dirname, 'check.js'));

let passed = 0;
const failures = [];

function ok(cond, msg) {
  if (cond) passed++;
  else failures.push(msg);
  return !!cond;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sortKeys(o) {
  const out = {};
  for (const k of Object.keys(o || {}).sort()) out[k] = o[k];
  return out;
}

function eq(actual, expected, msg) {
  return ok(same(actual, expected), `${msg}: got ${JSON.stringify(actual)}, want ${JSON.stringify(expected)}`);
}

// ---------------------------------------------------------------------------
// docs/span-model.md, "The mapping table": span key, parent, actor, phase and the payload
// attributes of each typed helper, in recorded order, with their types.
// span: 'main' | 'work' (work_<work_item_id>) | 'recovery_sweep'; phase: null (none),
// 'arg' (the helper's phase argument) or the fixed value.
const MAPPING = {
  runner_spawn: { span: 'main', actor: 'runner', phase: null, fields: ['runner_pid', 'runner_version'] },
  runner_exit: { span: 'main', actor: 'runner', phase: null, fields: ['runner_pid', 'exit_reason', 'iterations'] },
  phase_enter: { span: 'main', actor: 'runner', phase: 'arg', fields: [] },
  phase_exit: { span: 'main', actor: 'runner', phase: 'arg', fields: [] },
  phase_progress: { span: 'main', actor: 'runner', phase: 'arg', fields: ['completed', 'total'] },
  checkpoint_begin: { span: 'main', actor: 'checkpoint_manager', phase: 'execution', fields: ['step_id', 'checkpoint_type', 'work_item_id'] },
  checkpoint_commit: {
    span: 'main', actor: 'checkpoint_manager', phase: 'execution',
    fields: ['checkpoint_id', 'checkpoint_type', 'sequence_number', 'evidence_count', 'evidence'],
  },
  checkpoint_verified: {
    span: 'main', actor: 'checkpoint_manager', phase: 'execution',
    fields: ['checkpoint_id', 'checkpoint_type', 'verified', 'evidence_count'],
  },
  checkpoint_invalid: {
    span: 'main', actor: 'checkpoint_manager', phase: 'execution',
    fields: ['checkpoint_id', 'checkpoint_type', 'verified', 'reason'],
  },
  gate_start: { span: 'main', actor: 'gate_runner', phase: 'verifying', fields: ['gate_name', 'timeout_seconds'] },
  gate_result: {
    span: 'main', actor: 'gate_runner', phase: 'verifying',
    fields: ['gate_name', 'status', 'passed', 'exit_code', 'duration_seconds'],
  },
  gate_retry: { span: 'main', actor: 'gate_runner', phase: 'verifying', fields: ['gate_name', 'attempt', 'max_attempts', 'reason'] },
  work_item_dispatched: { span: 'main', actor: 'runner', phase: 'executing', fields: ['work_item_id', 'title', 'index'] },
  work_item_start: { span: 'work', actor: 'worker', phase: 'executing', fields: ['work_item_id', 'work_type'] },
  work_item_done: { span: 'work', actor: 'worker', phase: 'executing', fields: ['work_item_id', 'title', 'files_changed'] },
  work_item_failed: { span: 'work', actor: 'worker', phase: 'executing', fields: ['work_item_id', 'title', 'error'] },
  lease_acquired: { span: 'work', actor: 'lease_manager', phase: 'executing', fields: ['work_item_id', 'lease_holder', 'lease_duration_seconds'] },
  lease_renewed: { span: 'work', actor: 'lease_manager', phase: 'executing', fields: ['work_item_id', 'lease_holder', 'extended_by_seconds'] },
  lease_lost: { span: 'work', actor: 'lease_manager', phase: 'executing', fields: ['work_item_id', 'lease_holder', 'reason'] },
  lease_takeover: { span: 'work', actor: 'lease_manager', phase: 'executing', fields: ['work_item_id', 'previous_holder', 'new_holder'] },
  recovery_detected: { span: 'recovery_sweep', actor: 'recovery_sweep', phase: 'recovery', fields: ['expired_count', 'work_item_ids'] },
  recovery_requeued: {
    span: 'recovery_sweep', actor: 'recovery_sweep', phase: 'recovery',
    fields: ['work_item_id', 'previous_holder', 'retry_count', 'max_retries'],
  },
  recovery_resumed_from_checkpoint: {
    span: 'main', actor: 'runner', phase: 'recovery',
    fields: ['checkpoint_id', 'checkpoint_type', 'sequence_number', 'work_item_id'],
  },
};

const TYPES = {
  string: ['runner_version', 'exit_reason', 'explanation', 'step_id', 'checkpoint_type', 'work_item_id',
    'checkpoint_id', 'gate_name', 'status', 'reason', 'title', 'work_type', 'error', 'lease_holder',
    'previous_holder', 'new_holder'],
  int: ['runner_pid', 'iterations', 'completed', 'total', 'sequence_number', 'evidence_count', 'timeout_seconds',
    'exit_code', 'attempt', 'max_attempts', 'index', 'lease_duration_seconds', 'extended_by_seconds',
    'expired_count', 'retry_count', 'max_retries'],
  double: ['duration_seconds'],
  bool: ['verified', 'passed'],
  'string[]': ['evidence', 'files_changed', 'work_item_ids'],
};
const TYPE_OF = {};
for (const [t, keys] of Object.entries(TYPES)) for (const k of keys) TYPE_OF[k] = t;
// Fields a helper always records (numbers and booleans); strings and arrays may be NULL.
const ALWAYS = new Set([...TYPES.int, ...TYPES.double, ...TYPES.bool]);

const CRASH_MSG = 'runner ended without runner_exit (killed or crashed)';
const UNFINISHED_MSG = 'work item was not finished when its runner exited';

// ---------------------------------------------------------------------------
// OTLP AnyValue checks (log form: protobufjs toObject with longs as strings)

function oneKind(v) {
  return v && typeof v === 'object' ? Object.keys(v) : [];
}

/** Check that the OTLP value v carries the JSON payload value want with type type. */
function checkValue(v, type, want, where) {
  const kinds = oneKind(v);
  if (!eq(kinds.length, 1, `${where}: AnyValue must have exactly one member`)) return;
  switch (type) {
    case 'string':
      eq(kinds[0], 'stringValue', `${where}: type`);
      eq(v.stringValue, want, `${where}: value`);
      break;
    case 'int':
      eq(kinds[0], 'intValue', `${where}: type`);
      eq(v.intValue, String(want), `${where}: value`);
      break;
    case 'double':
      eq(kinds[0], 'doubleValue', `${where}: type`);
      eq(Number(v.doubleValue), Number(want), `${where}: value`);
      break;
    case 'bool':
      eq(kinds[0], 'boolValue', `${where}: type`);
      eq(v.boolValue, want, `${where}: value`);
      break;
    case 'string[]': {
      eq(kinds[0], 'arrayValue', `${where}: type`);
      const items = (v.arrayValue && v.arrayValue.values) || [];
      eq(items.map((x) => oneKind(x).join('+')), want.map(() => 'stringValue'), `${where}: element types`);
      eq(items.map((x) => x.stringValue), want, `${where}: elements`);
      break;
    }
    default:
      ok(false, `${where}: no type known for this field`);
  }
}

function attrMap(list) {
  const m = new Map();
  for (const kv of list || []) m.set(kv.key, kv.value);
  return m;
}

function statusOf(span) {
  const st = span.status || {};
  return { code: st.code || 0, message: st.message || '' };
}

// ---------------------------------------------------------------------------
// Global checks: every request and every resource

function checkRequests(recs, exp) {
  ok(recs.length > 0, 'the collector received no request');
  for (const rec of recs) {
    const w = `request ${rec.n}`;
    eq(rec.method, 'POST', `${w}: method`);
    eq(rec.path, '/v1/traces', `${w}: path`);
    eq((rec.headers['content-type'] || '').split(';')[0].trim(), 'application/x-protobuf', `${w}: Content-Type`);
    eq(rec.decodeError, null, `${w}: decodeError`);
    eq(rec.verifyError, null, `${w}: verifyError`);
    eq(rec.response && rec.response.status, 200, `${w}: answered 200 (plan: all 200)`);
    ok(rec.spanCount > 0, `${w}: carries no span`);
    const rss = (rec.request && rec.request.resourceSpans) || [];
    // One ResourceSpans per resource: no two groups of a request share a resource.
    const keys = rss.map((rs) => JSON.stringify(check.attrs((rs.resource || {}).attributes)));
    eq(new Set(keys).size, keys.length, `${w}: one ResourceSpans per resource`);
    rss.forEach((rs, i) => {
      const rw = `${w} resourceSpans[${i}]`;
      const a = check.attrs((rs.resource || {}).attributes);
      eq(a['service.name'], exp.serviceName, `${rw}: service.name (OTEL_SERVICE_NAME)`);
      eq(a['telemetry.sdk.name'], 'taskspan', `${rw}: telemetry.sdk.name`);
      eq(a['telemetry.sdk.language'], 'c', `${rw}: telemetry.sdk.language`);
      eq(a['telemetry.sdk.version'], exp.sdkVersion, `${rw}: telemetry.sdk.version`);
      const am = attrMap((rs.resource || {}).attributes);
      eq(oneKind(am.get('process.pid')), ['intValue'], `${rw}: process.pid is an intValue`);
      ok(Number(a['process.pid']) > 0, `${rw}: process.pid ${a['process.pid']} is not a pid`);
      eq(oneKind(am.get('host.name')), ['stringValue'], `${rw}: host.name is a stringValue`);
      if (exp.hostName) eq(a['host.name'], exp.hostName, `${rw}: host.name`);
      // OTEL_RESOURCE_ATTRIBUTES (percent-decoded); OTEL_SERVICE_NAME wins over its service.name.
      for (const [k, v] of Object.entries(exp.resourceAttributes || {})) eq(a[k], v, `${rw}: ${k} from OTEL_RESOURCE_ATTRIBUTES`);
      const ss = rs.scopeSpans || [];
      eq(ss.length, 1, `${rw}: exactly one ScopeSpans`);
      for (const s of ss) {
        eq((s.scope || {}).name, 'taskspan', `${rw}: scope name`);
        eq((s.scope || {}).version, exp.sdkVersion, `${rw}: scope version`);
        ok((s.spans || []).length > 0, `${rw}: empty ScopeSpans`);
      }
    });
  }
  const problems = check.conformanceProblems(recs);
  eq(problems, [], 'check.js conformanceProblems');
}

// ---------------------------------------------------------------------------
// Expected spans from the stored events

function parseEvents(rows) {
  return rows.map((r) => ({
    seq: Number(r.seq),
    type: r.event_type,
    actor: r.actor,
    key: r.span_key,
    parentKey: r.parent_key,
    phase: r.phase,
    payload: JSON.parse(r.payload),
    ts: String(r.ts),
    inc: Number(r.incarnation),
    resourceId: r.resource_id === null || r.resource_id === undefined ? null : Number(r.resource_id),
  }));
}

/** One expected span per (span key, incarnation), events in seq order. */
function groupSpans(events) {
  const groups = new Map();
  for (const e of events) {
    const k = `${e.key}#${e.inc}`;
    if (!groups.has(k)) groups.set(k, { key: e.key, inc: e.inc, events: [] });
    groups.get(k).events.push(e);
  }
  for (const g of groups.values()) g.events.sort((a, b) => a.seq - b.seq);
  return [...groups.values()];
}

/** Incarnations that ended without runner_exit and were followed by a runner_spawn. */
function crashedIncarnations(events) {
  const out = new Set();
  const incs = [...new Set(events.map((e) => e.inc))].sort((a, b) => a - b);
  for (const inc of incs) {
    if (inc < 1) continue;
    const exited = events.some((e) => e.inc === inc && e.type === 'runner_exit' && e.key === 'main');
    const later = events.some((e) => e.inc > inc && e.type === 'runner_spawn');
    if (!exited && later) out.add(inc);
  }
  return out;
}

/** What each expected span must look like, per docs/span-model.md. */
function expectSpans(events) {
  const crashed = crashedIncarnations(events);
  const groups = groupSpans(events);
  for (const g of groups) {
    const first = g.events[0];
    const last = g.events[g.events.length - 1];
    g.start = first.ts;
    g.end = last.ts;
    g.parentKey = first.parentKey || null;
    g.crashed = crashed.has(g.inc);
    g.status = { code: 0, message: '' };
    const failedEv = g.events.find((e) => e.type === 'work_item_failed');
    if (failedEv) g.status = { code: 2, message: failedEv.payload.error || 'work item failed' };
    if (g.crashed) {
      g.status = { code: 2, message: CRASH_MSG };
      if (g.key === 'main') {
        // main covers the children that outlived its own last event.
        const incEvents = events.filter((e) => e.inc === g.inc);
        g.end = incEvents.reduce((m, e) => (e.seq > m.seq ? e : m)).ts;
      }
    }
    const started = g.events.some((e) => e.type === 'work_item_start');
    const closedByOwn = g.events.some((e) => e.type === 'work_item_done' || e.type === 'work_item_failed');
    const exited = events.some((e) => e.inc === g.inc && e.type === 'runner_exit' && e.key === 'main');
    if (!g.crashed && g.key !== 'main' && started && !closedByOwn && exited) {
      g.status = { code: 2, message: UNFINISHED_MSG };
    }
    // Gate rule: the latest gate_result of a gate name on main with passed=false.
    if (g.key === 'main' && g.status.code === 0) {
      const latest = new Map();
      for (const e of g.events) if (e.type === 'gate_result') latest.set(e.payload.gate_name || '', e.payload.passed);
      for (const [name, passedV] of latest) if (passedV === false) g.status = { code: 2, message: `gate '${name}' failed` };
    }
  }
  return groups;
}

// ---------------------------------------------------------------------------
// One span against its expectation

function checkSpanEvent(ev, e, where) {
  eq(ev.name, e.type, `${where}: name`);
  eq(ev.timeUnixNano, e.ts, `${where}: timeUnixNano == ts_ns of seq ${e.seq}`);
  eq(ev.droppedAttributesCount || 0, 0, `${where}: droppedAttributesCount`);
  const map = MAPPING[e.type];
  const payloadKeys = Object.keys(e.payload);
  const wantKeys = [...payloadKeys, 'taskspan.seq'];
  if (e.actor !== null && e.actor !== undefined) wantKeys.push('taskspan.actor');
  if (e.phase !== null && e.phase !== undefined) wantKeys.push('taskspan.phase');
  eq((ev.attributes || []).map((kv) => kv.key), wantKeys, `${where}: attribute keys (payload in recorded order, then taskspan.seq/actor/phase)`);
  const am = attrMap(ev.attributes);
  const seqV = am.get('taskspan.seq');
  eq(oneKind(seqV), ['intValue'], `${where}: taskspan.seq is an intValue`);
  eq(seqV && seqV.intValue, String(e.seq), `${where}: taskspan.seq`);
  if (e.actor) checkValue(am.get('taskspan.actor'), 'string', e.actor, `${where}: taskspan.actor`);
  if (e.phase) checkValue(am.get('taskspan.phase'), 'string', e.phase, `${where}: taskspan.phase`);
  for (const k of payloadKeys) {
    const t = TYPE_OF[k];
    if (!ok(t !== undefined, `${where}: payload field "${k}" is not in the mapping table`)) continue;
    checkValue(am.get(k), t, e.payload[k], `${where}: ${k}`);
  }
  if (!map) {
    ok(false, `${where}: event type ${e.type} is not in the mapping table`);
    return;
  }
  // The helper recorded the table's fields, in the table's order, numbers always.
  eq(payloadKeys, [...map.fields, 'explanation'].filter((k) => k in e.payload), `${where}: payload fields in table order`);
  for (const k of map.fields) if (ALWAYS.has(k)) ok(k in e.payload, `${where}: always-recorded field ${k} missing`);
  eq(e.actor, map.actor, `${where}: actor per the mapping table`);
  if (map.phase === 'arg') ok(!!e.phase, `${where}: phase (the helper's argument) missing`);
  else eq(e.phase, map.phase, `${where}: phase per the mapping table`);
  const wantKey = map.span === 'work' ? `work_${e.payload.work_item_id}` : map.span;
  eq(e.key, wantKey, `${where}: span key per the mapping table`);
  eq(e.parentKey, map.span === 'work' ? 'main' : null, `${where}: parent key per the mapping table`);
}

function checkSpan(span, g, ctx) {
  const where = `${ctx.task} span ${g.key}#${g.inc} (${span.spanId})`;
  eq(span.traceId, ctx.traceId, `${where}: traceId == taskspan_task_trace_id_hex(task)`);
  eq(span.name, g.key, `${where}: name`);
  eq(span.kind, 1, `${where}: kind INTERNAL`);
  eq(span.startTimeUnixNano, g.start, `${where}: start == ts_ns of its first event (seq ${g.events[0].seq})`);
  eq(span.endTimeUnixNano, g.end, `${where}: end == ts_ns of its last event`);
  ok(BigInt(span.startTimeUnixNano || '0') <= BigInt(span.endTimeUnixNano || '0'), `${where}: start <= end`);
  // The same as min(ts_ns) and max(ts_ns) of its events (of its incarnation, for a crashed main).
  const pool = g.crashed && g.key === 'main' ? ctx.events.filter((e) => e.inc === g.inc) : g.events;
  const tss = pool.map((e) => BigInt(e.ts));
  const minTs = tss.reduce((a, b) => (b < a ? b : a));
  const maxTs = tss.reduce((a, b) => (b > a ? b : a));
  eq(span.startTimeUnixNano, String(g.events.map((e) => BigInt(e.ts)).reduce((a, b) => (b < a ? b : a))), `${where}: start == min(ts_ns) of its events`);
  eq(span.endTimeUnixNano, String(maxTs), `${where}: end == max(ts_ns)`);
  ok(minTs <= BigInt(span.startTimeUnixNano || '0'), `${where}: no event before the span's start`);
  eq(span.droppedAttributesCount || 0, 0, `${where}: droppedAttributesCount`);
  eq(span.droppedEventsCount || 0, 0, `${where}: droppedEventsCount`);
  eq(span.droppedLinksCount || 0, 0, `${where}: droppedLinksCount`);

  // Parent: the latest instance of the parent key in the same incarnation.
  if (g.parentKey) {
    const parent = ctx.byKey.get(`${g.parentKey}#${g.inc}`);
    ok(!!parent, `${where}: parent span ${g.parentKey}#${g.inc} not received`);
    if (parent) eq(span.parentSpanId, parent.spanId, `${where}: parentSpanId == ${g.parentKey}'s spanId`);
  } else {
    eq(span.parentSpanId, undefined, `${where}: root span has no parentSpanId`);
  }
  // Flags (SpanFlags): if sent, the sampled bit, and is_remote known and false (no TRACEPARENT).
  if (span.flags !== undefined) {
    eq(span.flags & 0x301, 0x101, `${where}: flags sampled, has_is_remote, not remote`);
  }

  // Span attributes.
  const want = [
    ['taskspan.task_id', 'string', ctx.task],
    ['taskspan.span_key', 'string', g.key],
    ['taskspan.incarnation', 'int', g.inc],
  ];
  if (g.crashed) want.push(['taskspan.crashed', 'bool', true]);
  eq((span.attributes || []).map((kv) => kv.key), want.map((w) => w[0]), `${where}: span attribute keys`);
  const am = attrMap(span.attributes);
  for (const [k, t, v] of want) checkValue(am.get(k), t, v, `${where}: ${k}`);

  // Status.
  const st = statusOf(span);
  eq(st, g.status, `${where}: status`);
  if (g.status.code === 0) ok(span.status === undefined || same(span.status, {}), `${where}: unset status carries nothing: ${JSON.stringify(span.status)}`);

  // Events: every event of the span, in seq order.
  eq((span.events || []).map((e) => e.name), g.events.map((e) => e.type), `${where}: event names in seq order`);
  (span.events || []).forEach((ev, i) => {
    if (i < g.events.length) checkSpanEvent(ev, g.events[i], `${where} event ${i} (seq ${g.events[i].seq})`);
  });

  // Links: main of incarnation N >= 2 links to main of N-1, nothing else links.
  const links = span.links || [];
  if (g.key === 'main' && g.inc >= 2) {
    const prev = ctx.byKey.get(`main#${g.inc - 1}`);
    if (eq(links.length, 1, `${where}: one link to the previous incarnation's main`) && prev) {
      eq(links[0].traceId, ctx.traceId, `${where}: link traceId`);
      eq(links[0].spanId, prev.spanId, `${where}: link spanId == main#${g.inc - 1}'s spanId`);
      const la = check.attrs(links[0].attributes);
      eq(la['taskspan.link.reason'], 'previous_incarnation', `${where}: link reason`);
    }
    ok(!!prev, `${where}: main#${g.inc - 1} not received`);
  } else {
    eq(links.length, 0, `${where}: no links`);
  }

  // Resource: the one stored for the span's first event (the recording process).
  const rid = g.events[0].resourceId;
  const res = ctx.resources.get(rid);
  if (ok(!!res, `${where}: no stored resource ${rid} for seq ${g.events[0].seq}`)) {
    eq(sortKeys(check.attrs(ctx.resourceOf.get(span.spanId).attributes)), sortKeys(res),
      `${where}: resource == the stored resource of its first event`);
  }
  const spawn = events0(ctx.events, g.inc, 'runner_spawn');
  if (spawn && res) {
    eq(res['process.pid'], spawn.payload.runner_pid, `${where}: process.pid == runner_pid of incarnation ${g.inc}'s runner_spawn`);
  }
}

function events0(events, inc, type) {
  return events.find((e) => e.inc === inc && e.type === type) || null;
}

// ---------------------------------------------------------------------------
// Cases

const SEED_IDS = {
  // docs/span-model.md, "Worked example: the report's 20 events" (task-abc-123).
  trace: '534c9bbeb5a28da20c7de60fa6916f80',
  main: '3192bde7e2532e2e',
  work_wi_001: 'a0bd4d1017de9eac',
  work_wi_002: '6173b134c0b17724',
  recovery_sweep: '9c14f8fdca7ae841',
};

function seedChecks(ctx) {
  const t = ctx.task;
  eq(ctx.received.map((s) => s.name).sort(), ['main', 'recovery_sweep', 'work_wi_001', 'work_wi_002'], `${t}: exactly the 4 spans`);
  const by = (k) => ctx.byKey.get(`${k}#1`);
  const seqs = (k) => (by(k) ? (by(k).events || []).map((e) => Number(check.attrs(e.attributes)['taskspan.seq'])) : null);
  eq(seqs('main'), [1, 2, 3, 4, 5, 9, 13, 14, 15, 16, 17, 18], `${t}: main's 12 events by seq`);
  eq(seqs('work_wi_001'), [6, 7, 8], `${t}: work_wi_001 events by seq`);
  eq(seqs('work_wi_002'), [10, 11, 12], `${t}: work_wi_002 events by seq`);
  eq(seqs('recovery_sweep'), [19, 20], `${t}: recovery_sweep events by seq`);
  const names = (k) => (by(k) ? (by(k).events || []).map((e) => e.name) : null);
  eq(names('main'), ['runner_spawn', 'phase_enter', 'phase_exit', 'phase_enter', 'work_item_dispatched',
    'work_item_dispatched', 'phase_exit', 'phase_enter', 'gate_start', 'gate_result', 'phase_exit', 'runner_exit'],
  `${t}: main's event names`);
  eq(names('work_wi_001'), ['work_item_start', 'lease_acquired', 'work_item_done'], `${t}: work_wi_001 event names`);
  eq(names('work_wi_002'), ['work_item_start', 'lease_acquired', 'work_item_failed'], `${t}: work_wi_002 event names`);
  eq(names('recovery_sweep'), ['recovery_detected', 'recovery_requeued'], `${t}: recovery_sweep event names`);
  if (ctx.task === 'task-abc-123') {
    eq(ctx.traceId, SEED_IDS.trace, `${t}: trace id of docs/span-model.md's worked example`);
    for (const k of ['main', 'work_wi_001', 'work_wi_002', 'recovery_sweep']) {
      eq(by(k) && by(k).spanId, SEED_IDS[k], `${t}: span id of ${k} per docs/span-model.md`);
    }
  }
  // The values record_seed.c recorded, with their OTLP types.
  const ev = (k, name) => (by(k) ? (by(k).events || []).find((e) => e.name === name) : null);
  const val = (k, name, key) => { const e = ev(k, name); return e ? attrMap(e.attributes).get(key) : undefined; };
  eq(val('main', 'gate_result', 'passed'), { boolValue: true }, `${t}: gate_result passed`);
  eq(val('main', 'gate_result', 'gate_name'), { stringValue: 'doctor' }, `${t}: gate_result gate_name`);
  eq(val('main', 'gate_result', 'status'), { stringValue: 'passed' }, `${t}: gate_result status`);
  eq(val('main', 'gate_result', 'exit_code'), { intValue: '0' }, `${t}: gate_result exit_code`);
  eq(val('main', 'gate_result', 'duration_seconds'), { doubleValue: 12.5 }, `${t}: gate_result duration_seconds`);
  eq(val('main', 'gate_start', 'timeout_seconds'), { intValue: '600' }, `${t}: gate_start timeout_seconds`);
  eq(val('main', 'runner_exit', 'exit_reason'), { stringValue: 'done' }, `${t}: runner_exit exit_reason`);
  eq(val('recovery_sweep', 'recovery_detected', 'expired_count'), { intValue: '1' }, `${t}: recovery_detected expired_count`);
  eq(val('recovery_sweep', 'recovery_detected', 'work_item_ids'), { arrayValue: { values: [{ stringValue: 'wi_003' }] } },
    `${t}: recovery_detected work_item_ids`);
  eq(val('recovery_sweep', 'recovery_requeued', 'work_item_id'), { stringValue: 'wi_003' }, `${t}: recovery_requeued work_item_id`);
  eq(val('recovery_sweep', 'recovery_requeued', 'retry_count'), { intValue: '1' }, `${t}: recovery_requeued retry_count`);
  eq(val('work_wi_001', 'work_item_done', 'files_changed'),
    { arrayValue: { values: [{ stringValue: 'src/parser.c' }, { stringValue: 'tests/test_parser.c' }] } }, `${t}: work_item_done files_changed`);
  eq(val('work_wi_002', 'work_item_failed', 'error'), { stringValue: 'compile error in test_parser.c' }, `${t}: work_item_failed error`);
  eq(by('work_wi_002') && statusOf(by('work_wi_002')), { code: 2, message: 'compile error in test_parser.c' }, `${t}: work_wi_002 status ERROR with the error text`);
  for (const k of ['main', 'work_wi_001', 'recovery_sweep']) eq(by(k) && statusOf(by(k)).code, 0, `${t}: ${k} status unset`);
  for (const k of ['work_wi_001', 'work_wi_002']) eq(by(k) && by(k).parentSpanId, by('main') && by('main').spanId, `${t}: ${k}'s parent is main`);
  for (const k of ['main', 'recovery_sweep']) eq(by(k) && by(k).parentSpanId, undefined, `${t}: ${k} has no parent`);
  // Every event has its actor; all but runner_spawn/runner_exit a phase.
  for (const s of ctx.received) {
    for (const e of s.events || []) {
      const a = check.attrs(e.attributes);
      ok(typeof a['taskspan.actor'] === 'string', `${t}: ${s.name} ${e.name} has taskspan.actor`);
      if (e.name === 'runner_spawn' || e.name === 'runner_exit') ok(!('taskspan.phase' in a), `${t}: ${e.name} has no phase`);
      else ok(typeof a['taskspan.phase'] === 'string', `${t}: ${s.name} ${e.name} has taskspan.phase`);
    }
  }
}

function demoChecks(ctx, inc) {
  const t = ctx.task;
  const items = ctx.c.items;
  const fail = ctx.c.failItem;
  const spans = ctx.received.filter((s) => Number(check.attrs(s.attributes)['taskspan.incarnation']) === inc);
  const wantNames = ['main'];
  for (let i = 1; i <= items; i++) wantNames.push(`work_wi_${String(i).padStart(3, '0')}`);
  eq(spans.map((s) => s.name).sort(), wantNames.sort(), `${t}#${inc}: main and ${items} work spans`);
  const main = ctx.byKey.get(`main#${inc}`);
  const mainEv = main ? (main.events || []).map((e) => e.name) : [];
  eq(mainEv.filter((n) => n === 'work_item_dispatched').length, items, `${t}#${inc}: main has ${items} work_item_dispatched`);
  const idx = main ? (main.events || []).filter((e) => e.name === 'work_item_dispatched').map((e) => check.attrs(e.attributes).index) : [];
  eq(idx, Array.from({ length: items }, (_, i) => i + 1), `${t}#${inc}: dispatched indexes`);
  eq(mainEv[0], 'runner_spawn', `${t}#${inc}: main's first event`);
  eq(mainEv[mainEv.length - 1], 'runner_exit', `${t}#${inc}: main's last event`);
  // 5 planning events, 1 dispatch per item, 3 checkpoints per finished item, 6 verifying + exit.
  const finished = items - (fail >= 1 && fail <= items ? 1 : 0);
  eq(mainEv.length, 5 + items + 3 * finished + 6, `${t}#${inc}: main's event count`);
  eq(main && statusOf(main).code, 0, `${t}#${inc}: main status unset`);
  for (let i = 1; i <= items; i++) {
    const k = `work_wi_${String(i).padStart(3, '0')}`;
    const s = ctx.byKey.get(`${k}#${inc}`);
    if (!ok(!!s, `${t}#${inc}: ${k} received`)) continue;
    eq(s.parentSpanId, main && main.spanId, `${t}#${inc}: ${k}'s parent is main`);
    const last = i === fail ? 'work_item_failed' : 'work_item_done';
    eq((s.events || []).map((e) => e.name), ['work_item_start', 'lease_acquired', 'lease_renewed', last], `${t}#${inc}: ${k} events`);
    if (i === fail) eq(statusOf(s), { code: 2, message: 'demo failure requested by --fail-item' }, `${t}#${inc}: ${k} ERROR`);
    else eq(statusOf(s).code, 0, `${t}#${inc}: ${k} status unset`);
  }
}

function crashChecks(ctx) {
  const t = ctx.task;
  const m1 = ctx.byKey.get('main#1');
  const m2 = ctx.byKey.get('main#2');
  if (!ok(!!m1, `${t}: main of incarnation 1 (killed runner) received`)) return;
  if (!ok(!!m2, `${t}: main of incarnation 2 (resumed runner) received`)) return;
  eq(statusOf(m1), { code: 2, message: CRASH_MSG }, `${t}: killed main ERROR`);
  eq(check.attrs(m1.attributes)['taskspan.crashed'], true, `${t}: killed main taskspan.crashed=true`);
  ok(!('taskspan.crashed' in check.attrs(m2.attributes)), `${t}: resumed main not crashed`);
  eq((m2.links || []).length, 1, `${t}: resumed main has one link`);
  const l = (m2.links || [])[0] || {};
  eq(l.traceId, m1.traceId, `${t}: link traceId == the killed main's`);
  eq(l.spanId, m1.spanId, `${t}: link spanId == the killed main's spanId`);
  eq((m1.links || []).length, 0, `${t}: killed main has no link`);
  ok(m1.spanId !== m2.spanId, `${t}: the two mains have different span ids`);
  eq(m1.traceId, m2.traceId, `${t}: both incarnations in one trace`);
  // Every span of incarnation 1 was open at the kill: all crashed.
  for (const s of ctx.received.filter((x) => Number(check.attrs(x.attributes)['taskspan.incarnation']) === 1)) {
    eq(statusOf(s), { code: 2, message: CRASH_MSG }, `${t}: ${s.name}#1 crashed status`);
    eq(check.attrs(s.attributes)['taskspan.crashed'], true, `${t}: ${s.name}#1 taskspan.crashed`);
  }
  const spawn1 = events0(ctx.events, 1, 'runner_spawn');
  const spawn2 = events0(ctx.events, 2, 'runner_spawn');
  ok(spawn1 && spawn2 && spawn1.payload.runner_pid !== spawn2.payload.runner_pid, `${t}: two runner processes`);
  resumedChecks(ctx, spawn1);
}

// The resumed demo runner (examples/demo_runner.c): it sweeps the killed
// runner's lease (requeued at once, its process being gone), resumes from
// the last verified checkpoint if there is one, and runs only the items
// the killed runner did not finish, dispatching only those it had not.
function resumedChecks(ctx, spawn1) {
  const t = ctx.task;
  const items = ctx.c.items;
  const fail = ctx.c.failItem;
  const inc1 = ctx.events.filter((e) => e.inc === 1);
  const pad = (i) => String(i).padStart(3, '0');
  const leased1 = inc1.filter((e) => e.type === 'lease_acquired').map((e) => e.payload.work_item_id);
  const ended1 = inc1.filter((e) => e.type === 'work_item_done' || e.type === 'work_item_failed').map((e) => e.payload.work_item_id);
  const expired = leased1.filter((id) => !ended1.includes(id));
  const dispatched1 = inc1.filter((e) => e.type === 'work_item_dispatched').map((e) => e.payload.index);
  const verified1 = inc1.some((e) => e.type === 'checkpoint_verified');
  const todo = [];
  for (let i = 1; i <= items; i++) if (!ended1.includes(`wi_${pad(i)}`)) todo.push(i);

  const spans = ctx.received.filter((s) => Number(check.attrs(s.attributes)['taskspan.incarnation']) === 2);
  eq(spans.map((s) => s.name).sort(), ['main', 'recovery_sweep', ...todo.map((i) => `work_wi_${pad(i)}`)].sort(),
    `${t}#2: main, the sweep and the unfinished items' spans`);
  const sweep = ctx.byKey.get('recovery_sweep#2');
  if (ok(!!sweep, `${t}#2: recovery_sweep received`)) {
    eq((sweep.events || []).map((e) => e.name), ['recovery_detected', ...expired.map(() => 'recovery_requeued')], `${t}#2: sweep events`);
    const det = (sweep.events || [])[0];
    eq(det && attrMap(det.attributes).get('expired_count'), { intValue: String(expired.length) }, `${t}#2: expired_count`);
    for (const e of (sweep.events || []).slice(1)) {
      const a = check.attrs(e.attributes);
      ok(expired.includes(a.work_item_id), `${t}#2: requeued ${a.work_item_id} was the killed runner's`);
      eq(Number(a.retry_count), 1, `${t}#2: retry_count`);
      eq(a.previous_holder, `demo-runner-${spawn1 && spawn1.payload.runner_pid}`, `${t}#2: previous_holder`);
    }
    eq(statusOf(sweep).code, 0, `${t}#2: sweep status unset`);
    eq(sweep.parentSpanId, undefined, `${t}#2: sweep has no parent`);
  }
  const main = ctx.byKey.get('main#2');
  const mainEv = main ? (main.events || []).map((e) => e.name) : [];
  eq(mainEv[0], 'runner_spawn', `${t}#2: main's first event`);
  eq(mainEv[mainEv.length - 1], 'runner_exit', `${t}#2: main's last event`);
  eq(mainEv.includes('recovery_resumed_from_checkpoint'), verified1, `${t}#2: resumed from a checkpoint iff one was verified`);
  const idx = main ? (main.events || []).filter((e) => e.name === 'work_item_dispatched').map((e) => Number(check.attrs(e.attributes).index)) : [];
  eq(idx, todo.filter((i) => !dispatched1.includes(i)), `${t}#2: dispatched only items not dispatched before`);
  const finished = todo.filter((i) => i !== fail).length;
  eq(mainEv.length, 1 + (verified1 ? 1 : 0) + 1 + idx.length + 3 * finished + 6, `${t}#2: main's event count`);
  for (const i of todo) {
    const k = `work_wi_${pad(i)}`;
    const s = ctx.byKey.get(`${k}#2`);
    if (!ok(!!s, `${t}#2: ${k} received`)) continue;
    eq(s.parentSpanId, main && main.spanId, `${t}#2: ${k}'s parent is main`);
    const last = i === fail ? 'work_item_failed' : 'work_item_done';
    eq((s.events || []).map((e) => e.name), ['work_item_start', 'lease_acquired', 'lease_renewed', last], `${t}#2: ${k} events`);
  }
}

// ---------------------------------------------------------------------------

function main() {
  const [logFile, expFile] = process.argv.slice(2);
  if (!logFile || !expFile) {
    process.stderr.write('usage: node conformance.js requests.jsonl expectations.json\n');
    process.exit(2);
  }
  if (!fs.existsSync(logFile)) throw new Error(`no such log: ${logFile}`);
  const recs = check.readLog(logFile);
  const exp = JSON.parse(fs.readFileSync(expFile, 'utf8'));

  checkRequests(recs, exp);

  const resources = new Map((exp.resources || []).map((r) => [Number(r.id), JSON.parse(r.attrs)]));
  const all = check.spansOf(recs.filter(check.accepted));
  const rows = check.summarize(recs);
  // No exporter died in this test, so every span arrives exactly once, always identical.
  for (const r of rows) {
    eq(r.count, 1, `span ${r.traceId}/${r.spanId} "${r.name}": copies received`);
    ok(r.identical, `span ${r.spanId}: copies differ`);
  }
  const resourceOf = new Map(all.map((s) => [s.span.spanId, s.resource]));
  const caseTraces = new Set();

  for (const c of exp.cases) {
    const events = parseEvents(c.events);
    const traceId = c.traceId;
    caseTraces.add(traceId);
    ok(/^[0-9a-f]{32}$/.test(traceId), `${c.task}: derived trace id "${traceId}"`);
    const received = rows.filter((r) => r.traceId === traceId).map((r) => r.span);
    const ctx = {
      c,
      task: c.task,
      traceId,
      events,
      received,
      resources,
      resourceOf,
      byKey: new Map(),
    };
    for (const s of received) {
      const a = check.attrs(s.attributes);
      eq(a['taskspan.task_id'], c.task, `${c.task}: span ${s.spanId} of the task's trace names the task`);
      ctx.byKey.set(`${s.name}#${a['taskspan.incarnation']}`, s);
    }
    const expected = expectSpans(events);
    eq(received.map((s) => `${s.name}#${check.attrs(s.attributes)['taskspan.incarnation']}`).sort(),
      expected.map((g) => `${g.key}#${g.inc}`).sort(), `${c.task}: the spans received, one trace, one per span key and incarnation`);
    // The buffer's export progress (schema 8): every closed span found
    // and settled, none rejected (a rejected span keeps a row).
    const p = (c.exportProgress || [])[0] || {};
    eq(Number(p.closed), expected.length, `${c.task}: tasks.export_closed`);
    eq(Number(p.done), expected.length, `${c.task}: tasks.export_done`);
    eq(Number(p.live), 0, `${c.task}: tasks.export_live (nothing left to send)`);
    eq(Number(p.rows), 0, `${c.task}: export_spans rows (none rejected)`);
    for (const g of expected) {
      const s = ctx.byKey.get(`${g.key}#${g.inc}`);
      if (ok(!!s, `${c.task}: span ${g.key}#${g.inc} received`)) checkSpan(s, g, ctx);
    }
    if (c.kind === 'seed') seedChecks(ctx);
    else if (c.kind === 'demo') demoChecks(ctx, 1);
    else if (c.kind === 'crash') crashChecks(ctx);
    else ok(false, `unknown case kind ${c.kind}`);
  }
  // Nothing else arrived.
  eq(rows.filter((r) => !caseTraces.has(r.traceId)).map((r) => `${r.traceId}/${r.name}`), [], 'spans of no expected task');

  for (const f of failures) console.log(`FAIL ${f}`);
  console.log(`conformance: ${passed} checks passed, ${failures.length} failed`);
  return failures.length ? 1 : 0;
}

if (require.main === module) {
  try {
    process.exit(main());
  } catch (e) {
    process.stderr.write(`conformance: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  }
}
