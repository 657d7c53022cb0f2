// The todo command line: parses argv, calls the store, prints the result.
// Exit codes: 0 ok, 1 error, 2 usage.
import { TodoFileError, TodoStore, defaultTodoFile } from './store.js';

export const USAGE = `Usage: todo <command> [args]

Commands:
  add <text>   add a todo
  list         list all todos
  done <id>    mark a todo as done
  rm <id>      remove a todo
  help         show this help

Todos are stored in $TODO_FILE (default: ./todos.json).`;

/** The user typed something we cannot run: exit 2 with the usage text. */
class UsageError extends Error {}

/** The command was well formed but failed: exit 1 with a one-line message. */
class CliError extends Error {}

function parseId(command, args) {
  if (args.length !== 1) throw new UsageError(`${command} takes exactly one id`);
  if (!/^[1-9][0-9]*$/.test(args[0])) throw new UsageError(`invalid id: ${args[0]}`);
  return Number(args[0]);
}

function formatTodo(todo) {
  return `${todo.done ? '[x]' : '[ ]'} ${todo.id}. ${todo.text}`;
}

/** Runs one command and returns its exit code. */
export function run(argv, { env = process.env, stdout = process.stdout, stderr = process.stderr } = {}) {
  const [command, ...args] = argv;
  const store = new TodoStore(defaultTodoFile(env));
  try {
    switch (command) {
      case 'add': {
        const text = args.join(' ').trim();
        if (text === '') throw new UsageError('add needs the text of the todo');
        const todo = store.add(text);
        stdout.write(`added ${todo.id}: ${todo.text}\n`);
        return 0;
      }
      case 'list': {
        if (args.length > 0) throw new UsageError('list takes no arguments');
        const todos = store.list();
        if (todos.length === 0) stdout.write('no todos\n');
        for (const todo of todos) stdout.write(formatTodo(todo) + '\n');
        return 0;
      }
      case 'done': {
        const id = parseId('done', args);
        const todo = store.complete(id);
        if (!todo) throw new CliError(`no todo with id ${id}`);
        stdout.write(`done ${todo.id}: ${todo.text}\n`);
        return 0;
      }
      case 'rm': {
        const id = parseId('rm', args);
        const todo = store.remove(id);
        if (!todo) throw new CliError(`no todo with id ${id}`);
        stdout.write(`removed ${todo.id}: ${todo.text}\n`);
        return 0;
      }
      case 'help':
      case '--help':
      case '-h':
        stdout.write(USAGE + '\n');
        return 0;
      case undefined:
        throw new UsageError('missing command');
      default:
        throw new UsageError(`unknown command: ${command}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      stderr.write(`todo: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof CliError || err instanceof TodoFileError) {
      stderr.write(`todo: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
