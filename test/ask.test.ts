import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ask } from '../actors/ask.ts';
import { extractJson, parseReply, planReply, replies } from '../actors/replies.ts';
import type { RunServices } from '../actors/run-services.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider, ModelReply, ModelRequest, ToolCall } from '../services/llm/provider.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { AgentLogs } from '../services/logger.ts';
import { Store } from '../services/store/store.ts';
import { callKeys } from '../protocol/keys.ts';
import { contextFor } from './helpers/context.ts';

class Scripted implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted';
  readonly seen: ModelRequest[] = [];
  constructor(private readonly replies: (string | { text: string; toolCalls: ToolCall[] })[]) {}
  async complete(request: ModelRequest): Promise<ModelReply> {
    this.seen.push(structuredClone({ ...request, signal: undefined }));
    const next = this.replies[this.seen.length - 1] ?? '';
    const reply = typeof next === 'string' ? { text: next, toolCalls: [] } : next;
    return { ...reply, model: 'm', usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0, latencyMs: 0 };
  }
}

function services(provider: ModelProvider): { services: RunServices; store: Store } {
  const store = Store.open(':memory:');
  store.runs.create({ id: 'r', target: '/t', requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-ask-'));
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 1e6 } });
  // Only what `ask` touches is real here; the rest of the run's services are not needed.
  return { store, services: { runId: 'r', store, gateway, context: contextFor(), progress: () => {}, logs: new AgentLogs({ dir, runId: 'r', level: 'silent' }) } as unknown as RunServices };
}

const options = {
  agent: 'moderator' as const, purpose: 'review', callKey: callKeys.review('T1', 1), system: 's', prompt: 'p', reply: replies.review,
  settings: { model: 'm', temperature: 0, max_tokens: 100 }, replyRetries: 1,
};

test('a malformed reply is sent back once with the validation error, and the corrected reply is used', async (t) => {
  const provider = new Scripted(['I approve!', '```json\n{"verdict":"approve","summary":"ok","comments":[]}\n```']);
  const { services: run, store } = services(provider);
  const verdict = await ask(run, options);
  t.is(verdict.verdict, 'approve');
  t.is(provider.seen.length, 2);
  const last = provider.seen[1]?.messages.at(-1);
  t.regex(last && last.role !== 'tool' ? last.content : '', /not valid JSON/);
  t.deepEqual(store.calls.list('r').map((call) => call.callKey), ['moderator:review:T1:1', 'moderator:review:T1:1:retry']);
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

test('with tools, each tool call is run in the worktree, its result sent back, and every turn journaled', async (t) => {
  const worktree = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-tools-'));
  const tools = createWorktreeTools({ root: worktree, allowedCommands: ['node'], commandTimeoutMs: 10_000, outputCapBytes: 10_000, env: { PATH: process.env.PATH ?? '' }, baseBranch: 'main' });
  const provider = new Scripted([
    { text: 'Writing it.', toolCalls: [{ id: 'c1', name: 'write_file', input: { path: 'src/a.js', content: 'export const a = 1;\n' } }] },
    { text: 'Escaping?', toolCalls: [{ id: 'c2', name: 'read_file', input: { path: '../../etc/passwd' } }] },
    '```json\n{"summary":"added a","files":[],"delete":[]}\n```',
  ]);
  const { services: run, store } = services(provider);
  const change = await ask(run, { ...options, agent: 'techlead', purpose: 'implement', callKey: callKeys.change('implement', 'T1', 1), reply: replies.change, tools, maxTurns: 5 });
  t.is(change.summary, 'added a');
  t.is(fs.readFileSync(path.join(worktree, 'src', 'a.js'), 'utf8'), 'export const a = 1;\n');
  const second = provider.seen[1]?.messages.at(-1);
  t.true(second?.role === 'tool' && second.results[0]?.id === 'c1' && !second.results[0]?.isError);
  const third = provider.seen[2]?.messages.at(-1);
  t.true(third?.role === 'tool' && third.results[0]?.isError === true, 'the escape was refused and the model told so');
  t.deepEqual(store.calls.list('r').map((call) => call.callKey), ['techlead:implement:T1:1', 'techlead:implement:T1:1:turn2', 'techlead:implement:T1:1:turn3']);
  t.deepEqual(store.effects.list('r').map((effect) => effect.stepKey), ['tool:techlead:implement:T1:1:c1', 'tool:techlead:implement:T1:1:turn2:c2']);
});

test('the tool turn cap ends a conversation that never answers', async (t) => {
  const worktree = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-tools-'));
  const tools = createWorktreeTools({ root: worktree, allowedCommands: [], commandTimeoutMs: 1000, outputCapBytes: 1000, env: {}, baseBranch: 'main' });
  const looping = { text: '', toolCalls: [{ id: 'x', name: 'list_files', input: {} }] };
  const { services: run } = services(new Scripted([looping, looping, looping]));
  await t.throwsAsync(ask(run, { ...options, reply: replies.change, tools, maxTurns: 2 }), { message: /no final answer within 2 tool turns/ });
});
