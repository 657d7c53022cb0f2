import { z } from 'zod';
import { ConfigError, configIssue, type ConfigIssue } from './config-error.ts';
import type { Attribution } from './layers.ts';
import { expectations } from './schema.ts';

/**
 * Turns zod issues into one-line messages a person can act on:
 * `<source>: <field>: expected <what the schema wants>, found <what the input had>`.
 * The expectation is read from the schema at the issue's path rather than from the issue,
 * so a wrong type and an out-of-range value of the same field read the same way.
 */

export type FieldPath = readonly PropertyKey[];
export type SourceOf = (path: FieldPath) => Attribution | string;

function attribution(sourceOf: SourceOf, path: FieldPath): Attribution {
  const found = sourceOf(path);
  return typeof found === 'string' ? { source: found, namesField: false } : found;
}

/** Validates `input` against `schema`; every issue is attributed with `sourceOf(path)`. */
export function validate<S extends z.ZodType>(
  schema: S,
  input: unknown,
  sourceOf: SourceOf,
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw errorFrom(result.error.issues.flatMap((issue) => describeIssue(schema, input, issue, sourceOf)));
}

export function errorFrom(issues: readonly ConfigIssue[]): ConfigError {
  const [first, ...rest] = issues;
  // zod never fails without an issue; this keeps the type honest rather than asserting.
  if (first === undefined) return ConfigError.of('configuration', '', 'invalid');
  return new ConfigError([first, ...rest]);
}

function describeIssue(
  root: z.ZodType,
  input: unknown,
  issue: z.core.$ZodIssue,
  sourceOf: SourceOf,
): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    // One issue per key: keys of one object may come from different layers.
    const known = knownKeys(schemaAt(root, issue.path));
    return issue.keys.map((key) => {
      const hint = closest(key, known);
      const problem = `unknown field "${key}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`;
      return configIssue(attribution(sourceOf, [...issue.path, key]).source, formatPath(issue.path), problem);
    });
  }
  const expected = expectedOf(schemaAt(root, issue.path));
  const problem =
    expected === undefined
      ? issue.message
      : `expected ${expected}, found ${describeFound(valueAt(input, issue.path))}`;
  const { source, namesField } = attribution(sourceOf, issue.path);
  return [configIssue(source, formatPath(issue.path), problem, namesField)];
}

export function formatPath(path: FieldPath): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** The input as a person would recognise it in their file or shell. */
export function describeFound(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

function valueAt(input: unknown, path: FieldPath): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** The wrapped schema of optional/default/prefault/nullable (or the input side of a transform), or undefined for anything else. */
function unwrapOnce(schema: z.ZodType): z.ZodType | undefined {
  // A `.transform()` is a pipe whose input is the schema the user's values meet.
  if (schema instanceof z.ZodPipe) return schema.in as z.ZodType;
  if (
    schema instanceof z.ZodOptional ||
    schema instanceof z.ZodDefault ||
    schema instanceof z.ZodPrefault ||
    schema instanceof z.ZodNullable
  ) {
    return schema.unwrap() as z.ZodType;
  }
  return undefined;
}

function unwrapAll(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (let inner = unwrapOnce(current); inner !== undefined; inner = unwrapOnce(current)) current = inner;
  return current;
}

/** The schema of the field at `path`, or undefined past the schema's end. */
function schemaAt(root: z.ZodType, path: FieldPath): z.ZodType | undefined {
  let schema: z.ZodType | undefined = root;
  for (const key of path) {
    if (schema === undefined) return undefined;
    const bare = unwrapAll(schema);
    if (bare instanceof z.ZodObject) schema = (bare.shape as Record<string, z.ZodType>)[String(key)];
    else if (bare instanceof z.ZodRecord) schema = bare.valueType as z.ZodType;
    else if (bare instanceof z.ZodArray) schema = bare.element as z.ZodType;
    else return undefined;
  }
  return schema;
}

function knownKeys(schema: z.ZodType | undefined): string[] {
  if (schema === undefined) return [];
  const bare = unwrapAll(schema);
  return bare instanceof z.ZodObject ? Object.keys(bare.shape) : [];
}

export function expectedOf(schema: z.ZodType | undefined): string | undefined {
  for (let s = schema; s !== undefined; s = unwrapOnce(s)) {
    const registered = expectations.get(s);
    if (registered !== undefined) return registered.expected;
    if (s instanceof z.ZodString) return 'a string';
    if (s instanceof z.ZodNumber) return s.isInt ? 'an integer' : 'a number';
    if (s instanceof z.ZodBoolean) return 'true or false';
    if (s instanceof z.ZodEnum) return `one of ${s.options.map((o) => JSON.stringify(o)).join(', ')}`;
    if (s instanceof z.ZodObject || s instanceof z.ZodRecord) return 'a mapping';
    if (s instanceof z.ZodArray) {
      const item = expectedOf(s.element as z.ZodType);
      return item === undefined ? 'a list' : `a list (each item ${item})`;
    }
  }
  return undefined;
}

/** The known field a mistyped or truncated name most likely meant, if any is close. */
function closest(unknown: string, known: readonly string[]): string | undefined {
  const u = unknown.toLowerCase();
  let best: { key: string; score: number } | undefined;
  for (const key of known) {
    const k = key.toLowerCase();
    let score = editDistance(u, k);
    // "max_tokenz" for "max_tokens_total": close to the start of a longer name.
    if (u.length >= 4 && k.length > u.length) score = Math.min(score, editDistance(u, k.slice(0, u.length)) + 1);
    if (best === undefined || score < best.score) best = { key, score };
  }
  const limit = Math.max(1, Math.floor(u.length / 4));
  return best !== undefined && best.score <= limit ? best.key : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
