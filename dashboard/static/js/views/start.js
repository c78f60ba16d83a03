// #start: onboarding in five steps.
import { h, $, $$, clear, replace, tierBadge, chip, fmtSeconds, short, fmtAgo, statusBadge } from '../dom.js';
import { api } from '../api.js';
import { reportError, setMessage, toast } from '../notify.js';
import {
  state, on, isOperator, currentUser, isDemo, users, pickedAgent, pickAgent,
  loadAgents, activeVersion, loadScenarios,
} from '../state.js';
import { fetchMatrix, renderMatrix, providersOf } from '../matrix-table.js';
import { copyButton, copyText, tabs } from '../widgets.js';
import { runScenario, tokenLine, stepRow, doneLine, reportText } from '../run.js';
import { loadReview, resetReview } from '../review.js';

const progress = { connected: false, matrixSeen: false, liveDone: false };
let lastMatrix = null;
let matrixLoad = 0;
let liveRunning = false;
let lastRun = null;
let approvalRunning = false;

// APPROVAL_SCENARIO is the demo scenario step 5 also runs: a call policy
// neither allows nor denies but holds until a person approves it.
const APPROVAL_SCENARIO = 'deploy-approval';

const OTHER = '__other';

export function init() {
  on('agents', () => {
    renderAgents();
    renderConnect();
    renderLiveIntro();
    renderStepper();
  });
  on('picked', () => {
    markPicked();
    renderConnect();
    renderLiveIntro();
    highlightMatrix();
    renderStepper();
  });
  on('scenarios', renderApprovalIntro);
  on('policy', (d) => {
    renderVersion();
    if (d && d.changed && isVisible()) loadMatrix();
  });

  $('#register-form').addEventListener('submit', register);
  $('#people-form').addEventListener('submit', revokePerson);
  $('#reg-client').addEventListener('change', fillPreset);
  $('#reg-kind').addEventListener('change', renderRedirectFields);
  $('#reg-provider').addEventListener('change', () => {
    const other = $('#reg-provider').value === OTHER;
    $('#reg-provider-other-field').hidden = !other;
    $('#reg-provider-other').required = other;
  });
  $('#step3-next').addEventListener('click', () => {
    progress.connected = true;
    renderStepper();
    focusStep(4);
  });
  $('#step4-next').addEventListener('click', () => {
    progress.matrixSeen = true;
    renderStepper();
    focusStep(5);
  });
  $('#step4-open-matrix').addEventListener('click', () => {
    location.hash = '#matrix';
  });
  $('#live-test-run').addEventListener('click', runLiveTest);
  $('#live-test-copy').addEventListener('click', copyReport);
  $('#live-approval-run').addEventListener('click', runApproval);
  $('#connect-content').addEventListener('copied', (e) => {
    if (e.detail && e.detail.ok && pickedAgent()) {
      progress.connected = true;
      renderStepper();
    }
  });
}

function isVisible() {
  return !$('#view-start').hidden;
}

export function onShow() {
  renderAll();
  loadAgents();
  loadMatrix();
  loadReview();
  if (isDemo() && !state.scenarios.length) loadScenarios();
}

export function reset() {
  progress.connected = false;
  progress.matrixSeen = false;
  progress.liveDone = false;
  lastMatrix = null;
  lastRun = null;
  clear($('#agent-list'));
  resetReview();
  clear($('#register-result'));
  setMessage($('#people-result'), '');
  clear($('#connect-content'));
  clear($('#onboard-matrix'));
  clearLive();
  clearApproval();
  $('#live-approval').hidden = true;
}

function renderAll() {
  renderStep1();
  renderAgents();
  renderRegisterForm();
  renderPeopleForm();
  renderConnect();
  renderVersion();
  renderLiveIntro();
  renderApprovalIntro();
  renderStepper();
}

// --- the stepper ---

function doneSteps() {
  const s1 = !!state.session;
  const s2 = s1 && !!pickedAgent();
  const s5 = s2 && progress.liveDone;
  const s3 = s2 && (progress.connected || s5);
  const s4 = s3 && (progress.matrixSeen || s5);
  return [s1, s2, s3, s4, s5];
}

function renderStepper() {
  const done = doneSteps();
  const current = done.indexOf(false); // -1 when all are done
  done.forEach((d, i) => {
    const li = $(`#stepper [data-step="${i + 1}"]`);
    const stateEl = $(`#step${i + 1}-state`);
    li.classList.toggle('is-done', d);
    li.classList.toggle('is-current', i === current);
    if (i === current) li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
    $('.step-marker span', li).textContent = d ? '✓' : String(i + 1);
    stateEl.className = `step-state ${d ? 'is-done' : i === current ? 'is-current' : ''}`;
    stateEl.textContent = d ? 'Done' : i === current ? 'Your next step' : 'To do';
  });
  $('#step3-next').disabled = !done[1] || done[2];
  $('#step4-next').disabled = !done[2] || done[3];
}

function focusStep(n) {
  const title = $(`#step${n}-title`);
  if (!title) return;
  title.setAttribute('tabindex', '-1');
  title.focus({ preventScroll: true });
  title.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

// --- step 1 ---

function renderStep1() {
  const el = $('#step1-content');
  const u = currentUser();
  if (u) {
    const roles = (u.roles || []).map((r) => chip(r, 'chip-role'));
    replace(el,
      h('p', null, 'You are signed in as ', h('strong', null, u.name || u.sub), ' (', h('code', null, u.sub), '), with the role ',
        roles.length ? roles : h('span', { class: 'muted' }, 'none'), '.'),
      h('p', { class: 'hint' }, 'An agent acting for you never exceeds you: what it may do is its tier intersected with your role. ',
        isOperator()
          ? 'In this demo tenant every signed-in user also operates the local gateway: you may register agents and change policy.'
          : 'Changing policy and registering agents needs an operator: sign in with the admin token for that.'));
  } else {
    const names = users().map((x) => x.sub);
    replace(el,
      h('p', null, 'You are signed in with the admin token: the ', h('strong', null, 'operator'), ', without a user.'),
      h('p', { class: 'hint' }, names.length
        ? `An agent that acts for a user will act for each scenario's own user. To see your role at work, sign out and sign in as a demo user (${names.join(', ')}).`
        : 'This gateway has no demo users: agents act for the users that sign in through them.'));
  }
}

// --- step 2: agents ---

function agentCard(a) {
  const picked = a.client_id === state.pickedAgentId;
  const id = `agent-${a.client_id}`;
  const radio = h('input', {
    type: 'radio', name: 'agent-pick', id, value: a.client_id, checked: picked,
    'aria-describedby': `${id}-desc`,
  });
  radio.addEventListener('change', () => {
    if (radio.checked) pickAgent(a.client_id);
  });
  const chips = h('ul', { class: 'chips' },
    h('li', null, a.verified
      ? chip('✓ verified statement', 'chip-ok', 'its software statement is signed by a trusted issuer')
      : a.review === 'approved'
        ? chip('✓ approved by an operator', 'chip-ok', 'an operator approved it as this provider')
        : chip('unverified', 'chip-warn', 'no verified software statement')),
    a.review === 'rejected' ? h('li', null, chip('rejected', 'chip-warn', 'an operator rejected it: it gets no token')) : null,
    a.review_machine ? h('li', null, chip('approved for machine use', 'chip-warn', 'the operator approved its client_credentials tokens, which act for no person')) : null,
    a.vouch ? h('li', { 'data-vouch': a.vouch.subject }, chip(`vouched for by ${a.vouch.subject} as ${a.vouch.provider}`, 'chip-role',
      `${a.vouch.subject}'s word at sign-in, ${fmtAgo(a.vouch.at) || 'at an unknown time'}: it counts for ${a.vouch.subject} alone, where policy allows it`)) : null,
    h('li', null, chip(a.kind === 'machine' ? 'acts as itself' : 'acts for a user', 'chip-kind',
      a.kind === 'machine' ? 'client credentials: it has no user' : 'authorization code + PKCE: a user signs in')),
    a.single_use ? h('li', null, chip('single-use tokens', 'chip-warn', 'each access token works for one call')) : null,
    h('li', null, chip(`token TTL ${fmtSeconds(a.token_ttl_seconds)}`, 'chip-ttl', 'how long its access tokens live')),
    a.demo ? h('li', null, chip('seeded', 'chip-quiet', 'one of the demo tenant\'s agents')) : null);

  const card = h('div', {
    class: ['agent-card', picked && 'is-picked'],
    'data-agent': a.client_name,
    'data-client-id': a.client_id,
  },
  h('div', { class: 'agent-card-head' },
    radio,
    h('label', { for: id, class: 'agent-name' }, a.client_name)),
  h('div', { id: `${id}-desc`, class: 'agent-meta' },
    h('p', { class: 'agent-tier' }, 'tier ', tierBadge(a.tier, a.tier_reason)),
    h('p', { class: 'agent-provider' }, 'provider ', h('code', null, a.provider || '—'), ' · model ', h('span', null, a.model || '—')),
    chips,
    a.tier_reason ? h('p', { class: 'agent-reason' }, a.tier_reason) : null));

  if (!a.demo && isOperator()) {
    const revoke = h('button', { type: 'button', class: 'btn btn-quiet btn-small btn-danger-text', 'aria-label': `Revoke ${a.client_name}` }, 'Revoke');
    let armed = false;
    revoke.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        revoke.textContent = 'Revoke it and its tokens?';
        setTimeout(() => {
          armed = false;
          revoke.textContent = 'Revoke';
        }, 4000);
        return;
      }
      revoke.disabled = true;
      try {
        await api('DELETE', `/ui/api/agents/${encodeURIComponent(a.client_id)}`);
        toast(`${a.client_name} is revoked, with its tokens.`, 'ok');
        if (state.pickedAgentId === a.client_id) pickAgent(null);
        await loadAgents();
      } catch (e) {
        reportError(e, `Revoke ${a.client_name}`);
        revoke.disabled = false;
      }
    });
    card.append(h('div', { class: 'agent-actions' }, revoke));
  }

  card.addEventListener('click', (e) => {
    if (e.target.closest('button, input, label, a, summary')) return;
    radio.checked = true;
    pickAgent(a.client_id);
    radio.focus({ preventScroll: true });
  });
  return card;
}

function renderAgents() {
  const list = $('#agent-list');
  const msg = $('#agents-message');
  if (state.agentsError) {
    setMessage(msg, state.agentsError, 'error');
  } else if (!state.agents.length) {
    setMessage(msg, 'No agent is registered yet.');
  } else {
    setMessage(msg, '');
  }
  // Keep focus where it is when the list is rebuilt.
  const focused = document.activeElement && document.activeElement.name === 'agent-pick' ? document.activeElement.value : null;
  replace(list, state.agents.map(agentCard));
  if (focused) {
    const r = document.getElementById(`agent-${focused}`);
    if (r) r.focus({ preventScroll: true });
  }
}

function markPicked() {
  for (const card of $$('#agent-list .agent-card')) {
    const picked = card.getAttribute('data-client-id') === state.pickedAgentId;
    card.classList.toggle('is-picked', picked);
    const radio = $('input[type="radio"]', card);
    if (radio && radio.checked !== picked) radio.checked = picked;
  }
}

function providerChoices() {
  const fromMatrix = providersOf(lastMatrix);
  if (fromMatrix.length) return fromMatrix;
  const tt = state.policy && state.policy.data && state.policy.data.agents && state.policy.data.agents.trust_tiers;
  return tt ? Object.values(tt).flat() : [];
}

function renderRegisterForm() {
  const sel = $('#reg-provider');
  const before = sel.value;
  const choices = [...new Set(providerChoices())];
  replace(sel,
    choices.map((p) => h('option', { value: p }, p)),
    h('option', { value: OTHER }, 'Another provider…'));
  if (before && [...sel.options].some((o) => o.value === before)) sel.value = before;
  $('#reg-provider-other-field').hidden = sel.value !== OTHER;

  renderClientSelect();

  const note = $('#register-note');
  const allowed = isDemo() && isOperator();
  for (const el of $$('#register-form input, #register-form select, #register-form button')) el.disabled = !allowed;
  if (!isDemo()) {
    note.textContent = 'Agents register themselves with a software statement signed by their vendor. The dashboard registers agents only in the demo tenant, where it signs the statement with the tenant\'s key.';
  } else if (!isOperator()) {
    note.textContent = 'Only an operator may register agents: sign in with the admin token.';
  } else {
    note.textContent = 'The dashboard signs a software statement with the demo tenant\'s key and registers the agent through Dynamic Client Registration (RFC 7591). The policy decides its tier from the provider claim, and may refuse it.';
  }
}

// The client presets come from the server (GET /ui/api/config: clients,
// made from the Go table connect.Clients): their redirect URIs and a preview
// of their snippet. Nothing of them is written here.
const CUSTOM = 'custom';

function presets() {
  return (state.config && state.config.clients) || [];
}

function renderClientSelect() {
  const sel = $('#reg-client');
  const before = sel.value;
  const hadPresets = sel.options.length > 1;
  replace(sel,
    presets().map((c) => h('option', { value: c.id }, c.label)),
    h('option', { value: CUSTOM }, 'Custom (type the redirect URIs)'));
  if (hadPresets && [...sel.options].some((o) => o.value === before)) {
    sel.value = before;
  } else {
    // The first time the presets are known: the first one, filled in.
    sel.value = presets().length ? presets()[0].id : CUSTOM;
    fillPreset();
  }
  renderRedirectFields();
}

function fillPreset() {
  const c = presets().find((p) => p.id === $('#reg-client').value);
  $('#reg-redirects').value = c ? c.redirect_uris.join('\n') : '';
  const field = $('#reg-preview-field');
  field.hidden = !c;
  if (c) {
    $('#reg-preview-file').textContent = c.file || 'a command to run';
    $('#reg-preview code').textContent = c.preview;
  }
}

function renderRedirectFields() {
  const human = $('#reg-kind').value === 'human';
  for (const id of ['#reg-client-field', '#reg-redirects-field']) $(id).hidden = !human;
  if (!human) $('#reg-preview-field').hidden = true;
  else $('#reg-preview-field').hidden = !presets().some((p) => p.id === $('#reg-client').value);
}

// --- revoke everything acting for a person ---

function renderPeopleForm() {
  const details = $('#people-details');
  details.hidden = !(state.config && state.config.revoke_people && isOperator());
  replace($('#people-known'), users().map((u) => h('option', { value: u.sub }, u.name || u.sub)));
}

let peopleArmed = null;

async function revokePerson(e) {
  e.preventDefault();
  const out = $('#people-result');
  const btn = $('#people-submit');
  const sub = $('#people-sub').value.trim();
  if (!sub) return;
  // Two steps, as revoking an agent: the first press asks.
  if (peopleArmed !== sub) {
    peopleArmed = sub;
    btn.textContent = `Revoke everything acting for ${sub}?`;
    setTimeout(() => {
      if (peopleArmed === sub) {
        peopleArmed = null;
        btn.textContent = 'Revoke everything acting for this person';
      }
    }, 4000);
    return;
  }
  peopleArmed = null;
  btn.textContent = 'Revoke everything acting for this person';
  btn.disabled = true;
  try {
    const reason = $('#people-reason').value.trim();
    const r = await api('POST', `/ui/api/people/${encodeURIComponent(sub)}/revoke`, reason ? { reason } : {});
    const n = r.revoked || {};
    setMessage(out, `Revoked for ${sub}: ${n.access_tokens || 0} access tokens (delegated ones included), `
      + `${n.refresh_tokens || 0} refresh token families, ${n.authorization_codes || 0} authorization codes. Recorded in the audit trail.`, 'ok');
    toast(`Everything acting for ${sub} is revoked.`, 'ok');
  } catch (err) {
    reportError(err, `Revoke everything acting for ${sub}`);
  } finally {
    btn.disabled = false;
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;
const PROVIDER_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

async function register(e) {
  e.preventDefault();
  const out = $('#register-result');
  clear(out);
  const name = $('#reg-name').value.trim();
  const provider = $('#reg-provider').value === OTHER ? $('#reg-provider-other').value.trim() : $('#reg-provider').value;
  const body = {
    client_name: name,
    provider,
    model: $('#reg-model').value.trim(),
    kind: $('#reg-kind').value,
    single_use: $('#reg-single-use').checked,
  };
  if (body.kind === 'human') {
    body.client = $('#reg-client').value;
    body.redirect_uris = $('#reg-redirects').value.split('\n').map((l) => l.trim()).filter(Boolean);
  }
  const problem = !NAME_RE.test(name)
    ? 'The client name needs 1 to 64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.'
    : !PROVIDER_RE.test(provider)
      ? 'The provider needs 1 to 64 lower-case letters, digits, dots, dashes or underscores.'
      : body.kind === 'human' && !body.redirect_uris.length
        ? 'An agent that acts for a user needs at least one redirect URI: pick its client, or type the URIs it sends.'
        : '';
  if (problem) {
    out.append(h('p', { class: 'inline-message is-error', role: 'alert' }, problem));
    return;
  }
  const btn = $('#reg-submit');
  btn.disabled = true;
  try {
    const a = await api('POST', '/ui/api/agents', body);
    await loadAgents();
    pickAgent(a.client_id);
    $('#register-form').reset();
    $('#reg-provider-other-field').hidden = true;
    fillPreset();
    renderRedirectFields();
    $('#register-details').open = false;
    out.append(h('div', { class: 'inline-message is-ok' },
      h('p', null, 'Registered ', h('strong', null, a.client_name), ' with tier ', tierBadge(a.tier, a.tier_reason),
        a.tier_reason ? ` (${a.tier_reason})` : '', '. It is picked for the next steps.')));
    if (a.client_secret) {
      const pre = h('pre', { class: 'snippet secret' }, h('code', null, a.client_secret));
      out.append(h('div', { class: 'secret-box' },
        h('p', null, h('strong', null, 'Client secret, shown once: '), 'copy it now. The gateway keeps only its hash.'),
        h('div', { class: 'snippet-row' }, pre, copyButton({ what: 'the client secret', source: pre }))));
    }
    toast(`Agent ${a.client_name} is registered: tier ${a.tier}.`, 'ok');
  } catch (err) {
    if (err.status === 401) return;
    const prefix = err.status === 403 ? 'The policy refused the registration: ' : 'The registration failed: ';
    out.append(h('p', { class: 'inline-message is-error', role: 'alert' }, prefix + err.message));
  } finally {
    btn.disabled = !(isDemo() && isOperator());
  }
}

// --- step 3: connect a client ---

function snippetBlock(key, what, text, file) {
  const pre = h('pre', { class: 'snippet', 'data-snippet': key }, h('code', null, text));
  return h('div', { class: 'snippet-block' },
    file ? h('p', { class: 'snippet-file' }, h('span', { class: 'muted' }, 'File: '), h('code', null, file)) : null,
    h('div', { class: 'snippet-row' },
      pre,
      copyButton({ what, source: pre, attrs: { 'data-copy': key } })));
}

function renderConnect() {
  const el = $('#connect-content');
  const a = pickedAgent();
  const cfg = state.config || {};
  const mcp = cfg.mcp_url || `${location.protocol}//${location.host}/mcp`;
  if (!a) {
    replace(el, h('p', { class: 'empty' }, 'Pick an agent in step 2: the commands below are made for it.'));
    return;
  }
  // The snippets are the server's (the Go table connect.Clients), only for
  // the clients this agent's redirect URIs let sign in.
  const list = a.snippets || [];
  const claude = list.find((x) => x.client === 'claude-code');
  const others = list.filter((x) => x !== claude);
  const who = currentUser();
  const signInAs = who ? `${who.sub} (password ${cfg.demo_password || 'yours'})` : 'a user of this gateway';
  const parts = [
    h('p', null, 'Connect an MCP client as ', h('strong', null, a.client_name), ' (client id ', h('code', { class: 'break' }, a.client_id), ') to the gateway at ', h('code', { class: 'break' }, mcp), '.'),
  ];
  if (a.kind === 'machine') {
    parts.push(h('p', { class: 'inline-message is-warn' },
      `${a.client_name} acts as itself (client credentials): it gets its token with its client id and secret, without anyone signing in. An interactive client such as Claude Code signs a user in: pick an agent that acts for a user to connect one.`));
  } else if (!list.length) {
    parts.push(h('p', { class: 'inline-message is-warn' },
      `None of the MCP clients the dashboard knows sends a redirect URI ${a.client_name} is registered with (${(a.redirect_uris || []).join(', ')}): configure your client to send one of them.`));
  }
  if (claude) {
    parts.push(
      h('h3', { class: 'h-small' }, 'Claude Code'),
      snippetBlock('claude', 'the Claude Code command', claude.text),
      h('p', { class: 'hint' }, `Claude Code opens the gateway's sign-in page in your browser: sign in as ${signInAs}. Then type a prompt: every tool call it makes goes through the policy, and shows up in the audit trail.`));
  }
  if (others.length) {
    parts.push(
      h('h3', { class: 'h-small' }, claude ? 'Other clients' : 'Clients'),
      tabs(others.map((x) => ({
        id: x.client,
        label: x.label,
        panel: h('div', null,
          snippetBlock(x.client, `the ${x.label} configuration`, x.text, x.file),
          h('p', { class: 'hint' }, x.note)),
      })), { label: 'MCP client' }));
  }
  const backends = cfg.backends || [];
  if (backends.length) {
    parts.push(
      h('h3', { class: 'h-small' }, 'One backend only'),
      h('p', { class: 'hint' }, 'The gateway also serves each backend on its own endpoint, with that backend\'s tools only.'),
      h('ul', { class: 'backend-list' }, backends.map((b) => h('li', null,
        h('span', { class: 'backend-name' }, b.name), h('code', { class: 'break' }, b.mcp_url)))));
  }
  replace(el, parts);
}

// --- step 4: the matrix ---

async function loadMatrix() {
  const seq = ++matrixLoad;
  const u = currentUser();
  try {
    const m = await fetchMatrix(u ? u.sub : '');
    if (seq !== matrixLoad) return;
    lastMatrix = m;
    renderMatrix($('#onboard-matrix'), m, { highlight: highlightProvider() });
    renderVersion();
    renderRegisterForm();
  } catch (e) {
    reportError(e, 'Compute the trust-tier matrix');
  }
}

function highlightProvider() {
  const a = pickedAgent();
  if (!a) return '';
  return (a.verified || a.review === 'approved') && a.provider ? a.provider : '(unverified)';
}

function highlightMatrix() {
  if (lastMatrix) renderMatrix($('#onboard-matrix'), lastMatrix, { highlight: highlightProvider() });
}

function renderVersion() {
  const el = $('#onboard-version');
  const v = activeVersion() || (lastMatrix && lastMatrix.policy_version) || '';
  const active = state.policy && state.policy.active;
  const u = currentUser();
  replace(el,
    h('span', { class: 'muted' }, 'Active policy version '),
    h('code', { class: 'version-chip', title: v }, short(v)),
    active && active.activated_at ? h('span', { class: 'muted' }, ` · live since ${fmtAgo(active.activated_at)}`) : null,
    active && active.source ? h('span', { class: 'muted' }, ` · from ${active.source}`) : null,
    h('span', { class: 'muted' }, u ? ` · acting for ${u.sub}` : ' · agents acting as themselves'));
}

// --- step 5: the live test ---

function renderLiveIntro() {
  const el = $('#live-test-intro');
  const btn = $('#live-test-run');
  const a = pickedAgent();
  const u = currentUser();
  if (!isDemo()) {
    replace(el, 'The live test runs in the demo tenant only.');
    btn.disabled = true;
    return;
  }
  if (!a) {
    replace(el, 'Pick an agent in step 2 first.');
    btn.disabled = true;
    return;
  }
  btn.disabled = liveRunning;
  const forWhom = a.kind === 'machine' ? ['acting as itself'] : ['acting for ', h('strong', null, u ? u.sub : 'alice')];
  replace(el,
    h('strong', null, a.client_name), ' (tier ', tierBadge(a.tier, a.tier_reason), ') ', ...forWhom,
    ' gets one token. With it, the gateway is asked to read the open merge requests of ', h('code', null, 'platform/api'),
    ', then to merge one. The policy decides each call, with its arguments.');
}

function clearLive() {
  clear($('#live-test-token'));
  clear($('#live-test-results'));
  const sum = $('#live-test-summary');
  clear(sum);
  sum.hidden = true;
  setMessage($('#live-test-error'), '');
  $('#live-test-copy').hidden = true;
}

async function runLiveTest() {
  const a = pickedAgent();
  if (!a || liveRunning) return;
  liveRunning = true;
  clearLive();
  const btn = $('#live-test-run');
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  btn.textContent = 'Running…';
  const run = { token: null, steps: [], done: null };
  const body = { agent: a.client_id };
  const u = currentUser();
  if (u) body.user = u.sub;
  try {
    await runScenario('live-test', body, (ev) => {
      if (ev.type === 'token') {
        run.token = ev;
        replace($('#live-test-token'), tokenLine(ev));
      } else if (ev.type === 'step') {
        run.steps.push(ev);
        $('#live-test-results').append(stepRow(ev, 'data-result-index'));
      } else if (ev.type === 'done') {
        run.done = ev;
      } else if (ev.type === 'error') {
        setMessage($('#live-test-error'), `The agent got no token: ${ev.error}`, 'error');
      }
    });
  } catch (e) {
    if (e.status !== 401) setMessage($('#live-test-error'), `The live test could not run: ${e.message}`, 'error');
  } finally {
    liveRunning = false;
    btn.removeAttribute('aria-busy');
    btn.textContent = 'Run the live test again';
    renderLiveIntro();
  }
  if (run.steps.length) {
    lastRun = run;
    renderVerdict(run);
    $('#live-test-copy').hidden = false;
    if (run.done) progress.liveDone = true;
    renderStepper();
  }
}

// outcome says what the gateway decided on a call and how it answered: a
// denial is answered 403, or 200 with a tool result (denials: tool_error).
function outcome(s) {
  const http = s.status ? `HTTP ${s.status}` : 'no HTTP answer';
  if (s.decision === 'allow') return `allowed (${http})`;
  if (s.decision === 'deny' && s.status >= 200 && s.status < 300) return `denied (${http}, a tool result with isError)`;
  if (s.decision === 'deny') return `denied (${http})`;
  return `an error (${http})`;
}

function verdictSentence(steps) {
  const read = steps.find((s) => s.index === 0);
  const merge = steps.find((s) => s.index === 1);
  if (!read || !merge) return '';
  let text = `Same token: the read was ${outcome(read)}, the merge attempt was ${outcome(merge)}`;
  if (merge.decision === 'deny' || merge.decision === 'error') text += ` — ${merge.reason || 'refused'}`;
  else text += ' — this agent\'s tier and your role both grant gitlab:merge';
  return `${text}.`;
}

function renderVerdict(run) {
  const el = $('#live-test-summary');
  const sentence = verdictSentence(run.steps);
  if (!sentence) {
    el.hidden = true;
    return;
  }
  const read = run.steps.find((s) => s.index === 0);
  const merge = run.steps.find((s) => s.index === 1);
  const version = (merge && merge.policy_version) || (read && read.policy_version) || activeVersion();
  replace(el,
    h('div', { class: 'verdict-badges', 'aria-hidden': 'true' },
      statusBadge(read.status, { big: true, decision: read.decision }), h('span', { class: 'verdict-arrow' }, '→'), statusBadge(merge.status, { big: true, decision: merge.decision })),
    h('div', { class: 'verdict-text' },
      h('p', { class: 'verdict-sentence' }, sentence),
      h('p', { class: 'hint' },
        'One token, two calls: the gateway decided each one by policy, at call time, with its arguments',
        version ? [', under policy version ', h('code', null, short(version))] : null,
        '. Both calls are in the audit trail.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn-secondary btn-small', on: { click: () => { location.hash = '#audit'; } } }, 'See them in the audit trail'),
        h('button', { type: 'button', class: 'btn btn-quiet btn-small', on: { click: () => { location.hash = '#demo'; } } }, 'Go on to the narrative demo'))));
  el.hidden = false;
}

async function copyReport() {
  if (!lastRun) return;
  const text = reportText({
    title: 'PBAC Gateway live test: one token, a read and a merge attempt',
    token: lastRun.token,
    steps: lastRun.steps,
    done: lastRun.done,
    policyVersion: activeVersion(),
  }) + '\n' + verdictSentence(lastRun.steps);
  const ok = await copyText(text);
  toast(ok ? 'Copied the live test\'s result as text.' : 'The clipboard is not available here.', ok ? 'ok' : 'info');
}

// --- step 5, the third outcome: a call held for a person's approval ---

function renderApprovalIntro() {
  const sc = isDemo() && state.scenarios.find((x) => x.id === APPROVAL_SCENARIO);
  $('#live-approval').hidden = !sc;
  if (!sc) return;
  $('#live-approval-run').textContent = `Run: ${sc.title}`;
  $('#live-approval-run').disabled = approvalRunning;
  replace($('#live-approval-intro'), sc.story, ' ',
    h('a', { href: '#approvals' }, 'The Approvals view'), ' lists what waits for you.');
}

function clearApproval() {
  clear($('#live-approval-token'));
  clear($('#live-approval-results'));
  clear($('#live-approval-done'));
  $('#live-approval-done').hidden = true;
  setMessage($('#live-approval-error'), '');
}

async function runApproval() {
  if (approvalRunning) return;
  approvalRunning = true;
  clearApproval();
  const btn = $('#live-approval-run');
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    // The scenario's own agent (the CI bot, acting as itself) and approver.
    await runScenario(APPROVAL_SCENARIO, {}, (ev) => {
      if (ev.type === 'token') replace($('#live-approval-token'), tokenLine(ev));
      else if (ev.type === 'step') $('#live-approval-results').append(stepRow(ev, 'data-approval-step'));
      else if (ev.type === 'done') {
        const done = $('#live-approval-done');
        replace(done, doneLine(ev));
        done.hidden = false;
      } else if (ev.type === 'error') setMessage($('#live-approval-error'), `The agent got no token: ${ev.error}`, 'error');
    });
  } catch (e) {
    if (e.status !== 401) setMessage($('#live-approval-error'), `The scenario could not run: ${e.message}`, 'error');
  } finally {
    approvalRunning = false;
    btn.removeAttribute('aria-busy');
    renderApprovalIntro();
  }
}
