/**
 * What the agents are shown, through the real actors, gateway, git, store and tools on a synthetic
 * repository of 1,000 files: the TechLead's map and files with and without tools, the review's
 * diff, criteria and test summary, the Ever-Thinker's map, capped titles and signals.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createActor, toPromise, type AnyActorLogic } from 'xstate';
import { everThinkerActors } from '../actors/ever-thinker.actors.ts';
import { moderatorActors } from '../actors/moderator.actors.ts';
import { techleadActors } from '../actors/techlead.actors.ts';
import { worktreePath } from '../actors/run-services.ts';
import { composeRun } from '../cli/compose-run.ts';
import { Reporter } from '../cli/reporter.ts';
import { configSchema, withBaseBranch } from '../config/index.ts';
import type { ModelProvider, ModelReply, ModelRequest, ToolCall } from '../services/llm/provider.ts';
import { estimateTokens } from '../services/llm/token-count.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath } from '../services/store/store.ts';
import { commitFiles } from './helpers/repository.ts';

for (const name of Object.keys(process.env)) {
  if (/^(ANTHROPIC|OPENAI|DUO_AGENT)_/.test(name)) delete process.env[name];
}

const PROMPT_TOKENS = 3000;

function tempDir(t: ExecutionContext, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-context-prompts-${name}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** 1,000 modules in 25 folders, each ~0.5 KB with two declarations, and a test command that passes. */
function createTarget(dir: string): void {
  const files: Record<string, string> = {
    'package.json': `${JSON.stringify({ name: 'big', version: '1.0.0', type: 'module', scripts: { test: 'node check.js' } })}\n`,
    'check.js': "console.log('ok');\n",
  };
  for (let index = 0; index < 1000; index += 1) {
    const folder = `src/area${String(index % 25).padStart(2, '0')}`;
    files[`${folder}/unit${index}.js`] = `/** Unit ${index}: part of ${folder}. */\nexport function unit${index}Value(input) {\n  return [input, ${index}].join(':').padEnd(${40 + (index % 7)}, '.');\n}\n\nexport const unit${index}Meta = { index: ${index}, folder: '${folder}', stable: ${index % 2 === 0} };\n${'// filler line so a whole file is worth leaving out\n'.repeat(6)}`;
  }
  commitFiles(dir, files, 'a thousand units');
}

/** Answers the steps of the tasks below from the request alone, and keeps every request. */
class Scripted implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted (test/context-prompts.test.ts)';
  readonly requests: ModelRequest[] = [];

  async complete(request: ModelRequest): Promise<ModelReply> {
    this.requests.push(structuredClone({ ...request, signal: undefined }));
    const index = Number(request.taskId?.slice(1) ?? 0);
    const file = `src/area${String(index % 25).padStart(2, '0')}/unit${index}.js`;
    const reply = (text: string, toolCalls: ToolCall[] = []): ModelReply => ({
      text, toolCalls, stopReason: toolCalls.length > 0 ? 'tool_use' : 'end', model: 'scripted',
      usage: { inputTokens: estimateTokens(JSON.stringify(request.messages)), outputTokens: 10, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0, latencyMs: 0,
    });
    const changed = `export function unit${index}Value(input) {\n  return String(input ?? '');\n}\n`;
    switch (request.purpose) {
      case 'implement':
        if ((request.tools ?? []).length === 0) return reply(JSON.stringify({ summary: 'simplified', files: [{ path: file, content: changed }], delete: [] }));
        if (!request.messages.some((item) => item.role === 'tool')) return reply('', [{ id: `w${index}`, name: 'write_file', input: { path: file, content: changed } }]);
        return reply(JSON.stringify({ summary: 'simplified', files: [], delete: [] }));
      case 'review':
        return reply(JSON.stringify({ verdict: 'approve', summary: 'fine', comments: [] }));
      case 'analyze':
        return reply(JSON.stringify({ proposals: [] }));
      default:
        throw new Error(`no answer for ${request.purpose}`);
    }
  }
}

async function run<T>(logic: AnyActorLogic, input?: unknown): Promise<T> {
  const actor = createActor(logic, input === undefined ? {} : { input });
  actor.start();
  return (await toPromise(actor)) as T;
}

function setUp(t: ExecutionContext) {
  const target = path.join(tempDir(t, 'run'), 'big');
  fs.mkdirSync(target);
  createTarget(target);
  const config = withBaseBranch(configSchema.parse({
    model: { provider: 'openai' },
    project: { name: 'big', language: 'javascript', test_command: 'node check.js' },
    limits: { max_tokens_total: 1e9, max_context_tokens: 20_000 },
    context: { prompt_tokens: PROMPT_TOKENS, map_tokens: 1200 },
    agents: { techlead: { sandbox: 'off' } },
  }), 'main');
  const store = Store.open(databasePath(target));
  t.teardown(() => store.close());
  const model = new Scripted();
  store.runs.create({ id: 'r', target, requirements: 'Units that say what they hold.', settings: { config, agents: {} }, snapshotVersion: 1, machineFingerprint: 'f' });
  const { services } = composeRun({
    store, runId: 'r', target, requirements: 'Units that say what they hold.', config, agents: {},
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir() }, provider: model, sandbox: UNSANDBOXED, reporter: new Reporter(() => {}),
  });
  return { store, model, services, target };
}

const task = (index: number, extra = '') => ({
  id: `T${index}`,
  title: `Simplify unit ${index}`,
  type: 'refactor',
  description: `Make unit${index}Value in src/area${String(index % 25).padStart(2, '0')}/unit${index}.js return its input as a string.${extra}`,
  acceptanceCriteria: [`unit${index}Value(1) is "1"`, 'the tests pass'],
  dependsOn: [],
  origin: 'plan' as const,
});

const text = (request: ModelRequest | undefined) => (request?.messages[0]?.role === 'user' ? request.messages[0].content : '');

test('the TechLead sees the map and the file its task names, within context.prompt_tokens; without tools the relevant files too; the review sees the diff, criteria and tests, not the tree', async (t) => {
  const { store, model, services } = setUp(t);
  store.tasks.add('r', [task(417), task(418, ' Like unit417Value, it must not pad.')]);
  const techlead = techleadActors(services);
  const moderator = moderatorActors(services);

  await run(techlead.prepareWorkspace, { taskId: 'T417', taskType: 'refactor', attempt: 1 });
  await run(techlead.implement, { taskId: 'T417', taskType: 'refactor', attempt: 1 });
  const withTools = text(model.requests[0]);
  t.true((model.requests[0]?.tools ?? []).length > 0, 'the TechLead has tools here');
  t.regex(withTools, /^Repository map at [0-9a-f]{8}: 1002 files, /m);
  t.regex(withTools, /unit417\.js [\d.]+ KB: unit417Value\(input\), unit417Meta/, 'the named file is in the map with its declarations');
  t.regex(withTools, /^Not listed: \d+ files, /m, 'the rest are counted, not listed');
  t.regex(withTools, /--- src\/area17\/unit417\.js\n\/\*\* Unit 417/, 'the file the task names is shown');
  t.notRegex(withTools, /--- src\/area\d+\/unit(?!417\.js)\d+\.js\n/, 'no other file is shown whole: the tools read them');
  t.regex(withTools, /Read any file with read_file/);
  t.true(estimateTokens(withTools) <= PROMPT_TOKENS + 50, `${estimateTokens(withTools)} tokens`);

  const tests = await run<{ passed: boolean }>(techlead.runTests, { taskId: 'T417', taskType: 'refactor', attempt: 1 });
  const { prNumber } = await run<{ prNumber: number }>(techlead.submit, { taskId: 'T417', taskType: 'refactor', attempt: 1, testsPassed: tests.passed });
  await run(moderator.review, { taskId: 'T417', prNumber, attempt: 1, lastRound: false });
  const review = text(model.requests.find((request) => request.purpose === 'review'));
  t.regex(review, /unit417Value\(1\) is "1"/, 'the criteria');
  t.regex(review, /The TechLead ran `node check\.js`: passed\./, 'the test summary');
  t.regex(review, /Diff against main \(1 file\):\ndiff --git a\/src\/area17\/unit417\.js b\/src\/area17\/unit417\.js/, 'the diff');
  t.notRegex(review, /Files on the branch|Repository map|unit418/, 'not the tree');

  // Without tools (a plain JSON backend) the model sees only the prompt: the relevant files are in it.
  services.toolsFor = undefined;
  await run(techlead.prepareWorkspace, { taskId: 'T418', taskType: 'refactor', attempt: 1 });
  await run(techlead.implement, { taskId: 'T418', taskType: 'refactor', attempt: 1 });
  const implement = model.requests.filter((request) => request.purpose === 'implement').at(-1);
  t.deepEqual(implement?.tools ?? [], []);
  const withoutTools = text(implement);
  t.regex(withoutTools, /Only the files below are shown in full/);
  t.regex(withoutTools, /--- src\/area18\/unit418\.js\n/, 'the named file');
  t.regex(withoutTools, /--- src\/area17\/unit417\.js\n/, 'a file its words point to (unit417Value), ranked in');
  t.true(estimateTokens(withoutTools) <= PROMPT_TOKENS + 50, `${estimateTokens(withoutTools)} tokens`);
  t.is(fs.readFileSync(path.join(worktreePath(services, 'T418'), 'src/area18/unit418.js'), 'utf8'), "export function unit418Value(input) {\n  return String(input ?? '');\n}\n");
});

test('the Ever-Thinker sees the requirements, the latest merged titles (capped), what was measured and the map: not every task ever planned', async (t) => {
  const { store, model, services } = setUp(t);
  const tasks = Array.from({ length: 120 }, (_, offset) => task(offset + 1));
  store.tasks.add('r', tasks);
  for (const planned of tasks.slice(0, 100)) store.tasks.update('r', planned.id, { status: 'merged', attempts: planned.id === 'T7' ? 2 : 1 });
  store.tasks.update('r', 'T101', { status: 'failed', attempts: 1 });
  await run(everThinkerActors(services).analyze, { cycle: 1, minPriority: 3 });
  const prompt = text(model.requests.find((request) => request.purpose === 'analyze'));
  t.regex(prompt, /^Requirements:\nUnits that say what they hold\.$/m);
  t.regex(prompt, /^Merged so far: 100 tasks \(the latest 30; 70 earlier\):\n- T100 Simplify unit 100\n- T99 /m);
  t.is(prompt.match(/^- T\d+ Simplify unit \d+$/gm)?.length, 30, 'thirty merged titles');
  t.regex(prompt, /^- T101 Simplify unit 101: failed$/m);
  t.notRegex(prompt, /T120/, 'tasks still pending are not listed');
  t.regex(prompt, /^- tasks: 100 merged, 0 rejected, 1 failed, 0 held, 0 skipped; 1 merged after more than one review round \(T7\)$/m);
  t.regex(prompt, /^- source files: 1001, test files: 0, /m);
  t.regex(prompt, /^Repository map of main at [0-9a-f]{8}: 1002 files, /m);
  t.true(estimateTokens(prompt) <= PROMPT_TOKENS + 100, `${estimateTokens(prompt)} tokens`);
});
