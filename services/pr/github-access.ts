import type { GitHubClient } from './github-client.ts';
import type { GitHubRepository } from './github-pr-provider.ts';

export interface AccessCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** A classic token's scopes, from `x-oauth-scopes`; undefined for fine-grained and app tokens, which send none. */
function scopesOf(headers: Record<string, unknown>): string[] | undefined {
  const value = headers['x-oauth-scopes'];
  if (value === undefined || value === null) return undefined;
  return String(value).split(',').map((scope) => scope.trim()).filter((scope) => scope !== '');
}

/**
 * What a run on GitHub needs, checked with two reads: the token is accepted and has the scopes
 * (classic) or the push permission (fine-grained: GitHub reports no scopes for those), the
 * repository is visible, and the base branch exists there. One check per line for the doctor;
 * a run refuses to start when any fails.
 */
export async function checkGitHubAccess(client: GitHubClient, repository: GitHubRepository, baseBranch: string): Promise<AccessCheck[]> {
  const { owner, repo } = repository;
  const full = `${owner}/${repo}`;
  let found: Awaited<ReturnType<GitHubClient['octokit']['rest']['repos']['get']>>;
  try {
    found = await client.octokit.rest.repos.get({ owner, repo });
  } catch (error) {
    const failure = client.failure(`reading ${full}`, error);
    return [{ name: failure.code === 'pr_auth' ? 'github token' : 'github repo', ok: false, detail: failure.message }];
  }
  const checks: AccessCheck[] = [];
  const scopes = scopesOf(found.headers as Record<string, unknown>);
  const isPrivate = found.data.private;
  if (scopes === undefined) {
    checks.push({ name: 'github token', ok: true, detail: `accepted; a fine-grained or app token (no OAuth scopes): it needs Contents and Pull requests read and write on ${full}` });
  } else {
    const enough = scopes.includes('repo') || (!isPrivate && scopes.includes('public_repo'));
    checks.push({
      name: 'github token',
      ok: enough,
      detail: enough
        ? `accepted, scopes: ${scopes.join(', ')}`
        : `its scopes (${scopes.join(', ') || 'none'}) are not enough: a classic token needs "repo"${isPrivate ? '' : ' (or "public_repo" for this public repository)'}`,
    });
  }
  const push = found.data.permissions?.push;
  checks.push({
    name: 'github repo',
    ok: push !== false,
    detail: push === false
      ? `${full} is visible but the token cannot push to it (permissions.push is false): give it write access`
      : `${full} (${isPrivate ? 'private' : 'public'}, default branch ${found.data.default_branch})${push === undefined ? '; GitHub did not report the permissions' : ', push allowed'}`,
  });
  try {
    const branch = await client.octokit.rest.repos.getBranch({ owner, repo, branch: baseBranch });
    checks.push({ name: 'github base', ok: true, detail: `${baseBranch} at ${branch.data.commit.sha.slice(0, 12)}` });
  } catch (error) {
    const failure = client.failure(`reading the branch ${baseBranch} of ${full}`, error);
    checks.push({
      name: 'github base',
      ok: false,
      detail: failure.code === 'pr_not_found'
        ? `the base branch ${baseBranch} does not exist in ${full} (its default branch is ${found.data.default_branch}): push it there or set git.base_branch`
        : failure.message,
    });
  }
  return checks;
}
