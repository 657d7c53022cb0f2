/**
 * Whole runs of the real CLI against a loopback OpenAI-compatible server that answers the way small
 * and local models do. Repairable flaws end `done`; the rest end with an explicit outcome and a
 * message naming the problem, never a stack trace, a lost commit or a PR closed with passing tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { cliAsync, git, newTarget, parseSummary, removeTargets, withDb } from './helpers/cli.ts';
import { startFakeOpenAI, step, type FakeServer, type FakeStep } from './fakes/openai-api.ts';
import { weakModel, type ReplyDefaults, type WeakModel } from './fakes/weak-model.ts';

test.after(() => removeTargets());

const REQUIREMENTS = 'Add a greet module: greet(name) returns "Hello, <name>!", with a test.';

const files = {
  package: JSON.stringify({ name: 'greet', version: '1.0.0', type: 'module', scripts: { test: 'node --test' } }, null, 2),
  module: 'export function greet(name) {\n  return `Hello, ${name}!`;\n}\n',
  test: "import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { greet } from '../greet.js';\n\ntest('greets', () => assert.equal(greet('Ada'), 'Hello, Ada!'));\n",
};

/** What a small local model answers, slips included; each line's comment says which slip. */
function sloppyAnswers(): Parameters<typeof weakModel>[0] {
  return {
    // A reasoning block, then a fence in capitals.
    clarify: ['<think>The user wants a greet function. Simple.</think>\n```JSON\n{"summary": "A greet module with a test.", "assumptions": ["ES modules"], "questions": []}\n```'],
    // Prose before bare JSON, trailing commas, an enum in the wrong case, one string for a list.
    plan: ['Sure! Here is the plan:\n{"tasks": [{"id": "T1", "title": "greet module", "type": "Feature", "description": "greet(name) with a test", "acceptance_criteria": "greet(\'Ada\') returns Hello, Ada!",},],}'],
    implement: [
      // A tool call written as text (the server does not parse tool calls).
      `<tool_call>\n${JSON.stringify({ name: 'write_file', arguments: { path: 'package.json', content: files.package } })}\n</tool_call>`,
      // A native tool call whose arguments have a trailing comma.
      step.reply({ toolCalls: [{ name: 'write_file', input: {}, rawArguments: `${JSON.stringify({ path: 'greet.js', content: files.module }).slice(0, -1)},}` }] }),
      // The final answer, with the test file, in a one-line fence.
      `Done. \`\`\`json ${JSON.stringify({ summary: 'greet(name) with a node:test test', files: [{ path: 'test/greet.test.js', content: files.test }] })}\`\`\``,
    ],
    review: [
      // Cut off at max_tokens: asked again, saying so.
      step.reply({ text: '{"verdict": "approve", "summary": "The module', stopReason: 'length' }),
      // Single quotes, a synonym for the verdict, a comment.
      "{'verdict': 'approved', 'summary': 'greet returns the greeting and is tested', // ok\n 'comments': []}",
    ],
    analyze: ['{"proposals": []}'],
  };
}

interface Repo {
  target: string;
  branch: string;
}

/** A repository on `master` with one commit, and an untracked duo-agent.config.yaml. */
function masterRepo(name: string, config: Record<string, unknown>): Repo {
  const target = newTarget(name);
  fs.mkdirSync(target, { recursive: true });
  const run = (...args: string[]) => git(target, '-c', 'user.name=u', '-c', 'user.email=u@x', ...args);
  run('init', '-q', '-b', 'master');
  fs.writeFileSync(path.join(target, 'README.md'), '# greet\n');
  run('add', 'README.md');
  run('commit', '-q', '-m', 'init');
  fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), `${JSON.stringify(config, null, 2)}\n`);
  return { target, branch: 'master' };
}

const baseConfig = {
  project: { name: 'greet', language: 'javascript' },
  model: { provider: 'openai', max_retries: 1 },
  agents: { techlead: { max_tool_turns: 6 }, monitor: { check_interval_seconds: 1 } },
  limits: { max_improvement_cycles: 1 },
};

async function weakServer(t: { teardown(fn: () => Promise<void>): void }, model: WeakModel, structured: 'accept' | 'refuse-json-schema' | 'refuse-all' = 'refuse-json-schema'): Promise<FakeServer<FakeStep>> {
  const fake = await startFakeOpenAI(model.script, { structured });
  t.teardown(() => fake.close());
  return fake;
}

/** The CLI with the OpenAI base URL given only through OPENAI_BASE_URL, as a local-model user sets it. */
function run(args: string[], fake: FakeServer<FakeStep>, extra: Record<string, string> = {}) {
  return cliAsync([...args, '--json', '--port', '0'], { env: { OPENAI_API_KEY: 'sk-local', OPENAI_BASE_URL: `${fake.url}/v1`, ...extra }, timeoutMs: 150_000 });
}

const noUsage: ReplyDefaults = { usage: 'none' };

test('a sloppy local model on a master repository: every repairable slip is mended and the run ends done', async (t) => {
  const model = weakModel(sloppyAnswers(), noUsage);
  const fake = await weakServer(t, model);
  const repo = masterRepo('weak-done', baseConfig);
  const result = await run([REQUIREMENTS, '--target', repo.target, '-y'], fake);
  t.is(result.code, 0, result.stderr);
  const summary = parseSummary(result.stdout);
  t.is(summary.outcome, 'done');
  t.is(summary.tasksCompleted, 1);
  // OPENAI_BASE_URL reached the SDK: every call went to the fake (none would leave this machine).
  t.true(fake.requests.length >= 8);
  // The base branch is the one checked out; the untracked settings file did not count as dirty.
  t.regex(result.stderr, /\(base branch master\)/);
  t.is(git(repo.target, 'show', 'master:greet.js'), files.module.trimEnd());
  t.regex(git(repo.target, 'log', '--format=%s', 'master'), /Merge PR #1/);
  // Usage never came: tokens were counted, labelled, and the budget saw them.
  t.true(summary.tokensUsed > 500, `tokens counted: ${summary.tokensUsed}`);
  t.is(result.stderr.match(/sends no token usage for gpt-5\.4/g)?.length, 1, 'the warning is said once');
  t.regex(result.stderr, /\(counted: no usage from the server\)/);
  // Structured output: json_schema refused once, json_object from then on, said once.
  t.is(result.stderr.match(/refused response_format json_schema/g)?.length, 1);
  t.is(result.stderr.match(/writes tool calls as text/g)?.length, 1);
  t.regex(result.stderr, /tests: `npm test` \(detected from package\.json scripts\.test/);
  t.regex(result.stderr, /review T1: reply unusable \(the reply was cut off at its token limit .*agents\.moderator\.max_tokens/);
  t.is(model.seen.review.length, 2);
  t.false(/\n\s+at .+:\d+:\d+/.test(result.stderr), 'no stack trace');
});

test('a review that stays unreadable keeps the PR open for a person (needs_human); retry then finishes the run done', async (t) => {
  const answers = { ...sloppyAnswers(), review: ['I looked at it and it seems fine to me.'] };
  const model = weakModel(answers, noUsage);
  const fake = await weakServer(t, model, 'accept');
  const repo = masterRepo('weak-held', baseConfig);
  const first = await run([REQUIREMENTS, '--target', repo.target, '-y'], fake);
  t.is(first.code, 5, first.stderr);
  const summary = parseSummary(first.stdout);
  t.is(summary.outcome, 'needs_human');
  t.regex(first.stderr, /no usable verdict from the model; PR #1 stays open for a person/);
  t.is(model.seen.review.length, 3, 'asked, then asked again reply_retries (2) times');
  const held = withDb(repo.target, (db) => ({
    task: db.prepare(`SELECT status FROM tasks WHERE id = 'T1'`).get() as { status: string },
    pr: db.prepare('SELECT status FROM pull_requests WHERE number = 1').get() as { status: string },
  }));
  t.deepEqual(held, { task: { status: 'held' }, pr: { status: 'open' } });
  t.is(git(repo.target, 'show', 'duo-agent/feature/T1:greet.js'), files.module.trimEnd(), 'the work is on its branch');

  model.answer('review', [JSON.stringify({ verdict: 'approve', summary: 'greet works and is tested', comments: [] })]);
  const implementCalls = model.seen.implement.length;
  const retried = await run(['retry', summary.runId, '--target', repo.target], fake);
  t.is(retried.code, 0, retried.stderr);
  t.is(parseSummary(retried.stdout).outcome, 'done');
  t.regex(retried.stderr, /retry of run \S+: T1 \(review, attempt 2\)/);
  t.is(model.seen.implement.length, implementCalls, 'a held task is reviewed again, not implemented again');
  t.is(git(repo.target, 'show', 'master:greet.js'), files.module.trimEnd());
  const journal = withDb(repo.target, (db) => db.prepare(`SELECT COUNT(*) AS n FROM messages WHERE type = 'run.retry'`).get() as { n: number });
  t.is(journal.n, 1, 'the retry is journaled');
});

test('a server that sends no usage still stops at the token budget: counted tokens never pass max_tokens_total', async (t) => {
  const model = weakModel(sloppyAnswers(), noUsage);
  const fake = await weakServer(t, model);
  const repo = masterRepo('weak-budget', { ...baseConfig, agents: { ...baseConfig.agents, moderator: { max_tokens: 600 }, techlead: { max_tokens: 1200, max_tool_turns: 6 }, ever_thinker: { max_tokens: 600 } }, limits: { max_tokens_total: 5000 } });
  const result = await run([REQUIREMENTS, '--target', repo.target, '-y'], fake);
  t.is(result.code, 3, result.stderr);
  const summary = parseSummary(result.stdout);
  t.is(summary.outcome, 'budget_exhausted');
  t.true(summary.tokensUsed > 0 && summary.tokensUsed <= 5000, `tokens used ${summary.tokensUsed} of 5000`);
});

test('a test command that cannot start is the environment, not the code: the run stops needs_human naming the setting, no review billed', async (t) => {
  const model = weakModel(sloppyAnswers(), noUsage);
  const fake = await weakServer(t, model);
  const repo = masterRepo('weak-env', { ...baseConfig, project: { ...baseConfig.project, test_command: 'no-such-test-runner --all' } });
  const result = await run([REQUIREMENTS, '--target', repo.target, '-y'], fake);
  t.is(result.code, 5, result.stderr);
  const summary = parseSummary(result.stdout);
  t.is(summary.outcome, 'needs_human');
  t.regex(summary.reason ?? '', /`no-such-test-runner --all` could not run .*command not found: no-such-test-runner.*set project\.test_command/);
  t.regex(result.stderr, /\| command not found: no-such-test-runner/);
  t.is(model.seen.review.length, 0, 'no review round was spent on it');
  t.is(git(repo.target, 'show', 'duo-agent/feature/T1:greet.js'), files.module.trimEnd(), 'the commit is kept');
});

test('a replay is refused on a repository it was not recorded on, and on other requirements', async (t) => {
  const session = path.resolve('demos/todo-cli/session.json');
  const { requirements } = JSON.parse(fs.readFileSync(session, 'utf8')) as { requirements: string };
  const repo = masterRepo('weak-replay', {});
  fs.rmSync(path.join(repo.target, 'duo-agent.config.yaml'));
  const foreign = await cliAsync([requirements, '--target', repo.target, '-y', '--provider', 'replay', '--replay', session, '--port', '0']);
  t.is(foreign.code, 2);
  t.regex(foreign.stderr, /^moderator: the recording session\.json was made on an empty repository and this one has files; replaying it would overwrite them/);
  t.is(foreign.stderr.trim().split('\n').length, 1);
  t.is(git(repo.target, 'status', '--porcelain'), '', 'nothing was written');
  const other = await cliAsync(['Build a web shop', '--target', newTarget('weak-replay-other'), '-y', '--provider', 'replay', '--replay', session, '--port', '0']);
  t.is(other.code, 2);
  t.regex(other.stderr, /was made for other requirements/);
});

test('an answer that changes nothing is never committed: asked again, then the task fails; retry with a real change finishes it', async (t) => {
  const answers = { ...sloppyAnswers(), implement: ['```json\n{"summary": "The module already exists.", "files": []}\n```'], review: [JSON.stringify({ verdict: 'approve', summary: 'fine', comments: [] })] };
  const model = weakModel(answers, noUsage);
  const fake = await weakServer(t, model, 'accept');
  const repo = masterRepo('weak-nochange', { ...baseConfig, model: { ...baseConfig.model, reply_retries: 1 } });
  const first = await run([REQUIREMENTS, '--target', repo.target, '-y'], fake);
  t.is(first.code, 5, first.stderr);
  t.regex(first.stderr, /T1: the change left the repository unchanged; asking again/);
  t.regex(parseSummary(first.stdout).reason ?? '', /T1 failed/);
  t.regex(first.stderr, /left the repository unchanged after 2 tries; nothing was committed/);
  t.is(model.seen.implement.length, 2);
  const nochange = model.seen.implement[1]?.body as { messages: { role: string; content: string }[] };
  t.regex(nochange.messages[1]?.content ?? '', /left the repository exactly as it was/);
  t.is(git(repo.target, 'rev-list', '--count', 'master..duo-agent/feature/T1'), '0', 'no empty commit was made');

  model.answer('implement', sloppyAnswers().implement ?? []);
  const retried = await run(['retry', parseSummary(first.stdout).runId, '--target', repo.target, '--task', 'T1'], fake);
  t.is(retried.code, 0, retried.stderr);
  t.regex(retried.stderr, /T1 \(implement, attempt 2\)/);
  t.is(git(repo.target, 'show', 'master:greet.js'), files.module.trimEnd());
});
