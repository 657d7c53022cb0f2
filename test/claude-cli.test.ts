import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { checkInstalled, ClaudeCliProvider, flattenConversation, type ClaudeCliOptions } from '../services/llm/claude-cli-provider.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import { ModelError } from '../services/llm/model-error.ts';
import type { ModelRequest } from '../services/llm/provider.ts';
import { Store } from '../services/store/store.ts';
import { callKeys } from '../protocol/keys.ts';

/*
 * The provider runs the fake `claude` of test/fakes, found on the PATH given in its env the way
 * the real one would be. The fake logs its argv, cwd and pid to FAKE_CLAUDE_LOG.
 */

const fakes = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fakes');

interface Sandbox {
  worktree: string;
  log: string;
  env: (extra: Record<string, string>) => Record<string, string>;
  /** The fake's log lines, one per run. */
  runs: () => { argv: string[]; cwd: string; pid: number; prompt: string; promptFrom: string; grandchildPid?: number }[];
}

function sandbox(t: ExecutionContext): Sandbox {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-claude-')));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const worktree = path.join(base, 'worktrees', 'T1');
  fs.mkdirSync(worktree, { recursive: true });
  const log = path.join(base, 'claude.log');
  return {
    worktree,
    log,
    env: (extra) => ({ PATH: `${fakes}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: base, FAKE_CLAUDE_LOG: log, ...extra }),
    runs: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line)) : []),
  };
}

function provider(box: Sandbox, mode: string, extra: Partial<ClaudeCliOptions> & { fakeEnv?: Record<string, string> } = {}): ClaudeCliProvider {
  const { fakeEnv, ...options } = extra;
  return new ClaudeCliProvider({
    cwdFor: () => box.worktree,
    timeoutMs: 20_000,
    maxTurns: 7,
    env: box.env({ FAKE_CLAUDE_MODE: mode, ...fakeEnv }),
    ...options,
  });
}

const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  agent: 'techlead',
  purpose: 'implement',
  taskId: 'T1',
  model: 'claude-sonnet-4-5',
  system: 'You are the TechLead. Work only in this repository.',
  messages: [{ role: 'user', content: 'Implement task T1: add a --verbose flag.' }],
  temperature: 0.5,
  maxTokens: 8000,
  ...overrides,
});

/** Running, not merely a zombie waiting for this container's init to reap it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return !fs.existsSync('/proc/self');
  }
}

test('an ok run is parsed into text, usage and cost', async (t) => {
  const box = sandbox(t);
  const reply = await provider(box, 'ok', { fakeEnv: { FAKE_CLAUDE_RESULT: 'Added the flag; tests pass.' } }).complete(request());
  t.is(reply.text, 'Added the flag; tests pass.');
  t.is(reply.model, 'claude-sonnet-4-5');
  t.deepEqual(reply.usage, { inputTokens: 1200, outputTokens: 300, cacheReadTokens: 5000, cacheWriteTokens: 100 });
  t.is(reply.costUsd, 0.0123);
  t.deepEqual(reply.toolCalls, []);
  t.is(reply.stopReason, 'end');
  t.true(reply.latencyMs >= 0);
});

test('older CLIs report cost_usd instead of total_cost_usd', async (t) => {
  const box = sandbox(t);
  const reply = await provider(box, 'ok', { fakeEnv: { FAKE_CLAUDE_LEGACY_COST: '1' } }).complete(request());
  t.is(reply.costUsd, 0.0123);
});

test('a run through the gateway is journaled and counted against the budget', async (t) => {
  const box = sandbox(t);
  const store = Store.open(':memory:');
  t.teardown(() => store.close());
  store.runs.create({ id: 'r1', target: box.worktree, requirements: 'req', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const gateway = new ModelGateway({ store, runId: 'r1', provider: provider(box, 'ok'), budget: { maxTokensTotal: 1_000_000 } });
  await gateway.call(callKeys.change('implement', 'T1', 1), request());
  await gateway.call(callKeys.change('implement', 'T1', 1), request());
  const totals = store.calls.totals('r1');
  t.is(totals.callsSent, 1, 'the journaled reply is not paid for twice');
  t.is(totals.tokensUsed, 1200 + 300 + 5000 + 100);
  t.is(totals.costUsd, 0.0123);
  t.is(box.runs().length, 1);
});

test('it runs in the worktree given for the request, with the expected flags and no shell', async (t) => {
  const box = sandbox(t);
  const other = path.join(path.dirname(box.worktree), 'T2');
  fs.mkdirSync(other);
  const cli = provider(box, 'ok', {
    cwdFor: (req) => path.join(path.dirname(box.worktree), req.taskId ?? 'none'),
    permissionMode: 'acceptEdits',
    allowedTools: ['Read', 'Edit', 'Bash(npm test:*)'],
    fakeEnv: { FAKE_CLAUDE_TOUCH: 'claude-was-here.txt' },
  });
  const messages: ModelRequest['messages'] = [
    { role: 'user', content: 'Implement T1; $(touch pwned) `id` ; rm -rf /' },
    { role: 'assistant', content: 'Which file?' },
    { role: 'user', content: 'src/cli.ts' },
  ];
  await cli.complete(request({ messages }));
  await cli.complete(request({ taskId: 'T2', model: 'claude-opus-4-1' }));
  const [first, second] = box.runs();
  t.is(first?.cwd, box.worktree);
  t.is(second?.cwd, other);
  t.true(fs.existsSync(path.join(box.worktree, 'claude-was-here.txt')), 'it ran inside the worktree');
  t.true(fs.existsSync(path.join(other, 'claude-was-here.txt')));
  const prompt = 'User:\nImplement T1; $(touch pwned) `id` ; rm -rf /\n\nAssistant:\nWhich file?\n\nUser:\nsrc/cli.ts';
  t.deepEqual(first?.argv, [
    '-p', prompt,
    '--output-format', 'json',
    '--max-turns', '7',
    '--append-system-prompt', 'You are the TechLead. Work only in this repository.',
    '--model', 'claude-sonnet-4-5',
    '--permission-mode', 'acceptEdits',
    '--allowedTools', 'Read,Edit,Bash(npm test:*)',
  ]);
  t.is(first?.promptFrom, 'argv');
  t.is(second?.argv[second.argv.indexOf('--model') + 1], 'claude-opus-4-1');
  t.false(fs.existsSync(path.join(box.worktree, 'pwned')), 'the prompt was an argument, not shell text');
});

test('a prompt too long for one argument goes on stdin', async (t) => {
  const box = sandbox(t);
  const long = 'x'.repeat(150_000);
  const reply = await provider(box, 'ok').complete(request({ messages: [{ role: 'user', content: long }] }));
  t.is(reply.text, 'Done.');
  const [run] = box.runs();
  t.is(run?.promptFrom, 'stdin');
  t.is(run?.prompt, `User:\n${long}`);
  t.deepEqual(run?.argv.slice(0, 3), ['-p', '--output-format', 'json']);
});

test('tool turns and results are flattened into labelled text', (t) => {
  t.is(
    flattenConversation([
      { role: 'user', content: 'Fix the bug.' },
      { role: 'assistant', content: 'Reading.', toolCalls: [{ id: 't1', name: 'read_file', input: { path: 'a.ts' } }] },
      { role: 'tool', results: [{ id: 't1', content: 'no such file', isError: true }] },
    ]),
    'User:\nFix the bug.\n\nAssistant:\nReading.\n[called read_file {"path":"a.ts"}]\n\nTool results:\n[error t1]\nno such file',
  );
});

test('an error result is a one-line ModelError', async (t) => {
  const box = sandbox(t);
  const error = await t.throwsAsync(provider(box, 'error').complete(request()), { instanceOf: ModelError });
  t.is(error?.message, 'claude-cli techlead implement (T1): error_during_execution after 3 turns: API Error: 529 Overloaded');
  t.is(error?.code, 'model');
});

test('running out of turns is a ModelError, not an answer', async (t) => {
  const box = sandbox(t);
  const error = await t.throwsAsync(provider(box, 'max_turns').complete(request()), { instanceOf: ModelError });
  t.regex(error?.message ?? '', /error_max_turns after 3 turns/);
});

test('output that is not the JSON result is a ModelError', async (t) => {
  const box = sandbox(t);
  const error = await t.throwsAsync(provider(box, 'garbage').complete(request()), { instanceOf: ModelError });
  t.is(error?.code, 'malformed_reply');
  t.is(error?.message, 'claude-cli techlead implement (T1): printed no JSON result: Welcome to Claude Code!');
});

test('a non-zero exit without a result is a ModelError with the first stderr line', async (t) => {
  const box = sandbox(t);
  const error = await t.throwsAsync(provider(box, 'exit1').complete(request()), { instanceOf: ModelError });
  t.is(error?.message, 'claude-cli techlead implement (T1): exited with status 1: Invalid API key · Please run /login');
});

test('a run over its time limit is killed with its whole process group', async (t) => {
  const box = sandbox(t);
  const started = Date.now();
  const error = await t.throwsAsync(provider(box, 'slow', { timeoutMs: 1500 }).complete(request()), { instanceOf: ModelError });
  t.regex(error?.message ?? '', /timed out after 1500 ms in .*T1; process group killed/);
  t.true(Date.now() - started < 10_000);
  const [run] = box.runs();
  t.truthy(run?.grandchildPid);
  // The grandchild is reparented on its parent's death; give the kernel a moment.
  for (let attempt = 0; attempt < 50 && (alive(run?.pid ?? 0) || alive(run?.grandchildPid ?? 0)); attempt += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  t.false(alive(run?.pid ?? 0), 'the CLI is gone');
  t.false(alive(run?.grandchildPid ?? 0), 'and what it started');
});

test('an aborted request stops the CLI', async (t) => {
  const box = sandbox(t);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 500);
  const error = await t.throwsAsync(provider(box, 'slow').complete(request({ signal: controller.signal })), { instanceOf: ModelError });
  t.regex(error?.message ?? '', /aborted; process group killed/);
  const [run] = box.runs();
  for (let attempt = 0; attempt < 50 && alive(run?.grandchildPid ?? 0); attempt += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  t.false(alive(run?.grandchildPid ?? 0));
});

test('a missing executable is a ModelError saying so', async (t) => {
  const box = sandbox(t);
  const error = await t.throwsAsync(provider(box, 'ok', { executable: 'moderator-no-such-claude' }).complete(request()), { instanceOf: ModelError });
  t.regex(error?.message ?? '', /moderator-no-such-claude was not found: install Claude Code/);
  const noFolder = await t.throwsAsync(provider(box, 'ok', { cwdFor: () => path.join(box.worktree, 'gone') }).complete(request()), { instanceOf: ModelError });
  t.regex(noFolder?.message ?? '', /the working folder .*gone does not exist/);
});

test('checkInstalled reports the version, or why it cannot', async (t) => {
  const box = sandbox(t);
  t.deepEqual(await checkInstalled('claude', box.env({})), { ok: true, version: '1.0.99-fake (Claude Code)' });
  t.deepEqual(await checkInstalled(path.join(fakes, 'claude'), { PATH: process.env.PATH ?? '' }), { ok: true, version: '1.0.99-fake (Claude Code)' });
  const missing = await checkInstalled('moderator-no-such-claude', box.env({}));
  t.false(missing.ok);
  t.regex(missing.ok ? '' : missing.message, /moderator-no-such-claude was not found/);
});
