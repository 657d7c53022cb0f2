/**
 * Builds demos/todo-cli/session.json, the recorded model session that `npm run demo` replays.
 *
 * Sources (edit these, then rerun the script):
 *   - stages/<NN-task-purpose>/...  the full content of every file the techlead writes in one call
 *   - replies/<agent>/*.json        the other replies, and the techlead's intro/summary/delete
 *   - TIMELINE below                the calls in the order the run makes them
 *
 * Run: node --import tsx demos/todo-cli/build-session.ts
 * The output is deterministic: same sources, same bytes. test/demo-session.test.ts checks that
 * session.json is in sync with this generator.
 */
import { readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// The session format (moderator-session/1)

export type Agent = 'moderator' | 'techlead' | 'ever-thinker';
export type Purpose = 'clarify' | 'plan' | 'review' | 'implement' | 'revise' | 'analyze';

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

export interface SessionCall {
  purpose: Purpose;
  task?: string;
  model: string;
  reply: { text: string };
  usage: Usage;
  latency_ms: number;
}

export interface Session {
  format: 'moderator-session/1';
  title: string;
  requirements: string;
  project: { name: string; language: string; test_command: string };
  calls: { moderator: SessionCall[]; techlead: SessionCall[]; 'ever-thinker': SessionCall[] };
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// ---------------------------------------------------------------------------------------------
// The scenario

export const MODEL = 'claude-sonnet-4-5';

export const REQUIREMENTS =
  'Build a small TODO command-line app in Node.js (no dependencies): add, list, done and remove items, stored in a JSON file; with tests.';

/** What the prompt carries besides the fixed instructions; only used to size input_tokens. */
type ContextPart =
  | { kind: 'requirements' }
  | { kind: 'reply'; reply: string }
  | { kind: 'task'; task: string }
  | { kind: 'repo'; afterStage: string }
  | { kind: 'diff'; stage: string };

interface CallSpec {
  agent: Agent;
  purpose: Purpose;
  task?: string;
  /** Path under replies/. */
  reply: string;
  /** Techlead calls only: the folder under stages/ holding the files written. */
  stage?: string;
  context: ContextPart[];
}

const PLAN = 'moderator/plan.json';

/** Every call, in the order the run makes it. Each agent consumes its own calls in this order. */
const TIMELINE: CallSpec[] = [
  { agent: 'moderator', purpose: 'clarify', reply: 'moderator/clarify.json', context: [{ kind: 'requirements' }] },
  {
    agent: 'moderator',
    purpose: 'plan',
    reply: PLAN,
    context: [{ kind: 'requirements' }, { kind: 'reply', reply: 'moderator/clarify.json' }],
  },
  {
    agent: 'techlead',
    purpose: 'implement',
    task: 'T1',
    reply: 'techlead/implement-T1.json',
    stage: '01-T1-implement',
    context: [{ kind: 'requirements' }, { kind: 'task', task: 'T1' }],
  },
  {
    agent: 'moderator',
    purpose: 'review',
    task: 'T1',
    reply: 'moderator/review-T1.json',
    context: [{ kind: 'task', task: 'T1' }, { kind: 'diff', stage: '01-T1-implement' }],
  },
  {
    agent: 'techlead',
    purpose: 'implement',
    task: 'T2',
    reply: 'techlead/implement-T2.json',
    stage: '02-T2-implement',
    context: [{ kind: 'requirements' }, { kind: 'task', task: 'T2' }, { kind: 'repo', afterStage: '01-T1-implement' }],
  },
  {
    agent: 'moderator',
    purpose: 'review',
    task: 'T2',
    reply: 'moderator/review-T2-changes.json',
    context: [{ kind: 'task', task: 'T2' }, { kind: 'diff', stage: '02-T2-implement' }],
  },
  {
    agent: 'techlead',
    purpose: 'revise',
    task: 'T2',
    reply: 'techlead/revise-T2.json',
    stage: '03-T2-revise',
    context: [
      { kind: 'task', task: 'T2' },
      { kind: 'repo', afterStage: '02-T2-implement' },
      { kind: 'reply', reply: 'moderator/review-T2-changes.json' },
    ],
  },
  {
    agent: 'moderator',
    purpose: 'review',
    task: 'T2',
    reply: 'moderator/review-T2-approve.json',
    context: [
      { kind: 'task', task: 'T2' },
      { kind: 'reply', reply: 'moderator/review-T2-changes.json' },
      { kind: 'diff', stage: '03-T2-revise' },
    ],
  },
  {
    agent: 'techlead',
    purpose: 'implement',
    task: 'T3',
    reply: 'techlead/implement-T3.json',
    stage: '04-T3-implement',
    context: [{ kind: 'requirements' }, { kind: 'task', task: 'T3' }, { kind: 'repo', afterStage: '03-T2-revise' }],
  },
  {
    agent: 'moderator',
    purpose: 'review',
    task: 'T3',
    reply: 'moderator/review-T3.json',
    context: [{ kind: 'task', task: 'T3' }, { kind: 'diff', stage: '04-T3-implement' }],
  },
  {
    agent: 'ever-thinker',
    purpose: 'analyze',
    reply: 'ever-thinker/analyze-cycle-1.json',
    context: [{ kind: 'requirements' }, { kind: 'reply', reply: PLAN }, { kind: 'repo', afterStage: '04-T3-implement' }],
  },
  {
    agent: 'techlead',
    purpose: 'implement',
    task: 'T4',
    reply: 'techlead/implement-T4.json',
    stage: '05-T4-implement',
    context: [
      { kind: 'requirements' },
      { kind: 'reply', reply: 'ever-thinker/analyze-cycle-1.json' },
      { kind: 'repo', afterStage: '04-T3-implement' },
    ],
  },
  {
    agent: 'moderator',
    purpose: 'review',
    task: 'T4',
    reply: 'moderator/review-T4.json',
    context: [{ kind: 'reply', reply: 'ever-thinker/analyze-cycle-1.json' }, { kind: 'diff', stage: '05-T4-implement' }],
  },
  {
    agent: 'ever-thinker',
    purpose: 'analyze',
    reply: 'ever-thinker/analyze-cycle-2.json',
    context: [
      { kind: 'requirements' },
      { kind: 'reply', reply: PLAN },
      { kind: 'reply', reply: 'ever-thinker/analyze-cycle-1.json' },
      { kind: 'repo', afterStage: '05-T4-implement' },
    ],
  },
];

/** Tokens of the fixed part of each prompt: system prompt, role instructions, output schema. */
const BASE_PROMPT_TOKENS: Record<Purpose, number> = {
  clarify: 1450,
  plan: 1900,
  implement: 2650,
  revise: 2800,
  review: 2250,
  analyze: 2400,
};

// ---------------------------------------------------------------------------------------------
// Reading the sources

const HERE = fileURLToPath(new URL('.', import.meta.url));
const STAGES_DIR = join(HERE, 'stages');
const REPLIES_DIR = join(HERE, 'replies');
export const SESSION_PATH = join(HERE, 'session.json');

export interface StageFile {
  path: string;
  content: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isJsonValue(value: unknown): value is JsonValue {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isJsonValue);
  if (isRecord(value)) return Object.values(value).every(isJsonValue);
  return false;
}

function readJson(path: string): Record<string, unknown> {
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!isRecord(parsed)) throw new Error(`${path}: expected a JSON object`);
  return parsed;
}

function stringField(object: Record<string, unknown>, key: string, where: string): string {
  const value = object[key];
  if (typeof value !== 'string' || value === '') throw new Error(`${where}: "${key}" must be a non-empty string`);
  return value;
}

/** A reply file: { intro, reply } for the moderator and the ever-thinker. */
function readReply(name: string): { intro: string; body: JsonValue } {
  const where = `replies/${name}`;
  const file = readJson(join(REPLIES_DIR, name));
  const body = file['reply'];
  if (!isRecord(body) || !isJsonValue(body)) throw new Error(`${where}: "reply" must be a JSON object`);
  return { intro: stringField(file, 'intro', where), body };
}

/** A techlead reply file: { intro, summary, delete }; the files come from the stage folder. */
function readTechleadReply(name: string): { intro: string; summary: string; delete: string[] } {
  const where = `replies/${name}`;
  const file = readJson(join(REPLIES_DIR, name));
  const deleted = file['delete'];
  if (!Array.isArray(deleted) || !deleted.every((p): p is string => typeof p === 'string')) {
    throw new Error(`${where}: "delete" must be an array of paths`);
  }
  return { intro: stringField(file, 'intro', where), summary: stringField(file, 'summary', where), delete: deleted };
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Every file of a stage folder, with POSIX paths relative to it, sorted by path. */
export function readStage(stage: string): StageFile[] {
  const root = join(STAGES_DIR, stage);
  const files: StageFile[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) files.push({ path: relative(root, full).split(sep).join('/'), content: readFileSync(full, 'utf8') });
    }
  };
  walk(root);
  if (files.length === 0) throw new Error(`stages/${stage} is empty`);
  return files.sort((a, b) => compareStrings(a.path, b.path));
}

// ---------------------------------------------------------------------------------------------
// Assembling

/** What a model writes: one sentence, then the JSON in a fenced block. */
export function replyText(intro: string, body: JsonValue): string {
  return `${intro}\n\n\`\`\`json\n${JSON.stringify(body, null, 2)}\n\`\`\``;
}

function tokensOf(chars: number): number {
  return Math.ceil(chars / 4);
}

function latencyOf(usage: Usage): number {
  // Time to first token grows with the prompt; generation runs at about 65 tokens a second.
  return 650 + Math.round(usage.input_tokens / 8) + Math.round(usage.output_tokens * 15.5);
}

function planTask(plan: JsonValue, id: string): JsonValue {
  if (isRecord(plan) && Array.isArray(plan['tasks'])) {
    const task = plan['tasks'].find((t) => isRecord(t) && t['id'] === id);
    if (task !== undefined) return task;
  }
  throw new Error(`task ${id} is not in the plan`);
}

export function buildSession(): Session {
  const stageOrder = TIMELINE.flatMap((spec) => (spec.stage === undefined ? [] : [spec.stage]));
  const stageFiles = new Map(stageOrder.map((stage) => [stage, readStage(stage)]));
  const filesOf = (stage: string): StageFile[] => {
    const files = stageFiles.get(stage);
    if (files === undefined) throw new Error(`unknown stage ${stage}`);
    return files;
  };

  /** The repository after the stages up to and including `afterStage`, applied in order. */
  const repoAfter = (afterStage: string): StageFile[] => {
    const end = stageOrder.indexOf(afterStage);
    if (end === -1) throw new Error(`unknown stage ${afterStage}`);
    const repo = new Map<string, string>();
    for (const stage of stageOrder.slice(0, end + 1)) {
      for (const file of filesOf(stage)) repo.set(file.path, file.content);
    }
    return [...repo].map(([path, content]) => ({ path, content }));
  };

  const plan = readReply(PLAN).body;
  const contextChars = (part: ContextPart): number => {
    switch (part.kind) {
      case 'requirements':
        return REQUIREMENTS.length;
      case 'reply':
        return JSON.stringify(readReply(part.reply).body).length;
      case 'task':
        return JSON.stringify(planTask(plan, part.task)).length;
      case 'repo':
        return repoAfter(part.afterStage).reduce((sum, f) => sum + f.path.length + f.content.length, 0);
      case 'diff':
        return filesOf(part.stage).reduce((sum, f) => sum + f.path.length + f.content.length, 0);
    }
  };

  const calls: Session['calls'] = { moderator: [], techlead: [], 'ever-thinker': [] };
  for (const spec of TIMELINE) {
    let text: string;
    if (spec.agent === 'techlead') {
      if (spec.stage === undefined) throw new Error(`${spec.reply}: a techlead call needs a stage`);
      const meta = readTechleadReply(spec.reply);
      const body: JsonValue = {
        summary: meta.summary,
        files: filesOf(spec.stage).map((f) => ({ path: f.path, content: f.content })),
        delete: meta.delete,
      };
      text = replyText(meta.intro, body);
    } else {
      const { intro, body } = readReply(spec.reply);
      text = replyText(intro, body);
    }

    const context = spec.context.reduce((sum, part) => sum + contextChars(part), 0);
    const usage: Usage = {
      input_tokens: BASE_PROMPT_TOKENS[spec.purpose] + tokensOf(context),
      output_tokens: tokensOf(text.length),
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
    };
    const call: SessionCall = {
      purpose: spec.purpose,
      ...(spec.task === undefined ? {} : { task: spec.task }),
      model: MODEL,
      reply: { text },
      usage,
      latency_ms: latencyOf(usage),
    };
    calls[spec.agent].push(call);
  }

  return {
    format: 'moderator-session/1',
    title: 'TODO CLI',
    requirements: REQUIREMENTS,
    project: { name: 'todo-cli', language: 'javascript', test_command: 'node --test test/' },
    calls,
  };
}

/** The exact bytes of session.json. */
export function renderSession(session: Session = buildSession()): string {
  return `${JSON.stringify(session, null, 2)}\n`;
}

function isMain(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  writeFileSync(SESSION_PATH, renderSession());
  process.stdout.write(`wrote ${relative(process.cwd(), SESSION_PATH)}\n`);
}
