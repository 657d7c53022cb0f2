import fs from 'node:fs';
import path from 'node:path';
import { stateDir, type Store } from '../services/store/store.ts';
import { agentStates, stateName, type PersistedTree } from './status.ts';

/**
 * A human-readable copy of the run's latest checkpoint, written at phase changes:
 * `.duo-agent/checkpoints/<runId>.json`. For people and tools; resume reads SQLite, never this.
 */
export function exportCheckpoint(target: string, runId: string, store: Store): void {
  const run = store.runs.get(runId);
  const snapshot = store.checkpoints.load(runId);
  if (!run || !snapshot) return;
  const dir = path.join(stateDir(target), 'checkpoints');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${runId}.json`);
  const tree = JSON.parse(snapshot.json) as PersistedTree;
  const body = {
    run: { id: run.id, phase: run.phase, status: run.status, outcome: run.outcome, reason: run.reason, startedAt: run.startedAt, requirements: run.requirements },
    // What each actor is in (all `stopped` once the run is over), so nobody has to read it out of the snapshot.
    states: { orchestrator: stateName(tree.value), ...agentStates(tree) },
    tasks: store.tasks.list(runId).map(({ id, type, title, status, attempts, prNumber }) => ({ id, type, title, status, attempts, prNumber })),
    pullRequests: store.pullRequests.list(runId).map(({ number, taskId, branch, status }) => ({ number, taskId, branch, status })),
    snapshot: tree,
  };
  // Write then rename, so a reader never sees half a file.
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(body, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}
