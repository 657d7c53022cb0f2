/**
 * How prompts grow with the repository and the run: a synthetic run of 100 tasks through the real
 * actors (moderator, techlead, ever-thinker) and the real gateway, git, store and tools, with a
 * scripted model. Prints ONE JSON line. Run with `node --import tsx bench/context.bench.ts`.
 *
 * The run is driven step by step here (clarify, plan, then per task: prepare the worktree,
 * implement, test, submit, review, merge; every tenth task is asked for changes once and revised;
 * one improvement cycle at the end), not through the orchestrator's chart or the CLI: the same
 * effects, without the chart's bookkeeping, so the figures are the prompts' own.
 *
 * The synthetic project: four pipeline areas (src/<area>/base.js and a test each); task i adds
 * src/<area>/m<i>.js (about 0.9 KB) and test/<area>/m<i>.test.js, following the area's base.js
 * it names. The scripted TechLead reads that file, writes the two new files and answers; the
 * revision reads its module, edits it and answers. So the repository grows by ~1.2 KB a task.
 *
 * Every request the model gets is counted by the scripted provider itself, with gpt-tokenizer's
 * o200k (services/llm/token-count.ts `countRequestTokens`: system prompt, every message, tool
 * definitions), the same way before and after the context manager.
 *
 * Goals (issue 13): prompt tokens of task 100 <= 1.2x task 10 (`growth`); total prompt tokens of
 * the run <= 0.25x the same run before the context manager (`totalVsBaseline`). The baseline is the
 * same harness run at BASELINE_COMMIT (`--baseline` runs it there again, in a temporary worktree
 * of this repository; otherwise the figure recorded below is printed beside it).
 *
 * Flags: `--tasks N` (default 100), `--no-tools` (the TechLead without tools, as with plain
 * JSON backends), `--baseline [commit]`, `--measure-only` (prints this checkout's figures only).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createActor, toPromise, type AnyActorLogic } from 'xstate';
import { moderatorActors } from '../actors/moderator.actors.ts';
import { mergeQueueActors } from '../actors/merge-queue.actors.ts';
import { techleadActors } from '../actors/techlead.actors.ts';
import { everThinkerActors } from '../actors/ever-thinker.actors.ts';
import { composeRun } from '../cli/compose-run.ts';
import { Reporter } from '../cli/reporter.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import type { ModelProvider, ModelReply, ModelRequest, ToolCall } from '../services/llm/provider.ts';
import { countRequestTokens } from '../services/llm/token-count.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath } from '../services/store/store.ts';

/** This branch's base, before the context manager: the figures `--baseline` measures there. */
const BASELINE_COMMIT = 'ab71d36';
/**
 * Measured with this harness at BASELINE_COMMIT (100 tasks; printed when `--baseline` is not given):
 * every implement turn and review re-sent the whole tree (up to 80 KB and 40 KB).
 */
const RECORDED_BASELINE = {
  tools: { commit: BASELINE_COMMIT, promptTokensTask10: 39_945, promptTokensTask100: 172_728, totalPromptTokens: 6_642_388, largestPrompt: 26_309 },
  json: { commit: BASELINE_COMMIT, promptTokensTask10: 17_243, promptTokensTask100: 71_323, totalPromptTokens: 2_869_655, largestPrompt: 24_894 },
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const AREAS = ['parse', 'format', 'store', 'route'] as const;

interface Args {
  tasks: number;
  tools: boolean;
  baseline: string | undefined;
  measureOnly: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { tasks: 100, tools: true, baseline: undefined, measureOnly: false };
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index];
    if (arg === '--tasks') args.tasks = Number(argv[++index]);
    else if (arg === '--no-tools') args.tools = false;
    else if (arg === '--measure-only') args.measureOnly = true;
    else if (arg === '--baseline') args.baseline = argv[index + 1] && !argv[index + 1]?.startsWith('--') ? String(argv[++index]) : BASELINE_COMMIT;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!Number.isInteger(args.tasks) || args.tasks < 10) throw new Error('--tasks: expected an integer of at least 10');
  return args;
}

// ---- the synthetic project ------------------------------------------------------------------

const fnName = (area: string, index: number) => `${area}M${index}`;
const areaOf = (index: number) => AREAS[index % AREAS.length] as string;

function baseModule(area: string): string {
  return [
    `/** The ${area} pipeline's shared helpers: every step module builds on these. */`,
    '',
    'export function normalise(input) {',
    "  if (input === undefined || input === null) return '';",
    "  return String(input).replace(/\\r\\n/g, '\\n').trim();",
    '}',
    '',
    'export function lines(text) {',
    "  return text === '' ? [] : text.split('\\n');",
    '}',
    '',
    `export const ${area}Options = { separator: ':', keepEmpty: false };`,
    '',
  ].join('\n');
}

function stepModule(area: string, index: number, revised = false): string {
  const fn = fnName(area, index);
  return [
    `import { lines, normalise, ${area}Options } from './base.js';`,
    '',
    `/** Step ${index} of the ${area} pipeline: tags every line with its position and the step number. */`,
    `export function ${fn}(input) {`,
    '  const text = normalise(input);',
    ...(revised ? ["  if (text === '') return '';"] : []),
    '  return lines(text)',
    `    .filter((line) => ${area}Options.keepEmpty || line.trim() !== '')`,
    `    .map((line, position) => [position, line, ${index}].join(${area}Options.separator))`,
    "    .join('\\n');",
    '}',
    '',
    `/** How many lines step ${index} keeps. */`,
    `export function ${fn}Count(input) {`,
    `  return lines(normalise(input)).filter((line) => ${area}Options.keepEmpty || line.trim() !== '').length;`,
    '}',
    '',
    `export const ${fn}Meta = { step: ${index}, area: '${area}', stable: ${index % 3 === 0} };`,
    '',
  ].join('\n');
}

function stepTest(area: string, index: number): string {
  const fn = fnName(area, index);
  return [
    "import { test } from 'node:test';",
    "import assert from 'node:assert/strict';",
    `import { ${fn}, ${fn}Count } from '../../src/${area}/m${index}.js';`,
    '',
    `test('${fn} tags lines', () => assert.equal(${fn}('a\\nb'), '0:a:${index}\\n1:b:${index}'));`,
    `test('${fn}Count counts kept lines', () => assert.equal(${fn}Count('a\\n\\nb'), 2));`,
    '',
  ].join('\n');
}

function createTarget(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    'package.json': `${JSON.stringify({ name: 'pipelines', version: '1.0.0', type: 'module', scripts: { test: 'node scripts/check.js' } }, null, 2)}\n`,
    'README.md': '# pipelines\n\nText pipelines in four areas (parse, format, store, route), one module per step.\n',
    'scripts/check.js': "console.log('ok');\n",
    'src/index.js': AREAS.map((area) => `export * as ${area} from './${area}/base.js';`).join('\n') + '\n',
  };
  for (const area of AREAS) {
    files[`src/${area}/base.js`] = baseModule(area);
    files[`test/${area}/base.test.js`] = `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { normalise } from '../../src/${area}/base.js';\n\ntest('normalise trims', () => assert.equal(normalise(' a '), 'a'));\n`;
  }
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), content);
  }
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@x', '-c', 'commit.gpgsign=false', ...args], { cwd: dir, stdio: 'pipe' });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'The four pipeline areas');
}

function planTasks(count: number) {
  return Array.from({ length: count }, (_, offset) => {
    const index = offset + 1;
    const area = areaOf(index);
    const fn = fnName(area, index);
    return {
      id: `T${index}`,
      title: `Add ${area} step ${index}`,
      type: 'feature',
      description: `Add src/${area}/m${index}.js exporting ${fn}(input) and ${fn}Count(input), built on the helpers of src/${area}/base.js, with a test in test/${area}/m${index}.test.js.`,
      acceptance_criteria: [`${fn}('a\\nb') tags each line with its position and ${index}`, `${fn}Count counts the kept lines`, `test/${area}/m${index}.test.js passes`],
      depends_on: [],
    };
  });
}

// ---- the scripted model -------------------------------------------------------------------------

interface Counted {
  agent: string;
  purpose: string;
  taskId: string | undefined;
  tokens: number;
}

/** What a model that does the synthetic tasks right would answer, from the request alone. */
class ScriptedModel implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted model (bench/context.bench.ts)';
  readonly counted: Counted[] = [];

  constructor(private readonly tasks: number) {}

  async complete(request: ModelRequest): Promise<ModelReply> {
    const tokens = countRequestTokens(request.system, request.messages, request.tools ?? []);
    this.counted.push({ agent: request.agent, purpose: request.purpose, taskId: request.taskId, tokens });
    const answer = this.answer(request);
    const text = typeof answer === 'string' ? answer : '';
    const toolCalls = typeof answer === 'string' ? [] : answer;
    return {
      text,
      toolCalls,
      stopReason: toolCalls.length > 0 ? 'tool_use' : 'end',
      model: 'scripted',
      usage: { inputTokens: tokens, outputTokens: Math.ceil((text.length + JSON.stringify(toolCalls).length) / 4), cacheReadTokens: 0, cacheWriteTokens: 0 },
      costUsd: 0,
      latencyMs: 0,
    };
  }

  private answer(request: ModelRequest): string | ToolCall[] {
    const index = Number(request.taskId?.slice(1) ?? 0);
    const area = areaOf(index);
    const turn = request.messages.filter((item) => item.role === 'tool').length;
    const tools = (request.tools ?? []).length > 0;
    const call = (name: string, input: unknown): ToolCall[] => [{ id: `${request.purpose}-${index}-${turn}`, name, input }];
    switch (request.purpose) {
      case 'clarify':
        return JSON.stringify({ summary: `Pipeline steps in four areas, ${this.tasks} of them.`, assumptions: ['plain ES modules, node:test'], questions: [] });
      case 'plan':
        return JSON.stringify({ tasks: planTasks(this.tasks) });
      case 'implement': {
        const module = { path: `src/${area}/m${index}.js`, content: stepModule(area, index) };
        const test = { path: `test/${area}/m${index}.test.js`, content: stepTest(area, index) };
        if (!tools) return JSON.stringify({ summary: `added ${fnName(area, index)}`, files: [module, test], delete: [] });
        if (turn === 0) return call('read_file', { path: `src/${area}/base.js` });
        if (turn === 1) return [{ id: `w1-${index}`, name: 'write_file', input: module }, { id: `w2-${index}`, name: 'write_file', input: test }];
        return JSON.stringify({ summary: `added ${fnName(area, index)} with its test`, files: [], delete: [] });
      }
      case 'revise': {
        const file = `src/${area}/m${index}.js`;
        if (!tools) return JSON.stringify({ summary: 'empty input returns an empty string', files: [{ path: file, content: stepModule(area, index, true) }], delete: [] });
        if (turn === 0) return call('read_file', { path: file });
        if (turn === 1) return call('edit_file', { path: file, old_text: '  const text = normalise(input);\n', new_text: "  const text = normalise(input);\n  if (text === '') return '';\n" });
        return JSON.stringify({ summary: 'empty input returns an empty string', files: [], delete: [] });
      }
      case 'review': {
        const firstRound = !request.messages.some((item) => item.role === 'user' && /review round [2-9]/.test(item.content));
        if (index % 10 === 0 && firstRound) {
          return JSON.stringify({ verdict: 'request_changes', summary: 'Empty input is not handled.', comments: [`${fnName(area, index)}('') must return '' before splitting`] });
        }
        return JSON.stringify({ verdict: 'approve', summary: 'The step and its test meet the criteria.', comments: [] });
      }
      case 'analyze':
        return JSON.stringify({ proposals: [] });
      default:
        throw new Error(`the scripted model has no answer for ${request.purpose}`);
    }
  }
}

// ---- the run ------------------------------------------------------------------------------------

async function run<T>(logic: AnyActorLogic, input?: unknown): Promise<T> {
  const actor = createActor(logic, input === undefined ? {} : { input });
  actor.start();
  return (await toPromise(actor)) as T;
}

interface Figures {
  tasks: number;
  tools: boolean;
  promptTokensTask10: number;
  promptTokensTask100: number;
  growth: number;
  totalPromptTokens: number;
  largestPrompt: number;
  maxContextTokens: number;
  calls: number;
  wallMs: number;
}

async function measure(args: Args): Promise<Figures> {
  const started = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-context-bench-'));
  const target = path.join(dir, 'pipelines');
  try {
    createTarget(target);
    const config = withBaseBranch(configSchema.parse({
      model: { provider: 'openai' },
      project: { name: 'pipelines', language: 'javascript', test_command: 'node scripts/check.js' },
      limits: { max_tokens_total: 1e12 },
      agents: { techlead: { sandbox: 'off' } },
    }), 'main');
    const store = Store.open(databasePath(target));
    const model = new ScriptedModel(args.tasks);
    try {
      store.runs.create({ id: 'bench', target, requirements: `Pipeline steps in four areas, ${args.tasks} of them.`, settings: { config, agents: {} }, snapshotVersion: 1, machineFingerprint: 'bench' });
      const { services } = composeRun({
        store, runId: 'bench', target, requirements: `Pipeline steps in four areas, ${args.tasks} of them.`, config, agents: {},
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir() }, provider: model, sandbox: UNSANDBOXED, reporter: new Reporter(() => {}),
      });
      if (!args.tools) services.toolsFor = undefined;
      const moderator = moderatorActors(services);
      const techlead = techleadActors(services);
      const everThinker = everThinkerActors(services);
      const mergeQueue = mergeQueueActors(services);
      await run(moderator.clarify);
      const { tasks } = await run<{ tasks: { id: string; type: string }[] }>(moderator.plan);
      for (const task of tasks) {
        const index = Number(task.id.slice(1));
        await run(techlead.prepareWorkspace, { taskId: task.id, taskType: task.type, attempt: 1, generation: 1 });
        for (let attempt = 1; ; attempt += 1) {
          const step = { taskId: task.id, taskType: task.type, attempt, generation: 1 };
          await run(attempt === 1 ? techlead.implement : techlead.revise, step);
          const tests = await run<{ passed: boolean }>(techlead.runTests, step);
          const { prNumber } = await run<{ prNumber: number }>(techlead.submit, { ...step, testsPassed: tests.passed });
          const review = await run<{ verdict: string }>(moderator.review, { taskId: task.id, prNumber, attempt, lastRound: attempt === 3 });
          if (review.verdict === 'approve') {
            // One task at a time: its branch was made from the current base, so there is nothing to update.
            await run(mergeQueue.merge, { taskId: task.id, prNumber, attempt });
            store.tasks.update('bench', task.id, { status: 'merged', attempts: attempt });
            break;
          }
          if (attempt === 3) throw new Error(`${task.id} was not approved (index ${index})`);
        }
      }
      await run(everThinker.analyze, { cycle: 1, minPriority: 3 });
    } finally {
      store.close();
    }
    const perTask = (id: string) => model.counted.filter((call) => call.taskId === id).reduce((sum, call) => sum + call.tokens, 0);
    const task10 = perTask('T10');
    const last = perTask(`T${args.tasks}`);
    return {
      tasks: args.tasks,
      tools: args.tools,
      promptTokensTask10: task10,
      promptTokensTask100: last,
      growth: Number((last / task10).toFixed(3)),
      totalPromptTokens: model.counted.reduce((sum, call) => sum + call.tokens, 0),
      largestPrompt: model.counted.reduce((largest, call) => Math.max(largest, call.tokens), 0),
      maxContextTokens: config.limits.max_context_tokens,
      calls: model.counted.length,
      wallMs: Math.round(performance.now() - started),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The same harness at another commit of this repository, in a temporary worktree that shares this node_modules. */
function measureAt(commit: string, args: Args): Figures {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-context-baseline-'));
  const worktree = path.join(dir, 'checkout');
  execFileSync('git', ['worktree', 'add', '--detach', '-q', worktree, commit], { cwd: root, stdio: 'pipe' });
  try {
    fs.symlinkSync(fs.realpathSync(path.join(root, 'node_modules')), path.join(worktree, 'node_modules'));
    fs.copyFileSync(fileURLToPath(import.meta.url), path.join(worktree, 'bench', 'context.bench.ts'));
    const flags = ['--measure-only', '--tasks', String(args.tasks), ...(args.tools ? [] : ['--no-tools'])];
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/context.bench.ts', ...flags], { cwd: worktree, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Figures;
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', worktree], { cwd: root, stdio: 'pipe' });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const args = parseArgs(process.argv.slice(2));
const figures = await measure(args);
if (args.measureOnly) {
  console.log(JSON.stringify(figures));
} else {
  // The recorded figures are of 100 tasks: another count is compared only with a baseline measured now.
  const recorded = args.tasks === 100 ? { ...RECORDED_BASELINE[args.tools ? 'tools' : 'json'], measured: 'recorded' } : undefined;
  const baseline = args.baseline ? { commit: args.baseline, ...measureAt(args.baseline, args), measured: 'now' } : recorded;
  console.log(JSON.stringify({
    bench: 'context',
    ...figures,
    growthGoal: 1.2,
    growthMet: figures.growth <= 1.2,
    baseline,
    totalVsBaseline: baseline ? Number((figures.totalPromptTokens / baseline.totalPromptTokens).toFixed(3)) : null,
    totalVsBaselineGoal: 0.25,
    totalVsBaselineMet: baseline ? figures.totalPromptTokens <= 0.25 * baseline.totalPromptTokens : null,
    largestPromptWithinContext: figures.largestPrompt <= figures.maxContextTokens,
  }));
}
