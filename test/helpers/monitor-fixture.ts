import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assign, createActor, createMachine, sendParent, sendTo, setup, type AnyEventObject } from 'xstate';
import { startMonitoring, type Monitoring } from '../../server/index.ts';
import { Store } from '../../services/store/store.ts';

/**
 * A small real actor tree shaped like a run's: a root `orchestrator` invoking `moderator`,
 * `techlead-1` (one TechLead, holding T2), `monitor` (with a nested state) and `everThinker`. The root records every event
 * it receives, so a test can tell that an intervention really arrived.
 */
const moderator = createMachine({
  id: 'moderator',
  initial: 'idle',
  states: {
    idle: { on: { 'plan.requested': 'planning' } },
    planning: { on: { 'agent.reset': 'idle' } },
    stagnant: {},
  },
});

const techlead = createMachine({
  id: 'techlead',
  initial: 'idle',
  states: { idle: { on: { 'task.assigned': 'implementing' } }, implementing: { on: { done: 'testing' } }, testing: {} },
});

const monitor = createMachine({
  id: 'monitor',
  initial: 'running',
  states: {
    running: {
      initial: 'watching',
      states: {
        watching: { on: { 'monitor.warn': 'alerting' } },
        alerting: { entry: sendParent({ type: 'health.alert', level: 'warning', kind: 'tokens', message: '80% of the tokens used' }) },
      },
    },
    stopped: { type: 'final' },
  },
});

const everThinker = createMachine({
  id: 'everThinker',
  initial: 'idle',
  states: { idle: {}, analyzing: {}, cooling_down: {} },
});

interface RootContext {
  received: string[];
  lastEvent: AnyEventObject | null;
  tasks: { id: string; status: string }[];
  techleads: { id: string; taskId: string | null }[];
  improvementCycle: number;
  outcome: string | null;
  reason: string | null;
  paused: boolean;
  /** As the orchestrator's: the questions a person is asked now. */
  asking: { kind: 'questions' | 'budget'; ids: string[]; answered: string[] } | null;
}

export const tinyTree = setup({
  types: { context: {} as RootContext, events: {} as AnyEventObject },
  actors: { moderator, techlead, monitor, everThinker },
  actions: {
    record: assign({ received: ({ context, event }) => [...context.received, event.type], lastEvent: ({ event }) => event }),
  },
}).createMachine({
  id: 'orchestrator',
  context: {
    received: [],
    lastEvent: null,
    tasks: [{ id: 'T1', status: 'merged' }, { id: 'T2', status: 'in_progress' }, { id: 'T3', status: 'pending' }],
    techleads: [{ id: 'techlead-1', taskId: 'T2' }],
    improvementCycle: 2,
    outcome: null,
    reason: null,
    paused: false,
    asking: null,
  },
  invoke: [
    { id: 'moderator', systemId: 'moderator', src: 'moderator' },
    { id: 'techlead-1', systemId: 'techlead-1', src: 'techlead' },
    { id: 'monitor', systemId: 'monitor', src: 'monitor' },
    { id: 'everThinker', systemId: 'everThinker', src: 'everThinker' },
  ],
  initial: 'clarifying',
  on: {
    'run.pause': { actions: ['record', assign({ paused: true })] },
    'run.resume': { actions: ['record', assign({ paused: false })] },
    'run.abort': { target: '.stopped', actions: ['record', assign({ outcome: 'cancelled' })] },
    'test.fail': { target: '.stopped', actions: assign({ outcome: 'failed', reason: 'a test said so' }) },
    'test.warn': { actions: sendTo('monitor', { type: 'monitor.warn' }) },
    // The Moderator's clarify questions Q1 and Q2 (stored by the test) wait for a person.
    'test.ask': { actions: assign({ asking: { kind: 'questions', ids: ['Q1', 'Q2'], answered: [] } }) },
    'human.answered': {
      actions: [
        'record',
        assign({ asking: ({ context, event }) => (context.asking ? { ...context.asking, answered: [...context.asking.answered, String(event.questionId)] } : null) }),
      ],
    },
    // A burst of large events for the slow-client test: handled, recorded nowhere.
    flood: {},
    '*': { actions: 'record' },
  },
  states: {
    clarifying: {
      on: {
        'test.advance': { target: 'implementing', actions: sendTo('moderator', { type: 'plan.requested' }) },
        'test.plan': 'awaitingApproval',
      },
    },
    awaitingApproval: { on: { 'human.approved': { target: 'implementing', actions: 'record' } } },
    implementing: {
      initial: 'working',
      states: { working: { on: { 'test.revise': 'revising' } }, revising: {} },
    },
    stopped: { type: 'final' },
  },
});

export const limits = { maxTokensTotal: 100_000, maxCostUsd: 5, maxRuntimeMs: 3_600_000, maxErrorRate: 0.5, maxContextTokens: 10_000 };

export interface Fixture {
  dir: string;
  store: Store;
  monitoring: Monitoring;
  actor: ReturnType<typeof createActor<typeof tinyTree>>;
  logsDir: string;
  url: (route: string) => string;
  close(): Promise<void>;
}

export interface FixtureOptions {
  enableWebSocket?: boolean;
  /** The address to bind; 127.0.0.1 by default. Requests always go to 127.0.0.1. */
  host?: string;
  port?: number;
  /** Adds a failed model call (so the run has an error rate). */
  withErrorCall?: boolean;
  token?: string;
}

/** A temp-file store with two runs, tasks, PRs, reviews and model calls, and a live tiny tree watched by the server. */
export async function startFixture(options: FixtureOptions = {}): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-server-'));
  const store = Store.open(path.join(dir, '.duo-agent', 'moderator.db'));
  seed(store, options.withErrorCall ?? false);
  const logsDir = path.join(dir, '.duo-agent', 'logs');
  fs.mkdirSync(logsDir, { recursive: true });
  const monitoring = await startMonitoring({
    store,
    runId: 'r1',
    target: dir,
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    enableWebSocket: options.enableWebSocket ?? true,
    logsDir,
    limits,
    ...(options.token ? { token: options.token } : {}),
  });
  const actor = createActor(tinyTree, { id: 'orchestrator', systemId: 'orchestrator', inspect: (event) => monitoring.observe(event) });
  monitoring.attach(actor);
  actor.start();
  return {
    dir,
    store,
    monitoring,
    actor,
    logsDir,
    url: (route) => new URL(route, `http://127.0.0.1:${new URL(monitoring.url).port}/`).toString(),
    async close() {
      actor.stop();
      await monitoring.close();
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function seed(store: Store, withErrorCall: boolean): void {
  const run = (id: string) => ({ id, target: '/t', requirements: `requirements of ${id}`, settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  store.runs.create(run('r0'));
  store.runs.finish('r0', 'done', null);
  store.runs.create(run('r1'));
  store.runs.addActiveTime('r1', 65_000);
  const task = (id: string, title: string) => ({ id, title, type: 'feature', description: 'd', acceptanceCriteria: ['works'], dependsOn: [], origin: 'plan' as const });
  store.tasks.add('r1', [task('T1', 'Add the list command'), task('T2', 'Add the done command'), task('T3', 'Write the README')]);
  const pr1 = store.pullRequests.open({ runId: 'r1', taskId: 'T1', provider: 'local', branch: 'duo-agent/feature/T1', base: 'main', title: 'feature(T1): list', body: 'b', headSha: 'a1' });
  store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: pr1.number, attempt: 1, verdict: 'request_changes', summary: 'missing test', comments: ['add a test for empty lists'], testsPassed: false });
  store.reviews.record({ runId: 'r1', taskId: 'T1', prNumber: pr1.number, attempt: 2, verdict: 'approve', summary: 'good', comments: [], testsPassed: true });
  store.pullRequests.markMerged(pr1.number, 'm1');
  store.tasks.update('r1', 'T1', { status: 'merged', attempts: 2, prNumber: pr1.number, branch: 'duo-agent/feature/T1' });
  const pr2 = store.pullRequests.open({ runId: 'r1', taskId: 'T2', provider: 'local', branch: 'duo-agent/feature/T2', base: 'main', title: 'feature(T2): done', body: 'b', headSha: 'b1' });
  store.tasks.update('r1', 'T2', { status: 'in_review', attempts: 1, prNumber: pr2.number });
  const call = (callKey: string, agent: string, input: number, output: number, cost: number, contextZone = 'ok') => {
    const id = store.calls.begin({ runId: 'r1', callKey, agent, purpose: 'p', provider: 'replay', model: 'm', promptTokens: input - 50, promptSource: 'estimated', contextZone });
    store.calls.finish(id, { status: 'ok', usage: { inputTokens: input, outputTokens: output, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: cost });
  };
  call('moderator:plan', 'moderator', 1000, 200, 0.01);
  call('techlead:implement:T1:1', 'techlead', 3000, 500, 0.02, 'summarise');
  if (withErrorCall) {
    const id = store.calls.begin({ runId: 'r1', callKey: 'techlead:implement:T2:1', agent: 'techlead', purpose: 'p', provider: 'replay', model: 'm' });
    store.calls.finish(id, { status: 'error', error: 'HTTP 500' });
  }
}

/** Waits until `check` holds, polling; fails with `what` after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
