/**
 * The questions a run asks a person on the terminal (cli/ask-person.ts), over streams instead of a
 * TTY: each clarify question in turn, kept with its answer before the orchestrator hears it;
 * Enter keeps the assumption; an answer given elsewhere ends the prompt; the budget question takes
 * continue or stop.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'ava';
import { assign, createActor, setup, type AnyEventObject } from 'xstate';
import { TerminalQuestions } from '../cli/ask-person.ts';
import type { Asking } from '../machines/orchestrator.machine.ts';
import { Store } from '../services/store/store.ts';

/** A root with the orchestrator's `asking`, recording what it hears. */
const root = setup({ types: { context: {} as { asking: Asking | null; heard: AnyEventObject[] }, events: {} as AnyEventObject } }).createMachine({
  context: { asking: null, heard: [] },
  on: {
    ask: { actions: assign({ asking: ({ event }) => event.asking as Asking }) },
    done: { actions: assign({ asking: null }) },
    '*': { actions: assign({ heard: ({ context, event }) => [...context.heard, event] }) },
  },
});

function setupRun(t: { teardown: (fn: () => void) => void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-ask-'));
  const store = Store.open(path.join(dir, 'moderator.db'));
  store.runs.create({ id: 'r1', target: dir, requirements: 'r', settings: {}, snapshotVersion: 1, machineFingerprint: 'f' });
  store.runs.setScope('r1', { summary: 's', assumptions: ['a JSON file'], questions: ['Which storage?', 'Which port?'] });
  store.questions.add('r1', [{ id: 'Q1', text: 'Which storage?' }, { id: 'Q2', text: 'Which port?' }]);
  const actor = createActor(root).start();
  const input = new PassThrough();
  const output = new PassThrough();
  let printed = '';
  output.on('data', (chunk: Buffer) => (printed += chunk.toString()));
  const terminal = new TerminalQuestions({ store, runId: 'r1', root: actor, input, output, timeoutMinutes: 15 });
  t.teardown(() => {
    terminal.stop();
    actor.stop();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const heard = () => actor.getSnapshot().context.heard.filter((event) => event.type === 'human.answered');
  return { store, actor, input, printed: () => printed, heard };
}

async function until(check: () => boolean): Promise<void> {
  for (let round = 0; round < 500 && !check(); round += 1) await new Promise((resolve) => setImmediate(resolve));
  if (!check()) throw new Error('the terminal did not get there');
}

test('each clarify question is asked in turn; an answer is kept with its question, Enter keeps the assumption', async (t) => {
  const run = setupRun(t);
  run.actor.send({ type: 'ask', asking: { kind: 'questions', ids: ['Q1', 'Q2'], answered: [] } });
  await until(() => run.printed().includes('Q1: Which storage?'));
  t.regex(run.printed(), /The Moderator has 2 question\(s\) before it plans \(15 min, then its assumptions stand; also on the dashboard\)\.\nIts assumptions:\n {2}- a JSON file/);
  run.input.write('SQLite\n');
  await until(() => run.printed().includes('Q2: Which port?'));
  run.input.write('\n');
  await until(() => run.heard().length === 2);
  t.deepEqual(run.heard().map((event) => [event.questionId, event.answer]), [['Q1', 'SQLite'], ['Q2', '']]);
  t.like(run.store.questions.list('r1')[0], { answer: 'SQLite', answeredBy: 'terminal' });
  t.is(run.store.questions.list('r1')[1]?.answer, null, 'the assumption stands');
});

test('a question answered on the dashboard meanwhile is not asked again on the terminal', async (t) => {
  const run = setupRun(t);
  run.store.questions.answer('r1', 'Q1', 'a file', 'api');
  run.actor.send({ type: 'ask', asking: { kind: 'questions', ids: ['Q1', 'Q2'], answered: ['Q1'] } });
  await until(() => run.printed().includes('Q2: Which port?'));
  t.false(run.printed().includes('Q1: Which storage?'));
  run.input.write('8080\n');
  await until(() => run.heard().length === 1);
  t.like(run.heard()[0], { questionId: 'Q2', answer: '8080' });
});

test('the budget question takes continue or stop, and asks again on anything else', async (t) => {
  const run = setupRun(t);
  const forecast = { budget: 'tokens' as const, tokensAtFinish: 120_000, costAtFinish: 0, tasksLeft: 2, maxTokensTotal: 100_000, maxCostUsd: null };
  run.actor.send({ type: 'ask', asking: { kind: 'budget', ids: ['budget'], answered: [], forecast } });
  await until(() => run.printed().includes('[continue/stop]'));
  t.regex(run.printed(), /The forecast to finish the 2 task\(s\) left is ~120,000 tokens, more than the budget of 100,000/);
  run.input.write('maybe\n');
  await until(() => run.printed().split('[continue/stop]').length === 3);
  run.input.write('Continue\n');
  await until(() => run.heard().length === 1);
  t.like(run.heard()[0], { questionId: 'budget', answer: 'continue' });
});
