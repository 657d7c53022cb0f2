import { gitEnv, type Env, type RunConfig } from '../config/index.ts';
import { GitService } from '../services/git/git-service.ts';

/** The one way Moderator's own git service is built for a target: its identity, base branch and environment. */
export function gitServiceFor(target: string, config: Pick<RunConfig, 'git'>, env: Env, log?: (line: string) => void): GitService {
  return new GitService({
    root: target,
    identity: { name: config.git.author_name, email: config.git.author_email },
    baseBranch: config.git.base_branch,
    env: gitEnv(env),
    ...(log ? { log } : {}),
  });
}
