// The TypeScript SDK's MCP client (@modelcontextprotocol/sdk, pinned by
// package-lock.json) with its OAuth client provider, as an application would
// write it after the SDK's own example (examples/client/simpleOAuthClient):
// StreamableHTTPClientTransport with an OAuthClientProvider kept in memory, a
// local redirect URI served by a callback server, and — when the SDK answers
// UnauthorizedError because it redirected to the authorization server —
// transport.finishAuth(code) with the code the callback received, then the
// connect or call again.
//
// Headless: redirectToAuthorization fetches the authorization URL itself
// (Accept: */*, the way `pbac conformance client` expects a client that
// signs in without a browser), and delivers the authorization server's
// redirect to the callback server, as a browser would.
//
// Usage: node ts-sdk-client.mjs [URL]   (default: $MCP_SERVER_URL)
// It lists the tools and calls test-tool; exit status 0 when both succeed.
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const serverUrl = process.argv[2] || process.env.MCP_SERVER_URL;
if (!serverUrl) {
  console.error('usage: ts-sdk-client.mjs URL (or $MCP_SERVER_URL)');
  process.exit(2);
}
const log = (...a) => console.error('[ts-sdk-client]', ...a);

// The callback server: the redirect URI. Each authorization waits for the
// one redirect that carries its state.
const waiting = new Map(); // state -> {resolve, reject}
const callback = createServer((req, res) => {
  const u = new URL(req.url, 'http://127.0.0.1');
  const state = u.searchParams.get('state') ?? '';
  const w = waiting.get(state);
  if (u.pathname !== '/callback' || !w) {
    res.writeHead(400).end('unexpected callback');
    return;
  }
  waiting.delete(state);
  const code = u.searchParams.get('code');
  if (code) {
    w.resolve(code);
  } else {
    w.reject(new Error(`authorization refused: ${u.searchParams.get('error')} ${u.searchParams.get('error_description') ?? ''}`));
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end('signed in; you may close this window');
});
await new Promise(resolve => callback.listen(0, '127.0.0.1', resolve));
const redirectUrl = `http://127.0.0.1:${callback.address().port}/callback`;

class InMemoryOAuthProvider {
  #client;
  #tokens;
  #verifier;
  #state;
  pendingCode; // the code of the authorization redirectToAuthorization began

  get redirectUrl() {
    return redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: 'pbac conformance: TypeScript SDK client',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none'
    };
  }
  state() {
    this.#state = randomBytes(16).toString('base64url');
    return this.#state;
  }
  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info) {
    this.#client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens) {
    this.#tokens = tokens;
  }
  saveCodeVerifier(v) {
    this.#verifier = v;
  }
  codeVerifier() {
    if (!this.#verifier) throw new Error('no code verifier saved');
    return this.#verifier;
  }
  async redirectToAuthorization(authorizationUrl) {
    const state = authorizationUrl.searchParams.get('state') ?? '';
    this.pendingCode = new Promise((resolve, reject) => waiting.set(state, { resolve, reject }));
    this.pendingCode.catch(() => {}); // awaited by the caller
    log('authorizing at', authorizationUrl.origin + authorizationUrl.pathname, 'scope', authorizationUrl.searchParams.get('scope'));
    const res = await fetch(authorizationUrl, { redirect: 'manual', headers: { accept: '*/*' } });
    const loc = res.headers.get('location');
    await res.body?.cancel();
    if (res.status < 300 || res.status > 399 || !loc) {
      waiting.get(state)?.reject(new Error(`the authorization request answered ${res.status} without a redirect`));
      waiting.delete(state);
      return;
    }
    // Follow the redirect to the redirect URI, as the browser would.
    const back = await fetch(new URL(loc, authorizationUrl), { redirect: 'manual' });
    await back.body?.cancel();
  }
}

const provider = new InMemoryOAuthProvider();
const client = new Client({ name: 'pbac-conformance-ts-sdk-client', version: '1.0.0' }, { capabilities: {} });
let transport;

// finishAuthorization completes an authorization the SDK began: it waits for
// the code at the redirect URI and has the transport redeem it.
async function finishAuthorization() {
  if (!provider.pendingCode) throw new Error('the SDK answered UnauthorizedError without redirecting');
  const code = await provider.pendingCode;
  provider.pendingCode = undefined;
  await transport.finishAuth(code);
}

async function connect(attempts = 3) {
  transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  try {
    await client.connect(transport);
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || attempts <= 1) throw err;
    log('authorization required; completing it');
    await finishAuthorization();
    await connect(attempts - 1);
  }
}

// withAuthorization runs an MCP request; when the SDK stops it for an
// authorization (a step-up on 403 insufficient_scope, or a refresh that did
// not work), it completes that authorization and runs the request again.
async function withAuthorization(name, f, attempts = 3) {
  try {
    return await f();
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || attempts <= 1) throw err;
    log(`${name}: authorization required; completing it`);
    await finishAuthorization();
    return withAuthorization(name, f, attempts - 1);
  }
}

let status = 0;
try {
  await connect();
  log('connected, session', transport.sessionId);
  const { tools } = await withAuthorization('tools/list', () => client.listTools());
  log('tools:', tools.map(t => t.name).join(', '));
  const res = await withAuthorization('tools/call test-tool', () => client.callTool({ name: 'test-tool', arguments: {} }));
  if (res.isError) throw new Error('test-tool answered an error: ' + JSON.stringify(res.content));
  log('test-tool:', JSON.stringify(res.content));
} catch (err) {
  log('failed:', err?.stack ?? String(err));
  status = 1;
}
await client.close().catch(() => {});
callback.close();
process.exit(status);
