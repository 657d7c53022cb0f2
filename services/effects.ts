import type { Store } from './store/store.ts';
import type { StepKey } from '../protocol/keys.ts';

/**
 * Runs a step at most once per run, as far as the journal can tell: a step journaled `done`
 * returns its stored result without running. A step found `started` runs again, so `work` itself
 * must check the real world first (DESIGN, checkpoint rule 2); the journal is the fast path and
 * the audit trail, the idempotent work is the guarantee.
 *
 * `commit` runs in the same transaction that marks the step done, for store writes that must
 * happen exactly when the step completes (e.g. adding planned tasks).
 */
export async function once<T>(store: Store, runId: string, stepKey: StepKey, work: () => Promise<T>, commit?: (result: T) => void): Promise<T> {
  const journaled = store.effects.get(runId, stepKey);
  if (journaled?.status === 'done') return journaled.result as T;
  store.effects.start(runId, stepKey);
  const result = await work();
  store.transaction(() => {
    commit?.(result);
    store.effects.finish(runId, stepKey, result);
  });
  return result;
}
