// Todo storage: one JSON file holding { "nextId": 3, "todos": [{ "id": 1, "text": "...", "done": false }] }.
// Every operation reads the file, changes it and writes it back, so two commands never share state in memory.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Where the todos live: $TODO_FILE if set, else ./todos.json in the current directory. */
export function defaultTodoFile(env = process.env) {
  return resolve(env.TODO_FILE || 'todos.json');
}

function emptyData() {
  return { nextId: 1, todos: [] };
}

/** The todo file exists but cannot be used: the CLI reports it on one line and exits 1. */
export class TodoFileError extends Error {
  constructor(file, problem, options) {
    super(`todo file ${file} ${problem}`, options);
    this.name = 'TodoFileError';
    this.file = file;
  }
}

function isTodoData(data) {
  return (
    data !== null &&
    typeof data === 'object' &&
    Number.isInteger(data.nextId) &&
    Array.isArray(data.todos)
  );
}

/**
 * Reads the todo file. A file that does not exist yet, or is empty, is an empty list.
 * A file that is not valid JSON, or not a todo list, throws a TodoFileError; the file
 * itself is left untouched so nothing the user wrote is lost.
 */
export function load(file) {
  let raw;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return emptyData();
    throw err;
  }
  if (raw.trim() === '') return emptyData();
  let data;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    // V8 quotes the offending text, newlines included; keep the message on one line.
    const reason = err.message.replace(/\s+/g, ' ');
    throw new TodoFileError(file, `is not valid JSON: ${reason}`, { cause: err });
  }
  if (!isTodoData(data)) throw new TodoFileError(file, 'does not contain a todo list');
  return data;
}

/**
 * Writes the todo file atomically: the data goes to a temporary file in the same
 * directory, which is then renamed over the real one. A crash mid-write leaves the
 * old file intact instead of a half-written one.
 */
export function save(file, data) {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n');
  renameSync(tmp, file);
}

export class TodoStore {
  constructor(file = defaultTodoFile()) {
    this.file = file;
  }

  /** All todos, in the order they were added. */
  list() {
    return load(this.file).todos;
  }

  /** Adds a todo and returns it. Ids start at 1 and are never reused. */
  add(text) {
    const trimmed = String(text).trim();
    if (trimmed === '') throw new TypeError('todo text must not be empty');
    const data = load(this.file);
    const todo = { id: data.nextId, text: trimmed, done: false };
    data.todos.push(todo);
    data.nextId += 1;
    save(this.file, data);
    return todo;
  }

  /** Marks a todo as done and returns it, or returns null if there is no todo with that id. */
  complete(id) {
    const data = load(this.file);
    const todo = data.todos.find((t) => t.id === id);
    if (!todo) return null;
    todo.done = true;
    save(this.file, data);
    return todo;
  }

  /** Removes a todo and returns it, or returns null if there is no todo with that id. */
  remove(id) {
    const data = load(this.file);
    const index = data.todos.findIndex((t) => t.id === id);
    if (index === -1) return null;
    const [todo] = data.todos.splice(index, 1);
    save(this.file, data);
    return todo;
  }
}
