import path from 'node:path';
import { coerce, type Coercion } from './coerce.ts';
import { ConfigError } from './config-error.ts';
import { fieldLayer, type Layer } from './layers.ts';

/** Settings the CLI takes from its flags; values are raw so errors can quote them. */
export interface ConfigOverrides {
  provider?: string | undefined;
  /** Resolved against the current directory: it was typed in a shell there. */
  replayFile?: string | undefined;
  replayDelayMs?: string | number | undefined;
  maxTokens?: string | number | undefined;
  parallel?: string | number | undefined;
  logLevel?: string | undefined;
  port?: string | number | undefined;
  /**
   * `--limit KEY=VALUE`, repeatable: any field of `limits` (`max_cost_usd=5`, `limits.max_runtime_hours=48`).
   * Over the stored settings at `--resume`, it is how a run stopped by a limit continues once that limit is raised.
   */
  limits?: readonly string[] | undefined;
}

interface FlagBinding {
  readonly flag: string;
  readonly path: readonly [string, string];
  readonly coerce: Coercion;
}

export const FLAG_BINDINGS: Readonly<Record<Exclude<keyof ConfigOverrides, 'limits'>, FlagBinding>> = {
  provider: { flag: '--provider', path: ['model', 'provider'], coerce: 'lowercase' },
  replayFile: { flag: '--replay', path: ['model', 'replay_file'], coerce: 'string' },
  replayDelayMs: { flag: '--replay-delay-ms', path: ['model', 'replay_delay_ms'], coerce: 'number' },
  maxTokens: { flag: '--max-tokens', path: ['limits', 'max_tokens_total'], coerce: 'number' },
  parallel: { flag: '--parallel', path: ['limits', 'max_parallel_tasks'], coerce: 'number' },
  logLevel: { flag: '--log-level', path: ['logging', 'level'], coerce: 'level' },
  port: { flag: '--port', path: ['monitor', 'port'], coerce: 'number' },
};

/** One layer per given flag, so an error names the flag that set the field. */
export function flagLayers(flags: ConfigOverrides | undefined, cwd: string): Layer[] {
  if (flags === undefined) return [];
  const layers: Layer[] = [];
  for (const key of Object.keys(FLAG_BINDINGS) as (keyof typeof FLAG_BINDINGS)[]) {
    const raw = flags[key];
    if (raw === undefined) continue;
    const binding = FLAG_BINDINGS[key];
    let value = coerce(raw, binding.coerce);
    if (key === 'replayFile' && typeof value === 'string' && value !== '') value = path.resolve(cwd, value);
    layers.push(fieldLayer(binding.flag, binding.path, value));
  }
  for (const assignment of flags.limits ?? []) layers.push(limitLayer(assignment));
  return layers;
}

/** One `--limit KEY=VALUE`; the schema then says whether KEY is a limit and VALUE fits it. */
function limitLayer(assignment: string): Layer {
  const match = /^\s*(?:limits\.)?([a-z_]+)\s*=\s*(.*?)\s*$/.exec(assignment);
  if (!match?.[1] || match[2] === undefined || match[2] === '') {
    throw ConfigError.of('--limit', '', `expected KEY=VALUE with KEY a field of limits (e.g. --limit max_cost_usd=5), found "${assignment}"`);
  }
  return fieldLayer(`--limit ${match[1]}`, ['limits', match[1]], coerce(match[2], 'number'));
}
