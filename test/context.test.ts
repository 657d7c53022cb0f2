/**
 * The context manager's parts on their own: prompt counts (the provider's, the tokenizer's, the
 * estimate), the repository map kept by git, ranking and the sections cut to a budget, and the
 * zones of a conversation with their journal.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { countTokens as o200k } from 'gpt-tokenizer';
import { callKeys } from '../protocol/keys.ts';
import { contextSettings } from '../services/context/context-manager.ts';
import { outlineOf } from '../services/context/outline.ts';
import { namedPaths, rankFiles } from '../services/context/ranking.ts';
import { renderMap } from '../services/context/render-map.ts';
import { RepoMap } from '../services/context/repo-map.ts';
import { fitDiff, showFiles, tailWithin } from '../services/context/sections.ts';
import { PRUNED_INTRO, SUMMARY_MARK } from '../services/context/summaries.ts';
import { ConversationWindow, zoneOf } from '../services/context/window.ts';
import { configSchema } from '../config/index.ts';
import { GitService } from '../services/git/git-service.ts';
import { AnthropicProvider } from '../services/llm/anthropic-provider.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import { BudgetExhaustedError } from '../services/llm/model-error.ts';
import { OpenAIProvider } from '../services/llm/openai-provider.ts';
import { RecordingProvider } from '../services/llm/recording-provider.ts';
import type { ConversationItem, ModelProvider, ModelReply, ModelRequest } from '../services/llm/provider.ts';
import { PromptCounter, estimateTokens, type PromptCount } from '../services/llm/token-count.ts';
import { Store } from '../services/store/store.ts';
import { fakeTokenCount, startFakeAnthropic, step } from './fakes/anthropic-api.ts';
import { startFakeOpenAI } from './fakes/openai-api.ts';
import { ownConnection } from './helpers/database.ts';

for (const name of Object.keys(process.env)) {
  if (/^(ANTHROPIC|OPENAI)_/.test(name)) delete process.env[name];
}

function tempDir(t: ExecutionContext, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-context-${name}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function storeWithRun(file = ':memory:'): Store {
  const store = Store.open(file);
  store.runs.create({ id: 'r', target: '/t', requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  return store;
}

const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', '-c', 'commit.gpgsign=false', ...args], { cwd, encoding: 'utf8' });

function repository(t: ExecutionContext, files: Record<string, string>): { dir: string; service: GitService } {
  const dir = tempDir(t, 'repo');
  git(dir, 'init', '-q', '-b', 'main');
  write(dir, files);
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'start');
  return { dir, service: new GitService({ root: dir, identity: { name: 't', email: 't@x' }, baseBranch: 'main', env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir() } }) };
}

function write(dir: string, files: Record<string, string>): void {
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), content);
  }
}

// --- counting ----------------------------------------------------------------------------------

test('the estimate errs high against o200k on code and prose, and loads no tokenizer', (t) => {
  const samples = [
    fs.readFileSync(new URL('../actors/ask.ts', import.meta.url), 'utf8'),
    fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8'),
    fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    fs.readFileSync(new URL('../server/dashboard.html', import.meta.url), 'utf8'),
  ];
  for (const text of samples) {
    const ratio = estimateTokens(text) / o200k(text);
    t.true(ratio >= 0.95 && ratio <= 1.35, `estimate / o200k = ${ratio.toFixed(2)}`);
  }
  t.is(estimateTokens(''), 0);
});

test('a prompt is counted once per content: the provider counts it, or it is counted locally and labelled', async (t) => {
  let asked = 0;
  const counting = new PromptCounter({ countTokens: async () => ({ tokens: (asked += 1) * 1000, source: 'counted' }) });
  const request = { model: 'claude-sonnet-4-6', system: 's', messages: [{ role: 'user' as const, content: 'hello there' }] };
  t.deepEqual(await counting.count(request), { tokens: 1000, source: 'counted' });
  t.deepEqual(await counting.count({ ...request, messages: [{ role: 'user', content: 'hello there' }] }), { tokens: 1000, source: 'counted' }, 'the same content, counted once');
  t.is(asked, 1);

  const local = new PromptCounter({ countTokens: async () => undefined });
  t.is((await local.count({ ...request, model: 'gpt-5.4' })).source, 'counted', "o200k is OpenAI's own tokenizer");
  t.is((await local.count({ ...request, model: 'qwen2.5-coder:14b' })).source, 'estimated', 'no shipped tokenizer fits a local model');
  t.is((await new PromptCounter({}).count(request)).source, 'estimated');
});

test('anthropic: the count comes from POST /v1/messages/count_tokens with what the call sends, and the budget check uses it', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'ok' })], { countTokens: (body) => (JSON.stringify(body).includes('HUGE') ? 900_000 : fakeTokenCount(body)) });
  t.teardown(() => fake.close());
  const provider = new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0, timeoutMs: 60_000 });
  const store = storeWithRun();
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 100_000 } });
  const request: ModelRequest = {
    agent: 'techlead', purpose: 'implement', model: 'claude-sonnet-4-6', system: 'You implement.', temperature: 0, maxTokens: 1000,
    messages: [{ role: 'user', content: 'Implement it.' }], tools: [{ name: 'read_file', description: 'read', inputSchema: { type: 'object', properties: {} } }],
  };
  await gateway.call(callKeys.change('implement', 'T1', 1), request);
  const counted = fake.sideRequests[0]?.body as Record<string, unknown>;
  t.is(fake.sideRequests[0]?.path, '/v1/messages/count_tokens');
  t.like(counted, { model: 'claude-sonnet-4-6', messages: [{ role: 'user', content: [{ type: 'text', text: 'Implement it.' }] }] });
  t.deepEqual((counted.tools as { name: string }[]).map((tool) => tool.name), ['read_file'], 'the tools the call sends are counted too');
  t.false('max_tokens' in counted);
  const sent = store.calls.list('r')[0];
  t.is(sent?.promptTokens, fakeTokenCount(counted));

  const huge = { ...request, messages: [{ role: 'user' as const, content: 'HUGE' }] };
  const refused = await t.throwsAsync(gateway.call(callKeys.change('implement', 'T2', 1), huge), { instanceOf: BudgetExhaustedError });
  t.regex(refused?.message ?? '', /a prompt of 900000 tokens and max_tokens 1000/);
  t.is(fake.requests.length, 1, 'the refused call was never sent');
});

test('anthropic: an endpoint without count_tokens is said once and counted locally, as an estimate, from then on', async (t) => {
  const fake = await startFakeAnthropic([step.reply({ text: 'ok' })], { countTokens: 'absent' });
  t.teardown(() => fake.close());
  const notices: string[] = [];
  const provider = new AnthropicProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0, timeoutMs: 60_000, onNotice: (line) => notices.push(line) });
  const file = path.join(tempDir(t, 'store'), 'm.db');
  const store = storeWithRun(file);
  t.teardown(() => store.close());
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 100_000 } });
  const request = (content: string): ModelRequest => ({ agent: 'moderator', purpose: 'review', model: 'claude-sonnet-4-6', system: 's', temperature: 0, maxTokens: 100, messages: [{ role: 'user', content }] });
  await gateway.call(callKeys.review('T1', 1), request('first'));
  await gateway.call(callKeys.review('T2', 1), request('second'));
  t.is(fake.sideRequests.length, 1, 'asked once');
  t.is(notices.length, 1);
  t.regex(notices[0] ?? '', /does not count tokens \(count_tokens: 404\); prompts are counted locally from now on, as estimates/);
  t.deepEqual(store.calls.list('r').map((call) => call.promptTokens !== null), [true, true]);
  t.deepEqual(ownConnection(t, file).prepare('SELECT prompt_source FROM model_calls ORDER BY id').all(), [{ prompt_source: 'estimated' }, { prompt_source: 'estimated' }]);
});

test('recording a run keeps the provider\'s own count', async (t) => {
  const inner: ModelProvider = {
    name: 'inner', description: 'inner', countTokens: async () => ({ tokens: 4242, source: 'counted' }),
    complete: async () => ({ text: 'ok', model: 'm', usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }, costUsd: 0, latencyMs: 0 }),
  };
  const recording = new RecordingProvider({ inner, file: path.join(tempDir(t, 'recording'), 'session.json'), requirements: 'r' });
  t.deepEqual(await new PromptCounter(recording).count({ model: 'm', system: 's', messages: [{ role: 'user', content: 'hi' }] }), { tokens: 4242, source: 'counted' });
});

test('openai: prompts are counted with o200k, exact (counted) for OpenAI models and an estimate for a local one', async (t) => {
  const fake = await startFakeOpenAI([step.reply({ text: 'ok' })]);
  t.teardown(() => fake.close());
  const provider: ModelProvider = new OpenAIProvider({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0, timeoutMs: 60_000 });
  const file = path.join(tempDir(t, 'store'), 'm.db');
  const store = storeWithRun(file);
  t.teardown(() => store.close());
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 100_000 } });
  const request = (model: string): ModelRequest => ({ agent: 'moderator', purpose: 'review', model, system: 'You review.', temperature: 0, maxTokens: 100, messages: [{ role: 'user', content: 'Review the diff.' }] });
  await gateway.call(callKeys.review('T1', 1), request('gpt-5.4'));
  await gateway.call(callKeys.review('T2', 1), request('qwen2.5-coder:14b'));
  const rows = ownConnection(t, file).prepare('SELECT prompt_tokens, prompt_source FROM model_calls ORDER BY id').all() as { prompt_tokens: number; prompt_source: string }[];
  t.deepEqual(rows.map((row) => row.prompt_source), ['counted', 'estimated']);
  t.true(rows.every((row) => row.prompt_tokens > 0));
});

// --- the repository map -------------------------------------------------------------------------

test('declarations: TypeScript parser for JS and TS, a labelled line scan for Python, nothing for data', (t) => {
  t.deepEqual(outlineOf('src/a.ts', 'export interface Task { id: string }\nexport function run(task: Task, { dry, force }: Options = {}): void {}\nexport const make = (a: number) => a;\nclass Store { open() {} private hidden() {} }\nexport default Store;\n'), {
    declarations: ['interface Task', 'run(task, { dry, force })', 'make(a)', 'class Store { open }', 'export default'],
    parser: 'typescript',
  });
  t.deepEqual(outlineOf('lib/b.cjs', "const fs = require('fs');\nmodule.exports.load = function load(file) {};\nexports.save = () => {};\n").declarations, ['fs', 'load', 'save']);
  t.deepEqual(outlineOf('app/c.py', 'import os\n\nclass Invoice(Base):\n    def total(self):\n        pass\n\ndef parse(text, strict=False):\n    pass\n'), { declarations: ['class Invoice', 'parse(text, strict=False)'], parser: 'line-scan' });
  t.deepEqual(outlineOf('data.json', '{"a": 1}'), { declarations: [], parser: 'none' });
  t.notThrows(() => outlineOf('broken.js', 'function (( {'), 'a syntax error gives what could be read');
});

test('the map is built once from git and then updated from what changed: only changed files are read again', async (t) => {
  const files: Record<string, string> = {};
  for (let index = 0; index < 60; index += 1) files[`src/area${index % 3}/mod${index}.js`] = `export function mod${index}(input) {\n  return input + ${index};\n}\n`;
  files['assets/logo.png'] = '\u0089PNG\u0000\u0000binary';
  const { dir, service } = repository(t, files);
  const map = new RepoMap(service);
  const first = await map.at(dir);
  t.is(first.files.length, 61);
  t.deepEqual(first.byPath.get('src/area1/mod4.js')?.declarations, ['mod4(input)']);
  t.true(first.byPath.get('assets/logo.png')?.binary);
  t.like(map.stats, { listed: 1, updated: 0, read: 61 });
  t.is((await map.at(dir)).commit, first.commit, 'the same commit is not looked at again');

  write(dir, { 'src/area1/mod4.js': 'export class Mod4 { run() {} }\n', 'src/new.ts': 'export type Id = string;\n' });
  fs.rmSync(path.join(dir, 'src/area2/mod5.js'));
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'change three files');
  const second = await map.at(dir);
  t.like(map.stats, { listed: 1, updated: 1, read: 63 }, 'two files read, none of the 58 unchanged ones');
  t.is(second.files.length, 61);
  t.deepEqual(second.byPath.get('src/area1/mod4.js')?.declarations, ['class Mod4 { run }']);
  t.deepEqual(second.byPath.get('src/new.ts')?.declarations, ['type Id']);
  t.false(second.byPath.has('src/area2/mod5.js'));
  t.is(second.byPath.get('src/new.ts')?.size, Buffer.byteLength('export type Id = string;\n'));
});

test('an uncommitted edit is outlined as it is on disk but not remembered as the committed blob', async (t) => {
  const { dir, service } = repository(t, { 'a.js': 'export function a() {}\n' });
  write(dir, { 'a.js': 'export function edited() {}\n' });
  const map = new RepoMap(service);
  t.deepEqual((await map.at(dir)).byPath.get('a.js')?.declarations, ['edited()']);
  fs.writeFileSync(path.join(dir, 'a.js'), 'export function a() {}\n');
  // A second map of the same commit in a fresh map reads the committed content again.
  t.deepEqual((await new RepoMap(service).at(dir)).byPath.get('a.js')?.declarations, ['a()']);
});

test('ranking: files the task names first, then the rare words it shares, ties by depth and path', async (t) => {
  const files: Record<string, string> = {
    'src/billing/invoice.js': 'export function parseInvoice(text) {}\nexport function totalOf(invoice) {}\n',
    'src/billing/tax.js': 'export function taxRate(country) {}\n',
    'src/users/profile.js': 'export function loadProfile(id) {}\n',
    'src/users/avatar.js': 'export function resize(image) {}\n',
    'README.md': '# shop\n',
  };
  const { dir, service } = repository(t, files);
  const snapshot = await new RepoMap(service).at(dir);
  const text = 'Fix the invoice total: totalOf in src/billing/invoice.js ignores the tax rate.';
  const named = namedPaths(text, snapshot.files);
  t.deepEqual(named, ['src/billing/invoice.js']);
  const ranked = rankFiles(snapshot.files, { text, named, touched: ['src/users/avatar.js'] });
  t.deepEqual(ranked.map((entry) => [entry.file.path, entry.why]), [
    ['src/billing/invoice.js', 'named'],
    ['src/users/avatar.js', 'touched'],
    ['src/billing/tax.js', 'relevant'],
    ['README.md', 'other'],
    ['src/users/profile.js', 'other'],
  ]);
  t.deepEqual(namedPaths('see tax.js and invoice.json', snapshot.files), ['src/billing/tax.js'], 'a file name, as a whole word');
});

test('a map of 1,000 files stays within its budget, the relevant files listed with declarations, the rest counted per folder', async (t) => {
  const files: Record<string, string> = {};
  for (let index = 0; index < 1000; index += 1) files[`src/area${String(index % 10).padStart(2, '0')}/file${index}.js`] = `export function step${index}(input) {\n  return input;\n}\n`;
  const { dir, service } = repository(t, files);
  const snapshot = await new RepoMap(service).at(dir);
  const ranked = rankFiles(snapshot.files, { text: 'make step417 and step418 return a copy', named: [], touched: [] });
  const map = renderMap(snapshot, ranked, 800, 'Repository map');
  t.true(map.tokens <= 800, `${map.tokens} tokens`);
  t.true(estimateTokens(map.text) <= 800 + map.text.split('\n').length);
  t.true(map.listed > 20 && map.listed < 1000);
  t.regex(map.text, /^Repository map: 1000 files, /);
  t.regex(map.text, /file417\.js 0\.0 KB: step417\(input\)/);
  t.regex(map.text, /file418\.js 0\.0 KB: step418\(input\)/);
  t.regex(map.text, /^Not listed: \d+ files, [\d.]+ KB, in src\/area00\/ \(\d+, /m);
  t.is(renderMap(snapshot, ranked, 800, 'Repository map').text, map.text, 'the same inputs give the same text');
});

test('sections: files whole while they fit, a named file cut with where to read on, a diff by file, a test run by its end', (t) => {
  const long = Array.from({ length: 400 }, (_, index) => `line ${index} of the long file`).join('\n');
  const shown = showFiles([
    { path: 'a.js', content: 'export const a = 1;\n', cut: true },
    { path: 'long.js', content: long, cut: true },
    { path: 'other.js', content: long, cut: false },
  ], 1500, 'read_file {path} from line {line} for the rest');
  t.deepEqual(shown.shown, ['a.js', 'long.js']);
  t.deepEqual(shown.left, ['other.js']);
  t.regex(shown.text, /--- long\.js \(lines 1-\d+ of 400\)/);
  t.regex(shown.text, /--- cut at line \d+: read_file long\.js from line \d+ for the rest/);
  t.true(shown.tokens <= 1500);

  const diff = ['a', 'b', 'c'].map((name) => `diff --git a/${name}.js b/${name}.js\n--- a/${name}.js\n+++ b/${name}.js\n@@ -1 +1,200 @@\n${Array.from({ length: name === 'a' ? 5 : 200 }, (_, index) => `+${name} ${index}`).join('\n')}\n`).join('');
  const fitted = fitDiff(diff, 600);
  t.like(fitted, { files: 3, whole: 1 });
  t.regex(fitted.text, /diff --git a\/b\.js b\/b\.js\n\[the diff of this file is left out for size: \+200 -0 lines\]/);
  t.true(fitted.tokens <= 600);

  const output = `${Array.from({ length: 500 }, (_, index) => `ok ${index}`).join('\n')}\nnot ok 501 - the failing test\n`;
  const tail = tailWithin(output, 100);
  t.regex(tail, /^\[\d+ earlier lines left out\]\n/);
  t.regex(tail, /not ok 501 - the failing test$/);
});

test('settings: the opening prompt takes at most 40% of the context, the map at most half of it', (t) => {
  t.like(contextSettings(configSchema.parse({})), { maxContextTokens: 100_000, promptTokens: 8000, mapTokens: 1000, keepTurns: 3 });
  t.like(contextSettings(configSchema.parse({ limits: { max_context_tokens: 10_000 }, context: { map_tokens: 5000 } })), { promptTokens: 4000, mapTokens: 2000 });
});

// --- zones ---------------------------------------------------------------------------------------

/** Counts a conversation by its characters (a stand-in for a provider's count, deterministic). */
const byLength = async (items: ConversationItem[]): Promise<PromptCount> => ({ tokens: Math.ceil(JSON.stringify(items).length / 4), source: 'counted' });

/** A window of limit 1000 and the turns a tool loop adds to it, each result about `size` tokens. */
function toolTurn(window: ConversationWindow, turn: number, size: number): void {
  window.push({ role: 'assistant', content: `reading part ${turn}`, toolCalls: [{ id: `c${turn}`, name: 'read_file', input: { path: `src/part${turn}.js` } }] });
  window.push({ role: 'tool', results: [{ id: `c${turn}`, content: `export const part${turn} = ${JSON.stringify('x'.repeat(size * 4 - 40))};\n` }] });
}

test('zones: summarised at 70%, pruned at 85%, stopped at 95%, each journaled once with one alert, and a new window rebuilds the same turns', async (t) => {
  const store = storeWithRun();
  const window = () => new ConversationWindow({ store, runId: 'r', limit: 1000, keepTurns: 1, label: 'techlead implement T1', count: byLength }, 'Task T1: do it.');
  const turns: { zone: string; items: ConversationItem[] }[] = [];
  const live = window();
  const key = (turn: number) => callKeys.turn(callKeys.change('implement', 'T1', 1), turn);
  for (let turn = 1; turn <= 3; turn += 1) {
    const fitted = await live.fit(key(turn));
    turns.push({ zone: fitted.zone, items: structuredClone(fitted.items) });
    toolTurn(live, turn, 220);
  }
  t.deepEqual(turns.map((turn) => turn.zone), ['ok', 'ok', 'ok']);
  const summarised = await live.fit(key(4));
  t.is(summarised.zone, 'summarise');
  const results = summarised.items.filter((item) => item.role === 'tool').map((item) => (item.role === 'tool' ? item.results[0]?.content ?? '' : ''));
  t.true(results.slice(0, 2).every((content) => content.startsWith(`${SUMMARY_MARK} read_file src/part`)), 'the old results are summarised');
  t.false(results[2]?.startsWith(SUMMARY_MARK), 'the last turn is kept whole');
  turns.push({ zone: summarised.zone, items: structuredClone(summarised.items) });
  t.true((summarised.count?.tokens ?? 1000) < 700);

  toolTurn(live, 4, 700);
  const pruned = await live.fit(key(5));
  t.is(pruned.zone, 'prune');
  t.is(pruned.items.length, 4, 'the task, a summary and the last turn');
  t.regex(pruned.items[1]?.role === 'user' ? pruned.items[1].content : '', new RegExp(`^${PRUNED_INTRO.replace(/[[\]().]/g, '\\$&')}\\n- you called read_file src/part1\\.js`));
  t.true((pruned.count?.tokens ?? 1000) < 850);
  turns.push({ zone: pruned.zone, items: structuredClone(pruned.items) });

  live.push({ role: 'assistant', content: 'two more', toolCalls: [{ id: 'c5', name: 'read_file', input: { path: 'big.js' } }] });
  live.push({ role: 'tool', results: [{ id: 'c5', content: 'y'.repeat(4000) }] });
  const stopped = await t.throwsAsync(live.fit(key(6)));
  t.is((stopped as { code?: string }).code, 'context_full');
  t.regex(stopped?.message ?? '', /techlead implement T1: the conversation needs \d+ tokens, \d+% of limits\.max_context_tokens \(1000\), even pruned to the task and its last turn/);

  const alerts = store.alerts.list('r');
  t.deepEqual(alerts.map((alert) => [alert.kind, alert.level]), [['context', 'warning'], ['context', 'warning'], ['context', 'critical']]);
  t.regex(alerts[0]?.message ?? '', /reached (7\d|8[0-4])% of limits\.max_context_tokens \(1000\): old tool results summarised/);
  t.regex(alerts[1]?.message ?? '', /pruned to the task, a summary and the recent turns/);

  // A resumed step: a new window over the same journal, fed the same turns, sends what the first one sent.
  let counted = 0;
  const resumed = new ConversationWindow({ store, runId: 'r', limit: 1000, keepTurns: 1, label: 'techlead implement T1', count: async (items) => ((counted += 1), byLength(items)) }, 'Task T1: do it.');
  for (let turn = 1; turn <= 5; turn += 1) {
    const fitted = await resumed.fit(key(turn));
    t.deepEqual({ zone: fitted.zone, items: fitted.items }, turns[turn - 1], `turn ${turn} as before`);
    if (turn <= 4) toolTurn(resumed, turn, turn === 4 ? 700 : 220);
  }
  resumed.push({ role: 'assistant', content: 'two more', toolCalls: [{ id: 'c5', name: 'read_file', input: { path: 'big.js' } }] });
  resumed.push({ role: 'tool', results: [{ id: 'c5', content: 'y'.repeat(4000) }] });
  await t.throwsAsync(resumed.fit(key(6)), { message: /the step stopped/ });
  t.is(store.alerts.list('r').length, 3, 'no alert twice');
  t.is(counted, 3, 'only the turns with no journaled decision and no journaled reply are counted again (turns 1-3 here: nothing was sent in this test)');
});

test('zoneOf: the shares of the limit', (t) => {
  t.deepEqual([0, 699, 700, 849, 850, 949, 950, 2000].map((tokens) => zoneOf(tokens, 1000)), ['ok', 'ok', 'summarise', 'summarise', 'prune', 'prune', 'stop', 'stop']);
});
