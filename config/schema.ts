import { z } from 'zod';

/**
 * What a field expects, in words, for error messages ("expected a positive integer, found ...").
 * zod's own issues lose the bounds of a field when the value has the wrong type, and its
 * number introspection cannot tell `positive()` from `min(0)`; so the bounded fields say it here.
 * A separate registry keeps these words out of `z.toJSONSchema`.
 */
export const expectations = z.registry<{ expected: string }>();

function expecting<T extends z.ZodType>(schema: T, expected: string): T {
  expectations.add(schema, { expected });
  return schema;
}

const text = () => expecting(z.string().min(1), 'a non-empty string');
const positiveInt = () => expecting(z.int().positive(), 'a positive integer');
const nonNegativeInt = () => expecting(z.int().nonnegative(), 'an integer of 0 or more');
const positiveNumber = () => expecting(z.number().positive(), 'a number greater than 0');
const intBetween = (min: number, max: number) =>
  expecting(z.int().min(min).max(max), `an integer between ${min} and ${max}`);
const numberBetween = (min: number, max: number) =>
  expecting(z.number().min(min).max(max), `a number between ${min} and ${max}`);
const temperature = () => numberBetween(0, 2);

/**
 * Branch names are `<branch_prefix>/<task type>/<task id>`; the prefix must survive
 * `git check-ref-format`, a shell and a URL, so it is narrower than what git allows.
 */
function isBranchPrefix(value: string): boolean {
  return (
    /^[A-Za-z0-9_][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/.test(value) &&
    !value.includes('..') &&
    !value.endsWith('.') &&
    !value.endsWith('.lock')
  );
}

export const MODEL_PROVIDERS = ['anthropic', 'openai', 'claude-cli', 'replay'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const ALERT_CHANNELS = ['console', 'log'] as const;
export const DEFAULT_MODEL = 'claude-sonnet-4-6';

const llmAgentSchema = (defaults: { temperature: number; maxTokens: number }) =>
  z.strictObject({
    model: text().default(DEFAULT_MODEL),
    temperature: temperature().default(defaults.temperature),
    max_tokens: positiveInt().default(defaults.maxTokens),
    /** Used after persistent rate limits on `model`. */
    backup_model: text().optional(),
  });

/**
 * The whole of Moderator's settings. Field names follow the seed's YAML (snake_case).
 * Every section defaults, so `configSchema.parse({})` is a complete configuration.
 */
export const configSchema = z
  .strictObject({
    project: z
      .strictObject({
        /** The loader defaults it to the target directory's name. */
        name: text().default('project'),
        type: text().default('app'),
        language: text().default('unknown'),
        test_command: text().default('npm test'),
        setup_command: text().optional(),
        test_timeout_seconds: positiveInt().default(600),
      })
      .prefault({}),
    model: z
      .strictObject({
        /** No default on purpose: absent means "no provider configured" and the CLI says so. */
        provider: z.enum(MODEL_PROVIDERS).optional(),
        replay_file: text().optional(),
        replay_delay_ms: nonNegativeInt().default(0),
        base_url: expecting(z.url({ protocol: /^https?$/ }), 'an http(s) URL').optional(),
        /** Per request, in seconds; the SDKs retry timeouts. */
        timeout_seconds: positiveNumber().default(600),
        /** SDK retries on 408/409/429/5xx and timeouts, with backoff honouring retry-after. */
        max_retries: nonNegativeInt().default(4),
        /** The Claude Code executable for provider "claude-cli". */
        claude_cli_path: text().default('claude'),
        /** USD per million tokens, by model name prefix; merged over the built-in table. */
        prices: z
          .record(
            z.string(),
            z.strictObject({ input: z.number().nonnegative(), output: z.number().nonnegative(), cache_read: z.number().nonnegative().optional(), cache_write: z.number().nonnegative().optional() }),
          )
          .optional(),
      })
      .prefault({}),
    agents: z
      .strictObject({
        moderator: llmAgentSchema({ temperature: 0.3, maxTokens: 8000 }).prefault({}),
        techlead: llmAgentSchema({ temperature: 0.5, maxTokens: 8000 })
          .extend({
            /** Model turns (each may call tools) per task step before it is given up. */
            max_tool_turns: positiveInt().default(40),
            /** Programs the TechLead's run_command tool may start (argv[0]); never through a shell. */
            allowed_commands: z.array(text()).default(['npm', 'npx', 'node', 'yarn', 'pnpm', 'python', 'python3', 'pytest', 'make', 'cargo', 'go']),
            command_timeout_seconds: positiveNumber().default(300),
          })
          .prefault({}),
        ever_thinker: llmAgentSchema({ temperature: 0.7, maxTokens: 4000 })
          .extend({
            min_priority: z.number().default(3),
            max_proposals_per_cycle: positiveInt().default(3),
          })
          .prefault({}),
        monitor: z
          .strictObject({
            check_interval_seconds: positiveNumber().default(60),
            alert_channels: z.array(z.enum(ALERT_CHANNELS)).default(['console', 'log']),
            model: text().optional(),
          })
          .prefault({}),
      })
      .prefault({}),
    limits: z
      .strictObject({
        max_tokens_total: positiveInt().default(1_000_000),
        max_cost_usd: positiveNumber().optional(),
        max_runtime_hours: positiveNumber().default(24),
        max_improvement_cycles: nonNegativeInt().default(5),
        max_error_rate: numberBetween(0, 1).default(0.2),
        stagnation_minutes: positiveNumber().default(30),
        max_context_tokens: positiveInt().default(100_000),
        max_review_attempts: positiveInt().default(3),
      })
      .prefault({}),
    git: z
      .strictObject({
        provider: z.enum(['local', 'github']).default('local'),
        repository: expecting(
          z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/),
          'a repository as "owner/name"',
        ).optional(),
        branch_prefix: expecting(
          z.string().refine(isBranchPrefix),
          'a git branch name prefix (letters, digits, ".", "_", "-", "/"; no spaces, no "..", not starting with "-")',
        ).default('duo-agent'),
        base_branch: text().default('main'),
        author_name: text().default('Moderator'),
        author_email: text().default('moderator@localhost'),
      })
      .prefault({}),
    monitor: z
      .strictObject({
        port: intBetween(0, 65535).default(8080),
        host: text().default('127.0.0.1'),
        enable_websocket: z.boolean().default(true),
        /** Bearer token for POST /api/intervention, and for requests from other machines when `host` is not loopback; generated per run and printed when unset. */
        token: expecting(z.string().min(16), 'a token of at least 16 characters').optional(),
      })
      .prefault({}),
    logging: z
      .strictObject({
        level: z.enum(LOG_LEVELS).default('info'),
      })
      .prefault({}),
    features: z
      .strictObject({
        specialists: z.boolean().default(false),
        learning: z.boolean().default(false),
      })
      .prefault({}),
  })
  .prefault({});

export type Config = z.output<typeof configSchema>;
export type ModelProvider = (typeof MODEL_PROVIDERS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One specialist definition from agents.yaml. */
export const agentDefinitionSchema = z.strictObject({
  name: text(),
  type: text(),
  system_prompt: text(),
  temperature: temperature().optional(),
  max_tokens: positiveInt().optional(),
  model: text().optional(),
});

/** The agents.yaml file; a file without `agents` defines none. */
export const agentsFileSchema = z.strictObject({
  agents: z.record(z.string(), agentDefinitionSchema).default({}),
});

export type AgentDefinition = z.output<typeof agentDefinitionSchema>;
/** Specialist definitions by key (the keys of agents.yaml's `agents` mapping). */
export type AgentDefinitions = Record<string, AgentDefinition>;

/** JSON Schema of what a user may write in duo-agent.config.yaml (editor completion, docs). */
export function configJsonSchema(): z.core.JSONSchema.BaseSchema {
  return z.toJSONSchema(configSchema, { io: 'input' });
}
