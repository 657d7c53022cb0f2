import fs from 'node:fs';
import os from 'node:os';
import test from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startFixture, type Fixture } from './helpers/monitor-fixture.ts';

const executablePath = '/usr/bin/chromium';
const agents = ['orchestrator', 'moderator', 'techlead-1', 'monitor', 'everThinker'];

// Chosen when the file loads, so a machine without Chromium reports these tests as skipped.
const hasChromium = fs.existsSync(executablePath);
const browserTest = hasChromium ? test : test.skip;
if (!hasChromium) console.log(`dashboard tests skipped: chromium is not installed (apt-get install -y chromium); looked for ${executablePath}`);

let browser: Browser | undefined;

test.before(async () => {
  if (!hasChromium) return;
  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

test.after.always(async () => {
  await browser?.close();
});

/** The state paths drawn for an agent and those marked active. */
const drawn = (page: Page, agent: string) =>
  page.$$eval(`[data-agent="${agent}"] [data-state]`, (nodes) =>
    nodes.map((node) => ({ path: node.getAttribute('data-state') ?? '', active: node.classList.contains('active') })),
  );
const active = async (page: Page, agent: string) => (await drawn(page, agent)).filter((node) => node.active).map((node) => node.path);

async function open(t: { teardown: (fn: () => Promise<void>) => void }, fixture: Fixture): Promise<Page> {
  const page = await (browser as Browser).newPage();
  t.teardown(() => page.close());
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(fixture.monitoring.url);
  await page.waitForSelector('[data-agent="moderator"] [data-state="idle"].active');
  if (errors.length > 0) throw new Error(`the page threw: ${errors.join('; ')}`);
  return page;
}

for (const mode of ['WebSocket', 'polling'] as const) {
  browserTest(`the dashboard draws every agent's statechart and moves the highlight with the run (${mode})`, async (t) => {
    const fixture = await startFixture({ enableWebSocket: mode === 'WebSocket' });
    t.teardown(() => fixture.close());
    const page = await open(t, fixture);
    if (mode === 'WebSocket') await page.waitForFunction(() => document.getElementById('link')?.textContent === 'live');

    for (const agent of agents) t.true((await drawn(page, agent)).length >= 3, `${agent} has its states drawn`);
    t.deepEqual((await drawn(page, 'orchestrator')).map((node) => node.path), ['clarifying', 'awaitingApproval', 'implementing', 'implementing.working', 'implementing.revising', 'stopped']);
    t.deepEqual(await active(page, 'orchestrator'), ['clarifying']);
    t.deepEqual(await active(page, 'monitor'), ['running', 'running.watching'], 'a nested state and its parent are both active');
    t.is(await page.locator('[data-agent="monitor"] [data-state="running"] [data-state="running.watching"]').count(), 1, 'nested states are drawn inside their parent');
    t.deepEqual(await active(page, 'moderator'), ['idle']);

    fixture.actor.send({ type: 'test.advance' });
    await page.waitForSelector('[data-agent="moderator"] [data-state="planning"].active');
    t.deepEqual(await active(page, 'moderator'), ['planning']);
    await page.waitForSelector('[data-agent="orchestrator"] [data-state="implementing.working"].active');
    t.deepEqual(await active(page, 'orchestrator'), ['implementing', 'implementing.working']);
    await page.waitForFunction(() => document.getElementById('phase')?.textContent?.startsWith('implementing'));

    // The rest of the page: tasks by status, PRs with verdicts, budget gauges.
    await page.waitForSelector('#board [data-task="T1"]');
    t.regex((await page.textContent('#board')) ?? '', /T3 Write the README/);
    t.regex((await page.textContent('#prs')) ?? '', /request_changes - missing test/);
    await page.waitForFunction(() => document.getElementById('gauges')?.textContent?.includes('tokens: 4700 of 100000'));
    await page.waitForFunction(() => document.getElementById('gauges')?.textContent?.includes('context techlead (summarise): 2950 tokens of 10000 tokens'));

    // The end of the run: the root's final state lights up, the stopped agents have none.
    fixture.actor.send({ type: 'test.fail' });
    await page.waitForSelector('[data-agent="orchestrator"] [data-state="stopped"].active');
    await page.waitForSelector('[data-agent="moderator"].stopped');
    t.deepEqual(await active(page, 'moderator'), []);
    t.deepEqual(await active(page, 'orchestrator'), ['stopped']);
  });
}

browserTest('text from the run is shown as text, never as markup', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  fixture.store.addTasks('r1', [{ id: 'T9', title: '<img src=x onerror="window.pwned=1">', type: 'feature', description: 'd', acceptanceCriteria: [], dependsOn: [], origin: 'plan' }]);
  const page = await open(t, fixture);
  await page.waitForSelector('#board [data-task="T9"]');
  t.regex((await page.textContent('[data-task="T9"]')) ?? '', /<img src=x/);
  t.is(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
});

/** This machine's own non-loopback address: the page is then opened as from another machine, where every request needs the token. */
const ownAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((address) => address !== undefined && !address.internal && address.family === 'IPv4')?.address;
// Chosen when the file loads, so a machine without what it needs reports the test as skipped.
const canOpenFromElsewhere = ownAddress !== undefined && fs.existsSync(executablePath);
if (!canOpenFromElsewhere) {
  console.log(`skipped: the dashboard with a token needs chromium at ${executablePath} and a non-loopback IPv4 address on this machine (${ownAddress ?? 'none found'})`);
}
const fromElsewhere = canOpenFromElsewhere ? test : test.skip;

fromElsewhere('on a non-loopback address, the dashboard opened with the printed ?token= works live and drops the token from the address bar', async (t) => {
  const fixture = await startFixture({ host: '0.0.0.0' });
  t.teardown(() => fixture.close());
  const page = await (browser as Browser).newPage();
  t.teardown(() => page.close());
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  const elsewhere = `http://${ownAddress}:${new URL(fixture.monitoring.url).port}/`;
  t.is((await fetch(elsewhere)).status, 401, 'the page itself needs the token from there');
  await page.goto(`${elsewhere}?token=${encodeURIComponent(fixture.monitoring.token)}`);
  await page.waitForFunction(() => document.getElementById('link')?.textContent === 'live');
  await page.waitForSelector('[data-agent="moderator"] [data-state="idle"].active');
  await page.waitForSelector('#board [data-task="T1"]');
  await page.waitForFunction(() => document.getElementById('health')?.textContent === 'healthy');
  t.false(page.url().includes('token='), 'the token is not left in the address bar');
  t.is(await page.inputValue('#token'), fixture.monitoring.token, 'the intervention form has it');
  fixture.actor.send({ type: 'test.advance' });
  await page.waitForSelector('[data-agent="moderator"] [data-state="planning"].active');
  t.deepEqual(errors, []);
});
