import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { cliAsync, cliSync, root } from './helpers/cli.ts';

// Port 0: every run starts a monitoring server, and tests run side by side.
const port0 = { DUO_AGENT_MONITOR_PORT: '0' };

function cli(args: string[], options: { env?: Record<string, string> } = {}) {
  return cliSync(args, { timeoutMs: 120_000, env: { ...port0, ...options.env } });
}

/** Like `cli`, without blocking the event loop (the test itself holds a port open). */
function cliInBackground(args: string[], env: Record<string, string> = {}) {
  return cliAsync(args, { timeoutMs: 120_000, env: { ...port0, ...env } });
}

const tempDir = (name = 'cli') => fs.mkdtempSync(path.join(os.tmpdir(), `moderator-${name}-`));

/** A one-line error: exactly one non-empty stderr line, starting with `moderator:`. */
function assertOneLine(t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp) => void }, stderr: string, pattern: RegExp) {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  t.is(lines.length, 1, `one line, got: ${stderr}`);
  t.regex(lines[0] ?? '', pattern);
}

test('without a model provider, a run explains in one line how to configure one and points to the demo', (t) => {
  const { code, stderr, stdout } = cli(['Build a TODO CLI', '--target', path.join(tempDir(), 'todo'), '-y']);
  t.is(code, 2);
  t.is(stdout, '');
  assertOneLine(t, stderr, /no model provider is configured: set DUO_AGENT_MODEL_PROVIDER.*npm run demo/);
});

test('bad flags and missing requirements exit 2 with one line', (t) => {
  const unknown = cli(['--frobnicate']);
  t.is(unknown.code, 2);
  assertOneLine(t, unknown.stderr, /Unknown option '--frobnicate'/);
  const none = cli([]);
  t.is(none.code, 2);
  assertOneLine(t, none.stderr, /give the requirements/);
  const badNumber = cli(['x', '--max-tokens', 'lots', '--provider', 'replay', '--target', tempDir(), '-y']);
  t.is(badNumber.code, 2);
  assertOneLine(t, badNumber.stderr, /--max-tokens: expected .*found "lots"/);
});

test('a bad value in the target config file names the file, the field, the expectation and the value', (t) => {
  const target = tempDir();
  fs.writeFileSync(path.join(target, 'duo-agent.config.yaml'), 'limits:\n  max_error_rate: high\n');
  const { code, stderr } = cli(['x', '--target', target, '-y']);
  t.is(code, 2);
  assertOneLine(t, stderr, /duo-agent\.config\.yaml: limits\.max_error_rate: expected .*found "high"/);
});

test('a bad environment variable is named in the error', (t) => {
  const { code, stderr } = cli(['x', '--target', tempDir(), '-y'], { env: { DUO_AGENT_MONITOR_PORT: 'eighty' } });
  t.is(code, 2);
  assertOneLine(t, stderr, /DUO_AGENT_MONITOR_PORT: expected .*found "eighty"/);
});

test('a provider without its key is refused before anything is created', (t) => {
  const target = path.join(tempDir(), 'new');
  const { code, stderr } = cli(['x', '--target', target, '-y', '--provider', 'anthropic']);
  t.is(code, 2);
  assertOneLine(t, stderr, /anthropic provider needs an API key: set DUO_AGENT_API_KEY/);
  t.false(fs.existsSync(path.join(target, '.duo-agent')), 'no run was created');
});

const replayArgs = ['--provider', 'replay', '--replay', path.join(root, 'demos', 'todo-cli', 'session.json')];
/** A replay only runs on the requirements it was recorded for. */
const demoRequirements = (JSON.parse(fs.readFileSync(path.join(root, 'demos', 'todo-cli', 'session.json'), 'utf8')) as { requirements: string }).requirements;

test('a dirty work tree is refused, and the user files are untouched', (t) => {
  const target = tempDir('dirty');
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: target });
  git('init', '-q', '-b', 'main');
  git('commit', '-q', '--allow-empty', '-m', 'init');
  fs.writeFileSync(path.join(target, 'notes.txt'), 'mine');
  const { code, stderr } = cli(['x', '--target', target, '-y', ...replayArgs]);
  t.is(code, 2);
  assertOneLine(t, stderr, /uncommitted changes \(notes\.txt\)/);
  t.is(fs.readFileSync(path.join(target, 'notes.txt'), 'utf8'), 'mine');
});

test('a non-empty folder that is not a git repository is refused', (t) => {
  const target = tempDir('plain');
  fs.writeFileSync(path.join(target, 'a.txt'), 'a');
  const { code, stderr } = cli(['x', '--target', target, '-y', ...replayArgs]);
  t.is(code, 2);
  assertOneLine(t, stderr, /not a git repository and not empty/);
});

test('without -y and without a terminal to ask on, the run refuses to start', (t) => {
  const { code, stderr } = cli(['x', '--target', tempDir(), ...replayArgs]);
  t.is(code, 2);
  assertOneLine(t, stderr, /pass -y/);
});

test('the token budget is never overrun: the run stops with budget_exhausted and exit 3', (t) => {
  // 10,000 tokens run out inside the first task, before any task has finished: no forecast can stop the run first.
  const target = path.join(tempDir('budget'), 'todo');
  const { code, stdout, stderr } = cli(['demo', '--target', target, '--max-tokens', '10000', '--json']);
  t.is(code, 3);
  const summary = JSON.parse(stdout) as { outcome: string; tokensUsed: number; reason: string };
  t.is(summary.outcome, 'budget_exhausted');
  t.true(summary.tokensUsed <= 10_000, `used ${summary.tokensUsed}`);
  t.regex(summary.reason, /token budget/);
  t.false(stderr.includes('token budget:'), 'the stop reason is printed once, by the summary, not also as a progress error');
  const text = cli(['demo', '--target', path.join(tempDir('budget'), 'todo'), '--max-tokens', '10000']);
  t.is(text.code, 3);
  t.is(`${text.stderr}${text.stdout}`.split('token budget:').length - 1, 1, `${text.stderr}${text.stdout}`);
});

test('unattended, a forecast past the budget ends the run needs_human (exit 5) before it runs dry; raised with --limit, --resume finishes it', (t) => {
  const target = path.join(tempDir('forecast'), 'todo');
  const first = cli(['demo', '--target', target, '--max-tokens', '30000', '--json']);
  t.is(first.code, 5, first.stderr);
  const stopped = JSON.parse(first.stdout) as { runId: string; outcome: string; tokensUsed: number; reason: string; tasksCompleted: number };
  t.is(stopped.outcome, 'needs_human');
  t.regex(stopped.reason, /^the forecast to finish \d+ task\(s\) is ~[\d,]+ tokens, past limits\.max_tokens_total 30,000, and the run is unattended: raise the budget, then --resume$/);
  t.true(stopped.tokensUsed < 30_000, `stopped at ${stopped.tokensUsed}, before the budget ran out`);
  t.true(stopped.tasksCompleted >= 1, 'the forecast comes from a finished task');
  t.regex(first.stderr, /forecast: ~[\d,]+ tokens to finish \d+ task\(s\) left/, 'the progress output shows the forecast');
  // The default alert channels: the console and the monitor's log (the live feed is the server's).
  t.regex(first.stderr, /alert \(warning\): the forecast passes the budget: ~[\d,]+ tokens/);
  t.regex(fs.readFileSync(path.join(target, '.duo-agent', 'logs', 'monitor.jsonl'), 'utf8'), /"kind":"forecast".*the forecast passes the budget/);
  const db = new Database(path.join(target, '.duo-agent', 'moderator.db'), { readonly: true });
  t.deepEqual(db.prepare("SELECT level, kind, source FROM alerts WHERE source = 'monitor'").all(), [{ level: 'warning', kind: 'forecast', source: 'monitor' }], 'the Monitor\'s alert is in the alerts table');
  const ticks = db.prepare('SELECT tokens_used, health_score, forecast_tokens FROM metrics ORDER BY id').all() as { tokens_used: number; health_score: number; forecast_tokens: number | null }[];
  t.true(ticks.length >= 1, 'the tick that stopped the run is in the metrics series');
  t.is(ticks.at(-1)?.tokens_used, stopped.tokensUsed);
  t.true((ticks.at(-1)?.forecast_tokens ?? 0) > 30_000);
  db.close();
  // A finished run shows its final states: every agent stopped, in `status` and in the checkpoint export.
  const status = cli(['status', '--target', target]);
  t.regex(status.stdout, /finished, phase stopped, outcome needs_human/);
  t.regex(status.stdout, /agents {2}techlead-1 stopped, techlead-2 stopped, techlead-3 stopped, moderator stopped, mergeQueue stopped, monitor stopped, everThinker stopped/);
  const exported = JSON.parse(fs.readFileSync(path.join(target, '.duo-agent', 'checkpoints', `${stopped.runId}.json`), 'utf8')) as { run: Record<string, unknown>; states: Record<string, string> };
  t.like(exported.run, { status: 'finished', outcome: 'needs_human', reason: stopped.reason });
  t.deepEqual(exported.states, {
    orchestrator: 'stopped', moderator: 'stopped', 'techlead-1': 'stopped', 'techlead-2': 'stopped', 'techlead-3': 'stopped', mergeQueue: 'stopped', monitor: 'stopped', everThinker: 'stopped',
  });

  const again = cli(['--resume', stopped.runId, '--target', target, '--json']);
  t.is(again.code, 5, 'the same limit stops it again at once');
  const resumed = cli(['--resume', stopped.runId, '--target', target, '--limit', 'max_tokens_total=500000', '--json']);
  t.is(resumed.code, 0, resumed.stderr);
  t.like(JSON.parse(resumed.stdout), { runId: stopped.runId, outcome: 'done' });
});

test('runs that cannot be resumed are refused with exit 2: unknown id, other chart version', (t) => {
  const target = path.join(tempDir('resume'), 'todo');
  const demo = cli(['demo', '--target', target, '--max-tokens', '10000', '--json']);
  t.is(demo.code, 3);
  const { runId } = JSON.parse(demo.stdout) as { runId: string };
  const unknown = cli(['--resume', 'nope', '--target', target]);
  t.is(unknown.code, 2);
  assertOneLine(t, unknown.stderr, new RegExp(`unknown run nope in .*runs there: ${runId}`));
  const db = new Database(path.join(target, '.duo-agent', 'moderator.db'));
  db.prepare('UPDATE runs SET machine_fingerprint = ?, status = ? WHERE id = ?').run('0000', 'interrupted', runId);
  db.close();
  const incompatible = cli(['--resume', runId, '--target', target]);
  t.is(incompatible.code, 2);
  assertOneLine(t, incompatible.stderr, /incompatible version of Moderator.*start a new run/);
  const nowhere = cli(['--resume', runId, '--target', tempDir()]);
  t.is(nowhere.code, 2);
  assertOneLine(t, nowhere.stderr, /no Moderator runs in/);
});

test('--parallel (or --limit max_parallel_tasks) on --resume is refused with exit 2: the TechLeads are part of the checkpoint; without it the run resumes', async (t) => {
  const target = path.join(tempDir('resume-parallel'), 'todo');
  const first = await cliAsync(['demo', '--target', target, '--json', '--port', '0'], { kill: { label: 'implementing', line: /\] phase: implementing/ }, timeoutMs: 120_000 });
  t.true(first.killed, first.stderr);
  const db = new Database(path.join(target, '.duo-agent', 'moderator.db'), { readonly: true });
  const { id } = db.prepare('SELECT id FROM runs').get() as { id: string };
  db.close();
  const refused = cli(['--resume', id, '--target', target, '--parallel', '1']);
  t.is(refused.code, 2);
  assertOneLine(t, refused.stderr, /--parallel: a resumed run keeps the 3 TechLeads it started with .*resume without it/);
  const viaLimit = cli(['--resume', id, '--target', target, '--limit', 'max_parallel_tasks=2']);
  t.is(viaLimit.code, 2);
  assertOneLine(t, viaLimit.stderr, /--limit max_parallel_tasks: a resumed run keeps the 3 TechLeads/);
  const resumed = cli(['--resume', id, '--target', target, '--json', '--port', '0']);
  t.is(resumed.code, 0, resumed.stderr);
});

test('a run whose process died shows interrupted in runs and status, not running', (t) => {
  const target = path.join(tempDir('dead'), 'todo');
  const demo = cli(['demo', '--target', target, '--max-tokens', '10000', '--json']);
  const { runId } = JSON.parse(demo.stdout) as { runId: string };
  // What kill -9 leaves: the row still says running, for a process that is gone.
  const gone = execFileSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).trim();
  const db = new Database(path.join(target, '.duo-agent', 'moderator.db'));
  db.prepare("UPDATE runs SET status = 'running', outcome = NULL, pid = ?, host = ? WHERE id = ?").run(Number(gone), os.hostname(), runId);
  db.close();
  t.regex(cli(['runs', '--target', target]).stdout, new RegExp(`${runId} .* interrupted `));
  t.like(JSON.parse(cli(['runs', '--target', target, '--json']).stdout), { runId, status: 'interrupted' });
  t.regex(cli(['status', '--target', target]).stdout, new RegExp(`run ${runId} \\(last stored state\\): interrupted`));
});

test('runs lists nothing for a fresh target and --help prints usage', (t) => {
  const listed = cli(['runs', '--target', tempDir(), '--json']);
  t.is(listed.code, 0);
  t.is(listed.stdout, '');
  const help = cli(['--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /moderator --resume <runId>/);
});

test('a busy monitor port: a run refuses with exit 2 naming the setting; the demo says so and takes a free port', async (t) => {
  const net = await import('node:net');
  const blocker = net.createServer();
  const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)));
  t.teardown(() => blocker.close());
  const run = await cliInBackground([demoRequirements, '--target', path.join(tempDir('busy'), 't'), '-y', ...replayArgs], { DUO_AGENT_MONITOR_PORT: String(port) });
  t.is(run.code, 2);
  t.regex(run.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use: set DUO_AGENT_MONITOR_PORT or monitor\\.port`));
  const demo = await cliInBackground(['demo', '--target', path.join(tempDir('busy-demo'), 't'), '--max-tokens', '10000'], { DUO_AGENT_MONITOR_PORT: String(port) });
  t.is(demo.code, 3, demo.stderr);
  t.regex(demo.stderr, /is in use; the demo monitors on a free port instead/);
});
