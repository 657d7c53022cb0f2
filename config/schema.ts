import { z } from 'zod';
import { isWithheldName } from './secrets.ts';

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
 * A timer holds at most 2^31-1 ms (~24.8 days): Node fires a longer one after 1 ms instead, so
 * 9999999999 seconds would time out at once. Every field that becomes a timer stops at a day.
 */
const DAY_SECONDS = 86_400;
const secondsUpToADay = () =>
  expecting(z.number().positive().max(DAY_SECONDS), `a number of seconds greater than 0 and at most ${DAY_SECONDS} (a day)`);
const millisecondsUpToADay = () => intBetween(0, DAY_SECONDS * 1000);

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
/** Where the Monitor's alerts go besides the alerts table: the terminal, the monitor's log, the dashboard's live feed. */
export const ALERT_CHANNELS = ['console', 'log', 'live'] as const;
export const SANDBOX_MODES = ['auto', 'bwrap', 'off'] as const;
export const DEFAULT_MODEL = 'claude-sonnet-4-6';

/** The model an agent uses when its `model` is not set: one the configured provider actually serves. */
export const DEFAULT_MODELS: Readonly<Record<(typeof MODEL_PROVIDERS)[number], string>> = {
  anthropic: DEFAULT_MODEL,
  openai: 'gpt-5.4',
  'claude-cli': DEFAULT_MODEL,
  replay: DEFAULT_MODEL,
};

const llmAgentSchema = (defaults: { temperature: number; maxTokens: number }) =>
  z.strictObject({
    /** Unset: the provider's default model (DEFAULT_MODELS). */
    model: text().optional(),
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
        /** Run without a shell in each task's worktree. Unset: detected from the repository (package.json scripts.test, pytest, go test, cargo test, make test). */
        test_command: text().optional(),
        setup_command: text().optional(),
        /** Run after the tests in each task's worktree, without a shell; its findings are one of the signals an improvement cycle is measured by. */
        lint_command: text().optional(),
        /** At most a day: a timer cannot hold more than ~24.8 days, and no test run should need more than a day. */
        test_timeout_seconds: intBetween(1, DAY_SECONDS).default(600),
        /** Variables of Moderator's environment the project's commands also get (besides PATH, HOME, LANG, ...). */
        pass_env: z.array(
          expecting(
            z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).refine((name) => !isWithheldName(name)),
            'an environment variable name that is not a credential (*_API_KEY, *_TOKEN, *_SECRET, *_PASSWORD, *_ACCESS_KEY, *_PRIVATE_KEY) nor NODE_OPTIONS or NODE_TEST_CONTEXT',
          ),
        ).default([]),
      })
      .prefault({}),
    model: z
      .strictObject({
        /** No default on purpose: absent means "no provider configured" and the CLI says so. */
        provider: z.enum(MODEL_PROVIDERS).optional(),
        replay_file: text().optional(),
        replay_delay_ms: millisecondsUpToADay().default(0),
        base_url: expecting(z.url({ protocol: /^https?$/ }), 'an http(s) URL').optional(),
        /** Per request, in seconds; the SDKs retry timeouts. */
        timeout_seconds: secondsUpToADay().default(600),
        /** SDK retries on 408/409/429/5xx and timeouts, with backoff honouring retry-after; also resends of replies that broke off mid-stream. */
        max_retries: intBetween(0, 20).default(4),
        /** Times a reply that cannot be used (not the JSON asked for) is asked for again, with every problem listed. */
        reply_retries: intBetween(0, 10).default(2),
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
        moderator: llmAgentSchema({ temperature: 0.3, maxTokens: 8000 })
          .extend({
            /** Reviews at once: 1 queues them for the one Moderator; more reviews PRs of parallel tasks side by side. */
            parallel_reviews: intBetween(1, 16).default(1),
          })
          .prefault({}),
        techlead: llmAgentSchema({ temperature: 0.5, maxTokens: 8000 })
          .extend({
            /** Model turns (each may call tools) per task step before it is given up. */
            max_tool_turns: positiveInt().default(40),
            /** Programs the TechLead's run_command tool may start (argv[0]); never through a shell. */
            allowed_commands: z.array(text()).default(['npm', 'npx', 'node', 'yarn', 'pnpm', 'python', 'python3', 'pytest', 'make', 'cargo', 'go']),
            command_timeout_seconds: secondsUpToADay().default(300),
            /**
             * How run_command and the project's test and setup commands are confined: bubblewrap
             * when it works here (auto), bubblewrap or refuse to start (bwrap), or not at all (off).
             */
            sandbox: z.enum(SANDBOX_MODES).default('auto'),
            /** Let those commands use the network (e.g. a setup_command that installs packages). */
            allow_network: z.boolean().default(false),
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
            check_interval_seconds: secondsUpToADay().default(60),
            alert_channels: z.array(z.enum(ALERT_CHANNELS)).default(['console', 'log', 'live']),
            /** The same alert (kind and level) is raised again only after this long. */
            alert_window_minutes: expecting(z.number().nonnegative().max(DAY_SECONDS / 60), 'a number of minutes from 0 to 1440').default(10),
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
        /** Tasks in flight at once, each with its own TechLead, branch and worktree; 1 runs them one after another. */
        max_parallel_tasks: intBetween(1, 16).default(3),
        /**
         * Times the merge queue sends a PR back to its TechLead because bringing it up to date with
         * the base conflicts or breaks the tests; then it is re-implemented on a fresh branch once,
         * then left for a person.
         */
        max_conflict_rounds: nonNegativeInt().default(2),
        /** Model calls failing one after another (in one session) that stop the run; 0 turns the check off. */
        max_consecutive_errors: nonNegativeInt().default(3),
        /** Times a task is handed to the TechLead in one allowance (implementation, revisions, restarts after stagnation) before it counts as a loop. */
        max_task_attempts: positiveInt().default(3),
        /** A health score (0-100) below this stops the run; 0 turns the check off. */
        min_health_score: intBetween(0, 100).default(20),
        /** An improvement cycle whose measured magnitude is below this ends the cycles (diminishing returns). */
        min_improvement: numberBetween(0, 1).default(0.05),
        /** How long a question to a person (clarify questions, plan approval, the budget forecast) waits for an answer. */
        intervention_timeout_minutes: expecting(z.number().positive().max(DAY_SECONDS / 60), 'a number of minutes greater than 0 and at most 1440 (a day)').default(15),
      })
      .prefault({}),
    context: z
      .strictObject({
        /**
         * Tokens of a step's opening prompt beyond the system prompt and tools: the task, the
         * repository map, the files and the test output. At most 40% of limits.max_context_tokens.
         */
        prompt_tokens: positiveInt().default(8000),
        /** Of those, the repository map's; at most half of the prompt's. */
        map_tokens: positiveInt().default(1000),
        /** Turns kept whole when a conversation's old tool results are summarised (70%) or it is pruned (85%). */
        keep_turns: intBetween(1, 20).default(3),
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
        /** Unset: the branch the target has checked out when the run starts (main for a new repository). */
        base_branch: text().optional(),
        /** GitHub's REST API; GitHub Enterprise Server is `https://HOST/api/v3`. */
        api_url: expecting(z.url({ protocol: /^https?$/ }), 'an http(s) URL').default('https://api.github.com'),
        /**
         * Where task branches are pushed and the base branch fetched from. Unset: derived from
         * api_url and repository (`https://github.com/<repository>.git`). A path (relative to the
         * target) or file:// URL names a repository on disk.
         */
        push_url: text().optional(),
        /** How long a merge waits for GitHub to compute mergeability and for required checks, in seconds. */
        merge_wait_seconds: nonNegativeInt().default(600),
        /** The longest wait for a spent GitHub rate limit to reset before the PR step gives up, in seconds. */
        rate_limit_wait_seconds: intBetween(0, DAY_SECONDS).default(900),
        /** Spacing of GitHub API writes, in ms (GitHub asks for 1 s); 0 turns it off. */
        write_spacing_ms: millisecondsUpToADay().default(1000),
        /** Spacing of writes that notify people (PRs, reviews, merges), in ms; 0 turns it off. */
        notification_spacing_ms: millisecondsUpToADay().default(3000),
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
  .prefault({})
  .transform((config) => {
    // An OpenAI-compatible server does not serve Claude names: the default model follows the provider.
    const model = DEFAULT_MODELS[config.model.provider ?? 'anthropic'];
    const { moderator, techlead, ever_thinker } = config.agents;
    return {
      ...config,
      agents: {
        ...config.agents,
        moderator: { ...moderator, model: moderator.model ?? model },
        techlead: { ...techlead, model: techlead.model ?? model },
        ever_thinker: { ...ever_thinker, model: ever_thinker.model ?? model },
      },
    };
  });

export type Config = z.output<typeof configSchema>;

/** The settings of a run: a Config whose base branch has been resolved against the target. */
export type RunConfig = Config & { git: Config['git'] & { base_branch: string } };

/** The run's config with its base branch: the setting, else the branch the target has checked out. */
export function withBaseBranch(config: Config, branch: string): RunConfig {
  return { ...config, git: { ...config.git, base_branch: config.git.base_branch ?? branch } };
}

/** Stored settings always carry the resolved base branch; one without it was not written by a run. */
export function isRunConfig(config: Config): config is RunConfig {
  return typeof config.git.base_branch === 'string';
}
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
