// #demo: the narrative demo (scenarios run as real agents) and the live
// call feed from the audit stream.
import { h, $, $$, clear, replace, statusBadge, decisionBadge, tierBadge, fmtClock, short } from '../dom.js';
import { setMessage } from '../notify.js';
import { state, on, isDemo, users, agentByName, agentById, loadScenarios, loadPolicy } from '../state.js';
import { runScenario, tokenLine, stepRow, doneLine } from '../run.js';
import { subscribe, onFeedStatus } from '../feed.js';

const FEED_MAX = 200;
const FAILURE_MODES = {
  1: 'an agent reads production secrets',
  2: 'a CI bot approves or deploys its own change',
  3: 'a scanner token lives for days',
  4: 'a planner gains reach as tools are added',
  5: 'a broad scope granted once persists',
};

let pickedScenario = null;
// chosenByHand is set when the person changes the agent or user selectors:
// running a card keeps that choice instead of the card's defaults (clicking
// a card picks its defaults again).
let chosenByHand = false;
const running = new Set();
let loaded = false;
let userSelectReady = false;

export function init() {
  on('agents', renderAgentSelect);
  on('scenarios', renderScenarios);
  const byHand = () => { chosenByHand = true; describePick(); };
  $('#demo-user').addEventListener('change', byHand);
  $('#demo-agent').addEventListener('change', byHand);
  subscribe(addFeedRow);
  onFeedStatus((s) => {
    const el = $('#feed-status');
    const text = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', lagging: 'live (some calls were skipped)', off: 'not connected' }[s] || s;
    el.textContent = text;
    el.className = `conn conn-${s === 'live' || s === 'lagging' ? 'live' : s === 'off' ? 'off' : 'wait'}`;
  });
}

export function onShow() {
  renderUserSelect();
  renderAgentSelect();
  if (!isDemo()) {
    setMessage($('#demo-message'), 'The narrative demo runs only in the demo tenant (pbac up). This gateway serves real agents: watch their calls on the right, or in the audit trail.', 'warn');
  } else {
    setMessage($('#demo-message'), '');
  }
  if (!loaded) {
    loaded = true;
    loadScenarios();
  } else {
    renderScenarios();
  }
}

export function reset() {
  pickedScenario = null;
  userSelectReady = false;
  loaded = false;
  clear($('#scenario-list'));
  clear($('#live-feed'));
  $('#live-feed-empty').hidden = false;
}

// --- selects ---

function renderUserSelect() {
  const sel = $('#demo-user');
  const before = sel.value;
  replace(sel,
    users().map((u) => h('option', { value: u.sub }, `${u.name || u.sub} — ${u.sub}`)),
    h('option', { value: '' }, 'none (machine agent, acts as itself)'));
  if (userSelectReady && [...sel.options].some((o) => o.value === before)) sel.value = before;
  else sel.value = state.session && state.session.user ? state.session.user.sub : (users()[0] ? users()[0].sub : '');
  userSelectReady = true;
}

function agentLabel(a) {
  return `${a.client_name} — ${a.provider || 'no provider'}, tier ${a.tier}${a.kind === 'machine' ? ', acts as itself' : ''}`;
}

function renderAgentSelect() {
  const sel = $('#demo-agent');
  const before = sel.value;
  replace(sel, state.agents.map((a) => h('option', { value: a.client_id }, agentLabel(a))));
  if (before && agentById(before)) sel.value = before;
}

function describePick() {
  const note = $('#demo-note');
  const sc = pickedScenario && state.scenarios.find((s) => s.id === pickedScenario);
  if (!sc) return;
  const a = agentById($('#demo-agent').value);
  const user = $('#demo-user').value;
  const who = a && a.kind === 'machine' ? 'acting as itself' : `acting for ${user || (state.session.user ? state.session.user.sub : 'the scenario\'s user')}`;
  replace(note, 'Selected: ', h('strong', null, sc.title), ` — runs as ${a ? a.client_name : sc.agent}, ${who}.`);
}

// pickScenario marks sc as the picked card and sets the selectors to its
// agent and user, unless keepChoice and the person chose them by hand.
function pickScenario(sc, keepChoice = false) {
  pickedScenario = sc.id;
  if (!(keepChoice && chosenByHand)) {
    chosenByHand = false;
    const a = agentByName(sc.agent);
    if (a) $('#demo-agent').value = a.client_id;
    $('#demo-user').value = sc.user || '';
  }
  for (const card of $$('#scenario-list .scenario')) {
    card.classList.toggle('is-picked', card.getAttribute('data-scenario') === sc.id);
  }
  describePick();
}

// --- scenarios ---

function renderScenarios() {
  const list = $('#scenario-list');
  const scs = state.scenarios.filter((s) => s.id !== 'live-test');
  if (!scs.length) {
    replace(list, h('p', { class: 'empty' }, isDemo() ? 'Loading the scenarios…' : 'No scenario on this gateway.'));
    return;
  }
  // Keep the cards of running scenarios as they are.
  const existing = new Map($$('#scenario-list .scenario').map((c) => [c.getAttribute('data-scenario'), c]));
  replace(list, scs.map((sc) => (running.has(sc.id) && existing.get(sc.id)) || scenarioCard(sc)));
  if (pickedScenario) {
    const sc = scs.find((s) => s.id === pickedScenario);
    if (sc) {
      for (const card of $$('#scenario-list .scenario')) card.classList.toggle('is-picked', card.getAttribute('data-scenario') === sc.id);
    }
  }
}

function stepWords(st) {
  const li = h('li', null, st.title || st.tool);
  if (st.kind === 'policy') li.append(' ', h('span', { class: 'chip chip-policy' }, 'policy change'));
  else if (st.kind === 'approve') li.append(' ', h('span', { class: 'chip chip-policy' }, `${st.as || 'a person'} ${st.deny ? 'denies' : 'approves'}`));
  else if (st.kind === 'repeat') li.append(' ', h('span', { class: 'chip' }, 'same call again'));
  else if (st.tool) li.append(' ', h('code', { class: 'tool-quiet' }, st.tool));
  return li;
}

function scenarioCard(sc) {
  const titleId = `sc-${sc.id}-title`;
  const runBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-run': '', 'aria-describedby': titleId }, 'Run');
  const out = h('div', { class: 'run-output', 'aria-live': 'polite' });
  const a = agentByName(sc.agent);
  const card = h('article', { class: ['scenario', 'card', pickedScenario === sc.id && 'is-picked'], 'data-scenario': sc.id, 'aria-labelledby': titleId },
    h('header', { class: 'scenario-head' },
      h('h2', { class: 'scenario-title', id: titleId }, sc.title),
      sc.failure_mode > 0
        ? h('span', { class: 'badge badge-fm', title: `Failure mode ${sc.failure_mode}: ${FAILURE_MODES[sc.failure_mode] || ''}` }, `Failure mode ${sc.failure_mode}`)
        : null),
    h('p', { class: 'scenario-who' },
      'Runs as ', h('strong', null, sc.agent), a ? [' ', tierBadge(a.tier)] : null,
      sc.user ? [' for ', h('strong', null, sc.user)] : ' acting as itself'),
    h('p', { class: 'scenario-story' }, sc.story),
    h('ol', { class: 'plain-steps' }, (sc.steps || []).map(stepWords)),
    h('div', { class: 'actions' }, runBtn),
    out);
  card.addEventListener('click', (e) => {
    if (e.target.closest('button, a, input, select, summary, details, code')) return;
    if (pickedScenario !== sc.id) pickScenario(sc);
  });
  runBtn.addEventListener('click', () => run(sc, card, runBtn, out));
  return card;
}

async function run(sc, card, btn, out) {
  if (running.has(sc.id)) return;
  if (pickedScenario !== sc.id) pickScenario(sc, true);
  running.add(sc.id);
  clear(out);
  const tokenSlot = h('div');
  const results = h('ol', { class: 'results' });
  const doneSlot = h('div');
  out.append(tokenSlot, results, doneSlot);
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  btn.textContent = 'Running…';
  const body = { agent: $('#demo-agent').value || sc.agent, user: $('#demo-user').value, pace_ms: Number($('#demo-pace').value) || 0 };
  let policyStep = false;
  try {
    await runScenario(sc.id, body, (ev) => {
      if (ev.type === 'token') replace(tokenSlot, tokenLine(ev));
      else if (ev.type === 'step') {
        if (ev.kind === 'policy') policyStep = true;
        results.append(stepRow(ev, 'data-step-result'));
      } else if (ev.type === 'done') replace(doneSlot, doneLine(ev));
      else if (ev.type === 'error') replace(doneSlot, h('p', { class: 'inline-message is-error' }, `The agent got no token: ${ev.error}`));
    });
  } catch (e) {
    if (e.status !== 401) replace(doneSlot, h('p', { class: 'inline-message is-error' }, `The scenario could not run: ${e.message}`));
  } finally {
    running.delete(sc.id);
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    btn.textContent = 'Run again';
  }
  if (policyStep) loadPolicy().catch(() => {});
}

// --- live feed ---

function addFeedRow(r) {
  // The feed is the gateway's calls; sign-ins, tokens and policy changes
  // are in the audit view.
  if (r.event && r.event !== 'decision') return;
  const list = $('#live-feed');
  $('#live-feed-empty').hidden = true;
  const reasons = (r.reasons || []).join('; ');
  const row = h('li', { class: ['feed-row', `feed-${r.decision || 'error'}`], 'data-request-id': r.request_id || '' },
    h('div', { class: 'feed-top' },
      statusBadge(r.status, { decision: r.decision }),
      h('code', { class: 'tool' }, r.tool || r.method || '—'),
      h('time', { class: 'feed-time', datetime: r.ts || '' }, fmtClock(r.ts))),
    h('p', { class: 'feed-who' },
      h('strong', null, r.agent_provider || short(r.client_id, 8)), ' ',
      r.tier ? tierBadge(r.tier) : null,
      r.sub ? [' for ', h('strong', null, r.sub)] : ' as itself'),
    h('p', { class: 'feed-why' }, decisionBadge(r.decision), ' ',
      reasons || (r.decision === 'allow' ? 'allowed by policy' : '')));
  list.prepend(row);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}
