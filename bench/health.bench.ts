/**
 * `/api/health` under load: the uWebSockets.js monitoring server against a node:http server that
 * computes the same body with the same code (`healthView` over the same store), then the uWS
 * server again while the same process checkpoints a ~20 KB snapshot every 2 ms (the SQLite WAL
 * stall FACTS.md describes). Prints ONE JSON line. Run with `node --import tsx bench/health.bench.ts`.
 *
 * The load generator runs in a worker thread (keep-alive node:http agent, CONNECTIONS
 * concurrent request loops for DURATION_MS each, after a short warm-up), so it does not share the
 * servers' event loop; it still shares the machine's cores, so read the figures as ratios.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { startMonitoring } from '../server/index.ts';
import { LiveState } from '../server/live-state.ts';
import { healthView, type ViewContext } from '../server/views.ts';
import { Store } from '../services/store/store.ts';

const CONNECTIONS = 50;
const DURATION_MS = 3000;
const WARMUP_MS = 500;
const CHECKPOINT_EVERY_MS = 2;

interface Load {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
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

function load(url: string, durationMs: number): Promise<Load> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(loadWorker, { eval: true, workerData: { url, connections: CONNECTIONS, durationMs } });
    worker.once('error', reject);
    worker.once('message', ({ latencies, errors }: { latencies: Float64Array; errors: number }) => {
      const sorted = Array.from(latencies).sort((a, b) => a - b);
      const at = (share: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * share))] ?? NaN);
      resolve({ requestsPerSecond: Math.round(sorted.length / (durationMs / 1000)), p50Ms: at(0.5), p99Ms: at(0.99), errors });
      void worker.terminate();
    });
  });
}

const round = (value: number): number => Math.round(value * 1000) / 1000;

async function measure(url: string): Promise<Load> {
  await load(url, WARMUP_MS);
  return load(url, DURATION_MS);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-health-bench-'));
const store = Store.open(path.join(dir, '.duo-agent', 'moderator.db'));
store.createRun({ id: 'bench', target: dir, requirements: 'bench', settings: {}, snapshotVersion: 1, machineFingerprint: 'bench' });
const limits = { maxTokensTotal: 1_000_000, maxCostUsd: null, maxRuntimeMs: 3_600_000, maxErrorRate: 0.5 };
const monitoring = await startMonitoring({
  store,
  runId: 'bench',
  target: dir,
  host: '127.0.0.1',
  port: 0,
  enableWebSocket: true,
  logsDir: path.join(dir, '.duo-agent', 'logs'),
  limits,
});

const context: ViewContext = {
  store,
  runId: 'bench',
  target: dir,
  live: new LiveState(() => undefined, () => false),
  limits,
  startedAt: Date.now(),
  now: Date.now,
  websocketClients: () => 0,
};
const nodeServer = http.createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  response.end(JSON.stringify(healthView(context)));
});
await new Promise<void>((resolve) => nodeServer.listen(0, '127.0.0.1', resolve));
const nodeUrl = `http://127.0.0.1:${(nodeServer.address() as { port: number }).port}/api/health`;
const uwsUrl = new URL('/api/health', monitoring.url).toString();

const uws = await measure(uwsUrl);
const nodeHttp = await measure(nodeUrl);

// A ~20 KB snapshot, changed on every write like a live run's.
const padding = 'x'.repeat(20 * 1024);
let checkpoints = 0;
let checkpointMicros = 0;
const checkpointer = setInterval(() => {
  const started = performance.now();
  store.saveCheckpoint('bench', JSON.stringify({ n: checkpoints, padding }), 'active', [], null);
  checkpointMicros += (performance.now() - started) * 1000;
  checkpoints += 1;
}, CHECKPOINT_EVERY_MS);
const uwsWhileCheckpointing = await measure(uwsUrl);
clearInterval(checkpointer);

await monitoring.close();
nodeServer.closeAllConnections();
nodeServer.close();
store.close();
fs.rmSync(dir, { recursive: true, force: true });

console.log(
  JSON.stringify({
    bench: 'health',
    connections: CONNECTIONS,
    durationMs: DURATION_MS,
    uws,
    nodeHttp,
    uwsWhileCheckpointing: { ...uwsWhileCheckpointing, checkpoints, meanCheckpointMs: round(checkpointMicros / Math.max(1, checkpoints) / 1000) },
    requestsPerSecondRatio: round(uws.requestsPerSecond / Math.max(1, nodeHttp.requestsPerSecond)),
  }),
);
