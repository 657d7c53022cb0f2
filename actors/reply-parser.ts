import { jsonrepair } from 'jsonrepair';
import { z } from 'zod';

/**
 * Turns what a model wrote into a value its reply schema accepts, the way real models write:
 * reasoning blocks, fences in any case or on one line, prose around the JSON, trailing commas,
 * comments, single quotes, `"Feature"` for `feature`, `"approved"` for `approve`, `"3"` for 3,
 * one string where a list is asked for. What cannot be mended is listed, every problem at once,
 * so the re-ask can teach rather than fix one slip per round.
 */

/** What a schema field may also be called or spelt, for the normaliser. Kept apart from the schema's JSON Schema. */
export interface Leniency {
  /** Enum fields: spellings (already lower-cased, spaces and dashes as `_`) that mean one of the options. */
  synonyms?: Record<string, string>;
  /** Object fields: other keys a model uses for this one (`dependencies` for `depends_on`). */
  aliases?: string[];
}

export const leniency = z.registry<Leniency>();

/** Marks a schema with its synonyms or aliases; returns it, so it reads inline in a schema. */
export function lenient<T extends z.ZodType>(schema: T, meta: Leniency): T {
  leniency.add(schema, meta);
  return schema;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; problems: string[]; error: string };

export interface ParseOptions {
  /** The reply stopped at its token limit: a repaired, truncated value would silently lose content. */
  truncated?: { maxTokens: number; setting: string } | undefined;
}

const MAX_LISTED = 12;
const MAX_CANDIDATES = 64;

/** Drops `<think>…</think>` (and the like) that reasoning models put before the answer, closed or not. */
export function stripReasoning(text: string): string {
  let out = text.replace(/<(think|thinking|reasoning|reflection)>[\s\S]*?<\/\1>/gi, '');
  // A block opened and never closed before the answer: everything up to a closing tag without an opening one.
  out = out.replace(/^[\s\S]*?<\/(think|thinking|reasoning)>/i, '');
  return out;
}

const fenced = /^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n([\s\S]*?)\r?\n[ \t]*```[ \t]*$/gm;
const jsonLanguages = new Set(['', 'json', 'json5', 'jsonc', 'javascript', 'js', 'ts', 'typescript']);

/**
 * The JSON text in a reply: the first fenced block in a JSON-ish language whose content looks like
 * JSON, else a fence written on one line, else the first balanced object or array in the prose,
 * else the whole text. A closing fence must start a line: fences inside JSON strings are escaped
 * onto the same line (`\n`), a real one is not.
 */
export function extractJson(text: string): string {
  const visible = stripReasoning(text);
  for (const match of visible.matchAll(fenced)) {
    const language = (match[1] ?? '').toLowerCase();
    const body = (match[2] ?? '').trim();
    if (jsonLanguages.has(language) && /^[[{]/.test(body)) return body;
  }
  const inline = /```[ \t]*(?:json5?|jsonc)?[ \t]*([[{][\s\S]*?[\]}])[ \t]*```/i.exec(visible);
  if (inline?.[1]) return inline[1].trim();
  const opened = /```[ \t]*(?:json5?|jsonc)?[ \t]*\r?\n([[{][\s\S]*)$/i.exec(visible);
  if (opened?.[1] && !opened[1].includes('```')) return opened[1].trim();
  return firstBalanced(visible) ?? visible.trim();
}

/**
 * The JSON value in prose: the first `{…}` or `[…]` that is real JSON (an object, or a list of
 * objects: `[1]` and `[see above]` are prose), else the first `{…}` that repairs, else an unclosed
 * one at the end, returned as is. Strings in either quote are skipped, so brackets in them do not count.
 */
function firstBalanced(text: string): string | undefined {
  const candidates: { start: number; end: number }[] = [];
  for (let start = 0; start < text.length && candidates.length < MAX_CANDIDATES; start += 1) {
    if (text[start] === '{' || text[start] === '[') candidates.push({ start, end: balancedEnd(text, start) });
  }
  const slice = ({ start, end }: { start: number; end: number }) => (end === -1 ? text.slice(start) : text.slice(start, end + 1));
  for (const candidate of candidates) {
    if (candidate.end === -1) continue;
    try {
      const value: unknown = JSON.parse(slice(candidate));
      if (isRecord(value) || (Array.isArray(value) && value.some((item) => typeof item === 'object' && item !== null))) return slice(candidate);
    } catch {
      // not strict JSON: the repair pass below
    }
  }
  for (const candidate of candidates) {
    if (candidate.end === -1 || text[candidate.start] !== '{') continue;
    const parsed = parseJsonText(slice(candidate));
    if (parsed.ok && isRecord(parsed.value)) return slice(candidate);
  }
  const unclosed = candidates.find((candidate) => candidate.end === -1);
  return unclosed ? slice(unclosed).trim() : undefined;
}

function balancedEnd(text: string, start: number): number {
  const stack: string[] = [];
  let quote: string | null = null;
  for (let index = start; index < text.length; index += 1) {
    const char = text[index];
    if (quote !== null) {
      if (char === '\\') index += 1;
      else if (char === quote) quote = null;
      continue;
    }
    if (char === '"' || char === "'") quote = char;
    else if (char === '{') stack.push('}');
    else if (char === '[') stack.push(']');
    else if (char === '}' || char === ']') {
      if (stack.pop() !== char) return index;
      if (stack.length === 0) return index;
    }
  }
  return -1;
}

/** Strict JSON first, then jsonrepair (trailing commas, comments, single quotes, unquoted keys, Python literals). */
export function parseJsonText(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (strictError) {
    try {
      return { ok: true, value: JSON.parse(jsonrepair(text)) };
    } catch {
      return { ok: false, error: (strictError as Error).message };
    }
  }
}

const canonical = (text: string): string => text.trim().toLowerCase().replace(/[\s-]+/g, '_');
const compact = (text: string): string => text.toLowerCase().replace(/[^a-z0-9]/g, '');
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const numeric = /^\s*[+-]?\d+(?:\.\d+)?\s*$/;

/** Schemas that only wrap another (defaults, optionals, nullables) give way to what they wrap. */
function unwrap(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (let depth = 0; depth < 8; depth += 1) {
    if (current instanceof z.ZodDefault || current instanceof z.ZodPrefault) current = current.unwrap() as z.ZodType;
    else if (current instanceof z.ZodOptional || current instanceof z.ZodNullable) current = current.unwrap() as z.ZodType;
    else break;
  }
  return current;
}

const isArraySchema = (schema: z.ZodType): boolean => unwrap(schema) instanceof z.ZodArray;

/**
 * Mends the obvious slips against `schema`: key spellings and aliases, enum case and synonyms,
 * numeric strings, a single value where a list is expected, `null` for an absent optional field,
 * a bare list for an object of one list (`[…]` for `{"tasks": […]}`), and an answer wrapped in
 * one extra object (`{"review": {…}}`). Everything else is left for the schema to report.
 */
export function normalise(schema: z.ZodType, value: unknown): unknown {
  const inner = unwrap(schema);
  const meta = leniency.get(schema) ?? leniency.get(inner);
  if (value === null && inner !== schema) return undefined;

  if (inner instanceof z.ZodObject) {
    const shape = inner.shape as Record<string, z.ZodType>;
    const keys = Object.keys(shape);
    if (Array.isArray(value)) {
      const lists = keys.filter((key) => isArraySchema(shape[key] as z.ZodType));
      if (lists.length === 1) return normalise(inner, { [lists[0] as string]: value });
      return value;
    }
    if (!isRecord(value)) return value;
    const present = Object.keys(value);
    if (!keys.some((key) => present.includes(key)) && present.length === 1 && isRecord(value[present[0] as string])) {
      const wrapped = value[present[0] as string] as Record<string, unknown>;
      if (keys.some((key) => key in wrapped)) return normalise(inner, wrapped);
    }
    const out: Record<string, unknown> = {};
    const taken = new Set<string>();
    for (const key of keys) {
      const field = shape[key] as z.ZodType;
      const names = [key, ...(leniency.get(field)?.aliases ?? [])].map(compact);
      const found = key in value ? key : present.find((candidate) => !taken.has(candidate) && !keys.includes(candidate) && names.includes(compact(candidate)));
      if (found === undefined) continue;
      taken.add(found);
      const mended = normalise(field, value[found]);
      if (mended !== undefined) out[key] = mended;
    }
    return out;
  }
  if (inner instanceof z.ZodArray) {
    if (value === null || value === undefined) return value === null ? [] : value;
    const list = Array.isArray(value) ? value : [value];
    return list.map((item) => normalise(inner.element as z.ZodType, item));
  }
  if (inner instanceof z.ZodEnum) {
    if (typeof value !== 'string') return value;
    const options = inner.options as string[];
    if (options.includes(value)) return value;
    const wanted = canonical(value);
    return options.find((option) => canonical(option) === wanted) ?? meta?.synonyms?.[wanted] ?? value;
  }
  if (inner instanceof z.ZodNumber) {
    return typeof value === 'string' && numeric.test(value) ? Number(value) : value;
  }
  if (inner instanceof z.ZodString) {
    return typeof value === 'number' || typeof value === 'boolean' ? String(value) : value;
  }
  if (inner instanceof z.ZodBoolean) {
    if (value === 'true' || value === 'yes') return true;
    if (value === 'false' || value === 'no') return false;
  }
  return value;
}

const placeholder = /^(?:<\s*)?(?:string|str|text|number|integer|int|boolean|bool|string\[\]|\.\.\.|…)(?:\s*>)?$/i;

/** Strings copied from the contract instead of written (`"summary": "string"`), with their paths. */
function placeholders(schema: z.ZodType, value: unknown, at: (string | number)[] = []): string[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject && isRecord(value)) {
    return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([key, field]) => placeholders(field, value[key], [...at, key]));
  }
  if (inner instanceof z.ZodArray && Array.isArray(value)) {
    return value.flatMap((item, index) => placeholders(inner.element as z.ZodType, item, [...at, index]));
  }
  if (inner instanceof z.ZodString && typeof value === 'string' && placeholder.test(value.trim())) {
    return [`${pathText(at)}: ${JSON.stringify(value)} is a placeholder copied from the contract; write the real value`];
  }
  return [];
}

const pathText = (at: readonly PropertyKey[]): string => (at.length === 0 ? 'the reply' : at.map(String).join('.'));

function valueAt(value: unknown, at: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of at) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function shortJson(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** One line per problem, naming the field, what it expects and what it got. */
function describeIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string[] {
  return issues.map((issue) => {
    const found = valueAt(input, issue.path);
    const got = issue.code === 'invalid_type' && found === undefined ? ' (missing)' : issue.code === 'custom' ? '' : `, found ${shortJson(found)}`;
    return `${pathText(issue.path)}: ${issue.message}${got}`;
  });
}

function summarise(problems: string[]): string {
  const listed = problems.slice(0, MAX_LISTED);
  const more = problems.length > MAX_LISTED ? `; and ${problems.length - MAX_LISTED} more` : '';
  return `${listed.join('; ')}${more}`;
}

function failure<T>(problems: string[]): ParseResult<T> {
  return { ok: false, problems, error: summarise(problems) };
}

/**
 * Parses a reply against its schema: extract, repair, normalise, reject placeholders, validate.
 * On failure every problem is listed (up to a dozen), each a line a model can act on.
 */
export function parseReply<T>(text: string, schema: z.ZodType<T>, options: ParseOptions = {}): ParseResult<T> {
  if (options.truncated) {
    const { maxTokens, setting } = options.truncated;
    return failure([`the reply was cut off at its token limit (${maxTokens} tokens, ${setting}): answer more briefly, or raise ${setting}`]);
  }
  if (text.trim() === '') return failure(['the reply is empty: answer with the JSON object']);
  const json = extractJson(text);
  if (!/^[[{]/.test(json)) return failure([`the reply is not valid JSON: it holds no JSON object (it starts ${shortJson(json.slice(0, 40))})`]);
  const parsed = parseJsonText(json);
  if (!parsed.ok) return failure([`the reply is not valid JSON and could not be repaired (${parsed.error})`]);
  const mended = normalise(schema, parsed.value);
  const copied = placeholders(schema, mended);
  const checked = schema.safeParse(mended);
  if (checked.success && copied.length === 0) return { ok: true, value: checked.data };
  return failure([...copied, ...(checked.success ? [] : describeIssues(checked.error.issues, mended))]);
}
