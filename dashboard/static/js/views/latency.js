// #latency: per-stage p50/p99, polled every 2 s while the view is open.
import { h, $, replace, fmtUs, fmtClock } from '../dom.js';
import { api } from '../api.js';
import { reportError } from '../notify.js';

const POLL_MS = 2000;
const STAGES = {
  introspect: 'token introspection',
  policy: 'the policy decision',
  backend: 'the backend tool',
  total: 'the whole call',
  overhead: 'total − backend: what the gateway adds',
};

let timer = null;
let inFlight = false;

export function init() {
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && timer) tick();
  });
}

export function onShow() {
  clearInterval(timer);
  tick();
  timer = setInterval(tick, POLL_MS);
}

export function onHide() {
  clearInterval(timer);
  timer = null;
}

export function reset() {
  onHide();
  replace($('#latency-table tbody'));
  replace($('#latency-decisions'));
}

async function tick() {
  if (inFlight || document.hidden) return;
  inFlight = true;
  try {
    const r = await api('GET', '/ui/api/latency');
    if (timer === null) return;
    render(r);
  } catch (e) {
    if (e.status === 503) {
      replace($('#latency-table tbody'), h('tr', null, h('td', { colspan: '5', class: 'empty' }, e.message)));
      onHide();
    } else {
      reportError(e, 'Read the latency');
      if (e.status === 401) onHide();
    }
  } finally {
    inFlight = false;
  }
}

function bar(value, max, cls, label) {
  const outer = h('div', { class: 'bar-track' });
  const inner = h('div', { class: ['bar', cls] });
  const pct = max > 0 ? Math.max(value > 0 ? 1.5 : 0, Math.min(100, (value / max) * 100)) : 0;
  inner.style.width = `${pct.toFixed(1)}%`;
  outer.append(inner);
  outer.setAttribute('title', label);
  return outer;
}

function render(r) {
  const stages = (r && r.stages) || [];
  const max = Math.max(1, ...stages.map((s) => s.p99_us || 0));
  replace($('#latency-table tbody'), stages.map((s) => h('tr', { 'data-stage': s.stage, class: s.stage === 'overhead' ? 'is-overhead' : null },
    h('th', { scope: 'row' }, h('span', { class: 'cell-main' }, s.stage), h('span', { class: 'cell-sub' }, STAGES[s.stage] || '')),
    h('td', { class: 'num' }, s.count ? fmtUs(s.p50_us) : '—'),
    h('td', { class: 'num' }, s.count ? fmtUs(s.p99_us) : '—'),
    h('td', { class: 'num' }, String(s.count || 0)),
    h('td', { class: 'bar-col', 'aria-hidden': 'true' },
      bar(s.p50_us || 0, max, 'bar-p50', `p50 ${fmtUs(s.p50_us)}`),
      bar(s.p99_us || 0, max, 'bar-p99', `p99 ${fmtUs(s.p99_us)}`)))));
  $('#latency-window').textContent = String(r.window || '…');
  const d = r.decisions || {};
  const total = Object.values(d).reduce((a, b) => a + b, 0);
  const order = ['allow', 'deny', 'error', ...Object.keys(d).filter((k) => !['allow', 'deny', 'error'].includes(k)).sort()];
  replace($('#latency-decisions'),
    h('div', { class: 'tile' }, h('dt', null, 'calls'), h('dd', null, String(total))),
    order.map((k) => h('div', { class: ['tile', k === 'allow' ? 'tile-ok' : k === 'deny' ? 'tile-deny' : k === 'error' ? 'tile-warn' : null] },
      h('dt', null, k), h('dd', null, String(d[k] || 0)))));
  $('#latency-updated').textContent = `Updated ${fmtClock(new Date().toISOString())}`;
}
