// #tools: the review of the tools backends serve (issue 19: the tool
// catalogue with review, pinned definitions). A new tool is catalogued
// (as resource:access, pinned to the definition seen) or dismissed; a
// pinned tool whose backend re-describes it is hidden and denied until
// its new definition is approved (re-pinned) or rejected. Operators only;
// every change carries the CSRF header (api.js). A definition is what a
// backend sent, hostile until read: it is shown as text only, with its
// hidden characters made visible.
import { h, $, replace, chip, short, fmtTime, fmtAgo } from '../dom.js';
import { api } from '../api.js';
import { setMessage, toast } from '../notify.js';
import { state, isOperator, loadPolicy } from '../state.js';

// The order of the list: what needs a decision first.
const ORDER = ['uncatalogued', 'changed', 'rejected', 'catalogued', 'dismissed', 'pinned'];
const STATUS_CHIP = {
  uncatalogued: ['chip-warn', 'not in the catalogue: denied to every agent until catalogued'],
  changed: ['chip-warn', 'the backend serves another definition than the one pinned: hidden and denied until approved'],
  rejected: ['chip-warn', 'an operator refused this definition: still hidden and denied'],
  catalogued: ['chip-quiet', 'in the catalogue without a pin: any definition passes'],
  dismissed: ['chip-quiet', 'left out of the catalogue by an operator, until its definition changes'],
  pinned: ['chip-kind', 'in the catalogue, serving the definition it pins'],
};

let loadSeq = 0;
let busy = false;

function offered() {
  return !!(state.config && state.config.review_tools && isOperator());
}

export function init() {
  $('#tools-refresh').addEventListener('click', () => loadTools());
}

export async function onShow() {
  await loadTools();
}

export function reset() {
  loadSeq++;
  busy = false;
  replace($('#tools-list'));
  setMessage($('#tools-message'), '');
}

// loadTools fetches the tools and renders them, those needing review
// first.
export async function loadTools() {
  const msg = $('#tools-message');
  if (!offered()) {
    replace($('#tools-list'));
    $('#tools-refresh').disabled = true;
    setMessage(msg, state.config && !state.config.review_tools
      ? 'The tool definitions are not recorded on this listener.'
      : 'Reviewing tools needs an operator: sign in with the admin token, or as a person of an operator group.', 'warn');
    return;
  }
  $('#tools-refresh').disabled = false;
  const seq = ++loadSeq;
  try {
    const r = await api('GET', '/ui/api/tools');
    if (seq !== loadSeq) return;
    render(r.tools || [], r.scopes || {});
  } catch (e) {
    if (e.status === 401 || seq !== loadSeq) return;
    setMessage(msg, `The tools could not be listed: ${e.message}`, 'error');
  }
}

function render(tools, scopes) {
  const sorted = tools.slice().sort((a, b) => rank(a.status) - rank(b.status) || String(a.tool).localeCompare(String(b.tool)));
  const waiting = sorted.filter((t) => t.status === 'uncatalogued' || t.status === 'changed').length;
  setMessage($('#tools-message'), !tools.length
    ? 'No backend has listed a tool yet: the gateway records each definition when an agent lists the tools.'
    : waiting ? `${waiting} of ${tools.length} tools await your review.` : `No tool awaits review (${tools.length} seen).`);
  replace($('#tools-list'), sorted.map((t, i) => toolItem(t, i, scopes)));
}

function rank(status) {
  const i = ORDER.indexOf(status);
  return i < 0 ? ORDER.length : i;
}

// reveal makes invisible and direction-changing characters (Unicode
// format and private-use characters) visible, so that what shows is all
// that is there.
function reveal(text) {
  return String(text ?? '').replace(/[\p{Cf}\p{Co}]/gu, (c) => `⟦U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟧`);
}

function pretty(def) {
  if (def === undefined || def === null) return '';
  return reveal(JSON.stringify(def, null, 2));
}

function definitionBlock(title, def, attr) {
  return h('div', { class: 'tool-def' },
    h('h3', { class: 'h-small' }, title),
    h('pre', { class: 'snippet tool-def-json', [attr]: '', tabindex: '0' }, h('code', null, pretty(def))));
}

function toolItem(t, index, scopes) {
  const [cls, title] = STATUS_CHIP[t.status] || ['chip-quiet', ''];
  const error = h('div', { class: 'tool-error', 'data-tool-error': '', role: 'alert' });
  const buttons = [];
  const button = (text, action, primary, body) => {
    const b = h('button', {
      type: 'button',
      class: ['btn', 'btn-small', primary ? 'btn-primary' : 'btn-quiet', action === 'reject' && 'btn-danger-text'],
      'data-tool-action': action,
    }, text);
    b.addEventListener('click', () => decide(t, action, body ? body() : {}, buttons, error));
    buttons.push(b);
    return b;
  };

  let actions = null;
  let definitions;
  if (t.status === 'uncatalogued' || t.status === 'dismissed') {
    const resourceId = `tool-resource-${index}`;
    const accessId = `tool-access-${index}`;
    const resources = scopes.resources || [];
    const likely = (scopes.backend_resources || {})[t.backend] || '';
    const resource = h('select', { id: resourceId, 'data-tool-resource': '' },
      h('option', { value: '' }, 'Choose a resource…'),
      resources.map((r) => h('option', { value: r, selected: r === likely }, r)));
    const access = h('select', { id: accessId, 'data-tool-access': '' },
      h('option', { value: '' }, 'Choose an access…'),
      (scopes.accesses || []).map((a) => h('option', { value: a }, a)));
    const catalogue = button('Catalogue', 'catalogue', true, () => ({ resource: resource.value, access: access.value }));
    const ready = () => { catalogue.disabled = busy || !resource.value || !access.value; };
    resource.addEventListener('change', ready);
    access.addEventListener('change', ready);
    ready();
    actions = h('div', { class: 'review-actions' },
      h('label', { for: resourceId, class: 'review-as' }, 'Resource'), resource,
      h('label', { for: accessId, class: 'review-as' }, 'Access'), access,
      catalogue,
      t.status === 'uncatalogued' ? button('Dismiss', 'dismiss', false) : null);
    definitions = h('details', { class: 'tool-details' }, h('summary', null, 'Definition'), definitionBlock('Served now', t.definition, 'data-tool-definition'));
  } else if (t.status === 'changed' || t.status === 'rejected') {
    definitions = h('div', { class: 'tool-compare' },
      t.pinned_definition
        ? definitionBlock('Reviewed (pinned)', t.pinned_definition, 'data-tool-pinned')
        : h('div', { class: 'tool-def' }, h('h3', { class: 'h-small' }, 'Reviewed (pinned)'),
          h('p', { class: 'hint' }, 'The reviewed definition is no longer kept; its hash is ', h('code', { class: 'break' }, (t.catalogue && t.catalogue.pin) || '—'), '.')),
      definitionBlock('Served now', t.definition, 'data-tool-definition'));
    actions = h('div', { class: 'review-actions' },
      button('Approve', 'approve', true),
      t.status === 'changed' ? button('Reject', 'reject', false) : null);
  } else {
    if (t.status === 'catalogued') {
      actions = h('div', { class: 'review-actions' }, button('Pin this definition', 'approve', true));
    }
    definitions = h('details', { class: 'tool-details' }, h('summary', null, 'Definition'), definitionBlock('Served now', t.definition, 'data-tool-definition'));
  }

  const cat = t.catalogue;
  return h('li', { class: 'review-item', 'data-tool': t.tool, 'data-tool-status': t.status },
    h('p', { class: 'review-name' },
      h('strong', null, reveal(t.name)), ' ', h('code', { class: 'break' }, reveal(t.tool)), ' ',
      chip(t.status, cls, title)),
    h('p', { class: 'review-meta' },
      'Backend ', h('code', null, reveal(t.backend)),
      ' · first seen ', h('time', { datetime: t.first_seen || '', title: fmtTime(t.first_seen) }, fmtAgo(t.first_seen) || '—'),
      ' · last seen ', h('time', { datetime: t.last_seen || '', title: fmtTime(t.last_seen) }, fmtAgo(t.last_seen) || '—'),
      cat ? [' · catalogued as ', h('code', null, `${reveal(cat.resource)}:${reveal(cat.access)}`)] : null,
      cat && cat.pin ? [' · pinned ', h('code', { title: cat.pin }, short(cat.pin, 19))] : null,
      t.review ? [' · ', t.review.state || '', ' by ', reveal(t.review.by || '—')] : null),
    t.description ? h('p', { class: 'tool-description', 'data-tool-description': '' }, reveal(t.description)) : null,
    (t.flags || []).length
      ? h('ul', { class: 'tool-flags', 'aria-label': `Warnings for ${t.tool}` }, t.flags.map((f) => h('li', { class: 'review-warning', 'data-tool-flag': '' },
        '⚠ ', h('code', null, reveal(f.path)), ': ', reveal(f.what))))
      : null,
    definitions,
    actions,
    error);
}

async function decide(t, action, extra, buttons, errorBox) {
  busy = true;
  for (const b of buttons) b.disabled = true;
  replace(errorBox);
  try {
    const r = await api('POST', `/ui/api/tools/${encodeURIComponent(t.tool)}/${action}`, { hash: t.hash, ...extra });
    const now = r && r.tool ? r.tool.status : '';
    toast(`${t.tool}: ${done(action, extra)}${now ? ` (now ${now})` : ''}.`, 'ok');
    busy = false;
    await loadTools();
    if (action === 'catalogue' || action === 'approve') loadPolicy().catch(() => {});
  } catch (e) {
    busy = false;
    if (e.status === 401) return;
    replace(errorBox,
      h('p', { class: 'inline-message is-error' }, `${verb(action)} ${t.tool}: ${e.message}`),
      (e.problems || []).length
        ? h('ul', { class: 'tool-problems', 'data-tool-problems': '' }, e.problems.map((p) => h('li', null,
          h('code', null, String(p.path || '')), ': ', String(p.message || ''))))
        : null);
    for (const b of buttons) b.disabled = false;
  }
}

function verb(action) {
  return { catalogue: 'Catalogue', dismiss: 'Dismiss', approve: 'Approve', reject: 'Reject' }[action] || action;
}

function done(action, extra) {
  switch (action) {
    case 'catalogue': return `catalogued as ${extra.resource}:${extra.access}, pinned to the definition reviewed`;
    case 'dismiss': return 'dismissed: it stays out of the catalogue';
    case 'approve': return 'the definition reviewed is pinned';
    case 'reject': return 'rejected: it stays hidden and denied';
    default: return action;
  }
}
