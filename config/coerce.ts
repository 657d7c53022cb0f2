/**
 * Environment variables and flags arrive as strings. Each is turned into the type its field
 * wants when it clearly is one; otherwise the raw string goes on to validation, which then
 * reports "expected ..., found "<raw>"" against the variable or flag.
 */
export type Coercion = 'number' | 'boolean' | 'level' | 'lowercase' | 'string';

const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;
const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);
/** The seed's Python names (DEBUG, INFO, WARNING, ERROR) next to pino's own. */
const LEVEL_ALIASES: Readonly<Record<string, string>> = { warning: 'warn', critical: 'fatal' };

export function coerce(raw: string | number, how: Coercion): unknown {
  if (typeof raw === 'number') return raw;
  const text = raw.trim();
  switch (how) {
    case 'number':
      return DECIMAL.test(text) ? Number(text) : raw;
    case 'boolean': {
      const lower = text.toLowerCase();
      if (TRUE.has(lower)) return true;
      if (FALSE.has(lower)) return false;
      return raw;
    }
    case 'level': {
      const lower = text.toLowerCase();
      return LEVEL_ALIASES[lower] ?? lower;
    }
    case 'lowercase':
      return text.toLowerCase();
    case 'string':
      return raw;
  }
}
