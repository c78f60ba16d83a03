// DOM helpers. Everything the page shows is built with createElement and
// textContent: data from the API never goes through innerHTML, and no
// element gets a style attribute (the Content-Security-Policy forbids
// inline styles).

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'open', 'required', 'readOnly']);

// h builds an element: h('p', {class: 'x', 'data-id': 1, on: {click: fn}}, 'text', child).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') {
        el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      } else if (k === 'text') {
        el.textContent = v;
      } else if (k === 'on') {
        for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      } else if (k === 'style') {
        throw new Error('no inline styles: use a class');
      } else if (PROPS.has(k)) {
        el[k] = v;
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

// --- formatting ---

export function short(v, n = 12) {
  return v ? String(v).slice(0, n) : '—';
}

export function fmtUs(us) {
  if (us === undefined || us === null || Number.isNaN(us)) return '—';
  if (us >= 1000) {
    const ms = us / 1000;
    return `${ms >= 100 ? Math.round(ms) : ms.toFixed(ms >= 10 ? 1 : 2)} ms`;
  }
  return `${Math.round(us)} µs`;
}

export function fmtMs(ms) {
  if (ms === undefined || ms === null) return '';
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

export function fmtSeconds(s) {
  if (!s && s !== 0) return '—';
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const m = Math.round(s / 60);
    return `${m} min`;
  }
  if (s < 86400) {
    const hh = Math.floor(s / 3600);
    const mm = Math.round((s % 3600) / 60);
    return mm ? `${hh} h ${mm} min` : `${hh} h`;
  }
  const d = Math.floor(s / 86400);
  return `${d} day${d === 1 ? '' : 's'}`;
}

export function fmtTime(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

export function fmtClock(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtAgo(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// time element with the full timestamp as its machine-readable value.
export function timeEl(ts, text) {
  return h('time', { datetime: ts || '', title: ts ? fmtTime(ts) : '' }, text ?? fmtTime(ts));
}

// --- badges ---

// statusClass colours a call's HTTP status by what it meant: a call policy
// denied is a denial whatever the status (denials: tool_error answers it
// 200 with a tool result whose isError is set).
export function statusClass(status, decision) {
  if (decision === 'hold') return 'status-hold';
  if (decision === 'deny' && status !== 401) return 'status-deny';
  if (!status) return 'status-err';
  if (status >= 200 && status < 300) return 'status-ok';
  if (status === 401) return 'status-auth';
  if (status === 403) return 'status-deny';
  return 'status-err';
}

// statusBadge shows an HTTP status; the element has class "status" and the
// number alone as its text. decision (allow, deny, error) is the gateway's
// decision on the call, so that a denial answered 200 shows as a denial.
export function statusBadge(status, { big = false, decision } = {}) {
  return h('span', {
    class: ['status', statusClass(status, decision), big && 'status-big'],
    title: statusTitle(status, decision),
  }, status ? String(status) : 'ERR');
}

function statusTitle(status, decision) {
  if (decision === 'hold') return `${status}: held until a person approves it; the client was told where to ask, and retries`;
  if (decision === 'deny' && status >= 200 && status < 300) {
    return `${status}: denied by policy, answered as a tool result with isError and the reasons; the backend was not called`;
  }
  switch (status) {
    case 200: return decision === 'error' ? '200: the call did not reach a decision' : '200 OK: allowed and forwarded to the backend';
    case 401: return '401 Unauthorized: the token is not valid (any more)';
    case 403: return '403 Forbidden: refused by policy, the backend was not called';
    case 0: case undefined: case null: return 'no HTTP answer';
    default: return `HTTP ${status}`;
  }
}

export function decisionBadge(decision) {
  const d = decision || 'error';
  const cls = d === 'allow' ? 'badge-ok' : d === 'deny' ? 'badge-deny' : d === 'hold' ? 'badge-hold' : 'badge-warn';
  return h('span', { class: ['badge', 'decision', cls], title: d === 'hold' ? 'held: waits for a person to approve it' : undefined }, d);
}

const KNOWN_TIERS = new Set(['internal_trusted', 'developer', 'ci_agent', 'read_only', 'unverified']);

export function tierBadge(tier, title) {
  const t = tier || 'unknown';
  return h('span', {
    class: ['badge', 'tier', KNOWN_TIERS.has(t) ? `tier-${t.replace(/_/g, '-')}` : 'tier-other'],
    title: title || `trust tier ${t}`,
  }, t);
}

export function chip(text, cls, title) {
  return h('span', { class: ['chip', cls], title }, text);
}
