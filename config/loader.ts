import path from 'node:path';
import { checkRoles } from './agent-steps.ts';
import { ConfigError, type ConfigIssue } from './config-error.ts';
import { envLayers, envValue, type Env } from './env.ts';
import { flagLayers, type ConfigOverrides } from './flags.ts';
import { describeFound, validate } from './issues.ts';
import { fieldLayer, isMapping, mergeLayers, type Layer } from './layers.ts';
import { agentsFileSchema, configSchema, type AgentDefinitions, type Config } from './schema.ts';
import { readSecrets, type Secrets } from './secrets.ts';
import { readYamlFile } from './yaml-file.ts';

export const CONFIG_FILE = 'duo-agent.config.yaml';
export const AGENTS_FILE = 'agents.yaml';

export interface LoadConfigOptions {
  /** Absolute path of the target repository (see resolveTarget). */
  target: string;
  /** `--config`: must exist. Default: duo-agent.config.yaml in the target, if present. */
  configPath?: string | undefined;
  /** `--agents`: must exist. Default: agents.yaml in the target, if present. */
  agentsPath?: string | undefined;
  env: Env;
  flags?: ConfigOverrides | undefined;
  /** Settings between the defaults and the files, e.g. a demo's project settings. */
  base?: { source: string; values: unknown } | undefined;
  /** Resolves relative paths and shortens file names in messages. Default: process.cwd(). */
  cwd?: string | undefined;
}

export interface LoadedConfig {
  config: Config;
  agents: AgentDefinitions;
  secrets: Secrets;
  /** Absolute paths of the files actually read. */
  files: string[];
}

/** defaults < base < files < environment < flags, validated once. Throws ConfigError. */
export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const cwd = options.cwd ?? process.cwd();
  const files: string[] = [];
  const layers: Layer[] = [
    { source: 'defaults', values: { project: { name: path.basename(options.target) || 'project' } } },
  ];

  if (options.base !== undefined) {
    const { source, values } = options.base;
    if (!isMapping(values)) {
      throw ConfigError.of(source, '', `expected a mapping of settings, found ${describeFound(values)}`);
    }
    layers.push({ source, values });
  }

  const configFile = locate(options.configPath, options.target, CONFIG_FILE, cwd);
  const configLabel = labelOf(configFile, cwd);
  const configValues = readYamlFile(configFile, configLabel, options.configPath === undefined ? undefined : '--config');
  if (configValues !== undefined) {
    files.push(configFile);
    layers.push({ source: configLabel, values: withReplayFileResolved(configValues, path.dirname(configFile)) });
  }

  layers.push(...envLayers(options.env), ...flagLayers(options.flags, cwd));
  const merged = mergeLayers(withSdkBaseUrl(layers, options.env));
  const config = validate(configSchema, merged.values, (at) => merged.sourceOf(at));

  const agentsFile = locate(options.agentsPath, options.target, AGENTS_FILE, cwd);
  const agentsLabel = labelOf(agentsFile, cwd);
  const agentsValues = readYamlFile(agentsFile, agentsLabel, options.agentsPath === undefined ? undefined : '--agents');
  let agents: AgentDefinitions = {};
  if (agentsValues !== undefined) {
    files.push(agentsFile);
    agents = validate(agentsFileSchema, agentsValues, () => agentsLabel).agents;
    checkRoles(agents, agentsLabel);
  }

  const secrets = readSecrets(options.env);
  return { config: withMonitorToken(config, secrets), agents, secrets, files };
}

const MONITOR_TOKEN_VARIABLE = 'DUO_AGENT_MONITOR_TOKEN';

/**
 * `DUO_AGENT_MONITOR_TOKEN` over `monitor.token`. It is a secret: the run's stored settings drop
 * the token, so it is read again on resume, and a bad one is reported without its value.
 */
function withMonitorToken(config: Config, secrets: Secrets): Config {
  const token = secrets.monitorToken;
  if (token === undefined) return config;
  if (token.length < 16) throw ConfigError.of(MONITOR_TOKEN_VARIABLE, '', `expected a token of at least 16 characters, found one of ${token.length}`);
  return { ...config, monitor: { ...config.monitor, token } };
}

export const STORED_SOURCE = 'stored settings';

/**
 * Settings for a resumed run: the settings it started with, then flags. Files and the
 * environment are not read again (a run keeps its settings), except for the secrets,
 * which are never stored.
 */
export function configForResume(
  stored: unknown,
  flags: ConfigOverrides | undefined,
  env: Env,
  cwd: string = process.cwd(),
): { config: Config; secrets: Secrets } {
  let settings: Config;
  try {
    settings = validate(configSchema, stored, () => STORED_SOURCE);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const first = error.issues[0];
    const detail =
      first === undefined ? error.message : [first.field, first.problem].filter((part) => part !== '').join(': ');
    const issue: ConfigIssue = {
      source: STORED_SOURCE,
      field: first?.field ?? '',
      problem: first?.problem ?? error.message,
      message: `the run's stored settings are incompatible with this version of Moderator (${detail}); start a new run`,
    };
    throw new ConfigError([issue], { cause: error });
  }
  const merged = mergeLayers([{ source: STORED_SOURCE, values: settings }, ...flagLayers(flags, cwd)], STORED_SOURCE);
  const config = validate(configSchema, merged.values, (at) => merged.sourceOf(at));
  const secrets = readSecrets(env);
  return { config: withMonitorToken(config, secrets), secrets };
}

/** The base-URL variables the SDKs themselves read, by provider. */
const SDK_BASE_URL_VARIABLES: Readonly<Record<string, string>> = { anthropic: 'ANTHROPIC_BASE_URL', openai: 'OPENAI_BASE_URL' };

/**
 * `model.base_url` from the SDK's own variable (ANTHROPIC_BASE_URL, OPENAI_BASE_URL) when nothing
 * sets it: the lowest layer above the defaults, so any file, variable or flag beats it. The
 * providers pass the base URL to the SDKs explicitly, so without this the variables were ignored.
 */
function withSdkBaseUrl(layers: Layer[], env: Env): Layer[] {
  const merged = mergeLayers(layers).values;
  const model = isMapping(merged['model']) ? merged['model'] : {};
  const variable = typeof model['provider'] === 'string' ? SDK_BASE_URL_VARIABLES[model['provider'].toLowerCase()] : undefined;
  const value = variable === undefined ? undefined : envValue(env, variable);
  if (variable === undefined || value === undefined || model['base_url'] !== undefined) return layers;
  return [layers[0] as Layer, fieldLayer(variable, ['model', 'base_url'], value), ...layers.slice(1)];
}

function locate(explicit: string | undefined, target: string, name: string, cwd: string): string {
  return explicit === undefined ? path.join(target, name) : path.resolve(cwd, explicit);
}

/** The path relative to the current directory when the file is under it, else absolute. */
function labelOf(file: string, cwd: string): string {
  const relative = path.relative(cwd, file);
  return relative === '' || relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

/** A replay file named in a settings file is relative to that file, like tsconfig paths. */
function withReplayFileResolved(values: Record<string, unknown>, dir: string): Record<string, unknown> {
  const model = values['model'];
  if (!isMapping(model) || typeof model['replay_file'] !== 'string' || model['replay_file'] === '') return values;
  return { ...values, model: { ...model, replay_file: path.resolve(dir, model['replay_file']) } };
}
