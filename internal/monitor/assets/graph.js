// The graph page: polls GET /api/v1/graphs/{id} while the graph runs and
// renders the header, counts, progress, Gantt chart and a virtualised task
// table (only the rows in view exist in the DOM, so 3,000 tasks scroll as
// smoothly as 30).
(() => {
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const graphId = app.dataset.graphId;
  const api = app.dataset.api || '';
  const pollMs = Number(app.dataset.pollMs) || 1500;
  const noWorkerMs = Number(app.dataset.noWorkerMs) || 30000;
  const previewBytes = Number(app.dataset.preview) || 65536;
  const ROW_H = 34;
  const OVERSCAN = 10;
  const STATE_ORDER = { running: 0, failed: 1, exception: 2, pending: 3, unscheduled: 4, completed: 5 };

  // Measurements the browser test (and curious operators) can read.
  const stats = { polls: 0, scheduled: false, renders: 0, firstRenderMs: null, lastRenderMs: null, notModified: 0 };
  window.afMonitor = stats;

  let data = null;
  let etag = null;
  let skew = 0; // server clock minus browser clock, from the Date header
  let views = []; // one per task, in API order
  let byId = new Map();
  let rows = []; // views after filter and sort
  let filterState = 'all';
  let query = '';
  let sortKey = '';
  let sortDir = 1;
  let failures = 0;
  let timer = null;
  let resultLoaded = false;
  let selected = null;

  const now = () => Date.now() + skew;
  const enc = encodeURIComponent;
  // An emailed link carries the graph's read capability (?cap=): every
  // read of this graph the page makes carries it on, so the link works
  // without signing in. Signed in, the session cookie does instead.
  const cap = new URLSearchParams(location.search).get('cap');
  const withCap = (u) => cap ? u + (u.includes('?') ? '&' : '?') + 'cap=' + enc(cap) : u;
  const artifactURL = (taskId, name) => withCap(api + '/api/v1/tasks/' + enc(taskId) + '/artifacts/' + name);
  const runArtifactURL = (taskId, runId, name) => withCap(api + '/api/v1/tasks/' + enc(taskId) + '/runs/' + runId + '/artifacts/' + name);

  // ---- data ----------------------------------------------------------

  function viewOf(task) {
    const runs = task.runs || [];
    const last = runs.length ? runs[runs.length - 1] : null;
    const st = (last && last.stats) || {};
    const started = last && last.started ? af.t(last.started) : null;
    const resolved = last && last.resolved ? af.t(last.resolved) : null;
    return {
      task,
      id: task.taskId,
      name: task.name || task.taskId,
      kind: task.kind || '',
      state: task.state,
      runId: last ? last.runId : null,
      runCount: runs.length,
      worker: last ? [last.workerGroup, last.workerId].filter(Boolean).join('/') : '',
      started,
      resolved,
      files: st.files || 0,
      inputFiles: task.inputFiles || 0,
      bytes: st.bytes || 0,
      inputBytes: task.inputBytes || 0,
      recIn: st.recordsIn || 0,
      recOut: st.recordsOut || 0,
      reason: last ? last.reasonResolved || '' : '',
      message: last ? last.message || '' : '',
      search: (task.name + ' ' + task.taskId + ' ' + (last ? (last.workerGroup || '') + ' ' + (last.workerId || '') : '')).toLowerCase(),
    };
  }

  const duration = (v) => (v.started == null ? null : (v.resolved || now()) - v.started);

  function compare(a, b) {
    let r = 0;
    switch (sortKey) {
      case 'name': r = a.name.localeCompare(b.name, 'en', { numeric: true }); break;
      case 'state': r = (STATE_ORDER[a.state] ?? 9) - (STATE_ORDER[b.state] ?? 9); break;
      case 'run': r = (a.runId ?? -1) - (b.runId ?? -1); break;
      case 'worker': r = a.worker.localeCompare(b.worker, 'en', { numeric: true }); break;
      case 'duration': r = (duration(a) ?? -1) - (duration(b) ?? -1); break;
      case 'files': r = a.files - b.files; break;
      case 'records': r = a.recIn - b.recIn; break;
      case 'bytes': r = a.bytes - b.bytes; break;
      default: return 0;
    }
    return r * sortDir;
  }

  function refilter() {
    const q = query.trim().toLowerCase();
    rows = views.filter((v) => (filterState === 'all' || v.state === filterState) && (!q || v.search.includes(q)));
    if (sortKey) {
      // Stable: ties keep the API's order.
      const idx = new Map(views.map((v, i) => [v, i]));
      rows.sort((a, b) => compare(a, b) || idx.get(a) - idx.get(b));
    }
  }

  // ---- polling -------------------------------------------------------

  async function poll() {
    timer = null;
    stats.scheduled = false;
    stats.polls++;
    try {
      const headers = { Accept: 'application/json' };
      if (etag) headers['If-None-Match'] = etag;
      const res = await fetch(withCap(api + '/api/v1/graphs/' + enc(graphId)), { headers, cache: 'no-store' });
      const date = res.headers.get('Date');
      if (date) {
        const s = Date.parse(date) - Date.now();
        // The header has one-second resolution: only correct real skew.
        skew = Math.abs(s) > 2000 ? s : 0;
      }
      if (res.status === 304) {
        stats.notModified++;
        renderNoWorker();
      } else if (!res.ok) {
        const msg = await af.apiError(res);
        failures++;
        af.banner('Could not load graph ' + graphId + ': ' + msg, true);
        if (res.status === 404 && !data) {
          $('graph-name').textContent = 'Graph not found';
          setLive(false, 'not found');
          return; // nothing will appear by waiting
        }
        if (res.status === 410) {
          // af serve deleted the graph at its expiry; the banner says when.
          $('graph-name').textContent = 'Graph expired';
          setLive(false, 'expired');
          return;
        }
        schedule();
        return;
      } else {
        etag = res.headers.get('ETag');
        data = await res.json();
        render();
      }
      failures = 0;
      af.banner('');
    } catch (e) {
      failures++;
      af.banner('Lost contact with the server (' + e.message + '); retrying…', true);
    }
    schedule();
  }

  function schedule() {
    if (data && data.state !== 'running') {
      setLive(false, 'final');
      loadResult();
      return;
    }
    let delay = failures ? Math.min(pollMs * 2 ** failures, 30000) : pollMs;
    if (document.hidden) delay = Math.max(delay, 10000);
    timer = setTimeout(poll, delay);
    stats.scheduled = true;
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && timer) {
      clearTimeout(timer);
      poll();
    }
  });

  function setLive(live, text) {
    app.dataset.live = live ? 'true' : 'false';
    $('live-text').textContent = text;
  }

  // ---- rendering -----------------------------------------------------

  function render() {
    const t0 = performance.now();
    views = data.tasks.map(viewOf);
    byId = new Map(views.map((v) => [v.id, v]));
    renderHeader();
    renderCounts();
    renderFailures();
    refilter();
    renderTable();
    renderGantt();
    renderNoWorker();
    stats.renders++;
    stats.lastRenderMs = performance.now() - t0;
    if (stats.firstRenderMs == null) {
      stats.firstRenderMs = performance.now();
      performance.mark('af-first-render');
    }
    app.dataset.rendered = String(stats.renders);
  }

  // Says when no worker has claimed a task of a running graph for a
  // while, from what af serve saw of the workers (data.workers), as
  // NoWorkerNotice in internal/submit/follow.go does for af submit --wait.
  function renderNoWorker() {
    const el = $('no-worker');
    const a = data && data.workers;
    let msg = '';
    if (a && data.state === 'running' && noWorkerMs > 0) {
      let pending = 0, running = 0, last = af.t(data.created);
      for (const t of data.tasks) {
        if (t.state === 'running') running++;
        if (t.state === 'pending') pending++;
        for (const r of t.runs || []) if (r.started && af.t(r.started) > last) last = af.t(r.started);
      }
      last = Math.max(last, af.t(a.since) || 0, a.lastClaim ? af.t(a.lastClaim) : 0);
      const idle = now() - last;
      if (!running && pending && idle >= noWorkerMs) {
        msg = a.liveWorkers === 0
          ? 'No worker has claimed a task for ' + af.dur(idle) + ', and none has asked af serve for work in the last ' + a.liveWindowSeconds +
            's: start a worker for this queue (worker --queue URL --token TOKEN --key af.key), or, if workers run, they are all busy with other graphs.'
          : af.num(a.liveWorkers) + ' worker(s) ask af serve for work, but none has claimed a task for ' + af.dur(idle) + ': the ' + af.num(pending) +
            ' pending task(s) wait behind other work, or the workers refuse them (their log says why: a missing image, limits above their ceilings).';
      }
    }
    el.textContent = msg;
    el.hidden = !msg;
  }

  function renderHeader() {
    const name = data.name || data.graphId;
    $('graph-name').textContent = name;
    const st = $('graph-state');
    st.textContent = data.state;
    st.dataset.state = data.state;
    document.title = name + ' · ' + data.state + ' · af';
    $('graph-owner').textContent = data.owner || '–';
    const sc = data.schedule;
    $('graph-schedule').hidden = !sc;
    if (sc) {
      const link = $('graph-schedule-link');
      link.textContent = sc.name;
      link.href = '/schedules/' + enc(sc.name);
      $('graph-schedule-label').textContent = sc.label || '';
      $('graph-schedule-kind').textContent = sc.kind || '';
    }
    $('graph-created').textContent = af.when(data.created);
    $('graph-resolved').textContent = data.resolved ? af.when(data.resolved) : '–';
    const end = data.resolved ? af.t(data.resolved) : now();
    $('graph-elapsed-label').textContent = data.resolved ? 'Duration' : 'Elapsed';
    $('graph-elapsed').textContent = af.dur(end - af.t(data.created));
    if (data.state === 'running') {
      setLive(true, 'live · updated ' + new Date().toLocaleTimeString('en-GB'));
    }

    // The graph's input is its mappers' files and records; the
    // reducer's own counts (the mapper outputs it merges) are shown
    // apart. The server sends the sums (GraphStatus.totals).
    let done = 0;
    for (const v of views) if (v.state === 'completed') done++;
    const tot = data.totals || totalsOf(views);
    const inp = tot.input || {}, red = tot.reducer || {};
    const files = inp.files || 0, inFiles = inp.filesAll || 0, b = inp.bytes || 0, inBytes = inp.bytesAll || 0;
    const pct = inBytes > 0 ? Math.min(100, (100 * b) / inBytes) : views.length ? (100 * done) / views.length : 0;
    const fill = $('progress-fill');
    fill.style.width = pct.toFixed(1) + '%';
    fill.style.background = data.state === 'failed' ? 'var(--failed)' : data.state === 'canceled' ? 'var(--muted)' : '';
    $('progress').setAttribute('aria-valuenow', pct.toFixed(0));
    $('progress-text').textContent = inBytes > 0
      ? af.bytes(b) + ' of ' + af.bytes(inBytes) + ' · ' + af.num(files) + ' of ' + af.num(inFiles) + ' files'
      : af.num(done) + ' of ' + af.num(views.length) + ' tasks';
    let detail = af.num(done) + ' of ' + af.num(views.length) + ' tasks completed · ' +
      af.num(inp.records || 0) + ' records read · ' + af.num(inp.pairs || 0) + ' pairs emitted by mappers';
    if (red.tasks) {
      detail += ' · reducer: ' + af.num(red.pairs || 0) + ' pairs in → ' + af.num(red.lines || 0) + ' lines out';
    }
    $('progress-detail').textContent = detail;
  }

  // totalsOf is the server's taskdef.TotalsOf for a status without
  // totals: mappers are the input, the reducer apart.
  function totalsOf(views) {
    const input = { files: 0, filesAll: 0, bytes: 0, bytesAll: 0, records: 0, pairs: 0 };
    const reducer = { tasks: 0, pairs: 0, lines: 0 };
    for (const v of views) {
      if (v.kind === 'reducer') {
        reducer.tasks++; reducer.pairs += v.recIn; reducer.lines += v.recOut;
        continue;
      }
      input.files += Math.min(v.files, v.inputFiles); input.filesAll += v.inputFiles;
      input.bytes += Math.min(v.bytes, v.inputBytes); input.bytesAll += v.inputBytes;
      input.records += v.recIn; input.pairs += v.recOut;
    }
    return { input, reducer };
  }

  function renderCounts() {
    const counts = { all: views.length };
    for (const s of af.STATES) counts[s] = 0;
    for (const v of views) counts[v.state] = (counts[v.state] || 0) + 1;
    let html = '<button type="button" data-filter="all" id="count-all" aria-pressed="' + (filterState === 'all') + '">all <b>' + af.num(counts.all) + '</b></button>';
    for (const s of af.STATES) {
      if (!counts[s] && filterState !== s) continue;
      html += '<button type="button" data-filter="' + s + '" data-state="' + s + '" id="count-' + s + '" aria-pressed="' + (filterState === s) +
        '"><i></i>' + s + ' <b>' + af.num(counts[s]) + '</b></button>';
    }
    $('counts').innerHTML = html;
  }

  const MAX_FAILURES = 20;
  function renderFailures() {
    // The tasks a cancel stopped are one line, not one entry each: the
    // graph was canceled once.
    const canceled = views.filter((v) => v.state === 'exception' && v.reason === 'canceled');
    const bad = views.filter((v) => (v.state === 'failed' || v.state === 'exception') && !(v.state === 'exception' && v.reason === 'canceled'));
    $('failures').hidden = bad.length === 0 && canceled.length === 0;
    if (!bad.length && !canceled.length) return;
    $('failures-count').textContent = af.num(bad.length + canceled.length);
    let html = '';
    if (canceled.length) {
      html += '<li class="canceled" data-state="canceled"><div class="fhead"><span class="badge" data-state="canceled">canceled</span>' +
        '<b>The graph was canceled</b><span class="muted">' + af.num(canceled.length) + ' task' + (canceled.length === 1 ? '' : 's') +
        ' stopped before they completed · <code>af rerun ' + af.esc(data.graphId) + ' --failed</code> runs them again</span></div></li>';
    }
    for (const v of bad.slice(0, MAX_FAILURES)) {
      const reason = v.reason && v.reason !== v.state ? v.reason : '';
      const msg = af.clip(v.message, 1500);
      html += '<li data-task-id="' + af.esc(v.id) + '" data-state="' + af.esc(v.state) + '">' +
        '<div class="fhead"><span class="badge" data-state="' + af.esc(v.state) + '">' + af.esc(v.state) + '</span>' +
        '<b>' + af.esc(v.name) + '</b>' + (reason ? '<span class="muted">' + af.esc(reason) + '</span>' : '') +
        (v.started != null ? '<a href="' + af.esc(artifactURL(v.id, 'public/logs/live.log')) + '" target="_blank" rel="noopener">log</a>' : '') + '</div>' +
        (msg ? '<pre>' + af.esc(msg) + '</pre>' : '') + '</li>';
    }
    if (bad.length > MAX_FAILURES) {
      html += '<li class="muted more">…and ' + af.num(bad.length - MAX_FAILURES) + ' more: filter the task table by state.</li>';
    }
    $('failures-list').innerHTML = html;
  }

  $('counts').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-filter]');
    if (!b) return;
    filterState = b.dataset.filter === filterState ? 'all' : b.dataset.filter;
    renderCounts();
    refilter();
    $('tasks-scroll').scrollTop = 0;
    renderTable();
  });

  $('task-search').addEventListener('input', (e) => {
    query = e.target.value;
    if (!data) return;
    refilter();
    $('tasks-scroll').scrollTop = 0;
    renderTable();
  });

  $('tasks-head').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-sort]');
    if (!b) return;
    const key = b.dataset.sort;
    if (sortKey === key) {
      if (sortDir === 1) sortDir = -1; else { sortKey = ''; sortDir = 1; }
    } else {
      sortKey = key;
      sortDir = key === 'name' || key === 'state' || key === 'worker' ? 1 : -1;
    }
    for (const h of $('tasks-head').querySelectorAll('button[data-sort]')) {
      if (h.dataset.sort === sortKey) h.setAttribute('aria-sort', sortDir === 1 ? 'ascending' : 'descending');
      else h.removeAttribute('aria-sort');
    }
    if (!data) return;
    refilter();
    renderTable();
  });

  // ---- task table (virtualised) ----------------------------------------

  function renderTable() {
    const shown = rows.length === views.length ? af.num(views.length) : af.num(rows.length) + ' of ' + af.num(views.length);
    $('task-count').textContent = shown;
    $('tasks').style.height = Math.max(rows.length * ROW_H, rows.length ? 0 : 60) + 'px';
    renderRows();
  }

  function rowHTML(v, i) {
    const t = v.task;
    const d = duration(v);
    const retry = v.runCount > 1 ? '<span class="retries" title="' + v.runCount + ' runs">↻' + (v.runCount - 1) + '</span>' : '';
    const why = [v.reason && v.reason !== v.state ? v.reason : '', v.message].filter(Boolean).join(': ');
    let links = '';
    if (v.started != null) links += '<a href="' + af.esc(artifactURL(v.id, 'public/logs/live.log')) + '" class="log-link" target="_blank" rel="noopener">log</a>';
    if (v.state === 'completed') links += '<a href="' + af.esc(artifactURL(v.id, 'public/result.txt')) + '" class="result-link">result</a>';
    return '<div class="trow' + (v.id === selected ? ' flash' : '') + '" role="row" data-task-id="' + af.esc(v.id) + '" data-state="' + af.esc(v.state) +
      '" style="top:' + i * ROW_H + 'px">' +
      '<span class="tname" role="cell" title="' + af.esc(v.name + '\n' + v.id) + '"><span class="kind">' + af.esc(v.kind === 'reducer' ? 'reduce' : 'map') + '</span>' + af.esc(v.name) + '</span>' +
      '<span role="cell"><span class="badge state" data-state="' + af.esc(v.state) + '"' + (why ? ' title="' + af.esc(why) + '"' : '') + '>' + af.esc(v.state) + '</span></span>' +
      '<span role="cell" class="num run">' + (v.runId == null ? '–' : v.runId) + retry + '</span>' +
      '<span role="cell" class="worker" title="' + af.esc(v.worker) + '">' + (af.esc(v.worker) || '<span class="muted">–</span>') + '</span>' +
      '<span role="cell" class="num">' + af.dur(d) + '</span>' +
      '<span role="cell" class="num">' + (t.kind === 'reducer' ? af.num(v.files || (t.dependencies || []).length) : af.num(v.files) + '/' + af.num(v.inputFiles)) + '</span>' +
      '<span role="cell" class="num records">' + af.num(v.recIn) + ' → ' + af.num(v.recOut) + '</span>' +
      '<span role="cell" class="num bytes">' + af.bytes(v.bytes) + '</span>' +
      '<span role="cell" class="links">' + links + '</span>' +
      '</div>';
  }

  let rowsFrame = 0;
  function renderRows() {
    rowsFrame = 0;
    const scroll = $('tasks-scroll');
    const body = $('tasks');
    if (!rows.length) {
      body.innerHTML = '<div class="empty">' + (views.length ? 'No task matches the filter.' : 'This graph has no tasks.') + '</div>';
      return;
    }
    const top = scroll.scrollTop;
    const h = scroll.clientHeight || 720;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    let html = '';
    for (let i = first; i < last; i++) html += rowHTML(rows[i], i);
    body.innerHTML = html;
  }

  $('tasks-scroll').addEventListener('scroll', () => {
    if (!rowsFrame) rowsFrame = requestAnimationFrame(renderRows);
  }, { passive: true });

  function focusTask(id) {
    selected = id;
    let i = rows.findIndex((v) => v.id === id);
    if (i < 0) {
      filterState = 'all';
      query = '';
      $('task-search').value = '';
      renderCounts();
      refilter();
      renderTable();
      i = rows.findIndex((v) => v.id === id);
    }
    if (i < 0) return;
    const scroll = $('tasks-scroll');
    scroll.scrollTop = Math.max(0, i * ROW_H - scroll.clientHeight / 2 + ROW_H / 2);
    renderRows();
    scroll.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    for (const r of $('gantt').querySelectorAll('rect.gbar.sel')) r.classList.remove('sel');
    for (const r of $('gantt').querySelectorAll('rect.gbar')) if (r.dataset.taskId === id) r.classList.add('sel');
  }

  // ---- Gantt chart ---------------------------------------------------

  const NICE = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);

  function renderGantt() {
    const svg = $('gantt');
    const W = Math.max(320, $('gantt-wrap').clientWidth || 900);
    const n = views.length;
    const labels = n <= 80;
    const LW = labels ? Math.min(220, Math.round(W * 0.2)) : 0;
    const rowH = labels ? 22 : Math.max(2, Math.min(14, Math.floor(420 / Math.max(1, n))));
    const AX = 22;
    const nowT = now();
    let t0 = af.t(data.created);
    let t1 = data.resolved ? af.t(data.resolved) : nowT;
    for (const v of views) {
      for (const r of v.task.runs || []) {
        if (!r.started) continue;
        const s = af.t(r.started);
        const e = r.resolved ? af.t(r.resolved) : nowT;
        if (s < t0) t0 = s;
        if (e > t1) t1 = e;
      }
    }
    if (t1 - t0 < 10000) t1 = t0 + 10000;
    const span = t1 - t0;
    const plotW = W - LW - 12;
    const x = (tm) => LW + ((tm - t0) / span) * plotW;
    const H = AX + n * rowH + 6;
    const p = [];

    // Axis: about one tick per 110 px.
    const want = span / Math.max(2, Math.floor(plotW / 110));
    const step = NICE.find((s) => s >= want) || NICE[NICE.length - 1];
    p.push('<g class="axis">');
    for (let k = 0; k * step <= span; k++) {
      const xx = x(t0 + k * step).toFixed(1);
      p.push('<line x1="' + xx + '" x2="' + xx + '" y1="' + (AX - 4) + '" y2="' + H + '"/>');
      const anchor = k === 0 ? 'start' : +xx > W - 40 ? 'end' : 'middle';
      p.push('<text x="' + xx + '" y="' + (AX - 8) + '" text-anchor="' + anchor + '">+' + af.dur(k * step) + '</text>');
    }
    p.push('</g>');

    for (let i = 0; i < n; i++) {
      const v = views[i];
      const y = AX + i * rowH;
      if (labels) {
        if (i % 2 === 0) p.push('<rect class="rowbg" x="0" y="' + y + '" width="' + W + '" height="' + rowH + '"/>');
        const label = v.name.length > 28 ? v.name.slice(0, 27) + '…' : v.name;
        p.push('<text class="label" x="6" y="' + (y + rowH / 2 + 4) + '">' + af.esc(label) + '</text>');
      }
      const bh = rowH > 6 ? rowH - 6 : rowH > 3 ? rowH - 1 : rowH;
      const by = y + (rowH - bh) / 2;
      for (const r of v.task.runs || []) {
        if (!r.started) continue;
        const s = af.t(r.started);
        const e = r.resolved ? af.t(r.resolved) : nowT;
        const live = !r.resolved;
        const bx = x(s);
        const bw = Math.max(2, x(e) - bx);
        p.push('<rect class="gbar' + (live ? ' live' : '') + (v.id === selected ? ' sel' : '') + '" x="' + bx.toFixed(1) + '" y="' + by.toFixed(1) + '" width="' + bw.toFixed(1) +
          '" height="' + bh + '" rx="' + (bh > 6 ? 3 : 0) + '" data-task-id="' + af.esc(v.id) + '" data-run-id="' + r.runId + '" data-state="' + af.esc(r.state) + '"/>');
      }
    }
    if (!data.resolved) {
      const xn = x(nowT).toFixed(1);
      p.push('<line class="now" x1="' + xn + '" x2="' + xn + '" y1="' + (AX - 4) + '" y2="' + H + '"/>');
    }
    svg.classList.toggle('compact', rowH < 8);
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.innerHTML = p.join('');
  }

  const tip = $('tooltip');
  $('gantt').addEventListener('mousemove', (e) => {
    const bar = e.target.closest('rect.gbar');
    if (!bar) { tip.hidden = true; return; }
    const v = byId.get(bar.dataset.taskId);
    const r = v && (v.task.runs || []).find((x) => String(x.runId) === bar.dataset.runId);
    if (!r) { tip.hidden = true; return; }
    const s = af.t(r.started);
    const end = r.resolved ? af.t(r.resolved) : now();
    const st = r.stats || {};
    const lines = [
      v.name + ' · run ' + r.runId,
      r.state + (r.reasonResolved && r.reasonResolved !== r.state ? ' (' + r.reasonResolved + ')' : '') + ' · ' + af.dur(end - s),
      'worker ' + ([r.workerGroup, r.workerId].filter(Boolean).join('/') || '–'),
      af.when(r.started) + ' → ' + (r.resolved ? af.when(r.resolved) : 'now'),
      af.num(st.files || 0) + ' files · ' + af.bytes(st.bytes || 0) + ' · ' + af.num(st.recordsIn || 0) + ' records',
    ];
    if (r.message) lines.push(af.clip(r.message, 400));
    tip.textContent = lines.join('\n');
    tip.hidden = false;
    const pad = 14;
    const left = Math.min(e.clientX + pad, window.innerWidth - tip.offsetWidth - 8);
    const top = e.clientY + pad + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - pad : e.clientY + pad;
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
  });
  $('gantt').addEventListener('mouseleave', () => { tip.hidden = true; });
  $('gantt').addEventListener('click', (e) => {
    const bar = e.target.closest('rect.gbar');
    if (bar) focusTask(bar.dataset.taskId);
  });

  let resizeFrame = 0;
  window.addEventListener('resize', () => {
    if (!data || resizeFrame) return;
    resizeFrame = requestAnimationFrame(() => { resizeFrame = 0; renderGantt(); renderRows(); });
  });

  // ---- job result ----------------------------------------------------

  async function loadResult() {
    if (resultLoaded || !data || data.state !== 'completed' || !data.resultTaskId) return;
    resultLoaded = true;
    const url = artifactURL(data.resultTaskId, 'public/result.txt');
    $('result').hidden = false;
    $('result-link').href = url;
    const pre = $('result-text');
    try {
      const res = await fetch(url, { cache: 'no-store' });
      if (!res.ok) throw new Error(await af.apiError(res));
      const total = Number(res.headers.get('Content-Length')) || null;
      const reader = res.body.getReader();
      const chunks = [];
      let got = 0;
      let truncated = false;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
        if (got >= previewBytes) { truncated = true; reader.cancel(); break; }
      }
      const buf = new Uint8Array(Math.min(got, previewBytes));
      let off = 0;
      for (const c of chunks) {
        const take = Math.min(c.length, buf.length - off);
        buf.set(c.subarray(0, take), off);
        off += take;
        if (off >= buf.length) break;
      }
      const text = new TextDecoder().decode(buf);
      pre.textContent = text || '(the result is empty)';
      pre.dataset.loaded = 'true';
      $('result-note').textContent = truncated
        ? 'Showing the first ' + af.bytes(previewBytes) + (total ? ' of ' + af.bytes(total) : '') + '; download the result for all of it.'
        : af.bytes(got) + ' · task ' + data.resultTaskId;
    } catch (e) {
      pre.textContent = 'The result cannot be shown here (' + e.message + '). Use the download link.';
      pre.dataset.loaded = 'error';
    }
  }

  poll();
})();
