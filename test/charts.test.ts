/**
 * Each agent's chart alone, under a simulated clock, with a parent that records what it is told:
 * the events a chart sends for each outcome of its effects, the codes of its failures, stagnation
 * and retries. The whole tree is tested in machines.test.ts.
 */
import test from 'ava';
import { SimulatedClock, createActor, fromPromise, setup, type AnyStateMachine, type EventObject } from 'xstate';
import { PrError } from '../services/pr/pr-error.ts';
import { everThinkerMachine, type AnalyzeInput, type AnalyzeOutput } from '../machines/ever-thinker.machine.ts';
import { mergeQueueMachine, type MergeStepInput, type RetestOutput, type UpdateOutput } from '../machines/merge-queue.machine.ts';
import { moderatorMachine, type ReviewInput, type ReviewOutput } from '../machines/moderator.machine.ts';
import { techleadMachine, type SubmitInput, type TaskStepInput, type TestOutput } from '../machines/techlead.machine.ts';

/** A parent that invokes `child` and records every event the child sends it. */
function underParent(child: AnyStateMachine, input?: unknown) {
  const sent: EventObject[] = [];
  const parent = setup({ actors: { child } }).createMachine({
    invoke: { id: 'child', systemId: 'child', src: 'child', input },
    on: { '*': { actions: ({ event }) => sent.push(event) } },
  });
  const clock = new SimulatedClock();
  const actor = createActor(parent, { clock }).start();
  const childRef = actor.getSnapshot().children.child;
  if (!childRef) throw new Error('the child did not start');
  return { sent, clock, send: (event: EventObject & Record<string, unknown>) => childRef.send(event), state: () => childRef.getSnapshot().value as unknown, stop: () => actor.stop() };
}

/** Resolves once `predicate` holds, checked after every microtask burst (promise actors settle in microtasks). */
async function settled(predicate: () => boolean): Promise<void> {
  for (let round = 0; round < 100 && !predicate(); round += 1) await new Promise((resolve) => setImmediate(resolve));
  if (!predicate()) throw new Error('the chart did not get there');
}

const ok = <O, I>(output: O) => fromPromise<O, I>(async () => output);
const failing = <O, I>(error: unknown) => fromPromise<O, I>(async () => Promise.reject(error));

type TechLeadActors = NonNullable<Parameters<typeof techleadMachine.provide>[0]['actors']>;

function techlead(overrides: Partial<TechLeadActors> = {}) {
  return techleadMachine.provide({
    actors: {
      prepareWorkspace: ok<{ branch: string }, TaskStepInput>({ branch: 'b' }),
      implement: ok<{ files: number }, TaskStepInput>({ files: 1 }),
      revise: ok<{ files: number }, TaskStepInput>({ files: 1 }),
      runTests: ok<TestOutput, TaskStepInput>({ passed: true }),
      submit: ok<{ prNumber: number }, SubmitInput>({ prNumber: 7 }),
      ...overrides,
    },
  });
}

test('techlead: an assigned task goes through its branch, change, tests and PR, and the PR is announced with the test result', async (t) => {
  const run = underParent(techlead({ runTests: ok<TestOutput, TaskStepInput>({ passed: false }) }));
  run.send({ type: 'task.assigned', taskId: 'T1', taskType: 'feature', attempt: 1, generation: 1, correlationId: 'T1#1' });
  await settled(() => run.sent.length > 0);
  t.deepEqual(run.sent, [{ type: 'pr.submitted', taskId: 'T1', prNumber: 7, attempt: 1, testsPassed: false, correlationId: 'T1#1' }]);
  t.is(run.state(), 'idle');
  run.stop();
});

test('techlead: feedback revises (no new branch), and a failing step reports its error code with the task', async (t) => {
  const run = underParent(techlead({ revise: failing<{ files: number }, TaskStepInput>(Object.assign(new Error('no change'), { code: 'no_change' })) }));
  run.send({ type: 'task.feedback', taskId: 'T2', taskType: 'fix', attempt: 2, generation: 1, prNumber: 3, correlationId: 'T2#2' });
  await settled(() => run.sent.length > 0);
  t.like(run.sent[0], { type: 'agent.failed', agent: 'techlead', actor: 'child', taskId: 'T2', code: 'no_change', message: 'no change' });
  run.stop();
});

test('techlead: a stagnant step is left for the orchestrator; a retry goes back to the step it stalled in', async (t) => {
  let calls = 0;
  const slow = fromPromise<{ files: number }, TaskStepInput>(() => {
    calls += 1;
    return new Promise(() => {});
  });
  const run = underParent(techlead({ implement: slow }));
  run.send({ type: 'task.assigned', taskId: 'T1', taskType: 'feature', attempt: 1, generation: 1, correlationId: 'T1#1' });
  await settled(() => run.state() === 'implementing');
  run.send({ type: 'agent.stagnant', idleMinutes: 31 });
  t.is(run.state(), 'stagnant');
  t.deepEqual(run.sent, [{ type: 'agent.stalled', agent: 'techlead', actor: 'child', taskId: 'T1' }]);
  run.send({ type: 'agent.retry' });
  await settled(() => calls === 2);
  t.is(run.state(), 'implementing');
  run.send({ type: 'agent.stagnant', idleMinutes: 62 });
  run.send({ type: 'agent.reset' });
  t.is(run.state(), 'idle');
  run.stop();
});

test('techlead: a reset takes the task away in any work state, the step in flight aborted', async (t) => {
  let aborted = false;
  const hanging = fromPromise<{ files: number }, TaskStepInput>(({ signal }) => new Promise(() => signal.addEventListener('abort', () => (aborted = true))));
  const run = underParent(techlead({ implement: hanging }));
  run.send({ type: 'task.assigned', taskId: 'T1', taskType: 'feature', attempt: 1, generation: 1, correlationId: 'T1#1' });
  await settled(() => run.state() === 'implementing');
  run.send({ type: 'agent.reset' });
  t.is(run.state(), 'idle');
  t.true(aborted);
  t.deepEqual(run.sent, [], 'a task taken away reports nothing');
  run.stop();
});

function moderator(review: ReviewOutput | Error) {
  return moderatorMachine.provide({
    actors: {
      clarify: ok({ assumptions: 1, questions: 0 }),
      plan: ok({ tasks: [{ id: 'T1', type: 'feature' }] }),
      review: review instanceof Error ? failing<ReviewOutput, ReviewInput>(review) : ok<ReviewOutput, ReviewInput>(review),
    },
  });
}

const reviewOf = (lastRound: boolean) => ({ type: 'review.requested', taskId: 'T1', prNumber: 4, attempt: 2, lastRound, correlationId: 'T1#2' });

test('moderator: approve sends the PR to the merge queue; changes requested or rejected as the orchestrator’s lastRound says', async (t) => {
  const approve = underParent(moderator({ verdict: 'approve' }));
  approve.send(reviewOf(false));
  await settled(() => approve.sent.length > 0);
  t.deepEqual(approve.sent, [{ type: 'pr.approved', taskId: 'T1', prNumber: 4, attempt: 2, correlationId: 'T1#2' }]);
  t.is(approve.state(), 'idle', 'the Moderator is free for the next review while the PR merges');
  approve.stop();

  for (const [lastRound, type] of [[false, 'review.changes_requested'], [true, 'pr.rejected']] as const) {
    const run = underParent(moderator({ verdict: 'request_changes' }));
    run.send(reviewOf(lastRound));
    await settled(() => run.sent.length > 0);
    t.deepEqual(run.sent, [{ type, taskId: 'T1', prNumber: 4, attempt: 2, correlationId: 'T1#2' }], `lastRound ${String(lastRound)}`);
    run.stop();
  }
});

test('moderator: an unreadable verdict holds the PR for a person, with the reason', async (t) => {
  const run = underParent(moderator({ verdict: 'hold', reason: 'no usable review of PR #4' }));
  run.send(reviewOf(false));
  await settled(() => run.sent.length > 0);
  t.deepEqual(run.sent, [{ type: 'review.held', taskId: 'T1', prNumber: 4, attempt: 2, reason: 'no usable review of PR #4', correlationId: 'T1#2' }]);
  run.stop();
});

function mergeQueue(update: UpdateOutput, retest: RetestOutput = { passed: true, command: 'npm test' }, merge: { mergeSha: string } | Error = { mergeSha: 'm' }) {
  return mergeQueueMachine.provide({
    actors: {
      updateBranch: ok<UpdateOutput, MergeStepInput>(update),
      retest: ok<RetestOutput, MergeStepInput>(retest),
      merge: merge instanceof Error ? failing<{ mergeSha: string }, MergeStepInput>(merge) : ok<{ mergeSha: string }, MergeStepInput>(merge),
    },
  });
}

const mergeOf = { type: 'merge.requested', taskId: 'T1', prNumber: 4, attempt: 2, correlationId: 'T1#2' };

test('merge queue: a branch that already holds the base merges without testing again; an updated one is tested first', async (t) => {
  const current = underParent(mergeQueue({ updated: false, conflicts: [] }, { passed: false, command: 'never run' }));
  current.send(mergeOf);
  await settled(() => current.sent.length > 0);
  t.deepEqual(current.sent, [{ type: 'pr.merged', taskId: 'T1', prNumber: 4, correlationId: 'T1#2' }]);
  current.stop();
  const updated = underParent(mergeQueue({ updated: true, conflicts: [] }));
  updated.send(mergeOf);
  await settled(() => updated.sent.length > 0);
  t.like(updated.sent[0], { type: 'pr.merged', taskId: 'T1' });
  updated.stop();
});

test('merge queue: a conflicting update or tests that fail on the updated branch block the merge; nothing is merged', async (t) => {
  const conflicting = underParent(mergeQueue({ updated: false, conflicts: ['a.js', 'b.js'] }));
  conflicting.send(mergeOf);
  await settled(() => conflicting.sent.length > 0);
  t.deepEqual(conflicting.sent, [{ type: 'merge.blocked', taskId: 'T1', prNumber: 4, attempt: 2, reason: 'conflict', detail: 'a.js, b.js', correlationId: 'T1#2' }]);
  t.is(conflicting.state(), 'idle');
  conflicting.stop();
  const failingTests = underParent(mergeQueue({ updated: true, conflicts: [] }, { passed: false, command: 'npm test' }));
  failingTests.send(mergeOf);
  await settled(() => failingTests.sent.length > 0);
  t.like(failingTests.sent[0], { type: 'merge.blocked', reason: 'tests_failed', detail: 'npm test' });
  failingTests.stop();
});

test('merge queue: a conflict the provider finds at the merge blocks it; any other failure is reported with its code', async (t) => {
  const late = underParent(mergeQueue({ updated: false, conflicts: [] }, undefined, new PrError('pr_conflict', 'PR #4 conflicts with main in a.js', { conflicts: ['a.js'] })));
  late.send(mergeOf);
  await settled(() => late.sent.length > 0);
  t.like(late.sent[0], { type: 'merge.blocked', reason: 'conflict', detail: 'PR #4 conflicts with main in a.js' });
  late.stop();
  const broken = underParent(mergeQueue({ updated: false, conflicts: [] }, undefined, new PrError('pr_auth', 'the token was refused')));
  broken.send(mergeOf);
  await settled(() => broken.sent.length > 0);
  t.like(broken.sent[0], { type: 'agent.failed', agent: 'mergeQueue', actor: 'child', taskId: 'T1', code: 'pr_auth' });
  broken.stop();
});

function everThinker(...outputs: (AnalyzeOutput | Error)[]) {
  let call = 0;
  return everThinkerMachine.provide({
    actors: {
      analyze: fromPromise<AnalyzeOutput, AnalyzeInput>(async () => {
        const next = outputs[Math.min(call, outputs.length - 1)] as AnalyzeOutput | Error;
        call += 1;
        if (next instanceof Error) throw next;
        return next;
      }),
    },
  });
}

test('ever-thinker: proposals at or above min_priority become tasks; a cycle below it ends the cycles on min_priority', async (t) => {
  const run = underParent(everThinker({ accepted: [{ id: 'T5', type: 'perf' }], considered: 2, bestPriority: 5 }, { accepted: [], considered: 1, bestPriority: 1 }), { minPriority: 3 });
  run.send({ type: 'improve.requested', cycle: 1 });
  await settled(() => run.sent.length > 0);
  t.deepEqual(run.sent[0], { type: 'improvements.proposed', cycle: 1, tasks: [{ id: 'T5', type: 'perf' }] });
  run.send({ type: 'improve.requested', cycle: 2 });
  await settled(() => run.sent.length > 1);
  t.deepEqual(run.sent[1], { type: 'improvements.exhausted', cycle: 2, bestPriority: 1, why: 'min_priority' });
  run.stop();
});

test('ever-thinker: a failed analysis is reported with its code; the chart waits for the next request', async (t) => {
  const run = underParent(everThinker(Object.assign(new Error('no usable reply'), { code: 'malformed_reply' })), { minPriority: 3 });
  run.send({ type: 'improve.requested', cycle: 1 });
  await settled(() => run.sent.length > 0);
  t.like(run.sent[0], { type: 'agent.failed', agent: 'everThinker', taskId: null, code: 'malformed_reply' });
  t.is(run.state(), 'cooling_down');
  run.stop();
});
