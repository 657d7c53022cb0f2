import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TodoFileError, TodoStore, defaultTodoFile } from '../src/store.js';

let dir;
let file;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'todo-store-'));
  file = join(dir, 'todos.json');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('a missing file is an empty list', () => {
  assert.deepEqual(new TodoStore(file).list(), []);
});

test('add assigns increasing ids and persists the todos', () => {
  const store = new TodoStore(file);
  assert.deepEqual(store.add('buy milk'), { id: 1, text: 'buy milk', done: false });
  assert.deepEqual(store.add('walk the dog'), { id: 2, text: 'walk the dog', done: false });
  const reopened = new TodoStore(file);
  assert.deepEqual(reopened.list().map((t) => t.text), ['buy milk', 'walk the dog']);
});

test('add trims the text and rejects empty text', () => {
  const store = new TodoStore(file);
  assert.equal(store.add('  call mum  ').text, 'call mum');
  assert.throws(() => store.add('   '), /must not be empty/);
  assert.equal(store.list().length, 1);
});

test('complete marks a todo as done', () => {
  const store = new TodoStore(file);
  store.add('buy milk');
  store.add('walk the dog');
  assert.deepEqual(store.complete(2), { id: 2, text: 'walk the dog', done: true });
  assert.deepEqual(store.list().map((t) => t.done), [false, true]);
});

test('remove deletes a todo and its id is not reused', () => {
  const store = new TodoStore(file);
  store.add('buy milk');
  store.add('walk the dog');
  assert.deepEqual(store.remove(2), { id: 2, text: 'walk the dog', done: false });
  assert.deepEqual(store.list().map((t) => t.id), [1]);
  assert.equal(store.add('water the plants').id, 3);
});

test('complete and remove return null for an unknown id and change nothing', () => {
  const store = new TodoStore(file);
  store.add('buy milk');
  const before = readFileSync(file, 'utf8');
  assert.equal(store.complete(99), null);
  assert.equal(store.remove(99), null);
  assert.equal(readFileSync(file, 'utf8'), before);
});

test('save is atomic: only the todo file is left, holding valid JSON', () => {
  const store = new TodoStore(file);
  store.add('buy milk');
  store.complete(1);
  assert.deepEqual(readdirSync(dir), ['todos.json']);
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), {
    nextId: 2,
    todos: [{ id: 1, text: 'buy milk', done: true }],
  });
});

test('defaultTodoFile uses TODO_FILE, else ./todos.json', () => {
  assert.equal(defaultTodoFile({ TODO_FILE: file }), file);
  assert.equal(defaultTodoFile({}), resolve('todos.json'));
});

test('a file that is not valid JSON throws a TodoFileError naming the file', () => {
  writeFileSync(file, '{"nextId": 2, "todos": [');
  assert.throws(() => new TodoStore(file).list(), (err) => {
    assert.ok(err instanceof TodoFileError);
    assert.ok(err.message.startsWith(`todo file ${file} is not valid JSON: `), err.message);
    assert.ok(err.cause instanceof SyntaxError);
    return true;
  });
});

test('the JSON error stays on one line even when the file has several', () => {
  writeFileSync(file, '{\n  "nextId": 2,\n  oops\n}\n');
  assert.throws(() => new TodoStore(file).list(), (err) => {
    assert.ok(err instanceof TodoFileError);
    assert.ok(!err.message.includes('\n'), err.message);
    return true;
  });
});

test('valid JSON that is not a todo list throws a TodoFileError', () => {
  for (const content of ['[]', 'null', '{"todos": []}', '{"nextId": 1, "todos": {}}']) {
    writeFileSync(file, content);
    assert.throws(() => new TodoStore(file).list(), {
      name: 'TodoFileError',
      message: `todo file ${file} does not contain a todo list`,
    });
  }
});

test('a corrupted file is never overwritten', () => {
  writeFileSync(file, 'not json at all');
  assert.throws(() => new TodoStore(file).add('buy milk'), TodoFileError);
  assert.equal(readFileSync(file, 'utf8'), 'not json at all');
});

test('an empty file is an empty list', () => {
  writeFileSync(file, '\n');
  const store = new TodoStore(file);
  assert.deepEqual(store.list(), []);
  assert.equal(store.add('buy milk').id, 1);
});
