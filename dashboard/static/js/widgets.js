// Small reusable widgets: copy buttons, tabs.
import { h } from './dom.js';
import { toast } from './notify.js';

// copyText copies text to the clipboard; without clipboard access it
// selects the text of source so that the person can copy it.
export async function copyText(text, source) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  if (source) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try {
      if (document.execCommand('copy')) return true;
    } catch {
      // the selection stays for a manual copy
    }
  }
  return false;
}

// copyButton copies getText() (the text of source by default) and says so
// in the polite live region.
export function copyButton({ label, what, source, getText, attrs = {} }) {
  const btn = h('button', {
    type: 'button',
    class: 'btn btn-quiet btn-small copy-btn',
    'aria-label': `Copy ${what}`,
    ...attrs,
  }, label || 'Copy');
  btn.addEventListener('click', async () => {
    const text = getText ? getText() : source.textContent;
    const ok = await copyText(text, source);
    if (ok) {
      btn.textContent = 'Copied';
      btn.classList.add('is-copied');
      toast(`Copied ${what}.`, 'ok');
      setTimeout(() => {
        btn.textContent = label || 'Copy';
        btn.classList.remove('is-copied');
      }, 2000);
    } else {
      toast(`The text of ${what} is selected: press Ctrl+C (⌘C) to copy it.`);
    }
    btn.dispatchEvent(new CustomEvent('copied', { bubbles: true, detail: { ok } }));
  });
  return btn;
}

let tabsSeq = 0;

// tabs builds a tab list with its panels: [{id, label, panel: Node}].
// Arrow keys, Home and End move between tabs.
export function tabs(items, { label, selected = 0 } = {}) {
  const n = ++tabsSeq;
  const list = h('div', { class: 'tablist', role: 'tablist', 'aria-label': label });
  const wrap = h('div', { class: 'tabs' }, list);
  const buttons = [];
  const panels = [];
  items.forEach((it, i) => {
    const tabId = `tab-${n}-${it.id}`;
    const panelId = `tabpanel-${n}-${it.id}`;
    const b = h('button', {
      type: 'button', role: 'tab', id: tabId, class: 'tab',
      'aria-controls': panelId, 'aria-selected': i === selected ? 'true' : 'false',
      tabindex: i === selected ? '0' : '-1',
    }, it.label);
    const p = h('div', { role: 'tabpanel', id: panelId, class: 'tabpanel', 'aria-labelledby': tabId, tabindex: '0', hidden: i !== selected }, it.panel);
    b.addEventListener('click', () => select(i));
    b.addEventListener('keydown', (e) => {
      let j = null;
      if (e.key === 'ArrowRight' || e.key === 'ArrowDown') j = (i + 1) % items.length;
      else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') j = (i - 1 + items.length) % items.length;
      else if (e.key === 'Home') j = 0;
      else if (e.key === 'End') j = items.length - 1;
      if (j !== null) {
        e.preventDefault();
        select(j);
        buttons[j].focus();
      }
    });
    buttons.push(b);
    panels.push(p);
    list.append(b);
    wrap.append(p);
  });
  function select(i) {
    buttons.forEach((b, k) => {
      b.setAttribute('aria-selected', k === i ? 'true' : 'false');
      b.tabIndex = k === i ? 0 : -1;
      panels[k].hidden = k !== i;
    });
  }
  return wrap;
}
