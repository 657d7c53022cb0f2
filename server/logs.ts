import fs from 'node:fs';
import path from 'node:path';

export interface LogQuery {
  agent?: string;
  /** Minimum level, as a pino number or name (`warn`, `WARNING`, `40`). */
  level?: string;
  task?: string;
  /** `*` for every run in the files; the server's run otherwise. */
  run?: string;
  cursor?: string;
  limit?: number;
}

export interface LogEntry {
  level: number;
  time: number;
  msg: string;
  agent: string;
  runId: string | null;
  taskId?: string;
  /** The line's other fields (call keys, usage, event types), without pino's pid and hostname. */
  data: Record<string, unknown>;
}

export interface LogPage {
  entries: LogEntry[];
  /** Pass back as `cursor` for the next (older) page; null when nothing older is left. */
  next_cursor: string | null;
}

const levels: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, warning: 40, error: 50, fatal: 60 };
const chunkSize = 64 * 1024;
/** Bytes one request may scan; a filter that matches little pages on instead of reading gigabytes. */
const scanBudget = 4 * 1024 * 1024;
export const maxLimit = 1000;

export class LogQueryError extends Error {}

export function parseLevel(level: string): number {
  const value = /^\d+$/.test(level) ? Number(level) : levels[level.toLowerCase()];
  if (value === undefined) throw new LogQueryError(`level: expected a number or one of ${Object.keys(levels).join(', ')}, found "${level}"`);
  return value;
}

/** Log file names are the model-call agent names: `ever-thinker` for the actor `everThinker`. */
const fileAgent = (agent: string): string => (agent === 'everThinker' || agent === 'ever_thinker' ? 'ever-thinker' : agent);

interface Line {
  text: string;
  /** Byte offset where the line starts: the file's cursor once the line is consumed. */
  start: number;
}

/** The lines of a file before `end`, newest first, read backwards in chunks. */
function* linesBackward(fd: number, end: number, scanned: { bytes: number }): Generator<Line> {
  let position = end;
  let carry = Buffer.alloc(0);
  while (position > 0) {
    const size = Math.min(chunkSize, position);
    position -= size;
    const chunk = Buffer.alloc(size);
    fs.readSync(fd, chunk, 0, size, position);
    scanned.bytes += size;
    const buffer = carry.length > 0 ? Buffer.concat([chunk, carry]) : chunk;
    let lineEnd = buffer.length;
    let newline = buffer.lastIndexOf(0x0a, lineEnd - 1);
    while (newline !== -1) {
      if (lineEnd > newline + 1) yield { text: buffer.toString('utf8', newline + 1, lineEnd), start: position + newline + 1 };
      lineEnd = newline;
      newline = newline > 0 ? buffer.lastIndexOf(0x0a, newline - 1) : -1;
    }
    carry = buffer.subarray(0, lineEnd);
  }
  if (carry.length > 0) yield { text: carry.toString('utf8'), start: 0 };
}

function encodeCursor(offsets: Record<string, number>): string {
  return Buffer.from(JSON.stringify(offsets)).toString('base64url');
}

function decodeCursor(cursor: string): Record<string, number> {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (typeof parsed === 'object' && parsed !== null && Object.values(parsed).every((value) => Number.isInteger(value) && value >= 0)) {
      return parsed as Record<string, number>;
    }
  } catch {
    // reported below
  }
  throw new LogQueryError('cursor: not a cursor this server gave out');
}

function toEntry(text: string, file: string): LogEntry | undefined {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof line !== 'object' || line === null || Array.isArray(line)) return undefined;
  const { level, time, msg, agent, runId, taskId, pid: _pid, hostname: _hostname, ...data } = line as Record<string, unknown>;
  return {
    level: typeof level === 'number' ? level : 30,
    time: typeof time === 'number' ? time : 0,
    msg: typeof msg === 'string' ? msg : '',
    agent: typeof agent === 'string' ? agent : file,
    runId: typeof runId === 'string' ? runId : null,
    ...(typeof taskId === 'string' ? { taskId } : {}),
    data,
  };
}

/** A task filter matches the task id, a call key segment (`techlead:revise:T2:2`) or a correlation id (`T2#2`). */
function concernsTask(entry: LogEntry, task: string): boolean {
  if (entry.taskId === task) return true;
  const { callKey, correlationId, payload } = entry.data;
  if (typeof callKey === 'string' && callKey.split(':').includes(task)) return true;
  if (typeof correlationId === 'string' && correlationId.split('#')[0] === task) return true;
  return typeof payload === 'object' && payload !== null && (payload as Record<string, unknown>).taskId === task;
}

interface Source {
  file: string;
  fd: number;
  lines: Generator<Line>;
  head: { line: Line; entry: LogEntry } | undefined;
}

/**
 * The merged tail of the per-agent pino files in `dir`, newest first, filtered and paginated.
 * The cursor holds, per file, the offset before which the next page starts, so pages stay
 * stable while the files keep growing (new lines only appear on a fresh first page).
 */
export function readLogs(dir: string, runId: string, query: LogQuery): LogPage {
  const limit = Math.min(Math.max(1, query.limit ?? 100), maxLimit);
  const minLevel = query.level ? parseLevel(query.level) : 0;
  const offsets = query.cursor ? decodeCursor(query.cursor) : undefined;
  const run = query.run ?? runId;
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((name) => name.endsWith('.jsonl')).sort();
  } catch {
    return { entries: [], next_cursor: null };
  }
  if (query.agent) names = names.filter((name) => name === `${fileAgent(query.agent ?? '')}.jsonl`);
  const scanned = { bytes: 0 };
  const sources: Source[] = [];
  const next: Record<string, number> = { ...offsets };
  try {
    for (const file of names) {
      const fd = fs.openSync(path.join(dir, file), 'r');
      // A file that appeared after the first page holds only newer lines: not part of this walk.
      const end = offsets ? (offsets[file] ?? 0) : fs.fstatSync(fd).size;
      next[file] = end;
      const source: Source = { file, fd, lines: linesBackward(fd, end, scanned), head: undefined };
      advance(source);
      sources.push(source);
    }
    const entries: LogEntry[] = [];
    while (entries.length < limit && scanned.bytes <= scanBudget) {
      let newest: Source | undefined;
      for (const source of sources) {
        if (source.head && (!newest?.head || source.head.entry.time > newest.head.entry.time)) newest = source;
      }
      if (!newest?.head) break;
      const { line, entry } = newest.head;
      next[newest.file] = line.start;
      advance(newest);
      if (entry.level < minLevel || (run !== '*' && entry.runId !== run)) continue;
      if (query.task && !concernsTask(entry, query.task)) continue;
      entries.push(entry);
    }
    const more = sources.some((source) => source.head !== undefined);
    return { entries, next_cursor: more ? encodeCursor(next) : null };
  } finally {
    for (const source of sources) fs.closeSync(source.fd);
  }
}

/** Moves a file to its next readable line; a broken line (a torn write) is passed over. */
function advance(source: Source): void {
  source.head = undefined;
  for (let result = source.lines.next(); !result.done; result = source.lines.next()) {
    const entry = toEntry(result.value.text, source.file.replace(/\.jsonl$/, ''));
    if (entry) {
      source.head = { line: result.value, entry };
      return;
    }
  }
}
