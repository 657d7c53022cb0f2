import { messageOf } from '../../errors.ts';
import type { CommandSandbox } from '../sandbox/sandbox.ts';
import type { ToolCall, ToolResult, ToolSpec } from '../llm/provider.ts';
import { runCommandTool } from './command-tool.ts';
import type { ToolContext, WorktreeTool } from './define-tool.ts';
import { editFileTool, listFilesTool, readFileTool, writeFileTool } from './file-tools.ts';
import { gitDiffTool, searchTool } from './git-tools.ts';
import { WorktreePaths } from './worktree-paths.ts';

export interface WorktreeToolsOptions {
  /** The task's worktree, absolute. Every path a tool is given is relative to it. */
  root: string;
  /** Programs run_command may start, by basename (`npm`, `node`, `pytest`, `make`). */
  allowedCommands: string[];
  /** Wall-clock limit of one run_command (and of git in search / git_diff), in ms. */
  commandTimeoutMs: number;
  /** The cap on each tool result's content, in bytes; run_command keeps the end of its output. */
  outputCapBytes: number;
  /** The whole environment of commands, secrets already removed: nothing is inherited. */
  env: Record<string, string>;
  /** Where run_command's programs run (services/sandbox); default: on the host, unconfined. */
  sandbox?: CommandSandbox | undefined;
  /** What git_diff compares against: the branch the task's branch was made from. */
  baseBranch: string;
}

export interface WorktreeTools {
  /** What to put in `ModelRequest.tools`. */
  specs: ToolSpec[];
  /** Runs one call. Never throws: a refusal, a bad input or a failure is an `isError` result. */
  run(call: ToolCall, signal?: AbortSignal): Promise<ToolResult>;
}

const TOOLS: readonly WorktreeTool[] = [readFileTool, writeFileTool, editFileTool, listFilesTool, searchTool, runCommandTool, gitDiffTool];

/** The TechLead's tools, confined to one task's worktree. */
export function createWorktreeTools(options: WorktreeToolsOptions): WorktreeTools {
  const paths = new WorktreePaths(options.root);
  const byName = new Map(TOOLS.map((tool) => [tool.spec.name, tool]));
  return {
    specs: TOOLS.map((tool) => structuredClone(tool.spec)),
    async run(call, signal) {
      const tool = byName.get(call.name);
      if (tool === undefined) return { id: call.id, content: `unknown tool ${JSON.stringify(call.name)}; available: ${[...byName.keys()].join(', ')}`, isError: true };
      if (signal?.aborted) return { id: call.id, content: `${call.name}: aborted before it started`, isError: true };
      const context: ToolContext = {
        paths,
        allowedCommands: options.allowedCommands,
        commandTimeoutMs: options.commandTimeoutMs,
        outputCapBytes: options.outputCapBytes,
        env: options.env,
        sandbox: options.sandbox,
        baseBranch: options.baseBranch,
        signal,
      };
      try {
        const outcome = await tool.execute(call.input, context);
        return { id: call.id, content: outcome.content, ...(outcome.isError ? { isError: true } : {}) };
      } catch (error) {
        // One line: a model reads it, and a stack would only cost tokens.
        return { id: call.id, content: `${call.name}: ${messageOf(error).split('\n')[0] ?? 'failed'}`, isError: true };
      }
    },
  };
}
