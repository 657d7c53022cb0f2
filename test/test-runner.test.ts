import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { UsageError } from '../errors.ts';
import { CommandLineError, runTestCommand, splitCommand } from '../services/test-runner.ts';

// Only PATH is passed on, so a test also shows that nothing else of this process leaks through.
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-runner-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node one-liner as a command string; the script goes in double quotes. */
const nodeCommand = (script: string, ...extra: string[]): string =>
  ['node', '-e', `"${script.replace(/["\\$`]/g, '\\$&')}"`, ...extra].join(' ');

/** Running, not merely a zombie waiting for this container's init to reap it. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return !fs.existsSync('/proc/self');
  }
}

test('splitCommand handles quotes and escapes like a shell does for plain words', (t) => {
  t.deepEqual(splitCommand('npm test'), ['npm', 'test']);
  t.deepEqual(splitCommand('  npm   run  "test:unit"  -- --grep \'a b\' '), ['npm', 'run', 'test:unit', '--', '--grep', 'a b']);
  t.deepEqual(splitCommand('echo "say \\"hi\\" \\$HOME \\n" it\\ works \'$(x)\' ""'), ['echo', 'say "hi" $HOME \\n', 'it works', '$(x)', '']);
  t.deepEqual(splitCommand('pytest tests/*.py -k "a or b"'), ['pytest', 'tests/*.py', '-k', 'a or b']);
  t.deepEqual(splitCommand('make CC=gcc'), ['make', 'CC=gcc']);
  t.deepEqual(splitCommand('pytest "tests/a*.py" t?.py x.py::Case#1 \\#2 "#3"'), ['pytest', 'tests/a*.py', 't?.py', 'x.py::Case#1', '#2', '#3'], 'globs as written; "#" inside a word is no comment');
  t.deepEqual(splitCommand('echo $ a$ "b$"'), ['echo', '$', 'a$', 'b$'], 'a "$" that starts no name is literal');
});

test('splitCommand takes double-quoted text literally, apart from its escapes', (t) => {
  // No shell expands it, so a script means what its author wrote (a JS template literal here).
  t.deepEqual(splitCommand('node -e "console.log(`${x}`, $HOME, $(y))"'), ['node', '-e', 'console.log(`${x}`, $HOME, $(y))']);
  t.deepEqual(splitCommand('echo "a\\`b \\$c \\\\ \\" \\z"'), ['echo', 'a`b $c \\ " \\z']);
  t.deepEqual(splitCommand("echo 'a\\b $c `d` \"e'"), ['echo', 'a\\b $c `d` "e'], 'single quotes are literal throughout');
});

test('a refused command line is a CommandLineError with the problem as a field, said of any command', (t) => {
  const error = t.throws(() => splitCommand('npm test && rm -rf /'), { instanceOf: CommandLineError });
  t.true(error instanceof UsageError, 'a usage error: exit status 2 for the test command');
  t.is(error.command, 'npm test && rm -rf /');
  t.is(error.problem, 'uses "&&", which needs a shell');
  t.true(error.needsShell);
  t.is(error.message, 'the test command "npm test && rm -rf /" uses "&&", which needs a shell; Moderator runs the command without one: put it in a script (e.g. an npm script) and name that');
  t.is(error.describe('the command'), 'the command "npm test && rm -rf /" uses "&&", which needs a shell; Moderator runs the command without one: put it in a script (e.g. an npm script) and name that');
  const quote = t.throws(() => splitCommand('echo "open'), { instanceOf: CommandLineError });
  t.false(quote.needsShell);
  t.is(quote.describe('the setup command'), 'the setup command "echo \\"open" has an unterminated double quote');
});

test('splitCommand refuses what needs a shell, with a clear message', (t) => {
  const cases: [string, RegExp][] = [
    ['echo a && echo b', /"&&"/],
    ['npm test | tee log', /"\|"/],
    ['npm test; rm -rf x', /";"/],
    ['npm test > out.txt', /redirection ">"/],
    ['cat < in', /redirection "<"/],
    ['echo $(touch /tmp/x)', /"\$\(\.\.\.\)"/],
    ['echo `id`', /backtick/],
    ['echo $HOME', /variable expansion/],
    ['npm test &', /"&"/],
    ['CI=1 npm test', /leading VAR=value/],
    ['(cd x)', /"\("/],
    ['npm test # all', /comment/],
    ['npm test\nrm x', /line break/],
    ['npm test || true', /"\|\|"/],
    ['npm test 2>&1', /redirection ">&"/],
    ['npm test >> log', /redirection ">>"/],
    ['diff <(a) b', /redirection "<\("/],
    ['echo ${HOME}', /variable expansion/],
    ['echo ${HOME', /variable expansion/],
    ['echo $((1+2))', /"\$\(\.\.\.\)"/],
    ['echo a$HOME', /variable expansion/],
    ['echo $1 $?', /variable expansion/],
    ['"CI=1" npm test', /leading VAR=value/],
  ];
  for (const [command, why] of cases) {
    const error = t.throws(() => splitCommand(command), { instanceOf: UsageError }, command);
    t.regex(error.message, why, command);
    t.regex(error.message, /needs a shell/, command);
  }
  t.throws(() => splitCommand('echo "open'), { instanceOf: UsageError, message: /unterminated double quote/ });
  t.throws(() => splitCommand("echo 'open"), { instanceOf: UsageError, message: /unterminated single quote/ });
  t.throws(() => splitCommand('   '), { instanceOf: UsageError, message: /empty/ });
  t.throws(() => splitCommand('npm test \\'), { instanceOf: UsageError, message: /ends with a backslash/ });
  t.throws(() => splitCommand('node -e "1\n2"; x'), { instanceOf: UsageError, message: /";"/ }, 'a line break inside quotes is part of the word');
  t.deepEqual(splitCommand('node -e "1\n2"'), ['node', '-e', '1\n2']);
});

test('a passing command passes', async (t) => {
  const result = await runTestCommand({ command: nodeCommand('console.log("ok 1")'), cwd: tempDir(t), env, timeoutMs: 20_000 });
  t.true(result.passed);
  t.is(result.exitCode, 0);
  t.is(result.signal, null);
  t.false(result.timedOut);
  t.is(result.output, 'ok 1\n');
  t.true(result.durationMs >= 0);
});

test('a failing command reports its exit code and both streams', async (t) => {
  const result = await runTestCommand({
    command: nodeCommand('console.log("out"); console.error("not ok 1"); process.exit(3)'), cwd: tempDir(t), env, timeoutMs: 20_000,
  });
  t.false(result.passed);
  t.is(result.exitCode, 3);
  t.true(result.output.includes('out\n'));
  t.true(result.output.includes('not ok 1\n'));
});

test('a timeout kills the whole process group, grandchildren too', async (t) => {
  const dir = tempDir(t);
  const pidFile = path.join(dir, 'grandchild.pid');
  // The child starts a grandchild that ignores SIGTERM, records its pid, and both hang.
  const script = [
    'const { spawn } = require("child_process");',
    `const g = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore" });`,
    `require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));`,
    'setInterval(() => {}, 1000);',
  ].join(' ');
  const started = Date.now();
  const result = await runTestCommand({ command: nodeCommand(script), cwd: dir, env, timeoutMs: 1_000 });
  t.true(result.timedOut);
  t.false(result.passed);
  t.is(result.exitCode, null);
  t.is(result.signal, 'SIGTERM');
  t.regex(result.output, /timed out after 1000 ms/);
  t.true(Date.now() - started < 8_000);
  const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
  t.true(grandchild > 0);
  // SIGKILL is delivered asynchronously: give the kernel a moment under a loaded test run.
  for (let waited = 0; alive(grandchild) && waited < 2_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  t.false(alive(grandchild), 'the grandchild that ignored SIGTERM was killed too');
});

test('a plain hanging child is stopped at the timeout', async (t) => {
  const result = await runTestCommand({ command: 'node -e "setInterval(()=>{},1000)"', cwd: tempDir(t), env, timeoutMs: 300 });
  t.true(result.timedOut);
  t.false(result.passed);
  t.true(result.durationMs < 3_000);
});

test('the output keeps its last bytes under the cap, with a marker', async (t) => {
  const result = await runTestCommand({
    command: nodeCommand('for (let i = 0; i < 5000; i++) console.log("line " + i + " ü"); console.log("THE END")'),
    cwd: tempDir(t), env, timeoutMs: 20_000, outputCapBytes: 1024,
  });
  t.true(result.passed);
  t.regex(result.output, /^\[… \d+ bytes truncated\]\n/);
  t.true(result.output.endsWith('line 4999 ü\nTHE END\n'));
  const [, marker = '', rest = ''] = /^(\[[^\n]*\]\n)([\s\S]*)$/.exec(result.output) ?? [];
  t.true(Buffer.byteLength(rest) <= 1024);
  t.false(rest.includes('\ufffd'), 'no character cut in half');
  const dropped = Number(/(\d+) bytes/.exec(marker)?.[1]);
  t.is(dropped + Buffer.byteLength(rest), Array.from({ length: 5000 }, (_, i) => `line ${i} ü\n`).join('').length + 5000 + 'THE END\n'.length);
});

test('no shell: "$(...)" inside quotes reaches the program literally and runs nothing', async (t) => {
  const dir = tempDir(t);
  const marker = path.join(dir, 'pwned');
  const result = await runTestCommand({
    command: `${nodeCommand('console.log(JSON.stringify(process.argv.slice(1)))')} '$(touch ${marker})' "; touch ${marker}"`,
    cwd: dir, env, timeoutMs: 20_000,
  });
  t.true(result.passed, result.output);
  t.deepEqual(JSON.parse(result.output), [`$(touch ${marker})`, `; touch ${marker}`]);
  t.false(fs.existsSync(marker));
  await t.throwsAsync(runTestCommand({ command: 'echo a && echo b', cwd: dir, env, timeoutMs: 1_000 }), { instanceOf: UsageError });
});

test('the environment is exactly the one given', async (t) => {
  const result = await runTestCommand({
    command: nodeCommand('console.log(process.env.MODERATOR_TEST_VAR + "|" + (process.env.HOME ?? "no home"))'),
    cwd: tempDir(t), env: { ...env, MODERATOR_TEST_VAR: 'from env' }, timeoutMs: 20_000,
  });
  t.is(result.output, 'from env|no home\n');
});

test('a missing command is a failed run saying so, not a crash', async (t) => {
  const result = await runTestCommand({ command: 'moderator-no-such-command --flag', cwd: tempDir(t), env, timeoutMs: 5_000 });
  t.false(result.passed);
  t.is(result.exitCode, null);
  t.is(result.output, 'command not found: moderator-no-such-command\n');
  const noCwd = await runTestCommand({ command: 'node -v', cwd: path.join(os.tmpdir(), 'moderator-missing-dir-xyz'), env, timeoutMs: 5_000 });
  t.false(noCwd.passed);
  t.regex(noCwd.output, /working directory does not exist/);
});

test('an abort signal stops the run', async (t) => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const result = await runTestCommand({ command: 'node -e "setInterval(()=>{},1000)"', cwd: tempDir(t), env, timeoutMs: 20_000, signal: controller.signal });
  t.true(result.aborted);
  t.false(result.timedOut);
  t.false(result.passed);
  t.true(result.durationMs < 5_000);
  const early = await runTestCommand({ command: 'node -v', cwd: tempDir(t), env, timeoutMs: 5_000, signal: controller.signal });
  t.true(early.aborted);
  t.false(early.passed);
});

test('a daemon left holding the output pipes does not hang the run', async (t) => {
  // The child starts a grandchild in its own session (out of the process group) that keeps
  // stdout open, then exits 0: the run must end soon after, as passed.
  const script = [
    'const { spawn } = require("child_process");',
    'const g = spawn(process.execPath, ["-e", "setTimeout(() => {}, 6000)"], { detached: true, stdio: ["ignore", "inherit", "inherit"] });',
    'g.unref(); console.log("started");',
  ].join(' ');
  const started = Date.now();
  const result = await runTestCommand({ command: nodeCommand(script), cwd: tempDir(t), env, timeoutMs: 20_000 });
  t.true(result.passed);
  t.is(result.output, 'started\n');
  t.true(Date.now() - started < 10_000);
});
