// Approvals in the browser (issue 20: human approval for the calls that
// matter), against the real `pbac up` that TestApprovalsInBrowser
// (cmd/pbac) starts. That test has the CI bot's deploy held — a go-sdk
// client on revision 2026-07-28, answered input_required with the
// approval page — and hands this test the page (PBAC_APPROVAL_URL), the
// demo users' password (PBAC_DEMO_PASSWORD) and its control endpoint
// (PBAC_APPROVALS_CONTROL): POST /retry makes the client's retry with
// the requestState it was given, which must go through once, and
// answers the deploy's result. Without them (the other browser tests'
// run) this skips.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.PBAC_DASHBOARD;
const APPROVAL_URL = process.env.PBAC_APPROVAL_URL;
const CONTROL = process.env.PBAC_APPROVALS_CONTROL;
const PASSWORD = process.env.PBAC_DEMO_PASSWORD;
const ARTIFACTS = process.env.PBAC_ARTIFACTS || 'artifacts';
const TIMEOUT = 20_000;
const skip = CONTROL && APPROVAL_URL ? false : 'run by TestApprovalsInBrowser (cmd/pbac), which sets PBAC_APPROVALS_CONTROL and PBAC_APPROVAL_URL';

let browser;

before(async () => {
  if (skip) return;
  assert.ok(BASE, 'PBAC_DASHBOARD must name the dashboard URL');
  assert.ok(PASSWORD, 'PBAC_DEMO_PASSWORD must give the demo users\' password');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps'],
  });
});

after(async () => {
  await browser?.close();
});

async function control(what) {
  const res = await fetch(`${CONTROL}/${what}`, { method: 'POST', signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  assert.ok(res.ok, `control ${what}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function signIn(page, who) {
  await page.locator('#signin-username').waitFor({ state: 'visible' });
  await page.fill('#signin-username', who);
  await page.fill('#signin-password', PASSWORD);
  await page.click('#signin-submit');
  await page.locator('#signout').waitFor({ state: 'visible' });
}

test('approvals: the approval link, alice may not decide, bob approves, the retry goes through once, its story in the audit trail; the onboarding runs deploy-approval', { skip }, async () => {
  const id = APPROVAL_URL.split('/').pop();
  assert.match(id, /^apr_[a-z2-7]{26}$/, `the approval URL ${APPROVAL_URL} does not end in an approval id`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  // alice's refused decision answers 403, and the browser logs it.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 403/.test(m.text())) errors.push(`console: ${m.text()}${m.location().url ? ` (${m.location().url})` : ''}`); });

  // The link, as a person follows it, signed out: the sign-in form,
  // on the page of that approval.
  await page.goto(APPROVAL_URL);
  await page.locator('#signin-username').waitFor({ state: 'visible' });
  const landed = new URL(page.url());
  assert.equal(landed.pathname, '/ui/');
  assert.equal(landed.search, '?via=link');
  assert.equal(landed.hash, `#approvals/${id}`);
  assert.equal(await page.locator('#nav').isVisible(), false, 'the navigation shows before anyone signed in');
  await shot(page, 'approvals-1-link-signed-out');

  // alice (engineering, dba) sees it, may not decide it, and is told why.
  await signIn(page, 'alice');
  await page.locator('#view-approvals').waitFor({ state: 'visible' });
  const item = (status) => page.locator(`li[data-approval="${id}"][data-approval-status="${status}"]`);
  const pending = page.locator(`#approvals-list li[data-approval="${id}"][data-approval-status="pending"]`);
  await pending.waitFor();
  assert.match(await pending.innerText(), /jenkins\.trigger_deploy/);
  assert.equal(await page.locator(`button[data-approve="${id}"]`).count(), 0, 'alice is offered Approve');
  const why = (await pending.locator('[data-approval-why]').innerText()).trim();
  assert.match(why, /not an approver/, `alice is told ${why}`);
  assert.match(why, /release/);
  assert.equal(await page.locator('#approvals-badge').isVisible(), false, 'the badge counts an approval alice may not decide');
  // She tries anyway, through the page's own API client: the gateway
  // checks the approver rule when she decides, not only when it lists.
  const refusal = await page.evaluate(async (apr) => {
    const { api } = await import('/ui/js/api.js');
    try {
      await api('POST', `/ui/api/approvals/${apr}/approve`, { comment: 'I would like it out today', via: 'link' });
      return { status: 200 };
    } catch (e) {
      return { status: e.status, message: e.message };
    }
  }, id);
  assert.equal(refusal.status, 403, `alice's approval: ${JSON.stringify(refusal)}`);
  assert.match(refusal.message, /not an approver/);
  await page.click('#approvals-refresh');
  await pending.waitFor();
  await shot(page, 'approvals-2-alice-may-not');

  // Signing out while the page's own poll is still on its way: the poll
  // is answered before the session ends, so nothing is refused with a 401
  // (the console check at the end). The route holds the poll back 300 ms.
  let polls = 0;
  await page.route('**/ui/api/approvals', async (route) => {
    polls++;
    await new Promise((r) => setTimeout(r, 300));
    await route.continue();
  });
  await page.click('#approvals-refresh');
  await page.click('#signout');
  await page.locator('#signin-username').waitFor({ state: 'visible' });
  await page.unroute('**/ui/api/approvals');
  assert.ok(polls >= 1, 'no approvals poll was on its way when alice signed out');

  // bob (release) signs in on the same page.
  await signIn(page, 'bob');
  await page.locator('#view-approvals').waitFor({ state: 'visible' });
  await pending.waitFor();
  await page.locator('#approvals-badge').filter({ hasText: /^\d+$/ }).waitFor();
  assert.ok(Number(await page.locator('#approvals-badge').innerText()) >= 1);
  const text = await pending.innerText();
  assert.match(text, /jenkins\.trigger_deploy/, 'the tool');
  assert.match(text, /Agent .*ci-bot/, 'the agent');
  assert.match(text, /ci_agent/, 'its tier');
  assert.match(text, /itself \(no person\)/, 'acting for no person');
  const args = JSON.parse(await pending.locator('[data-approval-args]').innerText());
  assert.deepEqual(args, { job: 'deploy-prod', environment: 'production' });
  const reason = (await pending.locator('[data-approval-reason]').innerText()).trim();
  assert.ok(reason.length > 'Policy: '.length + 3, `the reason is ${JSON.stringify(reason)}`);
  assert.match(reason, /deploy-needs-release/, 'the approval rule');
  await pending.getByText('Opened from the approval link').waitFor();
  await pending.screenshot({ path: path.join(ARTIFACTS, 'approvals-3-bob-pending.png') });

  const COMMENT = 'Build 412 is green, ship it.';
  await page.fill(`textarea[data-approval-comment="${id}"]`, COMMENT);
  await page.click(`button[data-approve="${id}"]`);
  const granted = page.locator(`#approvals-closed li[data-approval="${id}"][data-approval-status="granted"]`);
  await granted.waitFor();
  assert.equal((await page.locator(`[data-approval-error="${id}"]`).innerText()).trim(), '');
  assert.match(await granted.locator('[data-approval-decided]').innerText(), /Approved by bob \(you\) via link/);
  assert.equal((await granted.locator('[data-approval-comment-text]').innerText()).trim(), COMMENT);
  await shot(page, 'approvals-4-bob-approved');

  // The agent's retry with the gateway's requestState: the deploy.
  const retried = await control('retry');
  assert.match(retried.text, /deploy-prod/);
  await page.click('#approvals-refresh');
  await item('used').waitFor();

  // Its story: asked for, held, refused to alice, approved by bob with
  // his comment, allowed, used.
  await item('used').locator(`a[data-approval-story="${id}"]`).click();
  await page.locator('#view-audit').waitFor({ state: 'visible' });
  const storyEl = page.locator('#audit-story');
  await storyEl.filter({ hasText: `The story of approval ${id}` }).waitFor();
  // The audit index is written behind the calls: search again until
  // the replay's refusal, the last record, is in.
  let story = await storyEl.innerText();
  for (let i = 0; i < 20 && !story.includes('gateway denied the call'); i++) {
    await page.waitForTimeout(500);
    await page.click('#audit-search');
    await page.locator('#audit-search:enabled').waitFor();
    story = await storyEl.innerText();
  }
  console.log(story);
  const at = (what) => {
    const i = story.indexOf(what);
    assert.ok(i >= 0, `the story does not say "${what}": ${story}`);
    return i;
  };
  assert.ok(at('asked for') < at('refused to someone who may not decide it (alice)'));
  assert.ok(at('(alice)') < at(`approved by bob (“${COMMENT}”)`));
  assert.ok(at('approved by bob') < at('used by the retried call'));
  assert.ok(at('gateway held the call') < at('gateway allowed the retried call'));
  assert.ok(at('approved by bob') < at('gateway allowed the retried call'));
  assert.ok(at('used by the retried call') < at('gateway denied the call'), 'the replay is not in the story');
  assert.equal(await page.locator('#audit-approval').inputValue(), id);
  const rows = page.locator('#audit-table tbody tr');
  assert.ok(await rows.count() >= 5, `the story has ${await rows.count()} records`);
  for (const row of await rows.all()) {
    assert.equal(await row.locator(`a[data-approval-story="${id}"]`).count(), 1, `a record of another approval: ${await row.innerText()}`);
  }
  assert.ok(await page.locator('#audit-table tbody').getByText('approval story · by bob').count() >= 1);
  await page.locator('#view-audit').screenshot({ path: path.join(ARTIFACTS, 'approvals-5-story.png') });

  // The onboarding shows the third outcome live: the CI bot's deploy is
  // held, Bob approves it, the retry is allowed.
  await page.click('a[href="#start"]');
  await page.locator('#view-start').waitFor({ state: 'visible' });
  const run = page.locator('#live-approval-run');
  await run.filter({ hasText: 'The CI bot\'s deploy waits for Bob' }).waitFor();
  await run.click();
  const steps = page.locator('#live-approval-results > li');
  await page.locator('#live-approval-done .done-line').waitFor({ timeout: 60_000 });
  assert.deepEqual(await steps.evaluateAll((els) => els.map((e) => `${e.dataset.stepKind}:${e.dataset.stepDecision}`)),
    ['call:allow', 'call:hold', 'approve:allow', 'repeat:allow']);
  const held = steps.nth(1);
  assert.equal((await held.locator('.decision-word').textContent()).trim(), 'held');
  const link = held.locator('a[data-approval-link]');
  const heldId = await link.getAttribute('data-approval-link');
  assert.match(heldId, /^apr_[a-z2-7]{26}$/);
  assert.notEqual(heldId, id, 'the run reused the approval already used');
  assert.equal(await link.getAttribute('href'), `${new URL(BASE).origin}/ui/approvals/${heldId}`);
  const decided = steps.nth(2);
  assert.equal((await decided.locator('.decision-word').textContent()).trim(), 'decided');
  assert.match(await decided.innerText(), new RegExp(`bob approves ${heldId}: Build is green`));
  assert.equal((await steps.nth(3).locator('.decision-word').textContent()).trim(), 'allowed');
  assert.match(await page.locator('#live-approval-done').innerText(), /2 allowed · 0 refused · 1 held for an approval/);
  await page.locator('#live-approval').screenshot({ path: path.join(ARTIFACTS, 'approvals-6-onboarding.png') });

  // The narrative demo's card says who decides.
  await page.click('a[href="#demo"]');
  const card = page.locator('[data-scenario="deploy-approval"]');
  await card.waitFor();
  assert.match(await card.locator('.plain-steps').innerText(), /bob approves/);

  assert.deepEqual(errors, []);
  await context.close();
});
