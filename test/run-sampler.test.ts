/**
 * The Monitor's sample of a run with several reviewers and TechLeads: every worker is watched by
 * its actor id, and each reviewer's progress is the review it holds, so one reviewer's finished
 * reviews do not hide another one that is stuck.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { runSampler } from '../actors/run-sampler.ts';
import type { AnyActorSystem } from '../actors/ticker.ts';
import { composeRun } from '../cli/compose-run.ts';
import { Reporter } from '../cli/reporter.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { RunClock } from '../services/run-clock.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath } from '../services/store/store.ts';

const noModel: ModelProvider = { name: 'none', description: 'none', complete: () => Promise.reject(new Error('no model here')) };

/** A system whose actors are plain objects with the snapshots a live tree would show. */
function systemOf(snapshots: Record<string, { value: unknown; context?: unknown }>): AnyActorSystem {
  return { get: (id: string) => (snapshots[id] ? { getSnapshot: () => snapshots[id] } : undefined) } as unknown as AnyActorSystem;
}

test('every reviewer and TechLead is sampled by its actor id; a reviewer\'s progress is its own review', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-sampler-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', 'init', '-q', '-b', 'main', dir]);
  execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', 'commit', '-q', '--allow-empty', '-m', 'init'], { cwd: dir });
  const config = withBaseBranch(configSchema.parse({ model: { provider: 'openai' }, agents: { techlead: { sandbox: 'off' } } }), 'main');
  const store = Store.open(databasePath(dir));
  t.teardown(() => store.close());
  store.runs.create({ id: 'r', target: dir, requirements: 'r', settings: { config, agents: {} }, snapshotVersion: 1, machineFingerprint: 'f' });
  const { services } = composeRun({
    store, runId: 'r', target: dir, requirements: 'r', config, agents: {},
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir() }, provider: noModel, sandbox: UNSANDBOXED, reporter: new Reporter(() => {}),
  });
  const { sample } = runSampler(services, new RunClock(store, 'r'));
  const system = systemOf({
    orchestrator: {
      value: { implementing: 'running' },
      context: { reviewers: [{ id: 'moderator', taskId: 'T1' }, { id: 'moderator-2', taskId: 'T2' }], techleads: [{ id: 'techlead-1', taskId: 'T3' }, { id: 'techlead-2', taskId: null }] },
    },
    moderator: { value: 'reviewing' },
    'moderator-2': { value: 'reviewing' },
    'techlead-1': { value: 'implementing', context: { task: { taskId: 'T3', attempt: 1 } } },
    'techlead-2': { value: 'idle', context: { task: null } },
    everThinker: { value: 'idle' },
  });

  const before = (await sample(system)).agents;
  t.deepEqual(Object.keys(before).sort(), ['everThinker', 'moderator', 'moderator-2', 'techlead-1', 'techlead-2']);
  t.like(before, { moderator: { working: true }, 'techlead-1': { working: true }, 'techlead-2': { working: false }, everThinker: { working: false } });
  t.regex(before['techlead-1']?.progress ?? '', /^T3#1\.0 /);

  // moderator-2 finishes its review; moderator's mark does not move with it.
  store.reviews.record({ runId: 'r', taskId: 'T2', prNumber: 2, attempt: 1, verdict: 'approve', summary: 'fine', comments: [], testsPassed: true });
  const after = (await sample(system)).agents;
  t.not(after['moderator-2']?.progress, before['moderator-2']?.progress, 'the reviewer that wrote a review progressed');
  t.is(after.moderator?.progress, before.moderator?.progress, 'the other reviewer did not');
});
