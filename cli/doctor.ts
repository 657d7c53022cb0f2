import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { childProcessEnv, gitEnv, loadConfig, resolveTarget, withBaseBranch, type Config } from '../config/index.ts';
import { messageOf } from '../errors.ts';
import { checkInstalled } from '../services/llm/claude-cli-provider.ts';
import { checkConnection } from '../services/llm/connection-check.ts';
import { Store, databasePath } from '../services/store/store.ts';
import type { CliArgs } from './args.ts';
import type { CliContext } from './commands.ts';
import { createProvider } from './providers.ts';
import { GitService } from '../services/git/git-service.ts';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** Informational checks never fail the doctor (e.g. the claude CLI when another provider is used). */
  optional?: boolean;
}

const run = promisify(execFile);

async function portFree(host: string, port: number): Promise<boolean> {
  if (port === 0) return true;
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * `moderator doctor`: the seed's "test API connections" and "run health check". One line per
 * check; exit 1 when any required check fails.
 */
export async function doctor(context: CliContext, args: CliArgs): Promise<number> {
  const checks: Check[] = [];
  const target = resolveTarget(args.target, context.env, context.cwd);
  const node = process.versions.node;
  checks.push({ name: 'node', ok: /^20\./.test(node), detail: `v${node}${/^20\./.test(node) ? '' : ' (Moderator needs Node 20; see the README)'}` });

  let config: Config | undefined;
  let secrets;
  try {
    const loaded = loadConfig({ target, configPath: args.configPath, agentsPath: args.agentsPath, env: context.env, flags: { provider: args.provider, replayFile: args.replay, port: args.port }, cwd: context.cwd });
    config = loaded.config;
    secrets = loaded.secrets;
    checks.push({ name: 'config', ok: true, detail: loaded.files.length ? `read ${loaded.files.join(', ')}` : 'defaults (no config files in the target)' });
  } catch (error) {
    checks.push({ name: 'config', ok: false, detail: messageOf(error) });
  }

  if (config && secrets) {
    try {
      const provider = await createProvider({ config: { ...config, model: { ...config.model, max_retries: 0 } }, secrets, env: context.env, target, worktreeOf: () => target });
      checks.push({ name: 'provider', ok: true, detail: provider.description });
      if (config.model.provider === 'anthropic' || config.model.provider === 'openai') {
        const connection = await checkConnection(provider, config.agents.moderator.model);
        checks.push({ name: 'endpoint', ok: connection.ok, detail: `${connection.message} (${Math.round(connection.latencyMs)} ms)` });
      }
    } catch (error) {
      checks.push({ name: 'provider', ok: false, detail: messageOf(error) });
    }
    const claude = await checkInstalled(config.model.claude_cli_path, childProcessEnv(context.env));
    checks.push({
      name: 'claude CLI',
      ok: claude.ok,
      detail: claude.ok ? claude.version : claude.message,
      optional: config.model.provider !== 'claude-cli',
    });
    if (config.git.provider === 'github') {
      const branch = config.git.base_branch ?? (await GitService.currentBranchOf({ root: target, identity: { name: config.git.author_name, email: config.git.author_email }, baseBranch: 'main', env: gitEnv(context.env) })) ?? 'main';
      checks.push(...(await (await import('./github.ts')).gitHubChecks(withBaseBranch(config, branch), secrets)));
    }
    const free = await portFree(config.monitor.host, config.monitor.port);
    checks.push({ name: 'monitor port', ok: free, detail: `${config.monitor.host}:${config.monitor.port} ${free ? 'is free' : 'is in use: set DUO_AGENT_MONITOR_PORT or monitor.port (0 picks a free port)'}` });
  }

  try {
    const { stdout } = await run('git', ['--version'], { env: childProcessEnv(context.env) });
    checks.push({ name: 'git', ok: true, detail: stdout.trim() });
  } catch (error) {
    checks.push({ name: 'git', ok: false, detail: `git is not available: ${messageOf(error)}` });
  }

  try {
    const store = Store.openIfExists(databasePath(target));
    if (store) {
      checks.push({ name: 'database', ok: true, detail: `${databasePath(target)}: ${store.runs.list().length} run(s)` });
      store.close();
    } else {
      checks.push({ name: 'database', ok: true, detail: `none yet in ${target} (created by the first run)` });
    }
  } catch (error) {
    checks.push({ name: 'database', ok: false, detail: messageOf(error) });
  }

  for (const check of checks) {
    const mark = check.ok ? 'ok  ' : check.optional ? 'n/a ' : 'FAIL';
    context.stdout(`${mark} ${check.name.padEnd(13)} ${check.detail}`);
  }
  return checks.some((check) => !check.ok && !check.optional) ? 1 : 0;
}
