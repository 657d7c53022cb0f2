import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { ToolResult } from '../services/llm/provider.ts';
import { ToolError } from '../services/tools/tool-error.ts';
import { ToolTurns, ToolTurnsExhausted } from '../services/tools/tool-turns.ts';
import { createWorktreeTools, type WorktreeTools, type WorktreeToolsOptions } from '../services/tools/worktree-tools.ts';

/*
 * Real files and real git: a target repository on `main` and a task worktree on its own branch
 * beside it, with an `outside` folder next to both holding what no tool may read or change.
 */

interface Box {
  /** The temp folder holding everything. */
  base: string;
  repo: string;
  worktree: string;
  /** A folder outside the worktree with a secret in it. */
  outside: string;
  sh: (cwd: string, ...args: string[]) => string;
  tools: WorktreeTools;
  call: (name: string, input: unknown) => Promise<ToolResult>;
}

function box(t: ExecutionContext, extra: Partial<WorktreeToolsOptions> = {}): Box {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-tools-')));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const home = path.join(base, 'home');
  fs.mkdirSync(home);
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 'Test',
    GIT_AUTHOR_EMAIL: 'test@example.invalid',
    GIT_COMMITTER_NAME: 'Test',
    GIT_COMMITTER_EMAIL: 'test@example.invalid',
  };
  const sh = (cwd: string, ...args: string[]): string => execFileSync('git', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const repo = path.join(base, 'repo');
  const worktree = path.join(base, 'wt');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'TOP SECRET\n');
  fs.mkdirSync(path.join(repo, 'src'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'README.md'), '# demo\n');
  fs.writeFileSync(path.join(repo, 'src', 'app.js'), 'const a = 1;\nconst b = 2;\nexport function sum() {\n  return a + b;\n}\n');
  fs.writeFileSync(path.join(repo, '.gitignore'), 'node_modules/\ndist/\n');
  sh(repo, 'init', '-q', '-b', 'main');
  sh(repo, 'add', '-A');
  sh(repo, 'commit', '-q', '-m', 'first');
  sh(repo, 'worktree', 'add', '-q', '-b', 'duo-agent/feature/T1', worktree);
  const tools = createWorktreeTools({
    root: worktree,
    allowedCommands: ['npm', 'node', 'npx', 'make'],
    commandTimeoutMs: 10_000,
    outputCapBytes: 16 * 1024,
    env: { PATH: env.PATH, HOME: home },
    baseBranch: 'main',
    ...extra,
  });
  let next = 0;
  const call = (name: string, input: unknown): Promise<ToolResult> => tools.run({ id: `call_${(next += 1)}`, name, input });
  return { base, repo, worktree, outside, sh, tools, call };
}

/** A node one-liner as a command line; the script goes in double quotes. */
const nodeCommand = (script: string): string => `node -e "${script.replace(/["\\$`]/g, '\\$&')}"`;

function assertRefused(t: ExecutionContext, result: ToolResult, why: RegExp, label: string): void {
  t.true(result.isError, `${label}: expected a refusal, got ${result.content}`);
  t.regex(result.content, why, label);
  t.false(result.content.includes('\n'), `${label}: one line`);
  t.false(result.content.includes('TOP SECRET'), `${label}: nothing of the outside is shown`);
}

// ------------------------------------------------------------------ specs and inputs

test('every tool has a JSON Schema object from zod and a description', (t) => {
  const { tools } = box(t);
  t.deepEqual(tools.specs.map((spec) => spec.name), ['read_file', 'write_file', 'edit_file', 'list_files', 'search', 'run_command', 'git_diff']);
  for (const spec of tools.specs) {
    t.is(spec.inputSchema.type, 'object', spec.name);
    t.is(spec.inputSchema.$schema, undefined, `${spec.name}: no dialect key for the provider APIs`);
    t.true(spec.description.length > 20, spec.name);
  }
  const read = tools.specs.find((spec) => spec.name === 'read_file');
  t.deepEqual(read?.inputSchema.required, ['path']);
  t.deepEqual(Object.keys(read?.inputSchema.properties as object), ['path', 'offset', 'limit']);
  t.is(read?.inputSchema.additionalProperties, false);
});

test('an invalid input is an error result with a one-line reason, never a throw', async (t) => {
  const { call } = box(t);
  const cases: [string, unknown, RegExp][] = [
    ['read_file', {}, /read_file: invalid input: path: /],
    ['read_file', { path: 5 }, /path: .*string/],
    ['read_file', { path: 'README.md', offset: 0 }, /offset: /],
    ['read_file', { path: 'README.md', limit: 1.5 }, /limit: /],
    ['read_file', null, /invalid input/],
    ['write_file', { path: 'x.txt' }, /content: /],
    ['edit_file', { path: 'README.md', old_text: '', new_text: 'x' }, /old_text: /],
    ['run_command', { command: '' }, /command: /],
    ['run_command', { command: 'node -v', shell: true }, /unrecognized key|shell/i],
    ['search', { pattern: 'x', regex: 'yes' }, /regex: /],
    ['delete_everything', {}, /unknown tool "delete_everything"; available: read_file/],
  ];
  for (const [name, input, why] of cases) {
    const result = await call(name, input);
    t.true(result.isError, `${name} ${JSON.stringify(input)}`);
    t.regex(result.content, why, `${name} ${JSON.stringify(input)}`);
    t.false(result.content.includes('\n'), `${name}: one line`);
  }
});

test('results carry the id of their call', async (t) => {
  const { tools } = box(t);
  const result = await tools.run({ id: 'toolu_42', name: 'read_file', input: { path: 'README.md' } });
  t.deepEqual(result, { id: 'toolu_42', content: '# demo\n' });
});

// ------------------------------------------------------------------ files

test('read_file returns text, reads ranges of lines, and says where to continue', async (t) => {
  const { call, worktree } = box(t);
  t.is((await call('read_file', { path: 'src/app.js' })).content, 'const a = 1;\nconst b = 2;\nexport function sum() {\n  return a + b;\n}\n');
  const range = await call('read_file', { path: './src/app.js', offset: 2, limit: 2 });
  t.is(range.content, 'const b = 2;\nexport function sum() {\n[… lines 2-3 of 5 shown; continue with offset=4]');
  t.is((await call('read_file', { path: 'src/app.js', offset: 5 })).content, '}\n');
  const past = await call('read_file', { path: 'src/app.js', offset: 9 });
  t.true(past.isError);
  t.regex(past.content, /offset 9 is past the end: src\/app\.js has 5 lines/);
  fs.writeFileSync(path.join(worktree, 'crlf.txt'), 'one\r\ntwo\r\n');
  t.is((await call('read_file', { path: 'crlf.txt' })).content, 'one\r\ntwo\r\n', 'line endings are kept, so edit_file can match them');
  fs.writeFileSync(path.join(worktree, 'empty.txt'), '');
  t.is((await call('read_file', { path: 'empty.txt' })).content, '[empty.txt is empty]');
});

test('read_file caps a long file with a marker and refuses binaries, folders and missing files', async (t) => {
  const { call, worktree } = box(t, { outputCapBytes: 1000 });
  fs.writeFileSync(path.join(worktree, 'big.txt'), Array.from({ length: 500 }, (_, index) => `line ${index + 1}`).join('\n'));
  const big = await call('read_file', { path: 'big.txt' });
  t.falsy(big.isError);
  t.true(Buffer.byteLength(big.content) < 1200, `${Buffer.byteLength(big.content)} bytes`);
  t.true(big.content.startsWith('line 1\nline 2\n'));
  const marker = /\[… lines 1-(\d+) of 500 shown; output cap of 1000 bytes reached; continue with offset=(\d+)\]$/.exec(big.content);
  t.truthy(marker, big.content.slice(-200));
  t.is(Number(marker?.[2]), Number(marker?.[1]) + 1);
  const next = await call('read_file', { path: 'big.txt', offset: Number(marker?.[2]), limit: 1 });
  t.true(next.content.startsWith(`line ${marker?.[2]}\n`));

  fs.writeFileSync(path.join(worktree, 'one-line.min.js'), 'x'.repeat(5000));
  const long = await call('read_file', { path: 'one-line.min.js' });
  t.true(Buffer.byteLength(long.content) < 1200);
  t.regex(long.content, /more bytes not shown/);

  fs.writeFileSync(path.join(worktree, 'logo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d]));
  assertRefused(t, await call('read_file', { path: 'logo.png' }), /read_file: logo\.png is a binary file \(12 bytes\)/, 'binary');
  assertRefused(t, await call('read_file', { path: 'src' }), /src is a directory; use list_files/, 'folder');
  assertRefused(t, await call('read_file', { path: 'nope.txt' }), /nope\.txt does not exist/, 'missing');
});

test('write_file creates folders and files, and replaces a file', async (t) => {
  const { call, worktree } = box(t);
  const created = await call('write_file', { path: 'lib/deep/er/new.ts', content: 'export const x = 1;\n' });
  t.falsy(created.isError);
  t.is(created.content, 'created lib/deep/er/new.ts (20 bytes)');
  t.is(fs.readFileSync(path.join(worktree, 'lib/deep/er/new.ts'), 'utf8'), 'export const x = 1;\n');
  const replaced = await call('write_file', { path: 'README.md', content: '# new\n' });
  t.is(replaced.content, 'replaced README.md (6 bytes)');
  t.is(fs.readFileSync(path.join(worktree, 'README.md'), 'utf8'), '# new\n');
  assertRefused(t, await call('write_file', { path: 'src', content: 'x' }), /src is a directory/, 'folder');
});

test('edit_file replaces exactly one occurrence, literally', async (t) => {
  const { call, worktree } = box(t);
  const edited = await call('edit_file', { path: 'src/app.js', old_text: '  return a + b;', new_text: '  return a + b + $&;' });
  t.falsy(edited.isError, edited.content);
  t.is(edited.content, 'edited src/app.js at line 4');
  t.is(fs.readFileSync(path.join(worktree, 'src/app.js'), 'utf8'), 'const a = 1;\nconst b = 2;\nexport function sum() {\n  return a + b + $&;\n}\n', '"$&" is not a replacement pattern');
});

test('edit_file says when old_text is missing or ambiguous, and changes nothing', async (t) => {
  const { call, worktree } = box(t);
  const before = fs.readFileSync(path.join(worktree, 'src/app.js'), 'utf8');
  const missing = await call('edit_file', { path: 'src/app.js', old_text: 'const c = 3;', new_text: 'x' });
  t.true(missing.isError);
  t.regex(missing.content, /old_text was not found in src\/app\.js/);
  const ambiguous = await call('edit_file', { path: 'src/app.js', old_text: 'const ', new_text: 'let ' });
  t.true(ambiguous.isError);
  t.regex(ambiguous.content, /old_text was found 2 times in src\/app\.js; include more surrounding text/);
  const three = await call('edit_file', { path: 'src/app.js', old_text: 'a', new_text: 'z' });
  t.regex(three.content, /found \d+ times/);
  t.is(fs.readFileSync(path.join(worktree, 'src/app.js'), 'utf8'), before);
  assertRefused(t, await call('edit_file', { path: 'gone.js', old_text: 'a', new_text: 'b' }), /gone\.js does not exist/, 'missing file');
});

test('list_files lists a folder or the whole tree, skipping .git and node_modules', async (t) => {
  const { call, worktree } = box(t);
  fs.mkdirSync(path.join(worktree, 'node_modules', 'left-pad'), { recursive: true });
  fs.writeFileSync(path.join(worktree, 'node_modules', 'left-pad', 'index.js'), '');
  fs.mkdirSync(path.join(worktree, 'src', 'node_modules'));
  const top = await call('list_files', {});
  t.is(top.content, '.gitignore\nREADME.md\nsrc/\n[skipped: .git, node_modules]');
  const tree = await call('list_files', { path: '.', recursive: true });
  t.is(tree.content, '.gitignore\nREADME.md\nsrc/\nsrc/app.js\n[skipped: .git, node_modules]');
  t.is((await call('list_files', { path: 'src' })).content, 'src/app.js\n[skipped: node_modules]');
  assertRefused(t, await call('list_files', { path: 'README.md' }), /README\.md is a file; use read_file/, 'a file');
  assertRefused(t, await call('list_files', { path: 'nowhere' }), /nowhere does not exist/, 'missing');
});

test('list_files is capped', async (t) => {
  const { call, worktree } = box(t, { outputCapBytes: 300 });
  fs.mkdirSync(path.join(worktree, 'many'));
  for (let index = 0; index < 100; index += 1) fs.writeFileSync(path.join(worktree, 'many', `file-${String(index).padStart(3, '0')}.txt`), '');
  const listed = await call('list_files', { path: 'many' });
  t.true(Buffer.byteLength(listed.content) < 400, `${Buffer.byteLength(listed.content)} bytes`);
  t.true(listed.content.startsWith('many/file-000.txt\n'));
  t.regex(listed.content, /\[… \d+ more bytes not shown; list a subfolder\]$/);
});

// ------------------------------------------------------------------ search

test('search is literal by default and answers file:line: text', async (t) => {
  const { call, worktree } = box(t);
  fs.writeFileSync(path.join(worktree, 'notes.md'), 'a+b is the sum\naxb is not\n');
  fs.mkdirSync(path.join(worktree, 'node_modules'));
  fs.writeFileSync(path.join(worktree, 'node_modules', 'dep.js'), 'return a + b;\n');
  const found = await call('search', { pattern: 'a + b' });
  t.falsy(found.isError, found.content);
  t.is(found.content, 'src/app.js:4:   return a + b;');
  t.is((await call('search', { pattern: 'a+b' })).content, 'notes.md:1: a+b is the sum', 'untracked files are searched; "+" is literal');
  t.is((await call('search', { pattern: 'const', path: 'src' })).content, 'src/app.js:1: const a = 1;\nsrc/app.js:2: const b = 2;');
  t.is((await call('search', { pattern: 'a.b' })).content, 'no match for "a.b" in .');
  t.is((await call('search', { pattern: 'a.b', regex: true })).content, 'notes.md:1: a+b is the sum\nnotes.md:2: axb is not');
  t.is((await call('search', { pattern: '^const [ab]', regex: true, path: 'src/app.js' })).content, 'src/app.js:1: const a = 1;\nsrc/app.js:2: const b = 2;');
  const bad = await call('search', { pattern: 'a(', regex: true });
  t.true(bad.isError);
  t.regex(bad.content, /^search: search failed: /);
});

test('search output is capped', async (t) => {
  const { call, worktree } = box(t, { outputCapBytes: 500 });
  fs.writeFileSync(path.join(worktree, 'many.txt'), Array.from({ length: 2000 }, (_, index) => `needle ${index}`).join('\n'));
  const found = await call('search', { pattern: 'needle' });
  t.true(Buffer.byteLength(found.content) < 600, `${Buffer.byteLength(found.content)} bytes`);
  t.true(found.content.startsWith('many.txt:1: needle 0\n'));
  t.regex(found.content, /not shown/);
});

// ------------------------------------------------------------------ confinement

test('paths outside the worktree are refused by every file tool', async (t) => {
  const { call, worktree, outside } = box(t);
  fs.symlinkSync('/etc', path.join(worktree, 'etc-link'));
  fs.symlinkSync('/etc/passwd', path.join(worktree, 'passwd-link'));
  fs.symlinkSync(outside, path.join(worktree, 'outside-dir'));
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(worktree, 'secret-link'));
  const escapes: [string, RegExp][] = [
    ['../outside/secret.txt', /escapes the worktree/],
    ['src/../../outside/secret.txt', /escapes the worktree/],
    ['/etc/passwd', /absolute/],
    [path.join(outside, 'secret.txt'), /absolute/],
    ['etc-link/passwd', /symlink etc-link to \/etc/],
    ['passwd-link', /symlink passwd-link/],
    ['outside-dir/secret.txt', /symlink outside-dir .*outside the worktree/],
    ['secret-link', /outside the worktree/],
    ['.git', /\.git/],
    ['.git/config', /points into \.git/],
    ['src/../.git/HEAD', /\.git/],
  ];
  for (const [target, why] of escapes) {
    assertRefused(t, await call('read_file', { path: target }), why, `read_file ${target}`);
    assertRefused(t, await call('write_file', { path: target, content: 'pwned' }), why, `write_file ${target}`);
    assertRefused(t, await call('edit_file', { path: target, old_text: 'TOP', new_text: 'pwned' }), why, `edit_file ${target}`);
  }
  assertRefused(t, await call('write_file', { path: 'outside-dir/new.txt', content: 'pwned' }), /outside the worktree/, 'write a new file through a symlinked folder');
  assertRefused(t, await call('write_file', { path: 'outside-dir/sub/new.txt', content: 'pwned' }), /outside the worktree/, 'write into a new folder through a symlinked folder');
  for (const target of ['..', '/etc', 'etc-link', 'outside-dir', '.git']) {
    assertRefused(t, await call('list_files', { path: target }), /refused path/, `list_files ${target}`);
    assertRefused(t, await call('search', { pattern: 'TOP SECRET', path: target }), /refused path/, `search ${target}`);
  }
  t.deepEqual(fs.readdirSync(outside), ['secret.txt'], 'nothing was created outside');
  t.is(fs.readFileSync(path.join(outside, 'secret.txt'), 'utf8'), 'TOP SECRET\n');
  t.is((await call('search', { pattern: 'TOP SECRET' })).content, 'no match for "TOP SECRET" in .', 'a search of the whole worktree does not follow symlinks out');
  const listing = await call('list_files', { recursive: true });
  t.regex(listing.content, /^outside-dir -> /m, 'a symlink is listed, not followed');
  t.false(listing.content.includes('outside-dir/secret.txt'), 'nor walked into');
});

test('a symlink that stays inside the worktree is followed', async (t) => {
  const { call, worktree } = box(t);
  fs.symlinkSync('src', path.join(worktree, 'source'));
  t.is((await call('read_file', { path: 'source/app.js', limit: 1 })).content, 'const a = 1;\n[… lines 1-1 of 5 shown; continue with offset=2]');
  t.is((await call('list_files', { path: 'source' })).content, 'src/app.js', 'shown by its real place');
});

// ------------------------------------------------------------------ run_command

test('run_command runs an allowed command in the worktree and reports its exit code', async (t) => {
  const { call, worktree } = box(t);
  const ok = await call('run_command', { command: nodeCommand("console.log(process.cwd()); console.log('it is', 6 * 7)") });
  t.falsy(ok.isError, ok.content);
  t.regex(ok.content, /^\$ node -e .*\nexit code 0 \(\d+ ms\)\n/);
  t.true(ok.content.includes(`${worktree}\nit is 42\n`), ok.content);
  const failing = await call('run_command', { command: nodeCommand("console.error('2 tests failed'); process.exit(3)") });
  t.falsy(failing.isError, 'a failing command is an answer, not a broken tool');
  t.regex(failing.content, /exit code 3 .*\n2 tests failed/);
  const secretless = await call('run_command', { command: nodeCommand('console.log(Object.keys(process.env).sort().join(","))') });
  t.regex(secretless.content, /\nHOME,PATH\n/, 'only the given env');
});

test('run_command refuses commands that are not allowed', async (t) => {
  const { call, base } = box(t);
  const refused: [string, RegExp][] = [
    ['rm -rf /', /"rm" is not an allowed command; allowed: npm, node, npx, make/],
    ['curl https://example.com/install.sh', /"curl" is not an allowed command/],
    ['bash -c "node -v"', /"bash" is not an allowed command/],
    [`${process.execPath} -v`, /absolute/],
    ['/usr/bin/node -v', /absolute/],
    ['../bin/node -v', /escapes the worktree/],
    ['./rm -rf /', /"rm" is not an allowed command/],
  ];
  for (const [command, why] of refused) assertRefused(t, await call('run_command', { command }), why, command);
  t.true(fs.existsSync(base), 'nothing was removed');
});

test('run_command never uses a shell: injection attempts are refused or passed literally', async (t) => {
  const { call, worktree, base } = box(t);
  const pwned = path.join(base, 'pwned');
  const refused = [
    `node -e "1" ; touch ${pwned}`,
    `node -e "1" && touch ${pwned}`,
    `node -e "1" || touch ${pwned}`,
    `node -e "1" | touch ${pwned}`,
    `node -e "1" > ${pwned}`,
    `node $(touch ${pwned})`,
    `node \`touch ${pwned}\``,
    `node -e "1"\ntouch ${pwned}`,
    `node -e "1" & touch ${pwned}`,
  ];
  for (const command of refused) {
    const result = await call('run_command', { command });
    t.true(result.isError, command);
    t.regex(result.content, /run_command: the command .* needs a shell|line break/, command);
  }
  // Inside quotes the same text is only an argument: node sees it as a script and fails on it.
  const literal = [`node -e "$(touch ${pwned})"`, `node -e '\`touch ${pwned}\`; process.exit(5)'`, `node -e 'process.exit(4)' ; touch ${pwned}`];
  const quotedDollar = await call('run_command', { command: literal[0] ?? '' });
  t.falsy(quotedDollar.isError);
  t.regex(quotedDollar.content, /exit code 1/);
  const quotedBackticks = await call('run_command', { command: literal[1] ?? '' });
  t.regex(quotedBackticks.content, /exit code 5/, 'the backticks were a JS template literal, not a command');
  t.true((await call('run_command', { command: literal[2] ?? '' })).isError);
  t.false(fs.existsSync(pwned), 'no command ran outside');
  t.false(fs.existsSync(path.join(worktree, 'touch')));
});

test('run_command kills a command that runs too long', async (t) => {
  const { call } = box(t, { commandTimeoutMs: 500 });
  const started = Date.now();
  const result = await call('run_command', { command: nodeCommand("console.log('started'); setTimeout(() => console.log('finished'), 60000)") });
  t.true(result.isError);
  t.regex(result.content, /timed out after 500 ms \(process group killed\)/);
  const output = result.content.split('\n').slice(2).join('\n');
  t.regex(output, /^started\n/);
  t.false(output.includes('finished'));
  t.true(Date.now() - started < 10_000);
});

test('run_command keeps only the end of a long output', async (t) => {
  const { call } = box(t, { outputCapBytes: 1000 });
  const result = await call('run_command', { command: nodeCommand("for (let i = 0; i < 5000; i++) console.log('line ' + i)") });
  t.falsy(result.isError);
  t.true(Buffer.byteLength(result.content) < 1300, `${Buffer.byteLength(result.content)} bytes`);
  t.regex(result.content, /bytes truncated\]/);
  t.regex(result.content, /line 4999\n/);
  t.false(result.content.includes('line 0\n'));
});

test('run_command reports a missing program as an error result', async (t) => {
  const { call } = box(t, { allowedCommands: ['moderator-no-such-tool'] });
  const result = await call('run_command', { command: 'moderator-no-such-tool -q' });
  t.true(result.isError);
  t.regex(result.content, /did not start .*\ncommand not found: moderator-no-such-tool/);
});

// ------------------------------------------------------------------ git_diff

test('git_diff shows the task against its base branch, and the staged changes against HEAD', async (t) => {
  const { call, worktree, sh } = box(t);
  t.regex((await call('git_diff', {})).content, /against main .*\n\[no changes to tracked files\]/);
  fs.writeFileSync(path.join(worktree, 'README.md'), '# demo\n\nCommitted on the task branch.\n');
  sh(worktree, 'commit', '-q', '-am', 'task commit');
  fs.writeFileSync(path.join(worktree, 'src', 'app.js'), 'const a = 10;\n');
  fs.writeFileSync(path.join(worktree, 'new-file.ts'), 'export {};\n');
  const diff = await call('git_diff', {});
  t.falsy(diff.isError, diff.content);
  t.regex(diff.content, /^diff of the worktree against main \(merge base [0-9a-f]{10}\)/);
  t.regex(diff.content, /untracked files \(not in the diff above\): new-file\.ts/);
  t.regex(diff.content, /diff --git a\/README\.md b\/README\.md[\s\S]*\+Committed on the task branch\./, 'committed changes');
  t.regex(diff.content, /diff --git a\/src\/app\.js b\/src\/app\.js[\s\S]*\+const a = 10;/, 'uncommitted changes');

  t.is((await call('git_diff', { staged: true })).content, '[nothing staged]');
  sh(worktree, 'add', 'src/app.js');
  const staged = await call('git_diff', { staged: true });
  t.regex(staged.content, /diff --git a\/src\/app\.js b\/src\/app\.js/);
  t.false(staged.content.includes('README.md'), 'only what is staged');
});

// ------------------------------------------------------------------ turns and abort

test('ToolTurns allows the configured number of turns, then throws', (t) => {
  const turns = new ToolTurns(2);
  turns.take();
  turns.take();
  t.is(turns.remaining, 0);
  const error = t.throws(() => turns.take(), { instanceOf: ToolTurnsExhausted });
  t.true(error instanceof ToolError);
  t.is(error?.code, 'tool');
  t.regex(error?.message ?? '', /all of its 2 tool turns/);
  t.is(turns.used, 2);
  const resumed = new ToolTurns(3, 2);
  resumed.take();
  t.throws(() => resumed.take(), { instanceOf: ToolTurnsExhausted });
  t.throws(() => new ToolTurns(0), { instanceOf: RangeError });
});

test('a call aborted before it starts does nothing', async (t) => {
  const { tools, worktree } = box(t);
  const controller = new AbortController();
  controller.abort();
  const result = await tools.run({ id: 'c1', name: 'write_file', input: { path: 'x.txt', content: 'x' } }, controller.signal);
  t.true(result.isError);
  t.false(fs.existsSync(path.join(worktree, 'x.txt')));
});

test('createWorktreeTools refuses a relative or missing root', (t) => {
  const options = { allowedCommands: [], commandTimeoutMs: 1000, outputCapBytes: 1000, env: {}, baseBranch: 'main' };
  t.throws(() => createWorktreeTools({ ...options, root: 'relative/wt' }), { instanceOf: ToolError, message: /absolute/ });
  t.throws(() => createWorktreeTools({ ...options, root: path.join(os.tmpdir(), 'moderator-no-such-worktree') }), { instanceOf: ToolError, message: /does not exist/ });
});
