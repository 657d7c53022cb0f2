import { callKeys, type CallKey } from '../protocol/keys.ts';
import { firstLine, plural } from '../services/text.ts';
import type { RunServices } from './run-services.ts';

interface JournaledReply {
  text?: unknown;
  toolCalls?: { name?: unknown; input?: unknown }[];
}

/** Whether a journaled call key belongs to the step `key` (itself, its turns, its re-asks), not to a later approach. */
function belongsTo(callKey: string, key: CallKey): boolean {
  if (callKey !== key && !callKey.startsWith(`${key}:`)) return false;
  return !callKey.slice(key.length).includes(':approach');
}

/**
 * What the last approach to a step did, from its journaled calls, for the prompt of the approach
 * that replaces it after stagnation: how many turns it took, which tools it called and the files
 * it wrote, and how its last answer began. So the model is told what did not work, not only that
 * something did not.
 */
export function whatWasTried(services: RunServices, baseKey: CallKey, approach: number): string {
  const previous = callKeys.approach(baseKey, approach - 1);
  const calls = services.store.calls.list(services.runId).filter((call) => belongsTo(call.callKey, previous));
  const tools = new Map<string, number>();
  const files = new Set<string>();
  let lastText = '';
  for (const call of calls) {
    const reply = (call.reply ?? {}) as JournaledReply;
    if (typeof reply.text === 'string' && reply.text.trim() !== '') lastText = reply.text;
    for (const tool of reply.toolCalls ?? []) {
      const name = typeof tool.name === 'string' ? tool.name : 'tool';
      tools.set(name, (tools.get(name) ?? 0) + 1);
      const input = tool.input as { path?: unknown } | null;
      if ((name === 'write_file' || name === 'edit_file') && typeof input?.path === 'string') files.add(input.path);
    }
  }
  const used = tools.size === 0 ? '' : `, calling ${[...tools].map(([name, count]) => `${name} x${count}`).join(', ')}`;
  const wrote = files.size === 0 ? 'wrote no file' : `wrote ${[...files].slice(0, 12).join(', ')}`;
  const said = lastText === '' ? '' : ` Its last answer began: "${firstLine(lastText, 200)}".`;
  return (
    `\n\nAn earlier approach to this step made no progress for ${services.config.limits.stagnation_minutes} minutes and was stopped: ` +
    `it made ${plural(calls.length, 'model call')}${used}, and ${wrote}.${said} ` +
    'Do not repeat it: take a different approach, in smaller steps, and make a change the tests can check.'
  );
}
