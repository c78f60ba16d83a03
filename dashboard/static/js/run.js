// Rendering a scenario run (the NDJSON stream of POST
// /ui/api/scenarios/{id}/run): the token line, one row per step, the end.
import { h, statusBadge, tierBadge, fmtSeconds, fmtMs, short } from './dom.js';
import { streamNDJSON } from './api.js';

export function runScenario(id, body, onEvent, signal) {
  return streamNDJSON(`/ui/api/scenarios/${encodeURIComponent(id)}/run`, body, onEvent, signal);
}

export function tokenLine(ev) {
  const who = ev.user
    ? ['acting for ', h('strong', null, ev.user)]
    : ['acting as itself'];
  const scopes = ev.scopes || [];
  const line = h('div', { class: 'token-line' },
    h('span', { class: 'token-tag' }, 'Token'),
    h('div', { class: 'token-main' },
      h('p', { class: 'token-text' },
        'Token issued to ', h('strong', null, ev.agent || ev.client_id || 'the agent'), ' ', ...who,
        ' · tier ', tierBadge(ev.tier),
        ev.expires_in ? [' · expires in ', h('strong', null, fmtSeconds(ev.expires_in))] : null,
        ev.single_use ? [' · ', h('span', { class: 'chip chip-warn' }, 'single use')] : null),
      scopes.length
        ? h('details', { class: 'scopes' },
          h('summary', null, `${scopes.length} scope${scopes.length === 1 ? '' : 's'} granted`),
          h('ul', { class: 'chips' }, scopes.map((s) => h('li', null, h('code', { class: 'chip chip-code' }, s)))))
        : h('p', { class: 'hint' }, 'No scope granted.')));
  return line;
}

function decisionWord(ev) {
  if (ev.kind === 'policy') return ev.decision === 'error' ? 'failed' : 'policy change';
  if (ev.kind === 'approve') return ev.decision === 'allow' ? 'decided' : ev.decision === 'deny' ? 'refused' : 'failed';
  if (ev.decision === 'hold') return 'held';
  if (ev.decision === 'allow') return 'allowed';
  if (ev.decision === 'deny') return ev.status === 401 ? 'token refused' : 'denied';
  return 'error';
}

// approvalLink links the approval page a held call waits on (the link
// the gateway handed the agent), or '' when the step names none.
function approvalLink(ev, text) {
  if (!ev.approval_url || !/^https?:\/\//.test(ev.approval_url)) return '';
  return h('a', { href: ev.approval_url, 'data-approval-link': ev.approval_id || '' }, text);
}

// stepRow renders one step; attr names the attribute that carries the
// step's index (data-result-index or data-step-result). A step made by a
// person rather than the agent (a policy change, an approver's decision)
// shows what it was instead of an HTTP status.
export function stepRow(ev, attr) {
  const isPolicy = ev.kind === 'policy';
  const isApprove = ev.kind === 'approve';
  const byPerson = isPolicy || isApprove;
  const kind = byPerson ? (ev.decision === 'error' || ev.decision === 'deny' ? 'error' : 'policy') : (ev.decision || 'error');
  const li = h('li', {
    class: ['result', `result-${kind}`], [attr]: String(ev.index),
    'data-step-kind': ev.kind || 'call', 'data-step-decision': ev.decision || 'error',
  });

  const statusCol = h('div', { class: 'result-status' });
  if (byPerson) {
    statusCol.append(h('span', { class: ['badge-policy', kind === 'error' && 'is-error'] }, isApprove ? 'person' : 'policy'));
  } else {
    statusCol.append(statusBadge(ev.status, { big: true, decision: ev.decision }));
  }
  statusCol.append(h('span', { class: 'decision-word' }, decisionWord(ev)));

  const main = h('div', { class: 'result-main' },
    h('p', { class: 'result-title' }, h('span', { class: 'result-n' }, `${ev.index + 1}.`), ' ', ev.title || ev.tool || 'step'));
  if (ev.tool) {
    main.append(h('p', { class: 'result-call' },
      h('code', { class: 'tool' }, ev.tool),
      ev.args_gist ? h('span', { class: 'args' }, ev.args_gist) : h('span', { class: 'args muted' }, 'no arguments'),
      ev.kind === 'repeat' ? h('span', { class: 'chip' }, 'same call, same token') : null));
  }
  if (isPolicy) {
    if (ev.decision === 'error') main.append(h('p', { class: 'reason' }, ev.reason || 'the policy change failed'));
    else main.append(h('p', { class: 'reason reason-policy' }, ev.summary || 'the policy data changed'));
  } else if (isApprove) {
    main.append(h('p', { class: ['reason', ev.decision === 'allow' && 'reason-policy'] },
      ev.decision === 'allow' ? ev.summary || 'decided' : ev.reason || 'the decision failed'));
    const link = approvalLink(ev, 'the approval page');
    if (link) main.append(h('p', { class: 'summary' }, h('span', { class: 'summary-label' }, 'In the dashboard: '), link));
  } else if (ev.decision === 'hold') {
    main.append(h('p', { class: 'reason reason-policy' }, ev.reason || 'held until a person approves it'));
    const link = approvalLink(ev, 'Open the approval page');
    if (link) main.append(h('p', { class: 'summary' }, h('span', { class: 'summary-label' }, 'The agent was handed the page to ask a person: '), link));
  } else if (ev.decision === 'allow') {
    main.append(h('p', { class: 'reason reason-allow' }, 'Allowed by policy: the call reached the backend.'));
    if (ev.summary) main.append(h('p', { class: 'summary' }, h('span', { class: 'summary-label' }, 'Result: '), ev.summary));
  } else {
    main.append(h('p', { class: 'reason' }, ev.reason || (ev.decision === 'deny' ? 'denied' : 'the call failed')));
  }

  const meta = h('div', { class: 'result-meta' });
  if (ev.took_ms !== undefined && ev.took_ms !== null && !byPerson) meta.append(h('span', { class: 'took', title: 'round trip through the gateway' }, fmtMs(ev.took_ms)));
  if (ev.policy_version) meta.append(h('span', { class: 'ver', title: `policy version ${ev.policy_version}` }, `policy ${short(ev.policy_version)}`));
  li.append(statusCol, main, meta);
  return li;
}

export function doneLine(ev) {
  const p = h('p', { class: 'done-line' },
    h('span', { class: 'done-count ok' }, `${ev.allowed || 0} allowed`), ' · ',
    h('span', { class: 'done-count deny' }, `${ev.denied || 0} refused`),
    ev.held ? [' · ', h('span', { class: 'done-count' }, `${ev.held} held for an approval`)] : null);
  if (ev.restored_policy_version) {
    p.append(' · the scenario\'s policy change was undone: version ', h('code', null, short(ev.restored_policy_version)), ' is live again');
  }
  if (ev.error) p.append(h('span', { class: 'done-error' }, ` · ${ev.error}`));
  return p;
}

// reportText renders a finished run as plain text, to paste in a review.
export function reportText({ title, token, steps, done, policyVersion }) {
  const lines = [title, `Date: ${new Date().toISOString()}`];
  if (token) {
    lines.push(`Agent: ${token.agent || token.client_id} (client_id ${token.client_id || '?'}), tier ${token.tier || '?'}, ${token.user ? 'acting for ' + token.user : 'acting as itself'}`);
    lines.push(`Token: ${token.expires_in ? 'expires in ' + fmtSeconds(token.expires_in) : 'no expiry reported'}${token.single_use ? ', single use' : ''}; scopes: ${(token.scopes || []).join(' ') || 'none'}`);
  }
  for (const s of steps) {
    if (s.kind === 'policy') {
      lines.push(`${s.index + 1}. [policy] ${s.title}: ${s.summary || s.reason || ''}`);
    } else if (s.kind === 'approve') {
      lines.push(`${s.index + 1}. [approval] ${s.title}: ${s.summary || s.reason || ''}`);
    } else {
      lines.push(`${s.index + 1}. ${s.tool}(${s.args_gist || ''}) -> HTTP ${s.status || 'error'} ${s.decision}${s.reason ? ': ' + s.reason : ''}${s.request_id ? ' [request ' + s.request_id + ']' : ''}`);
    }
  }
  if (done) lines.push(`Result: ${done.allowed || 0} allowed, ${done.denied || 0} refused${done.held ? `, ${done.held} held for an approval` : ''}.`);
  if (policyVersion) lines.push(`Policy version: ${policyVersion}`);
  return lines.join('\n');
}
