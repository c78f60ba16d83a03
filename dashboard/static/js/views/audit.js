// #audit: the audit trail, filtered, with a live mode fed by the stream.
// A record of an approval's life, or of the gateway's decisions on the
// call that asked for it (decision "hold") and used it, links to that
// approval's story: the records with its approval_id, oldest first.
import { h, $, clear, replace, statusBadge, decisionBadge, tierBadge, fmtClock, fmtTime, fmtUs, short } from '../dom.js';
import { api } from '../api.js';
import { reportError, setMessage } from '../notify.js';
import { state, on, users, agentById } from '../state.js';
import { subscribe } from '../feed.js';

const LIVE_MAX = 1000;
let filters = {};
let searched = false;
let searchSeq = 0;
let storyAsked = false; // showStory asked for a search the view has not run yet

export function init() {
  on('agents', renderAgentSelect);
  on('policy', renderToolList);
  $('#audit-form').addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  $('#audit-clear').addEventListener('click', () => {
    $('#audit-form').reset();
    search();
  });
  subscribe((r) => {
    if (!$('#audit-live').checked) return;
    if (!matches(r)) return;
    const body = $('#audit-table tbody');
    const row = recordRow(r);
    row.classList.add('is-new');
    // A story reads oldest first: what happens next goes at the end.
    if (filters.approval_id) body.append(row);
    else body.prepend(row);
    while (body.children.length > LIVE_MAX) body.lastElementChild.remove();
    $('#audit-empty').hidden = true;
    setCount(body.children.length, true);
  });
  $('#audit-live').addEventListener('change', () => {
    if ($('#audit-live').checked) filters = readFilters();
    setCount($('#audit-table tbody').children.length, $('#audit-live').checked);
  });
}

export function onShow() {
  renderAgentSelect();
  renderUserSelect();
  renderToolList();
  if (storyAsked || !searched || !$('#audit-live').checked) search();
  storyAsked = false;
}

// showStory shows the story of one approval: its records, oldest first.
export function showStory(id) {
  $('#audit-form').reset();
  $('#audit-approval').value = id;
  if (location.hash === '#audit') {
    search();
    return;
  }
  storyAsked = true;
  location.hash = '#audit'; // onShow searches
}

export function reset() {
  searched = false;
  clear($('#audit-table tbody'));
  $('#audit-count').textContent = '';
  $('#audit-live').checked = false;
}

function renderAgentSelect() {
  const sel = $('#audit-agent');
  const before = sel.value;
  replace(sel, h('option', { value: '' }, 'Any agent'),
    state.agents.map((a) => h('option', { value: a.client_id }, `${a.client_name} (${a.provider || 'no provider'})`)));
  if (before && agentById(before)) sel.value = before;
}

function renderUserSelect() {
  const sel = $('#audit-user');
  const before = sel.value;
  replace(sel, h('option', { value: '' }, 'Any user'),
    users().map((u) => h('option', { value: u.sub }, `${u.name || u.sub}`)));
  if (before && [...sel.options].some((o) => o.value === before)) sel.value = before;
}

function renderToolList() {
  const list = $('#audit-tools');
  const cat = state.policy && state.policy.data && state.policy.data.catalogue;
  if (!cat) return;
  replace(list, Object.keys(cat).sort().map((t) => h('option', { value: t })));
}

// toRFC3339 turns a datetime-local value (local time) into RFC 3339.
function toRFC3339(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function readFilters() {
  const limit = parseInt($('#audit-limit').value, 10);
  return {
    event: $('#audit-event').value,
    client_id: $('#audit-agent').value,
    sub: $('#audit-user').value,
    tool: $('#audit-tool').value.trim(),
    decision: $('#audit-decision').value,
    approval_id: $('#audit-approval').value.trim(),
    since: toRFC3339($('#audit-since').value),
    until: toRFC3339($('#audit-until').value),
    limit: Number.isFinite(limit) ? Math.min(Math.max(limit, 1), 1000) : 100,
  };
}

function matches(r) {
  const f = filters;
  if (f.event && (r.event || 'decision') !== f.event) return false;
  if (f.client_id && r.client_id !== f.client_id) return false;
  if (f.sub && r.sub !== f.sub) return false;
  if (f.tool && r.tool !== f.tool) return false;
  if (f.decision && r.decision !== f.decision) return false;
  if (f.approval_id && r.approval_id !== f.approval_id) return false;
  const t = Date.parse(r.ts);
  if (f.since && t < Date.parse(f.since)) return false;
  if (f.until && t > Date.parse(f.until)) return false;
  return true;
}

async function search() {
  const seq = ++searchSeq;
  filters = readFilters();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v !== '' && v !== undefined) q.set(k, String(v));
  const btn = $('#audit-search');
  btn.disabled = true;
  try {
    const r = await api('GET', `/ui/api/audit?${q}`);
    if (seq !== searchSeq) return;
    searched = true;
    const recs = (r && r.records) || [];
    if (filters.approval_id) recs.reverse();
    story(filters.approval_id, recs);
    replace($('#audit-table tbody'), recs.map(recordRow));
    $('#audit-empty').hidden = recs.length > 0;
    setCount(recs.length, $('#audit-live').checked);
  } catch (e) {
    reportError(e, 'Search the audit trail');
  } finally {
    btn.disabled = false;
  }
}

function setCount(n, live) {
  const isStory = !!filters.approval_id;
  $('#audit-count').textContent = `${n} record${n === 1 ? '' : 's'}, ${isStory ? 'oldest' : 'newest'} first${live ? ` · live: new calls that match are added at the ${isStory ? 'end' : 'top'}` : ''}.`;
}

// story says, above an approval's records, how its life went.
const STEPS = {
  'approval/requested': 'asked for',
  'approval/approved': 'approved',
  'approval/denied': 'denied',
  'approval/refused': 'refused to someone who may not decide it',
  'approval/used': 'used by the retried call',
  'approval/expired': 'expired',
  'approval/void': 'void (the policy changed)',
  'approval/withdrawn': 'withdrawn in the client',
};

// decider names who made an approval step: the approver who decided it,
// or the person a decision was refused to.
function decider(r) {
  if (!r.approver) return '';
  if (r.method === 'approval/refused') return ` (${r.approver})`;
  return r.method === 'approval/approved' || r.method === 'approval/denied' ? ` by ${r.approver}` : '';
}

const GATEWAY = { hold: 'held the call', allow: 'allowed the retried call', deny: 'denied the call' };

function story(id, recs) {
  const el = $('#audit-story');
  if (!id) {
    setMessage(el, '');
    return;
  }
  const steps = recs.map((r) => (r.event === 'approval'
    ? `${STEPS[r.method] || r.method}${decider(r)}${r.comment ? ` (“${r.comment}”)` : ''}`
    : `gateway ${GATEWAY[r.decision] || r.decision}`));
  setMessage(el, recs.length
    ? `The story of approval ${id}: ${steps.join(' → ')}.`
    : `No record of approval ${id} (the audit trail of a person who does not operate holds only their own calls).`);
}

function latencyTitle(l) {
  if (!l) return '';
  return ['introspect', 'policy', 'backend', 'total'].filter((k) => l[k] !== undefined).map((k) => `${k} ${fmtUs(l[k])}`).join(' · ');
}

export function recordRow(r) {
  const a = agentById(r.client_id);
  const reasons = r.reasons || [];
  const lat = r.latency_us || null;
  return h('tr', { 'data-request-id': r.request_id || '' },
    h('td', { class: 'nowrap' }, h('time', { datetime: r.ts || '', title: fmtTime(r.ts) }, fmtClock(r.ts)),
      h('span', { class: 'cell-sub' }, new Date(r.ts).toLocaleDateString())),
    h('td', null,
      h('span', { class: 'cell-main' }, (a && a.client_name) || r.agent_provider || 'unknown agent'),
      r.tier ? [' ', tierBadge(r.tier)] : null,
      h('span', { class: 'cell-sub', title: `client_id ${r.client_id}` }, r.agent_provider ? `${r.agent_provider}${r.agent_model ? ' · ' + r.agent_model : ''}` : short(r.client_id))),
    h('td', null, r.sub ? h('span', null, r.sub) : h('span', { class: 'muted' }, 'itself')),
    h('td', null, h('code', { class: 'tool' }, r.tool || r.method || '—'),
      r.tool && r.method && r.method !== 'tools/call' ? h('span', { class: 'cell-sub' }, r.method) : null,
      r.event && r.event !== 'decision' ? h('span', { class: 'cell-sub event' }, r.event.replace('_', ' ')) : null),
    h('td', null, decisionBadge(r.decision)),
    h('td', null, statusBadge(r.status, { decision: r.decision })),
    h('td', { class: 'reasons' }, reasons.length
      ? (reasons.length === 1 ? reasons[0] : h('ul', { class: 'reason-list' }, reasons.map((x) => h('li', null, x))))
      : h('span', { class: 'muted' }, '—'),
    r.args_digest ? h('span', { class: 'cell-sub digest', title: `arguments ${r.args_digest}` }, `args ${short(r.args_digest.replace('sha256:', ''), 10)}…`) : null,
    r.approval_id ? h('a', {
      class: 'cell-sub story-link', href: '#audit', 'data-approval-story': r.approval_id, title: `every record of approval ${r.approval_id}, oldest first`,
      on: { click: (e) => { e.preventDefault(); showStory(r.approval_id); } },
    }, r.approver ? `approval story · by ${r.approver}` : 'approval story') : null),
    h('td', null, r.policy_version ? h('code', { title: r.policy_version }, short(r.policy_version)) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'num nowrap', title: latencyTitle(lat) }, lat && lat.total !== undefined ? fmtUs(lat.total) : '—'));
}
