/** The config module's public surface; config/ imports nothing from the project but errors.ts. */
export {
  ROLE_STEPS,
  agentDefinitionWarnings,
  resolveStep,
  type LlmAgent,
  type ResolvedStep,
  type RoleStep,
  type RoleStepOf,
} from './agent-steps.ts';
export { ConfigError, type ConfigIssue } from './config-error.ts';
export { resolveTarget, ENV_BINDINGS, type Env } from './env.ts';
export { FLAG_BINDINGS, type ConfigOverrides } from './flags.ts';
export { InputFileError, SESSION_FILE_CAP, SETTINGS_FILE_CAP, formatBytes, readInputFile } from './input-file.ts';
export {
  AGENTS_FILE,
  CONFIG_FILE,
  STORED_SOURCE,
  configForResume,
  loadConfig,
  type LoadConfigOptions,
  type LoadedConfig,
} from './loader.ts';
export {
  ALERT_CHANNELS,
  DEFAULT_MODEL,
  DEFAULT_MODELS,
  LOG_LEVELS,
  MODEL_PROVIDERS,
  agentDefinitionSchema,
  agentsFileSchema,
  configJsonSchema,
  configSchema,
  type AgentDefinition,
  type AgentDefinitions,
  type Config,
  type RunConfig,
  isRunConfig,
  withBaseBranch,
  type LogLevel,
  type ModelProvider,
} from './schema.ts';
export { REDACTED, childProcessEnv, gitEnv, isWithheldName, readSecrets, redact, type Secrets } from './secrets.ts';
