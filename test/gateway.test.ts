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
import { countLocally } from '../services/llm/token-count.ts';

function storeWithRun(): Store {
  const store = Store.open(':memory:');
  store.runs.create({ id: 'r1', target: '/tmp/x', requirements: 'req', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
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
  t.is(store.calls.totals('r1').callsSent, 1);
  t.is(store.calls.totals('r1').tokensUsed, 150);
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
  const [call] = store.calls.list('r1');
  t.is(call?.status, 'error');
  t.deepEqual(store.calls.totals('r1'), { callsSent: 1, callErrors: 1, tokensUsed: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 });
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

/**
 * A provider whose calls stay in flight until the test lets them answer: how many are in flight at
 * once is then a fact of the gateway's reservations, not of timing.
 */
class GatedProvider implements ModelProvider {
  readonly name = 'gated';
  readonly description = 'gated';
  inFlight = 0;
  maxInFlight = 0;
  sent: string[] = [];
  private readonly pending: { purpose: string; answer: (usage: { input: number; output: number }) => void }[] = [];
  async complete(request: ModelRequest): Promise<ModelReply> {
    this.sent.push(request.purpose);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const usage = await new Promise<{ input: number; output: number }>((answer) => this.pending.push({ purpose: request.purpose, answer }));
    this.inFlight -= 1;
    return { text: 'ok', model: request.model, usage: { inputTokens: usage.input, outputTokens: usage.output, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0, latencyMs: 1 };
  }
  /** Answers the oldest call in flight with the usage given. */
  answerOldest(usage = { input: 10, output: 10 }): string {
    const next = this.pending.shift();
    if (!next) throw new Error('no call in flight');
    next.answer(usage);
    return next.purpose;
  }
}

/** Lets every promise callback queued so far run (the gateway's awaits are microtasks and store calls). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

async function until(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1000 && !condition(); turn += 1) await settle();
  if (!condition()) throw new Error('condition never held');
}

// Each call's worst case: its prompt as the gateway counts it ('sys' and 'hello', the same for every call here) and all of max_tokens.
const worstCase = (maxTokens: number) => countLocally(request('x', maxTokens)).tokens + maxTokens;

test('parallel calls: exactly as many are in flight as the token budget holds worst cases; the next waits until one returns', async (t) => {
  const store = storeWithRun();
  const provider = new GatedProvider();
  const k = 3;
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: k * worstCase(1000) + 500 } });
  const calls = Array.from({ length: k + 2 }, (_, index) => gateway.call(callKeys.review(`T${index + 1}`, 1), { ...request(`review T${index + 1}`), taskId: `T${index + 1}` }));
  await until(() => provider.inFlight === k && gateway.inFlight().waiting === 2);
  await settle();
  t.is(provider.inFlight, k, 'the budget holds exactly k worst cases');
  t.deepEqual(gateway.inFlight(), { calls: k, reservedTokens: k * worstCase(1000), reservedCostUsd: 0, waiting: 2 });

  // One returns having used 20 tokens: its worst case is released, the first in line is sent.
  t.is(provider.answerOldest(), 'review T1');
  await until(() => provider.sent.length === k + 1);
  t.is(provider.sent.at(-1), 'review T4', 'calls waiting go in the order they asked');
  t.is(provider.inFlight, k);
  t.is(gateway.inFlight().waiting, 1);
  while (provider.sent.length < k + 2 || provider.inFlight > 0) {
    if (provider.inFlight > 0) provider.answerOldest();
    await settle();
  }
  await Promise.all(calls);
  t.is(provider.maxInFlight, k, 'never more than k at once');
  t.is(store.calls.totals('r1').tokensUsed, (k + 2) * 20);
  t.deepEqual(gateway.inFlight(), { calls: 0, reservedTokens: 0, reservedCostUsd: 0, waiting: 0 });
});

test('parallel calls: what they used together never passes the token budget, even when each used all of max_tokens', async (t) => {
  const store = storeWithRun();
  const provider = new GatedProvider();
  const budget = 2 * worstCase(1000) + 100;
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: budget } });
  const calls = ['a', 'b', 'c'].map((name) => gateway.call(callKeys.review(name, 1), request(name)).then(() => 'sent', (error: unknown) => (error instanceof BudgetExhaustedError ? 'refused' : `failed: ${String(error)}`)));
  await until(() => provider.inFlight === 2 && gateway.inFlight().waiting === 1);
  provider.answerOldest({ input: 3, output: 1000 });
  provider.answerOldest({ input: 3, output: 1000 });
  // 2006 used of two worst cases and 100 more: the third's worst case can never fit, so it is refused, not sent.
  t.deepEqual(await Promise.all(calls), ['sent', 'sent', 'refused']);
  t.deepEqual(provider.sent, ['a', 'b']);
  t.true(store.calls.totals('r1').tokensUsed <= budget);
});

test('parallel calls: the cost budget is reserved at the worst-case price, so two calls that could together overspend do not run at once', async (t) => {
  const store = storeWithRun();
  const provider = new GatedProvider();
  // $10 per million output tokens: a call's worst case is 1000 tokens out = $0.01 (plus its prompt at the input rate).
  const prices = { m: { input: 1, output: 10 } };
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: 1e9, maxCostUsd: 0.015, prices } });
  const calls = ['a', 'b'].map((name) => gateway.call(callKeys.review(name, 1), request(name)));
  await until(() => provider.inFlight === 1 && gateway.inFlight().waiting === 1);
  t.is(gateway.inFlight().calls, 1, 'the second waits: both worst cases come to $0.02 of $0.015');
  provider.answerOldest();
  await until(() => provider.inFlight === 1 && provider.sent.length === 2);
  provider.answerOldest();
  await Promise.all(calls);
  t.deepEqual(provider.sent, ['a', 'b']);
});

test('parallel calls: a large call at the head of the line is not overtaken by smaller ones that would fit', async (t) => {
  const store = storeWithRun();
  const provider = new GatedProvider();
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: worstCase(1000) + worstCase(500) } });
  const first = gateway.call(callKeys.review('a', 1), request('a', 1000));
  await until(() => provider.inFlight === 1);
  const large = gateway.call(callKeys.review('b', 1), request('b', 1000));
  await until(() => gateway.inFlight().waiting === 1);
  const small = gateway.call(callKeys.review('c', 1), request('c', 100));
  await until(() => gateway.inFlight().waiting === 2);
  await settle();
  t.deepEqual(provider.sent, ['a'], 'the small call, which would fit beside the first, waits behind the large one');
  provider.answerOldest();
  await until(() => provider.sent.length === 3);
  t.deepEqual(provider.sent, ['a', 'b', 'c']);
  provider.answerOldest();
  provider.answerOldest();
  await Promise.all([first, large, small]);
});

test('parallel calls: a waiting call whose step is stopped leaves the line, is never sent, and lets the next one in', async (t) => {
  const store = storeWithRun();
  const provider = new GatedProvider();
  const gateway = new ModelGateway({ store, runId: 'r1', provider, budget: { maxTokensTotal: worstCase(1000) + 100 } });
  const first = gateway.call(callKeys.review('a', 1), request('a'));
  await until(() => provider.inFlight === 1);
  const controller = new AbortController();
  const stopped = gateway.call(callKeys.review('b', 1), { ...request('b'), signal: controller.signal });
  const next = gateway.call(callKeys.review('c', 1), request('c'));
  await until(() => gateway.inFlight().waiting === 2);
  controller.abort(new Error('step stopped'));
  await t.throwsAsync(stopped, { message: 'step stopped' });
  t.is(gateway.inFlight().waiting, 1);
  provider.answerOldest();
  await until(() => provider.sent.length === 2);
  provider.answerOldest();
  await Promise.all([first, next]);
  t.deepEqual(provider.sent, ['a', 'c']);
  t.is(store.calls.list('r1').length, 2, 'the stopped call was never journaled as sent');
});
