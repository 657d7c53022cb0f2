import fs from 'node:fs';
import path from 'node:path';
import { logName } from '../protocol/agents.ts';

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

/**
 * Bytes one request may read, over all files. The server shares the run's event loop, so this
 * bounds how long a log request can hold the run up. Parsing dominates (~10-20 µs per KiB of
 * pino lines on this 2-core machine, busy with other sessions): a 512 KiB page took 15 ms at the
 * median; a 128 KiB one takes ~1-2 ms, 3 ms of CPU at p99 (bench/logs-scan.bench.ts). A filter
 * that matches little, or a huge file, pages on with a cursor instead of reading on.
 */
export const scanBudgetBytes = 128 * 1024;
/** Reads start small, so the newest line of many files costs little, and double while a file is walked. */
const firstChunkBytes = 4 * 1024;
const maxChunkBytes = 32 * 1024;
/**
 * A longer line is passed over (pino writes one object per line; this is far past any line the
 * run writes). It also guarantees progress: one file's next entry (at most this plus one chunk)
 * always fits in a fresh budget, so every page moves its cursor, even through a file that is one
 * 10 MB line.
 */
export const maxLineBytes = 64 * 1024;
export const maxLimit = 1000;
const maxCursorChars = 4096;

export class LogQueryError extends Error {}

export function parseLevel(level: string): number {
  const value = /^\d+$/.test(level) ? Number(level) : levels[level.toLowerCase()];
  if (value === undefined) throw new LogQueryError(`level: expected a number or one of ${Object.keys(levels).join(', ')}, found "${level}"`);
  return value;
}

/** `limit` as the query string gives it: a whole number from 1 to `maxLimit`. */
export function parseLimit(text: string): number {
  const limit = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
  if (!(limit >= 1 && limit <= maxLimit)) throw new LogQueryError(`limit: expected a whole number from 1 to ${maxLimit}, found "${text.slice(0, 40)}"`);
  return limit;
}


interface Line {
  text: string;
  /** Byte offsets of the line in its file, without the newline. */
  start: number;
  end: number;
}

class ScanBudget {
  constructor(private left: number) {}

  take(bytes: number): boolean {
    if (bytes > this.left) return false;
    this.left -= bytes;
    return true;
  }
}

const noBytes = Buffer.alloc(0);

/** The lines of a file before an offset, newest first, read backwards in chunks drawn from a budget. */
class BackwardLines {
  /** Bytes before this offset are not read yet. */
  private position: number;
  /** The end of a line whose start lies before `position`. */
  private carry: Buffer = noBytes;
  /** Whole lines of the chunks read, oldest first; handed out from the end. */
  private ready: Line[] = [];
  /** Inside a line longer than `maxLineBytes`: its bytes are dropped until its start. */
  private skipping = false;
  private chunkBytes = firstChunkBytes;
  /** Everything from here to where the walk began was handed out or passed over. */
  resumeAt: number;

  constructor(
    private readonly fd: number,
    end: number,
    private readonly budget: ScanBudget,
  ) {
    this.position = end;
    this.resumeAt = end;
  }

  next(): Line | 'end' | 'budget' {
    for (;;) {
      const line = this.ready.pop();
      if (line) {
        this.resumeAt = line.start;
        return line;
      }
      if (this.position === 0) {
        const first = this.carry;
        this.carry = noBytes;
        this.resumeAt = 0;
        if (first.length === 0 || this.skipping) return 'end';
        return { text: first.toString('utf8'), start: 0, end: first.length };
      }
      const size = Math.min(this.chunkBytes, this.position);
      this.chunkBytes = Math.min(this.chunkBytes * 2, maxChunkBytes);
      // Checked before the read, inside the loop: no file, line or filter can make a request read more.
      if (!this.budget.take(size)) return 'budget';
      const chunk = Buffer.allocUnsafe(size);
      if (fs.readSync(this.fd, chunk, 0, size, this.position - size) !== size) {
        // Shorter than when the walk began: truncated under us; nothing older can be trusted.
        this.position = 0;
        this.carry = noBytes;
        this.skipping = true;
        continue;
      }
      this.position -= size;
      this.split(chunk);
    }
  }

  private split(chunk: Buffer): void {
    const buffer = this.carry.length > 0 ? Buffer.concat([chunk, this.carry]) : chunk;
    const found: Line[] = [];
    let lineEnd = buffer.length;
    let newline = buffer.lastIndexOf(0x0a, lineEnd - 1);
    while (newline !== -1) {
      // While skipping, the first line start found is the overlong line's own: dropped with it.
      if (this.skipping) this.skipping = false;
      else if (lineEnd > newline + 1 && lineEnd - newline - 1 <= maxLineBytes) found.push({ text: buffer.toString('utf8', newline + 1, lineEnd), start: this.position + newline + 1, end: this.position + lineEnd });
      lineEnd = newline;
      newline = newline > 0 ? buffer.lastIndexOf(0x0a, newline - 1) : -1;
    }
    this.ready = found.reverse();
    this.carry = buffer.subarray(0, lineEnd);
    if (this.carry.length > maxLineBytes) this.skipping = true;
    if (this.skipping) {
      this.carry = noBytes;
      // Passed over up to here; a page that stops now resumes inside the line, whose head is then
      // a fragment that is no JSON object and is passed over like a torn line.
      if (this.ready.length === 0) this.resumeAt = this.position;
    }
  }
}

/** Per file: the offset the next page reads back from, and the time of the entry that ends there when known. */
type CursorPosition = [offset: number] | [offset: number, time: number];

function encodeCursor(positions: Record<string, CursorPosition>): string {
  return Buffer.from(JSON.stringify(positions)).toString('base64url');
}

const badCursor = () => new LogQueryError('cursor: not a cursor this server gave out; start again without one');

function decodeCursor(cursor: string): Record<string, CursorPosition> {
  if (cursor.length > maxCursorChars) throw badCursor();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw badCursor();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badCursor();
  const positions: Record<string, CursorPosition> = {};
  for (const [file, value] of Object.entries(parsed)) {
    const valid =
      Array.isArray(value) &&
      (value.length === 1 || value.length === 2) &&
      Number.isSafeInteger(value[0]) &&
      (value[0] as number) >= 0 &&
      (value.length === 1 || Number.isFinite(value[1]));
    if (!valid) throw badCursor();
    positions[file] = value as CursorPosition;
  }
  return positions;
}

/** A pino line as parsed: an object, or nothing for a torn or foreign line. */
type ParsedLine = Record<string, unknown>;

function parseLine(text: string): ParsedLine | undefined {
  let line: unknown;
  try {
    line = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof line === 'object' && line !== null && !Array.isArray(line) ? (line as ParsedLine) : undefined;
}

const levelOf = (line: ParsedLine): number => (typeof line.level === 'number' ? line.level : 30);
const timeOf = (line: ParsedLine): number => (typeof line.time === 'number' ? line.time : 0);

/** Built only for the lines a page returns: most lines a filtered walk reads are passed over. */
function toEntry(line: ParsedLine, file: string): LogEntry {
  const { level: _level, time: _time, msg, agent, runId, taskId, pid: _pid, hostname: _hostname, ...data } = line;
  return {
    level: levelOf(line),
    time: timeOf(line),
    msg: typeof msg === 'string' ? msg : '',
    agent: typeof agent === 'string' ? agent : file,
    runId: typeof runId === 'string' ? runId : null,
    ...(typeof taskId === 'string' ? { taskId } : {}),
    data,
  };
}

/** A task filter matches the task id, a call key segment (`techlead:revise:T2:2`) or a correlation id (`T2#2`). */
function concernsTask(line: ParsedLine, task: string): boolean {
  const { taskId, callKey, correlationId, payload } = line;
  if (taskId === task) return true;
  if (typeof callKey === 'string' && callKey.split(':').includes(task)) return true;
  if (typeof correlationId === 'string' && correlationId.split('#')[0] === task) return true;
  return typeof payload === 'object' && payload !== null && (payload as Record<string, unknown>).taskId === task;
}

interface Source {
  file: string;
  fd: number;
  lines: BackwardLines;
  /**
   * The newest entry not consumed yet, ending at `end`: read, or (from the cursor) only its time
   * known, so a page does not read again what the previous one already looked at.
   */
  head: { time: number; end: number; line?: ParsedLine } | undefined;
  done: boolean;
}

/** Reads a file up to its next entry; a broken line (a torn write) is passed over. */
function advance(source: Source): 'ok' | 'budget' {
  source.head = undefined;
  for (;;) {
    const line = source.lines.next();
    if (line === 'budget') return 'budget';
    if (line === 'end') {
      source.done = true;
      return 'ok';
    }
    const parsed = parseLine(line.text);
    if (parsed) {
      source.head = { time: timeOf(parsed), end: line.end, line: parsed };
      return 'ok';
    }
  }
}

/**
 * The merged tail of the per-agent pino files in `dir`, newest first, filtered and paginated.
 * The cursor holds, per file, the offset before which the next page starts, so pages stay
 * stable while the files keep growing (new lines only appear on a fresh first page). A page
 * reads at most `scanBudgetBytes`: it may hold fewer than `limit` entries (even none) and still
 * give a cursor; follow it.
 */
export function readLogs(dir: string, runId: string, query: LogQuery): LogPage {
  const limit = query.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) throw new LogQueryError(`limit: expected a whole number from 1 to ${maxLimit}, found ${limit}`);
  const minLevel = query.level ? parseLevel(query.level) : 0;
  const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
  const run = query.run ?? runId;
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((name) => name.endsWith('.jsonl')).sort();
  } catch {
    return { entries: [], next_cursor: null };
  }
  for (const file of Object.keys(cursor ?? {})) {
    if (!names.includes(file)) throw new LogQueryError(`cursor: names "${file.slice(0, 80)}", which is not a log file here; start again without a cursor`);
  }
  // Any of an agent's names finds its file (`everThinker`, `ever_thinker`, `ever-thinker`).
  if (query.agent) names = names.filter((name) => name === `${logName(query.agent ?? '')}.jsonl`);
  const budget = new ScanBudget(scanBudgetBytes);
  const sources: Source[] = [];
  try {
    for (const file of names) {
      const fd = fs.openSync(path.join(dir, file), 'r');
      const size = fs.fstatSync(fd).size;
      // A file that appeared after the first page holds only newer lines: not part of this walk.
      const [end, time] = cursor ? (cursor[file] ?? [0]) : [size];
      const source: Source = { file, fd, lines: new BackwardLines(fd, Math.min(end, size), budget), head: undefined, done: false };
      sources.push(source);
      // Logs only grow: an offset past the end was never given out.
      if (end > size) throw new LogQueryError(`cursor: offset ${end} is past the end of ${file} (${size} bytes); start again without a cursor`);
      if (time !== undefined && end > 0) source.head = { time, end };
    }
    const entries: LogEntry[] = [];
    // The merge needs each file's newest entry before it can pick the newest of all.
    let outOfBudget = sources.some((source) => !source.head && !source.done && advance(source) === 'budget');
    while (!outOfBudget && entries.length < limit) {
      let newest: Source | undefined;
      for (const source of sources) {
        if (source.head && (!newest?.head || source.head.time > newest.head.time)) newest = source;
      }
      if (!newest?.head) break;
      const { line } = newest.head;
      if (!line) {
        outOfBudget = advance(newest) === 'budget';
        continue;
      }
      const { file } = newest;
      outOfBudget = advance(newest) === 'budget';
      if (levelOf(line) < minLevel || (run !== '*' && line.runId !== run)) continue;
      if (query.task && !concernsTask(line, query.task)) continue;
      entries.push(toEntry(line, file.replace(/\.jsonl$/, '')));
    }
    const next: Record<string, CursorPosition> = { ...cursor };
    for (const source of sources) next[source.file] = source.head ? [source.head.end, source.head.time] : [source.lines.resumeAt];
    const more = sources.some((source) => source.head !== undefined || !source.done);
    return { entries, next_cursor: more ? encodeCursor(next) : null };
  } finally {
    for (const source of sources) fs.closeSync(source.fd);
  }
}
