import net from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import test from 'ava';
import OpenAI from 'openai';
import { AnthropicProvider, normaliseAnthropicBaseURL } from '../services/llm/anthropic-provider.ts';
import { ModelError } from '../services/llm/model-error.ts';
import { OpenAIProvider, normaliseOpenAIBaseURL, type OpenAIProviderOptions } from '../services/llm/openai-provider.ts';
import { DEFAULT_PRICES, costOf, priceOf, withPrices } from '../services/llm/prices.ts';
import type { ModelProvider, ModelRequest } from '../services/llm/provider.ts';
import { checkConnection } from '../services/llm/connection-check.ts';
import type { ProviderOptions, RetryEvent } from '../services/llm/provider-options.ts';
import { startFakeAnthropic, step, type FakeServer, type FakeStep, type Script } from './fakes/anthropic-api.ts';
import { startFakeOpenAI } from './fakes/openai-api.ts';

// The SDKs read these; a developer's own settings must not leak into the tests.
for (const name of Object.keys(process.env)) {
  if (/^(ANTHROPIC|OPENAI)_/.test(name)) delete process.env[name];
}

const KEY = 'sk-test-key';

function request(overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    agent: 'techlead',
    purpose: 'implement',
    // Not claude-sonnet-4-5 (the config default): SDK 1.12 console.warns on every call that it is deprecated.
    model: 'claude-sonnet-4-6',
    system: 'You are the TechLead.',
    messages: [{ role: 'user', content: 'Implement T1.' }],
    temperature: 0.5,
    maxTokens: 64_000,
    ...overrides,
  };
}

/** Both APIs behind the same questions: a fake, a provider on it, and the model names to use. */
interface Api {
  label: string;
  start(script: Script<FakeStep>, options?: { apiKey?: string }): Promise<FakeServer<FakeStep>>;
  provider(options: ProviderOptions & Pick<OpenAIProviderOptions, 'maxTokensField'>): ModelProvider;
  model: string;
  backup: string;
  keyVariable: string;
}

const apis: Api[] = [
  {
    label: 'anthropic',
    start: startFakeAnthropic,
    provider: (options) => new AnthropicProvider(options),
    model: 'claude-opus-4-8',
    backup: 'claude-sonnet-4-6',
    keyVariable: 'DUO_AGENT_API_KEY',
  },
  {
    label: 'openai',
    start: startFakeOpenAI,
    provider: (options) => new OpenAIProvider(options),
    model: 'gpt-5.4',
    backup: 'gpt-5.4-mini',
    keyVariable: 'OPENAI_API_KEY',
  },
];

/** A fake for the test's lifetime and a provider on it with small retry settings. */
async function setup(t: { teardown(fn: () => Promise<void>): void }, api: Api, script: Script<FakeStep>, options: Partial<ProviderOptions> & { fakeKey?: string } = {}) {
  const fake = await api.start(script, options.fakeKey === undefined ? {} : { apiKey: options.fakeKey });
  t.teardown(() => fake.close());
  const retries: RetryEvent[] = [];
  const provider = api.provider({ apiKey: KEY, baseURL: fake.url, maxRetries: 2, timeoutMs: 5000, onRetry: (event) => retries.push(event), ...options });
  return { fake, provider, retries };
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// --- Anthropic specifics -------------------------------------------------------------------------

test('anthropic: a streamed text reply with its split usage, cache tokens and cost', async (t) => {
  const { fake, provider } = await setup(t, apis[0]!, [
    step.reply({ text: 'Here is the plan: three tasks, each one PR.', usage: { input: 1200, output: 340, cacheRead: 5000, cacheWrite: 800 } }),
  ]);
  const reply = await provider.complete(request({ model: 'claude-sonnet-4-6' }), 0);
  t.is(reply.text, 'Here is the plan: three tasks, each one PR.');
  t.is(reply.model, 'claude-sonnet-4-6');
  t.is(reply.stopReason, 'end');
  t.deepEqual(reply.usage, { inputTokens: 1200, outputTokens: 340, cacheReadTokens: 5000, cacheWriteTokens: 800 });
  t.is(reply.costUsd, (1200 * 3 + 340 * 15 + 5000 * 0.3 + 800 * 3.75) / 1e6);
  t.deepEqual(reply.toolCalls, []);

  const sent = fake.requests[0]!;
  const body = sent.body as Record<string, unknown>;
  t.is(sent.path, '/v1/messages');
  t.is(sent.headers['authorization'], `Bearer ${KEY}`);
  t.is(body['stream'], true);
  t.is(body['max_tokens'], 64_000);
  t.deepEqual(body['system'], [{ type: 'text', text: 'You are the TechLead.', cache_control: { type: 'ephemeral' } }]);
  t.false('temperature' in body, 'API version 2026-10-21 refuses temperature');
});

test('anthropic: tool definitions carry the cache breakpoint on the last one; turns map to tool_use / tool_result blocks', async (t) => {
  const { fake, provider } = await setup(t, apis[0]!, [
    step.reply({ text: 'Let me read it.', toolCalls: [{ id: 'toolu_1', name: 'read_file', input: { path: 'src/a.ts', lines: [1, 40], options: { raw: true } } }] }),
    step.reply({ text: 'The file exports two functions.' }),
  ]);
  const tools = [
    { name: 'list_files', description: 'List files', inputSchema: { type: 'object', properties: { dir: { type: 'string' } } } },
    { name: 'read_file', description: 'Read a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] } },
  ];
  const first = await provider.complete(request({ tools }), 0);
  t.is(first.stopReason, 'tool_use');
  t.is(first.text, 'Let me read it.');
  t.deepEqual(first.toolCalls, [{ id: 'toolu_1', name: 'read_file', input: { path: 'src/a.ts', lines: [1, 40], options: { raw: true } } }]);

  const second = await provider.complete(
    request({
      tools,
      messages: [
        { role: 'user', content: 'Implement T1.' },
        { role: 'assistant', content: first.text, toolCalls: first.toolCalls },
        { role: 'tool', results: [{ id: 'toolu_1', content: 'export function a() {}' }] },
        { role: 'user', content: 'Go on.' },
      ],
    }),
    1,
  );
  t.is(second.text, 'The file exports two functions.');
  t.is(second.stopReason, 'end');

  const body = fake.requests[1]!.body as { tools: Record<string, unknown>[]; messages: { role: string; content: unknown }[] };
  t.deepEqual(body.tools.map((tool) => tool['cache_control']), [undefined, { type: 'ephemeral' }]);
  t.deepEqual(body.tools[1], { name: 'read_file', description: 'Read a file', input_schema: tools[1]!.inputSchema, cache_control: { type: 'ephemeral' } });
  t.deepEqual(body.messages[1], {
    role: 'assistant',
    content: [
      { type: 'text', text: 'Let me read it.' },
      { type: 'tool_use', id: 'toolu_1', name: 'read_file', input: { path: 'src/a.ts', lines: [1, 40], options: { raw: true } } },
    ],
  });
  t.deepEqual(body.messages[2], {
    role: 'user',
    content: [
      { type: 'tool_result', tool_use_id: 'toolu_1', content: 'export function a() {}' },
      { type: 'text', text: 'Go on.' },
    ],
  });
  t.is(body.messages.length, 3);
});

test('anthropic: 529 overloaded is retried by the SDK, then the reply comes', async (t) => {
  const { fake, provider, retries } = await setup(t, apis[0]!, [step.overloaded(), step.reply({ text: 'fine now' })]);
  const reply = await provider.complete(request(), 0);
  t.is(reply.text, 'fine now');
  t.deepEqual(fake.requests.map((sent) => sent.headers['x-stainless-retry-count']), ['0', '1']);
  t.like(retries[0], { kind: 'retry', status: 529, attempt: 1 });
});

test('anthropic: a configured base URL ending in /v1 is not doubled', (t) => {
  t.is(normaliseAnthropicBaseURL(undefined), 'https://api.anthropic.com');
  t.is(normaliseAnthropicBaseURL('https://proxy.example/anthropic/v1/'), 'https://proxy.example/anthropic');
  t.is(normaliseAnthropicBaseURL('http://127.0.0.1:8080'), 'http://127.0.0.1:8080');
});

// --- OpenAI specifics ----------------------------------------------------------------------------

test('openai: a streamed text reply with usage from the last chunk; cached tokens counted apart from input', async (t) => {
  const { fake, provider } = await setup(t, apis[1]!, [step.reply({ text: 'Planned: T1, T2, T3.', usage: { input: 1000, cacheRead: 3000, output: 200 } })]);
  const reply = await provider.complete(request({ model: 'gpt-5.4-mini', temperature: 0.3 }), 0);
  t.is(reply.text, 'Planned: T1, T2, T3.');
  t.is(reply.stopReason, 'end');
  t.deepEqual(reply.usage, { inputTokens: 1000, outputTokens: 200, cacheReadTokens: 3000, cacheWriteTokens: 0 });
  t.is(reply.costUsd, (1000 * 0.75 + 3000 * 0.075 + 200 * 4.5) / 1e6);

  const sent = fake.requests[0]!;
  const body = sent.body as Record<string, unknown>;
  t.is(sent.path, '/v1/chat/completions', 'a base URL without a path gets /v1');
  t.is(sent.headers['authorization'], `Bearer ${KEY}`);
  t.deepEqual(body['stream_options'], { include_usage: true });
  t.is(body['temperature'], 0.3);
  t.is(body['max_tokens'], 64_000, 'an OpenAI-compatible server gets max_tokens');
  t.deepEqual(body['messages'], [
    { role: 'system', content: 'You are the TechLead.' },
    { role: 'user', content: 'Implement T1.' },
  ]);
});

test('openai: two tool calls streamed in pieces are assembled by index; results go back as tool messages', async (t) => {
  const { fake, provider } = await setup(t, apis[1]!, [
    step.reply({
      toolCalls: [
        { id: 'call_a', name: 'read_file', input: { path: 'src/a.ts', range: { from: 1, to: 40 } } },
        { id: 'call_b', name: 'run_tests', input: {} },
      ],
    }),
    step.reply({ text: 'Both done.' }),
  ]);
  const tools = [
    { name: 'read_file', description: 'Read a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } } } },
    { name: 'run_tests', description: 'Run the tests', inputSchema: { type: 'object', properties: {} } },
  ];
  const first = await provider.complete(request({ model: 'gpt-5.4', tools }), 0);
  t.is(first.stopReason, 'tool_use');
  t.is(first.text, '');
  t.deepEqual(first.toolCalls, [
    { id: 'call_a', name: 'read_file', input: { path: 'src/a.ts', range: { from: 1, to: 40 } } },
    { id: 'call_b', name: 'run_tests', input: {} },
  ]);

  const second = await provider.complete(
    request({
      model: 'gpt-5.4',
      tools,
      messages: [
        { role: 'user', content: 'Implement T1.' },
        { role: 'assistant', content: first.text, toolCalls: first.toolCalls },
        { role: 'tool', results: [{ id: 'call_a', content: 'export {}' }, { id: 'call_b', content: '2 failing', isError: true }] },
      ],
    }),
    1,
  );
  t.is(second.text, 'Both done.');
  const body = fake.requests[1]!.body as { tools: unknown[]; messages: unknown[] };
  t.deepEqual(body.tools[0], { type: 'function', function: { name: 'read_file', description: 'Read a file', parameters: tools[0]!.inputSchema } });
  t.deepEqual(body.messages.slice(2), [
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_a', type: 'function', function: { name: 'read_file', arguments: '{"path":"src/a.ts","range":{"from":1,"to":40}}' } },
        { id: 'call_b', type: 'function', function: { name: 'run_tests', arguments: '{}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'call_a', content: 'export {}' },
    { role: 'tool', tool_call_id: 'call_b', content: 'error: 2 failing' },
  ]);
});

test('openai: base_url normalisation adds /v1 only to an address without a path', (t) => {
  t.is(normaliseOpenAIBaseURL(undefined), 'https://api.openai.com/v1');
  t.is(normaliseOpenAIBaseURL('http://127.0.0.1:1234'), 'http://127.0.0.1:1234/v1');
  t.is(normaliseOpenAIBaseURL('http://127.0.0.1:1234/'), 'http://127.0.0.1:1234/v1');
  t.is(normaliseOpenAIBaseURL('http://localhost:11434/v1/'), 'http://localhost:11434/v1');
  t.is(normaliseOpenAIBaseURL('https://openrouter.ai/api/v1'), 'https://openrouter.ai/api/v1');
  t.is(normaliseOpenAIBaseURL('https://generativelanguage.googleapis.com/v1beta/openai/'), 'https://generativelanguage.googleapis.com/v1beta/openai');
});

test('openai: the default address is api.openai.com/v1 and gets max_completion_tokens', async (t) => {
  const fake = await startFakeOpenAI([step.reply({ text: 'hi' })]);
  t.teardown(() => fake.close());
  const seen: string[] = [];
  // The injected fetch stands in for the network: it sends what was meant for api.openai.com to the fake.
  const redirect: typeof fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    seen.push(url);
    return fetch(url.replace('https://api.openai.com', fake.url), init);
  };
  const provider = new OpenAIProvider({ apiKey: KEY, fetch: redirect, maxRetries: 0 });
  await provider.complete(request({ model: 'gpt-5.4' }), 0);
  t.deepEqual(seen, ['https://api.openai.com/v1/chat/completions']);
  const body = fake.requests[0]!.body as Record<string, unknown>;
  t.is(body['max_completion_tokens'], 64_000);
  t.false('max_tokens' in body);
});

// --- Faults, for both APIs -----------------------------------------------------------------------

for (const api of apis) {
  test(`${api.label}: 429 with retry-after-ms is retried after that wait, ahead of retry-after`, async (t) => {
    const { fake, provider, retries } = await setup(t, api, [step.rateLimited({ 'retry-after-ms': '10', 'retry-after': '5' }), step.reply({ text: 'after the wait' })]);
    const reply = await provider.complete(request({ model: api.model }), 0);
    t.is(reply.text, 'after the wait');
    t.deepEqual(fake.requests.map((sent) => sent.headers['x-stainless-retry-count']), ['0', '1']);
    const waited = fake.requests[1]!.at - fake.requests[0]!.at;
    // Only bounds a loaded machine cannot break: at least the 10 ms asked, well short of retry-after's 5 s.
    t.true(waited >= 9 && waited < 3000, `waited ${waited} ms`);
    t.deepEqual(retries, [{ kind: 'retry', provider: api.label, model: api.model, attempt: 1, maxRetries: 2, status: 429, retryAfterMs: 10 }]);
  });

  test(`${api.label}: 429 with retry-after in seconds is honoured instead of the SDK's backoff`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.rateLimited({ 'retry-after': '1' }), step.reply()]);
    await provider.complete(request({ model: api.model }), 0);
    const waited = fake.requests[1]!.at - fake.requests[0]!.at;
    // The SDK's own first backoff is 375-500 ms, so a wait of a second or more is retry-after's.
    t.true(waited >= 990, `waited ${waited} ms`);
  });

  test(`${api.label}: 500 twice, then the reply`, async (t) => {
    const { fake, provider, retries } = await setup(t, api, [step.serverError(), step.serverError(), step.reply({ text: 'third time' })]);
    const reply = await provider.complete(request({ model: api.model }), 0);
    t.is(reply.text, 'third time');
    t.deepEqual(fake.requests.map((sent) => sent.headers['x-stainless-retry-count']), ['0', '1', '2']);
    t.deepEqual(retries.map((event) => event.kind === 'retry' && event.attempt), [1, 2]);
  });

  test(`${api.label}: 500 past the retries is a one-line retryable ModelError`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.serverError()], { maxRetries: 1 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(fake.requests.length, 2);
    t.true(error.retryable);
    t.regex(error.message, /failed with 500 after 2 attempts: Internal server error: resume later$/);
    t.notRegex(error.message, /\n/);
  });

  test(`${api.label}: a model still rate limited after the retries hands over to the backup model`, async (t) => {
    const { fake, provider, retries } = await setup(
      t,
      api,
      (sent) => ((sent.body as { model: string }).model === api.model ? step.rateLimited({ 'retry-after-ms': '5' }) : step.reply({ text: 'from the backup', usage: { input: 100, output: 10 } })),
      { maxRetries: 1 },
    );
    const reply = await provider.complete(request({ model: api.model, backupModel: api.backup }), 0);
    t.is(reply.text, 'from the backup');
    t.is(reply.model, api.backup);
    t.deepEqual(fake.requests.map((sent) => (sent.body as { model: string }).model), [api.model, api.model, api.backup]);
    t.is(reply.costUsd, costOf(api.backup, reply.usage).usd);
    t.true(reply.costUsd > 0);
    t.deepEqual(retries.at(-1), { kind: 'backup_model', provider: api.label, model: api.model, backupModel: api.backup });
  });

  test(`${api.label}: a model rate limited with no backup fails with a message saying what to do`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.rateLimited({ 'retry-after-ms': '5' })], { maxRetries: 1 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(fake.requests.length, 2);
    t.true(error.retryable);
    t.regex(error.message, new RegExp(`kept rate-limiting ${api.model.replace('.', '\\.')} \\(429\\) after 2 attempts: resume later, or set a backup_model`));
  });

  test(`${api.label}: a rejected key is one line naming the key variable, and is not retried`, async (t) => {
    const { fake, provider, retries } = await setup(t, api, [step.reply()], { fakeKey: 'the-right-key' });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(error.message, `the ${api.label === 'anthropic' ? 'Anthropic' : 'OpenAI'} API rejected the key (401): check ${api.keyVariable}`);
    t.false(error.retryable);
    t.is(fake.requests.length, 1);
    t.deepEqual(retries, []);
  });

  test(`${api.label}: a closed port is "cannot reach <url>: <cause>"`, async (t) => {
    const port = await closedPort();
    const provider = api.provider({ apiKey: KEY, baseURL: `http://127.0.0.1:${port}`, maxRetries: 0 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    const shown = api.label === 'openai' ? `http://127.0.0.1:${port}/v1` : `http://127.0.0.1:${port}`;
    t.is(error.message, `cannot reach ${shown}: connect ECONNREFUSED 127.0.0.1:${port}`);
    t.true(error.retryable);
  });

  test(`${api.label}: no response headers within the timeout is an error, not a hang`, async (t) => {
    // Without the timeout the reply would arrive after 4 s and the call would succeed.
    const { provider } = await setup(t, api, [step.reply({ delayMs: 4000 })], { timeoutMs: 300, maxRetries: 0 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.regex(error.message, /^no answer from http:\/\/127\.0\.0\.1:\d+(\/v1)? within 300 ms: check the server, or raise the timeout$/);
    t.true(error.retryable);
  });

  test(`${api.label}: a stream that stalls after it started is ended by the idle timeout`, async (t) => {
    // Headers come at once; the pause is mid-stream, where the SDK's timeout no longer applies.
    const { provider } = await setup(t, api, [step.reply({ text: 'a reply that stops after its first words', stallMs: 5000 })], { timeoutMs: 800, maxRetries: 0 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.regex(error.message, /stalled: no data for 800 ms$/);
  });

  test(`${api.label}: a stream that stalls once is sent again, with the resend reported`, async (t) => {
    const { fake, provider, retries } = await setup(t, api, [step.reply({ text: 'stalls', stallMs: 5000 }), step.reply({ text: 'the whole reply' })], { timeoutMs: 800, resendBaseMs: 1 });
    const reply = await provider.complete(request({ model: api.model }), 0);
    t.is(reply.text, 'the whole reply');
    t.is(fake.requests.length, 2);
    t.like(retries.find((event) => event.kind === 'resend'), { kind: 'resend', attempt: 1, maxRetries: 2 });
  });

  test(`${api.label}: a stream event that is not JSON is sent again up to max_retries, then a malformed_reply ModelError`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.malformed('event')], { resendBaseMs: 1 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(error.code, 'malformed_reply');
    t.regex(error.message, /sent a reply it could not read after 3 attempts: a stream (event|chunk) is not JSON/);
    t.is(fake.requests.length, 3);
  });

  test(`${api.label}: a cut-off JSON body where a stream was expected is a malformed_reply ModelError`, async (t) => {
    const { provider } = await setup(t, api, [step.malformed('body')], { maxRetries: 0 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(error.code, 'malformed_reply');
    t.regex(error.message, /could not read: no (message_start event|chunks)/);
  });

  test(`${api.label}: an error event in the middle of the stream is sent again, and the next reply is used`, async (t) => {
    const { fake, provider, retries } = await setup(t, api, [step.streamError('overloaded_error', 'Overloaded'), step.reply({ text: 'second time lucky' })], { resendBaseMs: 1 });
    const reply = await provider.complete(request({ model: api.model }), 0);
    t.is(reply.text, 'second time lucky');
    t.is(fake.requests.length, 2);
    t.regex(retries.find((event) => event.kind === 'resend')?.reason ?? '', /broke off the reply of .*: overloaded_error: Overloaded/);
  });

  test(`${api.label}: an error event that retrying cannot fix is not sent again`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.streamError('invalid_request_error', 'prompt is too long'), step.reply()], { resendBaseMs: 1 });
    const error = await t.throwsAsync(provider.complete(request({ model: api.model }), 0), { instanceOf: ModelError });
    t.is(error.message, `the ${api.label === 'anthropic' ? 'Anthropic' : 'OpenAI'} API broke off the reply of ${api.model}: invalid_request_error: prompt is too long`);
    t.false(error.retryable);
    t.is(fake.requests.length, 1);
  });

  test(`${api.label}: a connection reset mid-reply is sent again`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.reset(), step.reply({ text: 'after the reset' })], { resendBaseMs: 1 });
    const reply = await provider.complete(request({ model: api.model }), 0);
    t.is(reply.text, 'after the reset');
    t.is(fake.requests.length, 2);
  });

  test(`${api.label}: cancelling the call mid-stream rejects with the abort, not a short reply`, async (t) => {
    const { provider } = await setup(t, api, [step.reply({ text: 'a reply that stops after its first words', stallMs: 3000 })]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    // signal.reason: a DOMException, which ava does not count as an Error.
    const error = await t.throwsAsync(provider.complete(request({ model: api.model, signal: controller.signal }), 0), { any: true });
    t.is((error as { name?: string }).name, 'AbortError');
    t.false(error instanceof ModelError);
  });

  test(`${api.label}: checkConnection reports who answered, or the one-line reason`, async (t) => {
    const { fake, provider } = await setup(t, api, [step.reply({ text: 'ok', stopReason: api.label === 'anthropic' ? 'max_tokens' : 'length' })]);
    const good = await checkConnection(provider, api.model);
    t.true(good.ok);
    t.regex(good.message, new RegExp(`^${api.label}: ${api.model.replace('.', '\\.')} answered in \\d+ ms$`));
    const body = fake.requests[0]!.body as Record<string, unknown>;
    t.is(body['max_tokens'], 1);

    const bad = await setup(t, api, [step.reply()], { fakeKey: 'other' });
    const failed = await checkConnection(bad.provider, api.model);
    t.false(failed.ok);
    t.regex(failed.message, /rejected the key \(401\)/);
  });
}

test('a backup model that is rate limited too fails with one line naming both models', async (t) => {
  const { fake, provider } = await setup(t, apis[0]!, [step.rateLimited({ 'retry-after-ms': '5' })], { maxRetries: 0 });
  const error = await t.throwsAsync(provider.complete(request({ model: 'claude-opus-4-8', backupModel: 'claude-haiku-4-5' }), 0), { instanceOf: ModelError });
  t.is(fake.requests.length, 2);
  t.is(error.message, 'claude-opus-4-8 stayed rate-limited and its backup claude-haiku-4-5 failed too: the Anthropic API kept rate-limiting claude-haiku-4-5 (429): resume later, or set a backup_model for this agent');
  t.true(error.retryable);
});

test('openai: a base URL with the wrong path is a 404 that points at model.base_url, not retried', async (t) => {
  const fake = await startFakeOpenAI([step.reply()]);
  t.teardown(() => fake.close());
  const provider = new OpenAIProvider({ apiKey: KEY, baseURL: `${fake.url}/api`, maxRetries: 2 });
  const error = await t.throwsAsync(provider.complete(request({ model: 'gpt-5.4' }), 0), { instanceOf: ModelError });
  t.is(fake.requests[0]?.path, '/api/chat/completions');
  t.is(fake.requests.length, 1);
  t.regex(error.message, /^the OpenAI API at http:\/\/127\.0\.0\.1:\d+\/api answered 404 for gpt-5\.4: Invalid URL \(POST \/api\/chat\/completions\): check the model name and model\.base_url$/);
  t.false(error.retryable);
});

// --- The fakes themselves ------------------------------------------------------------------------

test('the fakes also answer non-streaming requests in the shape the SDKs parse', async (t) => {
  const anthropicFake = await startFakeAnthropic([step.reply({ text: 'plain', toolCalls: [{ id: 'toolu_1', name: 'noop', input: { a: 1 } }], usage: { input: 7, output: 3, cacheRead: 2 } })]);
  const openaiFake = await startFakeOpenAI([step.reply({ text: 'plain', usage: { input: 7, output: 3, cacheRead: 2 } })]);
  t.teardown(async () => {
    await anthropicFake.close();
    await openaiFake.close();
  });
  const message = await new Anthropic({ apiKey: KEY, baseURL: anthropicFake.url, maxRetries: 0 }).messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 100,
    messages: [{ role: 'user', content: 'hi' }],
  });
  t.like(message, { stop_reason: 'tool_use', usage: { input_tokens: 7, output_tokens: 3, cache_read_input_tokens: 2 } });
  t.deepEqual(message.content.map((block) => block.type), ['text', 'tool_use']);

  const completion = await new OpenAI({ apiKey: KEY, baseURL: `${openaiFake.url}/v1`, maxRetries: 0 }).chat.completions.create({
    model: 'gpt-5.4-nano',
    messages: [{ role: 'user', content: 'hi' }],
  });
  t.is(completion.choices[0]?.message.content, 'plain');
  t.like(completion.usage, { prompt_tokens: 9, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 2 } });
});

// --- Prices --------------------------------------------------------------------------------------

test('prices: exact names, dated and suffixed names by prefix, the longest prefix winning', (t) => {
  t.is(priceOf('claude-sonnet-4-5', DEFAULT_PRICES)?.key, 'claude-sonnet-4');
  t.is(priceOf('claude-sonnet-4-5-20250929', DEFAULT_PRICES)?.key, 'claude-sonnet-4');
  t.is(priceOf('claude-sonnet-5-5', DEFAULT_PRICES)?.key, 'claude-sonnet-5-5');
  t.is(priceOf('claude-sonnet-5-20260630', DEFAULT_PRICES)?.key, 'claude-sonnet-5');
  t.is(priceOf('claude-opus-4-1-20250805', DEFAULT_PRICES)?.price.input, 15);
  t.is(priceOf('claude-opus-4-6', DEFAULT_PRICES)?.price.input, 5);
  t.is(priceOf('claude-haiku-5-5[1m]', DEFAULT_PRICES)?.key, 'claude-haiku-5-5');
  t.is(priceOf('gpt-5-mini-2025-08-07', DEFAULT_PRICES)?.key, 'gpt-5-mini');
  t.is(priceOf('gpt-5.1-codex', DEFAULT_PRICES)?.key, 'gpt-5.1');
  t.is(priceOf('anthropic/claude-haiku-4-5', DEFAULT_PRICES)?.key, 'claude-haiku-4-5');
  t.is(priceOf('gpt-5.6-sol', DEFAULT_PRICES), undefined, 'gpt-5 must not price gpt-5.6-*');
  t.is(priceOf('claude-sonnet-45', DEFAULT_PRICES), undefined);
});

test('prices: cost per million tokens; a configured table overrides; cache rates default to the input rate', (t) => {
  const usage = { inputTokens: 2_000_000, outputTokens: 1_000_000, cacheReadTokens: 1_000_000, cacheWriteTokens: 1_000_000 };
  t.deepEqual(costOf('claude-haiku-4-5', usage), { usd: 2 * 1 + 5 + 0.1 + 1.25, known: true });
  const table = withPrices({ 'claude-haiku-4-5': { input: 2, output: 10 }, 'qwen3-coder': { input: 0.5, output: 1, cache_read: 0.1 } });
  t.deepEqual(costOf('claude-haiku-4-5', usage, table), { usd: 4 + 10 + 2 + 2, known: true });
  t.deepEqual(costOf('qwen3-coder-30b', usage, table), { usd: 1 + 1 + 0.1 + 0.5, known: true });
  t.deepEqual(costOf('qwen3-coder', usage), { usd: 0, known: false });
});

test('prices: an unknown model costs 0 and is reported once per provider', async (t) => {
  const unknown: string[] = [];
  const { provider } = await setup(t, apis[1]!, [step.reply({ usage: { input: 100, output: 10 } })], { onUnknownPrice: (model) => unknown.push(model) });
  const first = await provider.complete(request({ model: 'local-llama' }), 0);
  await provider.complete(request({ model: 'local-llama' }), 1);
  t.is(first.costUsd, 0);
  t.deepEqual(unknown, ['local-llama']);
});
