// Browser tests of the dashboard: Playwright (playwright-core) driving
// Debian's Chromium, headless, against the real `pbac up` that
// TestDashboardInBrowser (cmd/pbac) starts. PBAC_DASHBOARD is the
// dashboard's URL; every step writes a screenshot to PBAC_ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.PBAC_DASHBOARD;
const ARTIFACTS = process.env.PBAC_ARTIFACTS || 'artifacts';
const TIMEOUT = 20_000;

let browser;

before(async () => {
  assert.ok(BASE, 'PBAC_DASHBOARD must name the dashboard URL');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // No network but loopback on these machines: keep Chromium from trying.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps'],
  });
});

after(async () => {
  await browser?.close();
});

// open gives a fresh, signed-out page that records page errors.
async function open(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}${m.location().url ? ` (${m.location().url})` : ''}`); });
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function signIn(page, user) {
  await page.goto(BASE);
  await page.fill('#signin-username', user);
  await page.fill('#signin-password', 'demo');
  await page.click('#signin-submit');
  await page.locator('#signout').waitFor({ state: 'visible' });
}

async function go(page, view) {
  await page.click(`a[href="#${view}"]`);
  await page.locator(`#view-${view}`).waitFor({ state: 'visible' });
}

// statusOf reads the HTTP status a result row shows.
async function statusOf(row) {
  await row.locator('.status').waitFor({ state: 'visible' });
  return (await row.locator('.status').innerText()).trim();
}

// outcomeOf reads what a result row says of a call: its HTTP status and
// the gateway's decision ("200 allowed", "200 denied", "401 denied", …).
// By default a policy denial is answered 200 with a tool result (denials:
// tool_error); the row must still show it as a denial, with its reason,
// and never with the colour of an allowed call.
async function outcomeOf(row) {
  const status = await statusOf(row);
  const cls = (await row.getAttribute('class')) || '';
  if (/\bresult-allow\b/.test(cls)) return `${status} allowed`;
  if (/\bresult-hold\b/.test(cls)) {
    // Held for a person's approval: the agent was handed the page.
    assert.equal((await row.locator('.decision-word').textContent()).trim(), 'held');
    assert.match(await row.locator('a[data-approval-link]').getAttribute('href'), /\/ui\/approvals\/apr_[a-z2-7]{26}$/);
    return `${status} held`;
  }
  if (!/\bresult-deny\b/.test(cls)) return `${status} error`;
  const badge = (await row.locator('.status').getAttribute('class')) || '';
  assert.doesNotMatch(badge, /status-ok/, `a denied call's status badge: ${badge}`);
  assert.match(await row.locator('.decision-word').innerText(), /denied|token refused/i);
  assert.notEqual((await row.locator('.reason').innerText()).trim(), '', 'a denial shows its reason');
  return `${status} denied`;
}

// The outcomes of a call: allowed, denied by policy (a tool result with
// isError, denials: tool_error), refused before policy (400), a token the
// gateway did not accept (401), held until a person approves it.
const OK = '200 allowed', DENY = '200 denied', BAD = '400 denied', UNAUTH = '401 denied', HELD = '200 held';

test('onboarding: sign in, pick an agent, connect, see the matrix, live allowed and denied', async () => {
  const { context, page, errors } = await open();
  await page.goto(BASE);
  await page.locator('#signin-form').waitFor({ state: 'visible' });
  await shot(page, 'onboarding-0-sign-in');

  // Step 1: sign in as a demo user.
  await signIn(page, 'alice');
  await page.locator('#view-start').waitFor({ state: 'visible' });
  await shot(page, 'onboarding-1-signed-in');

  // Step 2: pick the developer's Claude Code; its verified claims and tier show.
  const card = page.locator('[data-agent="claude-code"]');
  await card.click();
  await assert.doesNotReject(card.getByText('developer', { exact: false }).first().waitFor());
  await shot(page, 'onboarding-2-agent');

  // Step 3: the connect line names this gateway and the agent's client id.
  const claude = (await page.locator('[data-snippet="claude"]').innerText()).trim();
  assert.match(claude, /^claude mcp add --transport http --client-id \S+ --callback-port 33418 pbac http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  // The demo agent is registered for every client the dashboard knows.
  for (const client of ['opencode', 'codex', 'gemini-cli', 'vscode', 'cursor', 'mcp-remote', 'inspector']) {
    assert.equal(await page.locator(`[data-snippet="${client}"]`).count(), 1, `no ${client} snippet`);
    assert.match(await page.locator(`[data-snippet="${client}"]`).textContent(), /\/mcp/);
  }
  await shot(page, 'onboarding-3-connect');

  // Step 4: the live matrix is the seed matrix of the shipped policy.
  const cell = (provider, resource) =>
    page.locator(`#onboard-matrix tr[data-provider="${provider}"] td[data-resource="${resource}"]`);
  await cell('claude-code', 'drive').waitFor();
  const expected = {
    'claude-code': { drive: 'r/w', jira: 'r/w', slack: 'r/w' },
    'ci-bot': { drive: 'read', jira: 'r/w', slack: 'denied' },
    'security-scanner': { drive: 'read', jira: 'read', slack: 'denied' },
    'claude-code-trusted': { drive: 'r/w', jira: 'r/w', slack: 'r/w' },
  };
  for (const [provider, cells] of Object.entries(expected)) {
    for (const [resource, label] of Object.entries(cells)) {
      const text = (await cell(provider, resource).innerText()).trim();
      assert.ok(text.startsWith(label), `${provider} ${resource}: "${text}", want "${label}"`);
    }
  }
  await shot(page, 'onboarding-4-matrix');

  // Step 5: one token, a read allowed and a merge refused, with the reason.
  await page.click('#live-test-run');
  const read = page.locator('[data-result-index="0"]');
  const merge = page.locator('[data-result-index="1"]');
  assert.equal(await outcomeOf(read), OK);
  assert.equal(await outcomeOf(merge), DENY);
  assert.match(await merge.locator('.reason').innerText(), /gitlab:merge/);
  await page.locator('#live-test-summary').waitFor({ state: 'visible' });
  assert.match(await page.locator('#live-test-summary .verdict-sentence').innerText(), /the merge attempt was denied \(HTTP 200, a tool result with isError\) — .*gitlab:merge/);
  await shot(page, 'onboarding-5-live-test');

  assert.deepEqual(errors, []);
  await context.close();
});

test('register an agent with the OpenCode preset: its redirect URI, then its opencode.json', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'alice');
  await page.locator('#view-start').waitFor({ state: 'visible' });
  await page.locator('#register-details summary').click();
  await page.fill('#reg-name', 'opencode e2e');
  await page.selectOption('#reg-provider', 'claude-code');
  await page.selectOption('#reg-kind', 'human');
  await page.selectOption('#reg-client', 'opencode');
  // The preset fills in what OpenCode sends (any port on 127.0.0.1) and
  // previews its configuration.
  assert.equal(await page.inputValue('#reg-redirects'), 'http://127.0.0.1/mcp/oauth/callback');
  assert.match(await page.locator('#reg-preview').innerText(), /"clientId": "<client id>"/);
  await shot(page, 'register-opencode-0-form');
  await page.click('#reg-submit');
  await page.locator('#register-result .is-ok').waitFor();

  // The new agent is picked; its connect step offers OpenCode's snippet,
  // with its client id and the redirect URI it was registered for, and no
  // Claude Code line (its localhost callback is not registered).
  const card = page.locator('[data-agent="opencode e2e"]');
  await card.waitFor();
  const clientID = await card.getAttribute('data-client-id');
  assert.ok(clientID);
  await page.getByRole('tab', { name: 'OpenCode' }).click();
  const text = (await page.locator('[data-snippet="opencode"]').innerText()).trim();
  const cfg = JSON.parse(text);
  assert.equal(cfg.mcp.pbac.type, 'remote');
  assert.match(cfg.mcp.pbac.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
  assert.deepEqual(cfg.mcp.pbac.oauth, { clientId: clientID, redirectUri: 'http://127.0.0.1:19876/mcp/oauth/callback' });
  assert.equal(await page.locator('[data-snippet="claude"]').count(), 0);
  await shot(page, 'register-opencode-1-snippet');

  // A redirect URI the authorization server's rule refuses is refused here.
  await page.locator('#register-details summary').click();
  await page.fill('#reg-name', 'bad redirect');
  await page.selectOption('#reg-kind', 'human');
  await page.selectOption('#reg-client', 'custom');
  await page.fill('#reg-redirects', 'http://agent.example.com/cb');
  await page.click('#reg-submit');
  assert.match(await page.locator('#register-result [role="alert"]').innerText(), /loopback/);

  // The refused registration's 400 is the only thing the console says.
  assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), []);
  await context.close();
});

// Each user's day: what the steps return follows the user's role.
const days = {
  alice: [OK, OK, OK, OK, HELD], // the schema change waits for a DBA who is not alice
  bob: [OK, OK, DENY, DENY],
  carol: [OK, OK, DENY, DENY],
};

for (const [user, want] of Object.entries(days)) {
  test(`narrative demo: ${user}'s day, watched live`, async () => {
    const { context, page, errors } = await open();
    await signIn(page, user);
    await go(page, 'demo');
    const card = page.locator(`[data-scenario="${user}-day"]`);
    await card.locator('[data-run]').click();
    for (let i = 0; i < want.length; i++) {
      assert.equal(await outcomeOf(card.locator(`[data-step-result="${i}"]`)), want[i], `${user} step ${i}`);
    }
    if (user === 'alice') {
      // She is a DBA, but may not approve her own agent's DDL.
      const step = card.locator('[data-step-result="5"]');
      await step.waitFor();
      assert.equal(await step.getAttribute('data-step-kind'), 'approve');
      assert.equal(await step.getAttribute('data-step-decision'), 'deny');
      assert.match(await step.innerText(), /alice may not decide it: the requester may not approve their own call/);
    }
    // The calls also arrive on the live feed from the audit stream.
    await page.locator('#live-feed [data-request-id]').first().waitFor();
    await shot(page, `demo-${user}`);
    assert.deepEqual(errors, []);
    await context.close();
  });
}

test('narrative demo: the five failure modes are stopped', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'alice');
  await go(page, 'demo');
  const modes = {
    'prod-secrets': [OK, DENY, BAD, DENY], // the traversal spelling is refused before policy (400)
    'ci-self-approval': [OK, OK, DENY, HELD], // the approval is refused; the deploy waits for release
    'scanner-token': [OK, UNAUTH],
    'planner-new-tool': [OK, OK, DENY],
  };
  for (const [id, want] of Object.entries(modes)) {
    const card = page.locator(`[data-scenario="${id}"]`);
    await card.locator('[data-run]').click();
    for (let i = 0; i < want.length; i++) {
      assert.equal(await outcomeOf(card.locator(`[data-step-result="${i}"]`)), want[i], `${id} step ${i}`);
    }
    await shot(page, `failure-mode-${id}`);
  }
  // A person who picks the user by hand and then runs a card keeps that
  // choice: the token acts for bob, not for the card's alice.
  await page.selectOption('#demo-user', 'bob');
  const other = page.locator('[data-scenario="prod-secrets"]');
  await other.locator('[data-run]').click();
  await other.locator('.token-text').waitFor();
  assert.match(await other.locator('.token-text').innerText(), /acting for bob/);
  // The fifth: a policy step between two calls with the same token.
  // Clicking the card picks its own agent and user again.
  const card = page.locator('[data-scenario="broad-scope"]');
  await card.locator('.scenario-story').click();
  await card.locator('[data-run]').click();
  assert.equal(await outcomeOf(card.locator('[data-step-result="0"]')), OK);
  assert.equal(await outcomeOf(card.locator('[data-step-result="2"]')), DENY);
  await shot(page, 'failure-mode-broad-scope');
  assert.deepEqual(errors, []);
  await context.close();
});

test('hot swap from the UI: the next call decides with the new policy, and rollback undoes it', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'carol');
  await go(page, 'demo');
  const card = page.locator('[data-scenario="carol-day"]');
  // firstStatus runs carol's day and reads its first step; a step that is
  // not what the test expects is reported with what the row says (its
  // reasons).
  const firstStatus = async () => {
    await card.locator('[data-run]').click();
    // Wait for the run to finish: its last step shows.
    await statusOf(card.locator('[data-step-result="3"]'));
    return outcomeOf(card.locator('[data-step-result="0"]'));
  };
  const firstRow = async () => (await card.locator('[data-step-result="0"]').innerText()).replace(/\s+/g, ' ');
  assert.equal(await firstStatus(), OK, `carol files a ticket before the swap: ${await firstRow()}`);

  // Move claude-code to the read_only tier in the trust-tier editor.
  await go(page, 'matrix');
  await page.selectOption('[data-tier-for="claude-code"]', 'read_only');
  await page.click('#tiers-activate');
  await page.locator('#matrix-table tr[data-provider="claude-code"] td[data-resource="jira"]', { hasText: 'read' }).waitFor();
  assert.ok(!(await page.locator('#matrix-table tr[data-provider="claude-code"] td[data-resource="jira"]').innerText()).includes('r/w'));
  await shot(page, 'hot-swap-1-matrix');

  await go(page, 'demo');
  assert.equal(await firstStatus(), DENY, `the next call after the swap is refused: ${await firstRow()}`);
  await shot(page, 'hot-swap-2-refused');

  // Roll back from the policy view; the call is allowed again.
  await go(page, 'policy');
  await page.click('#policy-rollback');
  // The rollback's own toast: the activation's ("Policy version … is
  // live") may still show, and the next call must wait for the rollback.
  await page.locator('#toast .toast-item').filter({ hasText: /^Rolled back: policy version/ }).waitFor();
  await shot(page, 'hot-swap-3-rolled-back');
  await go(page, 'demo');
  assert.equal(await firstStatus(), OK, `after the rollback: ${await firstRow()}`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('audit view filters, latency panel, and a phone-sized screen', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'alice');
  await go(page, 'audit');
  await page.selectOption('#audit-decision', 'deny');
  // The view may already show the unfiltered trail: wait for the filtered
  // answer, then for the table to show only what it returned.
  await Promise.all([
    page.waitForResponse((r) => r.url().includes('/ui/api/audit?') && r.url().includes('decision=deny')),
    page.locator('#audit-form button[type="submit"]').click(),
  ]);
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#audit-table tbody tr')];
    return trs.length > 0 && trs.every((tr) => /deny/i.test(tr.innerText));
  });
  const rows = page.locator('#audit-table tbody tr');
  const n = await rows.count();
  assert.ok(n > 0, 'denials are listed');
  for (let i = 0; i < Math.min(n, 10); i++) {
    assert.match(await rows.nth(i).innerText(), /deny/i);
    // A denial answered as a tool result is recorded with status 200: its
    // badge still reads as a denial, not as an allowed call.
    assert.doesNotMatch((await rows.nth(i).locator('.status').getAttribute('class')) || '', /status-ok/);
  }
  await shot(page, 'audit-denials');

  // Sign-ins are in the trail beside the calls, found by their kind.
  await page.selectOption('#audit-decision', '');
  await page.selectOption('#audit-event', 'sign_in');
  await Promise.all([
    page.waitForResponse((r) => r.url().includes('/ui/api/audit?') && r.url().includes('event=sign_in')),
    page.locator('#audit-form button[type="submit"]').click(),
  ]);
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#audit-table tbody tr')];
    return trs.length > 0 && trs.every((tr) => /sign-in\//.test(tr.innerText) && /sign in/i.test(tr.innerText));
  });

  await go(page, 'latency');
  await page.locator('#latency-table tr[data-stage="total"]').waitFor();
  assert.match(await page.locator('#latency-table tr[data-stage="policy"]').innerText(), /\d/);
  await shot(page, 'latency');
  assert.deepEqual(errors, []);
  await context.close();

  // A phone: the page fits the screen's width.
  const phone = await open({ width: 390, height: 844 });
  await signIn(phone.page, 'alice');
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone`);
  await shot(phone.page, 'phone-onboarding');
  assert.deepEqual(phone.errors, []);
  await phone.context.close();
});

test('keyboard: sign in with the keyboard alone', async () => {
  const { context, page, errors } = await open();
  // A slow configuration (a loaded machine): the sign-in form shows once
  // it has arrived, and a person types into the form they see. Focusing
  // it while still hidden sent the keys nowhere (a CI flake).
  await page.route('**/ui/api/config', async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await route.continue();
  });
  await page.goto(BASE);
  await page.locator('#signin-username').waitFor({ state: 'visible' });
  await page.locator('#signin-username').focus();
  await page.keyboard.type('bob');
  await page.keyboard.press('Tab');
  await page.keyboard.type('demo');
  await page.keyboard.press('Enter');
  await page.locator('#signout').waitFor({ state: 'visible' });
  // Every form control on the page has an accessible name.
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
      && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, []);
  assert.deepEqual(errors, []);
  await context.close();
});

test('revoke everything acting for a person: an operator, two presses, counted and audited', async () => {
  const { context, page, errors } = await open();
  // Carol's day gives her agent tokens to revoke.
  await signIn(page, 'alice');
  await go(page, 'demo');
  const day = page.locator('[data-scenario="carol-day"]');
  await day.locator('[data-run]').click();
  await statusOf(day.locator('[data-step-result="3"]'));

  await go(page, 'start');
  const details = page.locator('#people-details');
  await details.waitFor({ state: 'visible' });
  await details.locator('summary').click();
  await page.fill('#people-sub', 'carol');
  await page.fill('#people-reason', 'left the company');
  // The first press asks; the second revokes.
  await page.click('#people-submit');
  assert.match(await page.locator('#people-submit').innerText(), /carol\?/);
  await page.click('#people-submit');
  const result = page.locator('#people-result');
  await result.waitFor({ state: 'visible' });
  assert.match(await result.innerText(), /Revoked for carol: [1-9]\d* access tokens/);
  await shot(page, 'people-revoked');

  // The audit trail says who did it and why.
  await go(page, 'audit');
  await page.locator('#audit-table tbody tr', { hasText: 'admin/revoke-person' }).first().waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('pending review: a self-registered agent is approved by an operator as claude-code', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'alice');
  await page.locator('#view-start').waitFor({ state: 'visible' });

  // An agent registers itself, without a software statement (DCR).
  const config = await (await fetch(new URL('api/config', BASE))).json();
  const res = await fetch(`${config.gateway_url}/oauth2/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Self-registered agent', redirect_uris: ['http://127.0.0.1:45123/callback'],
      token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], software_id: 'claude-code',
    }),
  });
  assert.equal(res.status, 201);
  const clientId = (await res.json()).client_id;

  // Back to the agents: it is pending, with the providers to approve it as.
  await go(page, 'audit');
  await go(page, 'start');
  const item = page.locator(`[data-pending-client="${clientId}"]`);
  await item.waitFor();
  assert.match(await item.innerText(), /Self-registered agent/);
  assert.match(await item.innerText(), /says it is claude-code/);
  await shot(page, 'review-1-pending');

  await item.locator('[data-review-provider]').selectOption('claude-code');
  // The shipped data puts claude-code in the developer tier; an earlier
  // test may have moved it, so the tier is read from the choice.
  const choice = await item.locator('[data-review-provider] option:checked').innerText();
  const tier = (choice.match(/^claude-code — tier (\S+)$/) || [])[1];
  assert.ok(tier, `the choice "${choice}" names claude-code's tier`);
  await item.locator('[data-review-approve]').click();
  await item.waitFor({ state: 'detached' });
  await page.locator('#review-message', { hasText: 'No agent awaits review' }).waitFor();
  assert.equal(await page.locator('#review-list [data-pending-client]').count(), 0);

  // It is an agent now: approved, in claude-code's tier.
  const card = page.locator(`.agent-card[data-client-id="${clientId}"]`);
  await card.getByText('approved by an operator').waitFor();
  assert.equal((await card.locator('.agent-tier .badge').innerText()).trim(), tier);
  await shot(page, 'review-2-approved');

  // The approval is in the audit trail.
  await go(page, 'audit');
  await page.locator('#audit-table tbody tr', { hasText: 'admin/approve-client' }).first().waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test('pending review: a client that would act for no person is approved only with machine use confirmed', async () => {
  const { context, page, errors } = await open();
  await signIn(page, 'alice');
  await page.locator('#view-start').waitFor({ state: 'visible' });

  // Anybody can register a client_credentials client under any name.
  const config = await (await fetch(new URL('api/config', BASE))).json();
  const res = await fetch(`${config.gateway_url}/oauth2/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      client_name: "alice's Claude Code", grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic',
    }),
  });
  assert.equal(res.status, 201);
  const clientId = (await res.json()).client_id;

  await go(page, 'audit');
  await go(page, 'start');
  const item = page.locator(`[data-pending-client="${clientId}"]`);
  await item.waitFor();
  // The card says what it registered and that it would act for no person.
  assert.match(await item.locator(`[data-review-grants="${clientId}"]`).innerText(), /client_credentials.*client_secret_basic/s);
  assert.match(await item.locator(`[data-acts-for-no-person="${clientId}"]`).innerText(), /tokens for no person/);
  await shot(page, 'review-3-machine-pending');

  // Choosing the provider is not enough: the operator says it is a machine.
  await item.locator('[data-review-provider]').selectOption('claude-code');
  assert.equal(await item.locator('[data-review-approve]').isDisabled(), true);
  await item.locator('[data-review-machine]').check();
  assert.equal(await item.locator('[data-review-approve]').isDisabled(), false);
  await item.locator('[data-review-approve]').click();
  await item.waitFor({ state: 'detached' });

  const card = page.locator(`.agent-card[data-client-id="${clientId}"]`);
  await card.getByText('approved for machine use').waitFor();
  await shot(page, 'review-4-machine-approved');
  assert.deepEqual(errors, []);
  await context.close();
});
