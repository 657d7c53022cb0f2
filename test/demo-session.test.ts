/**
 * The recorded demo session (demos/todo-cli/session.json): in sync with its generator, every
 * reply in the documented shape, and the program it builds really works, stage by stage.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { z } from 'zod';
import { SESSION_PATH, buildSession, renderSession, type Session, type SessionCall } from '../demos/todo-cli/build-session.ts';

// ---------------------------------------------------------------------------------------------
// Reply parsing, as the moderator's model layer does it

/**
 * The first ```json fenced block, or the whole text if it is bare JSON. The closing fence must
 * start a line: file contents inside the JSON (the README) contain ``` in their strings, but
 * JSON strings never contain a raw newline, so a fence at the start of a line is always the end.
 */
function extractJson(text: string): unknown {
  const match = /^```json[ \t]*\r?\n([\s\S]*?)\r?\n```[ \t]*$/m.exec(text);
  return JSON.parse(match?.[1] ?? text);
}

const text = z.string().min(1);
const Clarify = z.strictObject({ summary: text, assumptions: z.array(text), questions: z.array(text) });
const TaskType = z.enum(['feature', 'fix', 'docs', 'test', 'refactor', 'perf', 'chore']);
const Plan = z.strictObject({
  tasks: z
    .array(
      z.strictObject({
        id: z.string().regex(/^T\d+$/),
        title: text,
        type: TaskType,
        description: text,
        acceptance_criteria: z.array(text).min(1),
        depends_on: z.array(z.string().regex(/^T\d+$/)),
      }),
    )
    .min(1),
});
const Review = z.strictObject({ verdict: z.enum(['approve', 'request_changes']), summary: text, comments: z.array(text) });
const RepoPath = z
  .string()
  .min(1)
  .refine((p) => !isAbsolute(p) && !normalize(p).startsWith('..') && !p.includes('\\'), 'a relative POSIX path inside the repo');
const Change = z.strictObject({
  summary: text,
  files: z.array(z.strictObject({ path: RepoPath, content: z.string() })).min(1),
  delete: z.array(RepoPath),
});
const Score = z.int().min(1).max(5);
const Analyze = z.strictObject({
  proposals: z.array(
    z.strictObject({
      title: text,
      angle: z.enum(['performance', 'code_quality', 'ux', 'testing', 'documentation', 'architecture']),
      description: text,
      acceptance_criteria: z.array(text).min(1),
      impact: Score,
      effort: Score,
      risk: Score,
    }),
  ),
});
type Proposal = z.infer<typeof Analyze>['proposals'][number];

const MIN_PRIORITY = 3;
const priority = (p: Proposal): number => p.impact * 2 - p.effort - p.risk;

function loadSession(): Session {
  // Trusted: the first test checks that it deep-equals buildSession(), which is typed.
  return JSON.parse(readFileSync(SESSION_PATH, 'utf8')) as Session;
}

function shapeOf(call: SessionCall): string {
  return call.task === undefined ? call.purpose : `${call.purpose} ${call.task}`;
}

// ---------------------------------------------------------------------------------------------
// The session file

test('session.json is in sync with demos/todo-cli/build-session.ts', (t) => {
  const onDisk = readFileSync(SESSION_PATH, 'utf8');
  const built = buildSession();
  t.deepEqual(JSON.parse(onDisk), built, 'rerun: node --import tsx demos/todo-cli/build-session.ts');
  t.is(onDisk, renderSession(built), 'same bytes as the generator writes');
  t.deepEqual(buildSession(), built, 'deterministic');
});

test('header and the calls each agent consumes, in order', (t) => {
  const session = loadSession();
  t.is(session.format, 'moderator-session/1');
  t.is(session.title, 'TODO CLI');
  t.deepEqual(session.project, { name: 'todo-cli', language: 'javascript', test_command: 'node --test test/' });
  t.deepEqual(Object.keys(session.calls), ['moderator', 'techlead', 'ever-thinker']);
  t.deepEqual(session.calls.moderator.map(shapeOf), [
    'clarify',
    'plan',
    'review T1',
    'review T2',
    'review T2',
    'review T3',
    'review T4',
  ]);
  t.deepEqual(session.calls.techlead.map(shapeOf), ['implement T1', 'implement T2', 'revise T2', 'implement T3', 'implement T4']);
  t.deepEqual(session.calls['ever-thinker'].map(shapeOf), ['analyze', 'analyze']);

  for (const call of Object.values(session.calls).flat()) {
    t.is(call.model, 'claude-sonnet-4-5');
    t.regex(call.reply.text, /^[^\n`]+\n\n```json\n/, `${shapeOf(call)}: one sentence, then the fenced JSON`);
    const { input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens } = call.usage;
    t.true(Number.isInteger(input_tokens) && input_tokens >= 1000 && input_tokens <= 10_000, `${shapeOf(call)}: ${input_tokens}`);
    t.is(output_tokens, Math.ceil(call.reply.text.length / 4));
    t.is(cache_read_input_tokens, 0);
    t.is(cache_creation_input_tokens, 0);
    t.true(Number.isInteger(call.latency_ms) && call.latency_ms > 1000);
  }
});

test('every reply parses into the documented shape for its purpose', (t) => {
  const session = loadSession();
  const parse = (call: SessionCall): unknown => extractJson(call.reply.text);
  const [clarify, plan, ...reviews] = session.calls.moderator;
  if (clarify === undefined || plan === undefined) throw new Error('missing calls');

  const clarified = Clarify.parse(parse(clarify));
  t.true(clarified.assumptions.length >= 2 && clarified.assumptions.length <= 3);

  const planned = Plan.parse(parse(plan));
  t.deepEqual(
    planned.tasks.map((task) => [task.id, task.type, task.title, task.depends_on]),
    [
      ['T1', 'feature', 'Todo store module', []],
      ['T2', 'feature', 'CLI commands', ['T1']],
      ['T3', 'docs', 'README with usage', ['T2']],
    ],
  );

  t.deepEqual(
    reviews.map((call) => Review.parse(parse(call)).verdict),
    ['approve', 'request_changes', 'approve', 'approve', 'approve'],
  );
  const changes = Review.parse(parse(reviews[1] as SessionCall));
  t.true(changes.comments.some((c) => c.includes('no todo with id 99')));

  for (const call of session.calls.techlead) {
    const change = Change.parse(parse(call));
    t.is(new Set(change.files.map((f) => f.path)).size, change.files.length, `${shapeOf(call)}: each path once`);
  }

  const [cycle1, cycle2] = session.calls['ever-thinker'].map((call) => Analyze.parse(parse(call)).proposals);
  if (cycle1 === undefined || cycle2 === undefined) throw new Error('missing analyses');
  const above1 = cycle1.filter((p) => priority(p) >= MIN_PRIORITY);
  t.is(above1.length, 1, 'cycle 1: exactly one proposal at or above min_priority');
  t.like(above1[0], { title: 'Handle a corrupted todo file', angle: 'code_quality' });
  t.true(cycle2.length > 0);
  t.deepEqual(cycle2.filter((p) => priority(p) >= MIN_PRIORITY), [], 'cycle 2: nothing worth doing, the run ends');
});

// ---------------------------------------------------------------------------------------------
// The program the session builds

/** The environment of ava's worker minus what would leak into the child: tsx, the test runner's context. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['NODE_OPTIONS', 'NODE_TEST_CONTEXT', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'TODO_FILE']) {
    delete env[key];
  }
  return { ...env, ...extra };
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function node(cwd: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Result {
  const result = spawnSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('the stages, applied in order to an empty repo, each pass `node --test test/`', (t) => {
  const session = loadSession();
  const repo = mkdtempSync(join(tmpdir(), 'demo-todo-cli-'));
  const data = mkdtempSync(join(tmpdir(), 'demo-todo-data-'));
  t.teardown(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
  });
  const todoFile = join(data, 'todos.json');
  const todo = (...args: string[]): Result => node(repo, ['bin/todo.js', ...args], cleanEnv({ TODO_FILE: todoFile }));
  const fresh = (content?: string): void => {
    rmSync(todoFile, { force: true });
    if (content !== undefined) writeFileSync(todoFile, content);
  };

  for (const call of session.calls.techlead) {
    const step = shapeOf(call);
    const change = Change.parse(extractJson(call.reply.text));
    for (const file of change.files) {
      mkdirSync(dirname(join(repo, file.path)), { recursive: true });
      writeFileSync(join(repo, file.path), file.content);
    }
    for (const path of change.delete) rmSync(join(repo, path), { force: true });

    const run = node(repo, ['--test', 'test/']);
    t.is(run.code, 0, `${step}: node --test test/ failed\n${run.stdout}\n${run.stderr}`);
    t.regex(run.stdout, /^# fail 0$/m, step);
    t.notRegex(run.stdout, /^# pass 0$/m, `${step}: some tests ran`);

    switch (step) {
      case 'implement T1': {
        const pkg = z
          .object({ name: z.literal('todo-cli'), type: z.literal('module'), bin: z.object({ todo: z.literal('bin/todo.js') }) })
          .parse(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')));
        t.false('dependencies' in pkg || 'devDependencies' in pkg, 'no dependencies');
        break;
      }
      case 'implement T2': {
        // The flaw the first review catches: unknown ids silently succeed, and the tests still pass.
        fresh();
        t.is(todo('add', 'buy milk').code, 0);
        t.deepEqual(todo('done', '99'), { code: 0, stdout: 'done 99\n', stderr: '' });
        t.deepEqual(todo('rm', '99'), { code: 0, stdout: 'removed 99\n', stderr: '' });
        t.is(todo('frobnicate').code, 2);
        break;
      }
      case 'revise T2': {
        fresh();
        t.is(todo('add', 'buy milk').code, 0);
        t.deepEqual(todo('done', '99'), { code: 1, stdout: '', stderr: 'todo: no todo with id 99\n' });
        t.deepEqual(todo('rm', '99'), { code: 1, stdout: '', stderr: 'todo: no todo with id 99\n' });
        t.deepEqual(todo('done', '1'), { code: 0, stdout: 'done 1: buy milk\n', stderr: '' });
        break;
      }
      case 'implement T3': {
        // What the ever-thinker notices: a corrupted file still crashes with a stack trace.
        fresh('{"nextId": 2, "todos": [');
        const crash = todo('list');
        t.is(crash.code, 1);
        t.regex(crash.stderr, /SyntaxError/);
        t.regex(crash.stderr, /\n\s+at /);
        break;
      }
      case 'implement T4': {
        const corrupted = '{\n  "nextId": 2,\n  "todos": [\n';
        fresh(corrupted);
        for (const args of [['list'], ['add', 'x'], ['done', '1'], ['rm', '1']]) {
          const result = todo(...args);
          t.is(result.code, 1, args.join(' '));
          t.is(result.stdout, '');
          t.is(result.stderr, `todo: todo file ${todoFile} is not valid JSON: Unexpected end of JSON input\n`);
        }
        t.is(readFileSync(todoFile, 'utf8'), corrupted, 'left untouched');
        fresh('{\n  "nextId": 2,\n  oops\n}\n');
        const multiLine = todo('list');
        t.is(multiLine.code, 1);
        t.regex(multiLine.stderr, /^todo: todo file .+ is not valid JSON: [^\n]+\n$/);
        t.notRegex(multiLine.stderr, /\n\s+at /);
        break;
      }
      default:
        t.fail(`unexpected techlead call ${step}`);
    }
  }

  // The final program end to end.
  fresh();
  t.deepEqual(todo('add', 'buy', 'milk'), { code: 0, stdout: 'added 1: buy milk\n', stderr: '' });
  t.is(todo('add', 'walk the dog').code, 0);
  t.is(todo('done', '1').code, 0);
  t.deepEqual(todo('list'), { code: 0, stdout: '[x] 1. buy milk\n[ ] 2. walk the dog\n', stderr: '' });
  t.is(todo('help').code, 0);
  t.is(todo('done', 'abc').code, 2);
});
