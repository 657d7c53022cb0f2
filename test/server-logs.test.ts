import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { maxLimit, maxLineBytes, readLogs, scanBudgetBytes, type LogQuery } from '../server/logs.ts';
import { startFixture, type Fixture } from './helpers/monitor-fixture.ts';

const line = (time: number, agent: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ level: time % 5 === 0 ? 50 : 30, time, pid: 1, hostname: 'h', runId: 'r1', agent, ...extra, msg: `line ${time}` });

/**
 * Three agent files whose times interleave, ~1.6 MB in all (many scan budgets), with torn lines,
 * a line past the length limit, and lines of another run. Returns the times a full walk must give.
 */
function writeInterleaved(dir: string): { times: number[]; taskTimes: number[] } {
  const agents = ['moderator', 'orchestrator', 'techlead'];
  const files: Record<string, string[]> = { moderator: [], orchestrator: [], techlead: [] };
  const times: number[] = [];
  const taskTimes: number[] = [];
  for (let time = 1; time <= 6000; time += 1) {
    const agent = agents[(time * 7) % 3] as string;
    const task = time % 11 === 0 ? { taskId: 'T3' } : {};
    files[agent]?.push(line(time, agent, { padding: 'p'.repeat(200 + (time % 50)), ...task }));
    times.push(time);
    if (time % 11 === 0) taskTimes.push(time);
    if (time % 997 === 0) files[agent]?.push('{"level":30,"time":99999,"torn');
    if (time % 1500 === 0) files[agent]?.push(line(100_000 + time, agent, { runId: 'other' }));
  }
  files.techlead?.splice(2000, 0, line(50_000, 'techlead', { huge: 'h'.repeat(maxLineBytes + 10) }));
  for (const agent of agents) fs.writeFileSync(path.join(dir, `${agent}.jsonl`), `${files[agent]?.join('\n')}\n`);
  return { times: times.reverse(), taskTimes: taskTimes.reverse() };
}

/** Follows next_cursor to the end; returns the times and how many pages it took. */
function walk(dir: string, query: LogQuery): { times: number[]; pages: number } {
  const times: number[] = [];
  let pages = 0;
  let cursor: string | null | undefined;
  do {
    const page = readLogs(dir, 'r1', { ...query, ...(cursor ? { cursor } : {}) });
    pages += 1;
    times.push(...page.entries.map((entry) => entry.time));
    cursor = page.next_cursor;
    if (pages > 10_000) throw new Error('the walk does not end');
  } while (cursor);
  return { times, pages };
}

const tempLogs = () => fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-logs-'));

test('a walk through logs many budgets long returns every entry of the run once, newest first, whatever the page size', (t) => {
  const dir = tempLogs();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const expected = writeInterleaved(dir);
  const totalBytes = fs.readdirSync(dir).reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);
  for (const limit of [maxLimit, 37, 1]) {
    const { times, pages } = walk(dir, { limit });
    t.deepEqual(times, expected.times, `limit ${limit}: torn lines, the overlong line and other runs left out`);
    t.true(pages >= Math.floor(totalBytes / scanBudgetBytes), `limit ${limit}: ${pages} pages, each within the scan budget`);
  }
  t.deepEqual(walk(dir, { task: 'T3', limit: maxLimit }).times, expected.taskTimes, 'a filter that matches little pages on to the end');
  t.deepEqual(walk(dir, { level: 'error', limit: 100 }).times, expected.times.filter((time) => time % 5 === 0));
});

test('a file that is one 10 MB line without a newline is walked in bounded pages and yields nothing', (t) => {
  const dir = tempLogs();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'techlead.jsonl'), `{"level":30,"time":1,"msg":"${'x'.repeat(10 * 1024 * 1024)}`);
  fs.writeFileSync(path.join(dir, 'moderator.jsonl'), `${line(5, 'moderator')}\n${line(7, 'moderator')}\n`);
  const { times, pages } = walk(dir, { limit: maxLimit });
  t.deepEqual(times, [7, 5], 'the other file is read as usual');
  t.true(pages >= (10 * 1024 * 1024) / scanBudgetBytes, 'the line is passed over page by page, not in one read');
});

async function get(fixture: Fixture, route: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(fixture.url(route));
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

test('cursors and limits the server did not give out are refused with 400 and one line', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  fs.writeFileSync(path.join(fixture.logsDir, 'orchestrator.jsonl'), `${line(1, 'orchestrator')}\n${line(2, 'orchestrator')}\n`);
  const size = fs.statSync(path.join(fixture.logsDir, 'orchestrator.jsonl')).size;
  const refusals: [string, RegExp][] = [
    [`cursor=${cursorOf({ 'orchestrator.jsonl': 1_000_000_000 })}`, /^cursor: not a cursor this server gave out; start again without one$/],
    [`cursor=${cursorOf({ 'orchestrator.jsonl': [1_000_000_000] })}`, new RegExp(`^cursor: offset 1000000000 is past the end of orchestrator\\.jsonl \\(${size} bytes\\); start again without a cursor$`)],
    [`cursor=${cursorOf({ 'orchestrator.jsonl': [size + 1] })}`, /is past the end of orchestrator\.jsonl/],
    [`cursor=${cursorOf({ 'orchestrator.jsonl': [-1] })}`, /^cursor: not a cursor/],
    [`cursor=${cursorOf({ 'orchestrator.jsonl': [1.5] })}`, /^cursor: not a cursor/],
    [`cursor=${cursorOf({ 'orchestrator.jsonl': [4, 'soon'] })}`, /^cursor: not a cursor/],
    [`cursor=${cursorOf({ '../../moderator.db': [0] })}`, /^cursor: names "\.\.\/\.\.\/moderator\.db", which is not a log file here; start again without a cursor$/],
    [`cursor=${cursorOf({ 'secrets.jsonl': [0] })}`, /which is not a log file here/],
    [`cursor=${'A'.repeat(5000)}`, /^cursor: not a cursor/],
    ['cursor=garbage', /^cursor: not a cursor/],
    ['limit=0', /^limit: expected a whole number from 1 to 1000, found "0"$/],
    ['limit=-5', /found "-5"/],
    ['limit=abc', /found "abc"/],
    ['limit=1.5', /found "1.5"/],
    ['limit=1e9', /found "1e9"/],
    ['limit=1000000000', /found "1000000000"/],
    ['limit=1001', /found "1001"/],
    ['limit=', /found ""/],
  ];
  for (const [query, message] of refusals) {
    const { status, body } = await get(fixture, `/api/logs?${query}`);
    t.is(status, 400, query);
    t.regex(String(body.error), message, query);
  }
  const all = await get(fixture, `/api/logs?limit=${maxLimit}&cursor=${cursorOf({ 'orchestrator.jsonl': [size] })}`);
  t.is(all.status, 200);
  t.deepEqual((all.body.entries as { time: number }[]).map((entry) => entry.time), [2, 1]);
});

/**
 * The attacker: another process, as it would be, so that its own work (fetch, JSON) is not counted
 * as this process's. Plain JavaScript, given the server's address and the cursors as arguments.
 */
const attackerSource = `
const [base, cursorList] = process.argv.slice(1);
const cursors = JSON.parse(cursorList);
const statuses = [];
const attack = async (route) => {
  const response = await fetch(base + route);
  statuses.push(response.status);
  return response.json();
};
const follow = async (query, maxPages) => {
  let page = await attack('/api/logs?' + query);
  for (let pages = 1; page.next_cursor && pages < maxPages; pages += 1) page = await attack('/api/logs?' + query + '&cursor=' + page.next_cursor);
};
(async () => {
  for (let round = 0; round < 10; round += 1) {
    for (const cursor of cursors) await attack('/api/logs?cursor=' + cursor);
    await attack('/api/logs?limit=1000000000');
    await attack('/api/logs?limit=-1');
    await attack('/api/logs?limit=lots');
    await attack('/api/logs?limit=1000');
    await attack('/api/logs?limit=1000&task=nothing-matches');
  }
  await follow('agent=monitor&limit=1000', 100);
  await follow('limit=1000&task=nothing-matches', 100);
  process.stdout.write(JSON.stringify(statuses));
})();
`;

test('the cursor attack and its variants never hold up the run: health answers within 50 ms of work throughout', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  // ~12 MB of ordinary lines in two files and a file that is one 10 MB line.
  const ordinary = Array.from({ length: 20_000 }, (_, index) => line(index + 1, 'orchestrator', { padding: 'p'.repeat(300) })).join('\n');
  fs.writeFileSync(path.join(fixture.logsDir, 'orchestrator.jsonl'), `${ordinary}\n`);
  fs.writeFileSync(path.join(fixture.logsDir, 'techlead.jsonl'), `${ordinary.replaceAll('"orchestrator"', '"techlead"')}\n`);
  fs.writeFileSync(path.join(fixture.logsDir, 'monitor.jsonl'), 'x'.repeat(10 * 1024 * 1024));

  /**
   * The health poller: one keep-alive connection, a request as soon as the last one is answered.
   * Each answer is measured twice: wall time, and the CPU time this process (the server and this
   * poller, nothing else) spent while the request was outstanding. The second is the blocking the
   * issue is about: on this shared 2-core machine the wall time of a health answer reached 140 ms
   * with no log request at all, when other processes held the cores; the work a request makes the
   * server's event loop do does not depend on them.
   */
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const healthOnce = () =>
    new Promise<{ wallMs: number; busyMs: number }>((resolve, reject) => {
      const started = performance.now();
      const cpu = process.cpuUsage();
      http
        .get(fixture.url('/api/health'), { agent }, (response) => {
          response.resume();
          response.on('end', () => {
            const used = process.cpuUsage(cpu);
            if (response.statusCode !== 200) reject(new Error(`health: ${response.statusCode}`));
            else resolve({ wallMs: performance.now() - started, busyMs: (used.user + used.system) / 1000 });
          });
        })
        .on('error', reject);
    });
  // Warm up first: the first requests compile the handlers, which holds the loop for a moment.
  await healthOnce();
  for (const query of ['limit=1000', 'limit=1000&task=nothing-matches', 'agent=monitor']) await (await fetch(fixture.url(`/api/logs?${query}`))).json();

  const cursors = [
    { 'orchestrator.jsonl': 1_000_000_000 },
    { 'orchestrator.jsonl': [1_000_000_000] },
    { 'orchestrator.jsonl': [1_000_000_000], 'monitor.jsonl': [9e15] },
    { 'monitor.jsonl': [-1] },
    { 'nothing.jsonl': [0] },
  ].map(cursorOf);
  const attacker = spawn(process.execPath, ['-e', attackerSource, fixture.url('/').replace(/\/$/, ''), JSON.stringify(cursors)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => attacker.kill('SIGKILL'));
  let output = '';
  attacker.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let attacking = true;
  const attacked = new Promise<number[]>((resolve, reject) => {
    attacker.once('close', (code) => (code === 0 ? resolve(JSON.parse(output) as number[]) : reject(new Error(`the attacker exited with ${code}`))));
  }).finally(() => {
    attacking = false;
  });
  const answers: { wallMs: number; busyMs: number }[] = [];
  while (attacking) answers.push(await healthOnce());
  const statuses = await attacked;

  t.true(statuses.every((status) => status === 200 || status === 400), `every attack was answered: ${[...new Set(statuses)].join(', ')}`);
  t.is(statuses.filter((status) => status === 400).length, 10 * (cursors.length + 3), 'the bad cursors and limits were refused');
  t.true(answers.length >= 20, `health kept answering (${answers.length} answers during ${statuses.length} log requests)`);
  const worstBusy = Math.max(...answers.map((answer) => answer.busyMs));
  const worstWall = Math.max(...answers.map((answer) => answer.wallMs));
  t.log(`${statuses.length} log requests; ${answers.length} health answers, worst ${worstBusy.toFixed(1)} ms of work, ${worstWall.toFixed(1)} ms of wall time`);
  t.true(worstBusy < 50, `every health answer within 50 ms of this process's work; the worst took ${worstBusy.toFixed(1)} ms`);
});
