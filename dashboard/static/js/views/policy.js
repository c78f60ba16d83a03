// #policy: the active version, rollback, history, the shadow policy, the
// data editor and bundle uploads.
import { h, $, $$, replace, short, fmtTime, fmtAgo } from '../dom.js';
import { api } from '../api.js';
import { reportError, setMessage, toast } from '../notify.js';
import { state, on, isOperator, loadPolicy } from '../state.js';

let editorVersion = null; // the version whose data the editor holds
let dirty = false;
let poll = null;
let busy = false;

export function init() {
  on('policy', () => {
    if (!$('#view-policy').hidden) render();
  });
  $('#policy-rollback').addEventListener('click', rollback);
  $('#shadow-refresh').addEventListener('click', refresh);
  $('#policy-data').addEventListener('input', () => {
    dirty = true;
    setMessage($('#policy-data-status'), '');
  });
  $('#policy-validate').addEventListener('click', () => {
    const r = parseEditor();
    if (r.ok) setMessage($('#policy-data-status'), `Valid JSON: an object with ${Object.keys(r.data).length} top-level keys (${Object.keys(r.data).join(', ')}). The server validates the policy itself when you activate it.`, 'ok');
  });
  $('#policy-activate').addEventListener('click', () => putData(false));
  $('#policy-shadow').addEventListener('click', () => putData(true));
  $('#policy-reset').addEventListener('click', () => {
    dirty = false;
    editorVersion = null;
    fillEditor();
    setMessage($('#policy-data-status'), 'The editor holds the active data again.', 'ok');
  });
  $('#bundle-form').addEventListener('submit', upload);
}

export async function onShow() {
  await refresh();
  clearInterval(poll);
  poll = setInterval(() => {
    if (document.hidden || busy) return;
    if (state.policy && state.policy.shadow) refresh();
  }, 5000);
}

export function onHide() {
  clearInterval(poll);
  poll = null;
}

export function reset() {
  onHide();
  editorVersion = null;
  dirty = false;
  $('#policy-data').value = '';
}

async function refresh() {
  try {
    await loadPolicy(); // emits 'policy', which renders
  } catch (e) {
    reportError(e, 'Load the policy');
  }
}

function render() {
  const p = state.policy;
  if (!p) {
    if (state.policyError) setMessage($('#policy-operator-note'), state.policyError, 'warn');
    return;
  }
  const op = isOperator();
  setMessage($('#policy-operator-note'), op ? '' : 'You may look at the policy; changing it (activate, shadow, roll back, upload) needs an operator: sign in with the admin token.', 'warn');
  renderActive(p);
  renderShadow(p.shadow);
  renderEvents(p.events || []);
  fillEditor();
  for (const el of $$('#policy-activate, #policy-shadow, #policy-upload, #bundle-shadow, #bundle-submit')) el.disabled = !op || busy;
}

function renderActive(p) {
  const a = p.active;
  const code = $('#policy-version');
  if (!a) {
    code.textContent = 'none';
    replace($('#policy-facts'), h('dt', null, 'State'), h('dd', null, 'No policy is active: every call is denied.'));
  } else {
    code.textContent = short(a.version);
    code.title = a.version;
    replace($('#policy-facts'),
      h('dt', null, 'Full version'), h('dd', null, h('code', { class: 'break' }, a.version)),
      h('dt', null, 'Source'), h('dd', null, a.source || '—'),
      h('dt', null, 'Activated'), h('dd', null, a.activated_at ? [fmtTime(a.activated_at), h('span', { class: 'muted' }, ` (${fmtAgo(a.activated_at)})`)] : '—'),
      h('dt', null, 'Decision vectors'), h('dd', null, `${a.vectors || 0} passed before it went live`),
      h('dt', null, 'Module'), h('dd', null, h('code', { title: a.module_hash }, short(a.module_hash))),
      h('dt', null, 'Entry points'), h('dd', null, h('ul', { class: 'chips' }, (a.entrypoints || []).map((e) => h('li', null, h('code', { class: 'chip chip-code' }, e))))));
  }
  const btn = $('#policy-rollback');
  const note = $('#policy-rollback-note');
  btn.disabled = !p.can_rollback || !isOperator() || busy;
  if (!isOperator()) note.textContent = 'Rolling back needs an operator.';
  else if (!p.can_rollback) note.textContent = 'Nothing to roll back to: this is the first version since the gateway started.';
  else note.textContent = 'Makes the previous version live again, at once.';
}

function renderShadow(sh) {
  const el = $('#shadow-body');
  if (!sh) {
    replace(el, h('p', { class: 'empty' }, 'No shadow policy. Run a candidate as shadow (from the editor below, a bundle, or the trust-tier editor) to see how it would decide live calls, without enforcing it.'));
    return;
  }
  const info = sh.info || {};
  const stop = h('button', { type: 'button', class: 'btn btn-secondary btn-small', disabled: !isOperator() || busy }, 'Stop shadow');
  stop.addEventListener('click', stopShadow);
  const recent = sh.recent || [];
  replace(el,
    h('p', null, 'Version ', h('code', { title: info.version }, short(info.version)), info.source ? h('span', { class: 'muted' }, ` from ${info.source}`) : null),
    h('dl', { class: 'tiles tiles-small' },
      tile('evaluated', sh.evaluated), tile('agreed', sh.agreed, 'ok'), tile('disagreed', sh.disagreed, sh.disagreed ? 'deny' : ''),
      tile('errors', sh.errors, sh.errors ? 'warn' : ''), tile('dropped', sh.dropped)),
    recent.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'data-table compact' },
        h('caption', null, 'Recent disagreements'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Entry point'), h('th', { scope: 'col' }, 'Active'), h('th', { scope: 'col' }, 'Shadow'))),
        h('tbody', null, recent.slice().reverse().slice(0, 20).map((d) => h('tr', null,
          h('td', { class: 'nowrap' }, h('time', { datetime: d.at, title: fmtTime(d.at) }, fmtAgo(d.at))),
          h('td', null, h('code', null, d.entrypoint)),
          h('td', null, allowWord(d.active_allow), reasonsText(d.active_reasons)),
          h('td', null, allowWord(d.shadow_allow), reasonsText(d.shadow_reasons)))))))
      : h('p', { class: 'hint' }, 'No disagreement so far.'),
    h('div', { class: 'actions' }, stop));
}

function tile(label, value, cls) {
  return h('div', { class: ['tile', cls && `tile-${cls}`] }, h('dt', null, label), h('dd', null, String(value ?? 0)));
}

function allowWord(allow) {
  return h('span', { class: ['badge', allow ? 'badge-ok' : 'badge-deny'] }, allow ? 'allow' : 'deny');
}

function reasonsText(r) {
  return r && r.length ? h('span', { class: 'cell-sub' }, r.join('; ')) : null;
}

function renderEvents(events) {
  const body = $('#policy-events tbody');
  replace(body, events.slice().reverse().map((e) => h('tr', null,
    h('td', { class: 'nowrap' }, h('time', { datetime: e.at, title: fmtTime(e.at) }, fmtTime(e.at))),
    h('td', null, h('span', { class: ['badge', eventClass(e.kind)] }, e.kind)),
    h('td', null, e.version ? h('code', { title: e.version }, short(e.version)) : '—'),
    h('td', null, e.source || '—'),
    h('td', null, e.author || '—'),
    h('td', { class: 'reasons' }, e.error || ''))));
}

function eventClass(kind) {
  if (/reject|fail|error/.test(kind)) return 'badge-deny';
  if (/activ|data/.test(kind)) return 'badge-ok';
  if (/roll/.test(kind)) return 'badge-warn';
  return 'badge-quiet';
}

function fillEditor() {
  const p = state.policy;
  if (!p || !p.active) return;
  const ta = $('#policy-data');
  if (dirty) {
    if (editorVersion && editorVersion !== p.active.version) {
      setMessage($('#policy-data-status'), `The active policy changed (now ${short(p.active.version)}) since you started editing: “Reload the active data” to start again from it.`, 'warn');
    }
    return;
  }
  if (editorVersion === p.active.version && ta.value) return;
  ta.value = p.data ? JSON.stringify(p.data, null, 2) : '';
  editorVersion = p.active.version;
}

function parseEditor() {
  const text = $('#policy-data').value;
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    setMessage($('#policy-data-status'), `Not valid JSON: ${e.message}${lineHint(text, e.message)}`, 'error');
    return { ok: false };
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    setMessage($('#policy-data-status'), 'The policy data must be one JSON object.', 'error');
    return { ok: false };
  }
  return { ok: true, data };
}

// lineHint turns "at position N" of a JSON error into a line and column.
function lineHint(text, msg) {
  const m = /position (\d+)/.exec(msg);
  if (!m || /line \d+/.test(msg)) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos).split('\n');
  return ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
}

async function putData(shadow) {
  const r = parseEditor();
  if (!r.ok) return;
  busy = true;
  render();
  const status = $('#policy-data-status');
  try {
    const info = await api('PUT', `/ui/api/policy/data${shadow ? '?shadow=true' : ''}`, r.data);
    dirty = false;
    editorVersion = null;
    if (shadow) {
      setMessage(status, `Shadow version ${short(info.version)} runs beside the active policy: its decisions are compared on live calls, not enforced.`, 'ok');
      toast(`Shadow version ${short(info.version)} is running.`, 'ok');
    } else {
      setMessage(status, `Policy version ${short(info.version)} is live: ${info.vectors || 0} decision vectors passed.`, 'ok');
      toast(`Policy version ${short(info.version)} is live: the next call decides with it.`, 'ok');
    }
  } catch (e) {
    if (e.status === 422) setMessage(status, `Rejected by validation, the active policy stays: ${e.message}`, 'error');
    else if (e.status === 400) setMessage(status, `Not accepted: ${e.message}`, 'error');
    else if (e.status !== 401) setMessage(status, `Failed: ${e.message}`, 'error');
  } finally {
    busy = false;
    await refresh();
  }
}

async function rollback() {
  busy = true;
  $('#policy-rollback').disabled = true;
  try {
    const info = await api('POST', '/ui/api/policy/rollback');
    toast(`Rolled back: policy version ${short(info.version)} is live again.`, 'ok');
  } catch (e) {
    if (e.status === 409) toast(`Nothing to roll back to: ${e.message}`);
    else reportError(e, 'Roll back');
  } finally {
    busy = false;
    await refresh();
  }
}

async function stopShadow() {
  busy = true;
  try {
    const st = await api('DELETE', '/ui/api/policy/shadow');
    toast(`Shadow stopped after ${st ? st.evaluated : 0} decisions: ${st ? st.agreed : 0} agreed, ${st ? st.disagreed : 0} disagreed.`, 'ok');
  } catch (e) {
    if (e.status === 404) toast('There was no shadow policy any more.');
    else reportError(e, 'Stop the shadow policy');
  } finally {
    busy = false;
    await refresh();
  }
}

async function upload(e) {
  e.preventDefault();
  const status = $('#bundle-status');
  const file = $('#policy-upload').files[0];
  if (!file) {
    setMessage(status, 'Choose a bundle file first (.tar.gz, from pbac policy build -o).', 'error');
    return;
  }
  const shadow = $('#bundle-shadow').checked;
  busy = true;
  render();
  setMessage(status, `Uploading ${file.name}…`);
  try {
    const info = await api('POST', `/ui/api/policy/bundles${shadow ? '?shadow=true' : ''}`, file, { contentType: 'application/gzip' });
    setMessage(status, shadow
      ? `Bundle ${file.name} runs as shadow version ${short(info.version)}.`
      : `Bundle ${file.name} is live: policy version ${short(info.version)}, ${info.vectors || 0} decision vectors passed.`, 'ok');
    toast(shadow ? `Shadow version ${short(info.version)} is running.` : `Policy version ${short(info.version)} is live: the next call decides with it.`, 'ok');
    $('#bundle-form').reset();
  } catch (err) {
    if (err.status === 422) setMessage(status, `Rejected by validation, the active policy stays: ${err.message}`, 'error');
    else if (err.status !== 401) setMessage(status, `Not accepted: ${err.message}`, 'error');
  } finally {
    busy = false;
    await refresh();
  }
}

