import type { RunConfig, Env, Secrets } from '../config/index.ts';
import type { GitService } from '../services/git/git-service.ts';
import type { AgentLogs } from '../services/logger.ts';
import { LocalPrProvider } from '../services/pr/local-pr-provider.ts';
import type { PrProvider } from '../services/pr/pr-provider.ts';
import type { Store } from '../services/store/store.ts';

/** The GitHub side of Moderator (cli/github.ts), loaded only where git.provider is github. */
export type GitHubSide = typeof import('./github.ts');

/** cli/github.ts when the settings' provider is github, else undefined (nothing of it is loaded). */
export async function gitHubSide(config: RunConfig): Promise<GitHubSide | undefined> {
  return config.git.provider === 'github' ? import('./github.ts') : undefined;
}

/**
 * Before a github run starts (or resumes): the token, the repository and its base branch are
 * checked, and the local base is made equal to GitHub's (fast-forwarded when behind). Anything
 * wrong is a one-line UsageError saying what to fix; no run is created. Nothing for a local run.
 */
export async function prepareGitHub(options: { config: RunConfig; secrets: Secrets; target: string; env: Env; report: (line: string) => void }): Promise<void> {
  await (await gitHubSide(options.config))?.prepareGitHub(options);
}

/** The run's PR provider, as git.provider says; a github run passes its GitHub side (gitHubSide). */
export function createPrProvider(options: {
  config: RunConfig;
  gitToken: string | undefined;
  store: Store;
  git: GitService;
  runId: string;
  target: string;
  env: Record<string, string>;
  logs: AgentLogs;
  github: GitHubSide | undefined;
}): PrProvider {
  const { config, store, git, runId } = options;
  if (config.git.provider === 'local') return new LocalPrProvider({ store, git, runId });
  if (options.github === undefined) throw new Error('git.provider is github but its module was not loaded (gitHubSide)');
  return options.github.createGitHubPrProvider(options);
}
