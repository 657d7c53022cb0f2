/**
 * Everything git.provider github needs: the repository and token from the settings, the API
 * client, the git remote, the checks before a run, and the PR provider. Imported only by runs and
 * commands whose provider is github (cli/pull-requests.ts): Octokit and simple-git are about half a
 * megabyte of the bundle, parsed by every start that imported them.
 */
import { childProcessEnv, type RunConfig, type Env, type Secrets } from '../config/index.ts';
import { ModeratorError, UsageError } from '../errors.ts';
import type { AgentLogs } from '../services/logger.ts';
import { GitRemote, displayUrl } from '../services/pr/git-remote.ts';
import { checkGitHubAccess, type AccessCheck } from '../services/pr/github-access.ts';
import { GitHubClient } from '../services/pr/github-client.ts';
import { GitHubPrProvider, type GitHubRepository } from '../services/pr/github-pr-provider.ts';
import type { PrProvider } from '../services/pr/pr-provider.ts';
import type { Store } from '../services/store/store.ts';

/** Where a github run's PRs and branches go, with its token. */
export interface GitHubTarget {
  repository: GitHubRepository;
  token: string;
  apiUrl: string;
  pushUrl: string;
}

/**
 * The git remote of a repository on GitHub, from the API's URL: api.github.com pushes to
 * github.com, GitHub Enterprise Server's `https://HOST/api/v3` to `https://HOST`.
 */
export function defaultPushUrl(apiUrl: string, repository: string): string {
  const api = new URL(apiUrl);
  const host = api.hostname === 'api.github.com' ? 'github.com' : api.host;
  const prefix = api.pathname.replace(/\/+$/, '').replace(/\/api\/v3$/, '');
  return `${api.protocol}//${host}${prefix}/${repository}.git`;
}

/** The settings a github run cannot do without; a missing one is the user's to fix (exit 2). */
export function gitHubTarget(config: RunConfig, secrets: Secrets): GitHubTarget {
  const { repository } = config.git;
  if (!repository) throw new UsageError('git.provider is github but git.repository is not set: set it to "owner/name"');
  if (!secrets.gitToken) throw new UsageError('git.provider is github but no token is set: set DUO_AGENT_GIT_TOKEN (or GITHUB_TOKEN)');
  const [owner = '', repo = ''] = repository.split('/');
  return { repository: { owner, repo }, token: secrets.gitToken, apiUrl: config.git.api_url, pushUrl: config.git.push_url ?? defaultPushUrl(config.git.api_url, repository) };
}

export function gitHubClient(config: RunConfig, token: string, log?: { warn: (line: string) => void; debug: (line: string) => void }, tuning: { retries?: number } = {}): GitHubClient {
  return new GitHubClient({
    baseUrl: config.git.api_url,
    token,
    writeSpacingMs: config.git.write_spacing_ms,
    notificationSpacingMs: config.git.notification_spacing_ms,
    rateLimitWaitSeconds: config.git.rate_limit_wait_seconds,
    ...tuning,
    ...(log ? { log } : {}),
  });
}

function gitRemote(config: RunConfig, target: string, github: GitHubTarget, env: Record<string, string>, log?: (line: string) => void): GitRemote {
  return new GitRemote({
    root: target,
    baseBranch: config.git.base_branch,
    url: github.pushUrl,
    token: github.token,
    identity: { name: config.git.author_name, email: config.git.author_email },
    env,
    ...(log ? { log } : {}),
  });
}

/** Before a github run starts or resumes: see prepareGitHub in cli/pull-requests.ts. */
export async function prepareGitHub(options: { config: RunConfig; secrets: Secrets; target: string; env: Env; report: (line: string) => void }): Promise<void> {
  const { config } = options;
  const github = gitHubTarget(config, options.secrets);
  const failed = (await checkGitHubAccess(gitHubClient(config, github.token, undefined, { retries: 1 }), github.repository, config.git.base_branch)).find((check) => !check.ok);
  if (failed) throw new UsageError(`${failed.name}: ${failed.detail}`);
  try {
    const synced = await gitRemote(config, options.target, github, childProcessEnv(options.env)).syncBase();
    if (synced.moved) options.report(`${config.git.base_branch} fast-forwarded to GitHub's ${synced.sha.slice(0, 12)}`);
  } catch (error) {
    throw error instanceof ModeratorError ? new UsageError(error.message, { cause: error }) : error;
  }
}

/** The doctor's lines for git.provider github: settings, token and scopes, repository, base branch. */
export async function gitHubChecks(config: RunConfig, secrets: Secrets): Promise<AccessCheck[]> {
  let github: GitHubTarget;
  try {
    github = gitHubTarget(config, secrets);
  } catch (error) {
    return [{ name: 'github', ok: false, detail: (error as Error).message }];
  }
  const checks = await checkGitHubAccess(gitHubClient(config, github.token, undefined, { retries: 0 }), github.repository, config.git.base_branch);
  return [{ name: 'github', ok: true, detail: `${config.git.repository} through ${config.git.api_url}, pushing to ${displayUrl(github.pushUrl)}` }, ...checks];
}

/** The PR provider of a github run. */
export function createGitHubPrProvider(options: {
  config: RunConfig;
  gitToken: string | undefined;
  store: Store;
  runId: string;
  target: string;
  env: Record<string, string>;
  logs: AgentLogs;
}): PrProvider {
  const { config, store, runId } = options;
  const github = gitHubTarget(config, options.gitToken === undefined ? {} : { gitToken: options.gitToken });
  const logger = options.logs.for('git');
  const log = (line: string) => logger.info(line);
  return new GitHubPrProvider({
    store,
    runId,
    client: gitHubClient(config, github.token, { warn: (line) => logger.warn(line), debug: (line) => logger.debug(line) }),
    remote: gitRemote(config, options.target, github, options.env, log),
    repository: github.repository,
    baseBranch: config.git.base_branch,
    mergeWaitMs: config.git.merge_wait_seconds * 1000,
    log,
  });
}
