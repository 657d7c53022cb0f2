/**
 * What a new user meets first: the demo says how to watch it and keeps its dashboard up when
 * asked; `--inspect` says when nothing receives its events.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { relayListening } from '../cli/inspect-relay.ts';
import { bin, cleanEnv, cliAsync, root } from './helpers/cli.ts';

const newTarget = (name: string) => path.join(fs.mkdtempSync(path.join(os.tmpdir(), `moderator-${name}-`)), 'todo');

test('--keep-serving: after the demo ends its dashboard and API stay up until Ctrl-C, then it exits with the run outcome', async (t) => {
  const child = spawn(process.execPath, [bin, 'demo', '--target', newTarget('serve'), '--port', '0', '--keep-serving', '--json'], {
    cwd: root,
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const serving = /the dashboard stays up at (http:\/\/\S+\/) until Ctrl-C/.exec(stderr);
      if (serving?.[1]) resolve(serving[1]);
    });
    void exited.then(() => reject(new Error(`the demo ended without serving:\n${stderr}`)));
  });

  t.is(stdout, '', 'the summary follows when serving ends');
  const page = await fetch(url);
  t.is(page.status, 200);
  t.regex(await page.text(), /<html/i);
  const health = (await (await fetch(new URL('api/health', url))).json()) as { outcome: string | null; phase: string };
  t.like(health, { outcome: 'done', phase: 'stopped' });
  t.false(/to watch it on the dashboard/.test(stderr), 'no hint for someone who already asked to watch');

  child.kill('SIGINT');
  t.is(await exited, 0, 'Ctrl-C ends the serving, not the finished run');
  t.is((JSON.parse(stdout) as { outcome: string }).outcome, 'done');
  await t.throwsAsync(fetch(url), undefined, 'the port is released');
});

// `--inspect` always means ws://localhost:8081; something else on this machine may hold it.
// Tests are declared synchronously, so a child process probes the port.
const probe = "require('node:net').connect(8081, 'localhost').on('connect', () => process.exit(0)).on('error', () => process.exit(1))";
const relayUp = spawnSync(process.execPath, ['-e', probe]).status === 0;
if (relayUp) console.log('front-door: the --inspect warning test is skipped: something listens on localhost:8081 here');

(relayUp ? test.skip : test)('--inspect without a relay warns once, the demo says how to watch it, and the run is not held up', async (t) => {
  const run = await cliAsync(['demo', '--target', newTarget('inspect'), '--port', '0', '--inspect', '--max-tokens', '5000'], { timeoutMs: 60_000 });
  t.is(run.code, 3, run.stderr);
  const warnings = run.stderr.split('\n').filter((line) => line.includes('warning: no Stately inspector relay listens at ws://localhost:8081'));
  t.is(warnings.length, 1, run.stderr);
  t.regex(warnings[0] ?? '', /createInspectorServer/, 'with how to start one');
  t.regex(run.stderr, /to watch it on the dashboard: --replay-delay-ms \d+ .* --keep-serving/);
});

test('relayListening tells a listening port from a closed one', async (t) => {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  t.true(await relayListening(`ws://127.0.0.1:${port}`));
  await new Promise((resolve) => server.close(resolve));
  t.false(await relayListening(`ws://127.0.0.1:${port}`));
});
