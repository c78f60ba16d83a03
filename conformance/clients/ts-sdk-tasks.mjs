// The TypeScript SDK's MCP client (@modelcontextprotocol/sdk, pinned by
// package-lock.json; revision 2025-11-25) running a tool as a task through
// the gateway with its experimental tasks API: callToolStream asks for a
// task (params.task), then polls tasks/get and reads tasks/result on its
// own. The script prints one JSON line: the task id, the statuses it saw
// and the result's text, or the error.
//
// With PEEK set to a task id, it instead asks tasks/get about that task
// (another agent's, in the test) and prints what it was told.
//
// Usage: node ts-sdk-tasks.mjs URL TOKEN TOOL ARGS_JSON
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token, tool, argsJSON] = process.argv.slice(2);
if (!url || !token || !tool || !argsJSON) {
  console.error('usage: ts-sdk-tasks.mjs URL TOKEN TOOL ARGS_JSON');
  process.exit(2);
}
const say = (o) => console.log(JSON.stringify(o));

const client = new Client({ name: 'ts-sdk-tasks', version: '1' }, { capabilities: { tasks: {} } });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);

if (process.env.PEEK) {
  try {
    const task = await client.experimental.tasks.getTask(process.env.PEEK);
    say({ peek: 'answered', task });
  } catch (e) {
    say({ peek: 'refused', error: String(e?.message ?? e), code: e?.code });
  }
  await client.close();
  process.exit(0);
}

let taskId = '';
const statuses = [];
try {
  const stream = client.experimental.tasks.callToolStream({ name: tool, arguments: JSON.parse(argsJSON) }, undefined, { task: { ttl: 60000 } });
  for await (const m of stream) {
    switch (m.type) {
      case 'taskCreated':
        taskId = m.task.taskId;
        statuses.push(m.task.status);
        break;
      case 'taskStatus':
        statuses.push(m.task.status);
        break;
      case 'result':
        say({ taskId, statuses, text: (m.result.content ?? []).map((c) => c.text ?? '').join('\n') });
        break;
      case 'error':
        say({ taskId, statuses, error: String(m.error?.message ?? m.error), code: m.error?.code });
        break;
    }
  }
} catch (e) {
  say({ taskId, statuses, error: String(e?.message ?? e), code: e?.code });
}
await client.close();
process.exit(0);
