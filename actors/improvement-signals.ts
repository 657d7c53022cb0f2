import { fromPromise } from 'xstate';
import type { MeasureInput, MeasureOutput } from '../machines/ever-thinker.machine.ts';
import { stepKeys } from '../protocol/keys.ts';
import { once } from '../services/effects.ts';
import { magnitudeOf, reviewScore, signalsOf, type Magnitude, type Signals } from '../services/improvement.ts';
import type { RunServices } from './run-services.ts';

/** The tasks an improvement cycle added, from its analysis step's journal. */
function tasksOfCycle(services: RunServices, cycle: number): string[] {
  const result = services.store.effects.get(services.runId, stepKeys.analyze(cycle))?.result as { newTasks?: { id: string }[] } | undefined;
  return (result?.newTasks ?? []).map((task) => task.id);
}

function describe(before: Signals, after: Signals, magnitude: Magnitude): string {
  const parts: string[] = [];
  if (before.tests && after.tests) parts.push(`tests passing ${before.tests.passed} -> ${after.tests.passed} of ${after.tests.total}`);
  if (before.coverage !== null && after.coverage !== null) parts.push(`coverage ${before.coverage}% -> ${after.coverage}%`);
  if (before.lint !== null && after.lint !== null) parts.push(`lint findings ${before.lint} -> ${after.lint}`);
  if (magnitude.changes.review !== undefined) parts.push(`review score ${magnitude.changes.review.toFixed(2)}`);
  return parts.join(', ') || 'no signal on both sides';
}

/**
 * The Ever-Thinker's measurement at the start of each improvement cycle: the signals of the latest
 * merged work now (the next cycle's baseline), and how much the cycle before changed them. Stored
 * per cycle in `improvement_cycles`, journaled as one step so a resumed run measures the same.
 */
export function improvementActors(services: RunServices) {
  const measure = fromPromise<MeasureOutput, MeasureInput>(async ({ input }) => {
    const { store, runId } = services;
    const outcome = await once(
      store,
      runId,
      stepKeys.measure(input.cycle),
      async () => {
        const now = signalsOf(store.testRuns.latestMerged(runId));
        const previous = input.cycle > 1 ? store.improvementCycles.list(runId).find((row) => row.cycle === input.cycle - 1) : undefined;
        if (!previous) return { now, previous: null };
        const tasks = tasksOfCycle(services, previous.cycle);
        const reviews = store.reviews.list(runId);
        // Merged by its PR's record: the tasks table catches up at the next checkpoint.
        const rounds = tasks.map((id) => ({ merged: store.pullRequests.forTask(runId, id)?.status === 'merged', rounds: reviews.filter((review) => review.taskId === id).length }));
        const before = previous.before as Signals;
        const magnitude = magnitudeOf(before, now, reviewScore(rounds));
        return { now, previous: { cycle: previous.cycle, tasks, magnitude, summary: describe(before, now, magnitude) } };
      },
      (result) =>
        store.improvementCycles.save(
          runId,
          { cycle: input.cycle, before: result.now },
          result.previous ? { cycle: result.previous.cycle, after: result.now, magnitude: result.previous.magnitude.value, tasks: result.previous.tasks } : undefined,
        ),
    );
    if (outcome.previous) {
      const value = outcome.previous.magnitude.value;
      const verdict = value === null ? 'not measurable (no test counts in the output)' : `magnitude ${value.toFixed(3)} (limits.min_improvement ${services.config.limits.min_improvement})`;
      services.progress(`improvement cycle ${outcome.previous.cycle} measured: ${outcome.previous.summary}: ${verdict}`);
    }
    return { magnitude: outcome.previous?.magnitude.value ?? null };
  });
  return { measure };
}
