import test from 'ava';
import { createActor, fromCallback, fromPromise, setup, waitFor, type EventObject } from 'xstate';
import { orchestratorMachine, type OrchestratorInput } from '../machines/orchestrator.machine.ts';
import { moderatorMachine, type ReviewInput, type ReviewOutput } from '../machines/moderator.machine.ts';
import { techleadMachine, type TaskStepInput } from '../machines/techlead.machine.ts';
import { everThinkerMachine, type AnalyzeInput, type AnalyzeOutput } from '../machines/ever-thinker.machine.ts';
import { monitorMachine, type MetricsSample, type MonitorLimits } from '../machines/monitor.machine.ts';
import { mergeQueueMachine, type MergeStepInput, type RetestOutput, type UpdateOutput } from '../machines/merge-queue.machine.ts';

const limits: MonitorLimits = {
  maxTokensTotal: 1000,
  maxCostUsd: null,
  maxRuntimeMs: 3_600_000,
  maxErrorRate: 0.2,
  stagnationMs: 60_000,
  maxContextTokens: 100_000,
};

const input: OrchestratorInput = {
  autoApprove: true,
  maxReviewAttempts: 2,
  maxImprovementCycles: 3,
  minPriority: 3,
  maxParallelTasks: 1,
  parallelReviews: 1,
  maxConflictRounds: 2,
  monitor: { limits, intervalMs: 60_000 },
};

interface Script {
  verdicts?: Record<string, ReviewOutput['verdict'][]>;
  cycles?: { accepted: { id: string; type: string }[]; bestPriority: number | null }[];
  failImplement?: string;
  /** T2 depends on T1. */
  chained?: boolean;
}

/** The whole tree with effects replaced by scripted fakes; records the effects it saw. */
function scripted(script: Script) {
  const log: string[] = [];
  const step = <I, O>(name: string, out: (input: I) => O) =>
    fromPromise<O, I>(async ({ input }) => {
      log.push(`${name}${input && typeof input === 'object' && 'taskId' in input ? ` ${String(input.taskId)}#${String((input as { attempt?: number }).attempt)}` : ''}`);
      return out(input);
    });
  const reviews = new Map<string, number>();
  const machine = orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({
        actors: {
          clarify: step('clarify', () => ({ assumptions: 2, questions: 0 })),
          plan: step('plan', () => ({ tasks: [{ id: 'T1', type: 'feature' }, { id: 'T2', type: 'feature', dependsOn: script.chained ? ['T1'] : [] }] })),
          review: step('review', (review: ReviewInput) => {
            const index = reviews.get(review.taskId) ?? 0;
            reviews.set(review.taskId, index + 1);
            return { verdict: script.verdicts?.[review.taskId]?.[index] ?? 'approve' };
          }),
        },
      }),
      mergeQueue: mergeQueueMachine.provide({
        actors: {
          updateBranch: fromPromise<UpdateOutput, MergeStepInput>(async () => ({ updated: false, conflicts: [] })),
          retest: fromPromise<RetestOutput, MergeStepInput>(async () => ({ passed: true, command: 'npm test' })),
          merge: step('merge', (_: MergeStepInput) => ({ mergeSha: 'abc' })),
        },
      }),
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: step('prepare', () => ({ branch: 'b' })),
          implement: fromPromise<{ files: number }, TaskStepInput>(async ({ input: task }) => {
            log.push(`implement ${task.taskId}#${task.attempt}`);
            if (task.taskId === script.failImplement) throw Object.assign(new Error('model said nonsense'), { code: 'malformed_reply' });
            return { files: 1 };
          }),
          revise: step('revise', () => ({ files: 1 })),
          runTests: step('test', (): { passed: boolean } => ({ passed: true })),
          submit: step('submit', () => ({ prNumber: 1 })),
        },
      }),
      everThinker: everThinkerMachine.provide({
        actors: {
          analyze: step('analyze', (analysis: AnalyzeInput): AnalyzeOutput => {
            const cycle = script.cycles?.[analysis.cycle - 1] ?? { accepted: [], bestPriority: null };
            return { ...cycle, considered: cycle.accepted.length };
          }),
        },
      }),
      monitor: monitorMachine,
    },
  });
  return { machine, log };
}

async function run(script: Script) {
  const { machine, log } = scripted(script);
  const actor = createActor(machine, { input, id: 'orchestrator', systemId: 'orchestrator' });
  actor.start();
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  return { output: done.output, log, context: done.context };
}

test('a run goes from scope to plan to merged tasks and ends done when improvements run dry', async (t) => {
  const { output, log } = await run({});
  t.deepEqual(output, { outcome: 'done', reason: 'every task merged; improvement cycle 1 found nothing worth a task (no proposal, below agents.ever_thinker.min_priority 3)' });
  t.deepEqual(log, [
    'clarify', 'plan',
    'prepare T1#1', 'implement T1#1', 'test T1#1', 'submit T1#1', 'review T1#1', 'merge T1#1',
    'prepare T2#1', 'implement T2#1', 'test T2#1', 'submit T2#1', 'review T2#1', 'merge T2#1',
    'analyze',
  ]);
});

test('changes requested: the TechLead revises and the PR is reviewed again', async (t) => {
  const { output, log } = await run({ verdicts: { T2: ['request_changes', 'approve'] } });
  t.is(output?.outcome, 'done');
  const t2 = log.filter((entry) => entry.includes('T2'));
  t.deepEqual(t2, ['prepare T2#1', 'implement T2#1', 'test T2#1', 'submit T2#1', 'review T2#1', 'revise T2#2', 'test T2#2', 'submit T2#2', 'review T2#2', 'merge T2#2']);
});

test('review attempts are capped: the task is rejected and the run needs a human', async (t) => {
  const { output, log } = await run({ verdicts: { T1: ['request_changes', 'request_changes', 'approve'] } });
  t.is(output?.outcome, 'needs_human');
  t.regex(output?.reason ?? '', /T1 rejected/);
  t.false(log.includes('merge T1#2'));
  t.true(log.includes('merge T2#1'), 'the next task still runs');
  t.false(log.includes('analyze'), 'no improvements on top of unfinished work');
});

test('an improvement cycle adds tasks; the next cycle below the threshold ends the run', async (t) => {
  const { output, log, context } = await run({ cycles: [{ accepted: [{ id: 'T3', type: 'fix' }], bestPriority: 5 }, { accepted: [], bestPriority: 1 }] });
  t.is(output?.outcome, 'done');
  t.true(log.includes('merge T3#1'));
  t.is(log.filter((entry) => entry === 'analyze').length, 2);
  t.is(context.improvementCycle, 2);
  t.deepEqual(context.tasks.map((task) => `${task.id}:${task.origin}:${task.status}`), ['T1:plan:merged', 'T2:plan:merged', 'T3:improvement:merged']);
});

test('a failed task is marked failed and the run goes on to an outcome that needs a human', async (t) => {
  const { output, log } = await run({ failImplement: 'T1' });
  t.is(output?.outcome, 'needs_human');
  t.regex(output?.reason ?? '', /T1 failed/);
  t.true(log.includes('merge T2#1'));
});

/** Polls a condition on child actors, whose changes the root's snapshot does not reflect. */
async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const sample = (overrides: Partial<MetricsSample>): MetricsSample => ({
  at: '2026-01-01T00:00:00.000Z',
  runtimeMs: 0,
  tokensUsed: 0,
  costUsd: 0,
  callsSent: 0,
  callErrors: 0,
  consecutiveErrors: 0,
  contextTokens: 0,
  openAlerts: { warning: 0, critical: 0 },
  tasks: { total: 0, merged: 0 },
  forecast: null,
  agents: {},
  ...overrides,
});

/** The monitor under a parent that only records what it is told, as the orchestrator would be. */
function monitored() {
  const heard: EventObject[] = [];
  const parent = setup({ actors: { monitor: monitorMachine } }).createMachine({
    invoke: { id: 'monitor', systemId: 'monitor', src: 'monitor', input: { limits, intervalMs: 1000 } },
    on: { '*': { actions: ({ event }) => heard.push(event) } },
  });
  const root = createActor(parent).start();
  const monitor = root.system.get('monitor');
  return { heard, monitor, tick: (overrides: Partial<MetricsSample>) => monitor.send({ type: 'monitor.tick', sample: sample(overrides) }) };
}

test('monitor: warns once at 80% of the token budget and stops the run at 100%', (t) => {
  const { heard, monitor, tick } = monitored();
  tick({ tokensUsed: 100 });
  t.deepEqual(monitor.getSnapshot().value, { running: 'watching' });
  tick({ tokensUsed: 850 });
  tick({ tokensUsed: 900 });
  t.deepEqual(monitor.getSnapshot().value, { running: 'alerting' });
  t.deepEqual(heard.filter((event) => event.type === 'health.alert').map((event) => (event as { kind?: string }).kind), ['tokens']);
  tick({ tokensUsed: 1000 });
  t.is(monitor.getSnapshot().value, 'stopped');
  t.like(heard.at(-1), { type: 'monitor.limit_reached', outcome: 'budget_exhausted' });
});

test('monitor: an error rate above the limit stops the run as failed, but not on a handful of calls', (t) => {
  const { heard, monitor, tick } = monitored();
  tick({ callsSent: 2, callErrors: 2 });
  t.not(monitor.getSnapshot().value, 'stopped');
  tick({ callsSent: 10, callErrors: 3 });
  t.is(monitor.getSnapshot().value, 'stopped');
  t.like(heard.at(-1), { type: 'monitor.limit_reached', outcome: 'failed' });
});

test('monitor: the runtime limit stops the run', (t) => {
  const { heard, tick } = monitored();
  tick({ runtimeMs: limits.maxRuntimeMs });
  t.like(heard.at(-1), { type: 'monitor.limit_reached', outcome: 'budget_exhausted' });
});

test('monitor: a working agent without progress for stagnation_minutes goes stagnant; the orchestrator retries once, then skips the task', async (t) => {
  let implementCalls = 0;
  const { machine } = scripted({});
  const hanging = machine.provide({
    actors: {
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: fromPromise(async () => ({ branch: 'b' })),
          implement: fromPromise<{ files: number }, TaskStepInput>(({ input: task, signal }) => {
            implementCalls += 1;
            if (task.taskId !== 'T1') return Promise.resolve({ files: 1 });
            return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
          }),
          revise: fromPromise(async () => ({ files: 1 })),
          runTests: fromPromise(async (): Promise<{ passed: boolean }> => ({ passed: true })),
          submit: fromPromise(async () => ({ prNumber: 2 })),
        },
      }),
      monitor: monitorMachine.provide({ actors: { ticker: fromCallback(() => () => {}) } }),
    },
  });
  const actor = createActor(hanging, { input, id: 'orchestrator', systemId: 'orchestrator' }).start();
  await until(() => actor.system.get('techlead-1').getSnapshot().value === 'implementing');
  const monitor = actor.system.get('monitor');
  // Busy or not, the same mark tick after tick is no progress; run time tells how long.
  const stuckAt = (runtimeMs: number) => sample({ runtimeMs, agents: { 'techlead-1': { working: true, progress: 'T1#1 work 0' } } });
  monitor.send({ type: 'monitor.tick', sample: stuckAt(0) });
  monitor.send({ type: 'monitor.tick', sample: stuckAt(120_000) });
  await until(() => implementCalls === 2);
  t.is(actor.system.get('techlead-1').getSnapshot().value, 'implementing', 'retried once');
  monitor.send({ type: 'monitor.tick', sample: stuckAt(150_000) });
  monitor.send({ type: 'monitor.tick', sample: stuckAt(240_000) });
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(done.output?.outcome, 'needs_human');
  t.regex(done.output?.reason ?? '', /T1 skipped/);
});

test('pause lets the step in flight finish but starts no next step until resume; skip drops the current task', async (t) => {
  const releases: (() => void)[] = [];
  const started: string[] = [];
  const { machine } = scripted({});
  const gated = machine.provide({
    actors: {
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: fromPromise(async () => ({ branch: 'b' })),
          implement: fromPromise<{ files: number }, TaskStepInput>(({ input: task, signal }) => {
            started.push(task.taskId);
            return new Promise((resolve, reject) => {
              releases.push(() => resolve({ files: 1 }));
              signal.addEventListener('abort', () => reject(new Error('aborted')));
            });
          }),
          revise: fromPromise(async () => ({ files: 1 })),
          runTests: fromPromise(async (): Promise<{ passed: boolean }> => ({ passed: true })),
          submit: fromPromise(async () => ({ prNumber: 3 })),
        },
      }),
      monitor: monitorMachine.provide({ actors: { ticker: fromCallback(() => () => {}) } }),
    },
  });
  const actor = createActor(gated, { input, id: 'orchestrator', systemId: 'orchestrator' }).start();
  await until(() => started.length === 1);
  actor.send({ type: 'run.pause' });
  t.true(actor.getSnapshot().matches({ implementing: 'paused' }));
  releases.shift()?.();
  await until(() => actor.getSnapshot().context.reviewQueue.includes('T1'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.deepEqual(started, ['T1'], 'T1 finished its implementation, T2 did not start while paused');
  t.is(actor.getSnapshot().context.tasks.find((task) => task.id === 'T1')?.status, 'in_review', 'and its review waits for the resume');
  actor.send({ type: 'run.resume' });
  await until(() => started.length === 2);
  t.is(actor.getSnapshot().context.tasks.find((task) => task.id === 'T1')?.status, 'merged');
  t.is(started[1], 'T2');
  actor.send({ type: 'task.skip', taskId: 'T2', reason: 'not needed' });
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(done.output?.outcome, 'needs_human');
  t.regex(done.output?.reason ?? '', /T2 skipped/);
  t.is(actor.system.get('techlead-1'), undefined, 'children are stopped with the run');
});

test('abort stops the run as cancelled', async (t) => {
  const { machine } = scripted({});
  const waiting = machine.provide({ actors: { askApproval: fromPromise<{ approved: boolean }>(() => new Promise(() => {})) } });
  const actor = createActor(waiting, { input: { ...input, autoApprove: false }, id: 'orchestrator', systemId: 'orchestrator' });
  actor.start();
  await until(() => actor.getSnapshot().matches('awaitingApproval'));
  actor.send({ type: 'run.abort', reason: 'changed my mind' });
  t.deepEqual(actor.getSnapshot().output, { outcome: 'cancelled', reason: 'changed my mind' });
});

test('a task whose dependency failed is not started, and the run says so', async (t) => {
  const { output, log } = await run({ failImplement: 'T1', chained: true });
  t.is(output?.outcome, 'needs_human');
  t.regex(output?.reason ?? '', /T1 failed, T2 skipped/);
  t.false(log.some((entry) => entry.includes('T2')), 'T2 never started');
});
