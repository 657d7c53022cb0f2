import type { ConversationItem, ToolCall, ToolResult } from '../llm/provider.ts';
import { outlineOf } from './outline.ts';

/**
 * Structural summaries of a conversation's old parts, made here rather than by another model
 * call: the same turns always give the same words, so a resumed or replayed step rebuilds the
 * same prompt, and summarising costs nothing. A summary keeps what a model needs to carry on
 * (which file, how big, its declarations; which command, how it ended) and says how to get the
 * rest back (read the file again, run the command again).
 */

/** Every summary starts with this, so a part already summarised is never summarised again. */
export const SUMMARY_MARK = '[summarised to stay within the context limit]';

/** Results this short are kept: a summary would not be shorter. */
const KEEP_CHARS = 400;
/** Old tool-call arguments longer than this (a whole file written) are shortened. */
const KEEP_INPUT_CHARS = 300;

const lineCount = (text: string) => (text === '' ? 0 : text.replace(/\n$/, '').split('\n').length);
const size = (text: string) => `${lineCount(text)} lines, ${(Buffer.byteLength(text) / 1024).toFixed(1)} KB`;
const firstLine = (text: string, max = 160) => {
  const line = text.split('\n').find((candidate) => candidate.trim() !== '') ?? '';
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
};
const lastLines = (text: string, count: number) => text.replace(/\n+$/, '').split('\n').slice(-count).map((line) => (line.length > 160 ? `${line.slice(0, 157)}...` : line));

function field(input: unknown, name: string): string | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const value = (input as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

/** What a call was, in a few words: `read_file src/a.js`, `run_command npm test`. */
export function describeCall(call: ToolCall): string {
  const target = field(call.input, 'path') ?? field(call.input, 'command') ?? field(call.input, 'pattern');
  return target === undefined ? call.name : `${call.name} ${target.length > 120 ? `${target.slice(0, 117)}...` : target}`;
}

/** A tool result summarised for the call that produced it; a short result is kept as it is. */
export function summariseResult(call: ToolCall | undefined, result: ToolResult): ToolResult {
  if (result.content.startsWith(SUMMARY_MARK) || result.content.length <= KEEP_CHARS) return result;
  const text = result.content;
  const what = call ? describeCall(call) : 'a tool call';
  let detail: string;
  switch (call?.name) {
    case 'read_file': {
      const file = field(call.input, 'path') ?? '';
      const { declarations } = outlineOf(file, text);
      detail = `${size(text)}${declarations.length > 0 ? `; declarations: ${declarations.join(', ')}` : ''}. Read it again if you need its text.`;
      break;
    }
    case 'run_command':
      detail = `${size(text)} of output, ending:\n${lastLines(text, 3).join('\n')}\nRun it again if you need the whole output.`;
      break;
    case 'search':
    case 'list_files':
      detail = `${lineCount(text)} lines, starting with: ${firstLine(text)}. Ask again if you need them.`;
      break;
    case 'git_diff':
      detail = `${size(text)}; files: ${[...text.matchAll(/^diff --git a\/(\S+)/gm)].map((match) => match[1]).join(', ') || 'none'}. Ask again if you need it.`;
      break;
    default:
      detail = `${size(text)}, starting with: ${firstLine(text)}`;
  }
  return { ...result, content: `${SUMMARY_MARK} ${what}${result.isError ? ' (failed)' : ''}: ${detail}` };
}

/** A tool call whose long arguments (a whole file written) are replaced by their size; the call is kept. */
export function shortenCall(call: ToolCall): ToolCall {
  if (typeof call.input !== 'object' || call.input === null) return call;
  let changed = false;
  const input: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(call.input as Record<string, unknown>)) {
    if (typeof value === 'string' && value.length > KEEP_INPUT_CHARS && !value.startsWith(SUMMARY_MARK)) {
      input[name] = `${SUMMARY_MARK} ${size(value)}`;
      changed = true;
    } else {
      input[name] = value;
    }
  }
  return changed ? { ...call, input } : call;
}

/** Text tool results (from a server without native tool calls) summarised as one block. */
export function summariseText(text: string): string {
  if (text.startsWith(SUMMARY_MARK) || text.length <= KEEP_CHARS) return text;
  const results = [...text.matchAll(/<tool_result name="([^"]*)"( error="true")?>\n([\s\S]*?)\n<\/tool_result>/g)];
  if (results.length === 0) return `${SUMMARY_MARK} ${size(text)}, starting with: ${firstLine(text)}`;
  return `${SUMMARY_MARK} results of ${results.length} tool call(s): ${results.map((match) => `${match[1]}${match[2] ? ' (failed)' : ''}: ${size(match[3] ?? '')}`).join('; ')}. Call again if you need them.`;
}

/**
 * One line per turn that pruning drops: what the model said (its first line) and which tools it
 * called with what outcome. Earlier summaries among the dropped turns are carried over, so the
 * history stays in order.
 */
export function summariseTurns(items: readonly ConversationItem[]): string[] {
  const lines: string[] = [];
  const calls = new Map<string, ToolCall>();
  for (const item of items) {
    if (item.role === 'assistant') {
      for (const call of item.toolCalls ?? []) calls.set(call.id, call);
      const said = firstLine(item.content, 200);
      const called = (item.toolCalls ?? []).map(describeCall);
      if (said === '' && called.length === 0) continue;
      lines.push(`- you ${called.length > 0 ? `called ${called.join('; ')}` : 'answered'}${said ? ` (you said: ${said})` : ''}`);
    } else if (item.role === 'tool') {
      const failed = item.results.filter((result) => result.isError).map((result) => calls.get(result.id)).filter((call): call is ToolCall => call !== undefined);
      if (failed.length > 0) lines.push(`  failed: ${failed.map(describeCall).join('; ')}`);
    } else if (item.content.startsWith(PRUNED_INTRO)) {
      lines.push(...item.content.split('\n').slice(1).filter((line) => line.startsWith('- ') || line.startsWith('  ')));
    } else {
      lines.push(`- you were told: ${firstLine(item.content, 200)}`);
    }
  }
  return lines;
}

/** The first line of the summary that pruning puts in place of the turns it drops. */
export const PRUNED_INTRO = `${SUMMARY_MARK} Earlier in this step (the files you wrote are on disk; read them again as needed):`;
