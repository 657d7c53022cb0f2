/**
 * What a test or lint run's output says in numbers: tests passed, failed and in all, line
 * coverage when the runner printed it, lint findings. Read from the output the common runners
 * print (node --test in its TAP and spec reporters, TAP, jest and vitest, mocha, pytest, go test,
 * cargo test); a runner whose summary is not recognised gives null, never a guess.
 */

export interface TestCounts {
  passed: number;
  failed: number;
  total: number;
}

const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');

const int = (text: string | undefined): number => (text === undefined ? 0 : Number.parseInt(text.replace(/[,_]/g, ''), 10));

/** Summary lines, tried in order; each gives passed and failed (and sometimes the total). */
const summaries: { pattern: RegExp; read: (match: RegExpMatchArray, text: string) => TestCounts | null }[] = [
  // node --test (TAP: "# tests 12" / "# pass 11" / "# fail 1"; spec: "ℹ tests 12" ...)
  {
    pattern: /^(?:#|ℹ)\s*tests\s+(\d+)\s*$/m,
    read: (match, text) => {
      const passed = /^(?:#|ℹ)\s*pass\s+(\d+)\s*$/m.exec(text);
      const failed = /^(?:#|ℹ)\s*fail\s+(\d+)\s*$/m.exec(text);
      if (!passed) return null;
      return { passed: int(passed[1]), failed: int(failed?.[1]), total: int(match[1]) };
    },
  },
  // jest: "Tests:       1 failed, 12 passed, 13 total"; vitest: "Tests  1 failed | 12 passed (13)"
  {
    pattern: /^\s*Tests:?\s+(.*?(\d+)\s+passed.*)$/m,
    read: (match) => {
      const line = match[1] ?? '';
      const passed = int(/(\d+)\s+passed/.exec(line)?.[1]);
      const failed = int(/(\d+)\s+failed/.exec(line)?.[1]);
      const total = /(\d+)\s+total/.exec(line)?.[1] ?? /\((\d+)\)/.exec(line)?.[1];
      return { passed, failed, total: total === undefined ? passed + failed : int(total) };
    },
  },
  // cargo: "test result: ok. 12 passed; 0 failed; 0 ignored"
  {
    pattern: /^test result: \w+\. (\d+) passed; (\d+) failed/m,
    read: (match) => ({ passed: int(match[1]), failed: int(match[2]), total: int(match[1]) + int(match[2]) }),
  },
  // pytest: "==== 2 failed, 10 passed in 0.12s ====" or "10 passed in 0.05s"
  {
    pattern: /^=*\s*(?:(\d+) failed, )?(\d+) passed(?:, (\d+) failed)?.* in [\d.]+s/m,
    read: (match) => {
      const failed = int(match[1] ?? match[3]);
      return { passed: int(match[2]), failed, total: int(match[2]) + failed };
    },
  },
  // mocha: "  12 passing (20ms)" and "  1 failing"
  {
    pattern: /^\s*(\d+) passing \(/m,
    read: (match, text) => {
      const failed = int(/^\s*(\d+) failing\s*$/m.exec(text)?.[1]);
      return { passed: int(match[1]), failed, total: int(match[1]) + failed };
    },
  },
];

export function parseTestCounts(output: string): TestCounts | null {
  const text = stripAnsi(output);
  for (const summary of summaries) {
    const match = summary.pattern.exec(text);
    if (match) {
      const counts = summary.read(match, text);
      if (counts) return counts;
    }
  }
  // go test -v: one line per test; plain TAP: "ok 1 - name" / "not ok 2 - name".
  const goPassed = text.match(/^\s*--- PASS: /gm)?.length ?? 0;
  const goFailed = text.match(/^\s*--- FAIL: /gm)?.length ?? 0;
  if (goPassed + goFailed > 0) return { passed: goPassed, failed: goFailed, total: goPassed + goFailed };
  const tapPassed = text.match(/^ok \d+/gm)?.length ?? 0;
  const tapFailed = text.match(/^not ok \d+/gm)?.length ?? 0;
  if (tapPassed + tapFailed > 0) return { passed: tapPassed, failed: tapFailed, total: tapPassed + tapFailed };
  return null;
}

/**
 * Line (or statement) coverage in percent, when the run printed a coverage summary: node's
 * `--experimental-test-coverage` table and istanbul/c8/jest ("all files | 85.71 | ..."),
 * pytest-cov ("TOTAL ... 92%"), go ("coverage: 85.7% of statements").
 */
export function parseCoverage(output: string): number | null {
  const text = stripAnsi(output);
  const table = /^[#ℹ\s]*all files\s*\|\s*([\d.]+)/im.exec(text);
  if (table?.[1]) return Number.parseFloat(table[1]);
  const total = /^TOTAL\s+(?:\d+\s+)+([\d.]+)%\s*$/m.exec(text);
  if (total?.[1]) return Number.parseFloat(total[1]);
  const go = /coverage: ([\d.]+)% of statements/.exec(text);
  if (go?.[1]) return Number.parseFloat(go[1]);
  return null;
}

/**
 * How many findings a linter reported: its own summary when it prints one (eslint "✖ 12
 * problems", ruff/flake8-style "Found 3 errors"), else one per `path:line[:col]` line, which is
 * what eslint's unix format, flake8, pylint, golangci-lint, tsc and most others print. A run that
 * passed with no such lines has none.
 */
export function parseLintFindings(output: string, exitCode: number | null): number | null {
  const text = stripAnsi(output);
  const problems = /✖ (\d+) problems?/.exec(text) ?? /^Found (\d+) (?:errors?|problems?|issues?)/m.exec(text);
  if (problems?.[1]) return int(problems[1]);
  const located = text.match(/^\S+?:\d+(?::\d+)?:?\s+\S/gm)?.length ?? 0;
  if (located > 0) return located;
  // A failing linter whose findings cannot be counted is not "no findings".
  return exitCode === 0 ? 0 : null;
}
