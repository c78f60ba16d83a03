// Pending review (issue 17, operator approval): the agents that registered
// themselves with nothing vouching for them, with one-click Approve (as a
// provider of the active policy's trust tiers, which gives the tier) and
// Reject. Operators only; every change carries the CSRF header (api.js).
import { h, $, replace, chip, fmtAgo } from './dom.js';
import { api } from './api.js';
import { reportError, setMessage, toast } from './notify.js';
import { state, isOperator, loadAgents } from './state.js';

let loadSeq = 0;

function offered() {
  return !!(state.config && state.config.review_agents && isOperator());
}

// loadReview fetches the pending agents and renders them (or hides the
// section where nobody may review).
export async function loadReview() {
  const section = $('#review-section');
  if (!offered()) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const seq = ++loadSeq;
  try {
    const r = await api('GET', '/ui/api/agents/review?status=pending');
    if (seq !== loadSeq) return;
    render(r.clients || [], r.providers || []);
  } catch (e) {
    if (e.status === 401) return;
    setMessage($('#review-message'), `The pending agents could not be listed: ${e.message}`, 'error');
  }
}

export function resetReview() {
  loadSeq++;
  replace($('#review-list'));
  setMessage($('#review-message'), '');
  $('#review-section').hidden = true;
}

function render(clients, providers) {
  const msg = $('#review-message');
  if (!clients.length) {
    setMessage(msg, 'No agent awaits review.');
  } else {
    setMessage(msg, '');
  }
  replace($('#review-list'), clients.map((c) => pendingItem(c, providers)));
}

function pendingItem(c, providers) {
  const name = c.client_name || 'An unnamed client';
  const selectId = `review-provider-${c.client_id}`;
  // No provider is chosen for the operator: what the agent says it is
  // (its software_id) is a claim nobody checked.
  const select = h('select', { id: selectId, 'data-review-provider': c.client_id },
    h('option', { value: '' }, 'Choose the provider it is…'),
    providers.map((p) => h('option', { value: p.provider }, `${p.provider} — tier ${(p.tiers || []).join(', ')}`)));
  const approve = h('button', { type: 'button', class: 'btn btn-primary btn-small', 'data-review-approve': c.client_id }, 'Approve');
  const reject = h('button', { type: 'button', class: 'btn btn-quiet btn-small btn-danger-text', 'data-review-reject': c.client_id }, 'Reject');
  // A client that registered client_credentials would get tokens acting
  // for no person, as a machine of the provider's tier: approving it takes
  // the operator's explicit word (the authorization server refuses it
  // otherwise).
  const machineId = `review-machine-${c.client_id}`;
  const machine = c.acts_for_no_person
    ? h('input', { type: 'checkbox', id: machineId, 'data-review-machine': c.client_id })
    : null;
  const canApprove = () => !!select.value && (!machine || machine.checked);
  approve.disabled = !canApprove();
  select.addEventListener('change', () => { approve.disabled = !canApprove(); });
  if (machine) machine.addEventListener('change', () => { approve.disabled = !canApprove(); });
  const act = async (verb, body) => {
    approve.disabled = true;
    reject.disabled = true;
    try {
      await api('POST', `/ui/api/agents/${encodeURIComponent(c.client_id)}/${verb}`, body);
      toast(verb === 'approve'
        ? `${name} is approved as ${body.provider}${body.machine ? ', including machine use' : ''}.`
        : `${name} is rejected: it gets no token.`, 'ok');
      await Promise.all([loadReview(), loadAgents()]);
    } catch (e) {
      reportError(e, `${verb === 'approve' ? 'Approve' : 'Reject'} ${name}`);
      approve.disabled = !canApprove();
      reject.disabled = false;
    }
  };
  approve.addEventListener('click', () => act('approve', machine ? { provider: select.value, machine: machine.checked } : { provider: select.value }));
  reject.addEventListener('click', () => act('reject', {}));

  const facts = h('ul', { class: 'chips' },
    h('li', null, chip('unverified', 'chip-warn', 'no trusted software statement, operator or metadata document vouches for it')),
    c.no_token_yet ? h('li', null, chip('no token yet', 'chip-quiet', 'it expires unless approved or used')) : null,
    c.application_type ? h('li', null, chip(c.application_type, 'chip-kind', 'application_type at registration')) : null,
    c.acts_for_no_person ? h('li', null, chip('acts for no person', 'chip-warn', 'it registered client_credentials: approved, it gets tokens on its own, for nobody')) : null);
  return h('li', { class: 'review-item', 'data-pending-client': c.client_id },
    h('p', { class: 'review-name' }, h('strong', null, name), ' ', h('code', { class: 'break' }, c.client_id)),
    facts,
    h('p', { class: 'review-meta' },
      'Registered ', fmtAgo(c.created_at) || '—',
      c.claimed_software_id ? [' · says it is ', h('code', null, c.claimed_software_id)] : null,
      c.client_uri ? [' · ', h('code', { class: 'break' }, c.client_uri)] : null),
    h('p', { class: 'review-meta', 'data-review-grants': c.client_id },
      'Grant types ', (c.grant_types || []).length ? (c.grant_types || []).map((g, i) => [i ? ', ' : '', h('code', null, g)]) : '—',
      ' · token endpoint authentication ', h('code', null, c.token_endpoint_auth_method || '—')),
    c.acts_for_no_person
      ? h('p', { class: 'review-warning', 'data-acts-for-no-person': c.client_id },
        'It would get tokens for no person: it registered the client_credentials grant, so once approved it acts on its own, with its secret, as a machine of the provider\'s tier — not on anyone\'s behalf. Anybody can register such a client under any name.')
      : null,
    (c.redirect_uris || []).length
      ? h('p', { class: 'review-meta' }, 'Returns to ', (c.redirect_uris || []).map((u, i) => [i ? ', ' : '', h('code', { class: 'break' }, u)]))
      : null,
    h('div', { class: 'review-actions' },
      h('label', { for: selectId, class: 'review-as' }, `Approve ${name} as`), select,
      machine ? h('label', { for: machineId, class: 'review-machine' }, machine, ' it is a machine: approve tokens acting for no person') : null,
      approve, reject));
}
