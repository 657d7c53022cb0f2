import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ask } from '../actors/ask.ts';
import { extractJson, parseReply, planReply, reviewReply } from '../actors/replies.ts';
import type { RunServices } from '../actors/run-services.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider, ModelReply, ModelRequest } from '../services/llm/provider.ts';
import { AgentLogs } from '../services/logger.ts';
import { Store } from '../services/store/store.ts';

class Scripted implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted';
  readonly seen: ModelRequest[] = [];
  constructor(private readonly replies: string[]) {}
  async complete(request: ModelRequest): Promise<ModelReply> {
    this.seen.push(request);
    const text = this.replies[this.seen.length - 1] ?? '';
    return { text, model: 'm', usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0, latencyMs: 0 };
  }
}

function services(provider: ModelProvider): { services: RunServices; store: Store } {
  const store = Store.open(':memory:');
  store.createRun({ id: 'r', target: '/t', requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-ask-'));
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 1e6 } });
  // Only what `ask` touches is real here; the rest of the run's services are not needed.
  return { store, services: { gateway, logs: new AgentLogs({ dir, runId: 'r', level: 'silent' }) } as unknown as RunServices };
}

const options = {
  agent: 'moderator' as const, purpose: 'review', callKey: 'moderator:review:T1:1', system: 's', prompt: 'p', schema: reviewReply,
  settings: { model: 'm', temperature: 0, max_tokens: 100 },
};

test('a malformed reply is sent back once with the validation error, and the corrected reply is used', async (t) => {
  const provider = new Scripted(['I approve!', '```json\n{"verdict":"approve","summary":"ok","comments":[]}\n```']);
  const { services: run, store } = services(provider);
  const verdict = await ask(run, options);
  t.is(verdict.verdict, 'approve');
  t.is(provider.seen.length, 2);
  const last = provider.seen[1]?.messages.at(-1);
  t.regex(last && last.role !== 'tool' ? last.content : '', /not valid JSON/);
  t.deepEqual(store.listModelCalls('r').map((call) => call.callKey), ['moderator:review:T1:1', 'moderator:review:T1:1:retry']);
});

test('a second malformed reply is an error with code malformed_reply, not a crash', async (t) => {
  const provider = new Scripted(['{"verdict":"maybe"}', '{"verdict":"perhaps","summary":"x"}']);
  const { services: run } = services(provider);
  const error = await t.throwsAsync(ask(run, options));
  t.is((error as { code?: string }).code, 'malformed_reply');
  t.regex(error?.message ?? '', /verdict/);
});

test('the JSON is taken from the first fenced block, even when file contents inside it hold fences', (t) => {
  const inner = JSON.stringify({ summary: 's', files: [{ path: 'README.md', content: '# x\n```sh\nnpm test\n```\n' }] });
  t.is(extractJson(`Here it is:\n\`\`\`json\n${inner}\n\`\`\`\nDone.`), inner);
  t.is(extractJson(' {"a":1} '), '{"a":1}');
});

test('plans with duplicate task ids or no acceptance criteria are rejected', (t) => {
  const task = { id: 'T1', title: 't', type: 'feature', description: 'd', acceptance_criteria: ['c'], depends_on: [] };
  t.true(parseReply(JSON.stringify({ tasks: [task] }), planReply).ok);
  t.false(parseReply(JSON.stringify({ tasks: [task, task] }), planReply).ok);
  const empty = parseReply(JSON.stringify({ tasks: [{ ...task, acceptance_criteria: [] }] }), planReply);
  t.false(empty.ok);
  t.regex(empty.ok ? '' : empty.error, /tasks\.0\.acceptance_criteria/);
});
