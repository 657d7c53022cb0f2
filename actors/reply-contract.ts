import { z } from 'zod';

/**
 * The two things a reply schema becomes besides a validator, both derived from it so they can
 * never drift from what is checked: the contract text in the prompt, and the JSON Schema sent as
 * structured output (OpenAI `response_format`, an Anthropic forced tool).
 */

type JsonSchema = Record<string, unknown>;

/** Keywords every structured-output implementation we send to understands; the rest is checked locally with zod. */
const WIRE_KEYWORDS = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'description', 'anyOf', 'minimum', 'maximum', 'minItems']);

function sanitise(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(sanitise);
  if (typeof node !== 'object' || node === null) return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node as JsonSchema)) {
    if (!WIRE_KEYWORDS.has(key)) continue;
    if (key === 'properties') {
      out[key] = Object.fromEntries(Object.entries(value as JsonSchema).map(([name, child]) => [name, sanitise(child)]));
    } else {
      out[key] = sanitise(value);
    }
  }
  return out;
}

/**
 * The JSON Schema of a reply for structured output. Output mode, so fields with defaults are
 * required and objects closed (`additionalProperties: false`): what OpenAI's strict mode demands,
 * and a grammar a local server can compile. Patterns and lengths stay with zod.
 */
export function wireSchema(schema: z.ZodType): JsonSchema {
  return sanitise(z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' })) as JsonSchema;
}

function render(node: JsonSchema, indent: string): string {
  if (Array.isArray(node.enum)) return node.enum.map((option) => JSON.stringify(option)).join(' | ');
  if (Array.isArray(node.anyOf)) return (node.anyOf as JsonSchema[]).map((option) => render(option, indent)).join(' | ');
  switch (node.type) {
    case 'object': {
      const properties = (node.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((node.required ?? []) as string[]);
      const inner = `${indent}  `;
      const entries = Object.entries(properties);
      const lines = entries.map(([name, child], index) => {
        const notes = [required.has(name) ? '' : 'optional', typeof child.description === 'string' ? child.description : ''].filter(Boolean).join('; ');
        const comma = index < entries.length - 1 ? ',' : '';
        return `${inner}${JSON.stringify(name)}: ${render(child, inner)}${comma}${notes ? `  // ${notes}` : ''}`;
      });
      return `{\n${lines.join('\n')}\n${indent}}`;
    }
    case 'array': {
      const items = (node.items ?? {}) as JsonSchema;
      const item = render(items, indent);
      const atLeast = typeof node.minItems === 'number' && node.minItems > 0 ? ` (at least ${node.minItems})` : '';
      return items.type === 'object' ? `[${item}, ...]${atLeast}` : `${item.includes(' | ') ? `(${item})` : item}[]${atLeast}`;
    }
    case 'integer':
    case 'number': {
      const range = typeof node.minimum === 'number' && typeof node.maximum === 'number' ? ` ${node.minimum}-${node.maximum}` : '';
      return `${node.type}${range}`;
    }
    case 'string':
    case 'boolean':
      return node.type;
    default:
      return 'any JSON value';
  }
}

/**
 * The contract text for a prompt: the reply's shape, with each field's description as a comment,
 * rendered from the schema (input mode, so fields with defaults read as optional).
 */
export function contractOf(schema: z.ZodType): string {
  const shape = render(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema, '');
  return `Answer with one JSON object of this shape, and nothing else (a \`\`\`json block is fine; no comments inside the JSON):\n${shape}`;
}
