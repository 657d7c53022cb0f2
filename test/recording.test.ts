import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { AnthropicProvider } from '../services/llm/anthropic-provider.ts';
import { ModelError } from '../services/llm/model-error.ts';
import type { ModelRequest } from '../services/llm/provider.ts';
import { RecordingProvider, type RecordingSession } from '../services/llm/recording-provider.ts';
import { ReplayProvider, readSession } from '../services/llm/replay.ts';
import { startFakeAnthropic, step } from './fakes/anthropic-api.ts';

for (const name of Object.keys(process.env)) {
  if (/^(ANTHROPIC|OPENAI)_/.test(name)) delete process.env[name];
}

function tempFile(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-record-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'runs', 'session.json');
}

const call = (agent: ModelRequest['agent'], purpose: string, taskId?: string): ModelRequest => ({
  agent,
  purpose,
  taskId,
  model: 'claude-sonnet-4-6',
  system: `You are the ${agent}.`,
  messages: [{ role: 'user', content: `${purpose} please` }],
  temperature: 0.3,
  maxTokens: 8000,
});

test('a recorded run replays through readSession and ReplayProvider to the same replies, usage and cost', async (t) => {
  const fake = await startFakeAnthropic([
    step.reply({ text: 'Scope: a TODO CLI.', usage: { input: 900, output: 120, cacheWrite: 1500 } }),
    step.reply({ text: '```json\n{"tasks":["T1","T2"]}\n```', usage: { input: 300, output: 80, cacheRead: 1500 } }),
    step.reply({ text: 'diff --git a/todo.js b/todo.js', usage: { input: 2000, output: 700 } }),
  ]);
  t.teardown(() => fake.close());
  const file = tempFile(t);
  const recorder = new RecordingProvider({
    inner: new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 }),
    file,
    requirements: 'Build a TODO CLI',
    title: 'TODO CLI',
    project: { name: 'todo-cli', language: 'javascript' },
  });
  t.is(recorder.name, 'anthropic');
  t.regex(recorder.description, /recording to .*session\.json$/);

  const requests = [call('moderator', 'clarify'), call('moderator', 'plan'), call('techlead', 'implement', 'T1')];
  const live = [];
  for (const [index, request] of requests.entries()) {
    const sequence = requests.slice(0, index).filter((earlier) => earlier.agent === request.agent).length;
    live.push(await recorder.complete(request, sequence));
    // Complete and valid after every call, not only at the end.
    const session = readSession(file);
    t.is(Object.values(session.calls).flat().length, index + 1);
  }

  const session = readSession(file);
  t.is(session.format, 'moderator-session/1');
  t.is(session.title, 'TODO CLI');
  t.is(session.requirements, 'Build a TODO CLI');
  t.deepEqual(session.project, { name: 'todo-cli', language: 'javascript' });
  t.deepEqual(session.calls['techlead']?.[0], {
    purpose: 'implement',
    task: 'T1',
    model: 'claude-sonnet-4-6',
    reply: { text: 'diff --git a/todo.js b/todo.js' },
    usage: { input_tokens: 2000, output_tokens: 700, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    latency_ms: live[2]!.latencyMs,
    cost_usd: live[2]!.costUsd,
  });

  const replay = new ReplayProvider({ session, file });
  const replayed = [
    await replay.complete(requests[0]!, 0),
    await replay.complete(requests[1]!, 1),
    await replay.complete(requests[2]!, 0),
  ];
  for (const [index, reply] of replayed.entries()) {
    const original = live[index]!;
    t.is(reply.text, original.text);
    t.is(reply.model, original.model);
    t.deepEqual(reply.usage, original.usage);
    t.is(reply.costUsd, original.costUsd);
  }
  t.true(live[0]!.costUsd > 0);
  t.deepEqual(live[1]!.usage, { inputTokens: 300, outputTokens: 80, cacheReadTokens: 1500, cacheWriteTokens: 0 });
});

test('a failed call is not recorded and leaves the calls recorded before it intact', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'first' }), step.unauthorized()]);
  t.teardown(() => fake.close());
  const file = tempFile(t);
  const recorder = new RecordingProvider({ inner: new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 }), file, requirements: 'r' });
  await recorder.complete(call('moderator', 'clarify'), 0);
  await t.throwsAsync(recorder.complete(call('moderator', 'plan'), 1), { instanceOf: ModelError, message: /rejected the key \(401\)/ });
  const session = readSession(file);
  t.deepEqual(session.calls['moderator']?.map((recorded) => recorded.reply.text), ['first']);
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['session.json'], 'no temp file left behind');
});

test('tool calls are recorded with the reply', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'Reading.', toolCalls: [{ id: 'toolu_9', name: 'read_file', input: { path: 'a.js' } }] })]);
  t.teardown(() => fake.close());
  const file = tempFile(t);
  const recorder = new RecordingProvider({ inner: new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 }), file, requirements: 'r' });
  await recorder.complete(call('techlead', 'implement', 'T1'), 0);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as RecordingSession;
  t.deepEqual(raw.calls['techlead']?.[0]?.reply, { text: 'Reading.', tool_calls: [{ id: 'toolu_9', name: 'read_file', input: { path: 'a.js' } }] });
});

test('a recording continued from an existing session appends after its calls', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'second' })]);
  t.teardown(() => fake.close());
  const file = tempFile(t);
  const first = new RecordingProvider({
    inner: new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 }),
    file,
    requirements: 'r',
  });
  fake.setScript([step.reply({ text: 'first' })]);
  await first.complete(call('moderator', 'clarify'), 0);

  fake.setScript([step.reply({ text: 'second' })]);
  const resumed = new RecordingProvider({
    inner: new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 }),
    file,
    requirements: 'r',
    existing: readSession(file),
  });
  await resumed.complete(call('moderator', 'plan'), 1);
  t.deepEqual(readSession(file).calls['moderator']?.map((recorded) => [recorded.purpose, recorded.reply.text]), [
    ['clarify', 'first'],
    ['plan', 'second'],
  ]);
});
