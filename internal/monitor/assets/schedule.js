// The schedule page: polls GET /api/v1/schedules/{name}/runs and renders
// the schedule's settings, a grid of its runs by target (one cell per run,
// as Airflow's grid view), a chart of completed runs' durations and a
// table of runs. Every string from the API (labels, messages, graph ids,
// owner, image) reaches the DOM through textContent or setAttribute, never
// as markup.
(() => {
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const name = app.dataset.schedule;
  const api = app.dataset.api || '';
  const pollMs = Number(app.dataset.pollMs) || 1500;
  const enc = encodeURIComponent;
  const SVG = 'http://www.w3.org/2000/svg';

  const stats = { polls: 0, renders: 0 };
  window.afMonitor = stats;

  // Schedules have no capability of their own; a ?cap= the page was
  // opened with is carried on to its reads as the graph page does.
  const cap = new URLSearchParams(location.search).get('cap');
  const withCap = (u) => (cap ? u + (u.includes('?') ? '&' : '?') + 'cap=' + enc(cap) : u);

  let data = null;
  let skew = 0;
  let failures = 0;
  const now = () => Date.now() + skew;

  // el builds an element: attrs are set as attributes (or properties for
  // textContent), children are nodes or strings (as text).
  function el(tag, attrs, ...children) {
    const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c == null) continue;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  // ---- run model -------------------------------------------------------

  // The one state a run is shown in: the scheduler's until it launched,
  // then its graph's; a running graph the owner was alerted about is late.
  function stateOf(r) {
    if (r.runState === 'refused') return 'refused';
    if (r.runState !== 'launched') return 'queued';
    const g = r.graphState || 'running';
    if (g === 'running' && r.alerted) return 'late';
    return g;
  }

  function viewOf(r) {
    const created = af.t(r.created);
    const resolved = af.t(r.resolved);
    return {
      r,
      state: stateOf(r),
      kind: r.kind === 'backfill' ? 'backfill' : 'scheduled',
      label: String(r.label || ''),
      target: af.t(r.target) || 0,
      created,
      duration: created == null ? null : (resolved || now()) - created,
      ended: resolved != null,
    };
  }

  // short keeps a label to the width of a grid cell or chart slot (the
  // full label is in the tooltip).
  const short = (s) => (s.length > 12 ? s.slice(0, 11) + '…' : s);

  const inputText = (r) => (r.files ? af.num(r.files) + ' files · ' + af.bytes(r.bytes || 0) : '–');

  function tooltip(v) {
    const r = v.r;
    const lines = [
      v.label + ' · ' + v.kind,
      v.state + (v.duration != null ? ' · ' + af.dur(v.duration) + (v.ended ? '' : ' so far') : ''),
      'input: ' + (r.files ? af.num(r.files) + ' files, ' + af.bytes(r.bytes || 0) : 'none yet'),
    ];
    if (r.graphId) lines.push('graph ' + r.graphId);
    if (r.alerted) lines.push('owner alerted late at ' + af.when(r.alerted));
    if (r.message) lines.push(r.message.length > 300 ? r.message.slice(0, 300) + '…' : r.message);
    return lines.join('\n');
  }

  // ---- polling ---------------------------------------------------------

  async function poll() {
    stats.polls++;
    try {
      const res = await fetch(withCap(api + '/api/v1/schedules/' + enc(name) + '/runs'), { headers: { Accept: 'application/json' }, cache: 'no-store' });
      const date = res.headers.get('Date');
      if (date) {
        const s = Date.parse(date) - Date.now();
        skew = Math.abs(s) > 2000 ? s : 0;
      }
      if (!res.ok) {
        const msg = await af.apiError(res);
        if (res.status === 404) {
          af.banner('There is no schedule ' + name + ' (' + msg + '). Pick one from the list of schedules.', true);
          setLive(false, 'not found');
          return;
        }
        throw new Error(msg);
      }
      data = await res.json();
      failures = 0;
      af.banner('');
      render();
    } catch (e) {
      failures++;
      af.banner('Could not load the schedule: ' + e.message + (failures > 1 ? ' (retrying)' : ''), true);
      setLive(false, 'retrying');
    }
    const active = data && (data.runs || []).some((r) => ['queued', 'running', 'late'].includes(stateOf(r)));
    let delay = failures ? Math.min(pollMs * 2 ** failures, 30000) : active ? pollMs * 2 : pollMs * 10;
    if (document.hidden) delay = Math.max(delay, 15000);
    setTimeout(poll, delay);
  }

  function setLive(live, text) {
    app.dataset.live = live ? 'true' : 'false';
    $('live-text').textContent = text;
  }

  // ---- rendering -------------------------------------------------------

  function render() {
    const s = data.schedule || {};
    const views = (data.runs || []).map(viewOf);
    views.sort((a, b) => a.target - b.target || a.kind.localeCompare(b.kind));
    renderHeader(s, views);
    renderGrid(views);
    renderChart(views);
    renderTable(views);
    stats.renders++;
    app.dataset.rendered = String(stats.renders);
    setLive(true, 'live · updated ' + new Date().toLocaleTimeString('en-GB'));
  }

  // zoned formats a time in the schedule's zone (the browser's when the
  // zone is unknown to it).
  function zoned(iso, zone, withTime) {
    if (!iso) return '–';
    const o = { year: 'numeric', month: '2-digit', day: '2-digit' };
    if (withTime) Object.assign(o, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    try {
      return new Intl.DateTimeFormat('en-CA', Object.assign({ timeZone: zone || 'UTC' }, o)).format(new Date(iso)).replace(',', '');
    } catch (_) {
      return new Intl.DateTimeFormat('en-CA', o).format(new Date(iso)).replace(',', '');
    }
  }

  function renderHeader(s, views) {
    $('sched-name').textContent = s.name || name;
    const st = $('sched-state');
    st.textContent = s.state || '';
    st.dataset.state = s.state === 'active' ? 'running' : 'canceled';
    document.title = (s.name || name) + ' · ' + (s.state || '') + ' · af';
    $('sched-owner').textContent = s.owner || '–';
    $('sched-cron').textContent = s.cron || '–';
    $('sched-zone').textContent = s.timezone || 'UTC';
    $('sched-image').textContent = s.image || '–';
    const hourly = views.some((v) => v.label.length > 8);
    $('sched-next').textContent = s.nextDue
      ? zoned(s.nextDue, s.timezone, true) + ' for ' + zoned(s.nextTarget, s.timezone, hourly)
      : s.state === 'paused' ? 'none while paused' : '–';
    $('sched-catchup').textContent = s.catchup ? 'yes: missed runs are made up' : 'no: missed runs are skipped';
    $('sched-maxactive').textContent = s.maxActive ? af.num(s.maxActive) + ' at once' : 'no bound';
    $('sched-expect').textContent = s.expectWithin ? 'alert if not completed ' + s.expectWithin + ' after due' : 'no alert';
    const counts = {};
    for (const v of views) counts[v.state] = (counts[v.state] || 0) + 1;
    $('sched-runs').textContent = views.length
      ? af.num(views.length) + ' (' + Object.entries(counts).map(([k, n]) => n + ' ' + k).join(', ') + ')'
      : 'none yet';
  }

  function renderGrid(views) {
    const grid = $('grid');
    $('grid-count').textContent = views.length ? af.num(views.length) + ' runs' : '';
    if (!views.length) {
      grid.replaceChildren(el('div', { class: 'empty', text: 'No runs yet: the first is made when the schedule next falls due, or by af backfill.' }));
      return;
    }
    const cells = views.map((v) => {
      const attrs = {
        class: 'rcell' + (v.kind === 'backfill' ? ' bf' : ''),
        'data-state': v.state, 'data-kind': v.kind, 'data-label': v.label, title: tooltip(v), role: 'listitem',
      };
      const box = el('span', { class: 'rbox', 'data-state': v.state });
      const lab = el('span', { class: 'rlabel', text: short(v.label) });
      if (v.r.graphId) {
        attrs.href = '/graphs/' + enc(v.r.graphId);
        attrs['data-graph-id'] = v.r.graphId;
        return el('a', attrs, box, lab);
      }
      return el('span', attrs, box, lab);
    });
    grid.replaceChildren(...cells);
    // Newest on the right, in view.
    const wrap = $('grid-wrap');
    if (stats.renders === 0) wrap.scrollLeft = wrap.scrollWidth;
  }

  const NICE = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800].map((s) => s * 1000);

  function renderChart(views) {
    const svg = $('chart');
    const W = Math.max(360, $('chart-wrap').clientWidth || 900);
    const H = 220;
    const L = 64, R = 12, T = 12, B = 58;
    const done = views.filter((v) => v.state === 'completed' && v.ended && v.duration != null);
    $('chart-count').textContent = done.length ? af.num(done.length) + ' completed' : '';
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    const parts = [];
    if (!done.length) {
      parts.push(el('svg:text', { class: 'nodata', x: W / 2, y: H / 2, 'text-anchor': 'middle', text: 'No completed run yet.' }));
      svg.replaceChildren(...parts);
      return;
    }
    // x: one slot per target that has a run (so gaps show runs that did
    // not complete); y: duration from 0 to a nice maximum.
    const n = views.length;
    const plotW = W - L - R, plotH = H - T - B;
    const slot = plotW / n;
    const max = Math.max(...done.map((v) => v.duration), 1000);
    const want = max / 4;
    const step = NICE.find((s) => s >= want) || NICE[NICE.length - 1];
    const top = Math.ceil(max / step) * step;
    const y = (d) => T + plotH - (d / top) * plotH;
    const axis = el('svg:g', { class: 'axis' });
    for (let d = 0; d <= top + 1; d += step) {
      const yy = y(d).toFixed(1);
      axis.appendChild(el('svg:line', { x1: L, x2: W - R, y1: yy, y2: yy }));
      axis.appendChild(el('svg:text', { x: L - 6, y: +yy + 4, 'text-anchor': 'end', text: af.dur(d) }));
    }
    // Target labels: as many as fit without overlapping.
    const every = Math.max(1, Math.ceil(70 / slot));
    views.forEach((v, i) => {
      if (i % every !== 0 && i !== n - 1) return;
      const cx = L + (i + 0.5) * slot;
      axis.appendChild(el('svg:text', { class: 'xlabel', x: cx, y: T + plotH + 16, 'text-anchor': 'middle', text: short(v.label) }));
    });
    axis.appendChild(el('svg:text', { class: 'ytitle', x: 12, y: T + plotH / 2, transform: 'rotate(-90 12 ' + (T + plotH / 2) + ')', 'text-anchor': 'middle', text: 'duration' }));
    axis.appendChild(el('svg:text', { class: 'xtitle', x: L + plotW / 2, y: H - 8, 'text-anchor': 'middle', text: 'target' }));
    parts.push(axis);
    const bw = Math.max(2, Math.min(36, slot * 0.7));
    const marks = el('svg:g', { class: 'marks' });
    views.forEach((v, i) => {
      if (!done.includes(v)) return;
      const cx = L + (i + 0.5) * slot;
      const yy = y(v.duration);
      const bar = el('svg:rect', {
        class: 'dbar' + (v.kind === 'backfill' ? ' bf' : ''), x: (cx - bw / 2).toFixed(1), y: yy.toFixed(1), width: bw.toFixed(1),
        height: Math.max(1, T + plotH - yy).toFixed(1), rx: 2, 'data-label': v.label, 'data-ms': Math.round(v.duration),
      });
      bar.appendChild(el('svg:title', { text: v.label + ' · ' + v.kind + ' · ' + af.dur(v.duration) }));
      marks.appendChild(bar);
    });
    parts.push(marks);
    svg.replaceChildren(...parts);
  }

  function renderTable(views) {
    const body = $('runs');
    if (!views.length) {
      body.replaceChildren(el('div', { class: 'empty', text: 'No runs yet.' }));
      return;
    }
    const rows = views.slice().reverse().map((v) => {
      const r = v.r;
      const graph = r.graphId
        ? el('a', { href: '/graphs/' + enc(r.graphId), class: 'graph-link', text: r.graphId })
        : el('span', { class: 'muted', text: '–' });
      let msg = r.message || '';
      if (!msg && v.state === 'late') msg = 'late: the owner was alerted at ' + af.when(r.alerted);
      return el('div', { class: 'rrow', role: 'row', 'data-state': v.state, 'data-label': v.label, 'data-kind': v.kind },
        el('span', { role: 'cell', class: 'rtarget', text: v.label, title: 'target ' + (r.target || '') + '\ndue ' + (r.due || '') }),
        el('span', { role: 'cell' }, el('span', { class: 'kind', text: v.kind })),
        el('span', { role: 'cell' }, el('span', { class: 'badge', 'data-state': v.state, text: v.state })),
        el('span', { role: 'cell', text: r.created ? af.when(r.created) : '–' }),
        el('span', { role: 'cell', class: 'num', text: af.dur(v.duration) }),
        el('span', { role: 'cell', class: 'num', text: inputText(r) }),
        el('span', { role: 'cell', class: 'rgraph' }, graph),
        el('span', { role: 'cell', class: 'rmsg', title: msg, text: msg }));
    });
    body.replaceChildren(...rows);
  }

  let resizeFrame = 0;
  window.addEventListener('resize', () => {
    if (!data || resizeFrame) return;
    resizeFrame = requestAnimationFrame(() => { resizeFrame = 0; renderChart((data.runs || []).map(viewOf).sort((a, b) => a.target - b.target || a.kind.localeCompare(b.kind))); });
  });

  poll();
})();
