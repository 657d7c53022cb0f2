import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/todo.js', import.meta.url));

let dir;
let file;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'todo-cli-'));
  file = join(dir, 'todos.json');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the real CLI in a child process against the temporary todo file. */
function todo(...args) {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, TODO_FILE: file },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('add then list shows the todos in order', () => {
  assert.deepEqual(todo('add', 'buy', 'milk'), { code: 0, stdout: 'added 1: buy milk\n', stderr: '' });
  assert.equal(todo('add', 'walk the dog').code, 0);
  assert.deepEqual(todo('list'), { code: 0, stdout: '[ ] 1. buy milk\n[ ] 2. walk the dog\n', stderr: '' });
});

test('list with no todos says so', () => {
  assert.deepEqual(todo('list'), { code: 0, stdout: 'no todos\n', stderr: '' });
});

test('done marks a todo as done', () => {
  todo('add', 'buy milk');
  assert.deepEqual(todo('done', '1'), { code: 0, stdout: 'done 1: buy milk\n', stderr: '' });
  assert.equal(todo('list').stdout, '[x] 1. buy milk\n');
});

test('rm removes a todo', () => {
  todo('add', 'buy milk');
  todo('add', 'walk the dog');
  assert.deepEqual(todo('rm', '1'), { code: 0, stdout: 'removed 1: buy milk\n', stderr: '' });
  assert.equal(todo('list').stdout, '[ ] 2. walk the dog\n');
});

test('done and rm with an unknown id exit 1 with a one-line message', () => {
  todo('add', 'buy milk');
  for (const command of ['done', 'rm']) {
    assert.deepEqual(todo(command, '99'), { code: 1, stdout: '', stderr: 'todo: no todo with id 99\n' }, command);
  }
  assert.equal(todo('list').stdout, '[ ] 1. buy milk\n');
});

test('done and rm on an empty list exit 1 too', () => {
  assert.deepEqual(todo('done', '1'), { code: 1, stdout: '', stderr: 'todo: no todo with id 1\n' });
  assert.deepEqual(todo('rm', '1'), { code: 1, stdout: '', stderr: 'todo: no todo with id 1\n' });
});

test('rm of an id that was already removed exits 1', () => {
  todo('add', 'buy milk');
  assert.equal(todo('rm', '1').code, 0);
  assert.deepEqual(todo('rm', '1'), { code: 1, stdout: '', stderr: 'todo: no todo with id 1\n' });
});

test('help prints the usage and exits 0', () => {
  const result = todo('help');
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^Usage: todo <command>/);
});

test('usage mistakes exit 2 with a message and the usage on stderr', () => {
  const cases = [[], ['frobnicate'], ['add'], ['list', 'extra'], ['done'], ['done', 'abc'], ['rm', '0']];
  for (const args of cases) {
    const result = todo(...args);
    assert.equal(result.code, 2, `todo ${args.join(' ')}`);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^todo: .+\n\nUsage: todo/);
  }
});

test('a corrupted todo file is reported on one line with exit 1, not a stack trace', () => {
  const corrupted = '{\n  "nextId": 2,\n  "todos": [\n';
  writeFileSync(file, corrupted);
  for (const args of [['list'], ['add', 'buy milk'], ['done', '1'], ['rm', '1']]) {
    const result = todo(...args);
    assert.equal(result.code, 1, `todo ${args.join(' ')}`);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^todo: todo file .+ is not valid JSON: [^\n]+\n$/);
    assert.ok(result.stderr.includes(file), result.stderr);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  }
  assert.equal(readFileSync(file, 'utf8'), corrupted);
});

test('a todo file that is JSON but not a todo list exits 1 too', () => {
  writeFileSync(file, '[1, 2, 3]\n');
  assert.deepEqual(todo('list'), {
    code: 1,
    stdout: '',
    stderr: `todo: todo file ${file} does not contain a todo list\n`,
  });
});
