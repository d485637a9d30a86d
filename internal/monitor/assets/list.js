// The list page: recent graphs, newest first, refreshed while any runs.
(() => {
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const api = app.dataset.api || '';
  const pollMs = (Number(app.dataset.pollMs) || 1500) * 4;
  const limit = Number(app.dataset.limit) || 100;
  const stats = { polls: 0 };
  window.afMonitor = stats;

  function row(g) {
    const counts = g.counts || {};
    const total = g.tasks || 0;
    const done = counts.completed || 0;
    const end = g.resolved ? af.t(g.resolved) : Date.now();
    let bar = '';
    for (const s of ['completed', 'running', 'failed', 'exception']) {
      const c = counts[s] || 0;
      if (c && total) bar += '<span data-state="' + s + '" style="width:' + ((100 * c) / total).toFixed(2) + '%"></span>';
    }
    const href = '/graphs/' + encodeURIComponent(g.graphId);
    return '<div class="grow" role="row" data-graph-id="' + af.esc(g.graphId) + '" data-state="' + af.esc(g.state) + '">' +
      '<span class="gname" role="cell"><a href="' + af.esc(href) + '">' + af.esc(g.name || g.graphId) + '</a><code class="gid">' + af.esc(g.graphId) + '</code></span>' +
      '<span role="cell" title="' + af.esc(g.owner) + '">' + af.esc(g.owner || '–') + '</span>' +
      '<span role="cell"><span class="badge" data-state="' + af.esc(g.state) + '">' + af.esc(g.state) + '</span></span>' +
      '<span role="cell" class="mini"><span class="bar">' + bar + '</span><span class="muted small">' + af.num(done) + '/' + af.num(total) + '</span></span>' +
      '<span role="cell" class="num">' + af.num(total) + '</span>' +
      '<span role="cell">' + af.when(g.created) + '</span>' +
      '<span role="cell" class="num">' + af.dur(end - af.t(g.created)) + '</span>' +
      '</div>';
  }

  async function poll() {
    stats.polls++;
    let anyRunning = true;
    try {
      const res = await fetch(api + '/api/v1/graphs?limit=' + limit, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) throw new Error(await af.apiError(res));
      const body = await res.json();
      const graphs = body.graphs || [];
      $('graphs').innerHTML = graphs.length ? graphs.map(row).join('') : '<div class="empty">No graphs yet. Submit one with <code>af submit</code>.</div>';
      $('list-updated').textContent = 'updated ' + new Date().toLocaleTimeString('en-GB');
      anyRunning = graphs.some((g) => g.state === 'running');
      af.banner('');
    } catch (e) {
      af.banner('Could not load the graph list: ' + e.message, true);
    }
    setTimeout(poll, anyRunning ? pollMs : pollMs * 5);
  }
  poll();
})();
