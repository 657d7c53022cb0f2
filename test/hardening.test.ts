/**
 * Bad input refused up front (issue 9, item 10): each gets exit 2 and one line naming the input
 * and what is expected. Timer settings beyond a day, project commands that need a shell, input
 * files that are not regular files or are over their cap, a target that is not a folder, and run
 * rows corrupted in the database. Also what "unknown run" says when the database lost its WAL, and
 * that a test run or tool call cut short by an abort is not journaled as its result (item 1).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import Database from 'better-sqlite3';
import { ask } from '../actors/ask.ts';
import { replies } from '../actors/replies.ts';
import type { RunServices } from '../actors/run-services.ts';
import { techleadActors } from '../actors/techlead.actors.ts';
import { machineFingerprint, snapshotVersion } from '../cli/fingerprint.ts';
import {
  ConfigError, InputFileError, SETTINGS_FILE_CAP, configSchema, loadConfig, readInputFile, withBaseBranch,
} from '../config/index.ts';
import type { TaskStepInput } from '../machines/techlead.machine.ts';
import { callKeys } from '../protocol/keys.ts';
import { ModelGateway } from '../services/llm/gateway.ts';
import type { ModelProvider } from '../services/llm/provider.ts';
import { AgentLogs } from '../services/logger.ts';
import { UNSANDBOXED } from '../services/sandbox/sandbox.ts';
import { Store, databasePath, stateDir } from '../services/store/store.ts';
import { createWorktreeTools } from '../services/tools/worktree-tools.ts';
import { cliSync, demoSessionFile, readDemoSession } from './helpers/cli.ts';
import { contextFor } from './helpers/context.ts';

// Every run starts a monitoring server, and test files run side by side.
const port0 = { DUO_AGENT_MONITOR_PORT: '0' };

function cli(args: string[], env: Record<string, string> = {}) {
  return cliSync(args, { timeoutMs: 60_000, env: { ...port0, ...env } });
}

function tempDir(t: ExecutionContext, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moderator-hardening-${name}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Exit 2 and exactly one non-empty stderr line, `moderator: ...`, matching `pattern`; returns that line. */
function refused(t: ExecutionContext, result: { code: number | null; stderr: string }, pattern: RegExp, label = ''): string {
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  t.is(result.code, 2, `${label} exit status; stderr: ${result.stderr}`);
  t.is(lines.length, 1, `${label} one line, got: ${result.stderr}`);
  t.regex(lines[0] ?? '', /^moderator: /, label);
  t.regex(lines[0] ?? '', pattern, label);
  return lines[0] ?? '';
}

/** The settings a run of the demo stores, with `project` over them. */
function storedSettings(project: Record<string, unknown> = {}) {
  const config = withBaseBranch(configSchema.parse({ model: { provider: 'replay', replay_file: demoSessionFile }, project }), 'main');
  return { config, agents: {} };
}

/**
 * A target whose database holds runs as an interrupted demo leaves them (no process holds them),
 * written through the real Store; `project` goes into each run's stored settings.
 */
function targetWithRuns(t: ExecutionContext, ids: string[], project: Record<string, unknown> = {}): string {
  const target = path.join(tempDir(t, 'runs'), 'todo');
  fs.mkdirSync(target, { recursive: true });
  const store = Store.open(databasePath(target));
  try {
    for (const id of ids) {
      store.runs.create({ id, target, requirements: readDemoSession().requirements, settings: storedSettings(project), snapshotVersion, machineFingerprint: machineFingerprint() });
      store.runs.release(id, 'interrupted');
    }
  } finally {
    store.close();
  }
  return target;
}

function sql(target: string, statement: string, ...params: unknown[]): void {
  const db = new Database(databasePath(target));
  try {
    db.prepare(statement).run(...params);
  } finally {
    db.close();
  }
}

test('timer settings beyond a day are refused naming the field and the range', (t) => {
  const target = tempDir(t, 'timers');
  fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), 'project:\n  test_timeout_seconds: 9999999999\n');
  refused(t, cli(['Build a TODO CLI', '--target', target, '-y']), /duo-agent\.config\.yaml: project\.test_timeout_seconds: expected an integer between 1 and 86400, found 9999999999$/);
  fs.rmSync(path.join(target, 'duo-agent.config.yaml'));
  refused(t, cli([readDemoSession().requirements, '--target', path.join(target, 'todo'), '-y', '--provider', 'replay', '--replay', demoSessionFile, '--replay-delay-ms', '9999999999']), /--replay-delay-ms: expected an integer between 0 and 86400000, found 9999999999$/);

  // The other fields that become timers, through the loader: a day is the most, and accepted.
  const fields: [section: string, field: string, dayValue: number][] = [
    ['model', 'timeout_seconds', 86_400],
    ['agents.techlead', 'command_timeout_seconds', 86_400],
    ['agents.monitor', 'check_interval_seconds', 86_400],
    ['git', 'rate_limit_wait_seconds', 86_400],
    ['git', 'write_spacing_ms', 86_400_000],
    ['git', 'notification_spacing_ms', 86_400_000],
  ];
  const yamlFor = (section: string, field: string, value: number) => {
    const [outer, inner] = section.split('.');
    return inner ? `${outer}:\n  ${inner}:\n    ${field}: ${value}\n` : `${outer}:\n  ${field}: ${value}\n`;
  };
  for (const [section, field, dayValue] of fields) {
    fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), yamlFor(section, field, 9_999_999_999));
    const error = t.throws(() => loadConfig({ target, env: {}, cwd: target }), { instanceOf: ConfigError });
    t.regex(error?.message ?? '', new RegExp(`^duo-agent\\.config\\.yaml: ${section.replace('.', '\\.')}\\.${field}: expected .*(86400|a day).*, found 9999999999$`), field);
    fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), yamlFor(section, field, dayValue));
    t.notThrows(() => loadConfig({ target, env: {}, cwd: target }), `${field}: ${dayValue} is allowed`);
  }
});

test('a test_command or setup_command that needs a shell is refused before the run starts or resumes, naming the setting', (t) => {
  const cases: [setting: 'test_command' | 'setup_command', command: string, pattern: RegExp][] = [
    ['test_command', 'node --test test/ | tee test.log', /project\.test_command: the command "node --test test\/ \| tee test\.log" uses "\|", which needs a shell/],
    ['test_command', 'npm ci && npm test', /project\.test_command: the command "npm ci && npm test" uses "&&", which needs a shell/],
    ['setup_command', 'node $(which setup.js)', /project\.setup_command: the command "node \$\(which setup\.js\)" uses "\$\(\.\.\.\)", which needs a shell/],
  ];
  for (const [setting, command, pattern] of cases) {
    const folder = tempDir(t, 'shell');
    const target = path.join(folder, 'todo');
    fs.writeFileSync(path.join(folder, 'settings.yaml'), `project:\n  ${setting}: ${JSON.stringify(command)}\n`);
    const line = refused(t, cli([readDemoSession().requirements, '--target', target, '-y', '--provider', 'replay', '--replay', demoSessionFile, '--config', path.join(folder, 'settings.yaml')]), pattern, command);
    t.regex(line, /put it in a script/);
    t.false(fs.existsSync(target), `${command}: nothing was created`);
  }
  // A run stored before this check (or by hand) is refused at --resume the same way.
  const target = targetWithRuns(t, ['20260101-000000-aaaaaa'], { test_command: 'node --test test/ | tee test.log' });
  refused(t, cli(['--resume', '20260101-000000-aaaaaa', '--target', target]), /^moderator: project\.test_command: the command "node --test test\/ \| tee test\.log" uses "\|", which needs a shell/);
});

test('--config, --agents, --replay and --record read only regular files, up to a size cap', (t) => {
  const folder = tempDir(t, 'files');
  const target = path.join(folder, 'todo');
  const start = (...extra: string[]) => cli(['Build a TODO CLI', '--target', target, '-y', ...extra]);
  refused(t, start('--config', '/dev/zero'), /^moderator: --config: cannot read "\/dev\/zero": it is a character device, not a regular file$/);
  refused(t, start('--agents', '/dev/zero'), /^moderator: --agents: cannot read "\/dev\/zero": it is a character device, not a regular file$/);
  refused(t, start('--config', folder), /--config: cannot read ".*": it is a folder, not a regular file$/);
  refused(t, start('--provider', 'replay', '--replay', '/dev/zero'), /^moderator: replay session \/dev\/zero: it is a character device, not a regular file$/);
  refused(t, cli(['demo', '--target', target, '--replay', '/dev/zero']), /^moderator: replay session \/dev\/zero: it is a character device, not a regular file$/);
  // A named pipe with no writer would hold a plain open() forever.
  const fifo = path.join(folder, 'settings.fifo');
  execFileSync('mkfifo', [fifo]);
  refused(t, start('--config', fifo), /--config: cannot read ".*settings\.fifo": it is a named pipe, not a regular file$/);

  // Megabytes of YAML with 200,000 keys (minutes in the parser) are refused by their size.
  const huge = path.join(folder, 'huge.yaml');
  fs.writeFileSync(huge, Array.from({ length: 200_000 }, (_, index) => `k${index}: ${index}\n`).join(''));
  t.true(fs.statSync(huge).size > 2_500_000);
  refused(t, start('--config', huge), /--config: cannot read ".*huge\.yaml": it is \d\.\d MiB, over the 128 KiB limit$/);
  // A recorded session over 64 MiB (sparse: no disk needed).
  const session = path.join(folder, 'session.json');
  fs.writeFileSync(session, '');
  fs.truncateSync(session, 65 * 1024 * 1024);
  refused(t, start('--provider', 'replay', '--replay', session), /replay session .*session\.json: it is 65\.0 MiB, over the 64\.0 MiB limit$/);
  t.false(fs.existsSync(target), 'nothing was created');
  // --record appends to an existing recording (it is read once the target is prepared).
  const replayed = (name: string, ...extra: string[]) => cli([readDemoSession().requirements, '--target', path.join(folder, name), '-y', '--provider', 'replay', '--replay', demoSessionFile, ...extra]);
  refused(t, replayed('record1', '--record', session), /^moderator: --record .*session\.json: it is 65\.0 MiB, over the 64\.0 MiB limit; give a new file$/);
  refused(t, replayed('record2', '--record', '/dev/zero'), /^moderator: --record \/dev\/zero: it is a character device, not a regular file; give a new file$/);
});

test('a settings file is read up to its cap and no further, whatever its size says', (t) => {
  const folder = tempDir(t, 'cap');
  const atCap = path.join(folder, 'at-cap.yaml');
  fs.writeFileSync(atCap, 'x'.repeat(SETTINGS_FILE_CAP));
  t.is(readInputFile(atCap, SETTINGS_FILE_CAP).length, SETTINGS_FILE_CAP);
  fs.appendFileSync(atCap, 'x');
  t.throws(() => readInputFile(atCap, SETTINGS_FILE_CAP), { instanceOf: InputFileError, message: /is 128 KiB, over the 128 KiB limit$/ });
  // /proc files say they are empty and are not: the cap is on what is read, not on the size reported.
  t.is(fs.statSync('/proc/self/status').size, 0);
  t.regex(readInputFile('/proc/self/status', SETTINGS_FILE_CAP), /^Name:/);
  t.throws(() => readInputFile('/proc/self/status', 16), { instanceOf: InputFileError, message: /is over the 16 bytes limit$/ });
  t.throws(() => readInputFile(path.join(folder, 'missing.yaml'), SETTINGS_FILE_CAP), { code: 'ENOENT' });
});

test('a settings file near the cap with thousands of keys parses, and a repeated key is still found', (t) => {
  const target = tempDir(t, 'keys');
  const file = path.join(target, 'duo-agent.config.yaml');
  const count = 6_500;
  const keys = Array.from({ length: count }, (_, index) => `    key${index}: ${index}`);
  // The keys sit where any mapping is accepted (model.prices wants mappings: a wrong type is the expected error).
  const body = `model:\n  prices:\n${keys.join('\n')}\n`;
  t.true(body.length > SETTINGS_FILE_CAP / 2 && body.length < SETTINGS_FILE_CAP, `${body.length} bytes`);
  fs.writeFileSync(file, body);
  const typed = t.throws(() => loadConfig({ target, env: {}, cwd: target }), { instanceOf: ConfigError });
  t.regex(typed?.message ?? '', /^duo-agent\.config\.yaml: model\.prices\.key0: expected/);
  fs.writeFileSync(file, `${body}    key${count - 1}: again\n`);
  const repeated = t.throws(() => loadConfig({ target, env: {}, cwd: target }), { instanceOf: ConfigError });
  t.is(repeated?.message, `duo-agent.config.yaml: invalid YAML at line ${count + 3}, column 5: the key "key${count - 1}" appears twice in one mapping`);
  // Keys are compared as the settings object sees them: 1 and "1" are one key.
  fs.writeFileSync(file, 'model:\n  prices:\n    1: {input: 1, output: 1}\n    "1": {input: 2, output: 2}\n');
  t.regex(t.throws(() => loadConfig({ target, env: {}, cwd: target }))?.message ?? '', /line 4, column 5: the key "1" appears twice/);
  // Thousands of nested brackets overflow the parser's stack: still one line, exit 2.
  fs.writeFileSync(file, `model: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
  t.regex(t.throws(() => loadConfig({ target, env: {}, cwd: target }), { instanceOf: ConfigError })?.message ?? '', /^duo-agent\.config\.yaml: invalid YAML/);
});

test('a --target that is not a folder: every command says the same one line, exit 2', (t) => {
  const expected = '--target: /dev/null is not a folder: give a folder (a git repository, or a new or empty folder)';
  const commands = [['Build a TODO CLI', '-y'], ['demo'], ['--resume', 'x'], ['retry', 'x'], ['runs'], ['runs', '--json'], ['status'], ['doctor']];
  for (const command of commands) {
    const line = refused(t, cli([...command, '--target', '/dev/null']), /is not a folder/, command.join(' '));
    t.is(line, `moderator: ${expected}`, command.join(' '));
  }
  refused(t, cli(['runs', '--target', '/dev/null/todo']), /^moderator: --target: \/dev\/null\/todo is not a folder/);
  refused(t, cli(['runs'], { DUO_AGENT_WORKSPACE: '/dev/null' }), /^moderator: DUO_AGENT_WORKSPACE: \/dev\/null is not a folder/);
});

test('a run row with corrupted settings: runs lists it with one line saying so, status shows it, resume and retry refuse naming the run', (t) => {
  const good = '20260101-000000-aaaaaa';
  const bad = '20260101-000001-bbbbbb';
  const target = targetWithRuns(t, [good, bad]);
  sql(target, 'UPDATE runs SET settings_json = ? WHERE id = ?', '{"config": {"git": ', bad);

  const listed = cli(['runs', '--target', target]);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, new RegExp(`${good} .* interrupted `));
  t.regex(listed.stdout, new RegExp(`${bad} .* corrupted `));
  const warnings = listed.stderr.split('\n').filter((line) => line.trim() !== '');
  t.is(warnings.length, 1, listed.stderr);
  t.regex(warnings[0] ?? '', new RegExp(`warning: run ${bad} is corrupted in the database: its stored settings are not JSON \\(.+\\); it cannot be resumed or retried$`));
  const json = cli(['runs', '--target', target, '--json']);
  t.is(json.code, 0, json.stderr);
  const rows = json.stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { runId: string; corrupted?: string });
  t.deepEqual(rows.map((row) => [row.runId, row.corrupted !== undefined]), [[good, false], [bad, true]]);

  const status = cli(['status', '--target', target, '--run', bad, '--json']);
  t.is(status.code, 0, status.stderr);
  t.regex((JSON.parse(status.stdout) as { corrupted?: string }).corrupted ?? '', /its stored settings are not JSON/);
  t.regex(status.stderr, new RegExp(`warning: run ${bad} is corrupted in the database`));

  refused(t, cli(['--resume', bad, '--target', target]), new RegExp(`^moderator: run ${bad} is corrupted in the database: its stored settings are not JSON \\(.+\\); it cannot be resumed, start a new run$`));
  sql(target, `UPDATE runs SET status = 'finished', outcome = 'needs_human' WHERE id = ?`, bad);
  refused(t, cli(['retry', bad, '--target', target]), new RegExp(`^moderator: run ${bad} is corrupted in the database: .*; it cannot be retried, start a new run$`));
});

test('a corrupted checkpoint row: resume and retry refuse naming the run, status shows what it can', (t) => {
  const id = '20260101-000000-cccccc';
  const target = targetWithRuns(t, [id]);
  sql(target, `INSERT INTO snapshots (run_id, snapshot_json, status, saved_at) VALUES (?, ?, 'active', ?)`, id, '{"status": "active", "children": {', new Date().toISOString());
  refused(t, cli(['--resume', id, '--target', target]), new RegExp(`^moderator: run ${id} is corrupted in the database: its stored checkpoint is not JSON \\(.+\\); it cannot be resumed, start a new run$`));
  const status = cli(['status', '--target', target]);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, new RegExp(`run ${id} \\(last stored state\\): interrupted`));
  t.regex(status.stderr, new RegExp(`warning: run ${id} is corrupted in the database: its stored checkpoint is not JSON`));
  sql(target, `UPDATE runs SET status = 'finished', outcome = 'failed' WHERE id = ?`, id);
  refused(t, cli(['retry', id, '--target', target]), new RegExp(`run ${id} is corrupted in the database: its stored checkpoint is not JSON .*; it cannot be retried, start a new run$`));
});

test('an unknown run says the database lost its latest writes only when the target shows the run was there', (t) => {
  const kept = '20260101-000000-dddddd';
  const lost = '20260101-000001-eeeeee';
  const target = path.join(tempDir(t, 'wal'), 'todo');
  fs.mkdirSync(target, { recursive: true });
  const file = databasePath(target);
  // The first run reaches the main database file; the second only the WAL, as when a reader held
  // the checkpoint back. A copy of the main file then is the database as it is once the WAL is lost.
  const store = Store.open(file);
  store.runs.create({ id: kept, target, requirements: 'x', settings: storedSettings(), snapshotVersion, machineFingerprint: machineFingerprint() });
  store.checkpointWal();
  store.runs.create({ id: lost, target, requirements: 'x', settings: storedSettings(), snapshotVersion, machineFingerprint: machineFingerprint() });
  t.true(fs.statSync(`${file}-wal`).size > 0);
  fs.copyFileSync(file, `${file}.main`);
  store.close();
  // Its phase changes had exported its checkpoint for people to read.
  fs.mkdirSync(path.join(stateDir(target), 'checkpoints'));
  fs.writeFileSync(path.join(stateDir(target), 'checkpoints', `${lost}.json`), '{}\n');
  fs.renameSync(`${file}.main`, file);
  fs.rmSync(`${file}-wal`, { force: true });
  fs.rmSync(`${file}-shm`, { force: true });

  refused(t, cli(['--resume', lost, '--target', target]), new RegExp(
    `^moderator: unknown run ${lost} in .*; runs there: ${kept}; yet \\.duo-agent/checkpoints/${lost}\\.json shows the run was here: the latest writes were lost with moderator\\.db-wal \\(deleted after a crash\\?\\), and the run cannot be resumed: start a new run$`,
  ));
  // A mistyped id is only unknown.
  const typo = refused(t, cli(['--resume', '20260101-000001-eeeeef', '--target', target]), /unknown run 20260101-000001-eeeeef in .*; runs there: /);
  t.notRegex(typo, /moderator\.db-wal/);
  refused(t, cli(['retry', lost, '--target', target]), /the latest writes were lost with moderator\.db-wal/);
});

// ---- an interrupted step is not its result (item 1) --------------------------------------------
// In a whole run a signal stops the session and closes the database before the aborted step gets
// to write anything (test/hardening-runs.test.ts); a stop that leaves the session running (a
// skipped task, the run's own time limit) does not. These drive the two effects with an abort and
// an open store.

/** Waits for `file` to appear (the command it is written by has started). */
async function appeared(file: string): Promise<void> {
  for (let waited = 0; !fs.existsSync(file); waited += 10) {
    if (waited > 30_000) throw new Error(`${file} never appeared`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Starts once, waits until aborted, counts its starts: a command that is interrupted the first time. */
const SLOW_ONCE = `node -e "const fs = require('fs'); fs.appendFileSync('starts', 'x'); if (fs.readFileSync('starts', 'utf8').length === 1) setTimeout(() => {}, 60000)"`;

test('a test run cut short by an abort throws and records nothing; the step run again tests again', async (t) => {
  const target = tempDir(t, 'abort-tests');
  const worktree = path.join(stateDir(target), 'worktrees', 'T1');
  fs.mkdirSync(worktree, { recursive: true });
  const store = Store.open(':memory:');
  t.teardown(() => store.close());
  store.runs.create({ id: 'r', target, requirements: 'x', settings: {}, snapshotVersion, machineFingerprint: machineFingerprint() });
  const { config } = storedSettings({ test_command: SLOW_ONCE });
  // What runTests touches is real (store, config, the test runner on the host); the rest is not used.
  const services: Partial<RunServices> = { runId: 'r', target, requirements: 'x', config, agents: {}, store, childEnv: { PATH: process.env.PATH ?? '' }, sandbox: UNSANDBOXED, progress: () => {} };
  // A promise actor's logic keeps its function as `config` (ActorLogic.config): called here with
  // the abort signal the actor would get, so what the step does after the abort can be awaited.
  const runTests = techleadActors(services as RunServices).runTests.config as (args: { input: TaskStepInput; signal: AbortSignal }) => Promise<{ passed: boolean }>;
  const input = { taskId: 'T1', taskType: 'feature', attempt: 1, generation: 1 };

  const stop = new AbortController();
  const cutShort = runTests({ input, signal: stop.signal });
  await appeared(path.join(worktree, 'starts'));
  stop.abort(new Error('stopped: the task was skipped'));
  await t.throwsAsync(cutShort, { message: 'stopped: the task was skipped' });
  t.is(store.testRuns.get('r', 'T1', 1), undefined, 'the aborted run is not journaled as a result');

  const again = await runTests({ input, signal: new AbortController().signal });
  t.deepEqual(again, { passed: true });
  t.is(fs.readFileSync(path.join(worktree, 'starts'), 'utf8'), 'xx', 'the tests ran again');
  t.true(store.testRuns.get('r', 'T1', 1)?.passed);
});

test('a tool call cut short by an abort is not journaled; the step run again runs it again, its model turn from the journal', async (t) => {
  const worktree = tempDir(t, 'abort-tool');
  const store = Store.open(':memory:');
  t.teardown(() => store.close());
  store.runs.create({ id: 'r', target: worktree, requirements: 'x', settings: {}, snapshotVersion, machineFingerprint: machineFingerprint() });
  let sent = 0;
  const provider: ModelProvider = {
    name: 'scripted',
    description: 'scripted',
    async complete(request) {
      sent += 1;
      const last = request.messages.at(-1);
      const usage = { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 };
      return last?.role === 'tool'
        ? { text: '{"summary": "ran it", "files": [], "delete": []}', model: 'm', usage, costUsd: 0, latencyMs: 0 }
        : { text: '', toolCalls: [{ id: 'c1', name: 'run_command', input: { command: SLOW_ONCE } }], model: 'm', usage, costUsd: 0, latencyMs: 0 };
    },
  };
  const logs = new AgentLogs({ dir: tempDir(t, 'abort-tool-logs'), runId: 'r', level: 'silent' });
  const gateway = new ModelGateway({ store, runId: 'r', provider, budget: { maxTokensTotal: 1e6 } });
  // What ask touches with tools is real; the rest of the run's services are not used.
  const services: Partial<RunServices> = { runId: 'r', store, gateway, logs, context: contextFor(), progress: () => {}, config: storedSettings().config };
  const tools = createWorktreeTools({ root: worktree, allowedCommands: ['node'], commandTimeoutMs: 60_000, outputCapBytes: 10_000, env: { PATH: process.env.PATH ?? '' }, baseBranch: 'main' });
  const implement = (signal: AbortSignal) => ask(services as RunServices, {
    agent: 'techlead', purpose: 'implement', taskId: 'T1', callKey: callKeys.change('implement', 'T1', 1), system: 's', prompt: 'p', reply: replies.change,
    settings: { model: 'm', temperature: 0, max_tokens: 100 }, tools, maxTurns: 3, signal,
  });

  const stop = new AbortController();
  const cutShort = implement(stop.signal);
  await appeared(path.join(worktree, 'starts'));
  stop.abort(new Error('stopped: SIGTERM'));
  await t.throwsAsync(cutShort, { message: 'stopped: SIGTERM' });
  t.deepEqual(store.effects.list('r').filter((effect) => effect.status === 'done'), [], 'the aborted tool result is not journaled');

  const change = await implement(new AbortController().signal);
  t.is(change.summary, 'ran it');
  t.is(fs.readFileSync(path.join(worktree, 'starts'), 'utf8'), 'xx', 'the command ran again');
  t.is(sent, 2, 'the first turn came from the journal, only the answer after the tool result was sent');
});
