import fs from 'node:fs';
import path from 'node:path';
import { ModeratorError } from '../errors.ts';
import { lastLines } from './text.ts';
import type { TestCommandResult } from './test-runner.ts';

/**
 * The project's test command when none is configured, read from the files that name one, and
 * the difference between tests that fail (the TechLead's to fix) and a test command that cannot
 * run at all (a person's to fix: a missing runner, a wrong setting): the second must never be
 * billed as review rounds.
 */

export interface DetectedTestCommand {
  command: string;
  /** Where it was found, for the progress line: `package.json scripts.test`. */
  from: string;
}

/** npm init's placeholder: a project that says it has no tests. */
const NPM_PLACEHOLDER = /no test specified/i;

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function packageTest(dir: string): DetectedTestCommand | undefined {
  const text = read(path.join(dir, 'package.json'));
  if (text === undefined) return undefined;
  let script: unknown;
  try {
    script = (JSON.parse(text) as { scripts?: Record<string, unknown> }).scripts?.test;
  } catch {
    return undefined;
  }
  if (typeof script !== 'string' || script.trim() === '' || NPM_PLACEHOLDER.test(script)) return undefined;
  const runner = fs.existsSync(path.join(dir, 'pnpm-lock.yaml')) ? 'pnpm' : fs.existsSync(path.join(dir, 'yarn.lock')) ? 'yarn' : 'npm';
  return { command: `${runner} test`, from: 'package.json scripts.test' };
}

function pytest(dir: string): DetectedTestCommand | undefined {
  const marked =
    fs.existsSync(path.join(dir, 'pytest.ini')) ||
    fs.existsSync(path.join(dir, 'conftest.py')) ||
    /\[tool\.pytest/.test(read(path.join(dir, 'pyproject.toml')) ?? '') ||
    /\[tool:pytest\]/.test(read(path.join(dir, 'setup.cfg')) ?? '') ||
    /\[pytest\]/.test(read(path.join(dir, 'tox.ini')) ?? '');
  const testsDir = ['tests', 'test'].some((name) => {
    try {
      return fs.readdirSync(path.join(dir, name)).some((file) => /^(test_.*|.*_test)\.py$/.test(file) || file === 'conftest.py');
    } catch {
      return false;
    }
  });
  return marked || testsDir ? { command: 'python3 -m pytest', from: marked ? 'the pytest configuration' : 'test_*.py files' } : undefined;
}

function makeTest(dir: string): DetectedTestCommand | undefined {
  for (const name of ['GNUmakefile', 'makefile', 'Makefile']) {
    const text = read(path.join(dir, name));
    if (text !== undefined && /^test\s*:/m.test(text)) return { command: 'make test', from: `${name} (test target)` };
  }
  return undefined;
}

/** The first of: package.json scripts.test, pytest, go test, cargo test, make test. */
export function detectTestCommand(dir: string): DetectedTestCommand | undefined {
  return (
    packageTest(dir) ??
    pytest(dir) ??
    (fs.existsSync(path.join(dir, 'go.mod')) ? { command: 'go test ./...', from: 'go.mod' } : undefined) ??
    (fs.existsSync(path.join(dir, 'Cargo.toml')) ? { command: 'cargo test', from: 'Cargo.toml' } : undefined) ??
    makeTest(dir)
  );
}

export const LOOKED_FOR = 'package.json scripts.test, pytest, go.mod, Cargo.toml or a Makefile test target';

/** Output that says the command or its runner is missing, not that a test failed. */
const CANNOT_RUN = [
  /command not found/i,
  /^\S+: (?:\d+: )?\S+: not found$/m,
  /Missing script: "?test"?/i,
  /no test specified/i,
  /No module named pytest/i,
  /is not recognized as an internal or external command/i,
];

/**
 * Why a finished command could not run at all, or undefined when it ran (passing or failing).
 * Exit 126 and 127 are the shell's "not executable" and "not found"; a spawn error has no exit code.
 */
export function cannotRun(result: TestCommandResult): string | undefined {
  if (result.timedOut || result.aborted) return undefined;
  if (result.exitCode === null && result.signal === null) return lastLines(result.output, 1)[0] ?? 'it did not start';
  if (result.exitCode === 126) return 'exit 126: not executable';
  if (result.exitCode === 127) return 'exit 127: a program it runs was not found';
  const match = CANNOT_RUN.find((pattern) => pattern.test(result.output));
  return match ? `exit ${result.exitCode ?? 'none'}: ${lastLines(result.output.split('\n').filter((line) => match.test(line)).join('\n'), 1)[0] ?? 'its runner is missing'}` : undefined;
}

/** The project's tests cannot run here: the run stops for a person (needs_human), nothing is billed to the TechLead. */
export class TestEnvironmentError extends ModeratorError {
  constructor(message: string) {
    super('test_environment', message);
  }
}
