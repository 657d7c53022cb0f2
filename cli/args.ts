import { parseArgs } from 'node:util';
import { UsageError } from '../errors.ts';

export interface CliArgs {
  command: 'run' | 'resume' | 'retry' | 'runs' | 'demo' | 'status' | 'doctor' | 'help' | 'version';
  requirements?: string;
  runId?: string;
  target?: string;
  yes: boolean;
  json: boolean;
  configPath?: string;
  agentsPath?: string;
  provider?: string;
  replay?: string;
  replayDelayMs?: string;
  maxTokens?: string;
  parallel?: string;
  /** `--limit KEY=VALUE`, repeatable: any field of `limits`. */
  limits?: string[];
  logLevel?: string;
  port?: string;
  /** Forward XState inspection events to the Stately inspector. */
  inspect: boolean;
  /** Also save every model reply of the run as a replay session. */
  record?: string;
  /** `retry --task T2`: only these tasks are re-queued. */
  tasks?: string[];
  /** After the run ends, keep the monitoring server (the dashboard) up until Ctrl-C. */
  keepServing: boolean;
}

const options = {
  target: { type: 'string', short: 't' },
  resume: { type: 'string', short: 'r' },
  yes: { type: 'boolean', short: 'y', default: false },
  json: { type: 'boolean', default: false },
  config: { type: 'string' },
  agents: { type: 'string' },
  provider: { type: 'string' },
  replay: { type: 'string' },
  'replay-delay-ms': { type: 'string' },
  'max-tokens': { type: 'string' },
  parallel: { type: 'string' },
  limit: { type: 'string', multiple: true },
  'log-level': { type: 'string' },
  port: { type: 'string' },
  inspect: { type: 'boolean', default: false },
  record: { type: 'string' },
  'keep-serving': { type: 'boolean', default: false },
  run: { type: 'string' },
  task: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', short: 'v', default: false },
} as const;

export const usage = `Usage:
  moderator "<requirements>" [--target DIR] [-y]     start a run with the configured model provider
  moderator --resume <runId> [--target DIR]           continue a run after a crash or Ctrl-C
  moderator retry <runId> [--task T2]...              continue a failed or needs_human run: re-queue its failed,
                                                      rejected, skipped and held tasks (or only those named)
  moderator runs [--target DIR] [--json]              list the runs of a target
  moderator demo [--target DIR] [--replay-delay-ms N] [--keep-serving]
                                                      a whole run of the bundled offline scenario
  moderator status [--target DIR] [--run ID] [--json] the live state of a run, or its last stored state
  moderator doctor [--target DIR]                     check config, keys, endpoint, git, claude CLI, monitor port

Options:
  -t, --target DIR          the git repository to work on (default: $DUO_AGENT_WORKSPACE, then .)
  -y, --yes                 start implementing without asking to approve the plan
      --json                print the summary (or runs) as JSON lines on stdout
      --config FILE         duo-agent.config.yaml to use (default: the target's)
      --agents FILE         agents.yaml to use (default: the target's)
      --provider NAME       model provider: anthropic, openai, claude-cli or replay
      --replay FILE         recorded session for the replay provider
      --replay-delay-ms N   wait N ms per replayed call
      --record FILE         also save every model reply as a replay session (for demos and regression tests)
      --max-tokens N        token budget of the run
      --parallel N          tasks in flight at once, each with its own TechLead (default 3; 1: one after another)
      --limit KEY=VALUE     any field of limits, repeatable (--limit max_cost_usd=5); with --resume, raises
                            the limit that stopped a run so that it continues
      --log-level LEVEL     trace, debug, info, warn, error
      --port N              monitoring server port (default 8080; 0 picks a free one)
      --inspect             also send XState inspection events to the Stately inspector
      --keep-serving        after the run ends, keep the dashboard up until Ctrl-C
  -h, --help                this text
  -v, --version             the version`;

/** Parses argv (without node and script); any problem is a UsageError (exit 2). */
export function parseCli(argv: string[]): CliArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0]} (see --help)`);
  }
  const { values, positionals } = parsed;
  const common = {
    target: values.target,
    yes: values.yes,
    json: values.json,
    configPath: values.config,
    agentsPath: values.agents,
    provider: values.provider,
    replay: values.replay,
    replayDelayMs: values['replay-delay-ms'],
    maxTokens: values['max-tokens'],
    parallel: values.parallel,
    ...(values.limit ? { limits: values.limit } : {}),
    logLevel: values['log-level'],
    port: values.port,
    inspect: values.inspect,
    record: values.record,
    keepServing: values['keep-serving'],
  };
  if (values.help) return { ...common, command: 'help' };
  if (values.version) return { ...common, command: 'version' };
  const [first, ...rest] = positionals;
  if (values.resume !== undefined) {
    if (positionals.length > 0) throw new UsageError(`--resume continues a run; it takes no requirements (got "${positionals.join(' ')}")`);
    if (values.resume.trim() === '') throw new UsageError('--resume needs a run id (see `moderator runs`)');
    return { ...common, command: 'resume', runId: values.resume.trim() };
  }
  if (values.task !== undefined && first !== 'retry') throw new UsageError('--task only goes with `retry`');
  if (first === 'retry') {
    const [runId, ...extra] = rest;
    if (runId === undefined || runId.trim() === '') throw new UsageError('retry needs a run id (see `moderator runs`)');
    if (extra.length > 0) throw new UsageError(`retry takes one run id (got "${rest.join(' ')}")`);
    const tasks = (values.task ?? []).map((task) => task.trim());
    if (tasks.some((task) => task === '')) throw new UsageError('--task needs a task id, e.g. --task T2');
    return { ...common, command: 'retry', runId: runId.trim(), ...(tasks.length > 0 ? { tasks } : {}) };
  }
  if (first === 'runs' || first === 'demo' || first === 'status' || first === 'doctor') {
    if (rest.length > 0) throw new UsageError(`${first} takes no arguments (got "${rest.join(' ')}")`);
    return { ...common, command: first, ...(first === 'status' && values.run ? { runId: values.run } : {}) };
  }
  if (values.run !== undefined) throw new UsageError('--run only goes with `status`');
  if (positionals.length === 0) throw new UsageError('give the requirements in quotes, e.g. moderator "Build a TODO CLI" (see --help)');
  const requirements = positionals.join(' ').trim();
  if (requirements === '') throw new UsageError('the requirements are empty');
  return { ...common, command: 'run', requirements };
}
