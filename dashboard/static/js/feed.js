// The live audit stream (GET /ui/api/audit/stream, server-sent events),
// shared by the demo's live feed and the audit view's live mode.
import { api } from './api.js';

let source = null;
let retry = null;
const subscribers = new Set();
const statusListeners = new Set();
let status = 'off';

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

export function feedStatus() {
  return status;
}

export function onFeedStatus(fn) {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function startFeed() {
  if (source || typeof EventSource === 'undefined') return;
  setStatus('connecting');
  source = new EventSource('/ui/api/audit/stream');
  source.addEventListener('open', () => setStatus('live'));
  source.addEventListener('audit', (e) => {
    let rec;
    try {
      rec = JSON.parse(e.data);
    } catch {
      return;
    }
    for (const fn of subscribers) fn(rec);
  });
  source.addEventListener('dropped', () => setStatus('lagging'));
  source.addEventListener('error', () => {
    if (!source) return;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the session may have ended): check, then
      // reconnect after a pause.
      source.close();
      source = null;
      setStatus('reconnecting');
      clearTimeout(retry);
      retry = setTimeout(async () => {
        try {
          await api('GET', '/ui/api/session');
          startFeed();
        } catch {
          setStatus('off');
        }
      }, 5000);
    } else {
      setStatus('reconnecting');
    }
  });
}

export function stopFeed() {
  clearTimeout(retry);
  if (source) source.close();
  source = null;
  setStatus('off');
}
