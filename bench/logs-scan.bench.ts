/**
 * How long one `/api/logs` page holds the event loop, at the scan budget `server/logs.ts` uses.
 * Writes ~48 MB of pino-like lines over six agent files plus a file that is one 10 MB line,
 * then times `readLogs` page by page, following the cursors to the end: with a filter that
 * matches nothing (every page reads its whole budget), and unfiltered at the largest limit. The
 * goal is on the pages' CPU time at p99 (the worst of the three walks); wall times are printed
 * too, and on a crowded machine (see the load average) they include time other processes held
 * the cores.
 * Prints ONE JSON line. Run with `node --import tsx bench/logs-scan.bench.ts`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { maxLimit, readLogs, scanBudgetBytes, type LogQuery } from '../server/logs.ts';

const GOAL_P99_MS = 5;
const agents = ['orchestrator', 'moderator', 'techlead', 'monitor', 'ever-thinker', 'git'];
const linesPerFile = 40_000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-logs-bench-'));
let time = 1_700_000_000_000;
for (const agent of agents) {
  const lines: string[] = [];
  for (let index = 0; index < linesPerFile; index += 1) {
    time += 3;
    const payload = index % 10 === 0 ? { taskId: `T${index % 7}`, summary: 'y'.repeat(1500) } : { n: index };
    lines.push(JSON.stringify({ level: 30, time, pid: 1, hostname: 'h', runId: 'r1', agent, type: 'task.assigned', payload, correlationId: `T${index % 7}#1`, msg: 'message' }));
  }
  fs.writeFileSync(path.join(dir, `${agent}.jsonl`), `${lines.join('\n')}\n`);
}
fs.writeFileSync(path.join(dir, 'specialist.jsonl'), 'x'.repeat(10 * 1024 * 1024));
const totalBytes = fs.readdirSync(dir).reduce((sum, name) => sum + fs.statSync(path.join(dir, name)).size, 0);

interface Walk {
  pages: number;
  entries: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Pages in CPU time: what a page itself costs, whatever else runs on the machine (the longest may hold a garbage collection). */
  cpuP99Ms: number;
  cpuMaxMs: number;
}

/** Follows the cursor from the first page to the last, timing each page (reading and answering: JSON.stringify). */
function walk(query: LogQuery): Walk {
  const times: number[] = [];
  const cpuTimes: number[] = [];
  let entries = 0;
  let cursor: string | null | undefined;
  do {
    const started = performance.now();
    const cpu = process.cpuUsage();
    const page = readLogs(dir, 'r1', { ...query, ...(cursor ? { cursor } : {}) });
    JSON.stringify(page);
    const used = process.cpuUsage(cpu);
    times.push(performance.now() - started);
    cpuTimes.push((used.user + used.system) / 1000);
    entries += page.entries.length;
    cursor = page.next_cursor;
  } while (cursor);
  const at = (values: number[], share: number) => round([...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * share))] ?? NaN);
  return { pages: times.length, entries, p50Ms: at(times, 0.5), p99Ms: at(times, 0.99), maxMs: at(times, 1), cpuP99Ms: at(cpuTimes, 0.99), cpuMaxMs: at(cpuTimes, 1) };
}

const round = (value: number): number => Math.round(value * 1000) / 1000;

walk({ limit: 10 }); // warm-up: page cache and JIT
const nothingMatches = walk({ task: 'T-none', limit: maxLimit });
const everything = walk({ limit: maxLimit });
const oneLongLine = walk({ agent: 'specialist', limit: maxLimit });
fs.rmSync(dir, { recursive: true, force: true });

const worstCpuP99Ms = Math.max(nothingMatches.cpuP99Ms, everything.cpuP99Ms, oneLongLine.cpuP99Ms);
console.log(
  JSON.stringify({
    bench: 'logs-scan',
    scanBudgetBytes,
    totalBytes,
    nothingMatches,
    everything,
    oneLongLine,
    pageCpuP99Ms: worstCpuP99Ms,
    pageCpuP99MsGoal: GOAL_P99_MS,
    loadAverage: os.loadavg()[0],
    met: worstCpuP99Ms <= GOAL_P99_MS,
  }),
);
