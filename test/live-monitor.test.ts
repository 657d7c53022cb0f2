import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { bin, cleanEnv, root } from './helpers/cli.ts';
import { openSocket } from './helpers/ws.ts';


interface LiveRun {
  child: ChildProcess;
  url: string;
  token: string;
  stderr: () => string;
  target: string;
  done: Promise<{ code: number | null; stdout: string }>;
}

/** Starts a slowed-down demo with its monitoring server on a free port, and waits for its address. */
async function startDemo(delayMs: number): Promise<LiveRun> {
  const target = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-live-monitor-')), 'todo');
  const child = spawn(process.execPath, [bin, 'demo', '--target', target, '--replay-delay-ms', String(delayMs), '--json'], {
    cwd: root,
    env: cleanEnv({ DUO_AGENT_MONITOR_PORT: '0' }),
  });
  let stderr = '';
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const done = new Promise<{ code: number | null; stdout: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout })));
  const address = await new Promise<{ url: string; token: string }>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /monitoring: (http:\/\/127\.0\.0\.1:\d+\/) \(intervention token (\S+)\)/.exec(stderr);
      if (match?.[1] && match[2]) resolve({ url: match[1], token: match[2] });
    });
    child.on('close', () => reject(new Error(`the demo ended before its server was up:\n${stderr}`)));
  });
  return { child, ...address, stderr: () => stderr, done, target };
}

const get = async (run: LiveRun, route: string) => (await fetch(new URL(route, run.url))).json() as Promise<Record<string, unknown>>;
const intervene = (run: LiveRun, body: unknown, token = run.token) =>
  fetch(new URL('api/intervention', run.url), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function until(condition: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('during a live run: health, metrics, tasks over HTTP; phases over WebSocket; a skipped task really is skipped', async (t) => {
  const run = await startDemo(400);
  t.teardown(() => run.child.kill('SIGKILL'));
  const health = await get(run, 'api/health');
  t.like(health, { status: 'healthy' });
  t.deepEqual(Object.keys(health.agents as object).sort(), ['ever_thinker', 'merge_queue', 'moderator', 'monitor', 'techlead_1', 'techlead_2', 'techlead_3']);
  t.deepEqual((health.techleads as { id: string }[]).map((slot) => slot.id), ['techlead-1', 'techlead-2', 'techlead-3'], 'limits.max_parallel_tasks 3 by default');

  const { socket: ws, messages } = await openSocket(`${run.url.replace('http', 'ws')}ws`);
  t.teardown(() => ws.close());

  await until(async () => ((await get(run, 'api/tasks')).tasks as unknown[] | undefined)?.length === 3);
  const refused = await intervene(run, { action: 'skip', task_id: 'T3' }, 'wrong-token');
  t.is(refused.status, 401);
  const malformed = await fetch(new URL('api/intervention', run.url), { method: 'POST', headers: { authorization: `Bearer ${run.token}` }, body: '{"action":' });
  t.is(malformed.status, 400);
  const skipped = await intervene(run, { action: 'skip', task_id: 'T3', reason: 'docs later' });
  t.is(skipped.status, 202);

  const metrics = await get(run, 'api/metrics');
  t.is(typeof metrics.tokens_used, 'number');
  const prometheus = await (await fetch(new URL('metrics', run.url))).text();
  t.regex(prometheus, /moderator_tokens_used/);

  const { code, stdout } = await run.done;
  const summary = JSON.parse(stdout) as { outcome: string; tasksTotal: number; tasksCompleted: number };
  t.is(code, 5, run.stderr());
  t.is(summary.outcome, 'needs_human', 'a skipped task needs a person to look at it');
  t.is(summary.tasksCompleted, 2);
  t.regex(run.stderr(), /intervention received: skip T3: docs later/, 'the console says what a person did');
  const db = new Database(path.join(run.target, '.duo-agent', 'moderator.db'), { readonly: true });
  t.teardown(() => db.close());
  t.like(db.prepare("SELECT from_actor, to_actor FROM messages WHERE type = 'task.skip'").get(), { from_actor: 'human', to_actor: 'orchestrator' }, 'journaled');
  t.true(messages.some((message) => message.type === 'hello'));
  t.true(messages.some((message) => message.type === 'phase'));
  t.true(messages.some((message) => message.type === 'message'));
});

test('abort from the monitoring server stops a live run as cancelled (exit 6)', async (t) => {
  const run = await startDemo(300);
  t.teardown(() => run.child.kill('SIGKILL'));
  await until(async () => (await get(run, 'api/health')).phase === 'implementing');
  const aborted = await intervene(run, { action: 'abort', reason: 'wrong requirements' });
  t.is(aborted.status, 202);
  const { code, stdout } = await run.done;
  t.is(code, 6);
  t.like(JSON.parse(stdout), { outcome: 'cancelled', reason: 'wrong requirements' });
});
