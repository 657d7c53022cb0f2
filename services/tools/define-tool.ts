import { z } from 'zod';
import type { ToolSpec } from '../llm/provider.ts';
import type { CommandSandbox } from '../sandbox/sandbox.ts';
import type { WorktreePaths } from './worktree-paths.ts';

/** What every worktree tool gets besides its input. */
export interface ToolContext {
  paths: WorktreePaths;
  allowedCommands: readonly string[];
  commandTimeoutMs: number;
  /** The cap on every tool result's content, in bytes. */
  outputCapBytes: number;
  env: Record<string, string>;
  /** Where run_command's programs run; undefined: on the host, unconfined. */
  sandbox?: CommandSandbox | undefined;
  baseBranch: string;
  signal?: AbortSignal | undefined;
}

export interface ToolOutcome {
  content: string;
  isError?: boolean;
}

/** A tool with its input schema erased: `execute` validates before it runs. */
export interface WorktreeTool {
  spec: ToolSpec;
  execute(input: unknown, context: ToolContext): Promise<ToolOutcome>;
}

/**
 * One tool: the zod schema is both the JSON Schema the model sees and the validator of what it
 * sends, so the two cannot drift. An invalid input is an error result naming the first problem.
 */
export function defineTool<S extends z.ZodType>(definition: {
  name: string;
  description: string;
  input: S;
  run: (input: z.output<S>, context: ToolContext) => Promise<string | ToolOutcome>;
}): WorktreeTool {
  const { $schema: _dialect, ...inputSchema } = z.toJSONSchema(definition.input, { io: 'input' }) as Record<string, unknown>;
  return {
    spec: { name: definition.name, description: definition.description, inputSchema },
    async execute(input, context) {
      const parsed = definition.input.safeParse(input);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
        return { content: `${definition.name}: invalid input: ${where}${issue?.message ?? 'does not match the schema'}`, isError: true };
      }
      const outcome = await definition.run(parsed.data, context);
      return typeof outcome === 'string' ? { content: outcome } : outcome;
    },
  };
}

/**
 * Keeps the first `capBytes` of a result, cut at a line end when one is near, with a marker
 * saying how much was left out and how to see it.
 */
export function capText(text: string, capBytes: number, hint: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= capBytes) return text;
  let kept = bytes.subarray(0, Math.max(0, capBytes)).toString('utf8');
  // A cut inside a multi-byte character decodes to U+FFFD at the end: drop it.
  kept = kept.replace(/\uFFFD$/, '');
  const lineEnd = kept.lastIndexOf('\n');
  if (lineEnd >= kept.length / 2) kept = kept.slice(0, lineEnd + 1);
  const left = bytes.length - Buffer.byteLength(kept, 'utf8');
  return `${kept}${kept.endsWith('\n') || kept === '' ? '' : '\n'}[… ${left} more bytes not shown; ${hint}]`;
}
