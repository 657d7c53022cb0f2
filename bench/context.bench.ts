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
 * The synthetic project and the scripted model are bench/pipelines.ts's: task i adds a step module
 * and its test (~1.2 KB), the scripted TechLead reads the area's base.js and writes them.
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
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath } from '../services/store/store.ts';
import { ScriptedModel, createTarget } from './pipelines.ts';

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
    fs.copyFileSync(path.join(root, 'bench', 'pipelines.ts'), path.join(worktree, 'bench', 'pipelines.ts'));
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
