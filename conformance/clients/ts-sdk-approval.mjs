// The TypeScript SDK's MCP client (@modelcontextprotocol/sdk, pinned by
// package-lock.json; revision 2025-11-25) meeting a call the gateway holds
// for a person's approval: it declares URL elicitation, so the gateway
// answers URLElicitationRequiredError (-32042), which the SDK turns into
// its own UrlElicitationRequiredError. The script prints what the SDK
// made of it as one JSON line, waits for a line on stdin (the test has an
// approver approve), calls again with the same arguments and prints the
// result.
//
// Usage: node ts-sdk-approval.mjs URL TOKEN TOOL ARGS_JSON
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';

const [url, token, tool, argsJSON] = process.argv.slice(2);
if (!url || !token || !tool || !argsJSON) {
  console.error('usage: ts-sdk-approval.mjs URL TOKEN TOOL ARGS_JSON');
  process.exit(2);
}
const args = JSON.parse(argsJSON);
const say = (o) => console.log(JSON.stringify(o));

const client = new Client({ name: 'ts-sdk-approval', version: '1' }, { capabilities: { elicitation: { url: {} } } });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
say({ step: 'connected', protocol: transport.protocolVersion });

try {
  const res = await client.callTool({ name: tool, arguments: args });
  say({ step: 'first', held: false, result: res });
  process.exit(1);
} catch (e) {
  if (!(e instanceof UrlElicitationRequiredError)) {
    say({ step: 'first', held: false, error: String(e), code: e?.code });
    process.exit(1);
  }
  const el = e.elicitations[0] ?? {};
  say({ step: 'first', held: true, code: e.code, mode: el.mode, url: el.url, elicitationId: el.elicitationId, message: el.message });
}

// The test approves, then says so on stdin.
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === 'approved') break;
}
try {
  const res = await client.callTool({ name: tool, arguments: args });
  say({ step: 'retry', isError: !!res.isError, text: (res.content ?? []).map((c) => c.text ?? '').join('\n') });
} catch (e) {
  say({ step: 'retry', error: String(e), code: e?.code });
}
await client.close();
process.exit(0);
