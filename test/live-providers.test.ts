import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { startFakeAnthropic, step, type FakeStep, type RecordedRequest } from './fakes/anthropic-api.ts';
import type { FakeUsage } from './fakes/http-fake.ts';
import { cliAsync } from './helpers/cli.ts';

const key = 'sk-ant-test-0123456789';

/** The CLI with a free monitor port and `env` over a clean environment. */
const cli = (args: string[], env: Record<string, string>) => cliAsync(args, { timeoutMs: 150_000, env: { DUO_AGENT_MONITOR_PORT: '0', ...env } });

const text = (content: unknown): string =>
  typeof content === 'string' ? content : Array.isArray(content) ? content.map((block: { text?: string }) => block.text ?? '').join('') : '';

const fenced = (value: unknown) => `Here you are.\n\`\`\`json\n${JSON.stringify(value)}\n\`\`\``;
const usage: FakeUsage = { input: 120, output: 40, cacheRead: 30, cacheWrite: 10 };

/** A model that does the work of a one-task project through the real Messages API wire format. */
function model(request: RecordedRequest): FakeStep {
  const body = request.body as { messages: { role: string; content: unknown }[] };
  const prompt = text(body.messages[0]?.content);
  const last = body.messages.at(-1);
  if (prompt.includes('single word')) return step.reply({ text: 'ok', usage });
  if (prompt.includes('Clarify the scope')) return step.reply({ text: fenced({ summary: 'A greeting module', assumptions: ['ESM'], questions: [] }), usage });
  if (prompt.includes('Plan the tasks')) {
    return step.reply({
      text: fenced({ tasks: [{ id: 'T1', title: 'Greeting', type: 'feature', description: 'hello(name)', acceptance_criteria: ['hello("x") is "hello x"'], depends_on: [] }] }),
      usage,
    });
  }
  if (prompt.includes('Implement the task')) {
    const results = Array.isArray(last?.content) ? (last.content as { type: string }[]).filter((block) => block.type === 'tool_result') : [];
    if (results.length === 0) {
      return step.reply({
        text: 'Writing the module and its test.',
        toolCalls: [
          { id: 'toolu_1', name: 'write_file', input: { path: 'package.json', content: '{ "type": "module" }\n' } },
          { id: 'toolu_2', name: 'write_file', input: { path: 'src/hello.js', content: 'export const hello = (name) => `hello ${name}`;\n' } },
          { id: 'toolu_3', name: 'write_file', input: { path: 'test/hello.test.js', content: "import test from 'node:test';\nimport assert from 'node:assert';\nimport { hello } from '../src/hello.js';\ntest('hello', () => assert.equal(hello('x'), 'hello x'));\n" } },
        ],
        usage,
      });
    }
    if (results.length === 3) return step.reply({ text: 'Running the tests.', toolCalls: [{ id: 'toolu_4', name: 'run_command', input: { command: 'node --test test/' } }], usage });
    return step.reply({ text: fenced({ summary: 'hello(name) with a test', files: [], delete: [] }), usage });
  }
  if (prompt.includes('Review it')) return step.reply({ text: fenced({ verdict: 'approve', summary: 'meets the criterion', comments: [] }), usage });
  if (prompt.includes('Improvement cycle')) return step.reply({ text: fenced({ proposals: [] }), usage });
  return step.status(400, { errorType: 'invalid_request_error', message: `the fake does not know this prompt: ${prompt.slice(0, 80)}` });
}

function targetWithConfig(baseUrl: string): string {
  const target = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-live-')), 'greet');
  fs.mkdirSync(target);
  fs.writeFileSync(
    path.join(target, 'duo-agent.config.yaml'),
    `project:\n  test_command: node --test test/\nmodel:\n  provider: anthropic\n  base_url: ${baseUrl}\n  max_retries: 1\nagents:\n  monitor:\n    check_interval_seconds: 1\n`,
  );
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: target });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'config');
  return target;
}

test('a whole run against the Messages API: tool calls in the worktree, cache tokens and cost counted, a session recorded and replayed', async (t) => {
  const fake = await startFakeAnthropic(model, { apiKey: key });
  t.teardown(() => fake.close());
  const target = targetWithConfig(fake.url);
  const record = path.join(path.dirname(target), 'session.json');
  const run = await cli(['Write a greeting module', '--target', target, '-y', '--json', '--record', record], { DUO_AGENT_API_KEY: key });
  t.is(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { outcome: string; prsMerged: number; tokensUsed: number; costUsd: number; modelCalls: number };
  t.is(summary.outcome, 'done');
  t.is(summary.prsMerged, 1);
  t.true(summary.costUsd > 0, 'priced from the table');
  t.regex(run.stderr, /write_file src\/hello\.js/);
  t.regex(run.stderr, /run_command node --test test\//);
  t.is(execFileSync('git', ['show', 'main:src/hello.js'], { cwd: target, encoding: 'utf8' }), 'export const hello = (name) => `hello ${name}`;\n');

  const db = new Database(path.join(target, '.duo-agent', 'moderator.db'), { readonly: true });
  const calls = db.prepare("SELECT call_key, cache_read_tokens, cache_write_tokens, cost_usd FROM model_calls WHERE status = 'ok' ORDER BY id").all() as { call_key: string; cache_read_tokens: number; cost_usd: number }[];
  db.close();
  t.true(calls.some((call) => call.call_key === 'techlead:implement:T1:1:turn3'), 'three journaled turns for the tool loop');
  t.true(calls.every((call) => call.cache_read_tokens === 30 && call.cost_usd > 0));
  const sent = fake.requests.filter((request) => request.path === '/v1/messages');
  t.is(sent.length, calls.length + 1, 'one preflight call, then each journaled call sent exactly once');
  const system = (sent[1]?.body as { system?: { cache_control?: unknown }[] }).system;
  t.truthy(system?.[0]?.cache_control, 'the stable system prompt is marked for prompt caching');

  // The recording replays to the same result, offline.
  const replayTarget = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-rereplay-')), 'greet');
  const replay = await cli(['Write a greeting module', '--target', replayTarget, '-y', '--json', '--provider', 'replay', '--replay', record], {});
  t.is(replay.code, 0, replay.stderr);
  const replayed = JSON.parse(replay.stdout) as { outcome: string; tokensUsed: number };
  t.is(replayed.outcome, 'done');
  t.is(replayed.tokensUsed, summary.tokensUsed, 'the same recorded usage');
  t.is(execFileSync('git', ['show', 'main:src/hello.js'], { cwd: replayTarget, encoding: 'utf8' }), 'export const hello = (name) => `hello ${name}`;\n');
});

test('a bad key is a one-line error before the run starts', async (t) => {
  const fake = await startFakeAnthropic([step.unauthorized()], { apiKey: key });
  t.teardown(() => fake.close());
  const target = targetWithConfig(fake.url);
  const run = await cli(['x', '--target', target, '-y'], { DUO_AGENT_API_KEY: 'sk-wrong' });
  t.is(run.code, 2);
  const lines = run.stderr.trim().split('\n');
  t.is(lines.length, 1, run.stderr);
  t.regex(lines[0] ?? '', /DUO_AGENT_API_KEY/);
  t.false(fs.existsSync(path.join(target, '.duo-agent', 'moderator.db')), 'no run was created');
  t.false(run.stderr.includes('sk-wrong'), 'the key is never printed');
});

test('an unreachable endpoint is a one-line error before the run starts', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'ok' })], { apiKey: key });
  const url = fake.url;
  await fake.close();
  const run = await cli(['x', '--target', targetWithConfig(url), '-y'], { DUO_AGENT_API_KEY: key });
  t.is(run.code, 2);
  t.is(run.stderr.trim().split('\n').length, 1, run.stderr);
  t.regex(run.stderr, /reach|connect/i);
});
