import type { ToolCall } from '../services/llm/provider.ts';
import { parseJsonText, stripReasoning } from './reply-parser.ts';

/**
 * Tool calls a model wrote into its text because the server does not turn them into tool calls
 * (a chat template without tool parsing, an old llama.cpp, a small model that ignores the format).
 * The shapes seen in practice: Hermes/Qwen `<tool_call>{...}</tool_call>`, Llama's
 * `<function=name>{...}</function>`, Mistral's `[TOOL_CALLS] [...]`, and a fenced or bare JSON
 * object `{"name": ..., "arguments": {...}}`. Only calls of a tool the agent has count, so an
 * ordinary JSON answer is never mistaken for one.
 */

const MAX_CALLS = 8;
const NAME_KEYS = ['name', 'tool', 'function', 'tool_name'];
const ARGUMENT_KEYS = ['arguments', 'parameters', 'input', 'args'];

function asCall(value: unknown, tools: ReadonlySet<string>, index: number): ToolCall | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  // OpenAI's own shape, written out: {"type": "function", "function": {"name", "arguments"}}.
  if (typeof record.function === 'object' && record.function !== null) return asCall(record.function, tools, index);
  const name = NAME_KEYS.map((key) => record[key]).find((candidate): candidate is string => typeof candidate === 'string');
  if (name === undefined || !tools.has(name)) return undefined;
  const raw = ARGUMENT_KEYS.map((key) => record[key]).find((candidate) => candidate !== undefined) ?? {};
  const id = `text_call_${index + 1}`;
  if (typeof raw !== 'string') return { id, name, input: raw };
  const parsed = parseJsonText(raw);
  const isObject = parsed.ok && typeof parsed.value === 'object' && parsed.value !== null && !Array.isArray(parsed.value);
  return isObject ? { id, name, input: parsed.value } : { id, name, input: {}, inputError: `the arguments of your ${name} call are not a JSON object: call it again with a JSON object` };
}

function collect(value: unknown, tools: ReadonlySet<string>, into: ToolCall[]): void {
  for (const item of Array.isArray(value) ? value : [value]) {
    if (into.length >= MAX_CALLS) return;
    const call = asCall(item, tools, into.length);
    if (call) into.push(call);
  }
}

export function toolCallsInText(text: string, toolNames: readonly string[]): ToolCall[] {
  const tools = new Set(toolNames);
  const visible = stripReasoning(text);
  const calls: ToolCall[] = [];
  const candidates: string[] = [];
  for (const match of visible.matchAll(/<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/gi)) candidates.push(match[1] ?? '');
  for (const match of visible.matchAll(/<function=([A-Za-z0-9_-]+)>\s*([\s\S]*?)\s*<\/function>/gi)) {
    candidates.push(JSON.stringify({ name: match[1], arguments: match[2] ?? '{}' }));
  }
  const mistral = /\[TOOL_CALLS\]\s*(\[[\s\S]*\])/.exec(visible);
  if (mistral?.[1]) candidates.push(mistral[1]);
  if (candidates.length === 0) {
    for (const match of visible.matchAll(/```[ \t]*(?:json|tool_call|tool)?[ \t]*\r?\n([\s\S]*?)\r?\n[ \t]*```/gi)) candidates.push(match[1] ?? '');
    const trimmed = visible.trim();
    if (candidates.length === 0 && /^[[{]/.test(trimmed)) candidates.push(trimmed);
  }
  for (const candidate of candidates) {
    const parsed = parseJsonText(candidate);
    if (parsed.ok) collect(parsed.value, tools, calls);
  }
  return calls;
}
