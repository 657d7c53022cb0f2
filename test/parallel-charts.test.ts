/**
 * The orchestrator with several tasks in flight, its effects scripted: which tasks run at once,
 * the review and merge queues, the merge queue's conflict path, pause and skip with tasks in
 * flight. Real git, models and a crash are in parallel-run.test.ts and the torture test.
 */
import test from 'ava';
import { createActor, fromCallback, fromPromise, waitFor, type AnyActorRef } from 'xstate';
import { orchestratorMachine, triesOf, type OrchestratorInput } from '../machines/orchestrator.machine.ts';
import { moderatorMachine, type ReviewInput, type ReviewOutput } from '../machines/moderator.machine.ts';
import { techleadMachine, type SubmitInput, type TaskStepInput, type TestOutput } from '../machines/techlead.machine.ts';
import { everThinkerMachine, type AnalyzeInput, type AnalyzeOutput } from '../machines/ever-thinker.machine.ts';
import { mergeQueueMachine, type MergeStepInput, type RetestOutput, type UpdateOutput } from '../machines/merge-queue.machine.ts';
import { monitorMachine } from '../machines/monitor.machine.ts';
import type { NewTaskRef, TaskRef } from '../machines/events.ts';

const input = (overrides: Partial<OrchestratorInput> = {}): OrchestratorInput => ({
  autoApprove: true,
  maxReviewAttempts: 2,
  maxImprovementCycles: 0,
  minPriority: 3,
  maxParallelTasks: 3,
  parallelReviews: 1,
  maxConflictRounds: 2,
  monitor: {
    intervalMs: 60_000,
    limits: { maxTokensTotal: 1e9, maxCostUsd: null, maxRuntimeMs: 3_600_000, maxErrorRate: 1, stagnationMs: 3_600_000, maxContextTokens: 1e9 },
  },
  ...overrides,
});

/** A step that finishes when the test says so: `release(name)` settles the oldest open one of that name. */
class Gate {
  readonly open = new Map<string, (() => void)[]>();
  readonly log: string[] = [];

  step<O>(name: string, output: O, gated: boolean) {
    return new Promise<O>((resolve) => {
      this.log.push(name);
      if (!gated) return resolve(output);
      const list = this.open.get(name) ?? [];
      list.push(() => resolve(output));
      this.open.set(name, list);
    });
  }

  release(name: string): void {
    const next = this.open.get(name)?.shift();
    if (!next) throw new Error(`nothing waits at ${name}; open: ${[...this.open].filter(([, list]) => list.length).map(([key]) => key).join(', ')}`);
    next();
  }

  waiting(name: string): boolean {
    return (this.open.get(name)?.length ?? 0) > 0;
  }

  /** Resolves when the predicate holds; the charts move in microtasks and on events, so it looks after each turn. */
  async until(predicate: () => boolean): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`not reached; steps so far: ${this.log.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}

interface Script {
  tasks: NewTaskRef[];
  /** Steps that wait for `gate.release`, by name (`implement T1`). */
  gated?: (name: string) => boolean;
  verdict?: (review: ReviewInput, round: number) => ReviewOutput['verdict'];
  /** What bringing a branch up to date finds, per task and call. */
  update?: (step: MergeStepInput, call: number) => UpdateOutput;
  retest?: (step: MergeStepInput) => boolean;
}

function tree(script: Script) {
  const gate = new Gate();
  const gated = script.gated ?? (() => false);
  const calls = new Map<string, number>();
  const count = (key: string) => {
    const n = calls.get(key) ?? 0;
    calls.set(key, n + 1);
    return n;
  };
  const named = (name: string, step: { taskId: string; attempt: number }) => `${name} ${step.taskId}#${step.attempt}`;
  const machine = orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({
        actors: {
          clarify: fromPromise(async () => ({ assumptions: 0, questions: 0 })),
          plan: fromPromise(async () => ({ tasks: script.tasks })),
          review: fromPromise<ReviewOutput, ReviewInput>(({ input: review }) =>
            gate.step(named('review', review), { verdict: script.verdict?.(review, count(`review ${review.taskId}`)) ?? 'approve' }, gated(`review ${review.taskId}`))),
        },
      }),
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: fromPromise<{ branch: string }, TaskStepInput>(({ input: step }) => gate.step(`${named('prepare', step)} g${step.generation}`, { branch: 'b' }, false)),
          implement: fromPromise<{ files: number }, TaskStepInput>(({ input: step }) => gate.step(named('implement', step), { files: 1 }, gated(`implement ${step.taskId}`))),
          revise: fromPromise<{ files: number }, TaskStepInput>(({ input: step }) => gate.step(named('revise', step), { files: 1 }, gated(`revise ${step.taskId}`))),
          runTests: fromPromise<TestOutput, TaskStepInput>(async () => ({ passed: true })),
          submit: fromPromise<{ prNumber: number }, SubmitInput>(async ({ input: step }) => ({ prNumber: Number(step.taskId.slice(1)) * 10 + step.generation })),
        },
      }),
      mergeQueue: mergeQueueMachine.provide({
        actors: {
          updateBranch: fromPromise<UpdateOutput, MergeStepInput>(({ input: step }) =>
            gate.step(named('update', step), script.update?.(step, count(`update ${step.taskId}`)) ?? { updated: false, conflicts: [] }, false)),
          retest: fromPromise<RetestOutput, MergeStepInput>(({ input: step }) => gate.step(named('retest', step), { passed: script.retest?.(step) ?? true, command: 'npm test' }, false)),
          merge: fromPromise<{ mergeSha: string }, MergeStepInput>(({ input: step }) => gate.step(named('merge', step), { mergeSha: 'abc' }, gated(`merge ${step.taskId}`))),
        },
      }),
      everThinker: everThinkerMachine.provide({ actors: { analyze: fromPromise(async (): Promise<AnalyzeOutput> => ({ accepted: [], considered: 0, bestPriority: null })) } }),
      monitor: monitorMachine.provide({ actors: { ticker: fromCallback(() => () => {}) } }),
    },
  });
  return { machine, gate };
}

function start(script: Script, overrides: Partial<OrchestratorInput> = {}) {
  const { machine, gate } = tree(script);
  const actor = createActor(machine, { input: input(overrides), id: 'orchestrator', systemId: 'orchestrator' }).start();
  const status = (id: string) => actor.getSnapshot().context.tasks.find((task) => task.id === id)?.status;
  const finished = () => waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  return { actor, gate, status, finished };
}

const independent = (count: number): NewTaskRef[] => Array.from({ length: count }, (_, index) => ({ id: `T${index + 1}`, type: 'feature' }));
const implementing = (gate: Gate) => [...gate.open].filter(([name, list]) => name.startsWith('implement') && list.length > 0).map(([name]) => name.split(' ')[1]?.split('#')[0]);

test('ready tasks start at once up to max_parallel_tasks, each on its own TechLead; the next starts when one ends', async (t) => {
  const { actor, gate, status, finished } = start({ tasks: independent(4), gated: (name) => name.startsWith('implement') }, { maxParallelTasks: 3 });
  await gate.until(() => implementing(gate).length === 3);
  t.deepEqual(implementing(gate), ['T1', 'T2', 'T3']);
  t.is(status('T4'), 'pending', 'the fourth waits for a free TechLead');
  t.deepEqual(actor.getSnapshot().context.techleads, [
    { id: 'techlead-1', taskId: 'T1' }, { id: 'techlead-2', taskId: 'T2' }, { id: 'techlead-3', taskId: 'T3' },
  ]);
  for (const id of ['techlead-1', 'techlead-2', 'techlead-3']) t.is((actor.system.get(id) as AnyActorRef).getSnapshot().value, 'implementing', `${id} works`);
  gate.release('implement T2#1');
  await gate.until(() => gate.waiting('implement T4#1'));
  t.is(status('T2'), 'merged');
  t.is(actor.getSnapshot().context.techleads.find((slot) => slot.taskId === 'T4')?.id, 'techlead-2', 'T4 took the TechLead T2 left');
  for (const id of ['T1', 'T3', 'T4']) gate.release(`implement ${id}#1`);
  const done = await finished();
  t.deepEqual(done.output, { outcome: 'done', reason: 'every task merged (improvement cycles are off: limits.max_improvement_cycles 0)' });
});

test('an approved PR lets go of its TechLead: the next task starts while the merge queue works; with one TechLead it waits for the merge', async (t) => {
  const parallel = start({ tasks: independent(3), gated: (name) => name === 'merge T1' || name === 'implement T3' }, { maxParallelTasks: 2 });
  await parallel.gate.until(() => parallel.gate.waiting('merge T1#1') && parallel.gate.waiting('implement T3#1'));
  t.is(parallel.actor.getSnapshot().context.techleads.find((slot) => slot.taskId === 'T3')?.id, 'techlead-1', 'T3 took the TechLead T1 let go of at approval');
  t.is(parallel.actor.getSnapshot().context.merging, 'T1');
  parallel.gate.release('merge T1#1');
  parallel.gate.release('implement T3#1');
  t.is((await parallel.finished()).output?.outcome, 'done');

  const one = start({ tasks: independent(2), gated: (name) => name === 'merge T1' }, { maxParallelTasks: 1 });
  await one.gate.until(() => one.gate.waiting('merge T1#1'));
  t.false(one.gate.log.some((name) => name.includes('T2')), 'one task at a time, merge included');
  t.deepEqual(one.actor.getSnapshot().context.techleads, [{ id: 'techlead-1', taskId: 'T1' }]);
  one.gate.release('merge T1#1');
  t.is((await one.finished()).output?.outcome, 'done');
  t.true(one.gate.log.indexOf('prepare T2#1 g1') > one.gate.log.indexOf('merge T1#1'));
});

test('a PR the merge queue sends back takes the next free TechLead before any new task does', async (t) => {
  // T1 and T2 approved together; T2's update conflicts once. T3 and T4 hold both TechLeads; T5 waits for one.
  const { actor, gate, finished } = start({
    tasks: independent(5),
    gated: (name) => name === 'implement T3' || name === 'implement T4',
    update: (step, call) => (step.taskId === 'T2' && call === 0 ? { updated: false, conflicts: ['a.js'] } : { updated: false, conflicts: [] }),
  }, { maxParallelTasks: 2 });
  await gate.until(() => gate.waiting('implement T3#1') && gate.waiting('implement T4#1'));
  await gate.until(() => actor.getSnapshot().context.workQueue.includes('T2'));
  t.deepEqual(actor.getSnapshot().context.techleads.map((slot) => slot.taskId), ['T3', 'T4'], 'both TechLeads busy: the revision waits');
  gate.release('implement T3#1');
  await gate.until(() => gate.log.includes('revise T2#2'));
  gate.release('implement T4#1');
  const done = await finished();
  t.is(done.output?.outcome, 'done');
  t.true(gate.log.indexOf('revise T2#2') < gate.log.indexOf('prepare T5#1 g1'), `the revision took the TechLead T3 let go of, before T5: ${gate.log.join(', ')}`);
});

test('dependencies: a task starts only when everything it depends on is merged', async (t) => {
  const tasks: NewTaskRef[] = [
    { id: 'T1', type: 'feature' },
    { id: 'T2', type: 'feature' },
    { id: 'T3', type: 'feature', dependsOn: ['T1', 'T2'] },
    { id: 'T4', type: 'feature', dependsOn: ['T3'] },
    { id: 'T5', type: 'feature' },
  ];
  const { gate, status, finished } = start({ tasks, gated: (name) => name === 'merge T1' || name === 'merge T2' }, { maxParallelTasks: 4 });
  await gate.until(() => gate.waiting('merge T1#1'));
  await gate.until(() => gate.log.includes('implement T5#1'));
  t.false(gate.log.some((name) => name.includes('T3')), 'T3 waits for T1 and T2');
  gate.release('merge T1#1');
  await gate.until(() => gate.waiting('merge T2#1'));
  t.is(status('T1'), 'merged');
  t.is(status('T3'), 'pending', 'T2 is not merged yet');
  gate.release('merge T2#1');
  const done = await finished();
  t.is(done.output?.outcome, 'done');
  const order = gate.log.filter((name) => name.startsWith('implement') || name.startsWith('merge'));
  t.true(order.indexOf('implement T3#1') > order.indexOf('merge T2#1'));
  t.true(order.indexOf('implement T4#1') > order.indexOf('merge T3#1'));
});

test('reviews queue for the one Moderator; parallel_reviews lets them run side by side', async (t) => {
  const queued = start({ tasks: independent(3), gated: (name) => name.startsWith('review') }, { maxParallelTasks: 3 });
  await queued.gate.until(() => queued.actor.getSnapshot().context.reviewQueue.length === 2);
  t.deepEqual([...queued.gate.open].filter(([, list]) => list.length).map(([name]) => name), ['review T1#1']);
  t.deepEqual(queued.actor.getSnapshot().context.reviewQueue, ['T2', 'T3']);
  for (const id of ['T1', 'T2', 'T3']) {
    await queued.gate.until(() => queued.gate.waiting(`review ${id}#1`));
    queued.gate.release(`review ${id}#1`);
  }
  t.is((await queued.finished()).output?.outcome, 'done');

  const side = start({ tasks: independent(3), gated: (name) => name.startsWith('review') }, { maxParallelTasks: 3, parallelReviews: 3 });
  await side.gate.until(() => ['T1', 'T2', 'T3'].every((id) => side.gate.waiting(`review ${id}#1`)));
  t.deepEqual(side.actor.getSnapshot().context.reviewers.map((slot) => slot.taskId), ['T1', 'T2', 'T3']);
  for (const id of ['T1', 'T2', 'T3']) side.gate.release(`review ${id}#1`);
  t.is((await side.finished()).output?.outcome, 'done');
});

test('the merge queue merges one PR at a time, in the order they were approved', async (t) => {
  const { actor, gate, finished } = start({ tasks: independent(3), gated: (name) => name.startsWith('merge') }, { maxParallelTasks: 3, parallelReviews: 3 });
  await gate.until(() => actor.getSnapshot().context.mergeQueue.length === 2);
  t.is(actor.getSnapshot().context.merging, 'T1');
  t.deepEqual(actor.getSnapshot().context.mergeQueue, ['T2', 'T3']);
  t.is(gate.log.filter((name) => name.startsWith('merge')).length, 1, 'one merge at a time');
  for (const id of ['T1', 'T2', 'T3']) {
    await gate.until(() => gate.waiting(`merge ${id}#1`));
    gate.release(`merge ${id}#1`);
  }
  t.is((await finished()).output?.outcome, 'done');
  t.deepEqual(gate.log.filter((name) => name.startsWith('update')), ['update T1#1', 'update T2#1', 'update T3#1']);
});

test('a PR whose update conflicts goes back to its TechLead, then is re-implemented on a fresh branch, then left for a person', async (t) => {
  // T2's branch conflicts with the base every time it is brought up to date.
  const { actor, gate, finished } = start({
    tasks: independent(2),
    update: (step) => (step.taskId === 'T2' ? { updated: false, conflicts: ['todo.js'] } : { updated: false, conflicts: [] }),
  }, { maxParallelTasks: 2, maxConflictRounds: 2, maxReviewAttempts: 2 });
  const done = await finished();
  t.is(done.output?.outcome, 'needs_human');
  t.regex(done.output?.reason ?? '', /T2 held/);
  const t2 = gate.log.filter((name) => name.includes('T2'));
  t.deepEqual(t2, [
    'prepare T2#1 g1', 'implement T2#1', 'review T2#1', 'update T2#1',
    // Two conflict rounds, each a revision reviewed again; the review allowance (2) is not used up by them.
    'revise T2#2', 'review T2#2', 'update T2#2',
    'revise T2#3', 'review T2#3', 'update T2#3',
    // Then once from scratch, on a fresh branch (generation 2) from the new base.
    'prepare T2#4 g2', 'implement T2#4', 'review T2#4', 'update T2#4',
  ]);
  t.false(gate.log.includes('merge T2#4'), 'never merged by force');
  const task = done.context.tasks.find((candidate) => candidate.id === 'T2');
  t.like(task, { status: 'held', generation: 2, attempt: 4, prNumber: 22 });
  t.is(done.context.tasks.find((candidate) => candidate.id === 'T1')?.status, 'merged');
  t.deepEqual(actor.getSnapshot().context.techleads.map((slot) => slot.taskId), [null, null]);
});

test('tests that fail on the updated branch send it back like a conflict; the revision that fixes them merges', async (t) => {
  let failures = 1;
  const { gate, finished } = start({
    tasks: independent(1),
    update: () => ({ updated: true, conflicts: [] }),
    retest: () => failures-- <= 0,
  }, { maxParallelTasks: 1 });
  const done = await finished();
  t.is(done.output?.outcome, 'done');
  t.deepEqual(gate.log, ['prepare T1#1 g1', 'implement T1#1', 'review T1#1', 'update T1#1', 'retest T1#1', 'revise T1#2', 'review T1#2', 'update T1#2', 'retest T1#2', 'merge T1#2']);
});

test('max_conflict_rounds 0: the first conflict re-implements the task at once', async (t) => {
  const { gate, finished } = start({
    tasks: independent(1),
    update: (_, call) => ({ updated: false, conflicts: call === 0 ? ['a.js'] : [] }),
  }, { maxParallelTasks: 1, maxConflictRounds: 0 });
  t.is((await finished()).output?.outcome, 'done');
  t.deepEqual(gate.log.filter((name) => name.startsWith('prepare')), ['prepare T1#1 g1', 'prepare T1#2 g2']);
});

test('pause with tasks in flight: each finishes its step, nothing next starts; resume carries on with all of them', async (t) => {
  const { actor, gate, status, finished } = start({ tasks: independent(3), gated: (name) => name.startsWith('implement') }, { maxParallelTasks: 2 });
  await gate.until(() => implementing(gate).length === 2);
  actor.send({ type: 'run.pause' });
  gate.release('implement T1#1');
  gate.release('implement T2#1');
  await gate.until(() => actor.getSnapshot().context.reviewQueue.length === 2);
  t.true(actor.getSnapshot().matches({ implementing: 'paused' }));
  t.false(gate.log.some((name) => name.startsWith('review')), 'no review starts while paused');
  t.is(status('T3'), 'pending');
  actor.send({ type: 'run.resume' });
  await gate.until(() => gate.waiting('implement T3#1'));
  gate.release('implement T3#1');
  t.is((await finished()).output?.outcome, 'done');
});

test('skip with tasks in flight: the skipped one is dropped (its TechLead reset), the others go on', async (t) => {
  const { actor, gate, status, finished } = start({ tasks: independent(3), gated: (name) => name.startsWith('implement') }, { maxParallelTasks: 3 });
  await gate.until(() => implementing(gate).length === 3);
  actor.send({ type: 'task.skip', taskId: 'T2' });
  t.is(status('T2'), 'skipped');
  t.is((actor.system.get('techlead-2') as AnyActorRef).getSnapshot().value, 'idle', 'its step was stopped');
  t.is(actor.getSnapshot().context.techleads[1]?.taskId, null);
  gate.release('implement T1#1');
  gate.release('implement T3#1');
  const done = await finished();
  t.is(done.output?.outcome, 'needs_human');
  t.regex(done.output?.reason ?? '', /T2 skipped/);
  t.is(status('T1'), 'merged');
  t.is(status('T3'), 'merged');
});

test('a failed task frees its TechLead; the others finish', async (t) => {
  const { machine, gate } = tree({ tasks: independent(3) });
  const failing = machine.provide({
    actors: {
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: fromPromise(async () => ({ branch: 'b' })),
          implement: fromPromise<{ files: number }, TaskStepInput>(async ({ input: step }) => {
            gate.log.push(`implement ${step.taskId}`);
            if (step.taskId === 'T2') throw Object.assign(new Error('no usable reply'), { code: 'malformed_reply' });
            return { files: 1 };
          }),
          revise: fromPromise(async () => ({ files: 1 })),
          runTests: fromPromise(async (): Promise<TestOutput> => ({ passed: true })),
          submit: fromPromise<{ prNumber: number }, SubmitInput>(async ({ input: step }) => ({ prNumber: Number(step.taskId.slice(1)) })),
        },
      }),
    },
  });
  const actor = createActor(failing, { input: input({ maxParallelTasks: 2 }), id: 'orchestrator', systemId: 'orchestrator' }).start();
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(done.output?.outcome, 'needs_human');
  t.deepEqual(done.context.tasks.map((task) => `${task.id} ${task.status}`), ['T1 merged', 'T2 failed', 'T3 merged']);
});

test('stagnation counts per TechLead: one skipped for stalling does not make another one\'s first stall stop the run', async (t) => {
  const { actor, gate } = start({ tasks: independent(3), gated: (name) => name.startsWith('implement') }, { maxParallelTasks: 2 });
  await gate.until(() => implementing(gate).length === 2);
  const stall = (who: string, taskId: string) => actor.send({ type: 'agent.stalled', agent: 'techlead', actor: who, taskId });
  stall('techlead-1', 'T1');
  t.like(actor.getSnapshot().context.stallRetries, { 'techlead-1:T1': 1 }, 'retried once with another approach');
  stall('techlead-1', 'T1');
  t.is(actor.getSnapshot().context.tasks.find((task) => task.id === 'T1')?.status, 'skipped');
  await gate.until(() => gate.waiting('implement T3#1'));
  stall('techlead-2', 'T2');
  t.is(actor.getSnapshot().status, 'active', 'another TechLead stalling is retried, not the end of the run');
  t.like(actor.getSnapshot().context.stallRetries, { 'techlead-2:T2': 1 });
  // The TechLead that had a task skipped stalls again with nothing merged since: stuck.
  stall('techlead-1', 'T3');
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(done.output?.outcome, 'stuck');
  t.regex(done.output?.reason ?? '', /techlead-1 made no progress/);
});

test('an Ever-Thinker that stalls is retried by its actor id and analyses again; the run still ends', async (t) => {
  let analyses = 0;
  const { machine } = tree({ tasks: independent(1) });
  const hanging = machine.provide({
    actors: {
      everThinker: everThinkerMachine.provide({
        actors: {
          analyze: fromPromise<AnalyzeOutput, AnalyzeInput>(async ({ signal }) => {
            analyses += 1;
            // The first analysis hangs until its step is stopped, as a stalled model call would.
            if (analyses === 1) await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('stopped'))));
            return { accepted: [], considered: 0, bestPriority: null };
          }),
        },
      }),
    },
  });
  const actor = createActor(hanging, { input: input({ maxImprovementCycles: 1 }), id: 'orchestrator', systemId: 'orchestrator' }).start();
  const everThinker = () => actor.system.get('everThinker') as AnyActorRef;
  await new Gate().until(() => everThinker()?.getSnapshot().value === 'analyzing');
  everThinker().send({ type: 'agent.stagnant' });
  const done = await waitFor(actor, (snapshot) => snapshot.status === 'done', { timeout: 5000 });
  t.is(analyses, 2, 'analysed again after the retry');
  t.is(done.output?.outcome, 'done');
  t.like(done.context.stallRetries, { 'everThinker:-': 1 });
});

test('a task loop counts the TechLeads\' restarts, not a reviewer\'s', (t) => {
  const task: TaskRef = { id: 'T1', type: 'feature', origin: 'plan', status: 'in_review', attempt: 3, roundStart: 1, stage: 'review', prNumber: 10, dependsOn: [], conflictRounds: 0, generation: 1 };
  t.is(triesOf(task, {}), 3);
  t.is(triesOf(task, { 'moderator:T1': 1, 'moderator-2:T1': 1 }), 3, 'a reviewer restarted re-reads the PR: not a new try');
  t.is(triesOf(task, { 'techlead-2:T1': 1, 'techlead-1:T2': 1 }), 4, 'its own TechLead restart counts; another task\'s does not');
});

test('a retry whose tasks are all merged concludes at once, in the first macrostep, without an error', async (t) => {
  const merged: TaskRef = { id: 'T1', type: 'feature', origin: 'plan', status: 'merged', attempt: 1, roundStart: 1, stage: 'implement', prNumber: 10, dependsOn: [], conflictRounds: 0, generation: 1 };
  const { machine } = tree({ tasks: [] });
  const actor = createActor(machine, { input: input({ retry: { tasks: [merged], improvementCycle: 0 } }), id: 'orchestrator', systemId: 'orchestrator' }).start();
  const done = await waitFor(actor, (snapshot) => snapshot.status !== 'active', { timeout: 5000 });
  t.is(done.status, 'done');
  t.like(done.output, { outcome: 'done' });
  t.like(done.context.stop, { condition: 'improvement_cycles', phase: 'starting' });
});
