/**
 * Parallel TechLeads against the model's latency: eight independent tasks, every model answer
 * 500 ms late (a loopback OpenAI-compatible fake), run once with `limits.max_parallel_tasks: 1`
 * (one task at a time, as before) and once with 4 (and `agents.moderator.parallel_reviews: 4`).
 * Prints ONE JSON line. Run with `npm run bench:parallel` (it needs a current `npm run build`).
 *
 * - sequentialMs, parallelMs: the installed CLI, spawn to exit, the median of `runs` each.
 * - ratio: parallelMs / sequentialMs, against its goal (<= 0.35).
 * - floorMs: the model latency on the critical path of the parallel run if nothing else took
 *   time: clarify, plan, then two waves of implement and review (8 tasks, 4 at a time).
 * - maxConcurrentCalls: the most model requests the fake held at once in the parallel run.
 * - mergesPerRun, updatesPerRun: merges into main, and merge-queue updates of a branch whose base
 *   moved (each then re-tested), of the parallel run; every task's files are its own, so none
 *   conflicts. retestsTakenFromTrials: of those re-tests, how many a trial run ahead of the PR's
 *   turn had already passed on the same tree.
 * The target's tests are `node --test` over eight tiny files: the orchestration, git and the
 * merge queue's re-tests are what the figure measures besides the latency.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliAsync } from '../test/helpers/cli.ts';
import { median } from './stats.ts';
import { startFakeOpenAI } from '../test/fakes/openai-api.ts';
import { taskModel, type TaskModel } from '../test/fakes/task-model.ts';

const runs = Number(process.argv[2] ?? 3);
const TASKS = 8;
const LATENCY_MS = 500;
const GOAL = 0.35;

const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@x', ...args], { cwd, encoding: 'utf8' });

function model(): TaskModel {
  const ids = Array.from({ length: TASKS }, (_, index) => `T${index + 1}`);
  return taskModel({
    delayMs: LATENCY_MS,
    plan: ids.map((id, index) => ({ id, title: `module m${index + 1}` })),
    change: ({ taskId }) => {
      const n = taskId.slice(1);
      return {
        summary: `m${n} and its test`,
        files: [
          { path: `src/m${n}.js`, content: `export const m${n} = () => ${n};\n` },
          { path: `test/m${n}.test.js`, content: `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { m${n} } from '../src/m${n}.js';\n\ntest('m${n}', () => assert.equal(m${n}(), ${n}));\n` },
        ],
      };
    },
  });
}

function target(parallel: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-bench-parallel-${parallel}-`));
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: 'bench', version: '1.0.0', type: 'module', scripts: { test: 'node --test' } }, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'README.md'), '# bench\n');
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'init');
  const config = {
    project: { name: 'bench', language: 'javascript', test_command: 'node --test' },
    model: { provider: 'openai', max_retries: 0 },
    agents: { moderator: { parallel_reviews: parallel } },
    limits: { max_parallel_tasks: parallel, max_improvement_cycles: 0 },
  };
  fs.writeFileSync(path.join(dir, 'duo-agent.config.yaml'), `${JSON.stringify(config, null, 2)}\n`);
  return dir;
}

async function once(parallel: number): Promise<{ ms: number; maxConcurrentCalls: number; merges: number; updates: number; testedAhead: number }> {
  const fake = model();
  const server = await startFakeOpenAI(fake.script);
  const dir = target(parallel);
  try {
    const started = performance.now();
    const { code, stderr } = await cliAsync(['Eight independent modules, each with a test.', '--target', dir, '-y', '--json', '--port', '0'], {
      env: { OPENAI_API_KEY: 'sk-bench', OPENAI_BASE_URL: `${server.url}/v1` }, timeoutMs: 300_000,
    });
    const ms = performance.now() - started;
    if (code !== 0) throw new Error(`the run with max_parallel_tasks ${parallel} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const merges = git(dir, 'log', '--first-parent', '--merges', '--format=%s', 'main').split('\n').filter((line) => line.startsWith('Merge PR')).length;
    if (merges !== TASKS) throw new Error(`the run with max_parallel_tasks ${parallel} merged ${merges} of ${TASKS} tasks`);
    const updates = (stderr.match(/brought up to date with main/g) ?? []).length;
    const testedAhead = (stderr.match(/run ahead of its turn/g) ?? []).length;
    return { ms, maxConcurrentCalls: fake.maxInFlight(), merges, updates, testedAhead };
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sequential: number[] = [];
const parallel: number[] = [];
let last = { maxConcurrentCalls: 0, merges: 0, updates: 0, testedAhead: 0 };
for (let run = 0; run < runs; run += 1) {
  sequential.push((await once(1)).ms);
  const result = await once(4);
  parallel.push(result.ms);
  last = result;
}
const sequentialMs = median(sequential);
const parallelMs = median(parallel);
const ratio = Math.round((parallelMs / sequentialMs) * 1000) / 1000;
console.log(JSON.stringify({
  bench: 'parallel',
  tasks: TASKS,
  latencyMs: LATENCY_MS,
  runs,
  sequentialMs,
  parallelMs,
  ratio,
  goal: GOAL,
  met: ratio <= GOAL,
  floorMs: LATENCY_MS * (2 + 2 * 2),
  maxConcurrentCalls: last.maxConcurrentCalls,
  mergesPerRun: last.merges,
  updatesPerRun: last.updates,
  retestsTakenFromTrials: last.testedAhead,
  load: os.loadavg().map((value) => Math.round(value * 100) / 100),
}));
