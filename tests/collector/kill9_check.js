#!/usr/bin/env node
// kill9_check.js -- what reached the collector after runners were killed
// with SIGKILL over and over (tests/integration/lib/kill9.bash).
//
//   node kill9_check.js --log requests.jsonl --events events.json
//        --spans export_spans.json --runs runs.jsonl --dumps DIR
//        [--require-seed-sequence]
//
// Inputs: the collector's log (collector.js, with its per-span hashes); the
// buffer's task_events (sqlite3 -json) and the export state of each span
// its exporters found (tests/tools/span_states); one line per runner
// process (which run it was, whether it was killed and when); one
// `taskspan dump --format otlp-json` per task (every span the buffer builds).
// Each runner sent the header x-kill9-run=<run>, the final export "final".
//
// Checks, each a failure (exit 1) when broken:
//  1. every request decodes and conforms to the official schema;
//  2. every span of every task is closed, and arrived in at least one
//     2xx-answered request; every export row is delivered;
//  3. every event in the buffer arrived, exactly once per copy, as an event
//     of the span the seed's table puts it on (name, task, incarnation);
//  4. each incarnation's main span is crashed (ERROR, taskspan.crashed)
//     exactly when it has no runner_exit, and links to the previous one;
//  5. a span that arrived more than once arrived byte-identical every time,
//     and every copy but the last was sent by a runner that was killed
//     with that request in flight or answered (the request reached the
//     collector before the kill, or at most 1 s after it: the kernel still
//     delivers what a dead process wrote): the documented duplicate window;
//  6. with --require-seed-sequence: at least one incarnation lived the seed's
//     "Kill -9 Recovery Visible" sequence, all in one trace: checkpoint
//     committed, runner killed (its main crashed), recovery detected and
//     requeued on recovery_sweep, resumed from that checkpoint on main, task
//     finished (runner_exit).
// Prints the figures: requests, spans, events, duplicate copies.
'use strict';

const fs = require('fs');
const path = require('path');
const check = require('./check.js');

const die = (msg) => { console.log(`FAIL ${msg}`); process.exit(1); };

function opts(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) o[a.slice(2)] = true;
    else o[a.slice(2)] = argv[++i];
  }
  for (const k of ['log', 'events', 'spans', 'runs', 'dumps']) if (typeof o[k] !== 'string') die(`--${k} is required`);
  return o;
}

const o = opts(process.argv.slice(2));
const recs = check.readLog(o.log);
const events = JSON.parse(fs.readFileSync(o.events, 'utf8') || '[]');
const rows = JSON.parse(fs.readFileSync(o.spans, 'utf8') || '[]');
const runs = new Map(check.readLog(o.runs).map((r) => [r.run, r]));
const key = (s) => `${s.traceId}/${s.spanId}`;
const attrOf = (span) => check.attrs(span.attributes);

// 1. Conformance.
const problems = check.conformanceProblems(recs);
if (problems.length) die(`conformance: ${problems.slice(0, 5).join('; ')}`);
if (recs.length === 0) die('the collector received no request');

// Every 2xx-answered copy of every span, with its bytes' hash and sender.
const copies = new Map(); // key -> [{n, time, run, sha, span}]
for (const r of recs) {
  if (!check.accepted(r)) continue;
  const spans = check.spansOf([r]);
  if (!Array.isArray(r.spanSha256) || r.spanSha256.length !== spans.length) die(`request ${r.n}: no per-span hashes in the log (collector.js too old?)`);
  spans.forEach((s, i) => {
    const k = key(s.span);
    if (!copies.has(k)) copies.set(k, []);
    copies.get(k).push({ n: r.n, time: Date.parse(r.time), run: r.headers['x-kill9-run'], sha: r.spanSha256[i], span: s.span });
  });
}

// 2. Every span of every task (the dumps) closed and delivered.
const dumpSpans = [];
for (const f of fs.readdirSync(o.dumps).filter((x) => x.endsWith('.json')).sort()) {
  const req = JSON.parse(fs.readFileSync(path.join(o.dumps, f), 'utf8'));
  for (const rs of req.resourceSpans || []) for (const ss of rs.scopeSpans || []) for (const sp of ss.spans || []) dumpSpans.push(sp);
}
if (dumpSpans.length === 0) die('the dumps hold no span');
const traceOfTask = new Map();
for (const sp of dumpSpans) {
  const a = attrOf(sp);
  if (a['taskspan.open'] === true) die(`span ${sp.name} (incarnation ${a['taskspan.incarnation']}) of ${a['taskspan.task_id']} is still open after the task finished`);
  if (!copies.has(key(sp))) die(`span ${key(sp)} "${sp.name}" (incarnation ${a['taskspan.incarnation']}) of task ${a['taskspan.task_id']} never arrived in a 2xx-answered request`);
  const t = traceOfTask.get(a['taskspan.task_id']);
  if (t !== undefined && t !== sp.traceId) die(`task ${a['taskspan.task_id']} spans two traces`);
  traceOfTask.set(a['taskspan.task_id'], sp.traceId);
}
const dumpKeys = new Set(dumpSpans.map(key));
for (const k of copies.keys()) if (!dumpKeys.has(k)) die(`span ${k} arrived but the buffer does not build it`);
for (const row of rows) {
  if (Number(row.state) !== 1) die(`export row ${key(row)} "${row.name}" is in state ${row.state}, not delivered`);
  if (!dumpKeys.has(key(row))) die(`export row ${key(row)} is not a span of its task`);
}
if (rows.length !== dumpKeys.size) die(`${rows.length} export rows for ${dumpKeys.size} spans`);

// 3. Every event on its span. The expected span key comes from the seed's
// table (docs/span-model.md), not from the buffer's own column.
const onMain = new Set(['runner_spawn', 'runner_exit', 'phase_enter', 'phase_exit', 'phase_progress', 'checkpoint_begin',
  'checkpoint_commit', 'checkpoint_verified', 'checkpoint_invalid', 'gate_start', 'gate_result', 'gate_retry',
  'work_item_dispatched', 'recovery_resumed_from_checkpoint']);
const onWork = new Set(['work_item_start', 'work_item_done', 'work_item_failed', 'lease_acquired', 'lease_renewed',
  'lease_lost', 'lease_takeover']);
const onSweep = new Set(['recovery_detected', 'recovery_requeued']);
const received = new Map(); // task/seq -> {span, name}
for (const [k, list] of copies) {
  const sp = list[0].span;
  const a = attrOf(sp);
  for (const ev of sp.events || []) {
    const seq = check.attrs(ev.attributes)['taskspan.seq'];
    const ek = `${a['taskspan.task_id']}/${seq}`;
    if (received.has(ek)) die(`event ${ek} arrived on two spans (${received.get(ek).key} and ${k})`);
    received.set(ek, { key: k, span: sp, attrs: a, name: ev.name, ev });
  }
}
let nRecovery = 0;
for (const e of events) {
  const got = received.get(`${e.task_id}/${e.seq}`);
  if (!got) die(`event seq ${e.seq} ${e.event_type} of ${e.task_id} never reached the collector`);
  const payload = JSON.parse(e.payload);
  let want;
  if (onMain.has(e.event_type)) want = 'main';
  else if (onWork.has(e.event_type)) want = `work_${payload.work_item_id}`;
  else if (onSweep.has(e.event_type)) want = 'recovery_sweep';
  else die(`unexpected event type ${e.event_type} in the buffer`);
  if (got.name !== e.event_type) die(`seq ${e.seq} of ${e.task_id}: the collector has ${got.name}, the buffer ${e.event_type}`);
  if (got.span.name !== want || e.span_id !== want) die(`${e.event_type} (seq ${e.seq}, ${e.task_id}) arrived on span "${got.span.name}" (buffer: "${e.span_id}"), want "${want}"`);
  if (got.attrs['taskspan.incarnation'] !== Number(e.incarnation)) die(`${e.event_type} (seq ${e.seq}, ${e.task_id}) on incarnation ${got.attrs['taskspan.incarnation']}, want ${e.incarnation}`);
  if (got.span.traceId !== traceOfTask.get(e.task_id)) die(`${e.event_type} (seq ${e.seq}, ${e.task_id}) is not in the task's trace`);
  if (e.event_type.startsWith('recovery_')) nRecovery++;
}
if (received.size !== events.length) die(`${received.size} events arrived, the buffer has ${events.length}`);

// 4. Crashed incarnations and links. byInc: task -> inc -> events.
const byInc = new Map();
for (const e of events) {
  const t = byInc.get(e.task_id) || new Map();
  byInc.set(e.task_id, t);
  const l = t.get(Number(e.incarnation)) || [];
  t.set(Number(e.incarnation), l);
  l.push(e);
}
const mainOf = new Map(); // task/inc -> span (the first main instance)
for (const sp of dumpSpans) {
  const a = attrOf(sp);
  if (sp.name === 'main' && a['taskspan.instance'] === undefined) mainOf.set(`${a['taskspan.task_id']}/${a['taskspan.incarnation']}`, sp);
}
let nCrashed = 0;
for (const [task, incs] of byInc) {
  for (const [inc, evs] of incs) {
    const m = mainOf.get(`${task}/${inc}`);
    if (!m) die(`task ${task} incarnation ${inc} has no main span`);
    const exited = evs.some((e) => e.event_type === 'runner_exit');
    const crashed = attrOf(m)['taskspan.crashed'] === true;
    const error = m.status && m.status.code === 2;
    if (crashed !== !exited || error !== !exited) die(`task ${task} incarnation ${inc}: runner_exit ${exited ? 'recorded' : 'missing'}, but main is crashed=${crashed} status ${(m.status && m.status.code) || 0}`);
    if (!exited) nCrashed++;
    const prev = mainOf.get(`${task}/${inc - 1}`);
    if (prev) {
      const links = m.links || [];
      if (links.length !== 1 || links[0].spanId !== prev.spanId) die(`task ${task}: main of incarnation ${inc} does not link to main of incarnation ${inc - 1}`);
    }
  }
}

// 5. Duplicates: identical bytes, and only from killed runners.
let dupCopies = 0, dupSpans = 0, lagMin = Infinity, lagMax = -Infinity;
for (const [k, list] of copies) {
  if (list.length === 1) continue;
  dupSpans++;
  dupCopies += list.length - 1;
  for (const c of list) if (c.sha !== list[0].sha) die(`span ${k} "${list[0].span.name}" arrived with different bytes in requests ${list[0].n} and ${c.n}`);
  for (const c of list.slice(0, -1)) {
    const r = runs.get(c.run);
    if (!r) die(`span ${k}: request ${c.n} came from "${c.run}", which is not a killed runner, and the span was sent again`);
    if (!r.killed) die(`span ${k}: request ${c.n} of run ${c.run} was answered 2xx, the run was not killed, yet the span was sent again (a duplicate outside the documented window)`);
    // The request was on the wire before the kill (the kernel may still
    // deliver it a moment after the process is gone).
    if (c.time > r.killMs + 1000) die(`span ${k}: request ${c.n} of run ${c.run} reached the collector ${c.time - r.killMs} ms after that run was killed`);
    lagMin = Math.min(lagMin, r.killMs - c.time);
    lagMax = Math.max(lagMax, r.killMs - c.time);
  }
}

// 6. The seed's sequence, for real.
let seedSeen = 0;
for (const [task, incs] of byInc) {
  const last = Math.max(...incs.keys());
  const finished = incs.get(last).some((e) => e.event_type === 'runner_exit');
  for (const [inc, evs] of incs) {
    const next = incs.get(inc + 1);
    if (!next || evs.some((e) => e.event_type === 'runner_exit')) continue;
    const committed = new Set(evs.filter((e) => e.event_type === 'checkpoint_commit').map((e) => JSON.parse(e.payload).checkpoint_id));
    const detected = next.some((e) => e.event_type === 'recovery_detected');
    const requeued = next.some((e) => e.event_type === 'recovery_requeued');
    const resumed = next.find((e) => e.event_type === 'recovery_resumed_from_checkpoint');
    if (finished && detected && requeued && resumed && committed.has(JSON.parse(resumed.payload).checkpoint_id)) seedSeen++;
  }
}
if (o['require-seed-sequence'] && seedSeen === 0) die('no incarnation lived the seed\'s kill -9 recovery sequence');

const nSpans = dumpKeys.size;
console.log(`kill9_check: ${recs.length} requests, ${nSpans} spans of ${byInc.size} tasks all arrived, ${events.length} events each on its span (${nRecovery} recovery events), ${nCrashed} crashed incarnations marked`);
console.log(`seed sequence (checkpoint committed, killed, recovery detected, resumed from that checkpoint, finished, one trace): ${seedSeen} times`);
console.log(`duplicates: ${dupCopies} extra copies of ${dupSpans} spans, all byte-identical, each first sent by a runner killed with that request in flight or answered` +
  (dupCopies ? ` (killed ${lagMin}..${lagMax} ms after the request reached the collector; a negative figure: the kernel delivered it after the kill)` : ''));
