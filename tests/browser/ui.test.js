#!/usr/bin/env node
// ui.test.js -- the web UI of `taskspan serve`, in a real browser: Debian's
// chromium driven by playwright-core. tests/integration/viewer_browser.sh
// starts the real server, runs the real demo runner against it, then runs
// this with:
//   TASKSPAN_URL          the server, http://127.0.0.1:PORT
//   TASKSPAN_TASK         the demo's task id (3 items, the 2nd failed)
//   TASKSPAN_DEMO_RUNNER  the demo runner, run again here for a live update
//                         (its environment already exports to the server)
//   TASKSPAN_SERVE_BIN, TASKSPAN_SERVER_PID, TASKSPAN_STORE, TASKSPAN_SCRATCH
//                         the server's binary, pid, span store and a scratch
//                         directory: the test restarts the server on the
//                         same port and store (and stops the new one)
//   TASKSPAN_TEST_TMP     where the screenshot goes (a test artifact)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//
// Checks: the list shows the task and its filters work; its waterfall
// shows main and the three work_<id> spans with work_wi_002 in ERROR; find,
// keyboard and event markers; a span's detail; a hostile span (posted with
// the official OpenTelemetry JS exporter) renders as text and runs
// nothing; a second runner's spans arrive live, without a reload and
// without duplicates; after a server restart the page's stream resumes
// (Last-Event-ID) and the next span arrives once; the previous-incarnation
// link is followed; zoom; the work-item pipeline and the checkpoint
// drawer; the OTLP JSON download and its import back (under a new trace
// id) through the list's import button; a runner killed with SIGKILL shows
// as a crashed incarnation; then a 10,000-span trace loads and renders, and
// the time from navigation to the rendered waterfall is printed (not
// asserted). Screenshots go to $TASKSPAN_TEST_TMP.
// Prints "ok"/"FAIL" lines and "viewer_browser: N passed, M failed".
'use strict';

const fs = require('fs');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const HERE = __dirname;
const COLLECTOR_MODULES = path.join(HERE, '..', 'collector', 'node_modules');
const BASE = process.env.TASKSPAN_URL;
const TASK = process.env.TASKSPAN_TASK;
const RUNNER = process.env.TASKSPAN_DEMO_RUNNER;
const OUT_DIR = process.env.TASKSPAN_TEST_TMP || '/tmp';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SERVE_BIN = process.env.TASKSPAN_SERVE_BIN;
const STORE = process.env.TASKSPAN_STORE;
const SCRATCH = process.env.TASKSPAN_SCRATCH;
let restarted = null; // the server this test started, stopped at the end
const BIG_SPANS = 10000;

let passed = 0;
let failed = 0;

function ok(cond, name, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail === undefined ? '' :
      `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
  return !!cond;
}

// A missing prerequisite is a failure with advice, never a skip.
function die(msg) {
  console.log(`FAIL ${msg}`);
  console.log(`viewer_browser: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}

if (!BASE || !TASK || !RUNNER || !SERVE_BIN || !STORE || !SCRATCH ||
    !process.env.TASKSPAN_SERVER_PID) {
  die('TASKSPAN_URL, TASKSPAN_TASK, TASKSPAN_DEMO_RUNNER, ' +
    'TASKSPAN_SERVE_BIN, TASKSPAN_SERVER_PID, TASKSPAN_STORE and ' +
    'TASKSPAN_SCRATCH must be set (run tests/integration/viewer_browser.sh)');
}
if (!fs.existsSync(CHROMIUM)) {
  die(`no browser at ${CHROMIUM}: install Debian's chromium ` +
    '(scripts/setup test does)');
}
function need(mod, from, hint) {
  try {
    return require(require.resolve(mod, { paths: [from] }));
  } catch (e) {
    return die(`cannot load ${mod} (${e.code || e.message}): ${hint}`);
  }
}
const { chromium } = need('playwright-core', HERE,
  'run npm ci --prefix tests/browser (scripts/setup test does)');
const otelHint = 'run npm ci --prefix tests/collector (scripts/setup test does)';
const api = need('@opentelemetry/api', COLLECTOR_MODULES, otelHint);
const sdk = need('@opentelemetry/sdk-trace-base', COLLECTOR_MODULES, otelHint);
const { OTLPTraceExporter } = need(
  '@opentelemetry/exporter-trace-otlp-proto', COLLECTOR_MODULES, otelHint);
const { Resource } = need('@opentelemetry/resources', COLLECTOR_MODULES,
  otelHint);
const pbRoot = need(
  '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js',
  COLLECTOR_MODULES, otelHint);
const { bigTraceRequests } = require('./big_trace.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function getJson(p) {
  return new Promise((resolve, reject) => {
    http.get(BASE + p, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          reject(new Error(`GET ${p}: ${res.statusCode} ${body}`));
          return;
        }
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(new Error(`GET ${p}: not JSON: ${e.message}`));
        }
      });
    }).on('error', reject);
  });
}

// Poll f() (bounded) until it returns a truthy value; null on timeout.
async function until(f, ms, step = 200) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (_) { /* not yet */ }
    if (Date.now() > end) return null;
    await sleep(step);
  }
}

// One span posted with the official OpenTelemetry JS SDK and OTLP/HTTP
// protobuf exporter, as a child of parentSpanId in traceId, or as the root
// of a new trace when traceId is null. Returns its span context.
async function postSpanWithOfficialExporter(traceId, parentSpanId, name,
  attributes) {
  const provider = new sdk.BasicTracerProvider({
    resource: new Resource({ 'service.name': 'viewer-browser-test' }),
  });
  const exporter = new OTLPTraceExporter({ url: `${BASE}/v1/traces`,
    timeoutMillis: 10000 });
  provider.addSpanProcessor(new sdk.BatchSpanProcessor(exporter,
    { scheduledDelayMillis: 60000 }));
  const parent = traceId === null ? api.ROOT_CONTEXT :
    api.trace.setSpanContext(api.ROOT_CONTEXT, {
      traceId, spanId: parentSpanId, traceFlags: 1, isRemote: true,
    });
  const span = provider.getTracer('viewer-browser-test')
    .startSpan(name, { attributes }, parent);
  span.addEvent('an_event', { payload: attributes.evil || 'plain' });
  span.end();
  await provider.forceFlush();
  await provider.shutdown();
  return span.spanContext();
}

function postProtobuf(body) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${BASE}/v1/traces`, { method: 'POST',
      headers: { 'Content-Type': 'application/x-protobuf',
        'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// Stop the server (SIGTERM) and start it again on the same port and store.
async function restartServer() {
  const port = new URL(BASE).port;
  process.kill(Number(process.env.TASKSPAN_SERVER_PID), 'SIGTERM');
  // Down means refused: while it shuts down, the old server may still hold
  // its listening socket and only reset connections.
  const down = await until(() => new Promise((resolve) => {
    http.get(`${BASE}/api/services`, (res) => {
      res.resume();
      resolve(false);
    }).on('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  }), 15000, 100);
  if (!down) throw new Error('the server did not stop on SIGTERM');
  const ready = path.join(SCRATCH, 'ready2');
  const log = fs.openSync(path.join(SCRATCH, 'server2'), 'a');
  for (let attempt = 1; attempt <= 10; attempt++) {
    restarted = spawn(SERVE_BIN, ['serve', '--listen', `127.0.0.1:${port}`,
      '--store', STORE, '--ready-file', ready],
    { stdio: ['ignore', log, log] });
    const outcome = await Promise.race([
      new Promise((resolve) => restarted.once('exit', () =>
        resolve('exited'))),
      until(() => fs.existsSync(ready) &&
        fs.readFileSync(ready, 'utf8').trim() === port, 15000, 50)
        .then((v) => (v ? 'up' : 'timeout')),
    ]);
    if (outcome === 'up') return;
    if (outcome !== 'exited') break;
    // It exited: the port was not free yet. Try again (bounded).
    restarted = null;
    await sleep(300);
  }
  throw new Error('the server did not come back on its port');
}

function runRunner(args) {
  return new Promise((resolve) => {
    const p = spawn(RUNNER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function main() {
  // The demo's trace, as the API lists it (its 4 spans have arrived).
  const summary = await until(async () => {
    const d = await getJson(`/api/traces?task=${encodeURIComponent(TASK)}`);
    const t = (d.traces || []).find((x) => x.task_id === TASK);
    return t && t.span_count >= 4 ? t : null;
  }, 20000);
  if (!ok(summary, 'the API lists the demo task with its 4 spans')) return;
  const traceId = summary.trace_id;
  // A second, successful trace, for the list's filters to tell apart.
  const other = await postSpanWithOfficialExporter(null, null, 'other_root',
    { 'test.kind': 'ok-trace' });
  ok(await until(async () => (await getJson('/api/traces')).traces
    .some((t) => t.trace_id === other.traceId), 10000),
  'the API lists a second trace');

  const browser = await chromium.launch({ executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  try {
    await browserChecks(browser, traceId, other.traceId);
  } finally {
    await browser.close();
  }
}

async function browserChecks(browser, traceId, otherId) {
  const context = await browser.newContext({ acceptDownloads: true,
    viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const pageErrors = [];
  const dialogs = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  const csp = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });

  // 1. The list: one row for the task; click it.
  await page.goto(`${BASE}/`);
  const row = page.locator(`tr.trace-row[data-task="${TASK}"]`);
  await row.waitFor();
  ok(/error/.test(await row.getAttribute('class')),
    'the list row of the demo task is marked error');
  ok((await row.innerText()).includes('taskspan-demo'),
    'the list row shows the service');

  // 1b. The filters (kept in the URL, answered by the server).
  const otherRow = page.locator(`tr.trace-row[data-trace-id="${otherId}"]`);
  await otherRow.waitFor();
  const submit = () => page.click('form.filters button[type=submit]');
  await page.fill('input[name=task]', TASK);
  await page.selectOption('select[name=status]', 'error');
  await page.fill('input[name=event]', 'work_item_failed');
  await submit();
  ok(await until(async () => await page.locator('tr.trace-row').count() === 1 &&
    await row.count() === 1, 10000),
  'task + status=error + event filters keep exactly the demo trace');
  await page.fill('input[name=task]', '');
  await page.fill('input[name=event]', '');
  await page.selectOption('select[name=status]', 'ok');
  await submit();
  ok(await until(async () => await row.count() === 0 &&
    await otherRow.count() === 1, 10000),
  'status=ok shows the other trace, not the failed demo trace');
  ok(/status=ok/.test(page.url()), 'the filters are kept in the URL');
  await page.click('form.filters a', { hasText: 'Clear' });
  await row.waitFor();
  await row.click();
  await page.waitForFunction((id) => location.hash.includes(id), traceId);

  // 2. The waterfall: main and work_wi_001..003, only work_wi_002 in error.
  const wfRow = (name) => page.locator(`.wf-row[data-name="${name}"]`);
  await wfRow('work_wi_003').waitFor();
  ok(await wfRow('main').count() === 1, 'the waterfall shows one main span');
  for (const n of ['work_wi_001', 'work_wi_002', 'work_wi_003']) {
    const cls = await wfRow(n).getAttribute('class');
    ok(cls.includes('work') && (n === 'work_wi_002') === cls.includes('error'),
      `${n} is shown${n === 'work_wi_002' ? ' in ERROR' : ', not in error'}`,
      cls);
  }
  // Nested: the work spans are indented under main.
  const indent = await page.evaluate(() => [...document.querySelectorAll(
    '.wf-row')].map((r) => [r.dataset.name,
    parseFloat(r.querySelector('.wf-name').style.paddingLeft)]));
  const mainIndent = indent.find((x) => x[0] === 'main')[1];
  ok(indent.filter((x) => x[0].startsWith('work_'))
    .every((x) => x[1] > mainIndent), 'work spans are nested under main',
  indent);
  // Events are markers on their span (main carries the dispatches etc.).
  ok(await wfRow('main').locator('.wf-ev').count() >= 10,
    'main shows its events as markers');
  ok(await wfRow('work_wi_002').locator('.wf-ev.bad').count() === 1,
    'the work_item_failed marker is flagged');

  // Find: spans whose name, id or attribute values match are marked.
  await page.fill('.wf-tools input.search', 'work_wi_00');
  ok(await until(async () => await page.locator('.wf-row.match').count() === 3 &&
    await page.locator('.wf-row.dim').count() === 1, 5000),
  'the find box marks the three work spans and dims main');
  await page.fill('.wf-tools input.search', '');

  // Mark the document: a reload would lose this.
  await page.evaluate(() => { window.__sameDocument = 'yes'; });

  // 3. A span's detail.
  await wfRow('work_wi_002').click();
  const detail = page.locator('#detail .span-detail');
  await detail.waitFor();
  const dtext = await detail.innerText();
  ok(dtext.includes('ERROR') &&
    dtext.includes('demo failure requested by --fail-item'),
  'the detail shows the ERROR status and its message');
  const attrs = await page.evaluate(() => Object.fromEntries([
    ...document.querySelectorAll('#detail table.span-attrs tr')]
    .map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent])));
  ok(attrs['taskspan.task_id'] === TASK &&
    attrs['taskspan.span_key'] === 'work_wi_002',
  'the detail lists the span attributes', attrs);
  ok(/work_item_failed/.test(dtext) && /lease_acquired/.test(dtext),
    'the detail lists the span events');
  ok(/error\s*demo failure requested by --fail-item/.test(dtext),
    'an event payload is shown as its attributes');

  // 3b. Keyboard: ArrowDown selects the next span; a marker click opens
  // its event in the detail.
  await page.keyboard.press('ArrowDown');
  await page.locator('#detail .span-detail').filter({ hasText: 'work_wi_003' })
    .first().waitFor();
  ok(await page.locator('.wf-row.selected').getAttribute('data-name') ===
    'work_wi_003', 'ArrowDown selects the next span');
  await wfRow('work_wi_002').locator('.wf-ev.bad').click();
  const focused = page.locator('#detail ol.events li.focus');
  await focused.waitFor();
  ok(/work_item_failed/.test(await focused.innerText()) &&
    await page.locator('.wf-row.selected').getAttribute('data-name') ===
    'work_wi_002', 'a marker click shows its event in the detail');

  // 4. A hostile span, posted while the page is open: it arrives live and
  // renders as text; nothing runs.
  const mainId = await wfRow('main').getAttribute('data-span-id');
  const evil = '<img src=x onerror="window.__xss=1;alert(1)">';
  const evilName = '<script>window.__xss=2</script>';
  const evilId = (await postSpanWithOfficialExporter(traceId, mainId,
    evilName, { evil, 'taskspan.task_id': TASK })).spanId;
  const evilRow = page.locator(`.wf-row[data-span-id="${evilId}"]`);
  await evilRow.waitFor();
  ok(await evilRow.locator('.nm').textContent() === evilName,
    'the hostile span name is shown as text');
  await evilRow.click();
  await page.locator(`#detail .span-detail[data-span-id="${evilId}"]`)
    .waitFor();
  const evilShown = await page.evaluate(() => {
    const r = [...document.querySelectorAll('#detail table.span-attrs tr')]
      .find((tr) => tr.cells[0].textContent === 'evil');
    return r ? r.cells[1].textContent : null;
  });
  ok(evilShown === evil, 'the hostile attribute value renders as text',
    evilShown);
  const injected = await page.evaluate(() => ({
    xss: window.__xss === undefined ? null : window.__xss,
    imgs: document.querySelectorAll('img').length,
    scripts: [...document.scripts].filter((s) => !s.src).length,
  }));
  ok(injected.xss === null && injected.imgs === 0 && injected.scripts === 0 &&
    dialogs.length === 0, 'no injected element or script ran',
  { injected, dialogs });

  // 5. Live: a second runner on the same task (incarnation 2) while the
  // page is open. It resumes the task (items wi_001..003 are settled, so
  // it redoes none of them) and adds wi_004. Its spans appear without a
  // reload, each once.
  const second = await runRunner(['--task', TASK, '--items', '4',
    '--fail-item', '0', '--item-ms', '50']);
  ok(second.code === 0, 'the second runner ran', second.out);
  const mains = await until(async () =>
    (await wfRow('main').count()) === 2, 20000);
  ok(mains, 'the second runner\'s main span appeared live');
  ok(await until(async () => (await wfRow('work_wi_004').count()) === 1,
    10000), 'the second runner\'s work span appeared live');
  ok(await wfRow('work_wi_001').count() === 1,
    'the resumed runner did not redo a settled item');
  const ids = await page.evaluate(() => [...document.querySelectorAll(
    '.wf-row')].map((r) => r.dataset.spanId));
  const shownIds = (await getJson(`/api/traces/${traceId}`)).spans
    .map((sp) => sp.span_id);
  ok(ids.length === new Set(ids).size && ids.length === shownIds.length &&
    shownIds.every((id) => ids.includes(id)),
  'every stored span is shown, once', { ids, shownIds });
  ok(await page.evaluate(() => window.__sameDocument) === 'yes',
    'the page was not reloaded');
  ok(/live · \d+ update/.test(await page.locator('#live').textContent()),
    'the live indicator counts the updates');

  // 5b. The server restarts (same port, same store). The page's stream
  // drops and reconnects by itself with Last-Event-ID; a span posted right
  // after the restart arrives once, and nothing already shown comes twice.
  const before = await page.evaluate(() => ({ ...window.__taskspanStream }));
  await restartServer();
  const resumed = (await postSpanWithOfficialExporter(traceId, mainId,
    'after_restart', { 'taskspan.task_id': TASK })).spanId;
  ok(await until(async () => await page.locator(
    `.wf-row[data-span-id="${resumed}"]`).count() === 1, 20000),
  'after a server restart the stream resumed and the new span arrived');
  await sleep(500); // let any (wrong) replay land before counting
  const ids2 = await page.evaluate(() => [...document.querySelectorAll(
    '.wf-row')].map((r) => r.dataset.spanId));
  const nStored = (await getJson(`/api/traces/${traceId}`)).spans.length;
  ok(ids2.length === nStored && new Set(ids2).size === nStored,
    'no span is shown twice after the reconnect', { ids2, nStored });
  const after = await page.evaluate(() => ({ ...window.__taskspanStream }));
  ok(after.opens === before.opens + 1 && after.events === before.events + 1 &&
    Number(after.lastEventId) > Number(before.lastEventId),
  'the stream reconnected once and resumed after its last event id ' +
    '(exactly one new event, no replay)', { before, after });
  ok(await page.evaluate(() => window.__sameDocument) === 'yes',
    'the page was not reloaded across the restart');

  // 6. Follow the link from the new main to the previous incarnation's.
  const newMain = wfRow('main').filter({ has: page.locator('.flag.link') });
  await newMain.click();
  const follow = page.locator('#detail .link a.follow');
  await follow.waitFor();
  ok((await follow.textContent()).includes(mainId),
    'the new main links to the previous main');
  await follow.click();
  await page.locator(`#detail .span-detail[data-span-id="${mainId}"]`)
    .waitFor();
  ok(page.url().includes(`span=${mainId}`) &&
    (await page.locator('.wf-row.selected').getAttribute('data-span-id')) ===
    mainId, 'following the link selects the linked span');

  // 6b. Zoom: drag on the axis over work_wi_003's bar (a few pixels either
  // side); the bar widens to most of the axis; "show all" zooms out again.
  // The drag is placed on the bar itself, not on a fixed fraction of the
  // axis: how much of the timeline the first runner takes depends on how
  // fast the machine ran the test.
  const bar = page.locator('.wf-row[data-name="work_wi_003"] .wf-bar');
  const barWidth = () => bar.evaluate((b) => b.getBoundingClientRect().width);
  const w0 = await barWidth();
  const axisBox = await page.locator('.wf-axis').boundingBox();
  const barBox = await bar.boundingBox();
  const y = axisBox.y + axisBox.height / 2;
  const x0 = Math.max(axisBox.x + 1, barBox.x - 3);
  const x1 = Math.min(axisBox.x + axisBox.width - 1,
    barBox.x + barBox.width + 3);
  await page.mouse.move(x0, y);
  await page.mouse.down();
  await page.mouse.move(x1, y, { steps: 4 });
  await page.mouse.up();
  const showAll = page.locator('button', { hasText: 'show all' });
  await showAll.waitFor();
  const w1 = await barWidth();
  // The selection becomes the whole axis: the bar grows by about
  // axis / selection (half of that is plenty of margin for rounding).
  ok(w1 > w0 * 2 && w1 >= 0.5 * w0 * axisBox.width / (x1 - x0),
    'dragging on the axis zooms the timeline',
    { w0, w1, axis: axisBox.width, from: x0, to: x1 });
  await showAll.click();
  ok(Math.abs(await barWidth() - w0) < 1 && await showAll.isHidden(),
    '"show all" zooms out');

  // 7. The work items: a pipeline per item, wi_002 failed, evidence drawer.
  await page.locator('nav.tabs a', { hasText: 'Work items' }).click();
  const item = (id) => page.locator(`.item[data-item="${id}"]`);
  await item('wi_003').waitFor();
  ok(/failed/.test(await item('wi_002').getAttribute('class')),
    'work item wi_002 is failed in the pipeline');
  ok(/done/.test(await item('wi_001').getAttribute('class')) &&
    /done/.test(await item('wi_003').getAttribute('class')),
  'work items wi_001 and wi_003 are done');
  ok(await item('wi_001').locator('a.attempt').count() === 1 &&
    /done/.test(await item('wi_004').getAttribute('class')),
  'wi_001 has its one attempt; wi_004, added by the second runner, is done');
  ok(/lease|acquired/.test(await item('wi_002').innerText()),
    'the pipeline shows the lease');
  await item('wi_003').locator('button', { hasText: 'evidence' }).click();
  const drawer = page.locator('#drawer');
  await drawer.locator('.ck').first().waitFor();
  const dr = await drawer.innerText();
  ok(dr.includes('checkpoint_commit') && dr.includes('out/wi_003.txt'),
    'the drawer shows the checkpoint evidence of wi_003');
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const itemsShot = path.join(OUT_DIR, 'viewer_browser_items.png');
  await page.screenshot({ path: itemsShot });
  console.log(`work items and evidence drawer: ${itemsShot}`);
  await page.keyboard.press('Escape');
  ok(await drawer.isHidden(), 'Escape closes the drawer');

  // 8. The screenshot (a test artifact): the timeline, wi_002 selected.
  await page.locator('nav.tabs a', { hasText: 'Timeline' }).click();
  await wfRow('work_wi_002').first().click();
  await detail.waitFor();
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const shot = path.join(OUT_DIR, 'viewer_browser.png');
  await page.screenshot({ path: shot, fullPage: true });
  ok(fs.statSync(shot).size > 10000, `screenshot saved: ${shot}`);

  // 9. Download as OTLP JSON through the button.
  const [download] = await Promise.all([page.waitForEvent('download'),
    page.locator('a', { hasText: 'Download OTLP JSON' }).click()]);
  const file = await download.path();
  let nSpans = -1;
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    nSpans = 0;
    for (const rs of j.resourceSpans || []) {
      for (const ss of rs.scopeSpans || []) nSpans += (ss.spans || []).length;
    }
  } catch (e) {
    nSpans = e.message;
  }
  const nTrace = (await getJson(`/api/traces/${traceId}`)).spans.length;
  ok(nSpans === nTrace,
    `the download is OTLP JSON with the trace's ${nTrace} spans`,
    String(nSpans));

  // 9a. Import: the download, under a new trace id, posted back through the
  // list's "Import OTLP JSON" button, opens as the same waterfall.
  const copyId = [...Array(32)].map(() =>
    Math.floor(Math.random() * 16).toString(16)).join('');
  const copy = fs.readFileSync(file, 'utf8').split(traceId).join(copyId);
  await page.goto(`${BASE}/#/`);
  await page.locator('input[type=file][name=import]').setInputFiles({
    name: 'copy.json', mimeType: 'application/json',
    buffer: Buffer.from(copy) });
  await page.waitForFunction((id) => location.hash.includes(id), copyId);
  ok(await until(async () => await page.locator('.wf-row').count() ===
    nTrace, 15000), `the imported copy opens with its ${nTrace} spans`);
  ok(await page.locator('.wf-row.error[data-name="work_wi_002"]').count() ===
    1 && await page.locator('.wf-row .nm', { hasText: evilName }).count() ===
    1, 'the copy keeps the error and the hostile name (as text)');
  await page.goto(`${BASE}/#/`);
  await page.locator('input[type=file][name=import]').setInputFiles({
    name: 'bad.json', mimeType: 'application/json',
    buffer: Buffer.from('{"resourceSpans": [{"scopeSpans": [{"spans": ' +
      '[{"traceId": "xyz", "spanId": "01", "name": "bad"}]}]}]}') });
  ok(await until(async () => /Could not import bad\.json: HTTP 400/.test(
    await page.locator('section.list > p.note').innerText()), 10000),
  'a bad file is refused with the server\'s message');
  // The list refreshes by itself (a new trace arrives): the import's
  // message stays beside the list's own (it was once overwritten).
  const rowsBefore = await page.locator('table.traces tbody tr').count();
  await postSpanWithOfficialExporter(null, null, 'after_bad_import',
    { n: 1 });
  ok(await until(async () => await page.locator('table.traces tbody tr')
    .count() > rowsBefore, 15000) && /Could not import bad\.json: HTTP 400/
    .test(await page.locator('section.list > p.note').innerText()),
  'the import\'s message outlives a refresh of the list');

  // 9b. A crashed runner: SIGKILL mid-task, then a new runner on the same
  // task. The killed incarnation's spans are shown as crashed.
  const crashTask = `${TASK}-crash`;
  const victim = spawn(RUNNER, ['--task', crashTask, '--items', '5',
    '--item-ms', '400'], { stdio: 'ignore' });
  const victimExit = new Promise((resolve) => victim.on('exit', resolve));
  await sleep(700);
  victim.kill('SIGKILL');
  ok(await victimExit === null, 'the first runner was killed mid-task');
  const again = await runRunner(['--task', crashTask, '--items', '1',
    '--item-ms', '10']);
  ok(again.code === 0, 'a new runner ran on the crashed task', again.out);
  const crashed = await until(async () => {
    const d = await getJson(`/api/traces?task=${crashTask}`);
    const t = (d.traces || []).find((x) => x.task_id === crashTask);
    return t && t.span_count >= 4 ? t : null;
  }, 20000);
  if (ok(crashed, 'the crashed task\'s trace arrived')) {
    await page.goto(`${BASE}/#/trace/${crashed.trace_id}`);
    const dead = page.locator('.wf-row.crashed[data-name="main"]');
    await dead.waitFor();
    ok(await dead.locator('.flag.crash').count() === 1 &&
      await page.locator('.wf-row.crashed .wf-bar').count() >= 1,
    'the killed runner\'s main is marked crashed');
    ok(await page.locator('.restart-label', { hasText: 'runner #2' })
      .count() === 1, 'the second runner\'s start is marked on the axis');
    await dead.click();
    await page.locator('#detail .callout.crash').waitFor();
    ok(/killed or crashed/.test(await page.locator('#detail').innerText()),
      'the crashed span\'s detail explains the crash');
    const crashShot = path.join(OUT_DIR, 'viewer_browser_crash.png');
    await page.screenshot({ path: crashShot });
    console.log(`crashed incarnation: ${crashShot}`);
  }

  ok(pageErrors.length === 0, 'no page errors', pageErrors);
  ok(csp.length === 0, 'no Content-Security-Policy violation', csp);

  // 10. 10,000 spans: post, wait until stored, then time the render in the
  // browser from navigation start (performance.now() is 0 there).
  const bigId = [...Array(32)].map(() =>
    Math.floor(Math.random() * 16).toString(16)).join('');
  const codes = [];
  for (const body of bigTraceRequests(pbRoot, bigId, BIG_SPANS)) {
    codes.push(await postProtobuf(body));
  }
  ok(codes.every((c) => c === 200), 'the 10,000 spans were accepted', codes);
  const stored = await until(async () =>
    (await getJson(`/api/traces/${bigId}`)).spans.length === BIG_SPANS,
  30000, 500);
  ok(stored, 'the server holds the 10,000 spans');
  const big = await context.newPage();
  big.on('pageerror', (e) => pageErrors.push(e.message));
  await big.goto('about:blank');
  await big.goto(`${BASE}/#/trace/${bigId}`);
  await big.waitForFunction((n) => window.__taskspanRendered &&
    window.__taskspanRendered.spans === n, BIG_SPANS, { timeout: 60000 });
  const r = await big.evaluate((id) => {
    const get = performance.getEntriesByType('resource')
      .find((e) => e.name.endsWith(`/api/traces/${id}`));
    return {
      at: window.__taskspanRendered.at,
      fetchStart: get ? get.startTime : NaN,
      fetchEnd: get ? get.responseEnd : NaN,
      bytes: get ? get.encodedBodySize : NaN,
      spans: document.getElementById('waterfall').dataset.spans,
      rows: document.querySelectorAll('.wf-row').length,
    };
  }, bigId);
  ok(r.spans === String(BIG_SPANS) && r.rows > 10,
    'the 10,000-span waterfall rendered', r);
  console.log(`10,000-span trace: navigation to rendered waterfall ` +
    `${r.at.toFixed(0)} ms (performance.now() in chromium; of which ` +
    `GET /api/traces/ID ${r.fetchStart.toFixed(0)}-` +
    `${r.fetchEnd.toFixed(0)} ms, ${r.bytes} bytes; ${r.rows} rows in ` +
    'the DOM)');
  // Scrolling to the end draws the last spans.
  await big.evaluate(() => {
    const s = document.querySelector('.wf-scroll');
    s.scrollTop = s.scrollHeight;
  });
  const lastShown = await until(() => big.evaluate((n) =>
    !!document.querySelector(`.wf-row[data-row="${n - 1}"]`),
  BIG_SPANS), 5000, 100);
  ok(lastShown, 'scrolling to the end shows the last span');
  ok(pageErrors.length === 0, 'no page errors on the big trace', pageErrors);

  // The restarted server stops cleanly (under sanitizers: no report).
  const code = await new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), 30000);
    restarted.on('exit', (c, sig) => {
      clearTimeout(t);
      resolve(sig || c);
    });
    restarted.kill('SIGTERM');
  });
  restarted = null;
  ok(code === 0, 'the restarted server exits 0 on SIGTERM', String(code));
}

const watchdog = setTimeout(() => {
  if (restarted) restarted.kill('SIGKILL');
  console.log('FAIL overall timeout (240 s)');
  console.log(`viewer_browser: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, 240000);

main().catch((e) => {
  ok(false, 'unexpected error', e.stack || String(e));
}).finally(() => {
  clearTimeout(watchdog);
  if (restarted) restarted.kill('SIGKILL');
  console.log(`viewer_browser: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
