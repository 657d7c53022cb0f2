import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { Preferences } from '../services/preferences.ts';

const idea = (taskId: string, outcome: string) => ({ runId: 'r1', taskId, title: `idea ${taskId}`, angle: 'ux', priority: 4, outcome, at: '2026-01-01T00:00:00.000Z' });

test('idea outcomes are kept across runs in a readable JSON file, each once', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-prefs-'));
  new Preferences(dir).record([idea('T4', 'merged'), idea('T5', 'rejected')]);
  const again = new Preferences(dir);
  again.record([idea('T4', 'merged')]);
  t.deepEqual(again.recent().map((entry) => `${entry.taskId}:${entry.outcome}`), ['T4:merged', 'T5:rejected']);
  const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'preferences.json'), 'utf8')) as { improvements: unknown[] };
  t.is(onDisk.improvements.length, 2);
});

test('a preferences file edited into nonsense is started again, not fatal', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-prefs-'));
  fs.writeFileSync(path.join(dir, 'preferences.json'), '{"version": 7, "improvements": "lots"}');
  const preferences = new Preferences(dir);
  t.deepEqual(preferences.recent(), []);
  preferences.record([idea('T1', 'merged')]);
  t.is(preferences.recent().length, 1);
});

test('a preferences file that is not JSON is set aside and a new one started', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-prefs-'));
  fs.writeFileSync(path.join(dir, 'preferences.json'), '{ oops');
  const preferences = new Preferences(dir);
  preferences.record([idea('T1', 'merged')]);
  t.is(preferences.recent().length, 1);
  t.true(fs.readdirSync(dir).some((name) => name.startsWith('preferences.json.unreadable-')));
});
