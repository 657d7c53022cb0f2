import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ModelGateway } from '../services/llm/gateway.ts';
import { BudgetExhaustedError, ModelError } from '../services/llm/model-error.ts';
import type { ModelProvider, ModelReply, ModelRequest } from '../services/llm/provider.ts';
import { ReplayProvider, readSession, type Session } from '../services/llm/replay.ts';
import { Store } from '../services/store/store.ts';
import { callKeys } from '../protocol/keys.ts';

function storeWithRun(): Store {
  const store = Store.open(':memory:');
  store.createRun({ id: 'r1', target: '/tmp/x', requirements: 'req', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  return store;
}

/** A provider that counts what it was sent. */
class CountingProvider implements ModelProvider {
  readonly name = 'counting';
  readonly description = 'counting';
  sent: { purpose: string; sequence: number }[] = [];
  constructor(private readonly fail = false) {}
  async complete(request: ModelRequest, sequence: number): Promise<ModelReply> {
    this.sent.push({ purpose: request.purpose, sequence });
    if (this.fail) throw new Error('HTTP 500 from the model server');
    return { text: `reply ${this.sent.length}`, model: 'm', usage: { inputTokens: 100, outputTokens: 50, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.01, latencyMs: 1 };
  }
}

const request = (purpose: string, maxTokens = 1000): ModelRequest => ({
  agent: 'moderator', purpose, model: 'm', system: 'sys', messages: [{ role: 'user', content: 'hello' }], temperature: 0, maxTokens,
});

test('a journaled reply is returned without sending the call again, even by a new gateway (a resumed process)', async (t) => {
  const store = storeWithRun();
  const provider = new CountingProvider();
  const first = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: 100_000 } });
  const reply = await first.call(callKeys.plan(), request('plan'));
  const resumed = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: 100_000 } });
  const again = await resumed.call(callKeys.plan(), request('plan'));
  t.is(provider.sent.length, 1);
  t.is(again.text, reply.text);
  t.deepEqual(again.usage, reply.usage);
  t.is(store.totals('r1').callsSent, 1);
  t.is(store.totals('r1').tokensUsed, 150);
});

test('the replay sequence of an agent counts only its completed calls', async (t) => {
  const store = storeWithRun();
  const provider = new CountingProvider();
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: 100_000 } });
  await gateway.call(callKeys.clarify(), request('clarify'));
  await gateway.call(callKeys.plan(), request('plan'));
  t.deepEqual(provider.sent.map((call) => call.sequence), [0, 1]);
});

test('a call that could overrun the token budget is refused before it is sent', async (t) => {
  const store = storeWithRun();
  const provider = new CountingProvider();
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: 1200 } });
  await gateway.call(callKeys.clarify(), request('clarify', 500));
  const error = await t.throwsAsync(gateway.call(callKeys.plan(), request('plan', 1100)));
  t.true(error instanceof BudgetExhaustedError);
  t.regex(error?.message ?? '', /150 used of 1200/);
  t.is(provider.sent.length, 1);
});

test('a spent cost budget refuses further calls', async (t) => {
  const store = storeWithRun();
  const gateway = new ModelGateway({ store, runId: 'r1', provider: new CountingProvider(), budget: { maxTokensTotal: 1e6, maxCostUsd: 0.01 } });
  await gateway.call(callKeys.clarify(), request('clarify'));
  await t.throwsAsync(gateway.call(callKeys.plan(), request('plan')), { instanceOf: BudgetExhaustedError, message: /cost budget/ });
});

test('a failed call is journaled as an error and counted as sent', async (t) => {
  const store = storeWithRun();
  const gateway = new ModelGateway({ store, runId: 'r1', provider: new CountingProvider(true), budget: { maxTokensTotal: 1e6 } });
  await t.throwsAsync(gateway.call(callKeys.clarify(), request('clarify')), { instanceOf: ModelError, message: /HTTP 500/ });
  const [call] = store.listModelCalls('r1');
  t.is(call?.status, 'error');
  t.deepEqual(store.totals('r1'), { callsSent: 1, callErrors: 1, tokensUsed: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 });
});

const session: Session = {
  format: 'moderator-session/1',
  requirements: 'r',
  calls: {
    moderator: [
      { purpose: 'clarify', model: 'rec-model', reply: { text: 'one' }, usage: { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 2, cache_creation_input_tokens: 1 } },
    ],
  },
};

test('replay: plays the recorded reply and usage for the agent and position', async (t) => {
  const provider = new ReplayProvider({ session, file: 's.json' });
  const reply = await provider.complete(request('clarify'), 0);
  t.is(reply.text, 'one');
  t.is(reply.model, 'rec-model');
  t.deepEqual(reply.usage, { inputTokens: 10, outputTokens: 5, cacheReadTokens: 2, cacheWriteTokens: 1 });
  t.regex(provider.description, /replay/);
});

test('replay: a call the recording does not hold, or holds for another purpose, fails loudly', async (t) => {
  const provider = new ReplayProvider({ session, file: 's.json' });
  await t.throwsAsync(provider.complete(request('plan'), 0), { message: /asked for moderator call #1 \(plan\) but the recording holds clarify/ });
  await t.throwsAsync(provider.complete(request('clarify'), 1), { message: /no moderator call #2.*holds 1 moderator calls/ });
  await t.throwsAsync(provider.complete({ ...request('analyze'), agent: 'ever-thinker' }, 0), { message: /no ever-thinker call #1/ });
});

test('replay: the per-call delay honours the abort signal', async (t) => {
  const provider = new ReplayProvider({ session, file: 's.json', delayMs: 10_000 });
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 20);
  await t.throwsAsync(provider.complete({ ...request('clarify'), signal: controller.signal }, 0));
  t.true(Date.now() - started < 5000);
});

test('replay: a broken session file is one clear error naming the file and field', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-replay-'));
  const file = path.join(dir, 'bad.json');
  fs.writeFileSync(file, JSON.stringify({ ...session, calls: { moderator: [{ purpose: 'x' }] } }));
  t.throws(() => readSession(file), { message: new RegExp(`${file}: calls\\.moderator\\.0\\.model`) });
  t.throws(() => readSession(path.join(dir, 'missing.json')), { message: /missing\.json: file not found/ });
  fs.writeFileSync(file, '{not json');
  t.throws(() => readSession(file), { message: /bad\.json: / });
});

test('the bundled demo session is valid', (t) => {
  const demo = readSession(path.join(import.meta.dirname, '..', 'demos', 'todo-cli', 'session.json'));
  t.is(demo.calls.moderator?.length, 7);
});
