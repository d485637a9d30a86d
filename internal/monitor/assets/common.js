'use strict';
// Helpers shared by the monitor pages. Everything that reaches innerHTML
// goes through esc(): the API's strings (names, messages, worker ids) are
// user-controlled.
const af = (() => {
  const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const num = (n) => (n == null ? '–' : Number(n).toLocaleString('en-US'));
  const bytes = (n) => {
    if (!n) return '0 B';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + u[i];
  };
  const dur = (ms) => {
    if (ms == null || !isFinite(ms)) return '–';
    if (ms < 0) ms = 0;
    const s = Math.round(ms / 1000);
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
    if (h < 24) return h + 'h ' + String(m % 60).padStart(2, '0') + 'm';
    return d + 'd ' + String(h % 24).padStart(2, '0') + 'h';
  };
  const t = (iso) => (iso ? Date.parse(iso) : null);
  const when = (iso) => {
    if (!iso) return '–';
    const d = new Date(iso), now = new Date();
    const time = d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString('en-CA') + ' ' + time;
  };
  // Reads the API's error body ({"message": ...} or text) for people.
  const apiError = async (res) => {
    let msg = res.status + ' ' + res.statusText;
    try {
      const body = await res.text();
      try { const j = JSON.parse(body); msg = j.message || j.error || msg; } catch (_) { if (body) msg = body.slice(0, 300); }
    } catch (_) { /* keep the status line */ }
    if (res.status === 401 || res.status === 403) msg += ' (this server requires a token to read; ask its operator for public reads)';
    return msg;
  };
  // Shortens a message for the page without losing its end: a traceback's
  // last frames (the user's file and line) and its exception are at the
  // bottom, so the head (a third) and the tail are kept around a line
  // saying how much was cut, as internal/elide does on the server.
  const clip = (s, max) => {
    s = String(s == null ? '' : s);
    if (s.length <= max) return s;
    const headN = Math.floor(max / 3);
    let head = s.slice(0, headN);
    const nl = head.lastIndexOf('\n');
    if (nl >= head.length / 2) head = head.slice(0, nl + 1);
    let tail = s.slice(s.length - (max - headN));
    const i = tail.indexOf('\n');
    if (i >= 0 && i < tail.length / 2) tail = tail.slice(i + 1);
    const cut = s.length - head.length - tail.length;
    return head + (head.endsWith('\n') ? '' : '\n') + '[… ' + cut + ' characters cut …]\n' + tail;
  };
  const banner = (text, isError) => {
    const b = document.getElementById('banner');
    if (!b) return;
    if (!text) { b.hidden = true; return; }
    b.textContent = text;
    b.classList.toggle('error', !!isError);
    b.hidden = false;
  };
  const STATES = ['running', 'pending', 'unscheduled', 'completed', 'failed', 'exception'];
  return { esc, num, bytes, dur, t, when, apiError, clip, banner, STATES };
})();
