import path from 'node:path';
import { coerce, type Coercion } from './coerce.ts';
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
}

interface FlagBinding {
  readonly flag: string;
  readonly path: readonly [string, string];
  readonly coerce: Coercion;
}

export const FLAG_BINDINGS: Readonly<Record<keyof ConfigOverrides, FlagBinding>> = {
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
  for (const key of Object.keys(FLAG_BINDINGS) as (keyof ConfigOverrides)[]) {
    const raw = flags[key];
    if (raw === undefined) continue;
    const binding = FLAG_BINDINGS[key];
    let value = coerce(raw, binding.coerce);
    if (key === 'replayFile' && typeof value === 'string' && value !== '') value = path.resolve(cwd, value);
    layers.push(fieldLayer(binding.flag, binding.path, value));
  }
  return layers;
}
