import { jsonrepair } from 'jsonrepair';
import { oneLine } from '../text.ts';

/**
 * A tool call's JSON arguments; the empty string (a call without arguments) is `{}`. Arguments
 * that are not JSON (trailing commas, single quotes, a missing brace) are repaired; what cannot be
 * repaired comes back as `inputError`, for the model to be told in the tool's result.
 */
export function parseToolInput(json: string, name: string): { input: unknown; inputError?: string } {
  if (json.trim() === '') return { input: {} };
  const refused = { input: {}, inputError: `the arguments of your ${name} call are not a JSON object (${oneLine(json, 80)}): call it again with a JSON object` };
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    try {
      value = JSON.parse(jsonrepair(json));
    } catch {
      return refused;
    }
  }
  // Tools take objects: what repair made of something else (a bare word, a list) is not a call.
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? { input: value } : refused;
}
