// Drives mcp-remote (the stdio <-> Streamable HTTP bridge with OAuth that
// desktop MCP clients run as a local server; pinned by package-lock.json) the
// way such a client does: it starts `mcp-remote URL` as a subprocess and
// speaks MCP JSON-RPC over its stdin/stdout — initialize,
// notifications/initialized, tools/list, tools/call test-tool.
//
// mcp-remote signs in by opening the authorization URL in a browser (the
// `open` package: xdg-open, which honours $BROWSER without a desktop); under
// `pbac conformance client`, $BROWSER is the harness's helper that signs in
// and follows the redirect back to mcp-remote's callback server. Its
// credentials go to a fresh temporary $MCP_REMOTE_CONFIG_DIR (never
// ~/.mcp-auth), removed on exit.
//
// Usage: node mcp-remote-driver.mjs [URL] [-- extra mcp-remote args]
// (default URL: $MCP_SERVER_URL). Exit status 0 when test-tool answered.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const extra = dash >= 0 ? argv.slice(dash + 1) : [];
const serverUrl = (dash === 0 ? undefined : argv[0]) || process.env.MCP_SERVER_URL;
if (!serverUrl) {
  console.error('usage: mcp-remote-driver.mjs URL [-- mcp-remote args] (or $MCP_SERVER_URL)');
  process.exit(2);
}
const log = (...a) => console.error('[mcp-remote-driver]', ...a);
const timeoutMs = Number(process.env.MCP_DRIVER_TIMEOUT_MS || 45000);

// mcp-remote's own bin (dist/proxy.js), resolved from its package.json.
const require = createRequire(import.meta.url);
const pkgPath = require.resolve('mcp-remote/package.json');
const pkg = require(pkgPath);
const bin = join(dirname(pkgPath), typeof pkg.bin === 'string' ? pkg.bin : pkg.bin['mcp-remote']);

const configDir = mkdtempSync(join(tmpdir(), 'mcp-remote-'));
const child = spawn(process.execPath, [bin, serverUrl, ...extra], {
  env: { ...process.env, MCP_REMOTE_CONFIG_DIR: configDir },
  stdio: ['pipe', 'pipe', 'pipe']
});
// mcp-remote logs to stderr; pass it on, marked.
createInterface({ input: child.stderr }).on('line', l => console.error('[mcp-remote]', l));
let exited = null;
const exitPromise = new Promise(resolve =>
  child.on('exit', (code, signal) => {
    exited = signal ? `signal ${signal}` : `status ${code}`;
    for (const [, p] of pending) p.reject(new Error(`mcp-remote exited (${exited})`));
    pending.clear();
    resolve();
  })
);

const pending = new Map(); // id -> {resolve, reject}
let nextId = 1;
createInterface({ input: child.stdout }).on('line', line => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    log('not JSON on stdout:', line);
    return;
  }
  if (msg.id !== undefined && pending.has(msg.id) && (msg.result !== undefined || msg.error !== undefined)) {
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${msg.error.code}: ${msg.error.message}`));
    else p.resolve(msg.result);
  } else if (msg.method && msg.id !== undefined) {
    // A server-to-client request (ping, roots/list, ...): this client offers
    // no capabilities; answer ping, refuse the rest.
    const reply = msg.method === 'ping' ? { result: {} } : { error: { code: -32601, message: 'method not found' } };
    send({ jsonrpc: '2.0', id: msg.id, ...reply });
  }
});

function send(msg) {
  child.stdin.write(JSON.stringify(msg) + '\n');
}

function request(method, params) {
  if (exited) return Promise.reject(new Error(`mcp-remote exited (${exited})`));
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`${method}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    pending.set(id, {
      resolve: v => (clearTimeout(t), resolve(v)),
      reject: e => (clearTimeout(t), reject(e))
    });
    send({ jsonrpc: '2.0', id, method, params });
  });
}

let status = 0;
try {
  const init = await request('initialize', {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'pbac-conformance-mcp-remote-driver', version: '1.0.0' }
  });
  log('initialized:', init.serverInfo?.name, init.protocolVersion);
  send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  const { tools } = await request('tools/list', {});
  log('tools:', tools.map(t => t.name).join(', '));
  const res = await request('tools/call', { name: 'test-tool', arguments: {} });
  if (res.isError) throw new Error('test-tool answered an error: ' + JSON.stringify(res.content));
  log('test-tool:', JSON.stringify(res.content));
} catch (err) {
  log('failed:', err?.message ?? String(err));
  status = 1;
}
child.stdin.end();
const grace = setTimeout(() => child.kill('SIGTERM'), 2000);
await exitPromise;
clearTimeout(grace);
rmSync(configDir, { recursive: true, force: true });
process.exit(status);
