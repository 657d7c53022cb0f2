/**
 * `/api/health` of the live monitoring server during a checkpointing run, against a node:http
 * server that returns a fixed body of the same size (the best node:http can do). Prints ONE JSON
 * line with each figure and its goal beside it. Run with `node --import tsx bench/health.bench.ts`.
 *
 * The run is a write loop through the real Store and Checkpointer, shaped like a run's: an actor
 * whose context holds 50 planned tasks (a ~16 KB snapshot) takes a transition every STEP_MS, each
 * persisted by the Checkpointer (UPSERT plus journaled messages); every 10th step journals a model
 * call (sent, then finished with usage and a 2 KB reply), every 25th updates a task, every 100th
 * adds an alert. The monitoring server sees the same inspection events, as in a run. 50 steps a
 * second is about ten times the demo at zero model latency (33 checkpoints of 2 KB and 14 model
 * calls in ~7 s of orchestration) and far more than a run waiting on real models; the goals are
 * measured there. `liveWriteStorm` repeats it at 500 steps a second, for what SQLite's WAL
 * checkpoints then cost (FACTS.md), without a goal.
 *
 * Load: `wrk` (apt-get install -y wrk), 1 thread and 50 connections, a warm-up then DURATION_S;
 * without wrk, a node:http load generator in a worker thread. Both share the machine's two cores
 * with the server, so read the figures as ratios measured in one run: ROUNDS interleaved rounds,
 * each figure the median of its rounds, the ratio the median of the rounds' ratios. The one-minute
 * load average is printed: above the core count, every figure is noise from other processes.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { assign, createActor, setup } from 'xstate';
import { startMonitoring } from '../server/index.ts';
import { Checkpointer } from '../services/store/checkpointer.ts';
import { Store, type NewTask } from '../services/store/store.ts';

const CONNECTIONS = 50;
const DURATION_S = 3;
const WARMUP_S = 1;
const STEP_MS = 20;
const STORM_STEP_MS = 2;
const ROUNDS = 3;
const GOAL_RATIO = 1.8;
const GOAL_P99_MS = 3;

interface Load {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /**
   * This process's CPU time (the server, and the run's writes while it runs) per answered request.
   * The load generator is another process (wrk) or thread (not counted for wrk only), so this
   * figure holds when other processes crowd the cores and the others do not.
   */
  cpuMicrosPerRequest: number;
}

const round = (value: number): number => Math.round(value * 1000) / 1000;

const wrkVersion = (() => {
  const probe = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  return probe.error ? undefined : (/wrk (\S+)/.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? 'unknown');
})();

/** wrk prints latencies as `1.35ms`, `850.00us` or `1.02s`. */
function milliseconds(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!match) return NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

type Measured = Omit<Load, 'cpuMicrosPerRequest'>;

function wrk(url: string, seconds: number): Promise<Measured> {
  return new Promise((resolve, reject) => {
    execFile('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url], (error, stdout) => {
      if (error) return reject(error);
      const latency = (share: string) => milliseconds(new RegExp(`^\\s+${share}%\\s+(\\S+)`, 'm').exec(stdout)?.[1] ?? '');
      const count = (pattern: RegExp) => Number(pattern.exec(stdout)?.[1] ?? 0);
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
      resolve({
        requestsPerSecond: Math.round(count(/Requests\/sec:\s+([\d.]+)/)),
        p50Ms: round(latency('50')),
        p99Ms: round(latency('99')),
        errors: count(/Non-2xx or 3xx responses: (\d+)/) + (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0),
      });
    });
  });
}

// Plain JavaScript so the worker needs no TypeScript loader.
const loadWorker = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const { url, connections, durationMs } = workerData;
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const latencies = [];
let errors = 0;
const end = Date.now() + durationMs;
const once = () => new Promise((resolve) => {
  const started = process.hrtime.bigint();
  const request = http.get(url, { agent }, (response) => {
    response.resume();
    response.on('end', () => {
      if (response.statusCode === 200) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      else errors += 1;
      resolve();
    });
  });
  request.on('error', () => { errors += 1; resolve(); });
});
const loop = async () => { while (Date.now() < end) await once(); };
Promise.all(Array.from({ length: connections }, loop)).then(() => {
  agent.destroy();
  parentPort.postMessage({ latencies: Float64Array.from(latencies), errors });
});
`;

function workerLoad(url: string, seconds: number): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(loadWorker, { eval: true, workerData: { url, connections: CONNECTIONS, durationMs: seconds * 1000 } });
    worker.once('error', reject);
    worker.once('message', ({ latencies, errors }: { latencies: Float64Array; errors: number }) => {
      const sorted = Array.from(latencies).sort((a, b) => a - b);
      const at = (share: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] ?? NaN);
      resolve({ requestsPerSecond: Math.round(sorted.length / seconds), p50Ms: at(0.5), p99Ms: at(0.99), errors });
      void worker.terminate();
    });
  });
}

async function measure(url: string): Promise<Load> {
  const load = wrkVersion ? wrk : workerLoad;
  await load(url, WARMUP_S);
  const cpu = process.cpuUsage();
  const measured = await load(url, DURATION_S);
  const used = process.cpuUsage(cpu);
  return { ...measured, cpuMicrosPerRequest: Math.round(((used.user + used.system) / Math.max(1, measured.requestsPerSecond * DURATION_S)) * 10) / 10 };
}

// ---- the run -----------------------------------------------------------------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-health-bench-'));
const store = Store.open(path.join(dir, '.duo-agent', 'moderator.db'));
const runId = 'bench';
store.runs.create({ id: runId, target: dir, requirements: 'bench', settings: {}, snapshotVersion: 1, machineFingerprint: 'bench' });
const planned: NewTask[] = Array.from({ length: 50 }, (_, index) => ({
  id: `T${index + 1}`,
  title: `Task ${index + 1}: a feature of the kind a plan holds`,
  type: 'feature',
  description: 'Implement the part of the requirements this task covers, with its tests.',
  acceptanceCriteria: ['the command works as described', 'tests cover the new behaviour'],
  dependsOn: index > 0 ? [`T${index}`] : [],
  origin: 'plan',
}));
store.tasks.add(runId, planned);

const machine = setup({
  types: { context: {} as { tasks: (NewTask & { status: string; attempts: number })[]; step: number }, events: {} as { type: 'step' } },
}).createMachine({
  id: 'orchestrator',
  context: { tasks: planned.map((task) => ({ ...task, status: 'pending', attempts: 0 })), step: 0 },
  initial: 'implementing',
  states: {
    implementing: {
      on: {
        step: {
          actions: assign(({ context }) => {
            const index = context.step % context.tasks.length;
            return {
              step: context.step + 1,
              tasks: context.tasks.map((task, at) => (at === index ? { ...task, status: task.status === 'pending' ? 'active' : 'pending', attempts: task.attempts + 1 } : task)),
            };
          }),
        },
      },
    },
  },
});

const limits = { maxTokensTotal: 10_000_000, maxCostUsd: null, maxRuntimeMs: 3_600_000, maxErrorRate: 0.5 };
const monitoring = await startMonitoring({ store, runId, target: dir, host: '127.0.0.1', port: 0, enableWebSocket: true, logsDir: path.join(dir, '.duo-agent', 'logs'), limits });
const checkpointer = new Checkpointer({ store, runId, journaled: new Set(['step']) });
const actor = createActor(machine, {
  id: 'orchestrator',
  inspect: (event) => {
    checkpointer.observe(event);
    monitoring.observe(event);
  },
});
checkpointer.attach(actor);
monitoring.attach(actor);
actor.start();

let steps = 0;
let calls = 0;
const reply = { text: 'r'.repeat(2000), toolCalls: [], stopReason: 'end_turn' };
function step(): void {
  steps += 1;
  actor.send({ type: 'step' });
  if (steps % 10 === 0) {
    calls += 1;
    const id = store.calls.begin({ runId, callKey: `techlead:implement:T${(steps % 50) + 1}:${steps}`, agent: 'techlead', purpose: 'implement', taskId: `T${(steps % 50) + 1}`, provider: 'replay', model: 'm' });
    store.calls.finish(id, { status: 'ok', model: 'm', usage: { inputTokens: 3000, outputTokens: 500, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0.0165, latencyMs: 900, reply });
  }
  if (steps % 25 === 0) store.tasks.update(runId, `T${(steps % 50) + 1}`, { status: 'in_progress', attempts: steps });
  if (steps % 100 === 0) store.alerts.add({ runId, level: 'info', kind: 'progress', message: `step ${steps}` });
}

const healthUrl = new URL('/api/health', monitoring.url).toString();
const body = Buffer.from(await (await fetch(healthUrl)).text());
const nodeServer = http.createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store' });
  response.end(body);
});
await new Promise<void>((resolve) => nodeServer.listen(0, '127.0.0.1', resolve));
const nodeUrl = `http://127.0.0.1:${(nodeServer.address() as { port: number }).port}/api/health`;


/** The live server while the run takes a step every `everyMs`, with what the run wrote meanwhile. */
async function duringRun(everyMs: number) {
  const loop = setInterval(step, everyMs);
  const before = { ...checkpointer.stats, steps, calls, at: performance.now() };
  const load = await measure(healthUrl);
  clearInterval(loop);
  const seconds = (performance.now() - before.at) / 1000;
  const writes = checkpointer.stats.writes - before.writes;
  return {
    ...load,
    run: {
      stepsPerSecond: Math.round((steps - before.steps) / seconds),
      checkpointsPerSecond: Math.round(writes / seconds),
      modelCallsPerSecond: Math.round((calls - before.calls) / seconds),
      snapshotBytes: checkpointer.stats.lastSnapshotBytes,
      meanCheckpointMs: round((checkpointer.stats.persistMicros - before.persistMicros) / Math.max(1, writes) / 1000),
    },
  };
}

// Interleaved rounds, each figure the median of its rounds: other processes on the machine come
// and go, and they then weigh on every contender alike.
const rounds: { nodeHttpFixedBody: Load; liveIdle: Load; live: Awaited<ReturnType<typeof duringRun>>; liveWriteStorm: Awaited<ReturnType<typeof duringRun>> }[] = [];
for (let round = 0; round < ROUNDS; round += 1) {
  rounds.push({ nodeHttpFixedBody: await measure(nodeUrl), liveIdle: await measure(healthUrl), live: await duringRun(STEP_MS), liveWriteStorm: await duringRun(STORM_STEP_MS) });
}
nodeServer.closeAllConnections();
nodeServer.close();
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
function medianLoad<T extends Load>(of: (round: (typeof rounds)[number]) => T): T {
  const all = rounds.map(of);
  const figures = {
    requestsPerSecond: median(all.map((load) => load.requestsPerSecond)),
    p50Ms: median(all.map((load) => load.p50Ms)),
    p99Ms: median(all.map((load) => load.p99Ms)),
    errors: all.reduce((sum, load) => sum + load.errors, 0),
    cpuMicrosPerRequest: median(all.map((load) => load.cpuMicrosPerRequest)),
  };
  return { ...all[0], ...figures } as T;
}
const nodeHttpFixedBody = medianLoad((round) => round.nodeHttpFixedBody);
const liveIdle = medianLoad((round) => round.liveIdle);
const live = medianLoad((round) => round.live);
const liveWriteStorm = medianLoad((round) => round.liveWriteStorm);

actor.stop();
checkpointer.stop();
await monitoring.close();
store.close();
fs.rmSync(dir, { recursive: true, force: true });

const ratio = round(median(rounds.map((each) => each.live.requestsPerSecond / Math.max(1, each.nodeHttpFixedBody.requestsPerSecond))));
console.log(
  JSON.stringify({
    bench: 'health',
    loadGenerator: wrkVersion ? `wrk ${wrkVersion}, 1 thread, ${CONNECTIONS} connections, ${DURATION_S} s` : `node:http in a worker thread (wrk not installed), ${CONNECTIONS} connections, ${DURATION_S} s`,
    rounds: ROUNDS,
    loadAverage: os.loadavg()[0],
    healthBodyBytes: body.length,
    live,
    liveIdle,
    liveWriteStorm,
    nodeHttpFixedBody,
    requestsPerSecondRatio: ratio,
    requestsPerSecondRatioGoal: GOAL_RATIO,
    liveP99Ms: live.p99Ms,
    liveP99MsGoal: GOAL_P99_MS,
    met: ratio >= GOAL_RATIO && live.p99Ms < GOAL_P99_MS && live.errors === 0,
  }),
);
