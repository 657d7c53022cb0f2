/**
 * The real SDKs against loopback servers that behave like the models and servers people run:
 * structured output asked for natively and given up gracefully, usage that is never sent,
 * tool arguments that are not JSON, tool calls written as text, replies cut off at max_tokens.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ask, type AskOptions } from '../actors/ask.ts';
import { replies } from '../actors/replies.ts';
import type { RunServices } from '../actors/run-services.ts';
import { AnthropicProvider } from '../services/llm/anthropic-provider.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import { ModelError } from '../services/llm/model-error.ts';
import { OpenAIProvider } from '../services/llm/openai-provider.ts';
import type { ModelProvider, ModelRequest } from '../services/llm/provider.ts';
import type { ProviderOptions } from '../services/llm/provider-options.ts';
import { AgentLogs } from '../services/logger.ts';
import { Store } from '../services/store/store.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { startFakeAnthropic, step, type FakeServer, type FakeStep, type Script, type StructuredSupport } from './fakes/anthropic-api.ts';
import { startFakeOpenAI } from './fakes/openai-api.ts';
import { callKeys } from '../protocol/keys.ts';
import { contextFor } from './helpers/context.ts';

for (const name of Object.keys(process.env)) {
  if (/^(ANTHROPIC|OPENAI)_/.test(name)) delete process.env[name];
}

interface Api {
  label: 'anthropic' | 'openai';
  start(script: Script<FakeStep>, options: { structured?: StructuredSupport }): Promise<FakeServer<FakeStep>>;
  provider(options: ProviderOptions): ModelProvider;
  model: string;
}

const apis: Api[] = [
  { label: 'anthropic', start: startFakeAnthropic, provider: (options) => new AnthropicProvider(options), model: 'claude-sonnet-4-6' },
  { label: 'openai', start: startFakeOpenAI, provider: (options) => new OpenAIProvider(options), model: 'gpt-5.4' },
];

async function setup(t: { teardown(fn: () => Promise<void>): void }, api: Api, script: Script<FakeStep>, structured: StructuredSupport = 'accept') {
  const fake = await api.start(script, { structured });
  t.teardown(() => fake.close());
  const notices: string[] = [];
  const noUsage: string[] = [];
  const provider = api.provider({
    apiKey: 'sk-test', baseURL: fake.url, maxRetries: 1, timeoutMs: 5000, resendBaseMs: 1,
    onNotice: (line) => notices.push(line), onNoUsage: (model, source) => noUsage.push(`${model}:${source}`),
  });
  return { fake, provider, notices, noUsage };
}

const review = JSON.stringify({ verdict: 'approve', summary: 'the criteria are met', comments: [] });

function request(api: Api, overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    agent: 'moderator', purpose: 'review', model: api.model, system: 'You review.', messages: [{ role: 'user', content: 'Review it.' }],
    temperature: 0, maxTokens: 1000, responseFormat: { name: replies.review.name, schema: replies.review.wire }, ...overrides,
  };
}

/** The run's services as `ask` needs them: a real store, gateway and logs over the given provider. */
function services(provider: ModelProvider, progress: string[] = []): RunServices {
  const store = Store.open(':memory:');
  store.runs.create({ id: 'r', target: '/t', requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-weak-'));
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 1e7 } });
  return { runId: 'r', store, gateway, context: contextFor(), progress: (line: string) => progress.push(line), logs: new AgentLogs({ dir, runId: 'r', level: 'silent' }), config: { model: { reply_retries: 2 } } } as unknown as RunServices;
}

const reviewAsk = (overrides: Partial<AskOptions<unknown>> = {}): AskOptions<unknown> => ({
  agent: 'moderator', purpose: 'review', callKey: callKeys.review('T1', 1), system: 's', prompt: 'Review it.', reply: replies.review,
  settings: { model: 'm', temperature: 0, max_tokens: 1000 }, ...overrides,
});

// --- structured output ---------------------------------------------------------------------------

test('openai: the reply schema goes out as a strict json_schema response_format, derived from the zod schema', async (t) => {
  const api = apis[1] as Api;
  const { fake, provider } = await setup(t, api, [step.reply({ text: review })]);
  const reply = await provider.complete(request(api), 0);
  t.is(reply.text, review);
  const body = fake.requests[0]?.body as { response_format?: { type: string; json_schema: { name: string; strict: boolean; schema: unknown } } };
  t.is(body.response_format?.type, 'json_schema');
  t.is(body.response_format?.json_schema.name, 'review');
  t.true(body.response_format?.json_schema.strict);
  t.deepEqual(body.response_format?.json_schema.schema, replies.review.wire);
});

test('openai: with tools, no response_format is sent (a grammar would forbid the tool calls)', async (t) => {
  const api = apis[1] as Api;
  const { fake, provider } = await setup(t, api, [step.reply({ text: review })]);
  await provider.complete(request(api, { tools: [{ name: 'read_file', description: 'read', inputSchema: { type: 'object', properties: {} } }] }), 0);
  t.false('response_format' in (fake.requests[0]?.body as object));
});

test('openai: a server that refuses json_schema is asked for json_object, remembered for the endpoint and said once', async (t) => {
  const api = apis[1] as Api;
  const { fake, provider, notices } = await setup(t, api, [step.reply({ text: review })], 'refuse-json-schema');
  t.is((await provider.complete(request(api), 0)).text, review);
  t.is((await provider.complete(request(api), 0)).text, review);
  const formats = fake.requests.map((entry) => (entry.body as { response_format?: { type: string } }).response_format?.type);
  t.deepEqual(formats, ['json_schema', 'json_object', 'json_object'], 'the refusal is remembered: the second call goes straight to json_object');
  t.is(notices.length, 1);
  t.regex(notices[0] ?? '', /refused response_format json_schema \(400: Either "json_schema" or "grammar".*asking it for json_object from now on/);
});

test('openai: a server that refuses any response_format gets plain text, and the reply is still repaired', async (t) => {
  const api = apis[1] as Api;
  const { fake, provider, notices } = await setup(t, api, [step.reply({ text: "Sure! ```JSON\n{'verdict': 'Approved', 'summary': 'ok',}\n```" })], 'refuse-all');
  const verdict = await ask(services(provider), reviewAsk({ settings: { model: api.model, temperature: 0, max_tokens: 1000 } }));
  t.like(verdict, { verdict: 'approve', summary: 'ok' });
  t.deepEqual(fake.requests.map((entry) => (entry.body as { response_format?: { type: string } }).response_format?.type), ['json_schema', 'json_object', undefined]);
  t.is(notices.length, 2);
});

test('anthropic: the reply schema is a forced tool, and its input is the reply', async (t) => {
  const api = apis[0] as Api;
  const { fake, provider } = await setup(t, api, [step.reply({ text: review })]);
  const reply = await provider.complete(request(api), 0);
  t.deepEqual(JSON.parse(reply.text), JSON.parse(review));
  t.deepEqual(reply.toolCalls, [], 'the forced tool is the answer, not a call to run');
  const body = fake.requests[0]?.body as { tool_choice?: unknown; tools?: { name: string; input_schema: unknown }[] };
  t.deepEqual(body.tool_choice, { type: 'tool', name: 'review' });
  t.is(body.tools?.[0]?.name, 'review');
  t.like(body.tools?.[0]?.input_schema, { type: 'object', required: ['verdict', 'summary', 'comments'] });
});

test('anthropic: a server that refuses the forced tool gets plain text from then on, said once', async (t) => {
  const api = apis[0] as Api;
  const { fake, provider, notices } = await setup(t, api, [step.reply({ text: `<think>hmm</think>\n${review}` })], 'refuse-all');
  const verdict = await ask(services(provider), reviewAsk({ settings: { model: api.model, temperature: 0, max_tokens: 1000 } }));
  t.like(verdict, { verdict: 'approve' });
  await provider.complete(request(api), 0);
  t.deepEqual(fake.requests.map((entry) => (entry.body as { tool_choice?: unknown }).tool_choice !== undefined), [true, false, false]);
  t.is(notices.length, 1);
});

// --- accounting --------------------------------------------------------------------------------

for (const api of apis) {
  test(`${api.label}: a server that sends no usage has its tokens counted, labelled, and said once`, async (t) => {
    const { provider, noUsage } = await setup(t, api, [step.reply({ text: review, usage: 'none' })]);
    const first = await provider.complete(request(api, { messages: [{ role: 'user', content: 'Review it. '.repeat(200) }] }), 0);
    const second = await provider.complete(request(api), 0);
    t.true(first.usage.inputTokens > 400, `counted ${first.usage.inputTokens} input tokens`);
    t.true(first.usage.outputTokens > 5);
    t.is(first.usage.source, api.label === 'openai' ? 'counted' : 'estimated');
    t.true(second.usage.inputTokens < first.usage.inputTokens);
    t.deepEqual(noUsage, [`${api.model}:${first.usage.source}`], 'one warning per model');
  });

  // --- tool calls ------------------------------------------------------------------------------

  test(`${api.label}: tool arguments with a trailing comma are repaired; arguments beyond repair come back as an error for the model`, async (t) => {
    const { provider } = await setup(t, api, [
      step.reply({ toolCalls: [{ name: 'read_file', input: {}, rawArguments: '{"path": "src/a.js",}' }, { name: 'read_file', input: {}, rawArguments: '{{{' }] }),
    ]);
    const reply = await provider.complete(request(api, { responseFormat: undefined, tools: [{ name: 'read_file', description: 'read', inputSchema: { type: 'object', properties: { path: { type: 'string' } } } }] }), 0);
    t.deepEqual(reply.toolCalls?.[0]?.input, { path: 'src/a.js' });
    t.is(reply.toolCalls?.[0]?.inputError, undefined);
    t.regex(reply.toolCalls?.[1]?.inputError ?? '', /arguments of your read_file call are not a JSON object/);
  });
}

test('ask: a call with broken arguments is answered with an error result, the model calls again, and the task goes on', async (t) => {
  const api = apis[1] as Api;
  const worktree = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-weak-tools-'));
  fs.writeFileSync(path.join(worktree, 'a.js'), 'export const a = 1;\n');
  const { fake, provider } = await setup(t, api, [
    step.reply({ toolCalls: [{ name: 'read_file', input: {}, rawArguments: '{{{' }] }),
    step.reply({ toolCalls: [{ name: 'read_file', input: { path: 'a.js' } }] }),
    step.reply({ text: JSON.stringify({ summary: 'read a', files: [], delete: [] }) }),
  ]);
  const tools = createWorktreeTools({ root: worktree, allowedCommands: [], commandTimeoutMs: 5000, outputCapBytes: 10_000, env: {}, baseBranch: 'main' });
  const change = await ask(services(provider), { ...reviewAsk(), agent: 'techlead', purpose: 'implement', callKey: callKeys.change('implement', 'T1', 1), reply: replies.change, tools, maxTurns: 5, settings: { model: api.model, temperature: 0, max_tokens: 1000 } });
  t.like(change, { summary: 'read a' });
  const second = fake.requests[1]?.body as { messages: { role: string; content: string }[] };
  t.regex(second.messages.at(-1)?.content ?? '', /not a JSON object/);
  const third = fake.requests[2]?.body as { messages: { role: string; content: string }[] };
  t.regex(third.messages.at(-1)?.content ?? '', /export const a = 1/);
});

test('ask: tool calls written as text are parsed, run, their results sent back, with one warning', async (t) => {
  const api = apis[1] as Api;
  const worktree = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-weak-tools-'));
  const { fake, provider } = await setup(t, api, [
    step.reply({ text: 'I will write it.\n<tool_call>\n{"name": "write_file", "arguments": {"path": "hello.txt", "content": "hi\\n"}}\n</tool_call>' }),
    step.reply({ text: '<tool_call>{"name": "read_file", "arguments": {"path": "hello.txt"}}</tool_call>' }),
    step.reply({ text: '```json\n{"summary": "wrote hello.txt", "files": []}\n```' }),
  ]);
  const progress: string[] = [];
  const tools = createWorktreeTools({ root: worktree, allowedCommands: [], commandTimeoutMs: 5000, outputCapBytes: 10_000, env: {}, baseBranch: 'main' });
  const run = services(provider, progress);
  const change = await ask(run, { ...reviewAsk(), agent: 'techlead', purpose: 'implement', callKey: callKeys.change('implement', 'T1', 1), reply: replies.change, tools, maxTurns: 5, settings: { model: api.model, temperature: 0, max_tokens: 1000 } });
  t.like(change, { summary: 'wrote hello.txt' });
  t.is(fs.readFileSync(path.join(worktree, 'hello.txt'), 'utf8'), 'hi\n');
  const third = fake.requests[2]?.body as { messages: { role: string; content: string }[] };
  t.regex(third.messages.at(-1)?.content ?? '', /<tool_result name="read_file">\nhi/);
  t.is(progress.filter((line) => /writes tool calls as text/.test(line)).length, 1);
  t.deepEqual(run.store.effects.list('r').map((effect) => effect.stepKey), ['tool:techlead:implement:T1:1:text_call_1', 'tool:techlead:implement:T1:1:turn2:text_call_1']);
});

// --- replies cut off and re-asks -----------------------------------------------------------------

test('ask: a reply cut off at max_tokens is asked again, saying so and naming the setting', async (t) => {
  const api = apis[1] as Api;
  const { fake, provider } = await setup(t, api, [step.reply({ text: '{"verdict": "approve", "summary": "the crit', stopReason: 'length' }), step.reply({ text: review })]);
  const verdict = await ask(services(provider), reviewAsk({ settings: { model: api.model, temperature: 0, max_tokens: 1000 } }));
  t.like(verdict, { verdict: 'approve' });
  const reAsk = (fake.requests[1]?.body as { messages: { content: string }[] }).messages.at(-1)?.content ?? '';
  t.regex(reAsk, /cut off before it ended/);
  t.regex(reAsk, /1000 tokens, agents\.moderator\.max_tokens/);
});

test('ask: a reply cut off every time ends as malformed_reply naming agents.<agent>.max_tokens', async (t) => {
  const api = apis[0] as Api;
  const { fake, provider } = await setup(t, api, [step.reply({ text: '{"verdict": "approve", "summary": "the crit', stopReason: 'max_tokens' })], 'refuse-all');
  const error = await t.throwsAsync(ask(services(provider), reviewAsk({ agent: 'techlead', settings: { model: api.model, temperature: 0, max_tokens: 1000 } })), { instanceOf: ModelError });
  t.is(error.code, 'malformed_reply');
  t.regex(error.message, /no usable reply after 3 tries: the reply was cut off at its token limit \(1000 tokens, agents\.techlead\.max_tokens\)/);
  t.is(fake.requests.filter((entry) => (entry.body as { tool_choice?: unknown }).tool_choice === undefined).length, 3, 'reply_retries 2: three tries');
});

test('ask: every problem goes back in one re-ask; a huge reply is not echoed back whole', async (t) => {
  const api = apis[1] as Api;
  const huge = `Let me explain at length. ${'blah '.repeat(5000)}`;
  const { fake, provider } = await setup(t, api, [step.reply({ text: huge }), step.reply({ text: '{"verdict": "maybe", "summary": "string"}' }), step.reply({ text: review })]);
  const verdict = await ask(services(provider), reviewAsk({ settings: { model: api.model, temperature: 0, max_tokens: 1000 } }));
  t.like(verdict, { verdict: 'approve' });
  const messages = (fake.requests.at(-1)?.body as { messages: { role: string; content: string }[] }).messages;
  const echoed = messages.find((message) => message.role === 'assistant')?.content ?? '';
  t.true(echoed.length < 5000, `the echoed reply is ${echoed.length} characters`);
  t.regex(echoed, /more characters of this reply left out/);
  const secondReAsk = messages.at(-1)?.content ?? '';
  t.regex(secondReAsk, /- verdict: .*found "maybe"/);
  t.regex(secondReAsk, /- summary: "string" is a placeholder/);
});
