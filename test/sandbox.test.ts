import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { childProcessEnv } from '../config/index.ts';
import { GitService } from '../services/git/git-service.ts';
import type { ToolResult } from '../services/llm/provider.ts';
import { BwrapSandbox, UNSANDBOXED, probeBwrap, resolveSandbox, type CommandSandbox } from '../services/sandbox/sandbox.ts';
import { runTestCommand } from '../services/test-runner.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';

/*
 * The escapes found against run_command (issue 9, item 8), each tried inside the bubblewrap
 * sandbox against a real repository and a task worktree made by GitService, with an `outside`
 * folder next to them that no command may change. Where bwrap cannot run, the tests that need it
 * are skipped and say why.
 */

const BWRAP = '/usr/bin/bwrap';
const probe = await probeBwrap({ bwrap: BWRAP, network: false });
const withBwrap = probe.ok ? test : test.skip;
if (!probe.ok) console.log(`test/sandbox.test.ts: skipping the sandbox escapes: ${probe.reason}`);

const identity = { name: 'Moderator Bot', email: 'moderator@example.invalid' };

interface Box {
  base: string;
  root: string;
  worktree: string;
  outside: string;
  git: GitService;
  sh: (cwd: string, ...args: string[]) => string;
  run: (command: string, options?: { sandbox?: CommandSandbox; timeoutMs?: number; env?: Record<string, string> }) => Promise<ToolResult>;
}

async function box(t: ExecutionContext, hostEnv: Record<string, string> = {}): Promise<Box> {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-sandbox-')));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const home = path.join(base, 'home');
  const outside = path.join(base, 'outside');
  const root = path.join(base, 'target');
  for (const dir of [home, outside, root]) fs.mkdirSync(dir);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home };
  const sh = (cwd: string, ...args: string[]): string =>
    execFileSync('git', args, { cwd, env: { ...env, GIT_CONFIG_NOSYSTEM: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  fs.writeFileSync(path.join(root, 'README.md'), '# demo\n');
  sh(root, 'init', '-q', '-b', 'main');
  sh(root, 'add', '-A');
  sh(root, '-c', 'user.name=T', '-c', 'user.email=t@example.invalid', 'commit', '-q', '-m', 'first');
  const options = { root, identity, baseBranch: 'main', env };
  await GitService.prepareTarget(options);
  const git = new GitService(options);
  const worktree = path.join(root, '.duo-agent', 'worktrees', 'T1');
  await git.ensureWorktree('duo-agent/feature/T1', worktree);
  let next = 0;
  const run: Box['run'] = (command, runOptions = {}) => {
    const tools = createWorktreeTools({
      root: worktree,
      allowedCommands: ['node', 'make'],
      commandTimeoutMs: runOptions.timeoutMs ?? 20_000,
      outputCapBytes: 16 * 1024,
      env: runOptions.env ?? childProcessEnv({ ...env, ...hostEnv }),
      sandbox: runOptions.sandbox ?? new BwrapSandbox({ bwrap: BWRAP, network: false }),
      baseBranch: 'main',
    });
    return tools.run({ id: `call_${(next += 1)}`, name: 'run_command', input: { command } });
  };
  return { base, root, worktree, outside, git, sh, run };
}

/** A node one-liner as a command line; the script goes in double quotes (literal there). */
const nodeCommand = (script: string): string => `node -e "${script.replace(/["\\]/g, '\\$&')}"`;

/** The last line of a run_command result: its program's output. */
const lastLine = (result: ToolResult): string => result.content.trimEnd().split('\n').at(-1) ?? '';

/**
 * Places outside the worktree to try writing to: a folder beside it (under /tmp, which the sandbox
 * replaces with its own), the user's home and /usr (read-only there). The home file goes at teardown.
 */
function outsidePlaces(t: ExecutionContext, outside: string): string[] {
  const inHome = path.join(os.homedir(), `moderator-sandbox-pwned-${process.pid}-${Math.random().toString(36).slice(2)}`);
  t.teardown(() => fs.rmSync(inHome, { force: true }));
  return [path.join(outside, 'pwned'), inHome, '/usr/moderator-sandbox-pwned'];
}

withBwrap('node -e cannot write outside the worktree, in run_command or in the test command; inside it can', async (t) => {
  const { run, worktree, outside } = await box(t);
  const sandbox = new BwrapSandbox({ bwrap: BWRAP, network: false });
  for (const place of outsidePlaces(t, outside)) {
    const escape = nodeCommand(`require('fs').writeFileSync(${JSON.stringify(place)}, 'x')`);
    const refused = await run(escape);
    t.regex(refused.content, /exit code 1 .*\n[\s\S]*(EROFS: read-only file system|ENOENT: no such file or directory)/, refused.content);
    const tests = await runTestCommand({ command: escape, cwd: worktree, env: { PATH: process.env.PATH ?? '' }, timeoutMs: 20_000, sandbox });
    t.false(tests.passed, place);
    t.regex(tests.output, /EROFS|ENOENT/);
    t.false(fs.existsSync(place), place);
  }
  t.deepEqual(fs.readdirSync(outside), [], 'nothing was written beside the worktree');

  const inside = await run(nodeCommand("require('fs').writeFileSync('made.txt', 'ok'); console.log('wrote')"));
  t.is(lastLine(inside), 'wrote', inside.content);
  t.is(fs.readFileSync(path.join(worktree, 'made.txt'), 'utf8'), 'ok');
  // /tmp and HOME are the sandbox's own: writable, and gone with it.
  const scratch = await run(nodeCommand("const fs = require('fs'); fs.writeFileSync('/tmp/scratch', 'x'); fs.writeFileSync(require('os').homedir() + '/.cache-file', 'x'); console.log(require('os').homedir())"));
  t.is(lastLine(scratch), '/tmp/home', scratch.content);
  t.false(fs.existsSync('/tmp/scratch'));
});

withBwrap('a planted core.fsmonitor, hook or redirected .git never reaches Moderator\'s git calls', async (t) => {
  const { run, root, worktree, outside, git, sh } = await box(t);
  const marker = path.join(outside, 'fsmonitor-ran');
  const config = fs.readFileSync(path.join(root, '.git', 'config'), 'utf8');
  const attempts = [
    // Worktrees share the main repository's config (FACTS.md).
    `require('child_process').execFileSync('git', ['config', 'core.fsmonitor', 'touch ${marker}'], { stdio: 'inherit' })`,
    `require('fs').writeFileSync(${JSON.stringify(path.join(root, '.git', 'hooks', 'post-commit'))}, '#!/bin/sh\\ntouch ${marker}\\n', { mode: 0o755 })`,
    `require('fs').appendFileSync(${JSON.stringify(path.join(root, '.git', 'config'))}, '[core]\\n\\tfsmonitor = touch ${marker}\\n')`,
    // The worktree's own .git file, pointed at a git folder the command would control.
    "require('fs').writeFileSync('.git', 'gitdir: /tmp/evil\\n')",
    "require('fs').rmSync('.git')",
  ];
  for (const attempt of attempts) {
    const result = await run(nodeCommand(attempt));
    t.regex(result.content, /exit code [1-9]/, `${attempt}\n${result.content}`);
    t.regex(result.content, /Read-only file system|EROFS|EBUSY|could not lock config file/, result.content);
  }
  t.is(fs.readFileSync(path.join(root, '.git', 'config'), 'utf8'), config, 'the repository config is unchanged');
  t.false(fs.existsSync(path.join(root, '.git', 'hooks', 'post-commit')));
  t.regex(fs.readFileSync(path.join(worktree, '.git'), 'utf8'), /^gitdir: /);

  // Moderator's own calls that would run a planted fsmonitor, after every attempt.
  await git.writeFiles(worktree, [{ path: 'a.txt', content: 'a\n' }]);
  await git.commitAll(worktree, 'a', 'run1:T1:commit');
  await git.assertClean();
  t.false(fs.existsSync(marker), 'the planted program never ran');

  // Unconfined, the same command plants it: the sandbox is what stopped it.
  const planted = await run(nodeCommand(attempts[0] ?? ''), { sandbox: UNSANDBOXED });
  t.regex(planted.content, /exit code 0/, planted.content);
  t.is(sh(root, 'config', 'core.fsmonitor').trim(), `touch ${marker}`);
});

withBwrap('make running a shell cannot write outside the worktree', async (t) => {
  const { run, worktree, outside } = await box(t);
  const [beside = '', inHome = ''] = outsidePlaces(t, outside);
  fs.writeFileSync(path.join(worktree, 'Makefile'), `all:\n\ttouch inside-by-make\n\t-sh -c 'echo pwned > ${beside}'\n\tsh -c 'echo pwned > ${inHome}'\n`);
  const result = await run('make');
  t.regex(result.content, /exit code 2 /, result.content);
  t.regex(result.content, /Read-only file system/);
  t.true(fs.existsSync(path.join(worktree, 'inside-by-make')), 'the recipe ran, inside the worktree');
  t.false(fs.existsSync(beside));
  t.false(fs.existsSync(inHome));
});

withBwrap('a detached child that keeps running is dead when the command returns', async (t) => {
  const { run, worktree } = await box(t);
  // The child reports over a unix socket in the worktree: its connection closes when it dies.
  const socket = path.join(worktree, 'daemon.sock');
  const connected = new Promise<net.Socket>((resolve) => {
    const server = net.createServer(resolve);
    server.listen(socket);
    t.teardown(() => server.close());
  });
  const daemon = [
    `const s = require('net').connect(${JSON.stringify(socket)}, () => console.log('up'));`,
    "setInterval(() => require('fs').appendFileSync('daemon.log', 'still here\\n'), 20);",
  ].join(' ');
  const parent = [
    "const { spawn } = require('child_process');",
    `const child = spawn(process.execPath, ['-e', ${JSON.stringify(daemon)}], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });`,
    "child.stdout.once('data', () => { child.unref(); child.stdout.destroy(); console.log('daemon started'); });",
  ].join(' ');
  const result = await run(nodeCommand(parent));
  t.is(lastLine(result), 'daemon started', result.content);
  const connection = await connected;
  // Unsandboxed, a detached child (its own session) outlives the command and this never closes.
  const closed = await new Promise<boolean>((resolve) => {
    if (connection.destroyed) resolve(true);
    connection.on('close', () => resolve(true));
    connection.resume();
    setTimeout(() => resolve(false), 15_000).unref();
  });
  t.true(closed, 'the daemon was killed with the sandbox');
});

test('AWS_SECRET_ACCESS_KEY, DATABASE_URL and Moderator\'s keys never reach a command\'s environment', async (t) => {
  const secrets = { AWS_SECRET_ACCESS_KEY: 'aws-secret', DATABASE_URL: 'postgres://app:hunter2@db/app', ANTHROPIC_API_KEY: 'sk-ant', NODE_OPTIONS: '--import tsx', LANG: 'C.UTF-8' };
  const { run } = await box(t, secrets);
  const sandbox = probe.ok ? undefined : UNSANDBOXED;
  const result = await run(nodeCommand('console.log(JSON.stringify(process.env))'), sandbox ? { sandbox } : {});
  const seen = JSON.parse(lastLine(result)) as Record<string, string>;
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'DATABASE_URL', 'ANTHROPIC_API_KEY', 'NODE_OPTIONS']) t.is(seen[name], undefined, name);
  t.false(result.content.includes('hunter2'));
  t.is(seen.LANG, 'C.UTF-8', 'what programs need still arrives');
  t.truthy(seen.PATH);
  // A variable the project declares does reach it.
  const declared = await run(nodeCommand('console.log(process.env.DATABASE_URL)'), {
    env: childProcessEnv({ PATH: process.env.PATH ?? '', ...secrets }, ['DATABASE_URL', 'AWS_SECRET_ACCESS_KEY']),
    ...(sandbox ? { sandbox } : {}),
  });
  t.is(lastLine(declared), 'postgres://app:hunter2@db/app');
});

/** A loopback listener on the host, and whether a command connected to it. */
async function listener(t: ExecutionContext): Promise<{ port: number; connected: Promise<void> }> {
  let connected: () => void = () => {};
  const seen = new Promise<void>((resolve) => {
    connected = resolve;
  });
  const server = net.createServer((socket) => {
    socket.end('hello\n');
    connected();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, connected: seen };
}

const connectScript = (port: number): string =>
  `const s = require('net').connect(${port}, '127.0.0.1'); s.on('data', (d) => { console.log('connected: ' + d.toString().trim()); s.destroy(); }); s.on('error', (e) => { console.log('refused: ' + e.code); process.exitCode = 3; });`;

withBwrap('no network: a host listener on 127.0.0.1 is out of reach, unless allow_network', async (t) => {
  const { run } = await box(t);
  const host = await listener(t);
  const cut = await run(nodeCommand(connectScript(host.port)));
  t.is(lastLine(cut), 'refused: ECONNREFUSED', cut.content);

  t.true((await probeBwrap({ bwrap: BWRAP, network: true })).ok);
  const allowed = await run(nodeCommand(connectScript(host.port)), { sandbox: new BwrapSandbox({ bwrap: BWRAP, network: true }) });
  t.is(lastLine(allowed), 'connected: hello', allowed.content);
  await host.connected;
});

withBwrap('in the sandbox a timeout still kills the command, and a missing program is "command not found"', async (t) => {
  const { run } = await box(t);
  const slow = await run(nodeCommand("console.log('started'); setTimeout(() => console.log('finished'), 60000)"), { timeoutMs: 500 });
  t.true(slow.isError);
  t.regex(slow.content, /\ntimed out after 500 ms \(process group killed\) \(\d+ ms\)\nstarted\n/);
  t.false(slow.content.split('\n').slice(2).join('\n').includes('finished'), 'its output stops at the timeout');
  const { worktree } = await box(t);
  const missing = await runTestCommand({ command: 'moderator-no-such-command -x', cwd: worktree, env: { PATH: process.env.PATH ?? '' }, timeoutMs: 5_000, sandbox: new BwrapSandbox({ bwrap: BWRAP, network: false }) });
  t.is(missing.exitCode, null);
  t.is(missing.output, 'command not found: moderator-no-such-command\n');
});

test('agents.techlead.sandbox: auto uses bwrap where it works and says so otherwise; bwrap refuses; off says so', async (t) => {
  const missing = path.join(os.tmpdir(), 'moderator-no-such-bwrap');
  const autoWithout = await resolveSandbox('auto', { network: false, path: undefined, bwrap: missing });
  t.false(autoWithout.sandbox.confined);
  t.is(autoWithout.refusal, undefined);
  t.regex(autoWithout.sandbox.description, /^commands are NOT sandboxed: .*moderator-no-such-bwrap is not installed/);
  const required = await resolveSandbox('bwrap', { network: false, path: undefined, bwrap: missing });
  t.regex(required.refusal ?? '', /^agents\.techlead\.sandbox is bwrap, but .* is not installed: install bubblewrap/);
  const off = await resolveSandbox('off', { network: false, path: undefined });
  t.false(off.sandbox.confined);
  t.regex(off.sandbox.description, /NOT sandboxed.*agents\.techlead\.sandbox: off/);
  if (probe.ok) {
    const auto = await resolveSandbox('auto', { network: false, path: '/usr/bin' });
    t.true(auto.sandbox.confined);
    t.regex(auto.sandbox.description, /bubblewrap sandbox: .* no network/);
  } else {
    t.log(`bwrap itself not tried: ${probe.reason}`);
  }
});
