import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type Database from 'better-sqlite3';
import { stepKeys } from '../protocol/keys.ts';
import { once } from '../services/effects.ts';
import { RunView } from '../services/store/run-view.ts';
import { Store, type NewTask } from '../services/store/store.ts';
import { ownConnection } from './helpers/database.ts';
import { startFixture } from './helpers/monitor-fixture.ts';

const tempStore = (t: ExecutionContext) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-run-view-'));
  const file = path.join(dir, '.duo-agent', 'moderator.db');
  const store = Store.open(file);
  t.teardown(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { store, db: ownConnection(t, file) };
};

const run = (id: string) => ({ id, target: '/t', requirements: `requirements of ${id}`, settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
const task = (id: string, origin: 'plan' | 'improvement' = 'plan'): NewTask => ({
  id,
  title: `title of ${id}`,
  type: 'feature',
  description: 'd',
  acceptanceCriteria: ['works'],
  dependsOn: [],
  origin,
  ...(origin === 'improvement' ? { angle: 'testing', priority: 4 } : {}),
});

/** The view's answers against a fresh read of the same rows from SQLite (`db`: a connection of the test's own). */
function sameAsStore(t: ExecutionContext, view: RunView, store: Store, db: Database.Database, step: string): void {
  const runId = view.runId;
  const { costUsd, ...totals } = store.calls.totals(runId);
  const { costUsd: viewCost, ...viewTotals } = view.totals();
  t.deepEqual(viewTotals, totals, `${step}: totals`);
  // Both sums are compensated; SQLite adds in the order of the index it scans, so the last digit may differ.
  t.true(Math.abs(viewCost - costUsd) <= 1e-12 * Math.max(1, costUsd), `${step}: cost ${viewCost} against ${costUsd}`);
  const largest = db.prepare('SELECT MAX(input_tokens) AS n FROM model_calls WHERE run_id = ?').get(runId) as { n: number | null };
  t.is(view.largestPrompt(), largest.n ?? 0, `${step}: largest prompt`);
  const contexts = db
    .prepare(`SELECT agent, prompt_tokens AS tokens, COALESCE(context_zone, 'ok') AS zone FROM model_calls AS m WHERE run_id = ? AND id = (SELECT MAX(id) FROM model_calls WHERE run_id = m.run_id AND agent = m.agent AND prompt_tokens IS NOT NULL) ORDER BY agent`)
    .all(runId) as { agent: string; tokens: number; zone: string }[];
  t.deepEqual(
    [...view.contextByAgent()].map(([agent, context]) => ({ agent, tokens: context.tokens, zone: context.zone })).sort((a, b) => (a.agent < b.agent ? -1 : 1)),
    contexts,
    `${step}: each agent's context`,
  );
  t.deepEqual(view.tasks(), store.tasks.list(runId), `${step}: tasks`);
  t.deepEqual(view.pullRequests(), store.pullRequests.list(runId), `${step}: pull requests`);
  t.deepEqual(view.reviews(), store.reviews.list(runId), `${step}: reviews`);
  const alerts = store.alerts.list(runId);
  t.deepEqual(view.alerts(), alerts, `${step}: alerts`);
  t.is(view.raisedAlerts(), alerts.filter((alert) => alert.level !== 'info').length, `${step}: raised alerts`);
  t.is(view.outcome(), store.runs.get(runId)?.outcome ?? null, `${step}: outcome`);
  t.is(view.activeMs(), store.runs.get(runId)?.activeMs ?? 0, `${step}: active time`);
}

test('after a demo-like run of writes, a resumed run among others, the view equals a fresh read from the store at every step', async (t) => {
  const { store, db } = tempStore(t);
  store.runs.create(run('r0'));
  store.runs.create(run('r1'));
  // History from an earlier session of r1, before the view exists (a resumed run).
  store.tasks.add('r1', [task('T1'), task('T2'), task('T3')]);
  const early = store.calls.begin({ runId: 'r1', callKey: 'moderator:plan', agent: 'moderator', purpose: 'plan', provider: 'replay', model: 'm' });
  store.calls.finish(early, { status: 'ok', usage: { inputTokens: 1200, outputTokens: 300, cacheReadTokens: 50, cacheWriteTokens: 7 }, costUsd: 0.0123 });
  store.calls.begin({ runId: 'r1', callKey: 'techlead:implement:T1:1', agent: 'techlead', purpose: 'implement', taskId: 'T1', provider: 'replay', model: 'm' });
  store.runs.addActiveTime('r1', 30_000);

  const view = new RunView(store, 'r1');
  t.teardown(() => view.close());
  sameAsStore(t, view, store, db, 'seeded');

  const steps: [string, () => unknown][] = [
    ['implementing T1', () => store.tasks.update('r1', 'T1', { status: 'in_progress', branch: 'duo-agent/feature/T1', attempts: 1 })],
    ['a call of another run', () => store.calls.finish(store.calls.begin({ runId: 'r0', callKey: 'x', agent: 'moderator', purpose: 'p', provider: 'replay', model: 'm' }), { status: 'ok', usage: { inputTokens: 99_999, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 9 })],
    [
      'the TechLead call',
      () => {
        const id = store.calls.begin({ runId: 'r1', callKey: 'techlead:implement:T1:1b', agent: 'techlead', purpose: 'implement', taskId: 'T1', provider: 'replay', model: 'm', promptTokens: 4900, promptSource: 'counted', contextZone: 'ok' });
        store.calls.finish(id, { status: 'ok', usage: { inputTokens: 5000, outputTokens: 800, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.0301 });
      },
    ],
    ['a failed call', () => store.calls.finish(store.calls.begin({ runId: 'r1', callKey: 'techlead:implement:T2:1', agent: 'techlead', purpose: 'implement', taskId: 'T2', provider: 'replay', model: 'm' }), { status: 'error', error: 'HTTP 500' })],
    ['PR #1 opened', () => store.pullRequests.open({ runId: 'r1', taskId: 'T1', provider: 'local', branch: 'duo-agent/feature/T1', base: 'main', title: 'feature(T1)', body: 'b', headSha: 'a1' })],
    ['PR #1 opened again (a re-run submit)', () => store.pullRequests.open({ runId: 'r1', taskId: 'T1', provider: 'local', branch: 'duo-agent/feature/T1', base: 'main', title: 'feature(T1)', body: 'b', headSha: 'a1' })],
    ['T1 in review', () => store.tasks.update('r1', 'T1', { status: 'in_review', prNumber: 1 })],
    ['a PR of another run', () => store.pullRequests.open({ runId: 'r0', taskId: 'T9', provider: 'local', branch: 'b', base: 'main', title: 't', body: 'b', headSha: 'z' })],
    ['changes requested', () => store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: 1, attempt: 1, verdict: 'request_changes', summary: 'missing test', comments: ['add a test'], testsPassed: false })],
    ['a warning', () => store.alerts.add({ runId: 'r1', level: 'warning', kind: 'tokens', message: '80% of the tokens used' })],
    ['an intervention note', () => store.alerts.add({ runId: 'r1', level: 'info', kind: 'intervention', message: 'pause through the monitoring server' })],
    ['revision pushed', () => store.pullRequests.updateHead(1, 'a2', 2)],
    ['approved', () => store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: 1, attempt: 2, verdict: 'approve', summary: 'good', comments: [], testsPassed: true })],
    ['the first review written again (moves last, as its new id)', () => store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: 1, attempt: 1, verdict: 'request_changes', summary: 'missing test, again', comments: ['add a test', 'and docs'], testsPassed: false })],
    ['merged', () => store.pullRequests.markMerged(1, 'm1')],
    [
      "the chart's task list projected in the checkpoint's transaction",
      () => store.transaction(() => store.tasks.project('r1', [{ id: 'T1', status: 'merged', attempt: 2 }, { id: 'T3', status: 'in_progress', attempt: 1 }])),
    ],
    ['the projection again, changing nothing', () => store.tasks.project('r1', [{ id: 'T1', status: 'merged', attempt: 2 }])],
    ['T1 merged', () => store.tasks.update('r1', 'T1', { status: 'merged' })],
    ['T2 in review, then skipped and its PR closed', () => {
      const pr = store.pullRequests.open({ runId: 'r1', taskId: 'T2', provider: 'local', branch: 'duo-agent/feature/T2', base: 'main', title: 'feature(T2)', body: 'b', headSha: 'c1' });
      store.tasks.update('r1', 'T2', { status: 'skipped' });
      store.pullRequests.markClosed(pr.number);
    }],
    ['improvements accepted in the step transaction', () => once(store, 'r1', stepKeys.analyze(1), async () => [task('T4', 'improvement'), task('T5', 'improvement')], (tasks) => store.tasks.add('r1', tasks))],
    ['tasks of a transaction that rolled back', () => t.throws(() => store.transaction(() => {
      store.tasks.add('r1', [task('T6')]);
      store.alerts.add({ runId: 'r1', level: 'critical', kind: 'x', message: 'never happened' });
      throw new Error('rolled back');
    }))],
    ['a huge prompt', () => store.calls.finish(store.calls.begin({ runId: 'r1', callKey: 'moderator:review:T1:2', agent: 'moderator', purpose: 'review', provider: 'replay', model: 'm' }), { status: 'ok', usage: { inputTokens: 70_000, outputTokens: 10, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.21 })],
    ['a pruned conversation, then a call of it still in flight', () => {
      store.calls.finish(store.calls.begin({ runId: 'r1', callKey: 'techlead:revise:T1:2', agent: 'techlead', purpose: 'revise', taskId: 'T1', provider: 'replay', model: 'm', promptTokens: 61_000, promptSource: 'estimated', contextZone: 'prune' }), { status: 'ok', usage: { inputTokens: 60_500, outputTokens: 10, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.1 });
      store.calls.begin({ runId: 'r1', callKey: 'techlead:revise:T1:2:turn2', agent: 'techlead', purpose: 'revise', taskId: 'T1', provider: 'replay', model: 'm', promptTokens: 40_000, promptSource: 'estimated', contextZone: 'prune' });
    }],
    ['time passes', () => store.runs.addActiveTime('r1', 12_345.6)],
    ['the other run finishes', () => store.runs.finish('r0', 'done', null)],
    ['the run finishes', () => store.runs.finish('r1', 'needs_human', 'T2 was skipped')],
  ];
  for (const [step, write] of steps) {
    await write();
    sameAsStore(t, view, store, db, step);
  }
  t.deepEqual(view.tasks().map((record) => [record.id, record.status]), [['T1', 'merged'], ['T2', 'skipped'], ['T3', 'in_progress'], ['T4', 'pending'], ['T5', 'pending']]);
  t.is(view.totals().callsSent, 7, 'the interrupted calls (of the first session, and the one in flight) count as sent');

  view.close();
  store.tasks.add('r1', [task('T7')]);
  t.is(view.tasks().length, 5, 'a closed view follows the store no more');
});

test('many cost shares sum as SQLite sums them, whatever order the calls finish in', (t) => {
  const { store, db } = tempStore(t);
  store.runs.create(run('r1'));
  const view = new RunView(store, 'r1');
  t.teardown(() => view.close());
  const ids = Array.from({ length: 200 }, (_, index) => store.calls.begin({ runId: 'r1', callKey: `k${index}`, agent: 'techlead', purpose: 'p', provider: 'replay', model: 'm' }));
  // Finished in reverse order, with amounts no float sum adds exactly.
  for (const [index, id] of [...ids.entries()].reverse()) {
    store.calls.finish(id, { status: 'ok', usage: { inputTokens: index, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.000_001 * (index + 1) + 0.1 / 3 });
  }
  sameAsStore(t, view, store, db, 'all finished');
});

test('health, metrics, state and tasks are answered without touching SQLite', async (t) => {
  const fixture = await startFixture({ withErrorCall: true });
  t.teardown(() => fixture.close());
  const read = async () => {
    const bodies: Record<string, unknown> = {};
    for (const route of ['/api/health', '/api/metrics', '/api/state', '/api/tasks']) {
      const response = await fetch(fixture.url(route));
      t.is(response.status, 200, route);
      const body = (await response.json()) as Record<string, unknown>;
      delete body.uptime_seconds;
      bodies[route] = body;
    }
    return bodies;
  };
  const before = await read();
  // Every statement of a closed connection throws: an endpoint that queried would answer 500.
  fixture.store.close();
  t.deepEqual(await read(), before);
});
