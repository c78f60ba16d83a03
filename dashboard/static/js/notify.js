// Toasts (polite, transient) and the error alert (assertive, stays until
// dismissed or replaced).
import { h, $, clear } from './dom.js';

const TOAST_MS = 9000;

export function toast(message, kind = 'info') {
  const box = $('#toast');
  if (!box) return;
  const item = h('div', { class: ['toast-item', `toast-${kind}`] }, message);
  box.append(item);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => item.remove(), TOAST_MS);
}

export function showError(message) {
  const box = $('#error');
  if (!box) return;
  clear(box);
  if (!message) return;
  box.append(
    h('p', { class: 'alert-text' }, h('strong', null, 'Something went wrong. '), message),
    h('button', {
      type: 'button',
      class: 'btn btn-quiet btn-small',
      on: { click: () => clearError() },
    }, 'Dismiss'),
  );
}

export function clearError() {
  const box = $('#error');
  if (box) clear(box);
}

// reportError shows an API error in the alert region, except a 401 (the
// page goes back to sign-in and says why there).
export function reportError(e, context) {
  if (e && e.name === 'AbortError') return;
  if (e && e.status === 401) return;
  const msg = (e && e.message) || String(e);
  showError(context ? `${context}: ${msg}` : msg);
}

// setMessage fills an inline message element (hidden when empty).
export function setMessage(el, text, kind) {
  if (!el) return;
  el.classList.remove('is-error', 'is-ok', 'is-warn');
  if (!text) {
    el.textContent = '';
    el.hidden = true;
    return;
  }
  if (kind) el.classList.add(`is-${kind}`);
  el.textContent = text;
  el.hidden = false;
}
