// The trust-tier matrix as a table: one row per provider, one cell per
// resource, each cell a decision of the active policy with its reasons.
import { h, clear, tierBadge, short } from './dom.js';
import { api } from './api.js';

export function fetchMatrix(user) {
  const q = user ? `?user=${encodeURIComponent(user)}` : '';
  return api('GET', `/ui/api/matrix${q}`);
}

// cellKind: 'rw' when write is allowed, 'read' when something but not
// write is, 'deny' when nothing is.
export function cellKind(cell) {
  const allowed = (cell && cell.allowed) || [];
  if (allowed.length === 0) return 'deny';
  if (allowed.includes('write')) return 'rw';
  return 'read';
}

function cellTitle(resource, cell) {
  const parts = [];
  for (const a of cell.allowed || []) parts.push(`${resource}:${a} allowed`);
  for (const a of cell.denied || []) {
    const why = cell.reasons && cell.reasons[a];
    parts.push(`${resource}:${a} denied${why ? ' (' + why + ')' : ''}`);
  }
  if (cell.note) parts.push(cell.note);
  return parts.join('\n');
}

function cellDetail(resource, cell) {
  const list = h('ul', { class: 'mdet-list' });
  for (const a of cell.allowed || []) {
    list.append(h('li', { class: 'mdet-allow' },
      h('span', { class: 'mdet-icon', 'aria-hidden': 'true' }, '✓'),
      h('span', null, h('code', null, `${resource}:${a}`), ' allowed')));
  }
  for (const a of cell.denied || []) {
    const why = cell.reasons && cell.reasons[a];
    list.append(h('li', { class: 'mdet-deny' },
      h('span', { class: 'mdet-icon', 'aria-hidden': 'true' }, '✗'),
      h('span', null, h('code', null, `${resource}:${a}`), ' denied', why ? h('span', { class: 'mdet-why' }, why) : null)));
  }
  const body = h('div', { class: 'mdet-body' }, list);
  if (cell.note) body.append(h('p', { class: 'mdet-note' }, `† ${cell.note}`));
  return body;
}

function matrixCell(resource, cell) {
  const c = cell || { label: 'denied', allowed: [], denied: [], reasons: {} };
  const kind = cellKind(c);
  const td = h('td', { 'data-resource': resource, class: ['mcell', `mcell-${kind}`], title: cellTitle(resource, c) });
  const det = h('details', { class: 'mdet' },
    h('summary', null,
      h('span', { class: 'mlabel' }, c.label || 'denied'),
      c.note ? h('span', { class: 'mnote-mark', 'aria-hidden': 'true' }, '†') : null));
  // The detail is built when opened, so that the cell's text is its label.
  det.addEventListener('toggle', () => {
    if (det.open && !det.querySelector('.mdet-body')) det.append(cellDetail(resource, c));
  });
  td.append(det);
  return td;
}

// renderMatrix fills table with the matrix m. highlight names a provider
// whose row is marked (the picked agent's).
export function renderMatrix(table, m, { highlight } = {}) {
  clear(table);
  const who = m.user ? `acting for ${m.user}` : 'acting as themselves (machine clients)';
  table.append(h('caption', { class: 'visually-hidden' },
    `Trust-tier matrix, ${who}, policy version ${short(m.policy_version)}`));
  const head = h('tr', null,
    h('th', { scope: 'col' }, 'Agent provider'),
    h('th', { scope: 'col' }, 'Tier'));
  for (const r of m.resources || []) {
    const acc = (m.accesses && m.accesses[r]) || [];
    head.append(h('th', { scope: 'col', class: 'mres' },
      h('span', { class: 'mres-name' }, r),
      acc.length ? h('span', { class: 'mres-acc' }, acc.join(' · ')) : null));
  }
  table.append(h('thead', null, head));
  const body = h('tbody');
  for (const row of m.rows || []) {
    const tr = h('tr', {
      'data-provider': row.provider,
      class: highlight && highlight === row.provider ? 'is-picked' : null,
    },
    h('th', { scope: 'row', class: 'mprov' },
      h('code', null, row.provider),
      h('span', { class: 'magents' }, (row.agents && row.agents.length) ? `agents: ${row.agents.join(', ')}` : 'no agent registered'),
      highlight && highlight === row.provider ? h('span', { class: 'picked-mark' }, 'your agent') : null),
    h('td', { class: 'mtier' }, tierBadge(row.tier)));
    for (const r of m.resources || []) tr.append(matrixCell(r, row.cells && row.cells[r]));
    body.append(tr);
  }
  table.append(body);
}

// providersOf lists the providers of the matrix rows (without the
// unverified row), for the registration form.
export function providersOf(m) {
  return ((m && m.rows) || []).map((r) => r.provider).filter((p) => p && !p.startsWith('('));
}
