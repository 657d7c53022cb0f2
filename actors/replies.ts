import { z } from 'zod';
import { contractOf, wireSchema } from './reply-contract.ts';
import { lenient } from './reply-parser.ts';

export { extractJson, parseReply, type ParseResult } from './reply-parser.ts';

/**
 * The JSON each model call must answer with, each defined once: the validator, the prompt's
 * contract text and the structured-output schema all come from these. Nothing a model writes
 * becomes an event or a file before it passed one of them.
 */

const taskType = lenient(z.enum(['feature', 'fix', 'docs', 'test', 'refactor', 'perf', 'chore']), {
  synonyms: {
    feat: 'feature', enhancement: 'feature', new_feature: 'feature', story: 'feature', implementation: 'feature',
    bug: 'fix', bugfix: 'fix', bug_fix: 'fix', hotfix: 'fix',
    doc: 'docs', documentation: 'docs', readme: 'docs',
    tests: 'test', testing: 'test', unit_test: 'test', unit_tests: 'test',
    refactoring: 'refactor', cleanup: 'refactor', code_quality: 'refactor',
    performance: 'perf', optimization: 'perf', optimisation: 'perf',
    maintenance: 'chore', build: 'chore', ci: 'chore', setup: 'chore', config: 'chore', infrastructure: 'chore',
  },
});

const lines = (what: string) => z.array(z.string()).default([]).describe(what);

export const clarifyReply = z.object({
  summary: z.string().min(1).describe('the scope in a few sentences'),
  assumptions: lenient(lines('the answers you chose for anything ambiguous'), { aliases: ['assumption'] }),
  questions: lenient(lines('what a person should decide, if anything'), { aliases: ['open_questions', 'question'] }),
});

export const planReply = z.object({
  tasks: z
    .array(
      z.object({
        id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'a short id of letters, digits, _ or -').describe('T1, T2, ... in the order they must be done'),
        title: z.string().min(1),
        type: taskType,
        description: z.string().min(1),
        acceptance_criteria: lenient(z.array(z.string().min(1)).min(1).describe('testable criteria'), { aliases: ['criteria', 'acceptance'] }),
        depends_on: lenient(z.array(z.string()).default([]).describe('ids of tasks that must be merged first'), { aliases: ['dependencies', 'deps', 'depends'] }),
      }),
    )
    .min(1)
    .refine((tasks) => new Set(tasks.map((task) => task.id)).size === tasks.length, 'task ids must be unique'),
});

const verdict = lenient(z.enum(['approve', 'request_changes']).describe('"request_changes" only for unmet acceptance criteria or real defects'), {
  synonyms: {
    approved: 'approve', accept: 'approve', accepted: 'approve', lgtm: 'approve', merge: 'approve', pass: 'approve', passed: 'approve', ok: 'approve', yes: 'approve',
    changes_requested: 'request_changes', request_change: 'request_changes', changes: 'request_changes', needs_changes: 'request_changes',
    needs_work: 'request_changes', reject: 'request_changes', rejected: 'request_changes', fail: 'request_changes', failed: 'request_changes',
    revise: 'request_changes', no: 'request_changes',
  },
});

export const reviewReply = z.object({
  verdict,
  summary: z.string().min(1).describe('what you checked and found'),
  comments: lenient(lines('exactly what to change, one item each'), { aliases: ['comment', 'feedback', 'issues', 'changes'] }),
});

export const changeReply = z.object({
  summary: z.string().min(1).describe('one line saying what the change does'),
  files: z
    .array(z.object({ path: z.string().min(1).describe('relative to the repository root'), content: z.string().describe('the whole file') }))
    .default([])
    .describe('every file you add or change, written whole'),
  delete: lenient(lines('paths of files to delete'), { aliases: ['deleted', 'deletes', 'remove', 'removed'] }),
});

const score = z.int().min(1).max(5);

const angle = lenient(z.enum(['performance', 'code_quality', 'ux', 'testing', 'documentation', 'architecture']), {
  synonyms: {
    perf: 'performance', speed: 'performance', quality: 'code_quality', code: 'code_quality', maintainability: 'code_quality', readability: 'code_quality',
    user_experience: 'ux', usability: 'ux', ui: 'ux', tests: 'testing', test: 'testing', test_coverage: 'testing', coverage: 'testing',
    docs: 'documentation', doc: 'documentation', design: 'architecture', structure: 'architecture',
  },
});

export const analyzeReply = z.object({
  proposals: z
    .array(
      z.object({
        title: z.string().min(1),
        angle,
        description: z.string().min(1),
        acceptance_criteria: lenient(z.array(z.string().min(1)).min(1), { aliases: ['criteria', 'acceptance'] }),
        impact: score,
        effort: score,
        risk: score,
      }),
    )
    .default([])
    .describe('an empty list is a fine answer when nothing is worth doing'),
});

export type ClarifyReply = z.output<typeof clarifyReply>;
export type PlanReply = z.output<typeof planReply>;
export type ReviewReply = z.output<typeof reviewReply>;
export type ChangeReply = z.output<typeof changeReply>;
export type AnalyzeReply = z.output<typeof analyzeReply>;

/** A reply kind: its schema, the name the structured-output request carries, and both derivations. */
export interface ReplyKind<T> {
  name: string;
  schema: z.ZodType<T>;
  contract: string;
  wire: Record<string, unknown>;
}

function kind<T>(name: string, schema: z.ZodType<T>): ReplyKind<T> {
  return { name, schema, contract: contractOf(schema), wire: wireSchema(schema) };
}

export const replies = {
  clarify: kind('clarify', clarifyReply),
  plan: kind('plan', planReply),
  review: kind('review', reviewReply),
  change: kind('change', changeReply),
  analyze: kind('analyze', analyzeReply),
};

/** Impact counts double; effort and risk count against. Range -8..8. */
export function priorityOf(proposal: { impact: number; effort: number; risk: number }): number {
  return proposal.impact * 2 - proposal.effort - proposal.risk;
}
