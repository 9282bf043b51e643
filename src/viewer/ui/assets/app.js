// app.js -- the taskspan web UI: trace list, waterfall, span detail,
// work-item pipeline, checkpoint drawer, live updates over Server-Sent
// Events. Plain browser JavaScript, no framework, no build step.
//
// Every value that comes from the API (names, attribute values, messages)
// is untrusted: the DOM is built with createElement and textContent only,
// never innerHTML, and URLs are built from validated hex ids.
'use strict';

(() => {
  const ROW_HEIGHT = 26; // px; the waterfall renders only visible rows
  const OVERSCAN = 12; // rows rendered above and below the viewport
  const LIST_REFRESH_MS = 3000;
  const HEX = /^[0-9a-f]{1,64}$/;

  // ---- DOM helpers ------------------------------------------------------

  // h('div.a.b', {title: 'x', onclick: f}, child, 'text', [more]) builds an
  // element. Strings become text nodes; attributes go through properties or
  // setAttribute, never through HTML parsing.
  function h(spec, props, ...children) {
    const parts = spec.split('.');
    const e = document.createElement(parts[0] || 'div');
    if (parts.length > 1) e.className = parts.slice(1).join(' ');
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k === 'text') e.textContent = String(v);
        else if (k in e && k !== 'list' && k !== 'form') e[k] = v;
        else e.setAttribute(k, String(v));
      }
    }
    append(e, children);
    return e;
  }

  function append(e, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(e, c);
      else if (c instanceof Node) e.appendChild(c);
      else e.appendChild(document.createTextNode(String(c)));
    }
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  }

  // ---- formatting ---------------------------------------------------------

  function big(ns) {
    try {
      return BigInt(ns);
    } catch (_) {
      return null;
    }
  }

  // A duration in ns (Number) as text: 12 ns, 3.4 µs, 56.7 ms, 8.90 s.
  function fmtDur(ns) {
    if (!Number.isFinite(ns)) return '—';
    const a = Math.abs(ns);
    if (a < 1e3) return `${Math.round(ns)} ns`;
    if (a < 1e6) return `${(ns / 1e3).toPrecision(3)} µs`;
    if (a < 1e9) return `${(ns / 1e6).toPrecision(3)} ms`;
    if (a < 60e9) return `${(ns / 1e9).toPrecision(3)} s`;
    const s = Math.round(ns / 1e9);
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function pad(n, w) {
    return String(n).padStart(w, '0');
  }

  // Wall-clock time of an ns-since-epoch string, local, to the ms.
  function fmtTime(ns) {
    const b = big(ns);
    if (b === null || b <= 0n) return '—';
    const d = new Date(Number(b / 1000000n));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-` +
      `${pad(d.getDate(), 2)} ${pad(d.getHours(), 2)}:` +
      `${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.` +
      `${pad(d.getMilliseconds(), 3)}`;
  }

  // An attribute value (string, bool, number, array, object) as text.
  function fmtValue(v) {
    if (typeof v === 'string') return v;
    if (v === null || v === undefined) return '';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function attrMap(list) {
    const m = new Map();
    for (const a of list || []) m.set(a.key, a.value);
    return m;
  }

  function statusText(code) {
    return code === 2 ? 'ERROR' : code === 1 ? 'OK' : 'UNSET';
  }

  // ---- API ----------------------------------------------------------------

  async function api(path) {
    const r = await fetch(path, { headers: { Accept: 'application/json' } });
    if (!r.ok) {
      const err = new Error(`${path}: HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  // ---- routing ------------------------------------------------------------
  // #/?service=..&status=..        the trace list with its filters
  // #/trace/<id>?span=<id>         the waterfall (and a selected span)
  // #/trace/<id>/items             the work-item pipeline

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const q = raw.indexOf('?');
    const path = q < 0 ? raw : raw.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
    const m = path.match(/^\/trace\/([0-9a-fA-F]+)(\/items)?\/?$/);
    if (m) {
      return {
        view: m[2] ? 'items' : 'trace',
        traceId: m[1].toLowerCase(),
        params,
      };
    }
    return { view: 'list', params };
  }

  function traceHash(traceId, extra) {
    let s = `#/trace/${encodeURIComponent(traceId)}`;
    if (extra && extra.items) s += '/items';
    if (extra && extra.span) s += `?span=${encodeURIComponent(extra.span)}`;
    return s;
  }

  let current = null; // the active view; has a stop() method

  function route() {
    const r = parseHash();
    if (current && current.kind !== 'list' && r.view !== 'list' &&
        current.traceId === r.traceId) {
      current.update(r); // same trace: keep data and stream, switch tab
      return;
    }
    if (current) current.stop();
    closeDrawer();
    const app = clear(document.getElementById('app'));
    if (r.view === 'list') current = listView(app, r.params);
    else current = traceView(app, r.traceId, r);
  }

  function setCrumbs(...items) {
    const c = clear(document.getElementById('crumbs'));
    for (const it of items) {
      c.appendChild(h('span.sep', null, '/'));
      c.appendChild(it);
    }
  }

  function setLive(state, text) {
    const e = document.getElementById('live');
    if (!state) {
      e.hidden = true;
      return;
    }
    e.hidden = false;
    e.className = `live ${state}`;
    e.textContent = text;
  }

  // ---- drawer ---------------------------------------------------------------

  function openDrawer(title, body) {
    const d = clear(document.getElementById('drawer'));
    d.appendChild(h('div.drawer-head', null, h('h2', { text: title }),
      h('button.close', { type: 'button', title: 'Close', onclick: closeDrawer,
        text: '×' })));
    d.appendChild(h('div.drawer-body', null, body));
    d.hidden = false;
  }

  function closeDrawer() {
    const d = document.getElementById('drawer');
    d.hidden = true;
    clear(d);
  }

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') closeDrawer();
  });

  // ---- the trace list -------------------------------------------------------

  const FILTERS = ['service', 'task', 'status', 'event', 'attr', 'from', 'to'];

  // datetime-local value <-> ns since epoch (decimal string).
  function localToNs(v) {
    if (!v) return '';
    const ms = new Date(v).getTime();
    return Number.isFinite(ms) ? (BigInt(ms) * 1000000n).toString() : '';
  }

  function nsToLocal(ns) {
    const b = big(ns);
    if (b === null || b <= 0n) return '';
    const d = new Date(Number(b / 1000000n));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-` +
      `${pad(d.getDate(), 2)}T${pad(d.getHours(), 2)}:` +
      `${pad(d.getMinutes(), 2)}`;
  }

  function listView(root, params) {
    const view = { kind: 'list', stopped: false, timer: 0 };
    setCrumbs(h('span', { text: 'traces' }));
    setLive(null);

    const inputs = {};
    const field = (label, input) =>
      h('label.field', null, h('span', { text: label }), input);
    inputs.service = h('select', { name: 'service' },
      h('option', { value: '', text: 'any service' }));
    inputs.task = h('input', { name: 'task', placeholder: 'task id',
      type: 'search' });
    inputs.status = h('select', { name: 'status' },
      ['', 'ok', 'error', 'running'].map((s) =>
        h('option', { value: s, text: s || 'any status' })));
    inputs.event = h('input', { name: 'event', type: 'search',
      placeholder: 'e.g. work_item_failed' });
    inputs.attr = h('input', { name: 'attr', type: 'search',
      placeholder: 'key=value' });
    inputs.from = h('input', { name: 'from', type: 'datetime-local' });
    inputs.to = h('input', { name: 'to', type: 'datetime-local' });
    for (const k of FILTERS) {
      const v = params.get(k) || '';
      if (k === 'from' || k === 'to') inputs[k].value = nsToLocal(v);
      else if (k === 'service' && v) {
        inputs.service.appendChild(h('option', { value: v, text: v }));
        inputs.service.value = v;
      } else inputs[k].value = v;
    }
    const form = h('form.filters', {
      onsubmit: (ev) => {
        ev.preventDefault();
        const p = new URLSearchParams();
        for (const k of FILTERS) {
          let v = inputs[k].value.trim();
          if (k === 'from' || k === 'to') v = localToNs(v);
          if (v) p.set(k, v);
        }
        const s = p.toString();
        location.hash = s ? `#/?${s}` : '#/';
      },
    },
    field('Service', inputs.service), field('Task', inputs.task),
    field('Status', inputs.status), field('Event', inputs.event),
    field('Attribute', inputs.attr), field('From', inputs.from),
    field('To', inputs.to),
    h('div.actions', null,
      h('button', { type: 'submit', text: 'Filter' }),
      h('a.button.secondary', { href: '#/', text: 'Clear' })),
    importControl());

    // The list's state, and apart from it the last import's outcome: the
    // list refreshes by itself and must not wipe an import's message.
    const listNote = h('span', { text: 'Loading traces…' });
    const importNote = h('span.import-note');
    const summary = h('p.note', null, listNote, ' ', importNote);
    const table = h('table.traces', null, h('thead', null, h('tr', null,
      ['Started', 'Task', 'Service', 'Root span', 'Status', 'Duration',
        'Spans', 'Errors', 'Events'].map((t) => h('th', { text: t })))));
    const tbody = h('tbody');
    table.appendChild(tbody);
    root.appendChild(h('section.list', null, form, summary, table));

    api('/api/services').then((d) => {
      const have = new Set([...inputs.service.options].map((o) => o.value));
      for (const s of d.services || []) {
        if (!have.has(s)) inputs.service.appendChild(
          h('option', { value: s, text: s }));
      }
    }).catch(() => {});

    const q = new URLSearchParams({ limit: '200' });
    for (const k of FILTERS) if (params.get(k)) q.set(k, params.get(k));
    let lastText = '';

    async function load() {
      if (view.stopped) return;
      try {
        const r = await fetch(`/api/traces?${q}`);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const text = await r.text();
        if (view.stopped) return;
        if (text !== lastText) { // re-render only on change
          lastText = text;
          renderRows(JSON.parse(text).traces || []);
        }
      } catch (e) {
        listNote.textContent = `Could not load traces: ${e.message}`;
      }
      if (!view.stopped) view.timer = setTimeout(load, LIST_REFRESH_MS);
    }

    function renderRows(traces) {
      clear(tbody);
      const filtered = FILTERS.some((k) => params.get(k));
      listNote.textContent = traces.length === 0 ?
        (filtered ? 'No trace matches these filters.' :
          'No traces yet. Point a runner at this server: ' +
          `OTEL_EXPORTER_OTLP_ENDPOINT=${location.origin}`) :
        `${traces.length} trace${traces.length === 1 ? '' : 's'}, ` +
        'newest first (refreshes by itself)';
      for (const t of traces) {
        if (!HEX.test(t.trace_id)) continue;
        const href = traceHash(t.trace_id);
        const status = t.status || 'ok';
        tbody.appendChild(h(`tr.trace-row.${status}`, {
          dataset: { traceId: t.trace_id, task: t.task_id || '' },
          onclick: (ev) => {
            if (ev.target.closest('a')) return;
            location.hash = href;
          },
        },
        h('td.time', { text: fmtTime(t.start_ns) }),
        h('td.task', null, h('a', { href, text: t.task_id || t.trace_id })),
        h('td', { text: t.service || '' }),
        h('td', { text: t.root_name || '' }),
        h('td', null, h(`span.badge.${status}`, { text: status })),
        h('td.num', { text: fmtDur(Number(t.duration_ns)) }),
        h('td.num', { text: t.span_count }),
        h(`td.num${t.error_count > 0 ? '.errors' : ''}`,
          { text: t.error_count }),
        h('td.num', { text: t.event_count ?? '' })));
      }
    }

    // Import: post an OTLP/JSON file (a download from here, or `taskspan
    // dump --format otlp-json`) to this server's receiver, then open it.
    function importControl() {
      const file = h('input', { type: 'file', name: 'import',
        accept: '.json,application/json' });
      file.hidden = true;
      file.addEventListener('change', async () => {
        const f = file.files[0];
        if (!f) return;
        file.value = '';
        try {
          const text = await f.text();
          let first = '';
          try {
            const j = JSON.parse(text);
            const sp = (((((j.resourceSpans || [])[0] || {}).scopeSpans ||
              [])[0] || {}).spans || [])[0];
            if (sp && typeof sp.traceId === 'string') {
              first = sp.traceId.toLowerCase();
            }
          } catch (e) {
            throw new Error(`not JSON (${e.message})`);
          }
          const r = await fetch('/v1/traces', { method: 'POST',
            headers: { 'Content-Type': 'application/json' }, body: text });
          if (!r.ok) {
            let msg = `HTTP ${r.status}`;
            try {
              const b = await r.json();
              if (typeof b.message === 'string') msg += `: ${b.message}`;
            } catch (_) { /* no detail */ }
            throw new Error(msg);
          }
          importNote.textContent = `Imported ${f.name}.`;
          if (HEX.test(first) && first.length === 32) {
            location.hash = traceHash(first);
          } else {
            lastText = '';
            clearTimeout(view.timer);
            load();
          }
        } catch (e) {
          importNote.textContent = `Could not import ${f.name}: ${e.message}`;
        }
      });
      return h('div.actions.import', null, h('button.secondary', {
        type: 'button', text: 'Import OTLP JSON…',
        title: 'post an OTLP/JSON file (e.g. a downloaded trace) to this ' +
          'server and open it',
        onclick: () => file.click(),
      }), file);
    }

    load();
    view.stop = () => {
      view.stopped = true;
      clearTimeout(view.timer);
    };
    return view;
  }

  // ---- the trace model --------------------------------------------------------
  // Spans by id; derived layout (tree order, depths, time range) is rebuilt
  // when spans arrive, which is cheap next to rendering.

  function buildModel(spans) {
    let t0 = null;
    let t1 = null;
    for (const s of spans.values()) {
      s._start = big(s.start_ns);
      s._end = s.end_ns ? big(s.end_ns) : null;
      if (s._start === null) s._start = 0n;
      if (t0 === null || s._start < t0) t0 = s._start;
      const e = s._end === null ? s._start : s._end;
      if (t1 === null || e > t1) t1 = e;
      for (const ev of s.events || []) {
        const et = big(ev.time_ns);
        if (et !== null && et > t1) t1 = et;
      }
    }
    if (t0 === null) t0 = 0n;
    if (t1 === null) t1 = t0;
    // Open spans reach to the latest time seen (they are still running).
    const children = new Map();
    const roots = [];
    for (const s of spans.values()) {
      s._rel = Number(s._start - t0);
      s._dur = Number((s._end === null ? t1 : s._end) - s._start);
      s._attrs = attrMap(s.attributes);
      s._error = s.status && s.status.code === 2;
      s._crashed = s._attrs.get('taskspan.crashed') === true ||
        s._attrs.get('taskspan.crashed') === 'true';
      s._orphan = false;
      const p = s.parent_span_id;
      if (p && spans.has(p) && p !== s.span_id) {
        if (!children.has(p)) children.set(p, []);
        children.get(p).push(s);
      } else {
        s._orphan = !!p; // its parent has not arrived (or is elsewhere)
        roots.push(s);
      }
    }
    const byStart = (a, b) =>
      (a._start < b._start ? -1 : a._start > b._start ? 1 :
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    roots.sort(byStart);
    for (const c of children.values()) c.sort(byStart);
    // Depth-first order without recursion (10,000-deep chains are legal).
    const order = [];
    const seen = new Set();
    const stack = roots.slice().reverse().map((s) => [s, 0]);
    while (stack.length) {
      const [s, depth] = stack.pop();
      if (seen.has(s.span_id)) continue;
      seen.add(s.span_id);
      s._depth = depth;
      s._kids = (children.get(s.span_id) || []).length;
      order.push(s);
      const c = children.get(s.span_id) || [];
      for (let i = c.length - 1; i >= 0; i--) stack.push([c[i], depth + 1]);
    }
    // Spans in a parent cycle never reach a root: show them at the top.
    for (const s of spans.values()) {
      if (!seen.has(s.span_id)) {
        s._depth = 0;
        s._kids = 0;
        s._orphan = true;
        order.push(s);
      }
    }
    // Where each later runner started (a main span of incarnation >= 2):
    // drawn as a line across the waterfall, so a restart is visible.
    const restarts = [];
    for (const s of spans.values()) {
      const inc = Number(s._attrs.get('taskspan.incarnation'));
      if (s.name === 'main' && inc >= 2) {
        restarts.push({ rel: s._rel, inc });
      }
    }
    return { t0, t1, total: Number(t1 - t0), order, children, restarts };
  }

  function spanKind(s) {
    if (s.name === 'main') return 'main';
    if (s.name === 'recovery_sweep') return 'recovery';
    if (s.name.startsWith('work_')) return 'work';
    return 'other';
  }

  // ---- the trace view ------------------------------------------------------

  function traceView(root, traceId, r) {
    const view = {
      kind: r.view, traceId, stopped: false, spans: new Map(),
      info: null, model: null, selected: r.params.get('span') || '',
      collapsed: new Set(), fresh: new Map(), es: null, pending: 0,
      filter: '', liveCount: 0, loaded: false,
    };
    const short = traceId.slice(0, 12);
    setCrumbs(h('a', { href: '#/', text: 'traces' }),
      h('span', { text: `trace ${short}…` }));

    const header = h('div.trace-head');
    const tabs = h('nav.tabs');
    const body = h('div.trace-body');
    root.appendChild(h('section.trace', null, header, tabs, body));

    // The stream opens after the first GET has been drawn, so a big trace
    // renders without competing with it. It starts from the trace's first
    // span (no Last-Event-ID yet), so nothing that arrived between the two
    // is missed; what the GET already showed merges away unchanged.
    function connect() {
      if (typeof EventSource === 'undefined') return;
      const es = new EventSource(
        `/api/stream?trace=${encodeURIComponent(traceId)}`);
      view.es = es;
      // What the stream delivered, raw (for tests and for debugging).
      const stats = { opens: 0, events: 0, lastEventId: '' };
      window.__taskspanStream = stats;
      es.addEventListener('open', () => {
        stats.opens++;
        setLive('on', view.liveCount ? `live · ${view.liveCount} updates` :
          'live');
      });
      es.addEventListener('error', () => {
        // EventSource reconnects by itself and sends Last-Event-ID.
        if (!view.stopped) setLive('off', 'reconnecting…');
      });
      es.addEventListener('span', (ev) => {
        stats.events++;
        stats.lastEventId = ev.lastEventId;
        let d;
        try {
          d = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        if (!d || !d.span || (d.trace_id && d.trace_id !== traceId)) return;
        if (merge([d.span], true) === 0) return; // already shown as is
        view.liveCount++;
        setLive('on', `live · ${view.liveCount} update` +
          (view.liveCount === 1 ? '' : 's'));
      });
    }

    // Same span, same content: a replay of what the page already shows.
    // (The fields this page adds to a span start with "_".)
    const plain = (k, v) => (k.startsWith('_') ? undefined : v);
    function same(shown, incoming) {
      return shown.end_ns === incoming.end_ns &&
        JSON.stringify(shown, plain) === JSON.stringify(incoming);
    }

    // Spans by span_id: an update replaces, never duplicates. Returns how
    // many spans were new or changed.
    function merge(spans, live) {
      let changed = 0;
      for (const s of spans) {
        if (!s || typeof s.span_id !== 'string') continue;
        const prev = view.spans.get(s.span_id);
        if (prev && same(prev, s)) continue;
        changed++;
        if (live) view.fresh.set(s.span_id, performance.now());
        view.spans.set(s.span_id, s);
      }
      if (changed) schedule();
      return changed;
    }

    function schedule() {
      if (view.pending || view.stopped) return;
      view.pending = requestAnimationFrame(() => {
        view.pending = 0;
        render();
      });
    }

    async function load() {
      try {
        const d = await api(`/api/traces/${encodeURIComponent(traceId)}`);
        if (view.stopped) return;
        view.info = d;
        merge(d.spans || [], view.loaded);
        view.loaded = true;
        schedule();
        // A running task read from the recorder's buffer (serve --db) has
        // open spans that no exporter sends yet: poll it while it runs.
        if (d.source === 'buffer' && d.status === 'running') {
          view.poll = setTimeout(load, 2000);
        }
      } catch (e) {
        if (view.stopped) return;
        view.loaded = true;
        view.loadError = e.status === 404 ?
          'No span of this trace has arrived yet; waiting for live spans.' :
          `Could not load the trace: ${e.message}`;
        render();
      }
    }

    let wf = null; // the waterfall widget, kept across renders

    function render() {
      if (view.stopped) return;
      view.model = buildModel(view.spans);
      renderHeader();
      renderTabs();
      if (view.spans.size === 0) {
        clear(body);
        wf = null;
        body.appendChild(h('p.note',
          { text: view.loadError || 'Loading the trace…' }));
        return;
      }
      if (view.kind === 'items') {
        wf = null;
        clear(body);
        body.appendChild(itemsPanel(view, openCheckpoints));
        return;
      }
      if (!wf) {
        clear(body);
        wf = waterfall(view, body, selectSpan);
      }
      wf.refresh();
      if (view.loaded && !view.reported) {
        // For tests and measurements: the first render of the loaded trace,
        // after style and layout (reading a box forces them).
        view.reported = true;
        document.getElementById('waterfall').getBoundingClientRect();
        window.__taskspanRendered = {
          traceId, spans: view.spans.size, at: performance.now(),
        };
      }
    }

    function renderHeader() {
      const m = view.model;
      const spans = [...view.spans.values()];
      const errors = spans.filter((s) => s._error).length;
      const open = spans.filter((s) => s.open || !s.end_ns).length;
      const task = (view.info && view.info.task_id) ||
        spans.map((s) => s._attrs.get('taskspan.task_id'))
          .find((v) => typeof v === 'string') || null;
      const service = (view.info && view.info.service) ||
        (spans[0] && spans[0].service) || '';
      const status = open ? 'running' : errors ? 'error' : 'ok';
      const incs = new Set(spans.map((s) => s._attrs.get('taskspan.incarnation'))
        .filter((v) => v !== undefined).map(String));
      const crashed = spans.filter((s) => s._crashed).length;
      const nEvents = spans.reduce((n, s) => n + (s.events || []).length, 0);
      clear(header);
      header.appendChild(h('div.title', null,
        h('h1', { text: task ? `task ${task}` : `trace ${traceId}` }),
        h(`span.badge.${status}`, { text: status })));
      header.appendChild(h('dl.facts', null,
        fact('trace id', traceId, 'mono'),
        fact('service', service),
        fact('started', fmtTime(m.t0.toString())),
        fact('duration', fmtDur(m.total)),
        fact('spans', String(spans.length)),
        fact('errors', String(errors), errors ? 'errors' : ''),
        fact('events', String(nEvents)),
        incs.size ? fact('incarnations', String(incs.size)) : null,
        view.info && view.info.source === 'buffer' ?
          fact('source', 'recorder buffer (--db), read every 2 s while it ' +
            'runs') : null,
        crashed ? fact('crashed spans', String(crashed), 'errors') : null));
      const nCk = checkpointEvents(view.spans).length;
      header.appendChild(h('div.actions', null,
        h('button.secondary', { type: 'button', onclick: openCheckpoints,
          id: 'checkpoints-button',
          text: `Checkpoint evidence (${nCk})` }),
        h('a.button.secondary', {
          href: `/api/traces/${encodeURIComponent(traceId)}/otlp.json`,
          download: `trace-${traceId}.otlp.json`,
          text: 'Download OTLP JSON',
        })));
    }

    function fact(k, v, cls) {
      return h('div', null, h('dt', { text: k }),
        h(`dd${cls ? `.${cls}` : ''}`, { text: v }));
    }

    function renderTabs() {
      clear(tabs);
      const items = workItems(view.spans).length;
      tabs.appendChild(h(`a${view.kind === 'trace' ? '.active' : ''}`,
        { href: traceHash(traceId), text: 'Timeline' }));
      tabs.appendChild(h(`a${view.kind === 'items' ? '.active' : ''}`,
        { href: traceHash(traceId, { items: true }),
          text: `Work items (${items})` }));
    }

    function openCheckpoints(filterItem) {
      const item = typeof filterItem === 'string' ? filterItem : '';
      openDrawer(item ? `Checkpoint evidence: ${item}` :
        'Checkpoint evidence', checkpointPanel(view.spans, item));
    }

    function selectSpan(id) {
      // Keep the selection in the URL, so a link to it can be shared.
      view.selected = id;
      const want = traceHash(traceId, id ? { span: id } : null);
      if (location.hash !== want) history.replaceState(null, '', want);
      if (wf) wf.refresh();
    }

    view.reveal = (id) => {
      if (view.kind !== 'trace' || !wf) {
        location.hash = traceHash(traceId, { span: id });
        return;
      }
      wf.reveal(id);
      selectSpan(id);
    };
    view.update = (r2) => {
      view.kind = r2.view;
      const sp = r2.params.get('span');
      if (sp) view.selected = sp;
      if (view.kind === 'trace') wf = null;
      render();
      if (sp && wf) wf.reveal(sp);
    };
    view.stop = () => {
      view.stopped = true;
      if (view.es) view.es.close();
      clearTimeout(view.poll);
      if (view.pending) cancelAnimationFrame(view.pending);
      setLive(null);
    };

    load().then(() => {
      connect();
      if (view.selected) {
        render();
        if (wf) wf.reveal(view.selected);
      }
    });
    render();
    return view;
  }

  // ---- the waterfall -------------------------------------------------------

  function waterfall(view, parent, onSelect) {
    const search = h('input.search', { type: 'search',
      placeholder: 'find spans by name, id or attribute value',
      value: view.filter });
    const found = h('span.found');
    const tools = h('div.wf-tools', null, search, found,
      h('span.legend', null,
        h('span.key.main', { text: 'main' }),
        h('span.key.work', { text: 'work item' }),
        h('span.key.recovery', { text: 'recovery' }),
        h('span.key.error', { text: 'error' }),
        h('span.key.crashed', { text: 'crashed' }),
        h('span.key.open', { text: 'open' })));
    const axis = h('div.wf-axis');
    const head = h('div.wf-head', null, h('div.wf-namecol', { text: 'Span' }),
      axis);
    const rows = h('div.wf-rows');
    const spacer = h('div.wf-spacer', null, rows);
    const scroller = h('div.wf-scroll', null, spacer);
    const wfBox = h('div.waterfall', { id: 'waterfall' }, tools, head,
      scroller);
    const detail = h('div.detail', { id: 'detail' });
    const grid = h('div.trace-grid', null, wfBox, detail);
    parent.appendChild(grid);

    let visible = []; // spans in display order, collapsed subtrees removed
    let matches = null; // Set of span ids matching the search, or null
    let detailFor = null; // the span object the detail panel shows

    search.addEventListener('input', () => {
      view.filter = search.value.trim().toLowerCase();
      refresh();
    });
    scroller.addEventListener('scroll', () => drawRows());
    window.addEventListener('resize', () => drawRows());

    function computeVisible() {
      const m = view.model;
      visible = [];
      let skipDepth = -1;
      for (const s of m.order) {
        if (skipDepth >= 0) {
          if (s._depth > skipDepth) continue;
          skipDepth = -1;
        }
        visible.push(s);
        if (view.collapsed.has(s.span_id) && s._kids) skipDepth = s._depth;
      }
      matches = null;
      if (view.filter) {
        matches = new Set();
        for (const s of m.order) {
          if (spanMatches(s, view.filter)) matches.add(s.span_id);
        }
        found.textContent = `${matches.size} match` +
          (matches.size === 1 ? '' : 'es');
      } else {
        found.textContent = '';
      }
    }

    // The time window shown, in ns from the trace start: all of it, or the
    // range dragged on the axis (view.zoom).
    function windowNs() {
      const total = Math.max(view.model.total, 1);
      return view.zoom ? view.zoom : [0, total];
    }

    // x of a time (ns from the trace start) in % of the track.
    function pct(rel) {
      const [a, b] = windowNs();
      return (100 * (rel - a)) / Math.max(b - a, 1);
    }

    function drawAxis() {
      clear(axis);
      const [a, b] = windowNs();
      const n = 5;
      for (let i = 0; i <= n; i++) {
        const t = a + ((b - a) * i) / n;
        const tick = h('span.tick', { text: t === 0 ? '0' : fmtDur(t) });
        tick.style.left = `${(100 * i) / n}%`;
        if (i === n) tick.classList.add('last');
        axis.appendChild(tick);
      }
      for (const r of view.model.restarts) {
        const at = pct(r.rel);
        if (at < 0 || at > 100) continue;
        const mk = h('span.restart-label', { text: `runner #${r.inc}`,
          title: `runner incarnation ${r.inc} started here` });
        mk.style.left = `${at}%`;
        if (at > 85) mk.classList.add('left');
        axis.appendChild(mk);
      }
      axis.appendChild(sel);
      zoomOut.hidden = !view.zoom;
    }

    // Drag on the axis to zoom into a time range; "all" zooms out.
    const sel = h('div.axis-sel');
    sel.hidden = true;
    const zoomOut = h('button.secondary.small', { type: 'button',
      text: 'show all', title: 'zoom out to the whole trace',
      onclick: () => {
        view.zoom = null;
        refresh();
      } });
    zoomOut.hidden = true;
    tools.insertBefore(zoomOut, tools.querySelector('.legend'));
    axis.title = 'drag to zoom into a time range';
    axis.addEventListener('mousedown', (e) => {
      const box = axis.getBoundingClientRect();
      const frac = (x) => Math.min(1, Math.max(0, (x - box.left) / box.width));
      const f0 = frac(e.clientX);
      let f1 = f0;
      sel.hidden = false;
      const draw = () => {
        sel.style.left = `${100 * Math.min(f0, f1)}%`;
        sel.style.width = `${100 * Math.abs(f1 - f0)}%`;
      };
      draw();
      const move = (m) => {
        f1 = frac(m.clientX);
        draw();
      };
      const up = () => {
        document.removeEventListener('mousemove', move);
        document.removeEventListener('mouseup', up);
        sel.hidden = true;
        if (Math.abs(f1 - f0) < 0.01) return;
        const [a, b] = windowNs();
        view.zoom = [a + (b - a) * Math.min(f0, f1),
          a + (b - a) * Math.max(f0, f1)];
        refresh();
      };
      document.addEventListener('mousemove', move);
      document.addEventListener('mouseup', up);
      e.preventDefault();
    });

    function drawRows() {
      spacer.style.height = `${visible.length * ROW_HEIGHT}px`;
      const top = scroller.scrollTop;
      const height = scroller.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
      const last = Math.min(visible.length,
        Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
      rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
      clear(rows);
      const now = performance.now();
      for (let i = first; i < last; i++) {
        const r = row(visible[i], now);
        r.dataset.row = String(i);
        rows.appendChild(r);
      }
      wfBox.dataset.renderedRows = String(last - first);
      wfBox.dataset.spans = String(view.model.order.length);
    }

    function row(s, now) {
      const kind = spanKind(s);
      const cls = ['wf-row', kind];
      if (s._error) cls.push('error');
      if (s._crashed) cls.push('crashed');
      if (s.open || !s.end_ns) cls.push('open');
      if (s.span_id === view.selected) cls.push('selected');
      if (matches && matches.has(s.span_id)) cls.push('match');
      if (matches && !matches.has(s.span_id)) cls.push('dim');
      const t = view.fresh.get(s.span_id);
      if (t !== undefined && now - t < 4000) cls.push('fresh');
      const inc = s._attrs.get('taskspan.incarnation');

      const tog = h('button.tog', { type: 'button',
        title: s._kids ? 'collapse / expand' : '',
        text: s._kids ? (view.collapsed.has(s.span_id) ? '▸' : '▾') : '' });
      if (s._kids) {
        tog.addEventListener('click', (ev) => {
          ev.stopPropagation();
          if (view.collapsed.has(s.span_id)) view.collapsed.delete(s.span_id);
          else view.collapsed.add(s.span_id);
          refresh();
        });
      } else tog.disabled = true;

      const name = h('div.wf-name', { title: s.name },
        tog,
        h('span.nm', { text: s.name }),
        s._error ? h('span.flag.err', { text: '!', title: 'status ERROR' })
          : null,
        s._crashed ? h('span.flag.crash', { text: 'crashed',
          title: 'the runner was killed or crashed' }) : null,
        inc !== undefined ? h('span.flag.inc', { text: `#${inc}`,
          title: `incarnation ${inc}` }) : null,
        (s.links || []).length ? h('span.flag.link', { text: '↩',
          title: 'has links' }) : null,
        // Another service's span in this trace: say whose.
        s.service && view.info && view.info.service &&
          s.service !== view.info.service ? h('span.flag.svc',
            { text: s.service, title: 'service' }) : null,
        (s.open || !s.end_ns) ? h('span.flag.open', { text: 'open',
          title: 'still running: no end yet' }) : null,
        s._orphan ? h('span.flag.orphan', { text: '?',
          title: 'parent span not in this trace (yet)' }) : null);
      name.style.paddingLeft = `${4 + Math.min(s._depth, 40) * 14}px`;

      const track = h('div.wf-track');
      const bar = h('div.wf-bar');
      // Clipped to the window; a span outside it keeps its row, no bar.
      const x0 = pct(s._rel);
      const x1 = pct(s._rel + s._dur);
      const left = Math.min(Math.max(x0, 0), 100);
      const width = Math.max(Math.min(x1, 100) - left, 0.15);
      bar.style.left = `${left}%`;
      bar.style.width = `${Math.min(width, 100 - left)}%`;
      if (x1 < 0 || x0 > 100) bar.hidden = true;
      if (x0 < 0) bar.classList.add('cut-left');
      if (x1 > 100) bar.classList.add('cut-right');
      track.appendChild(bar);
      for (const ev of s.events || []) {
        const et = big(ev.time_ns);
        if (et === null) continue;
        const mk = h(`span.wf-ev${ev.name.includes('fail') ||
          ev.name.includes('invalid') || ev.name.includes('lost') ?
          '.bad' : ''}`, { title: `${ev.name} @ +` +
          `${fmtDur(Number(et - view.model.t0))}` });
        const at = pct(Number(et - view.model.t0));
        if (at < 0 || at > 100) continue;
        mk.style.left = `${at}%`;
        mk.addEventListener('click', (e) => {
          e.stopPropagation();
          onSelect(s.span_id);
          showEvent(ev);
        });
        track.appendChild(mk);
      }
      for (const r of view.model.restarts) {
        const at = pct(r.rel);
        if (at < 0 || at > 100) continue;
        const line = h('span.wf-restart');
        line.style.left = `${at}%`;
        track.appendChild(line);
      }
      const label = h('span.wf-dur', { text: (s.open || !s.end_ns) ?
        `${fmtDur(s._dur)}…` : fmtDur(s._dur) });
      if (left > 70) {
        label.classList.add('before');
        label.style.right = `${100 - left}%`;
      } else {
        label.style.left = `${Math.min(left + width, 100)}%`;
      }
      track.appendChild(label);

      return h(`div.${cls.join('.')}`, {
        dataset: { spanId: s.span_id, name: s.name },
        onclick: () => onSelect(s.span_id === view.selected ? '' : s.span_id),
      }, name, track);
    }

    function drawDetail() {
      const s = view.selected ? view.spans.get(view.selected) : null;
      if (s === detailFor && s) return; // unchanged object: keep scroll
      detailFor = s;
      clear(detail);
      grid.classList.toggle('with-detail', !!s);
      if (!s) return;
      detail.appendChild(spanDetail(s, view, onSelect));
    }

    // Open and scroll to one event of the selected span's detail.
    function showEvent(ev) {
      for (const li of detail.querySelectorAll('ol.events > li')) {
        if (li._ev !== ev) continue;
        li.querySelector('details').open = true;
        li.classList.add('focus');
        li.scrollIntoView({ block: 'nearest' });
      }
    }

    // Arrow keys move the selection through the visible rows.
    document.addEventListener('keydown', function onKey(e) {
      if (!document.body.contains(grid)) {
        document.removeEventListener('keydown', onKey);
        return;
      }
      if (e.target.closest('input, select, textarea')) return;
      if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
      const i = visible.findIndex((x) => x.span_id === view.selected);
      const j = Math.min(visible.length - 1,
        Math.max(0, i + (e.key === 'ArrowDown' ? 1 : -1)));
      if (!visible[j] || j === i) return;
      e.preventDefault();
      onSelect(visible[j].span_id);
      reveal(visible[j].span_id);
    });

    function refresh() {
      computeVisible();
      drawAxis();
      drawRows();
      drawDetail();
    }

    // Scroll a span into view (expanding its ancestors) and select it.
    function reveal(id) {
      const s = view.spans.get(id);
      if (!s) return;
      let p = s.parent_span_id;
      const guard = new Set();
      while (p && view.spans.has(p) && !guard.has(p)) {
        guard.add(p);
        view.collapsed.delete(p);
        p = view.spans.get(p).parent_span_id;
      }
      view.selected = id;
      refresh();
      const i = visible.indexOf(s);
      if (i >= 0) {
        const top = i * ROW_HEIGHT;
        if (top < scroller.scrollTop ||
            top > scroller.scrollTop + scroller.clientHeight - ROW_HEIGHT) {
          scroller.scrollTop = Math.max(0, top - 3 * ROW_HEIGHT);
        }
      }
    }

    // Fresh rows lose their highlight after a few seconds.
    const fade = setInterval(() => {
      if (!document.body.contains(grid)) {
        clearInterval(fade);
        return;
      }
      if (view.fresh.size) {
        const now = performance.now();
        let changed = false;
        for (const [id, t] of view.fresh) {
          if (now - t >= 4000) {
            view.fresh.delete(id);
            changed = true;
          }
        }
        if (changed) drawRows();
      }
    }, 1000);

    return { refresh, reveal };
  }

  function spanMatches(s, q) {
    if (s.name.toLowerCase().includes(q) || s.span_id.startsWith(q)) {
      return true;
    }
    for (const a of s.attributes || []) {
      if (fmtValue(a.value).toLowerCase().includes(q)) return true;
    }
    for (const ev of s.events || []) {
      if (ev.name.toLowerCase().includes(q)) return true;
    }
    return false;
  }

  // ---- span detail ------------------------------------------------------

  function attrTable(list, cls) {
    if (!list || list.length === 0) return h('p.none', { text: 'none' });
    return h(`table.attrs${cls ? `.${cls}` : ''}`, null, h('tbody', null,
      list.map((a) => h('tr', null, h('th', { text: a.key }),
        h(`td.v.${typeof a.value === 'string' ? 'str' : 'lit'}`,
          { text: fmtValue(a.value) })))));
  }

  function spanDetail(s, view, onSelect) {
    const t0 = view.model.t0;
    const open = s.open || !s.end_ns;
    const code = s.status ? s.status.code : 0;
    const parts = [];
    parts.push(h('div.detail-head', null,
      h('h2', { text: s.name }),
      h('button.close', { type: 'button', title: 'Close',
        onclick: () => onSelect(''), text: '×' })));
    const facts = h('dl.facts.compact', null,
      dtdd('status', statusText(code) +
        (s.status && s.status.message ? `: ${s.status.message}` : ''),
      code === 2 ? 'errors' : ''),
      dtdd('span id', s.span_id, 'mono'),
      dtdd('service', s.service || ''),
      dtdd('kind', String(s.kind ?? '')),
      dtdd('start', `+${fmtDur(s._rel)}  (${fmtTime(s.start_ns)})`),
      dtdd('duration', open ? `${fmtDur(s._dur)} so far (open)` :
        fmtDur(s._dur)));
    if (s.parent_span_id) {
      const p = view.spans.get(s.parent_span_id);
      facts.appendChild(h('div', null, h('dt', { text: 'parent' }),
        h('dd', null, p ? h('a', { href: '#', text: p.name,
          onclick: (ev) => {
            ev.preventDefault();
            follow(view, view.traceId, p.span_id);
          } }) : h('span.mono', { text: `${s.parent_span_id} (not here)` }))));
    }
    parts.push(facts);
    if (s._crashed) {
      parts.push(h('p.callout.crash', { text: 'This span was left open by a ' +
        'runner that was killed or crashed; taskspan closed it when the ' +
        'next runner started.' }));
    }

    parts.push(h('h3', { text: `Attributes (${(s.attributes || []).length})` }),
      attrTable(s.attributes, 'span-attrs'));

    const evs = (s.events || []).slice().sort((a, b) => {
      const x = big(a.time_ns) || 0n;
      const y = big(b.time_ns) || 0n;
      return x < y ? -1 : x > y ? 1 : 0;
    });
    parts.push(h('h3', { text: `Events (${evs.length})` }));
    if (evs.length === 0) parts.push(h('p.none', { text: 'none' }));
    const list = h('ol.events');
    for (const ev of evs) {
      const et = big(ev.time_ns);
      const rel = et === null ? NaN : Number(et - t0);
      const bad = /fail|invalid|lost/.test(ev.name);
      const li = list.appendChild(h(`li${bad ? '.bad' : ''}`, null,
        h('details', { open: evs.length <= 8 },
          h('summary', null, h('span.ev-name', { text: ev.name }),
            h('span.ev-time', { text: `+${fmtDur(rel)}` })),
          attrTable(ev.attributes, 'ev-attrs'))));
      li._ev = ev; // for showEvent: the marker knows its event object
    }
    parts.push(list);

    const links = s.links || [];
    parts.push(h('h3', { text: `Links (${links.length})` }));
    if (links.length === 0) parts.push(h('p.none', { text: 'none' }));
    for (const l of links) {
      const here = l.trace_id === view.traceId;
      const target = here ? view.spans.get(l.span_id) : null;
      const label = target ? `${target.name} (${l.span_id})` :
        `${here ? '' : `trace ${l.trace_id} / `}span ${l.span_id}`;
      parts.push(h('div.link', null,
        h('a.follow', {
          href: HEX.test(l.trace_id) && HEX.test(l.span_id) ?
            traceHash(l.trace_id, { span: l.span_id }) : '#',
          text: `→ ${label}`,
          onclick: (ev) => {
            ev.preventDefault();
            if (HEX.test(l.trace_id) && HEX.test(l.span_id)) {
              follow(view, l.trace_id, l.span_id);
            }
          },
        }),
        attrTable(l.attributes, 'link-attrs')));
    }
    return h('div.span-detail', { dataset: { spanId: s.span_id } }, parts);
  }

  function dtdd(k, v, cls) {
    return h('div', null, h('dt', { text: k }),
      h(`dd${cls ? `.${cls}` : ''}`, { text: v }));
  }

  // Go to a span: in this trace, select and scroll; elsewhere, navigate.
  function follow(view, traceId, spanId) {
    if (traceId === view.traceId && view.reveal) view.reveal(spanId);
    else location.hash = traceHash(traceId, { span: spanId });
  }

  // ---- work items -----------------------------------------------------------
  // Built from the span events: work_item_dispatched on main, the
  // work_<id> spans (one per attempt) with start/lease/done/failed, and
  // recovery_requeued on the recovery sweep.

  function allEvents(spans) {
    const out = [];
    for (const s of spans.values()) {
      for (const ev of s.events || []) {
        out.push({ span: s, ev, t: big(ev.time_ns) || 0n,
          a: attrMap(ev.attributes) });
      }
    }
    out.sort((x, y) => {
      if (x.t !== y.t) return x.t < y.t ? -1 : 1;
      const sx = Number(x.a.get('taskspan.seq') || 0);
      const sy = Number(y.a.get('taskspan.seq') || 0);
      return sx - sy;
    });
    return out;
  }

  function workItems(spans) {
    const items = new Map();
    const get = (id) => {
      if (!items.has(id)) {
        items.set(id, { id, title: '', index: null, dispatched: null,
          attempts: [], requeues: [], leases: [], state: 'dispatched' });
      }
      return items.get(id);
    };
    for (const s of spans.values()) {
      if (!s.name.startsWith('work_')) continue;
      const id = s.name.slice(5);
      const it = get(id);
      it.attempts.push(s);
    }
    for (const { span, ev, t, a } of allEvents(spans)) {
      const id = a.get('work_item_id');
      if (typeof id !== 'string') continue;
      if (ev.name === 'work_item_dispatched') {
        const it = get(id);
        it.dispatches = (it.dispatches || 0) + 1;
        if (!it.dispatched) it.dispatched = { t, span }; // the first one
        it.title = fmtValue(a.get('title') ?? it.title);
        it.index = a.get('index') ?? it.index;
      } else if (ev.name === 'recovery_requeued') {
        get(id).requeues.push({ t, a });
      } else if (ev.name.startsWith('lease_') && items.has(id)) {
        items.get(id).leases.push({ t, name: ev.name, a, span });
      } else if (/^work_item_(done|failed)$/.test(ev.name)) {
        const it = get(id);
        if (!it.title && a.get('title')) it.title = fmtValue(a.get('title'));
      }
    }
    for (const it of items.values()) {
      it.attempts.sort((x, y) => (x._start < y._start ? -1 : 1));
      const last = it.attempts[it.attempts.length - 1];
      if (!last) it.state = 'dispatched';
      else if (last._crashed) it.state = 'crashed';
      else if (last.events && last.events.some((e) =>
        e.name === 'work_item_failed')) it.state = 'failed';
      else if (last.events && last.events.some((e) =>
        e.name === 'work_item_done')) it.state = 'done';
      else if (last._error) it.state = 'failed';
      else if (last.open || !last.end_ns) it.state = 'running';
      else it.state = 'started';
    }
    return [...items.values()].sort((x, y) => {
      const ix = Number(x.index ?? Infinity);
      const iy = Number(y.index ?? Infinity);
      return ix !== iy ? ix - iy : x.id < y.id ? -1 : 1;
    });
  }

  function attemptOutcome(sp) {
    const has = (n) => (sp.events || []).some((e) => e.name === n);
    if (sp._crashed) return 'crashed';
    if (has('work_item_failed') || sp._error) return 'failed';
    if (has('work_item_done')) return 'done';
    return sp.open || !sp.end_ns ? 'running' : 'ended';
  }

  function eventTime(span, name) {
    const e = (span.events || []).find((x) => x.name === name);
    return e ? big(e.time_ns) : null;
  }

  function itemsPanel(view, openCheckpoints) {
    const t0 = view.model.t0;
    const rel = (t) => (t === null ? '' : `+${fmtDur(Number(t - t0))}`);
    const items = workItems(view.spans);
    const cks = checkpointGroups(view.spans);
    if (items.length === 0) {
      return h('p.note', { text: 'This trace has no work items ' +
        '(no work_<id> spans and no work_item_dispatched events).' });
    }
    const counts = { dispatched: 0, running: 0, started: 0, done: 0,
      failed: 0, crashed: 0 };
    for (const it of items) counts[it.state] = (counts[it.state] || 0) + 1;
    const summary = h('p.note', { text: `${items.length} work items: ` +
      `${counts.done} done, ${counts.failed} failed, ` +
      (counts.crashed ? `${counts.crashed} lost in a crash, ` : '') +
      `${counts.running + counts.started} in progress, ` +
      `${counts.dispatched} waiting` });

    const rows = items.map((it) => {
      const last = it.attempts[it.attempts.length - 1];
      const stage = (name, label, reached, t, extra, cls) =>
        h(`div.stage.${name}${reached ? '.reached' : ''}${cls ? `.${cls}` :
          ''}`, null, h('div.stage-name', { text: label }),
        h('div.stage-time', { text: reached ? rel(t) : '—' }), extra);
      const startT = last ? (eventTime(last, 'work_item_start') ||
        last._start) : null;
      const doneT = last ? (eventTime(last, 'work_item_done') ||
        eventTime(last, 'work_item_failed') || last._end) : null;
      const final = ['failed', 'crashed', 'done'].includes(it.state) ?
        it.state : 'pending';
      const errMsg = last && last._error && last.status ?
        last.status.message : '';
      const leaseList = it.leases.map((l) => {
        const holder = fmtValue(l.a.get('lease_holder') ??
          l.a.get('new_holder') ?? '');
        const secs = l.a.get('lease_duration_seconds') ??
          l.a.get('extended_by_seconds');
        return h(`li.${l.name}`, { text: `${l.name.slice(6)} ${holder}` +
          (secs !== undefined ? ` (${fmtValue(secs)} s)` : '') +
          ` ${rel(l.t)}` });
      });
      const myCks = cks.filter((c) => c.work_item_id === it.id ||
        c.checkpoint_id.includes(it.id));
      const retries = Math.max(it.requeues.length, it.attempts.length - 1);
      return h(`div.item.${it.state}`, { dataset: { item: it.id } },
        h('div.item-head', null,
          h('span.item-id', { text: it.id }),
          h('span.item-title', { text: it.title }),
          h(`span.badge.${['failed', 'crashed'].includes(it.state) ?
            'error' : it.state === 'done' ? 'ok' : 'running'}`,
          { text: it.state }),
          retries > 0 ? h('span.flag.retry', { text: `${retries} retr` +
            `${retries === 1 ? 'y' : 'ies'}` }) : null,
          it.attempts.length > 1 ? h('span.flag.inc',
            { text: `${it.attempts.length} attempts` }) : null),
        h('div.pipeline', null,
          stage('dispatched', it.dispatches > 1 ?
            `dispatched ×${it.dispatches}` : 'dispatched', !!it.dispatched,
          it.dispatched ? it.dispatched.t : null),
          h('span.arrow', { text: '→' }),
          stage('started', 'started', !!last, startT,
            leaseList.length ? h('ul.leases', null, leaseList) : null),
          h('span.arrow', { text: '→' }),
          stage(final, final === 'pending' ? 'done / failed' : final,
            final !== 'pending', doneT,
            errMsg ? h('div.stage-msg', { text: errMsg }) : null,
            final)),
        h('div.item-foot', null,
          it.attempts.map((sp, n) => h(`a.attempt.${attemptOutcome(sp)}`, {
            href: traceHash(view.traceId, { span: sp.span_id }),
            title: sp.status && sp.status.message ? sp.status.message : '',
            text: `attempt ${n + 1}` +
              (sp._attrs.has('taskspan.incarnation') ?
                ` (runner #${sp._attrs.get('taskspan.incarnation')})` : '') +
              `: ${attemptOutcome(sp)}`,
          })),
          it.requeues.map((r) => h('span.requeue', { text: 'requeued ' +
            `${rel(r.t)} from ${fmtValue(r.a.get('previous_holder') ?? '?')}` +
            ` (retry ${fmtValue(r.a.get('retry_count') ?? '?')}/` +
            `${fmtValue(r.a.get('max_retries') ?? '?')})` })),
          myCks.length ? h('button.secondary.small', { type: 'button',
            text: `evidence (${myCks.length})`,
            onclick: () => openCheckpoints(it.id) }) : null));
    });
    return h('section.items', { id: 'items' }, summary, rows);
  }

  // ---- checkpoints ----------------------------------------------------------

  const CK_EVENTS = new Set(['checkpoint_begin', 'checkpoint_commit',
    'checkpoint_verified', 'checkpoint_invalid',
    'recovery_resumed_from_checkpoint']);

  function checkpointEvents(spans) {
    return allEvents(spans).filter((x) => CK_EVENTS.has(x.ev.name));
  }

  // Groups by checkpoint_id; a checkpoint_begin (which has no id yet) joins
  // the next commit.
  function checkpointGroups(spans) {
    const groups = new Map();
    let pending = null;
    for (const x of checkpointEvents(spans)) {
      let id = x.a.get('checkpoint_id');
      if (x.ev.name === 'checkpoint_begin') {
        pending = x;
        continue;
      }
      id = typeof id === 'string' ? id : '(no id)';
      if (!groups.has(id)) {
        groups.set(id, { checkpoint_id: id, work_item_id: '', events: [],
          state: 'committed' });
      }
      const g = groups.get(id);
      if (pending && x.ev.name === 'checkpoint_commit') {
        g.events.push(pending);
        const wi = pending.a.get('work_item_id');
        if (typeof wi === 'string') g.work_item_id = wi;
        pending = null;
      }
      g.events.push(x);
      const wi = x.a.get('work_item_id');
      if (typeof wi === 'string' && !g.work_item_id) g.work_item_id = wi;
      if (x.ev.name === 'checkpoint_verified') g.state = 'verified';
      if (x.ev.name === 'checkpoint_invalid') g.state = 'invalid';
      if (x.ev.name === 'recovery_resumed_from_checkpoint') g.resumed = true;
    }
    if (pending) {
      groups.set('(begun)', { checkpoint_id: '(begun, not committed)',
        work_item_id: fmtValue(pending.a.get('work_item_id') ?? ''),
        events: [pending], state: 'begun' });
    }
    return [...groups.values()];
  }

  function checkpointPanel(spans, item) {
    let groups = checkpointGroups(spans);
    if (item) {
      groups = groups.filter((g) => g.work_item_id === item ||
        g.checkpoint_id.includes(item));
    }
    if (groups.length === 0) {
      return h('p.note', { text: 'No checkpoint events in this trace.' });
    }
    return h('div.checkpoints', null, groups.map((g) => h(
      `div.ck.${g.state}`, null,
      h('div.ck-head', null, h('span.mono', { text: g.checkpoint_id }),
        h(`span.badge.${g.state === 'invalid' ? 'error' :
          g.state === 'verified' ? 'ok' : 'running'}`, { text: g.state }),
        g.resumed ? h('span.flag.inc', { text: 'recovery resumed here' }) : null,
        g.work_item_id ? h('span.item-id', { text: g.work_item_id }) : null),
      g.events.map((x) => {
        const ev = x.a.get('evidence');
        return h('div.ck-event', null,
          h('div.ck-ev-head', null, h('span.ev-name', { text: x.ev.name }),
            h('span.ev-time', { text: `${fmtTime(x.t.toString())} on ` +
              `${x.span.name}` })),
          Array.isArray(ev) ? h('ul.evidence', null,
            ev.map((p) => h('li', { text: fmtValue(p) }))) : null,
          attrTable(x.ev.attributes, 'ev-attrs'));
      }))));
  }

  // ---- start ------------------------------------------------------------------

  window.addEventListener('hashchange', route);
  route();
})();
