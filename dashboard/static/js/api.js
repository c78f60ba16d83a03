// The dashboard's JSON API (dashboard/API.md): same-origin fetches with the
// session cookie, the CSRF header on every change, {error} messages, and
// NDJSON streams read as they arrive.

let csrf = '';
let unauthorized = () => {};
// The requests waiting for their answer's headers (settled waits for them).
const inFlight = new Set();

export function setCsrf(v) {
  csrf = v || '';
}

// settled resolves once no request is waiting for its answer, or after ms:
// signing out ends the session only after the page's last requests are
// answered, so none of them is refused (401) for a session that ended
// under it.
export async function settled(ms) {
  const deadline = Date.now() + ms;
  while (inFlight.size > 0 && Date.now() < deadline) {
    await Promise.race([
      Promise.allSettled([...inFlight]),
      new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now()))),
    ]);
  }
}

// onUnauthorized registers what to do when a request answers 401 (the
// session ended): go back to the sign-in form.
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    // problems: where refused policy data is wrong ({path, message}), when
    // the answer lists them (422).
    this.problems = problems || [];
  }
}

async function errorBody(res) {
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string' && body.error) {
      return { message: body.error, problems: Array.isArray(body.problems) ? body.problems : [] };
    }
  } catch {
    // not JSON: fall through
  }
  return { message: `the gateway answered ${res.status}${res.statusText ? ' ' + res.statusText : ''}`, problems: [] };
}

async function errorMessage(res) {
  return (await errorBody(res)).message;
}

// api calls an endpoint and returns its JSON (null for 204). body is an
// object (sent as JSON) or a Blob (sent as is, with opts.contentType).
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', signal: opts.signal };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-PBAC-CSRF'] = csrf;
    // The admin listener takes a change only as JSON (or a bundle): a
    // body a cross-site form could send is refused.
    headers['Content-Type'] = 'application/json';
  }
  if (body !== undefined) {
    if (body instanceof Blob) {
      init.body = body;
      headers['Content-Type'] = opts.contentType || body.type || 'application/octet-stream';
    } else {
      init.body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let res;
  const sent = fetch(path, init);
  inFlight.add(sent);
  try {
    res = await sent;
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The gateway did not answer: is it still running?');
  } finally {
    inFlight.delete(sent);
  }
  if (res.status === 401 && !opts.quiet401) {
    const msg = await errorMessage(res);
    unauthorized(msg);
    throw new ApiError(401, msg);
  }
  if (!res.ok) {
    const { message, problems } = await errorBody(res);
    throw new ApiError(res.status, message, problems);
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  if (!type.includes('json')) return null;
  return res.json();
}

// streamNDJSON POSTs body to path and calls onEvent with each JSON line of
// the answer as soon as it arrives.
export async function streamNDJSON(path, body, onEvent, signal) {
  const res = await api('POST', path, body, { raw: true, signal });
  if (!res.body) {
    const text = await res.text();
    text.split('\n').forEach(emit);
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      emit(line);
    }
  }
  buf += decoder.decode();
  emit(buf);

  function emit(line) {
    const t = line.trim();
    if (!t) return;
    let ev;
    try {
      ev = JSON.parse(t);
    } catch {
      ev = { type: 'error', error: 'an unreadable line from the gateway: ' + t.slice(0, 120) };
    }
    onEvent(ev);
  }
}
