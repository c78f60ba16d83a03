// #matrix: the full trust-tier matrix, for a chosen user, and the editor
// of the trust tiers (a change of policy data, activated or shadowed).
import { h, $, clear, replace, short, fmtAgo, fmtSeconds } from '../dom.js';
import { api } from '../api.js';
import { reportError, setMessage, toast } from '../notify.js';
import { state, on, users, isOperator, loadPolicy, activeVersion } from '../state.js';
import { fetchMatrix, renderMatrix } from '../matrix-table.js';

const pending = new Map(); // provider -> new tier
let seq = 0;
let userChosen = false;
let busy = false;
let note = null; // {text, kind}: the outcome of the last change

export function init() {
  $('#matrix-user').addEventListener('change', () => {
    userChosen = true;
    loadMatrix();
  });
  $('#tiers-activate').addEventListener('click', () => applyTiers(false));
  $('#tiers-shadow').addEventListener('click', () => applyTiers(true));
  $('#tiers-reset').addEventListener('click', () => {
    pending.clear();
    renderTiers();
  });
  on('policy', (d) => {
    if ($('#view-matrix').hidden) return;
    renderTiers();
    renderVersion();
    if (d && d.changed) loadMatrix();
  });
}

export async function onShow() {
  renderUserSelect();
  loadMatrix();
  try {
    await loadPolicy();
  } catch (e) {
    reportError(e, 'Load the policy');
  }
  renderTiers();
}

export function reset() {
  pending.clear();
  note = null;
  userChosen = false;
  clear($('#matrix-table'));
  clear($('#tiers-editor'));
}

function renderUserSelect() {
  const sel = $('#matrix-user');
  const before = sel.value;
  replace(sel,
    users().map((u) => h('option', { value: u.sub }, `${u.name || u.sub}`)),
    h('option', { value: '' }, 'nobody: each agent acts as itself (machine)'));
  if (userChosen && [...sel.options].some((o) => o.value === before)) sel.value = before;
  else sel.value = state.session && state.session.user ? state.session.user.sub : '';
}

async function loadMatrix() {
  const n = ++seq;
  const user = $('#matrix-user').value;
  $('#matrix-table').setAttribute('aria-busy', 'true');
  try {
    const m = await fetchMatrix(user);
    if (n !== seq) return;
    renderMatrix($('#matrix-table'), m);
    renderVersion(m.policy_version);
  } catch (e) {
    reportError(e, 'Compute the trust-tier matrix');
  } finally {
    if (n === seq) $('#matrix-table').removeAttribute('aria-busy');
  }
}

function renderVersion(fromMatrix) {
  const v = activeVersion() || fromMatrix || '';
  const active = state.policy && state.policy.active;
  replace($('#matrix-version'),
    h('span', { class: 'muted' }, 'Policy version '),
    h('code', { class: 'version-chip', title: v }, short(v)),
    active && active.activated_at ? h('span', { class: 'muted' }, ` · live since ${fmtAgo(active.activated_at)}`) : null);
}

// --- the tier editor ---

function trustTiers(data) {
  return (data && data.agents && data.agents.trust_tiers) || {};
}

function tierNames(data) {
  const tiers = (data && data.tiers) || {};
  return Object.keys(tiers).sort((a, b) => ((tiers[b] && tiers[b].rank) || 0) - ((tiers[a] && tiers[a].rank) || 0) || a.localeCompare(b));
}

// currentTiers maps each provider to its tier in data.
function currentTiers(data) {
  const out = new Map();
  const tt = trustTiers(data);
  const rank = (t) => (data.tiers && data.tiers[t] && data.tiers[t].rank) || 0;
  for (const tier of Object.keys(tt).sort((a, b) => rank(b) - rank(a) || a.localeCompare(b))) {
    for (const p of tt[tier] || []) if (!out.has(p)) out.set(p, tier);
  }
  return out;
}

function renderTiers() {
  const el = $('#tiers-editor');
  const data = state.policy && state.policy.data;
  if (!data) {
    replace(el, h('p', { class: 'empty' }, 'No policy data to edit.'));
    updateButtons();
    return;
  }
  const cur = currentTiers(data);
  const names = tierNames(data);
  const tiers = data.tiers || {};
  const rows = [];
  let i = 0;
  for (const [provider, tier] of cur) {
    const id = `tier-for-${i++}`;
    const chosen = pending.get(provider) || tier;
    const sel = h('select', { id, 'data-tier-for': provider, disabled: !isOperator() || busy },
      names.map((n) => h('option', { value: n, selected: n === chosen },
        `${n}${tiers[n] && tiers[n].token_ttl_seconds ? ` (${fmtSeconds(tiers[n].token_ttl_seconds)} tokens)` : ''}`)));
    sel.value = chosen;
    sel.addEventListener('change', () => {
      if (sel.value === tier) pending.delete(provider);
      else pending.set(provider, sel.value);
      row.classList.toggle('is-changed', pending.has(provider));
      was.hidden = !pending.has(provider);
      updateButtons();
    });
    const was = h('span', { class: 'tier-was', hidden: !pending.has(provider) }, `was ${tier}`);
    const row = h('div', { class: ['tier-row', pending.has(provider) && 'is-changed'] },
      h('label', { for: id, class: 'tier-provider' }, h('code', null, provider)),
      sel, was);
    rows.push(row);
  }
  replace(el, rows.length ? rows : h('p', { class: 'empty' }, 'The policy data names no provider in agents.trust_tiers.'));
  if (!isOperator()) setMessage($('#tiers-note'), 'Only an operator may change policy: sign in with the admin token.', 'warn');
  else setMessage($('#tiers-note'), note && note.text, note && note.kind);
  updateButtons();
}

function updateButtons() {
  const can = isOperator() && !busy && !!(state.policy && state.policy.data);
  $('#tiers-activate').disabled = !can || pending.size === 0;
  $('#tiers-shadow').disabled = !can || pending.size === 0;
  $('#tiers-reset').disabled = busy || pending.size === 0;
}

async function applyTiers(shadow) {
  if (!pending.size || busy) return;
  busy = true;
  updateButtons();
  note = null;
  try {
    // Apply the changes to the freshest data, not to what was loaded.
    const fresh = await loadPolicy();
    const data = structuredClone(fresh.data);
    if (!data.agents) data.agents = {};
    if (!data.agents.trust_tiers) data.agents.trust_tiers = {};
    const tt = data.agents.trust_tiers;
    const moves = [...pending];
    for (const [provider, tier] of moves) {
      for (const k of Object.keys(tt)) tt[k] = (tt[k] || []).filter((p) => p !== provider);
      if (!tt[tier]) tt[tier] = [];
      tt[tier].push(provider);
    }
    const info = await api('PUT', `/ui/api/policy/data${shadow ? '?shadow=true' : ''}`, data);
    pending.clear();
    const what = moves.map(([p, t]) => `${p} → ${t}`).join(', ');
    if (shadow) {
      toast(`Shadow version ${short(info.version)} runs beside the active policy (${what}): its decisions are compared on live traffic, not enforced.`, 'ok');
      note = { text: `Shadow version ${short(info.version)} (${what}) is being compared with the active policy: see Policy → Shadow policy.`, kind: 'ok' };
    } else {
      toast(`Policy version ${short(info.version)} is live: the next call decides with it.`, 'ok');
      note = { text: `Policy version ${short(info.version)} is live (${what}). The next call of every agent decides with it.`, kind: 'ok' };
    }
    await loadPolicy();
    renderTiers();
    await loadMatrix();
  } catch (e) {
    if (e.status === 422 || e.status === 400) note = { text: `The change was refused, the active policy stays: ${e.message}`, kind: 'error' };
    else reportError(e, shadow ? 'Run the tiers as shadow' : 'Activate the tiers');
  } finally {
    busy = false;
    renderTiers();
  }
}
