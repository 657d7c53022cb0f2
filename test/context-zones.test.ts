/**
 * A tool loop on a synthetic repository of 1,000 files with a scripted model that reads more and
 * more of it: every prompt sent stays under `limits.max_context_tokens`, the conversation passes
 * through each zone (summarised, pruned, stopped), and a step killed in the middle and resumed
 * from the journal sends exactly what the uninterrupted step sent.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type Database from 'better-sqlite3';
import { ask } from '../actors/ask.ts';
import { replies } from '../actors/replies.ts';
import type { RunServices } from '../actors/run-services.ts';
import { configSchema } from '../config/index.ts';
import { callKeys } from '../protocol/keys.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider, ModelReply, ModelRequest } from '../services/llm/provider.ts';
import { countLocally } from '../services/llm/token-count.ts';
import { AgentLogs } from '../services/logger.ts';
import { Store } from '../services/store/store.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { contextFor } from './helpers/context.ts';
import { ownConnection } from './helpers/database.ts';
import { commitFiles } from './helpers/repository.ts';

const LIMIT = 8000;

function tempDir(t: ExecutionContext, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-context-zones-${name}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lines = (count: number, name: string) => Array.from({ length: count }, (_, line) => `export const ${name}_${line} = 'value ${line} of ${name}';`).join('\n') + '\n';

/** 996 modules of ~40 lines, three documents of ~100 and one of ~800: 1,000 files. */
function createRepository(dir: string): void {
  const files: Record<string, string> = { 'docs/huge.md': lines(800, 'huge') };
  for (let index = 1; index <= 3; index += 1) files[`docs/medium${index}.md`] = lines(100, `medium${index}`);
  for (let index = 0; index < 996; index += 1) files[`src/area${index % 12}/unit${index}.js`] = lines(40, `unit${index}`);
  commitFiles(dir, files, 'a thousand files');
}

/** What the model reads at each turn: one module a turn, three documents at once at turn 8, the huge one at turn 11. */
function readsAt(turn: number): string[] {
  if (turn === 8) return ['docs/medium1.md', 'docs/medium2.md', 'docs/medium3.md'];
  if (turn === 11) return ['docs/huge.md'];
  return [`src/area${turn % 12}/unit${turn}.js`];
}

interface Sent {
  turn: number;
  tokens: number;
  messages: ModelRequest['messages'];
}

/**
 * Reads on, turn after turn; its turn is the one after the last tool call it made (the call ids
 * say which), so pruning does not confuse it. `crashAt` makes that call fail as a killed process's would.
 */
class Reader implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted reader (test/context-zones.test.ts)';
  readonly sent: Sent[] = [];

  constructor(private readonly crashAt?: number) {}

  async complete(request: ModelRequest): Promise<ModelReply> {
    const last = [...request.messages].reverse().find((item) => item.role === 'assistant' && item.toolCalls?.length);
    const turn = last?.role === 'assistant' ? Number(/^t(\d+)-/.exec(last.toolCalls?.[0]?.id ?? '')?.[1]) + 1 : 1;
    if (turn === this.crashAt) throw new Error('killed: the process died here');
    this.sent.push({ turn, tokens: countLocally(request).tokens, messages: structuredClone(request.messages) });
    const usage = { inputTokens: countLocally(request).tokens, outputTokens: 20, cacheReadTokens: 0, cacheWriteTokens: 0 };
    const toolCalls = readsAt(turn).map((file, index) => ({ id: `t${turn}-${index}`, name: 'read_file', input: { path: file } }));
    return { text: `reading on (turn ${turn})`, toolCalls, stopReason: 'tool_use', model: 'scripted', usage, costUsd: 0, latencyMs: 0 };
  }
}

function session(dbFile: string, repo: string, logs: string, provider: Reader) {
  const store = Store.open(dbFile);
  if (!store.runs.get('r')) store.runs.create({ id: 'r', target: repo, requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 1e9 } });
  const services = {
    runId: 'r', store, gateway, logs: new AgentLogs({ dir: logs, runId: 'r', level: 'silent' }), progress: () => {},
    context: contextFor({ limits: { max_context_tokens: LIMIT }, context: { keep_turns: 2 } }),
    config: configSchema.parse({ limits: { max_context_tokens: LIMIT } }),
  } as unknown as RunServices;
  const tools = createWorktreeTools({ root: repo, allowedCommands: [], commandTimeoutMs: 60_000, outputCapBytes: 200_000, env: { PATH: process.env.PATH ?? '' }, baseBranch: 'main' });
  const step = () => ask(services, {
    agent: 'techlead', purpose: 'implement', taskId: 'T1', callKey: callKeys.change('implement', 'T1', 1),
    system: 'You implement tasks. Read what you need.', prompt: 'Task T1: read the repository until you understand it.', reply: replies.change,
    settings: { model: 'scripted-local', temperature: 0, max_tokens: 1000 }, tools, maxTurns: 20,
  });
  return { store, step };
}

const zones = (db: Database.Database) => (db.prepare("SELECT call_key, context_zone AS zone FROM model_calls WHERE status = 'ok' ORDER BY id").all() as { call_key: string; zone: string }[]);

test('a tool loop on 1,000 files: summarised, pruned, then stopped; never over max_context_tokens; a step killed in the middle resumes with the same prompts', async (t) => {
  const repo = tempDir(t, 'repo');
  createRepository(repo);
  t.is(execFileSync('git', ['ls-files'], { cwd: repo, encoding: 'utf8' }).trim().split('\n').length, 1000);

  // The step uninterrupted: the reference.
  const whole = new Reader();
  const referenceFile = path.join(tempDir(t, 'reference'), 'm.db');
  const reference = session(referenceFile, repo, tempDir(t, 'logs1'), whole);
  const referenceDb = ownConnection(t, referenceFile);
  const stopped = await t.throwsAsync(reference.step());
  t.log(whole.sent.map((sent) => `${sent.turn}:${sent.tokens}`).join(' '), zones(referenceDb).map((row) => row.zone).join(' '));
  t.is((stopped as { code?: string }).code, 'context_full');
  t.regex(stopped?.message ?? '', /^techlead implement T1: the conversation needs \d+ tokens, \d+% of limits\.max_context_tokens \(8000\), even pruned to the task and its last turn: the step stopped; raise limits\.max_context_tokens or split the task/);
  t.deepEqual(whole.sent.map((sent) => sent.turn), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 'turn 12 (after the huge read) was never sent');
  for (const sent of whole.sent) t.true(sent.tokens < 0.95 * LIMIT, `turn ${sent.turn}: ${sent.tokens} tokens`);
  const referenceZones = zones(referenceDb);
  const order = referenceZones.map((row) => row.zone);
  t.is(order[0], 'ok');
  t.true(order.includes('summarise') && order.includes('prune'), order.join(' '));
  t.true(order.indexOf('summarise') < order.indexOf('prune'), 'summarised before pruned');
  t.true(order.lastIndexOf('ok') < order.indexOf('summarise'), 'zones only rise');
  const alerts = reference.store.alerts.list('r');
  t.deepEqual(alerts.map((alert) => [alert.kind, alert.level]), [['context', 'warning'], ['context', 'warning'], ['context', 'critical']], 'one alert per zone entered');
  t.regex(alerts[0]?.message ?? '', /old tool results summarised/);
  t.regex(alerts[1]?.message ?? '', /pruned to the task, a summary and the recent turns/);
  t.regex(alerts[2]?.message ?? '', /the step stopped/);
  const pruned = whole.sent.find((sent) => sent.turn === 9)?.messages ?? [];
  t.regex(pruned[1]?.role === 'user' ? pruned[1].content : '', /^\[summarised to stay within the context limit\] Earlier in this step/, 'after pruning: the task, a summary, the recent turns');

  // The same step killed at turn 9 (after the pruning decision of that turn was journaled), then resumed.
  const dbFile = path.join(tempDir(t, 'resumed'), 'm.db');
  const first = session(dbFile, repo, tempDir(t, 'logs2'), new Reader(9));
  await t.throwsAsync(first.step(), { message: /killed/ });
  first.store.close();
  const rest = new Reader();
  const second = session(dbFile, repo, tempDir(t, 'logs3'), rest);
  const resumedStop = await t.throwsAsync(second.step());
  t.is(resumedStop?.message, stopped?.message, 'stopped the same way');
  t.deepEqual(rest.sent.map((sent) => sent.turn), [9, 10, 11], 'the paid turns came from the journal');
  t.deepEqual(rest.sent, whole.sent.slice(8), 'each turn sent after the resume is what the uninterrupted step sent');
  t.deepEqual(zones(ownConnection(t, dbFile)), referenceZones);
  t.deepEqual(second.store.alerts.list('r').map((alert) => alert.message), alerts.map((alert) => alert.message), 'no alert twice');
});
