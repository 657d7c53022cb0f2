import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { Store } from '../services/store/store.ts';
import { migrations } from '../services/store/migrations.ts';
import { ownConnection } from './helpers/database.ts';

const tempDb = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-store-')), '.duo-agent', 'moderator.db');
const newRun = (store: Store, id = 'r1') =>
  store.runs.create({ id, target: '/t', requirements: 'req', settings: { config: { model: { provider: 'replay' } } }, snapshotVersion: 1, machineFingerprint: 'abc' });

test('opens in WAL mode with every migration applied, and reopens without re-running them', (t) => {
  const file = tempDb();
  const store = Store.open(file);
  newRun(store);
  store.close();
  const reopened = Store.open(file);
  const db = ownConnection(t, file);
  t.is(db.pragma('journal_mode', { simple: true }), 'wal');
  t.is(db.pragma('user_version', { simple: true }), migrations.length);
  t.is(reopened.runs.get('r1')?.requirements, 'req');
  reopened.close();
});

test('a database from a newer Moderator is refused with a clear message', (t) => {
  const file = tempDb();
  Store.open(file).close();
  const raw = new Database(file);
  raw.pragma(`user_version = ${migrations.length + 1}`);
  raw.close();
  t.throws(() => Store.open(file), { message: /newer Moderator.*upgrade Moderator/ });
});

test('a checkpoint writes the snapshot and its messages together; the latest snapshot replaces the previous one', (t) => {
  const file = tempDb();
  const store = Store.open(file);
  newRun(store);
  const message = { id: 'm1', from: 'orchestrator', to: 'techlead', type: 'task.assigned', payload: { taskId: 'T1' }, correlationId: 'T1#1', at: new Date().toISOString() };
  store.checkpoints.save('r1', '{"a":1}', 'active', [message], 'implementing');
  store.checkpoints.save('r1', '{"a":2}', 'active', [message], null);
  t.deepEqual(store.checkpoints.load('r1'), { json: '{"a":2}', status: 'active', writes: 2 });
  t.is(store.checkpoints.listMessages('r1').length, 1, 'a message is journaled once');
  t.is(store.runs.get('r1')?.phase, 'implementing');
  t.is((ownConnection(t, file).prepare('SELECT COUNT(*) AS n FROM snapshots').get() as { n: number }).n, 1);
});

test('a run held by a live process cannot be claimed; a dead holder is taken over', (t) => {
  const file = tempDb();
  const store = Store.open(file);
  newRun(store);
  ownConnection(t, file, { writable: true }).prepare('UPDATE runs SET pid = ? WHERE id = ?').run(999_999, 'r1');
  t.throws(() => store.runs.claim('r1', () => true), { message: /in use by process 999999/ });
  store.runs.claim('r1', () => false);
  t.is(store.runs.get('r1')?.pid, process.pid);
  t.is(store.runs.get('r1')?.sessions, 2);
});

test('opening a PR twice for a task returns the same PR and burns no number', (t) => {
  const store = Store.open(':memory:');
  newRun(store);
  const pr = { runId: 'r1', provider: 'local', base: 'main', title: 't', body: 'b', headSha: 'h' };
  const first = store.pullRequests.open({ ...pr, taskId: 'T1', branch: 'x/T1' });
  const again = store.pullRequests.open({ ...pr, taskId: 'T1', branch: 'x/T1' });
  const second = store.pullRequests.open({ ...pr, taskId: 'T2', branch: 'x/T2' });
  t.is(again.number, first.number);
  t.is(second.number, first.number + 1);
});

test("a PR is found by its number within its own run only: a later run on the target does not see the first run's PRs", (t) => {
  const store = Store.open(':memory:');
  newRun(store, 'r1');
  newRun(store, 'r2');
  const pr = { provider: 'local', base: 'main', title: 't', body: 'b', headSha: 'h' };
  const first = store.pullRequests.open({ ...pr, runId: 'r1', taskId: 'T1', branch: 'x/T1' });
  const later = store.pullRequests.open({ ...pr, runId: 'r2', taskId: 'T2', branch: 'x/T2' });
  store.pullRequests.markMerged(first.number, 'abc');
  t.like(store.pullRequests.inRun('r1', first.number), { taskId: 'T1', branch: 'x/T1', status: 'merged', mergeSha: 'abc' });
  t.like(store.pullRequests.inRun('r2', later.number), { taskId: 'T2', status: 'open' });
  t.is(store.pullRequests.inRun('r2', first.number), undefined);
  t.is(store.pullRequests.inRun('r1', later.number + 1), undefined);
});

test('tasks are added once, and ids continue across runs of the same target', (t) => {
  const store = Store.open(':memory:');
  newRun(store);
  const task = { id: 'T1', title: 'x', type: 'feature', description: 'd', acceptanceCriteria: ['a'], dependsOn: [], origin: 'plan' as const };
  store.tasks.add('r1', [task, { ...task, id: 'T2' }]);
  store.tasks.add('r1', [{ ...task, title: 'changed' }]);
  t.is(store.tasks.list('r1').length, 2);
  t.is(store.tasks.get('r1', 'T1')?.title, 'x');
  newRun(store, 'r2');
  t.is(store.tasks.nextNumber(), 3);
});

test('only one completed reply per call key can be journaled', (t) => {
  const store = Store.open(':memory:');
  newRun(store);
  const start = { runId: 'r1', callKey: 'k', agent: 'moderator', purpose: 'plan', provider: 'p', model: 'm' };
  store.calls.finish(store.calls.begin(start), { status: 'ok', reply: { text: 'a' } });
  const second = store.calls.begin(start);
  const error = t.throws(() => store.calls.finish(second, { status: 'ok', reply: { text: 'b' } }), { any: true });
  t.regex(String((error as { code?: string } | undefined)?.code), /SQLITE_CONSTRAINT_UNIQUE/);
});
