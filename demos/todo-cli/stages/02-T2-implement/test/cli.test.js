import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
  const result = todo('done', '1');
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^done 1/);
  assert.equal(todo('list').stdout, '[x] 1. buy milk\n');
});

test('rm removes a todo', () => {
  todo('add', 'buy milk');
  todo('add', 'walk the dog');
  const result = todo('rm', '1');
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^removed 1/);
  assert.equal(todo('list').stdout, '[ ] 2. walk the dog\n');
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
