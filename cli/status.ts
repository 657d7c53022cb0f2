import os from 'node:os';
import { resolveTarget } from '../config/index.ts';
import { messageOf } from '../errors.ts';
import { Store, databasePath } from '../services/store/store.ts';
import type { RunRecord } from '../services/store/types.ts';
import type { CliArgs } from './args.ts';
import type { CliContext } from './commands.ts';
import { groupDigits } from '../protocol/numbers.ts';

export interface RunStatusView {
  runId: string;
  /** True when read from the monitoring server of the process driving the run. */
  live: boolean;
  status: string;
  phase: string;
  outcome: string | null;
  agents: Record<string, string>;
  tasks: { id: string; title: string; status: string; prNumber: number | null }[];
  tokensUsed: number;
  modelCalls: number;
  monitorUrl: string | null;
  /** What of the stored run cannot be read (its settings, its checkpoint), when something cannot. */
  corrupted?: string;
}

export interface PersistedTree {
  value?: unknown;
  status?: unknown;
  children?: Record<string, { snapshot?: { value?: unknown } } | undefined>;
}

/**
 * A run's status as a person should read it: a run marked running whose process on this host is
 * gone (kill -9, a power cut) is `interrupted`, which is what `--resume` expects. A process on
 * another host cannot be checked from here and stays `running`.
 */
export function runStatusOf(run: Pick<RunRecord, 'status' | 'pid' | 'host'>, isAlive: (pid: number) => boolean): RunRecord['status'] {
  if (run.status !== 'running') return run.status;
  if (run.host !== null && run.host !== os.hostname()) return 'running';
  return run.pid !== null && isAlive(run.pid) ? 'running' : 'interrupted';
}

export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [key, inner] = Object.entries(value)[0] ?? [];
    return key === undefined ? 'unknown' : `${key}.${stateName(inner)}`;
  }
  return 'unknown';
}

/**
 * Each agent's state in a persisted tree. A finished tree's children were stopped with it:
 * whatever state their snapshots last held, none of them is in it any more.
 */
export function agentStates(tree: PersistedTree): Record<string, string> {
  const finished = tree.status === 'done';
  return Object.fromEntries(Object.entries(tree.children ?? {}).map(([id, child]) => [id, finished ? 'stopped' : stateName(child?.snapshot?.value)]));
}

/** The stored actor tree, or what is wrong with it (a checkpoint corrupted on disk shows as such, not as a crash). */
function storedTree(store: Store, runId: string): { tree: PersistedTree; problem?: string } {
  const saved = store.checkpoints.load(runId);
  if (!saved) return { tree: {} };
  try {
    return { tree: JSON.parse(saved.json) as PersistedTree };
  } catch (error) {
    return { tree: {}, problem: `its stored checkpoint is not JSON (${messageOf(error)})` };
  }
}

function storedView(store: Store, run: RunRecord, isAlive: (pid: number) => boolean): RunStatusView {
  const { tree, problem } = storedTree(store, run.id);
  const corrupted = [run.corrupted, problem].filter((text) => text !== null && text !== undefined).join('; ');
  const agents = agentStates(tree);
  const totals = store.calls.totals(run.id);
  return {
    runId: run.id,
    live: false,
    status: runStatusOf(run, isAlive),
    phase: run.phase,
    outcome: run.outcome,
    agents,
    tasks: store.tasks.list(run.id).map((task) => ({ id: task.id, title: task.title, status: task.status, prNumber: task.prNumber })),
    tokensUsed: totals.tokensUsed,
    modelCalls: totals.callsSent,
    monitorUrl: run.monitorUrl,
    ...(corrupted !== '' ? { corrupted } : {}),
  };
}

async function liveAgents(url: string): Promise<{ phase?: string; agents?: Record<string, string> } | undefined> {
  try {
    const response = await fetch(new URL('api/health', url), { signal: AbortSignal.timeout(2000) });
    if (!response.ok) return undefined;
    return (await response.json()) as { phase?: string; agents?: Record<string, string> };
  } catch {
    return undefined;
  }
}

/**
 * `moderator status`: the live state of the target's latest run when its process is up (asked of
 * its monitoring server), else the last state stored in the database.
 */
export async function showStatus(context: CliContext, args: CliArgs, isAlive: (pid: number) => boolean): Promise<number> {
  const target = resolveTarget(args.target, context.env, context.cwd);
  const store = Store.openIfExists(databasePath(target));
  if (!store) {
    context.reporter.line(`no runs in ${target}`);
    return 0;
  }
  try {
    const runs = store.runs.list();
    const run = args.runId ? runs.find((candidate) => candidate.id === args.runId) : runs.at(-1);
    if (!run) {
      context.reporter.line(args.runId ? `unknown run ${args.runId} in ${target}` : `no runs in ${target}`);
      return args.runId ? 2 : 0;
    }
    const view = storedView(store, run, isAlive);
    if (view.corrupted !== undefined) context.reporter.line(`warning: run ${run.id} is corrupted in the database: ${view.corrupted}; it cannot be resumed or retried`);
    if (run.status === 'running' && run.pid !== null && isAlive(run.pid) && run.monitorUrl) {
      const live = await liveAgents(run.monitorUrl);
      if (live) Object.assign(view, { live: true, ...(live.phase ? { phase: live.phase } : {}), ...(live.agents ? { agents: live.agents } : {}) });
    }
    if (args.json) {
      context.stdout(JSON.stringify(view));
      return 0;
    }
    context.stdout(
      [
        `run ${view.runId} (${view.live ? `live, ${view.monitorUrl ?? ''}` : 'last stored state'}): ${view.status}, phase ${view.phase}${view.outcome ? `, outcome ${view.outcome}` : ''}`,
        `  agents  ${Object.entries(view.agents).map(([id, state]) => `${id} ${state}`).join(', ') || '-'}`,
        ...view.tasks.map((task) => `  ${task.id.padEnd(5)} ${task.status.padEnd(12)} ${task.prNumber ? `PR #${task.prNumber}`.padEnd(7) : '       '} ${task.title}`),
        `  ${view.modelCalls} model calls, ${groupDigits(view.tokensUsed)} tokens`,
      ].join('\n'),
    );
    return 0;
  } finally {
    store.close();
  }
}
