// The schedules page: every schedule the caller may read, with links to
// each one's page. Strings from the API reach the DOM as text only.
(() => {
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const api = app.dataset.api || '';
  const pollMs = (Number(app.dataset.pollMs) || 1500) * 10;
  const stats = { polls: 0 };
  window.afMonitor = stats;

  const cell = (text, cls) => {
    const s = document.createElement('span');
    s.setAttribute('role', 'cell');
    if (cls) s.className = cls;
    s.textContent = text;
    return s;
  };

  function row(sc) {
    const r = document.createElement('div');
    r.className = 'srow';
    r.setAttribute('role', 'row');
    r.dataset.schedule = sc.name;
    const nameCell = cell('', 'sname');
    const a = document.createElement('a');
    a.href = '/schedules/' + encodeURIComponent(sc.name);
    a.textContent = sc.name;
    nameCell.appendChild(a);
    const stCell = cell('');
    const b = document.createElement('span');
    b.className = 'badge';
    b.dataset.state = sc.state === 'active' ? 'running' : 'canceled';
    b.textContent = sc.state || '';
    stCell.appendChild(b);
    r.append(nameCell, cell(sc.owner || '–'), stCell,
      cell((sc.cron || '') + ' ' + (sc.timezone || 'UTC'), 'mono'), cell(sc.image || '–', 'mono'),
      cell(sc.nextDue ? af.when(sc.nextDue) : '–'));
    return r;
  }

  async function poll() {
    stats.polls++;
    try {
      const res = await fetch(api + '/api/v1/schedules', { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) throw new Error(await af.apiError(res));
      const body = await res.json();
      const list = body.schedules || [];
      if (list.length) {
        $('schedules').replaceChildren(...list.map(row));
      } else {
        const e = document.createElement('div');
        e.className = 'empty';
        e.textContent = 'No schedules yet. Make one with af schedule create NAME --cron "5 16 * * *" TEMPLATE.json IMAGE.';
        $('schedules').replaceChildren(e);
      }
      $('list-updated').textContent = 'updated ' + new Date().toLocaleTimeString('en-GB');
      app.dataset.rendered = String(stats.polls);
      af.banner('');
    } catch (e) {
      af.banner('Could not load the schedules: ' + e.message, true);
    }
    setTimeout(poll, pollMs);
  }
  poll();
})();
