// PBAC Gateway dashboard: sign-in, the header, hash routing between the
// views. Plain ES modules, no build step, nothing loaded from elsewhere.
import { h, $, $$, replace, chip } from './js/dom.js';
import { api, setCsrf, onUnauthorized, settled } from './js/api.js';
import { showError, clearError, reportError, setMessage } from './js/notify.js';
import * as store from './js/state.js';
import { state } from './js/state.js';
import { startFeed, stopFeed } from './js/feed.js';
import * as start from './js/views/start.js';
import * as demo from './js/views/demo.js';
import * as audit from './js/views/audit.js';
import * as matrix from './js/views/matrix.js';
import * as policy from './js/views/policy.js';
import * as latency from './js/views/latency.js';
import * as tools from './js/views/tools.js';
import * as approvals from './js/views/approvals.js';

const VIEWS = { start, demo, audit, matrix, policy, tools, approvals, latency };
const TITLES = {
  start: 'Start here', demo: 'Narrative demo', audit: 'Audit trail', matrix: 'Trust-tier matrix',
  policy: 'Policy', tools: 'Tools', approvals: 'Approvals', latency: 'Latency', signin: 'Sign in',
};
// A place on the page a sign-in comes back to (the approval link's): a
// view, optionally one approval, optionally marked as opened from the
// link. The server accepts the same, nothing else.
const RESUME = /^(\?via=link)?#[a-z]{1,32}(\/apr_[a-z2-7]{26})?$/;
// A hint that this browser has a session, so that a signed-out visit does
// not ask the server (and log a 401) for nothing. The session itself is an
// HttpOnly cookie the page never sees.
const SESSION_HINT = 'pbac.dashboard.session';
// How long signing out waits for the page's requests in flight.
const SIGN_OUT_SETTLE_MS = 2000;

let current = null;

function hint(on) {
  try {
    if (on) localStorage.setItem(SESSION_HINT, '1');
    else localStorage.removeItem(SESSION_HINT);
  } catch {
    // no storage: every visit starts signed out
  }
}

function hasHint() {
  try {
    return localStorage.getItem(SESSION_HINT) === '1';
  } catch {
    return false;
  }
}

// --- routing ---

// viewRoute is the view the hash names and what follows it
// (#approvals/<id>: that approval).
function viewRoute() {
  const [name, arg] = location.hash.replace(/^#/, '').split('/', 2);
  return VIEWS[name] ? { name, arg: arg || '' } : { name: 'start', arg: '' };
}

function show(name, { focus = false, arg = '' } = {}) {
  if (current && current !== name && VIEWS[current] && VIEWS[current].onHide) VIEWS[current].onHide();
  for (const sec of $$('main > .view')) sec.hidden = sec.id !== `view-${name}`;
  for (const a of $$('#nav a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[name] || name} · PBAC Gateway`;
  current = name;
  if (VIEWS[name] && VIEWS[name].onShow) {
    Promise.resolve(VIEWS[name].onShow(arg)).catch((e) => reportError(e));
  }
  if (focus) {
    const heading = $(`#view-${name} h1`);
    if (heading) heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
}

function route(focus) {
  if (!state.session) {
    show('signin');
    return;
  }
  const { name, arg } = viewRoute();
  show(name, { focus, arg });
}

// --- header ---

function renderHeader() {
  const s = state.session;
  $('#whoami').hidden = !s;
  $('#nav').hidden = !s;
  if (!s) return;
  if (s.user) {
    $('#whoami-name').textContent = s.user.name || s.user.sub;
    replace($('#whoami-roles'),
      (s.user.roles || []).map((r) => chip(r, 'chip-role', `role ${r}`)),
      s.operator ? chip('operator', 'chip-op', 'may change policy and agents') : null);
  } else {
    $('#whoami-name').textContent = 'operator';
    replace($('#whoami-roles'), chip('admin token', 'chip-op', 'signed in with the admin token, without a user'));
  }
}

// --- sign-in ---

function renderSignin() {
  const cfg = state.config || {};
  const list = $('#signin-users');
  const usersList = cfg.users || [];
  const userForm = cfg.sign_in_users !== false;
  $('#signin-demo').hidden = !(cfg.demo && usersList.length);
  $('#signin-demo-password').textContent = cfg.demo_password || '';
  replace(list, usersList.map((u) => h('li', null,
    h('button', {
      type: 'button',
      class: 'user-pick-btn',
      on: {
        click: () => {
          $('#signin-username').value = u.sub;
          if (cfg.demo_password) $('#signin-password').value = cfg.demo_password;
          $('#signin-submit').focus();
        },
      },
    },
    h('span', { class: 'user-pick-sub' }, u.sub),
    h('span', { class: 'user-pick-name' }, `${u.name || u.sub}${u.roles && u.roles.length ? ' · ' + u.roles.join(', ') : ''}`)))));
  if (cfg.sso_label) {
    $('#signin-sso-label').textContent = cfg.sso_label;
    $('#signin-sso').hidden = false;
  }
  if (!userForm) {
    $('#signin-form').hidden = true;
    $('#signin-token-form').hidden = false;
    $('#signin-toggle').hidden = true;
  }
}

function toggleSignin() {
  const tokenMode = $('#signin-token-form').hidden;
  $('#signin-form').hidden = tokenMode;
  $('#signin-token-form').hidden = !tokenMode;
  $('#signin-demo').hidden = tokenMode || !(state.config && state.config.demo && (state.config.users || []).length);
  $('#signin-toggle').textContent = tokenMode ? 'Sign in with a username and password instead' : 'Sign in with the admin token instead';
  setMessage($('#signin-message'), '');
  (tokenMode ? $('#signin-token') : $('#signin-username')).focus();
}

async function signIn(body, button) {
  const msg = $('#signin-message');
  setMessage(msg, '');
  button.disabled = true;
  try {
    // A sign-in form token from the server, for this one attempt.
    const form = await api('GET', '/ui/api/session/form');
    setCsrf(form.csrf);
    const s = await api('POST', '/ui/api/session', body, { quiet401: true });
    $('#signin-password').value = '';
    $('#signin-token').value = '';
    await signedIn(s);
  } catch (e) {
    setCsrf('');
    setMessage(msg, e.status === 401 || e.status === 429 ? `${e.message}.` : `Could not sign in: ${e.message}`, 'error');
  } finally {
    button.disabled = false;
  }
}

async function signedIn(s) {
  state.session = s;
  setCsrf(s.csrf);
  hint(true);
  clearError();
  renderHeader();
  startFeed();
  approvals.sessionStarted();
  route(false);
  // Shared data the views use; each view also refreshes what it shows.
  store.loadAgents();
  store.loadPolicy().catch((e) => reportError(e, 'Load the policy'));
}

// quiesce stops what the page asks by itself: the view's timers, every
// view's pollers and the live feed.
function quiesce() {
  if (current && VIEWS[current] && VIEWS[current].onHide) VIEWS[current].onHide();
  stopFeed();
  for (const v of Object.values(VIEWS)) if (v.reset) v.reset();
}

function signedOut(message) {
  const wasSignedIn = !!state.session;
  quiesce();
  store.reset();
  setCsrf('');
  hint(false);
  renderHeader();
  current = null;
  route(false);
  if (message) setMessage($('#signin-message'), message, 'error');
  if (wasSignedIn) {
    const u = $('#signin-username');
    if (u && !$('#signin-form').hidden) u.focus();
  }
}

async function signOut() {
  // Nothing new is asked, and what was asked is answered, before the
  // session ends: a poll the server reads after it would be refused.
  quiesce();
  await settled(SIGN_OUT_SETTLE_MS);
  try {
    await api('DELETE', '/ui/api/session', undefined, { quiet401: true });
  } catch (e) {
    if (e.status !== 401) reportError(e, 'Sign out');
  }
  signedOut();
}

// --- boot ---

function wire() {
  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const username = $('#signin-username').value.trim();
    const password = $('#signin-password').value;
    if (!username || !password) {
      setMessage($('#signin-message'), 'Give a username and a password.', 'error');
      return;
    }
    signIn({ username, password }, $('#signin-submit'));
  });
  $('#signin-token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#signin-token').value.trim();
    if (!token) {
      setMessage($('#signin-message'), 'Give the admin token.', 'error');
      return;
    }
    signIn({ admin_token: token }, $('#signin-token-submit'));
  });
  $('#signin-toggle').addEventListener('click', toggleSignin);
  // Single sign-on leaves the page: tell it where to come back to.
  $('#signin-sso').addEventListener('click', () => {
    const back = (location.search === '?via=link' ? location.search : '') + location.hash;
    $('#signin-sso').href = '/ui/api/session/sso' + (RESUME.test(back) ? `?return=${encodeURIComponent(back)}` : '');
  });
  $('#signout').addEventListener('click', signOut);
  $('#skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const heading = $('main > .view:not([hidden]) h1');
    (heading || $('#main')).focus();
  });
  window.addEventListener('hashchange', () => route(true));
  onUnauthorized((message) => {
    if (state.session) signedOut(`You are signed out: ${message}`);
  });
  for (const v of Object.values(VIEWS)) if (v.init) v.init();
}

async function boot() {
  wire();
  try {
    state.config = await api('GET', '/ui/api/config');
  } catch (e) {
    showError(`The dashboard could not read the gateway's configuration: ${e.message}`);
    state.config = {};
  }
  renderSignin();
  if (hasHint()) {
    try {
      const s = await api('GET', '/ui/api/session', undefined, { quiet401: true });
      await signedIn(s);
      return;
    } catch (e) {
      hint(false);
      if (e.status !== 401) reportError(e, 'Check the session');
    }
  }
  renderHeader();
  route(false);
}

boot().catch((e) => showError(String(e && e.message ? e.message : e)));

