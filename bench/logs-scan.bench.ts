/**
 * How long one `/api/logs` page holds the event loop, at the scan budget `server/logs.ts` uses.
 * Writes ~48 MB of pino-like lines over six agent files plus a file that is one 10 MB line,
 * then times `readLogs` page by page, following the cursors to the end: with a filter that
 * matches nothing (every page reads its whole budget), and unfiltered at the largest limit.
 * Prints ONE JSON line. Run with `node --import tsx bench/logs-scan.bench.ts`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { maxLimit, readLogs, scanBudgetBytes, type LogQuery } from '../server/logs.ts';

const GOAL_MAX_MS = 10;
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
}

/** Follows the cursor from the first page to the last, timing each page (reading and answering: JSON.stringify). */
function walk(query: LogQuery): Walk {
  const times: number[] = [];
  let entries = 0;
  let cursor: string | null | undefined;
  do {
    const started = performance.now();
    const page = readLogs(dir, 'r1', { ...query, ...(cursor ? { cursor } : {}) });
    JSON.stringify(page);
    times.push(performance.now() - started);
    entries += page.entries.length;
    cursor = page.next_cursor;
  } while (cursor);
  times.sort((a, b) => a - b);
  const at = (share: number) => round(times[Math.min(times.length - 1, Math.floor(times.length * share))] ?? NaN);
  return { pages: times.length, entries, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(times.at(-1) ?? NaN) };
}

const round = (value: number): number => Math.round(value * 1000) / 1000;

walk({ limit: 10 }); // warm-up: page cache and JIT
const nothingMatches = walk({ task: 'T-none', limit: maxLimit });
const everything = walk({ limit: maxLimit });
const oneLongLine = walk({ agent: 'specialist', limit: maxLimit });
fs.rmSync(dir, { recursive: true, force: true });

const worstMs = Math.max(nothingMatches.maxMs, everything.maxMs, oneLongLine.maxMs);
console.log(
  JSON.stringify({
    bench: 'logs-scan',
    scanBudgetBytes,
    totalBytes,
    nothingMatches,
    everything,
    oneLongLine,
    worstPageMs: worstMs,
    goalWorstPageMs: GOAL_MAX_MS,
    met: worstMs <= GOAL_MAX_MS,
  }),
);
