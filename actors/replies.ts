import { z } from 'zod';

/**
 * The JSON each model call must answer with. Nothing a model writes becomes an event or a file
 * before it passed one of these schemas.
 */

const taskType = z.enum(['feature', 'fix', 'docs', 'test', 'refactor', 'perf', 'chore']);

export const clarifyReply = z.object({
  summary: z.string().min(1),
  assumptions: z.array(z.string()),
  questions: z.array(z.string()),
});

export const planReply = z.object({
  tasks: z
    .array(
      z.object({
        id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'a short id of letters, digits, _ or -'),
        title: z.string().min(1),
        type: taskType,
        description: z.string().min(1),
        acceptance_criteria: z.array(z.string().min(1)).min(1),
        depends_on: z.array(z.string()).default([]),
      }),
    )
    .min(1)
    .refine((tasks) => new Set(tasks.map((task) => task.id)).size === tasks.length, 'task ids must be unique'),
});

export const reviewReply = z.object({
  verdict: z.enum(['approve', 'request_changes']),
  summary: z.string().min(1),
  comments: z.array(z.string()).default([]),
});

export const changeReply = z.object({
  summary: z.string().min(1),
  files: z.array(z.object({ path: z.string().min(1), content: z.string() })),
  delete: z.array(z.string()).default([]),
});

const score = z.number().int().min(1).max(5);

export const analyzeReply = z.object({
  proposals: z.array(
    z.object({
      title: z.string().min(1),
      angle: z.enum(['performance', 'code_quality', 'ux', 'testing', 'documentation', 'architecture']),
      description: z.string().min(1),
      acceptance_criteria: z.array(z.string().min(1)).min(1),
      impact: score,
      effort: score,
      risk: score,
    }),
  ),
});

export type ClarifyReply = z.output<typeof clarifyReply>;
export type PlanReply = z.output<typeof planReply>;
export type ReviewReply = z.output<typeof reviewReply>;
export type ChangeReply = z.output<typeof changeReply>;
export type AnalyzeReply = z.output<typeof analyzeReply>;

/** Impact counts double; effort and risk count against. Range -8..8. */
export function priorityOf(proposal: { impact: number; effort: number; risk: number }): number {
  return proposal.impact * 2 - proposal.effort - proposal.risk;
}

/**
 * The JSON in a reply: the first ```json fenced block, else the whole text. The closing fence must
 * start a line: fences inside JSON strings are escaped onto the same line, a real one is not.
 */
export function extractJson(text: string): string {
  const fenced = /^```(?:json)?[ \t]*\r?\n([\s\S]*?)\r?\n```[ \t]*$/m.exec(text);
  return (fenced?.[1] ?? text).trim();
}

/** Parses a reply against a schema; the error is one line a model can act on when asked again. */
export function parseReply<T>(text: string, schema: z.ZodType<T>): { ok: true; value: T } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(extractJson(text));
  } catch (error) {
    return { ok: false, error: `the reply is not valid JSON (${(error as Error).message})` };
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'the reply';
  return { ok: false, error: `${where}: ${issue?.message ?? 'does not match the expected shape'}` };
}
