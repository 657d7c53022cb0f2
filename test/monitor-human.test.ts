/**
 * The Monitor and the human (issue 14), on the real charts with scripted effects and ticks sent
 * by hand (the chart's clock is its samples' run time and `at`): every stopping condition with
 * its outcome, exit status and stop record; the forecast that asks before the budget runs out;
 * a busy agent without progress retried with another approach, skipped, then stuck; measured
 * diminishing returns; clarify questions answered through the API into the plan prompt, or timed
 * out to the assumptions; and the ticker ticking again after a resume.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { SimulatedClock, createActor, fromCallback, fromPromise, setup, waitFor, type EventObject } from 'xstate';
import { tickerActor } from '../actors/ticker.ts';
import { questionsAndAnswers } from '../actors/questions.ts';
import { exitCodeOf, exitCodes } from '../cli/exit-codes.ts';
import { everThinkerMachine, type AnalyzeInput, type AnalyzeOutput, type MeasureInput, type MeasureOutput } from '../machines/ever-thinker.machine.ts';
import { moderatorMachine, type ReviewInput, type ReviewOutput } from '../machines/moderator.machine.ts';
import { monitorMachine, type MetricsSample, type MonitorLimits } from '../machines/monitor.machine.ts';
import { mergeQueueMachine, type RetestOutput, type UpdateOutput } from '../machines/merge-queue.machine.ts';
import { orchestratorMachine, type OrchestratorInput } from '../machines/orchestrator.machine.ts';
import { techleadMachine, type TaskStepInput } from '../machines/techlead.machine.ts';
import { STOP_CONDITIONS, type StopCondition } from '../protocol/stops.ts';
import { learnedBonus, magnitudeOf, signalsOf } from '../services/improvement.ts';
import { Store } from '../services/store/store.ts';
import { startMonitoring } from '../server/index.ts';

const limits: MonitorLimits = {
  maxTokensTotal: 1000,
  maxCostUsd: 2,
  maxRuntimeMs: 3_600_000,
  maxErrorRate: 0.2,
  stagnationMs: 60_000,
  maxContextTokens: 100_000,
  maxConsecutiveErrors: 3,
  minHealthScore: 20,
};

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

const sample = (overrides: Partial<MetricsSample> & { atMs?: number }): MetricsSample => {
  const { atMs, ...rest } = overrides;
  return {
    at: new Date(T0 + (atMs ?? rest.runtimeMs ?? 0)).toISOString(),
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
    ...rest,
  };
};

/** A monitor under a parent that records what it is told. */
function monitored() {
  const heard: EventObject[] = [];
  const parent = setup({ actors: { monitor: monitorMachine } }).createMachine({
    invoke: { id: 'monitor', systemId: 'monitor', src: 'monitor', input: { limits, intervalMs: 1000 } },
    on: { '*': { actions: ({ event }) => heard.push(event) } },
  });
  const root = createActor(parent).start();
  const monitor = root.system.get('monitor');
  return { heard, monitor, tick: (overrides: Parameters<typeof sample>[0]) => monitor.send({ type: 'monitor.tick', sample: sample(overrides) }) };
}

const breaches: [StopCondition, Parameters<typeof sample>[0], RegExp][] = [
  ['tokens', { tokensUsed: 1000 }, /token budget reached: 1,000 of 1,000 \(limits\.max_tokens_total\)/],
  ['cost', { costUsd: 2 }, /cost budget reached: \$2\.00 of \$2 \(limits\.max_cost_usd\)/],
  ['runtime', { runtimeMs: 3_600_000 }, /runtime limit reached: 1\.00 h of 1 h \(limits\.max_runtime_hours\)/],
  ['context', { contextTokens: 95_000 }, /^context at 95% of its limit: a prompt of 95,000 tokens, limits\.max_context_tokens 100,000$/],
  ['consecutive_errors', { callsSent: 20, callErrors: 3, consecutiveErrors: 3 }, /^3 model calls in a row failed \(limits\.max_consecutive_errors 3\)$/],
  ['error_rate', { callsSent: 10, callErrors: 3 }, /^error rate 0\.30 above 0\.2 \(limits\.max_error_rate\): 3 of 10 model calls failed$/],
  // No measure at its own limit, several near it at once: errors (35), budget (24.5), context (14.4), alerts (10) lost.
  ['health', { callsSent: 10, callErrors: 2, tokensUsed: 990, contextTokens: 94_000, openAlerts: { warning: 0, critical: 2 } }, /health 16 .*limits\.min_health_score 20/],
];

for (const [condition, measured, reason] of breaches) {
  test(`stopping condition ${condition}: the Monitor stops the run with ${STOP_CONDITIONS[condition].outcome} (exit ${exitCodeOf(STOP_CONDITIONS[condition].outcome)}), a critical alert and its reason`, (t) => {
    const { heard, monitor, tick } = monitored();
    tick({});
    t.deepEqual(monitor.getSnapshot().value, { running: 'watching' }, 'a quiet run is healthy');
    tick(measured);
    t.is(monitor.getSnapshot().value, 'stopped');
    const stop = heard.find((event) => event.type === 'monitor.limit_reached') as { outcome: string; reason: string; condition: string } | undefined;
    t.like(stop, { condition, outcome: STOP_CONDITIONS[condition].outcome });
    t.regex(stop?.reason ?? '', reason);
    t.like(heard.find((event) => event.type === 'health.alert' && (event as { level?: string }).level === 'critical'), { kind: condition });
  });
}

test('every stopping condition has an outcome with its own exit status and names the settings that set it', (t) => {
  for (const [condition, info] of Object.entries(STOP_CONDITIONS)) {
    t.true(info.outcome in exitCodes, condition);
    t.true(info.settings.length > 0 && info.settings.every((name) => /^limits\.[a-z_]+$/.test(name)), condition);
  }
  t.deepEqual([exitCodeOf('done'), exitCodeOf('failed'), exitCodeOf('budget_exhausted'), exitCodeOf('stuck'), exitCodeOf('needs_human')], [0, 1, 3, 4, 5]);
});

test('an alert is raised again only after agents.monitor.alert_window_minutes', (t) => {
  const { heard, tick } = monitored();
  const tokenWarnings = () => heard.filter((event) => event.type === 'health.alert' && (event as { kind?: string }).kind === 'tokens').length;
  tick({ tokensUsed: 850 });
  tick({ tokensUsed: 860, atMs: 9 * 60_000 });
  t.is(tokenWarnings(), 1, 'within the window (10 min by default): once');
  tick({ tokensUsed: 870, atMs: 10 * 60_000 });
  t.is(tokenWarnings(), 2, 'the window has passed: raised again');
});

interface Script {
  verdicts?: ReviewOutput['verdict'][];
  /** Resolves or hangs each implement call; default: one file changed. */
  implement?: (task: TaskStepInput, signal: AbortSignal) => Promise<{ files: number }>;
  cycles?: AnalyzeOutput[];
  measure?: (cycle: number) => number | null;
  clarify?: () => Promise<{ assumptions: number; questions: number; questionIds?: string[] }>;
  plan?: () => Promise<{ tasks: { id: string; type: string }[] }>;
}

/** The whole tree with scripted effects and a monitor whose ticks the test sends. */
function tree(script: Script) {
  const log: string[] = [];
  const implemented: TaskStepInput[] = [];
  let review = 0;
  const machine = orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({
        actors: {
          clarify: fromPromise(async () => (script.clarify ? script.clarify() : { assumptions: 1, questions: 0 })),
          plan: fromPromise(async () => (script.plan ? script.plan() : { tasks: [{ id: 'T1', type: 'feature' }, { id: 'T2', type: 'feature' }] })),
          review: fromPromise<ReviewOutput, ReviewInput>(async ({ input }) => {
            log.push(`review ${input.taskId}`);
            const verdict = script.verdicts?.[review] ?? 'approve';
            review += 1;
            return { verdict };
          }),
        },
      }),
      mergeQueue: mergeQueueMachine.provide({
        actors: {
          updateBranch: fromPromise(async (): Promise<UpdateOutput> => ({ updated: false, conflicts: [] })),
          retest: fromPromise(async (): Promise<RetestOutput> => ({ passed: true, command: 'npm test' })),
          merge: fromPromise(async () => ({ mergeSha: 'abc' })),
        },
      }),
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: fromPromise(async () => ({ branch: 'b' })),
          implement: fromPromise<{ files: number }, TaskStepInput>(({ input, signal }) => {
            implemented.push(input);
            log.push(`implement ${input.taskId}`);
            return script.implement ? script.implement(input, signal) : Promise.resolve({ files: 1 });
          }),
          revise: fromPromise(async () => ({ files: 1 })),
          runTests: fromPromise(async (): Promise<{ passed: boolean }> => ({ passed: true })),
          submit: fromPromise(async () => ({ prNumber: 1 })),
        },
      }),
      everThinker: everThinkerMachine.provide({
        actors: {
          measure: fromPromise<MeasureOutput, MeasureInput>(async ({ input }) => ({ magnitude: script.measure?.(input.cycle) ?? null })),
          analyze: fromPromise<AnalyzeOutput, AnalyzeInput>(async ({ input }) => {
            log.push(`analyze ${input.cycle}`);
            return script.cycles?.[input.cycle - 1] ?? { accepted: [], considered: 0, bestPriority: null };
          }),
        },
      }),
      monitor: monitorMachine.provide({ actors: { ticker: fromCallback(() => () => {}) } }),
    },
  });
  return { machine, log, implemented };
}

const baseInput: OrchestratorInput = {
  autoApprove: true,
  maxReviewAttempts: 5,
  maxImprovementCycles: 3,
  minPriority: 3,
  // One task at a time: these tests follow one TechLead through stalls and loops.
  maxParallelTasks: 1,
  parallelReviews: 1,
  maxConflictRounds: 2,
  monitor: { limits, intervalMs: 60_000 },
};

function start(script: Script, input: Partial<OrchestratorInput> = {}) {
  const { machine, log, implemented } = tree(script);
  const actor = createActor(machine, { input: { ...baseInput, ...input }, id: 'orchestrator', systemId: 'orchestrator' }).start();
  const tick = (overrides: Parameters<typeof sample>[0]) => actor.system.get('monitor').send({ type: 'monitor.tick', sample: sample(overrides) });
  const finished = () => waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  return { actor, log, implemented, tick, finished };
}

/** Resolves once `check` holds, letting promise actors settle in between. */
async function until(check: () => boolean): Promise<void> {
  for (let round = 0; round < 200 && !check(); round += 1) await new Promise((resolve) => setImmediate(resolve));
  if (!check()) throw new Error('the run did not get there');
}

/** An implement call that waits for the test (or its abort). */
function gate() {
  const open: (() => void)[] = [];
  const implement = (_task: TaskStepInput, signal: AbortSignal) =>
    new Promise<{ files: number }>((resolve, reject) => {
      open.push(() => resolve({ files: 1 }));
      signal.addEventListener('abort', () => reject(new Error('aborted')));
    });
  return { implement, release: () => open.shift()?.() };
}

test('a limit the Monitor reaches ends the run with its outcome and a stop record naming the condition, the limit and the phase', async (t) => {
  const { implement } = gate();
  const run = start({ implement });
  await until(() => run.actor.system.get('techlead-1').getSnapshot().value === 'implementing');
  run.tick({ tokensUsed: 1000 });
  const done = await run.finished();
  t.is(done.output?.outcome, 'budget_exhausted');
  t.deepEqual(done.context.stop, { condition: 'tokens', limit: 1000, phase: 'implementing' });
});

test('a task handed to the TechLead more than limits.max_task_attempts times is a loop: the run stops stuck', async (t) => {
  const run = start({ verdicts: ['request_changes', 'request_changes', 'request_changes', 'request_changes'] }, { maxTaskAttempts: 2 });
  const done = await run.finished();
  t.is(done.output?.outcome, 'stuck');
  t.regex(done.output?.reason ?? '', /^T1 \(3 tries\) handed to the TechLead more than limits\.max_task_attempts \(2\) times: a loop/);
  t.like(done.context.stop, { condition: 'task_loop', limit: 2 });
  t.deepEqual(run.log.filter((entry) => entry === 'review T1'), ['review T1', 'review T1'], 'stopped before a third round was reviewed');
});

test('a busy agent without progress goes stagnant: retried with a different approach, then its task skipped, then the run stops stuck', async (t) => {
  const { implement } = gate();
  const run = start({ implement });
  await until(() => run.actor.system.get('techlead-1').getSnapshot().value === 'implementing');
  // Working all along, with the same progress mark: no progress however busy it is.
  const busy = (runtimeMs: number) => run.tick({ runtimeMs, agents: { 'techlead-1': { working: true, progress: 'diff 0' } } });
  busy(0);
  busy(60_000);
  await until(() => run.implemented.length === 2);
  t.like(run.implemented[1], { taskId: 'T1', approach: 1 }, 'the step runs again told to take another approach');
  t.like(run.actor.getSnapshot().context.stallRetries, { 'techlead-1:T1': 1 });
  busy(90_000);
  busy(150_000);
  await until(() => run.implemented.length === 3);
  t.is(run.implemented[2]?.taskId, 'T2', 'T1 skipped for a person, the next task starts');
  t.is(run.actor.getSnapshot().context.tasks.find((task) => task.id === 'T1')?.status, 'skipped');
  busy(180_000);
  busy(240_000);
  const done = await run.finished();
  t.is(done.output?.outcome, 'stuck');
  t.regex(done.output?.reason ?? '', /techlead-1 made no progress.*T2 stalled too with nothing merged since its last task was skipped/);
  t.like(done.context.stop, { condition: 'stagnation' });
});

test('progress resets the stagnation clock: an agent whose mark changes is never stagnant', async (t) => {
  const { heard, tick } = monitored();
  for (let minute = 0; minute <= 5; minute += 1) tick({ runtimeMs: minute * 60_000, agents: { 'techlead-1': { working: true, progress: `diff ${minute}` } } });
  t.false(heard.some((event) => event.type === 'health.alert' && (event as { kind?: string }).kind === 'stagnation'));
  tick({ runtimeMs: 6 * 60_000, agents: { 'techlead-1': { working: true, progress: 'diff 5' } } });
  t.true(heard.some((event) => event.type === 'health.alert' && (event as { kind?: string }).kind === 'stagnation'));
});

const overBudget = { tasksLeft: 1, basedOn: 1, tokensPerTask: 600, costPerTask: 0, tokensToFinish: 600, costToFinish: 0, tokensAtFinish: 1200, costAtFinish: 0, rough: false };

test('attended, a forecast past the budget asks a person and holds new tasks; "continue" goes on, and it is not asked again', async (t) => {
  const { implement, release } = gate();
  const run = start({ implement }, { attended: true });
  await until(() => run.implemented.length === 1);
  run.tick({ tokensUsed: 600, forecast: overBudget });
  t.like(run.actor.getSnapshot().context.asking, { kind: 'budget', ids: ['budget'], forecast: { budget: 'tokens', tokensAtFinish: 1200, maxTokensTotal: 1000 } });
  release();
  await until(() => run.actor.getSnapshot().context.tasks.find((task) => task.id === 'T1')?.status === 'merged');
  t.is(run.implemented.length, 1, 'T2 waits for the answer');
  run.actor.send({ type: 'human.answered', questionId: 'budget', answer: 'continue' });
  await until(() => run.implemented.length === 2);
  t.is(run.actor.getSnapshot().context.asking, null);
  run.tick({ runtimeMs: 1000, tokensUsed: 700, forecast: { ...overBudget, tokensAtFinish: 1300 } });
  t.is(run.actor.getSnapshot().context.asking, null, 'not asked again under the same budget');
  release();
  t.is((await run.finished()).output?.outcome, 'done');
});

test('a forecast past the budget ends an unattended run needs_human before it runs dry; attended and unanswered, when the time is up', async (t) => {
  const unattended = start({ implement: gate().implement });
  await until(() => unattended.implemented.length === 1);
  unattended.tick({ tokensUsed: 600, forecast: overBudget });
  const stopped = await unattended.finished();
  t.is(stopped.output?.outcome, 'needs_human');
  t.regex(stopped.output?.reason ?? '', /^the forecast to finish 1 task\(s\) is ~1,200 tokens, past limits\.max_tokens_total 1,000, and the run is unattended: raise the budget, then --resume$/);
  t.like(stopped.context.stop, { condition: 'forecast', limit: 1000 });

  const asked = start({ implement: gate().implement }, { attended: true, interventionTimeoutMs: 5 * 60_000 });
  await until(() => asked.implemented.length === 1);
  asked.tick({ tokensUsed: 600, forecast: overBudget });
  // The deadline is armed by the next measurement's time, and passes five minutes later.
  asked.tick({ runtimeMs: 1000, tokensUsed: 600, forecast: overBudget });
  asked.tick({ runtimeMs: 4 * 60_000, tokensUsed: 600, forecast: overBudget });
  t.is(asked.actor.getSnapshot().status, 'active');
  asked.tick({ runtimeMs: 5 * 60_000 + 1000, tokensUsed: 600, forecast: overBudget });
  const timedOut = await asked.finished();
  t.is(timedOut.output?.outcome, 'needs_human');
  t.regex(timedOut.output?.reason ?? '', /nobody answered in 5 min/);
  t.like(timedOut.context.stop, { condition: 'question_timeout' });
});

test('measured diminishing returns end the improvement cycles: done, with the magnitude and limits.min_improvement', async (t) => {
  const run = start({ cycles: [{ accepted: [{ id: 'T3', type: 'perf' }], considered: 1, bestPriority: 5 }], measure: (cycle) => (cycle === 1 ? null : 0.01) }, { minImprovement: 0.05 });
  const done = await run.finished();
  t.deepEqual(done.output, { outcome: 'done', reason: 'every task merged; diminishing returns: improvement cycle 1 measured 0.010, below limits.min_improvement 0.05' });
  t.like(done.context.stop, { condition: 'diminishing_returns', limit: 0.05 });
  t.deepEqual(run.log.filter((entry) => entry.startsWith('analyze')), ['analyze 1'], 'the second cycle is not analyzed');
});

test('a cycle that measurably improved the project lets the next one run; the cycles then end at max_improvement_cycles', async (t) => {
  const proposal = (id: string): AnalyzeOutput => ({ accepted: [{ id, type: 'perf' }], considered: 1, bestPriority: 5 });
  const run = start({ cycles: [proposal('T3'), proposal('T4')], measure: (cycle) => (cycle === 1 ? null : 0.3) }, { maxImprovementCycles: 2 });
  const done = await run.finished();
  t.deepEqual(done.output, { outcome: 'done', reason: 'every task merged; limits.max_improvement_cycles (2) reached' });
  t.like(done.context.stop, { condition: 'improvement_cycles', limit: 2 });
  t.deepEqual(run.log.filter((entry) => entry.startsWith('analyze')), ['analyze 1', 'analyze 2']);
});

test('an improvement cycle\'s magnitude comes from the tests passing, the test count, lint findings, coverage and the review score', (t) => {
  const before = signalsOf({ taskId: 'T2', attempt: 1, output: '# tests 10\n# pass 8\n# fail 2\nall files | 60.00 |', lintFindings: 4 });
  const after = signalsOf({ taskId: 'T3', attempt: 1, output: '# tests 12\n# pass 12\n# fail 0\nall files | 70.00 |', lintFindings: 2 });
  t.like(before, { tests: { passed: 8, total: 10 }, lint: 4 });
  const measured = magnitudeOf(before, after, 1);
  t.true((measured.value ?? 0) > 0.05, JSON.stringify(measured));
  t.like(measured.changes, { tests_passing: 0.5, test_count: 0.2, lint_findings: 1 });
  t.is(magnitudeOf(after, after, 1).value, 0, 'nothing changed: nothing gained');
  t.is(magnitudeOf(before, after, 0).value, 0, 'tasks that did not merge gain nothing');
  t.is(magnitudeOf(signalsOf(undefined), after, 1).value, null, 'no signal on both sides: not measured');
});

test('with learning on, earlier ideas rank later proposals by their measured impact: merged with a large magnitude up, turned down ones down', (t) => {
  t.is(learnedBonus('perf', []), 0, 'nothing learnt');
  t.is(learnedBonus('perf', [{ angle: 'perf', outcome: 'merged', impact: 0.4 }]), 2);
  t.is(learnedBonus('perf', [{ angle: 'perf', outcome: 'merged', impact: 0.05 }]), 0.5, 'merged but measured small: a small bonus');
  t.is(learnedBonus('perf', [{ angle: 'perf', outcome: 'merged', impact: 0.4 }, { angle: 'perf', outcome: 'rejected' }]), 0);
  t.is(learnedBonus('ux', [{ angle: 'ux', outcome: 'rejected' }, { angle: 'ux', outcome: 'failed' }]), -2);
  t.is(learnedBonus('ux', [{ angle: 'ux', outcome: 'below threshold' }, { angle: 'perf', outcome: 'rejected' }]), 0, 'ideas never tried and other angles say nothing');
});

/** A store and the monitoring server around a real orchestrator whose Moderator asks Q1 and Q2; the plan keeps its prompt's questions part. */
async function askingRun(t: { teardown: (fn: () => Promise<void> | void) => void }, input: Partial<OrchestratorInput>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-questions-'));
  const store = Store.open(path.join(dir, 'moderator.db'));
  store.runs.create({ id: 'r1', target: dir, requirements: 'a todo CLI', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const prompts: string[] = [];
  const { machine } = tree({
    clarify: async () => {
      store.questions.add('r1', [{ id: 'Q1', text: 'Which storage?' }, { id: 'Q2', text: 'Which language?' }]);
      return { assumptions: 2, questions: 2, questionIds: ['Q1', 'Q2'] };
    },
    plan: async () => {
      prompts.push(questionsAndAnswers(store, 'r1'));
      return { tasks: [{ id: 'T1', type: 'feature' }] };
    },
  });
  const monitoring = await startMonitoring({ store, runId: 'r1', target: dir, host: '127.0.0.1', port: 0, enableWebSocket: false, logsDir: dir, limits });
  const actor = createActor(machine, { input: { ...baseInput, ...input }, id: 'orchestrator', systemId: 'orchestrator', inspect: (event) => monitoring.observe(event) });
  monitoring.attach(actor);
  actor.start();
  t.teardown(async () => {
    actor.stop();
    await monitoring.close();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const answer = async (body: Record<string, string>) => {
    const response = await fetch(new URL('/api/intervention', monitoring.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${monitoring.token}` },
      body: JSON.stringify({ action: 'answer', ...body }),
    });
    return response.status;
  };
  const tick = (runtimeMs: number) => actor.system.get('monitor').send({ type: 'monitor.tick', sample: sample({ runtimeMs }) });
  return { actor, prompts, answer, tick, store };
}

test('attended, the clarify questions wait for a person: answers through the API reach the plan prompt', async (t) => {
  const run = await askingRun(t, { attended: true });
  await until(() => run.actor.getSnapshot().value === 'awaitingAnswers');
  t.is(await run.answer({ question_id: 'Q1', answer: 'a JSON file' }), 202);
  t.is(run.actor.getSnapshot().value, 'awaitingAnswers', 'one question is still open');
  t.is(await run.answer({ answer: 'TypeScript' }), 202);
  await waitFor(run.actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(run.prompts.length, 1);
  t.regex(run.prompts[0] ?? '', /- Q1: Which storage\?\n {2}Answer from a person: a JSON file/);
  t.regex(run.prompts[0] ?? '', /- Q2: Which language\?\n {2}Answer from a person: TypeScript/);
  t.is(run.actor.getSnapshot().context.answers, 2);
});

test('an unanswered question times out after limits.intervention_timeout_minutes: the assumptions stand and the run goes on', async (t) => {
  const run = await askingRun(t, { attended: true, interventionTimeoutMs: 10 * 60_000 });
  await until(() => run.actor.getSnapshot().value === 'awaitingAnswers');
  run.tick(0);
  run.tick(9 * 60_000);
  t.is(run.actor.getSnapshot().value, 'awaitingAnswers');
  run.tick(10 * 60_000);
  await waitFor(run.actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.regex(run.prompts[0] ?? '', /- Q1: Which storage\?\n {2}\(not answered: your assumption stands\)/);
  t.is(await run.answer({ question_id: 'Q1', answer: 'too late' }), 409, 'a finished run takes no answer');
});

test('unattended, the clarify questions are not waited for: the assumptions stand at once', async (t) => {
  const run = await askingRun(t, { attended: false });
  await waitFor(run.actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.false(run.actor.getSnapshot().context.asking !== null);
  t.regex(run.prompts[0] ?? '', /not answered: your assumption stands/);
});

test('the monitor ticks again after a resume: its ticker restarts on the restored tree\'s clock', async (t) => {
  let measured = 0;
  const ticker = tickerActor({ sample: async () => sample({ runtimeMs: (measured += 1) * 1000 }) });
  const parent = setup({ actors: { monitor: monitorMachine.provide({ actors: { ticker } }) } }).createMachine({
    invoke: { id: 'monitor', systemId: 'monitor', src: 'monitor', input: { limits, intervalMs: 1000 } },
  });
  const lastTick = (actor: ReturnType<typeof createActor<typeof parent>>) => actor.system.get('monitor').getSnapshot().context.last?.runtimeMs ?? null;

  const firstClock = new SimulatedClock();
  const first = createActor(parent, { clock: firstClock }).start();
  firstClock.increment(1000);
  await until(() => lastTick(first) === 1000);
  const saved = first.getPersistedSnapshot();
  first.stop();

  const secondClock = new SimulatedClock();
  const resumed = createActor(parent, { clock: secondClock, snapshot: saved }).start();
  t.is(lastTick(resumed), 1000, 'the reading is restored with the tree');
  secondClock.increment(1000);
  await until(() => lastTick(resumed) === 2000);
  secondClock.increment(1000);
  await until(() => lastTick(resumed) === 3000);
  t.is(measured, 3);
  resumed.stop();
});
