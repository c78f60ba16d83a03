// The MCP Inspector's web UI driven as a person drives it, in headless
// Chromium (Playwright, playwright-core): add the gateway as a server
// (Streamable HTTP, its URL), type the agent's client id in the server's
// OAuth settings, connect, sign in on the authorization server's own page
// in the same tab, open the Tools tab, read the list, and run
// drive.read_file once per call. It writes what the page showed to
// $PBAC_OUT (JSON) and a screenshot of each step to $PBAC_ARTIFACTS. Run
// by DriveInspectorWeb (drivers_inspector.go); nothing in Inspector is
// patched.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const inspectorURL = env('PBAC_INSPECTOR_URL');
const mcpURL = env('PBAC_MCP_URL');
const clientID = env('PBAC_CLIENT_ID');
const user = env('PBAC_USER');
const password = env('PBAC_PASSWORD');
const out = env('PBAC_OUT');
const artifacts = env('PBAC_ARTIFACTS');
const calls = JSON.parse(env('PBAC_CALLS')); // [{marker, tool, path}]
const serverID = 'pbac';
const STEP = 15_000;

const result = { steps: [], tools: [], calls: [] };
const save = () => fs.writeFileSync(out, JSON.stringify(result, null, 2));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // No network but loopback: keep Chromium from trying.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-default-apps'],
});
let n = 0;
// step runs one thing a person does, records whether it worked and
// screenshots the page after it.
async function step(page, name, fn) {
  try {
    await fn();
    result.steps.push({ name, ok: true });
  } catch (e) {
    result.steps.push({ name, ok: false, error: e.message.split('\n')[0] });
    throw e;
  } finally {
    n++;
    await page.screenshot({ path: path.join(artifacts, `${String(n).padStart(2, '0')}-${name}.png`), fullPage: true }).catch(() => {});
    save();
  }
}

try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  await step(page, 'open', async () => {
    await page.goto(inspectorURL);
    await page.getByRole('button', { name: 'Add Servers' }).waitFor();
  });
  await step(page, 'add-server', async () => {
    await page.getByRole('button', { name: 'Add Servers' }).click();
    await page.getByRole('menuitem', { name: '+ Add manually' }).click();
    await page.getByPlaceholder('my-server').fill(serverID);
    await page.getByRole('textbox', { name: 'Transport' }).click();
    await page.getByRole('option', { name: 'streamable-http' }).click();
    await page.getByPlaceholder('https://example.com/mcp').fill(mcpURL);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await page.locator('.mantine-Modal-overlay').waitFor({ state: 'detached' });
  });
  const toggle = page.getByRole('switch', { name: `Connect or disconnect "${serverID}"` });
  await step(page, 'client-id', async () => {
    await page.locator('div').filter({ has: toggle }).filter({ has: page.getByRole('button', { name: 'Settings' }) }).last()
      .getByRole('button', { name: 'Settings' }).click();
    await page.getByRole('button', { name: 'OAuth Settings' }).click();
    await page.getByLabel('Client ID', { exact: true }).fill(clientID);
    result.redirect_uri = await page.getByLabel('Redirect URI', { exact: true }).inputValue();
    await page.getByRole('button', { name: 'Close' }).click();
    await page.locator('.mantine-Modal-overlay').waitFor({ state: 'detached' });
  });
  await step(page, 'connect', async () => {
    await toggle.click({ force: true });
    await page.locator('#username').waitFor();
    result.authorize_url = page.url();
  });
  await step(page, 'sign-in', async () => {
    await page.fill('#username', user);
    await page.fill('#password', password);
    await page.click('#approve');
    await page.waitForURL((u) => u.origin === new URL(inspectorURL).origin && !u.pathname.startsWith('/oauth'));
  });
  const heading = page.getByText(/^Tools \(\d+\)$/);
  await step(page, 'tools', async () => {
    await page.getByText('Tools', { exact: true }).first().click();
    await heading.waitFor();
    const panel = page.locator('div').filter({ has: heading }).filter({ has: page.getByPlaceholder('Search tools...') }).last();
    result.tools = (await panel.getByRole('button').allInnerTexts()).map((t) => t.trim()).filter((t) => t);
  });
  for (const c of calls) {
    await step(page, `call-${c.marker}`, async () => {
      await page.getByText(c.tool, { exact: true }).first().click();
      await page.getByRole('textbox', { name: /^path/ }).fill(c.path);
      await page.getByRole('button', { name: 'Execute Tool' }).click();
      // The results panel: the innermost box holding its close button and
      // what it shows, a result (with its copy button) or a tool error.
      const close = page.getByRole('button', { name: 'Close results' });
      const shown = page.getByRole('button', { name: 'Copy' }).or(page.getByText('Tool Error', { exact: true }));
      const results = page.locator('div').filter({ has: close }).filter({ has: shown }).last();
      await results.waitFor();
      result.calls.push({ marker: c.marker, shown: (await results.innerText()).trim() });
      await close.click();
    });
  }
} catch (e) {
  result.error = e.message.split('\n')[0];
} finally {
  save();
  await browser.close();
}
