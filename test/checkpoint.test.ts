import test from 'ava';
import { createActor, fromPromise, type Snapshot } from 'xstate';
import { interAgentEventTypes } from '../machines/events.ts';
import { everThinkerMachine } from '../machines/ever-thinker.machine.ts';
import { moderatorMachine, type ReviewInput, type ReviewOutput } from '../machines/moderator.machine.ts';
import { mergeQueueMachine, type MergeStepInput, type RetestOutput, type UpdateOutput } from '../machines/merge-queue.machine.ts';
import { monitorMachine } from '../machines/monitor.machine.ts';
import { orchestratorMachine, type OrchestratorInput } from '../machines/orchestrator.machine.ts';
import { techleadMachine, type TaskStepInput } from '../machines/techlead.machine.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { Store } from '../services/store/store.ts';

const input: OrchestratorInput = {
  autoApprove: true, maxReviewAttempts: 2, maxImprovementCycles: 0, minPriority: 3, maxParallelTasks: 1, parallelReviews: 1, maxConflictRounds: 2,
  monitor: { intervalMs: 3_600_000, limits: { maxTokensTotal: 1e9, maxCostUsd: null, maxRuntimeMs: 1e9, maxErrorRate: 1, stagnationMs: 1e9, maxContextTokens: 1e9 } },
};

/** The real charts with effects that record their inputs; `implement` can be made to hang. */
function tree(calls: string[], hang: { implement: boolean }) {
  const done = <O, I>(name: string, output: O) => fromPromise<O, I>(async ({ input: step }) => {
    calls.push(`${name} ${JSON.stringify(step ?? null)}`);
    return output;
  });
  return orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({
        actors: {
          clarify: done('clarify', { assumptions: 0, questions: 0 }),
          plan: done('plan', { tasks: [{ id: 'T1', type: 'feature' }] }),
          review: fromPromise<ReviewOutput, ReviewInput>(async ({ input: review }) => {
            calls.push(`review ${review.taskId}`);
            return { verdict: 'approve' };
          }),
        },
      }),
      mergeQueue: mergeQueueMachine.provide({
        actors: {
          updateBranch: done<UpdateOutput, MergeStepInput>('update', { updated: false, conflicts: [] }),
          retest: done<RetestOutput, MergeStepInput>('retest', { passed: true, command: 'npm test' }),
          merge: done('merge', { mergeSha: 's' }),
        },
      }),
      techlead: techleadMachine.provide({
        actors: {
          prepareWorkspace: done('prepare', { branch: 'b' }),
          implement: fromPromise<{ files: number }, TaskStepInput>(({ input: task, signal }) => {
            calls.push(`implement ${task.taskId}#${task.attempt}`);
            if (!hang.implement) return Promise.resolve({ files: 1 });
            return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
          }),
          revise: done('revise', { files: 1 }),
          runTests: fromPromise<{ passed: boolean }, TaskStepInput>(async () => ({ passed: true })),
          submit: done('submit', { prNumber: 7 }),
        },
      }),
      everThinker: everThinkerMachine,
      monitor: monitorMachine,
    },
  });
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

test('the whole tree is checkpointed with its journal and resumes in a new actor, re-running only the in-flight step', async (t) => {
  const store = Store.open(':memory:');
  store.runs.create({ id: 'r1', target: '/t', requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  const calls: string[] = [];
  const checkpointer = new Checkpointer({ store, runId: 'r1', journaled: new Set(interAgentEventTypes) });
  const first = createActor(tree(calls, { implement: true }), { input, id: 'orchestrator', systemId: 'orchestrator', inspect: checkpointer.observe });
  checkpointer.attach(first);
  first.start();
  await settle();
  t.deepEqual(calls, ['clarify null', 'plan null', 'prepare {"taskId":"T1","taskType":"feature","attempt":1,"generation":1}', 'implement T1#1']);
  const saved = store.checkpoints.load('r1');
  t.truthy(saved);
  t.is(store.runs.get('r1')?.phase, 'implementing');
  const types = store.checkpoints.listMessages('r1').map((message) => `${message.from}>${message.to}:${message.type}`);
  t.deepEqual(types, [
    'orchestrator>moderator:clarify.requested', 'moderator>orchestrator:scope.clarified',
    'orchestrator>moderator:plan.requested', 'moderator>orchestrator:plan.ready',
    'orchestrator>techlead-1:task.assigned',
  ]);
  // The process "dies": stopping must not overwrite the checkpoint with a stopped tree.
  checkpointer.stop();
  first.stop();
  t.is(store.checkpoints.load('r1')?.json, saved?.json);

  const resumedCalls: string[] = [];
  const second = new Checkpointer({ store, runId: 'r1', journaled: new Set(interAgentEventTypes) });
  const resumed = createActor(tree(resumedCalls, { implement: false }), {
    input, id: 'orchestrator', systemId: 'orchestrator', inspect: second.observe, snapshot: JSON.parse(saved?.json ?? '{}') as Snapshot<unknown>,
  });
  second.attach(resumed);
  const output = new Promise((resolve) => resumed.subscribe({ complete: () => resolve(resumed.getSnapshot().output) }));
  resumed.start();
  t.deepEqual(await output, { outcome: 'done', reason: 'every task merged (improvement cycles are off: limits.max_improvement_cycles 0)' });
  t.deepEqual(resumedCalls, [
    'implement T1#1', 'submit {"taskId":"T1","taskType":"feature","attempt":1,"generation":1,"testsPassed":true}', 'review T1',
    'update {"taskId":"T1","prNumber":7,"attempt":1,"behind":[]}', 'merge {"taskId":"T1","prNumber":7,"attempt":1,"behind":[]}',
  ],
    'clarify, plan and prepare are not run again; the interrupted implement runs again with its input');
  t.is(store.checkpoints.load('r1')?.status, 'done');
  t.true(second.stats.writes > 0);
  t.true(second.stats.lastSnapshotBytes < 20_000, 'context stays small');
});
