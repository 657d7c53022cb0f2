import { childProcessEnv, type Config, type Env } from '../config/index.ts';
import { UsageError } from '../errors.ts';
import { resolveSandbox, type CommandSandbox } from '../services/sandbox/sandbox.ts';

/**
 * The sandbox of the run's commands, bwrap probed once per process before the run is created or
 * claimed, so a `sandbox: bwrap` that cannot work here is refused (exit 2) with nothing stored.
 */
export async function commandSandbox(config: Config, env: Env): Promise<CommandSandbox> {
  const resolved = await resolveSandbox(config.agents.techlead.sandbox, { network: config.agents.techlead.allow_network, path: childProcessEnv(env, config.project.pass_env).PATH });
  if (resolved.refusal !== undefined) throw new UsageError(resolved.refusal);
  return resolved.sandbox;
}
