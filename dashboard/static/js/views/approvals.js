// #approvals: the calls policy holds until a person approves them
// (issue 20). Pending ones first — the agent, the person it acts for, the
// tool, its arguments (when this session may see them), the policy's
// reason, who may approve, the time left — with approve and deny and a
// comment; then the decided and closed ones: who decided, how, what they
// said, what became of the approval. #approvals/<id> puts one first and
// opens it; the approval link the gateway hands the client lands here
// (/ui/?via=link#approvals/<id>), and a decision on that approval is
// recorded as made by the link. The list follows the audit stream's
// approval records and, since a person's stream carries only their own
// calls, is also read again every 20 seconds while signed in.
import { h, $, replace, chip, tierBadge, fmtTime, fmtAgo } from '../dom.js';
import { api } from '../api.js';
import { setMessage, toast } from '../notify.js';
import { state, currentUser, agentById } from '../state.js';
import { subscribe } from '../feed.js';
import { showStory } from './audit.js';

const POLL_MS = 20000;
const ID_PATTERN = /^apr_[a-z2-7]{26}$/;

// The approval the link opened this page on, if it was opened so.
const LINKED = (() => {
  try {
    if (new URLSearchParams(location.search).get('via') !== 'link') return '';
    const m = location.hash.match(/^#approvals\/(apr_[a-z2-7]{26})$/);
    return m ? m[1] : '';
  } catch {
    return '';
  }
})();

const STATUS_CHIP = {
  pending: ['chip-warn', 'waiting for an approver'],
  granted: ['chip-ok', 'approved: the agent’s retry of this very call may use it, once'],
  denied: ['chip-quiet', 'an approver refused the call'],
  used: ['chip-ok', 'approved, and the retried call went through'],
  expired: ['chip-quiet', 'nobody decided (or the call was not retried) in time'],
  void: ['chip-quiet', 'the policy changed, and the call was decided again'],
  withdrawn: ['chip-quiet', 'the person declined or cancelled it in their client'],
};

let items = [];
let focusId = '';
let focusError = ''; // why the approval the page was opened on cannot be shown
let visible = false;
let loadSeq = 0;
let ticker = null;
let poller = null;
let soon = null;
let busy = false;

function offered() {
  return !!(state.config && state.config.approvals && state.session);
}

export function init() {
  $('#approvals-refresh').addEventListener('click', () => load());
  subscribe((r) => {
    if (!offered()) return;
    if (r.event === 'approval' || r.decision === 'hold') {
      clearTimeout(soon);
      soon = setTimeout(() => load(), 250);
    }
  });
}

// sessionStarted shows the nav entry and keeps its count of approvals
// waiting for this person.
export function sessionStarted() {
  $('#nav-approvals').hidden = !offered();
  clearInterval(poller);
  if (!offered()) return;
  load();
  poller = setInterval(() => load(), POLL_MS);
}

export async function onShow(arg) {
  visible = true;
  focusId = arg && ID_PATTERN.test(arg) ? arg : '';
  focusError = arg && !focusId ? `${arg} is not an approval id.` : '';
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
  await load();
  if (focusId) {
    const el = $(`#approvals-list [data-approval="${focusId}"], #approvals-closed [data-approval="${focusId}"]`);
    if (el) {
      el.scrollIntoView({ block: 'center' });
      const comment = el.querySelector('textarea');
      if (comment) comment.focus({ preventScroll: true });
    }
  }
}

export function onHide() {
  visible = false;
  clearInterval(ticker);
  ticker = null;
}

export function reset() {
  loadSeq++;
  clearInterval(poller);
  clearInterval(ticker);
  clearTimeout(soon);
  poller = ticker = null;
  items = [];
  focusId = focusError = '';
  busy = false;
  $('#nav-approvals').hidden = true;
  badge(0);
  replace($('#approvals-list'));
  replace($('#approvals-closed'));
  setMessage($('#approvals-message'), '');
}

// load reads the approvals this session may see (and the focused one,
// if the list does not hold it) and shows them.
export async function load() {
  if (!offered()) return;
  const seq = ++loadSeq;
  const want = focusId;
  try {
    const r = await api('GET', '/ui/api/approvals');
    let list = (r && r.approvals) || [];
    if (want && !list.some((a) => a.id === want)) {
      try {
        list = [await api('GET', `/ui/api/approvals/${want}`), ...list];
      } catch (e) {
        if (e.status === 401 || seq !== loadSeq) return;
        focusError = `The approval ${want} cannot be shown: ${e.message}.`;
        if (focusId === want) focusId = '';
      }
    }
    if (seq !== loadSeq) return;
    items = list;
    render();
  } catch (e) {
    if (e.status === 401 || seq !== loadSeq) return;
    setMessage($('#approvals-message'), `The approvals could not be listed: ${e.message}`, 'error');
  }
}

function badge(n) {
  const b = $('#approvals-badge');
  b.textContent = n ? String(n) : '';
  b.hidden = !n;
  b.title = n ? `${n} approval${n === 1 ? '' : 's'} waiting for ${currentUser() ? 'you' : 'a decision'}` : '';
}

function render() {
  const mine = (a) => a.can_decide || !currentUser();
  const pending = items.filter((a) => a.status === 'pending').sort((a, b) =>
    (b.id === focusId) - (a.id === focusId) || mine(b) - mine(a) || Date.parse(a.expires_at) - Date.parse(b.expires_at));
  const closed = items.filter((a) => a.status !== 'pending').sort((a, b) =>
    (b.id === focusId) - (a.id === focusId) || Date.parse(b.decided_at || b.closed_at || b.created_at) - Date.parse(a.decided_at || a.closed_at || a.created_at));
  const waiting = pending.filter(mine).length;
  badge(waiting);
  if (focusError) {
    setMessage($('#approvals-message'), focusError, 'error');
  } else {
    setMessage($('#approvals-message'), !pending.length
      ? 'No call is waiting for an approval.'
      : currentUser()
        ? `${waiting} of ${pending.length} waiting call${pending.length === 1 ? '' : 's'} you may decide.`
        : `${pending.length} call${pending.length === 1 ? '' : 's'} waiting. Sign in as a person to decide: the admin token is nobody an approver rule names.`);
  }
  if (busy) return; // a decision under way re-renders when it ends
  replace($('#approvals-list'), pending.map(item));
  replace($('#approvals-closed'), closed.map(item));
  $('#approvals-closed-empty').hidden = closed.length > 0;
  tick();
}

// tick updates every countdown.
function tick() {
  for (const el of document.querySelectorAll('#view-approvals [data-expires]')) {
    el.textContent = left(el.getAttribute('data-expires'));
  }
}

function left(ts) {
  const ms = Date.parse(ts) - Date.now();
  if (Number.isNaN(ms)) return '—';
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh} h ${mm} min left` : `${mm}:${ss} left`;
}

// reveal makes invisible and direction-changing characters visible: the
// arguments are the agent's, hostile until read.
function reveal(text) {
  return String(text ?? '').replace(/[\p{Cf}\p{Co}]/gu, (c) => `⟦U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟧`);
}

function argsBlock(a) {
  if (a.args !== undefined && a.args !== null) {
    return h('details', { class: 'tool-details', open: a.status === 'pending' },
      h('summary', null, 'Arguments'),
      h('pre', { class: 'snippet tool-def-json', 'data-approval-args': '', tabindex: '0' }, h('code', null, reveal(JSON.stringify(a.args, null, 2)))));
  }
  if (a.args_hidden) {
    return h('p', { class: 'hint', 'data-approval-args-hidden': '' }, 'The arguments show to the person the agent acts for, to those who may decide this call and to operators.');
  }
  if (a.status === 'pending' && a.args_digest) {
    return h('p', { class: 'hint' }, 'The arguments were too long to keep; their SHA-256 is ', h('code', { class: 'break' }, a.args_digest), '.');
  }
  return null;
}

function who(sub) {
  if (!sub) return h('span', { class: 'muted' }, 'itself (no person)');
  const me = currentUser();
  return [h('strong', null, reveal(sub)), me && me.sub && me.sub.trim().toLowerCase() === sub.trim().toLowerCase() ? ' (you)' : ''];
}

function item(a) {
  const [cls, title] = STATUS_CHIP[a.status] || ['chip-quiet', ''];
  const agent = agentById(a.client_id);
  const approvers = (a.approvers && a.approvers.groups) || [];
  const not = (a.approvers && a.approvers.not) || [];
  const error = h('div', { class: 'tool-error', 'data-approval-error': a.id, role: 'alert' });
  return h('li', {
    class: ['review-item', 'approval-item', a.id === focusId && 'is-focused'],
    'data-approval': a.id, 'data-approval-status': a.status,
  },
  h('p', { class: 'review-name' },
    h('code', { class: 'tool break' }, reveal(a.tool)), ' ', chip(a.status, cls, title),
    a.status === 'pending' ? [' ', h('span', { class: 'countdown', 'data-expires': a.expires_at, title: `expires ${fmtTime(a.expires_at)}` }, left(a.expires_at))] : null),
  h('p', { class: 'review-meta' },
    'Agent ', h('strong', null, reveal((agent && agent.client_name) || a.client_id)),
    agent ? [' ', h('code', { class: 'break', title: 'client_id' }, reveal(a.client_id))] : null,
    a.agent_provider ? [' · ', reveal(a.agent_provider)] : null,
    a.tier ? [' ', tierBadge(a.tier)] : null,
    ' · acting for ', who(a.sub),
    ' · asked ', h('time', { datetime: a.created_at, title: fmtTime(a.created_at) }, fmtAgo(a.created_at) || fmtTime(a.created_at))),
  h('p', { class: 'approval-reason', 'data-approval-reason': '' },
    h('span', { class: 'muted' }, 'Policy: '), reveal(a.reason || '—'),
    a.rule ? [' ', h('code', { class: 'chip chip-code', title: 'the approval rule' }, reveal(a.rule))] : null),
  h('p', { class: 'review-meta' },
    'Approvers: ', approvers.length ? approvers.map((g, i) => [i ? ' ' : '', chip(g, 'chip-role', `someone with the role or group ${g}`)]) : '—',
    not.length ? [' · not ', not.map((n) => reveal(n)).join(', '), ' (separation of duties)'] : null),
  argsBlock(a),
  a.status === 'pending' ? decision(a, error) : outcome(a),
  error);
}

function outcome(a) {
  const by = a.approver && a.approver.sub;
  return h('div', { class: 'approval-outcome' },
    by ? h('p', { class: 'review-meta', 'data-approval-decided': '' },
      a.status === 'denied' ? 'Denied' : 'Approved', ' by ', who(by),
      a.via ? [' via ', h('strong', null, a.via)] : null,
      a.decided_at ? [' · ', h('time', { datetime: a.decided_at, title: fmtTime(a.decided_at) }, fmtAgo(a.decided_at) || fmtTime(a.decided_at))] : null) : null,
    a.comment ? h('blockquote', { class: 'approval-comment', 'data-approval-comment-text': '' }, reveal(a.comment)) : null,
    a.why ? h('p', { class: 'review-meta' }, reveal(a.why)) : null,
    h('p', { class: 'review-meta' },
      h('a', { href: '#audit', 'data-approval-story': a.id, on: { click: (e) => { e.preventDefault(); showStory(a.id); } } }, 'Its story in the audit trail')));
}

function decision(a, error) {
  if (!a.can_decide) {
    return h('div', null,
      h('p', { class: 'hint', 'data-approval-why': '' }, a.why_not ? `You may not decide it: ${a.why_not}.` : 'You may not decide it.'),
      h('p', { class: 'review-meta' },
        h('a', { href: '#audit', 'data-approval-story': a.id, on: { click: (e) => { e.preventDefault(); showStory(a.id); } } }, 'Its story in the audit trail')));
  }
  const commentId = `approval-comment-${a.id}`;
  const comment = h('textarea', { id: commentId, rows: '2', maxlength: '1024', 'data-approval-comment': a.id, placeholder: 'why (kept in the audit trail)' });
  const buttons = [];
  const button = (text, approve) => {
    const b = h('button', {
      type: 'button',
      class: ['btn', 'btn-small', approve ? 'btn-primary' : 'btn-quiet btn-danger-text'],
      [approve ? 'data-approve' : 'data-deny']: a.id,
    }, text);
    b.addEventListener('click', () => decide(a, approve, comment, buttons, error));
    buttons.push(b);
    return b;
  };
  return h('div', { class: 'approval-decide' },
    h('div', { class: 'field' }, h('label', { for: commentId }, 'Comment'), comment),
    h('div', { class: 'review-actions' }, button('Approve', true), button('Deny', false)),
    a.id === LINKED ? h('p', { class: 'hint' }, 'Opened from the approval link: your decision is recorded as made by the link.') : null);
}

async function decide(a, approve, comment, buttons, errorBox) {
  busy = true;
  for (const b of buttons) b.disabled = true;
  comment.disabled = true;
  replace(errorBox);
  try {
    const r = await api('POST', `/ui/api/approvals/${a.id}/${approve ? 'approve' : 'deny'}`,
      { comment: comment.value.trim(), via: a.id === LINKED ? 'link' : 'dashboard' });
    const agent = agentById(a.client_id);
    toast(`${a.tool} for ${a.sub || (agent && agent.client_name) || a.client_id}: ${approve ? 'approved; the agent’s retry of this call may go through once' : 'denied'}.`, 'ok');
    busy = false;
    if (r && r.id) items = items.map((x) => (x.id === r.id ? r : x));
    render();
    load();
  } catch (e) {
    busy = false;
    if (e.status === 401) return;
    replace(errorBox, h('p', { class: 'inline-message is-error' }, `${approve ? 'Approve' : 'Deny'}: ${e.message}`));
    for (const b of buttons) b.disabled = false;
    comment.disabled = false;
    // Decided meanwhile, expired or gone: show it as it is now, keeping
    // the error beside it.
    if (e.status === 409 || e.status === 410 || e.status === 404) {
      await load();
      const box = $(`[data-approval-error="${a.id}"]`);
      if (box && box !== errorBox) replace(box, h('p', { class: 'inline-message is-error' }, `${approve ? 'Approve' : 'Deny'}: ${e.message}`));
    }
  }
}
