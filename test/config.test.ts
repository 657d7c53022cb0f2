import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { parse as parseYaml } from 'yaml';
import { ModeratorError } from '../errors.ts';
import {
  ConfigError,
  childProcessEnv,
  configForResume,
  gitEnv,
  configJsonSchema,
  configSchema,
  loadConfig,
  redact,
  resolveTarget,
  type Config,
  type LoadConfigOptions,
} from '../config/index.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures', 'config');
const exampleFile = path.join(here, '..', 'config', 'duo-agent.config.example.yaml');

/** A fresh target directory holding `files`, removed after the test. */
function target(t: ExecutionContext, files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-config-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** loadConfig run from inside the target, so file labels are the short relative names. */
function load(dir: string, options: Partial<LoadConfigOptions> = {}) {
  return loadConfig({ target: dir, env: {}, cwd: dir, ...options });
}

function configError(t: ExecutionContext, run: () => unknown): ConfigError {
  const error = t.throws(run, { instanceOf: ConfigError });
  if (error === undefined) throw new Error('expected a ConfigError');
  return error;
}

/** The one-line message of the ConfigError that `run` throws. */
function failure(t: ExecutionContext, run: () => unknown): string {
  return configError(t, run).message;
}

function defaultsFor(name: string): Config {
  return {
    project: { name, type: 'app', language: 'unknown', test_timeout_seconds: 600, pass_env: [] },
    model: { replay_delay_ms: 0, timeout_seconds: 600, max_retries: 4, reply_retries: 2, claude_cli_path: 'claude' },
    agents: {
      moderator: { model: 'claude-sonnet-4-6', temperature: 0.3, max_tokens: 8000, parallel_reviews: 1 },
      techlead: {
        model: 'claude-sonnet-4-6', temperature: 0.5, max_tokens: 8000, max_tool_turns: 40, command_timeout_seconds: 300,
        allowed_commands: ['npm', 'npx', 'node', 'yarn', 'pnpm', 'python', 'python3', 'pytest', 'make', 'cargo', 'go'],
        sandbox: 'auto', allow_network: false,
      },
      ever_thinker: {
        model: 'claude-sonnet-4-6',
        temperature: 0.7,
        max_tokens: 4000,
        min_priority: 3,
        max_proposals_per_cycle: 3,
      },
      monitor: { check_interval_seconds: 60, alert_channels: ['console', 'log', 'live'], alert_window_minutes: 10 },
    },
    limits: {
      max_tokens_total: 1_000_000,
      max_runtime_hours: 24,
      max_improvement_cycles: 5,
      max_error_rate: 0.2,
      stagnation_minutes: 30,
      max_context_tokens: 100_000,
      max_review_attempts: 3,
      max_parallel_tasks: 3,
      max_conflict_rounds: 2,
      max_consecutive_errors: 3,
      max_task_attempts: 3,
      min_health_score: 20,
      min_improvement: 0.05,
      intervention_timeout_minutes: 15,
    },
    context: { prompt_tokens: 8000, map_tokens: 1000, keep_turns: 3 },
    git: {
      provider: 'local',
      branch_prefix: 'duo-agent',
      api_url: 'https://api.github.com',
      merge_wait_seconds: 600,
      rate_limit_wait_seconds: 900,
      write_spacing_ms: 1000,
      notification_spacing_ms: 3000,
      author_name: 'Moderator',
      author_email: 'moderator@localhost',
    },
    monitor: { port: 8080, host: '127.0.0.1', enable_websocket: true },
    logging: { level: 'info' },
    features: { specialists: false, learning: false },
  };
}

// --- the seed's sample files -------------------------------------------------------------

test('the seed sample files load unchanged from the target and give the seed values', (t) => {
  const dir = target(t, {
    'duo-agent.config.yaml': fs.readFileSync(path.join(fixtures, 'duo-agent.config.yaml'), 'utf8'),
    'agents.yaml': fs.readFileSync(path.join(fixtures, 'agents.yaml'), 'utf8'),
  });
  const { config, agents, files, secrets } = load(dir);

  t.deepEqual(config.project, {
    name: 'example-project',
    type: 'web_app',
    language: 'python',
    test_timeout_seconds: 600,
    pass_env: [],
  });
  t.deepEqual(config.agents.moderator, { model: 'claude-3-opus', temperature: 0.3, max_tokens: 8000, parallel_reviews: 1 });
  t.like(config.agents.techlead, { model: 'claude-3-opus', temperature: 0.5, max_tokens: 8000 });
  t.deepEqual(config.agents.monitor, { check_interval_seconds: 60, alert_channels: ['console', 'log'], alert_window_minutes: 10 });
  t.like(config.limits, {
    max_tokens_total: 1_000_000,
    max_runtime_hours: 24,
    max_improvement_cycles: 5,
    max_error_rate: 0.2,
    stagnation_minutes: 30,
  });
  t.like(config.git, { provider: 'github', repository: 'org/repo', branch_prefix: 'duo-agent' });
  t.deepEqual(agents, {
    generator: {
      name: 'Code Generator',
      type: 'generator',
      system_prompt: 'You are an expert software engineer...',
      temperature: 0.7,
      max_tokens: 4000,
    },
    reviewer: {
      name: 'Code Reviewer',
      type: 'reviewer',
      system_prompt: 'You are a critical senior code reviewer...',
      temperature: 0.3,
      max_tokens: 2000,
    },
  });
  t.deepEqual(files, [path.join(dir, 'duo-agent.config.yaml'), path.join(dir, 'agents.yaml')]);
  t.deepEqual(secrets, {});
});

test('explicit --config and --agents paths are read instead of the target files', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'project: { name: from-target }\n' });
  const { config, agents, files } = load(dir, {
    configPath: path.join(fixtures, 'duo-agent.config.yaml'),
    agentsPath: path.join(fixtures, 'agents.yaml'),
  });
  t.is(config.project.name, 'example-project');
  t.deepEqual(Object.keys(agents), ['generator', 'reviewer']);
  t.deepEqual(files, [path.join(fixtures, 'duo-agent.config.yaml'), path.join(fixtures, 'agents.yaml')]);
});

// --- defaults and precedence -------------------------------------------------------------

test('without files, variables or flags every field has its default and the project is named after the target', (t) => {
  const dir = target(t);
  const { config, agents, files } = load(dir);
  t.deepEqual(config, defaultsFor(path.basename(dir)));
  t.deepEqual(agents, {});
  t.deepEqual(files, []);
  t.is(config.model.provider, undefined);
});

test('an empty file and a section whose keys are all commented out mean "use the defaults"', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': '', 'agents.yaml': '# nothing yet\n' });
  t.deepEqual(load(dir).config, defaultsFor(path.basename(dir)));
  t.is(load(dir).files.length, 2);

  const commented = target(t, { 'duo-agent.config.yaml': 'limits:\n  # max_tokens_total: 5\n' });
  t.is(load(commented).config.limits.max_tokens_total, 1_000_000);
});

test('precedence for one field: defaults < base < file < environment < flag', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_tokens_total: 500\n' });
  const empty = target(t);
  const base = { source: 'demo', values: { limits: { max_tokens_total: 600 } } };
  const env = { DUO_AGENT_MAX_TOKENS: '400' };
  const flags = { maxTokens: '300' };

  t.is(load(empty).config.limits.max_tokens_total, 1_000_000);
  t.is(load(empty, { base }).config.limits.max_tokens_total, 600);
  t.is(load(dir, { base }).config.limits.max_tokens_total, 500);
  t.is(load(dir, { base, env }).config.limits.max_tokens_total, 400);
  t.is(load(dir, { base, env, flags }).config.limits.max_tokens_total, 300);
  t.is(load(dir, { flags: { maxTokens: 250 } }).config.limits.max_tokens_total, 250);
});

test('a layer overrides only the fields it sets', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_runtime_hours: 2\n  max_tokens_total: 500\n' });
  const { limits } = load(dir, { env: { DUO_AGENT_MAX_TOKENS: '400' } }).config;
  t.is(limits.max_runtime_hours, 2);
  t.is(limits.max_tokens_total, 400);
  t.is(limits.stagnation_minutes, 30);
});

const ENV_CASES: ReadonlyArray<[name: string, value: string, pick: (c: Config) => unknown, expected: unknown]> = [
  ['DUO_AGENT_LOG_LEVEL', 'DEBUG', (c) => c.logging.level, 'debug'],
  ['DUO_AGENT_MODEL_PROVIDER', 'openai', (c) => c.model.provider, 'openai'],
  ['DUO_AGENT_MONITOR_PORT', '9090', (c) => c.monitor.port, 9090],
  ['DUO_AGENT_MONITOR_HOST', '0.0.0.0', (c) => c.monitor.host, '0.0.0.0'],
  ['DUO_AGENT_ENABLE_WEBSOCKET', 'false', (c) => c.monitor.enable_websocket, false],
  ['DUO_AGENT_MAX_TOKENS', '2000000', (c) => c.limits.max_tokens_total, 2_000_000],
  ['DUO_AGENT_MAX_CONTEXT', '50000', (c) => c.limits.max_context_tokens, 50_000],
  ['DUO_AGENT_MAX_RUNTIME_HOURS', '1.5', (c) => c.limits.max_runtime_hours, 1.5],
  ['DUO_AGENT_ENABLE_SPECIALISTS', 'true', (c) => c.features.specialists, true],
  ['DUO_AGENT_ENABLE_LEARNING', 'yes', (c) => c.features.learning, true],
];

for (const [name, value, pick, expected] of ENV_CASES) {
  test(`environment variable ${name}=${value} sets its field`, (t) => {
    const dir = target(t);
    t.not(pick(load(dir).config), expected, 'the case must differ from the default');
    t.is(pick(load(dir, { env: { [name]: value } }).config), expected);
  });
}

test('DUO_AGENT_LOG_LEVEL takes the seed names case-insensitively and the pino names', (t) => {
  const dir = target(t);
  const level = (value: string) => load(dir, { env: { DUO_AGENT_LOG_LEVEL: value } }).config.logging.level;
  t.is(level('WARNING'), 'warn');
  t.is(level('warning'), 'warn');
  t.is(level('INFO'), 'info');
  t.is(level('Error'), 'error');
  t.is(level('trace'), 'trace');
  t.is(level('silent'), 'silent');
});

test('boolean variables accept true/false/1/0/yes/no in any case', (t) => {
  const dir = target(t);
  const ws = (value: string) => load(dir, { env: { DUO_AGENT_ENABLE_WEBSOCKET: value } }).config.monitor.enable_websocket;
  t.is(ws('0'), false);
  t.is(ws('NO'), false);
  t.is(ws('False'), false);
  t.is(ws('1'), true);
  t.is(ws('TRUE'), true);
});

test('an empty environment variable counts as unset', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'monitor:\n  port: 7000\n' });
  const { config } = load(dir, { env: { DUO_AGENT_MONITOR_PORT: '', DUO_AGENT_LOG_LEVEL: '' } });
  t.is(config.monitor.port, 7000);
  t.is(config.logging.level, 'info');
});

test('every flag sets its field', (t) => {
  const dir = target(t);
  const { config } = load(dir, {
    flags: { provider: 'replay', replayFile: 'session.jsonl', replayDelayMs: '25', maxTokens: '1234', logLevel: 'debug', port: 0 },
  });
  t.is(config.model.provider, 'replay');
  t.is(config.model.replay_file, path.join(dir, 'session.jsonl'));
  t.is(config.model.replay_delay_ms, 25);
  t.is(config.limits.max_tokens_total, 1234);
  t.is(config.logging.level, 'debug');
  t.is(config.monitor.port, 0);
});

test('a replay file named in a settings file is relative to that file', (t) => {
  const dir = target(t, { 'conf/moderator.yaml': 'model:\n  provider: replay\n  replay_file: rec/session.jsonl\n' });
  const { config } = load(dir, { configPath: 'conf/moderator.yaml' });
  t.is(config.model.replay_file, path.join(dir, 'conf', 'rec', 'session.jsonl'));
});

// --- errors ------------------------------------------------------------------------------

test('a bad value in the file names the file, the field, what was expected and what was found', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_error_rate: high\n' });
  const error = configError(t, () => load(dir));
  t.is(error.message, 'duo-agent.config.yaml: limits.max_error_rate: expected a number between 0 and 1, found "high"');
  t.is(error.code, 'config');
  t.true(error instanceof ModeratorError);
  t.deepEqual(error.issues, [
    {
      source: 'duo-agent.config.yaml',
      field: 'limits.max_error_rate',
      problem: 'expected a number between 0 and 1, found "high"',
      message: error.message,
    },
  ]);
});

test('a value out of range reads like a value of the wrong type', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_error_rate: 1.5\nmonitor:\n  port: 70000\n' });
  const error = configError(t, () => load(dir));
  t.deepEqual(
    error.issues.map((issue) => issue.message),
    [
      'duo-agent.config.yaml: limits.max_error_rate: expected a number between 0 and 1, found 1.5',
      'duo-agent.config.yaml: monitor.port: expected an integer between 0 and 65535, found 70000',
    ],
  );
  t.is(error.message, 'duo-agent.config.yaml: limits.max_error_rate: expected a number between 0 and 1, found 1.5 (and 1 more problem)');
});

test('enums, lists and branch prefixes say what they accept', (t) => {
  const messageFor = (yaml: string) => failure(t, () => load(target(t, { 'duo-agent.config.yaml': yaml })));
  t.is(
    messageFor('model:\n  provider: gpt\n'),
    'duo-agent.config.yaml: model.provider: expected one of "anthropic", "openai", "claude-cli", "replay", found "gpt"',
  );
  t.is(
    messageFor('agents:\n  monitor:\n    alert_channels: [console, slack]\n'),
    'duo-agent.config.yaml: agents.monitor.alert_channels[1]: expected one of "console", "log", "live", found "slack"',
  );
  t.regex(messageFor('git:\n  branch_prefix: "my bots"\n'), /^duo-agent\.config\.yaml: git\.branch_prefix: expected a git branch name prefix .*found "my bots"$/);
  t.regex(messageFor('git:\n  branch_prefix: "-x"\n'), /found "-x"$/);
  t.regex(messageFor('git:\n  branch_prefix: "a..b"\n'), /found "a\.\.b"$/);
  t.is(messageFor('limits: 5\n'), 'duo-agent.config.yaml: limits: expected a mapping, found 5');
  t.is(messageFor('model:\n  base_url: ftp://x\n'), 'duo-agent.config.yaml: model.base_url: expected an http(s) URL, found "ftp://x"');
});

test('an unknown field is an error that suggests the close known name', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_tokenz: 5\n' });
  const error = configError(t, () => load(dir));
  t.is(error.message, 'duo-agent.config.yaml: limits: unknown field "max_tokenz" (did you mean "max_tokens_total"?)');

  const top = target(t, { 'duo-agent.config.yaml': 'limitz: {}\nwhatever: 1\n' });
  t.deepEqual(
    configError(t, () => load(top)).issues.map((issue) => issue.message),
    ['duo-agent.config.yaml: unknown field "limitz" (did you mean "limits"?)', 'duo-agent.config.yaml: unknown field "whatever"'],
  );
});

test('a YAML syntax error names the file and the line', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'project:\n  name: x\nlimits:\n  max_tokens_total: 5\n max_runtime_hours: 2\n' });
  const error = configError(t, () => load(dir));
  t.regex(error.message, /^duo-agent\.config\.yaml: invalid YAML at line 5, column \d+: \S/);
  t.false(error.message.includes('\n'));
});

test('a duplicate key and a file that is not a mapping are errors', (t) => {
  const dup = target(t, { 'duo-agent.config.yaml': 'limits: {}\nlimits: {}\n' });
  t.regex(failure(t, () => load(dup)), /^duo-agent\.config\.yaml: invalid YAML at line 2, column 1: /);
  const list = target(t, { 'duo-agent.config.yaml': '- a\n- b\n' });
  t.is(failure(t, () => load(list)), 'duo-agent.config.yaml: expected a mapping of settings at the top level, found a list');
});

test('a bad environment variable is named, with what was expected and found', (t) => {
  const dir = target(t);
  t.is(
    failure(t, () => load(dir, { env: { DUO_AGENT_MONITOR_PORT: 'abc' } })),
    'DUO_AGENT_MONITOR_PORT: expected an integer between 0 and 65535, found "abc"',
  );
  t.is(
    failure(t, () => load(dir, { env: { DUO_AGENT_ENABLE_LEARNING: 'maybe' } })),
    'DUO_AGENT_ENABLE_LEARNING: expected true or false, found "maybe"',
  );
  t.is(
    failure(t, () => load(dir, { env: { DUO_AGENT_MAX_CONTEXT: '1.5' } })),
    'DUO_AGENT_MAX_CONTEXT: expected a positive integer, found 1.5',
  );
  t.regex(
    failure(t, () => load(dir, { env: { DUO_AGENT_LOG_LEVEL: 'LOUD' } })),
    /^DUO_AGENT_LOG_LEVEL: expected one of "trace", .*found "loud"$/,
  );
});

test('a bad flag is named, with what was expected and found', (t) => {
  const dir = target(t);
  t.is(failure(t, () => load(dir, { flags: { maxTokens: 'lots' } })), '--max-tokens: expected a positive integer, found "lots"');
  t.is(failure(t, () => load(dir, { flags: { port: -1 } })), '--port: expected an integer between 0 and 65535, found -1');
  t.is(
    failure(t, () => load(dir, { flags: { replayDelayMs: 'soon' } })),
    '--replay-delay-ms: expected an integer between 0 and 86400000, found "soon"',
  );
  t.regex(failure(t, () => load(dir, { flags: { provider: 'gpt' } })), /^--provider: expected one of "anthropic", .*found "gpt"$/);
});

test('each problem is blamed on the layer that set the field', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'limits:\n  max_error_rate: high\n' });
  const error = configError(t, () =>
    load(dir, {
      base: { source: 'demo settings', values: { monitor: { host: '' } } },
      env: { DUO_AGENT_MAX_TOKENS: 'many' },
      flags: { port: 'x' },
    }),
  );
  t.deepEqual(
    error.issues.map((issue) => issue.source).sort(),
    ['--port', 'DUO_AGENT_MAX_TOKENS', 'demo settings', 'duo-agent.config.yaml'],
  );
  t.true(error.issues.some((issue) => issue.message === 'demo settings: monitor.host: expected a non-empty string, found ""'));
});

test('a later layer fixes an earlier bad value it overrides', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'monitor:\n  port: abc\n' });
  t.is(load(dir, { flags: { port: '9000' } }).config.monitor.port, 9000);
  // ...and a bad value that overrides a bad one is blamed on the later layer.
  t.is(
    failure(t, () => load(dir, { env: { DUO_AGENT_MONITOR_PORT: '99999' } })),
    'DUO_AGENT_MONITOR_PORT: expected an integer between 0 and 65535, found 99999',
  );
});

test('a --config path that does not exist is an error; a missing default file is not', (t) => {
  const dir = target(t);
  t.is(failure(t, () => load(dir, { configPath: 'nope.yaml' })), '--config: cannot read "nope.yaml": no such file');
  t.is(failure(t, () => load(dir, { agentsPath: 'nope.yaml' })), '--agents: cannot read "nope.yaml": no such file');
  t.notThrows(() => load(dir));
});

test('a bad field in agents.yaml outside the current directory is reported with the absolute path', (t) => {
  const dir = target(t, {
    'agents.yaml': 'agents:\n  reviewer:\n    name: R\n    type: reviewer\n    system_prompt: Review.\n    temperature: warm\n',
  });
  const elsewhere = target(t);
  const error = configError(t, () => load(dir, { cwd: elsewhere }));
  t.is(error.message, `${path.join(dir, 'agents.yaml')}: agents.reviewer.temperature: expected a number between 0 and 2, found "warm"`);
});

test('agents.yaml requires name, type and system_prompt and rejects unknown fields', (t) => {
  const dir = target(t, { 'agents.yaml': 'agents:\n  tester:\n    name: T\n    type: tester\n    prompt: hi\n' });
  t.deepEqual(
    configError(t, () => load(dir)).issues.map((issue) => issue.message),
    [
      'agents.yaml: agents.tester.system_prompt: expected a non-empty string, found nothing',
      'agents.yaml: agents.tester: unknown field "prompt"',
    ],
  );
});

test('a base layer that is not a mapping is an error naming it', (t) => {
  const dir = target(t);
  t.is(failure(t, () => load(dir, { base: { source: 'demo', values: [1] } })), 'demo: expected a mapping of settings, found a list');
});

// --- secrets and the environment ---------------------------------------------------------

test('secrets come from the environment, never appear in the config, and redact hides them', (t) => {
  const dir = target(t);
  const env = {
    DUO_AGENT_API_KEY: 'sk-ant-secret-1',
    ANTHROPIC_API_KEY: 'sk-ant-fallback',
    OPENAI_API_KEY: 'sk-openai-secret-2',
    GITHUB_TOKEN: 'ghp_secret3',
  };
  const { config, secrets } = load(dir, { env });
  t.deepEqual(secrets, { anthropicApiKey: 'sk-ant-secret-1', openaiApiKey: 'sk-openai-secret-2', gitToken: 'ghp_secret3' });
  const json = JSON.stringify(config);
  for (const value of Object.values(env)) t.false(json.includes(value));

  t.is(
    redact('Authorization: sk-ant-secret-1, token ghp_secret3 and sk-openai-secret-2 twice sk-ant-secret-1', secrets),
    'Authorization: [redacted], token [redacted] and [redacted] twice [redacted]',
  );
  t.is(redact('nothing here', {}), 'nothing here');
});

test('the vendor variable names are fallbacks for the DUO_AGENT secrets', (t) => {
  const dir = target(t);
  const { secrets } = load(dir, { env: { ANTHROPIC_API_KEY: 'sk-a', DUO_AGENT_API_KEY: '', GITHUB_TOKEN: 'ghp-b' } });
  t.deepEqual(secrets, { anthropicApiKey: 'sk-a', gitToken: 'ghp-b' });
  t.deepEqual(load(dir, { env: { DUO_AGENT_GIT_TOKEN: 'tok', GITHUB_TOKEN: 'other' } }).secrets, { gitToken: 'tok' });
});

test('DUO_AGENT_MONITOR_TOKEN is the intervention token, over the file, read again on resume, and a short one is refused without its value', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'monitor:\n  token: from-the-file-0123456789\n' });
  const token = 'from-the-environment-0123456789';
  const { config, secrets } = load(dir, { env: { DUO_AGENT_MONITOR_TOKEN: token } });
  t.is(config.monitor.token, token, 'the environment wins over the file');
  t.is(secrets.monitorToken, token);
  t.is(redact(`Bearer ${token}`, secrets), 'Bearer [redacted]');
  t.is(childProcessEnv({ DUO_AGENT_MONITOR_TOKEN: token, PATH: '/bin' }).DUO_AGENT_MONITOR_TOKEN, undefined);

  // A run's stored settings drop the token (cli/commands.ts); a resume takes it from the environment again.
  const stored = { ...config, monitor: { ...config.monitor, token: undefined } };
  t.is(configForResume(stored, undefined, { DUO_AGENT_MONITOR_TOKEN: token }).config.monitor.token, token);
  t.is(configForResume(stored, undefined, {}).config.monitor.token, undefined);

  const short = failure(t, () => load(dir, { env: { DUO_AGENT_MONITOR_TOKEN: 'hunter2' } }));
  t.is(short, 'DUO_AGENT_MONITOR_TOKEN: expected a token of at least 16 characters, found one of 7');
});

test('agents.yaml: two entries claiming one role are refused, naming both', (t) => {
  const entry = (type: string) => `    name: N\n    type: ${type}\n    system_prompt: P\n`;
  const dir = target(t, { 'agents.yaml': `agents:\n  gen_a:\n${entry('generator')}  gen_b:\n${entry('generator')}  reviewer:\n${entry('reviewer')}` });
  t.is(failure(t, () => load(dir)), 'agents.yaml: agents: "gen_a" and "gen_b" both have type generator; keep one (specialist agents are not implemented)');
});

test('childProcessEnv is an allow-list: what programs need, the declared variables, never a credential', (t) => {
  const env = {
    PATH: '/usr/bin',
    HOME: '/home/u',
    LANG: 'de_DE.UTF-8',
    LC_ALL: 'C',
    LC_CTYPE: 'C.UTF-8',
    TZ: 'UTC',
    TERM: 'xterm',
    USER: 'u',
    LOGNAME: 'u',
    TMPDIR: '/var/tmp',
    CI: 'true',
    DATABASE_URL: 'postgres://app:hunter2@db/app',
    AWS_SECRET_ACCESS_KEY: 'aws',
    AWS_ACCESS_KEY_ID: 'AKIA',
    SSH_AUTH_SOCK: '/tmp/agent.sock',
    DUO_AGENT_API_KEY: 'a',
    DUO_AGENT_GIT_TOKEN: 'b',
    OPENAI_API_KEY: 'c',
    ANTHROPIC_API_KEY: 'd',
    GITHUB_TOKEN: 'e',
    ANTHROPIC_AUTH_TOKEN: 'f',
    STRIPE_SECRET: 'g',
    DB_PASSWORD: 'h',
    NPM_TOKEN: 'i',
    NODE_OPTIONS: '--import tsx',
    NODE_TEST_CONTEXT: 'child-v8',
    DUO_AGENT_LOG_LEVEL: 'debug',
    UNSET: undefined,
  };
  const base = { PATH: '/usr/bin', HOME: '/home/u', LANG: 'de_DE.UTF-8', LC_ALL: 'C', LC_CTYPE: 'C.UTF-8', TZ: 'UTC', TERM: 'xterm', USER: 'u', LOGNAME: 'u', TMPDIR: '/var/tmp' };
  t.deepEqual(childProcessEnv(env), base);
  t.deepEqual(childProcessEnv(env, ['CI', 'DATABASE_URL', 'UNSET', 'MISSING']), { ...base, CI: 'true', DATABASE_URL: 'postgres://app:hunter2@db/app' });
  // Declared or not, credentials and Node options of this process stay out.
  t.deepEqual(childProcessEnv(env, ['AWS_SECRET_ACCESS_KEY', 'NPM_TOKEN', 'ANTHROPIC_API_KEY', 'DB_PASSWORD', 'NODE_OPTIONS', 'NODE_TEST_CONTEXT']), base);
});

test('gitEnv gives git only PATH and HOME', (t) => {
  t.deepEqual(gitEnv({ PATH: '/usr/bin', HOME: '/home/u', LANG: 'de_DE.UTF-8', GIT_DIR: '/elsewhere', CI: 'true', GITHUB_TOKEN: 'e' }), { PATH: '/usr/bin', HOME: '/home/u' });
});

test('project.pass_env takes variable names and refuses credentials', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'project:\n  pass_env: [CI, DATABASE_URL]\n' });
  t.deepEqual(load(dir).config.project.pass_env, ['CI', 'DATABASE_URL']);
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'NPM_TOKEN', 'ANTHROPIC_API_KEY', 'NODE_OPTIONS', 'not a name']) {
    const bad = target(t, { 'duo-agent.config.yaml': `project:\n  pass_env: [${JSON.stringify(name)}]\n` });
    t.regex(failure(t, () => load(bad)), /^duo-agent\.config\.yaml: project\.pass_env\[0\]: expected an environment variable name that is not a credential/, name);
  }
});

test('agents.techlead.sandbox is auto, bwrap or off', (t) => {
  const dir = target(t, { 'duo-agent.config.yaml': 'agents:\n  techlead:\n    sandbox: bwrap\n    allow_network: true\n' });
  const { config } = load(dir);
  t.is(config.agents.techlead.sandbox, 'bwrap');
  t.true(config.agents.techlead.allow_network);
  const bad = target(t, { 'duo-agent.config.yaml': 'agents:\n  techlead:\n    sandbox: docker\n' });
  t.regex(failure(t, () => load(bad)), /^duo-agent\.config\.yaml: agents\.techlead\.sandbox: expected one of "auto", "bwrap", "off", found "docker"/);
});

test('resolveTarget: flag, then DUO_AGENT_WORKSPACE, then the current directory', (t) => {
  t.is(resolveTarget('repo', { DUO_AGENT_WORKSPACE: '/ws' }, '/home/u'), '/home/u/repo');
  t.is(resolveTarget(undefined, { DUO_AGENT_WORKSPACE: '/ws' }, '/home/u'), '/ws');
  t.is(resolveTarget(undefined, { DUO_AGENT_WORKSPACE: 'rel' }, '/home/u'), '/home/u/rel');
  t.is(resolveTarget(undefined, { DUO_AGENT_WORKSPACE: '' }, '/home/u'), '/home/u');
  t.is(resolveTarget(undefined, {}, '/home/u'), '/home/u');
});

// --- resumed runs ------------------------------------------------------------------------

test('a resumed run keeps its stored settings, ignores files and variables, and lets a flag override', (t) => {
  const stored = JSON.parse(JSON.stringify(configSchema.parse({ model: { provider: 'replay' }, limits: { max_tokens_total: 777 } })));
  const env = { DUO_AGENT_MODEL_PROVIDER: 'openai', DUO_AGENT_MAX_TOKENS: '5', DUO_AGENT_API_KEY: 'sk-x' };

  const kept = configForResume(stored, {}, env);
  t.is(kept.config.model.provider, 'replay');
  t.is(kept.config.limits.max_tokens_total, 777);
  t.deepEqual(kept.secrets, { anthropicApiKey: 'sk-x' });

  const overridden = configForResume(stored, { provider: 'anthropic', maxTokens: '900' }, env);
  t.is(overridden.config.model.provider, 'anthropic');
  t.is(overridden.config.limits.max_tokens_total, 900);
  t.is(failure(t, () => configForResume(stored, { maxTokens: 'lots' }, env)), '--max-tokens: expected a positive integer, found "lots"');
});

test('stored settings that no longer validate are refused with a clear message', (t) => {
  const error = configError(t, () => configForResume({ limits: { max_tokenz: 1 } }, {}, {}));
  t.is(
    error.message,
    'the run\'s stored settings are incompatible with this version of Moderator (limits: unknown field "max_tokenz" (did you mean "max_tokens_total"?)); start a new run',
  );
  t.regex(failure(t, () => configForResume('not settings', {}, {})), /^the run's stored settings are incompatible/);
});

// --- the shipped example file ------------------------------------------------------------

test('the shipped example file loads and states the real defaults', (t) => {
  const dir = target(t);
  const { config } = load(dir, { configPath: exampleFile });
  t.deepEqual(config, defaultsFor(path.basename(dir)));
});

test('the shipped example file documents every field of the schema', (t) => {
  const text = fs.readFileSync(exampleFile, 'utf8');
  // Uncommenting every line must give a file that still loads: it names only real fields.
  const uncommented = text.replace(/^(\s*)# ?(\w+:)/gm, '$1$2');
  t.notThrows(() => configSchema.parse(parseYaml(uncommented)));
  const leaves = (schema: ReturnType<typeof configJsonSchema>, prefix: string): string[] =>
    Object.entries(schema.properties ?? {}).flatMap(([key, sub]) =>
      typeof sub === 'object' && sub.type === 'object' && sub.properties !== undefined
        ? leaves(sub, `${prefix}${key}.`)
        : [`${prefix}${key}`],
    );
  const documented = new Set(leaves(configJsonSchema(), ''));
  // The raw YAML, not the parsed config: defaults would fill in any field the file forgot.
  const written: unknown = parseYaml(uncommented);
  for (const field of documented) {
    const value = field.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], written);
    t.not(value, undefined, `${field} is missing from the example file`);
  }
  t.true(documented.has('model.provider'));
  t.true(documented.size > 40);
});

// --- model defaults that follow the provider ------------------------------------------------------

test('the SDKs’ own base-URL variables set model.base_url for their provider when nothing else does', (t) => {
  const dir = target(t);
  const env = { ANTHROPIC_BASE_URL: 'http://127.0.0.1:9001', OPENAI_BASE_URL: 'http://127.0.0.1:9002/v1' };
  t.is(load(dir, { env: { ...env, DUO_AGENT_MODEL_PROVIDER: 'anthropic' } }).config.model.base_url, 'http://127.0.0.1:9001');
  t.is(load(dir, { env: { ...env, DUO_AGENT_MODEL_PROVIDER: 'openai' } }).config.model.base_url, 'http://127.0.0.1:9002/v1');
  t.is(load(dir, { env }).config.model.base_url, undefined, 'no provider: no base URL');
  const configured = target(t, { 'duo-agent.config.yaml': 'model:\n  provider: openai\n  base_url: http://127.0.0.1:9003\n' });
  t.is(load(configured, { env }).config.model.base_url, 'http://127.0.0.1:9003', 'the setting beats the variable');
  const error = configError(t, () => load(dir, { env: { OPENAI_BASE_URL: 'not a url', DUO_AGENT_MODEL_PROVIDER: 'openai' } }));
  t.regex(error.message, /^OPENAI_BASE_URL: /, 'a bad value names the variable');
});

test('an agent without a model gets one its provider serves', (t) => {
  const dir = target(t);
  const openai = load(dir, { env: { DUO_AGENT_MODEL_PROVIDER: 'openai' } }).config;
  t.deepEqual([openai.agents.moderator.model, openai.agents.techlead.model, openai.agents.ever_thinker.model], ['gpt-5.4', 'gpt-5.4', 'gpt-5.4']);
  const chosen = target(t, { 'duo-agent.config.yaml': 'model:\n  provider: openai\nagents:\n  techlead:\n    model: qwen2.5-coder:7b\n' });
  t.is(load(chosen).config.agents.techlead.model, 'qwen2.5-coder:7b');
  t.is(load(chosen).config.agents.moderator.model, 'gpt-5.4');
  t.is(load(dir, { env: { DUO_AGENT_MODEL_PROVIDER: 'anthropic' } }).config.agents.moderator.model, 'claude-sonnet-4-6');
});
