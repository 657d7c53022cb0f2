import path from 'node:path';
import type { AgentDefinitions, RunConfig } from '../config/index.ts';
import type { AgentTools } from './ask.ts';
import type { ContextManager } from '../services/context/context-manager.ts';
import type { GitService } from '../services/git/git-service.ts';
import type { ModelGateway } from '../services/llm/gateway.ts';
import type { AgentLogs } from '../services/logger.ts';
import type { PrProvider } from '../services/pr/pr-provider.ts';
import type { CommandSandbox } from '../services/sandbox/sandbox.ts';
import { stateDir, type Store } from '../services/store/store.ts';

/** What the effect actors of one run work with; built once by the composition root. */
export interface RunServices {
  runId: string;
  target: string;
  requirements: string;
  config: RunConfig;
  agents: AgentDefinitions;
  store: Store;
  gateway: ModelGateway;
  git: GitService;
  prs: PrProvider;
  /** What prompts are built from and kept within: the repository map, budgets, conversation windows. */
  context: ContextManager;
  /** Environment for the target's own commands: an allow-list, no credentials. */
  childEnv: Record<string, string>;
  /** Where the target's own commands run (bubblewrap, or unconfined): see services/sandbox. */
  sandbox: CommandSandbox;
  logs: AgentLogs;
  /** A progress line for the person watching the terminal. */
  progress: (line: string) => void;
  /**
   * The TechLead's tools in a task's worktree, for providers that run a tool loop through us;
   * undefined when the backend edits the worktree itself (claude-cli).
   */
  toolsFor?: ((worktree: string) => AgentTools) | undefined;
  /** How earlier runs' improvement ideas ended (features.learning). */
  pastIdeas?: (() => { title: string; angle: string | null; outcome: string; impact?: number | null | undefined }[]) | undefined;
}

export function worktreePath(services: RunServices, taskId: string): string {
  return path.join(stateDir(services.target), 'worktrees', taskId);
}
