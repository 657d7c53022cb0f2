import fs from 'node:fs';
import path from 'node:path';
import type { Coercion } from './coerce.ts';
import { ConfigError } from './config-error.ts';
import { coerce } from './coerce.ts';
import { fieldLayer, type Layer } from './layers.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/** A variable's value, with the empty string counting as unset (`FOO= moderator ...`). */
export function envValue(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

interface EnvBinding {
  readonly name: string;
  readonly path: readonly [string, string];
  readonly coerce: Coercion;
}

/** The seed's non-secret variables (and one for containers) and the field each one sets. */
export const ENV_BINDINGS: readonly EnvBinding[] = [
  { name: 'DUO_AGENT_LOG_LEVEL', path: ['logging', 'level'], coerce: 'level' },
  { name: 'DUO_AGENT_MODEL_PROVIDER', path: ['model', 'provider'], coerce: 'lowercase' },
  { name: 'DUO_AGENT_MONITOR_PORT', path: ['monitor', 'port'], coerce: 'number' },
  // Not in the seed: a container serves its port on 0.0.0.0 (the Dockerfile sets it).
  { name: 'DUO_AGENT_MONITOR_HOST', path: ['monitor', 'host'], coerce: 'string' },
  { name: 'DUO_AGENT_ENABLE_WEBSOCKET', path: ['monitor', 'enable_websocket'], coerce: 'boolean' },
  { name: 'DUO_AGENT_MAX_TOKENS', path: ['limits', 'max_tokens_total'], coerce: 'number' },
  { name: 'DUO_AGENT_MAX_CONTEXT', path: ['limits', 'max_context_tokens'], coerce: 'number' },
  { name: 'DUO_AGENT_MAX_RUNTIME_HOURS', path: ['limits', 'max_runtime_hours'], coerce: 'number' },
  // Not in the seed: how many tasks run at once.
  { name: 'DUO_AGENT_MAX_PARALLEL_TASKS', path: ['limits', 'max_parallel_tasks'], coerce: 'number' },
  { name: 'DUO_AGENT_ENABLE_SPECIALISTS', path: ['features', 'specialists'], coerce: 'boolean' },
  { name: 'DUO_AGENT_ENABLE_LEARNING', path: ['features', 'learning'], coerce: 'boolean' },
];

/** One layer per set variable, so an error names the variable that set the field. */
export function envLayers(env: Env): Layer[] {
  const layers: Layer[] = [];
  for (const binding of ENV_BINDINGS) {
    const raw = envValue(env, binding.name);
    if (raw !== undefined) layers.push(fieldLayer(binding.name, binding.path, coerce(raw, binding.coerce)));
  }
  return layers;
}

/**
 * The target repository: `--target`, then DUO_AGENT_WORKSPACE, then the current directory. A
 * path that exists and is not a folder (or runs through a file: `/dev/null/x`) is refused here,
 * for every command alike, naming where it came from; a missing one is a new target.
 */
export function resolveTarget(flagTarget: string | undefined, env: Env, cwd: string): string {
  const fromFlag = flagTarget !== undefined && flagTarget !== '';
  const chosen = fromFlag ? flagTarget : envValue(env, 'DUO_AGENT_WORKSPACE');
  const target = path.resolve(cwd, chosen ?? '.');
  let folder: boolean;
  try {
    folder = fs.statSync(target, { throwIfNoEntry: false })?.isDirectory() ?? true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw error;
    folder = false;
  }
  if (!folder) {
    const source = fromFlag ? '--target' : chosen !== undefined ? 'DUO_AGENT_WORKSPACE' : 'the current folder';
    throw ConfigError.of(source, '', `${target} is not a folder: give a folder (a git repository, or a new or empty folder)`);
  }
  return target;
}
