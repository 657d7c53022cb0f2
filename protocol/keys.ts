/**
 * The deterministic keys that make effects idempotent, built in one place. A call key names a
 * journaled model call (`model_calls.call_key`): a resumed step that asks again under the same key
 * gets the journaled reply and pays nothing. A step key names a journaled effect (`effects`) or a
 * git trailer (`Moderator-Step: commit:T2:1`). A correlation id ties the events of one task round.
 *
 * The strings are what earlier runs journaled: they must never change shape, or a resumed run
 * would send paid calls again. Keys are branded, so only these builders make them.
 */

declare const callKeyBrand: unique symbol;
declare const stepKeyBrand: unique symbol;

/** The journal key of one model call. */
export type CallKey = string & { readonly [callKeyBrand]: true };
/** The journal key of one effect (a store write, a tool result, a git commit or merge, a GitHub step). */
export type StepKey = string & { readonly [stepKeyBrand]: true };

const call = (text: string): CallKey => text as CallKey;
const step = (text: string): StepKey => text as StepKey;

/** A TechLead step that asks for a change. */
export type ChangePurpose = 'implement' | 'revise';

export const callKeys = {
  clarify: (): CallKey => call('moderator:clarify'),
  plan: (): CallKey => call('moderator:plan'),
  review: (taskId: string, attempt: number): CallKey => call(`moderator:review:${taskId}:${attempt}`),
  change: (purpose: ChangePurpose, taskId: string, attempt: number): CallKey => call(`techlead:${purpose}:${taskId}:${attempt}`),
  analyze: (cycle: number): CallKey => call(`ever-thinker:analyze:${cycle}`),
  /** The n-th time a call is asked again after an unusable reply: `<key>:retry`, `<key>:retry2`, ... */
  reAsk: (key: CallKey, round: number): CallKey => (round === 0 ? key : call(`${key}:retry${round === 1 ? '' : round}`)),
  /** The n-th model turn of a tool conversation: `<key>`, `<key>:turn2`, ... */
  turn: (key: CallKey, turn: number): CallKey => (turn === 1 ? key : call(`${key}:turn${turn}`)),
  /** A change asked for again because the previous one changed nothing. */
  noChange: (key: CallKey, round: number): CallKey => (round === 0 ? key : call(`${key}:nochange${round}`)),
  /** A step restarted after stagnation with a different approach (n >= 1): new calls, never the journaled ones. */
  approach: (key: CallKey, approach: number): CallKey => (approach === 0 ? key : call(`${key}:approach${approach}`)),
};

export const stepKeys = {
  /** The planned tasks stored with the plan reply. */
  plan: (): StepKey => step('moderator:plan'),
  /** An improvement cycle's analysis with the tasks it stored. */
  analyze: (cycle: number): StepKey => step(`ever-thinker:analyze:${cycle}`),
  /** The opening prompt of a model step (its map and files as they were), so a resumed step asks the same. */
  prompt: (call: CallKey): StepKey => step(`prompt:${call}`),
  /** What the context manager did to a conversation before a turn (summarised, pruned, stopped). */
  context: (turn: CallKey): StepKey => step(`context:${turn}`),
  /** The measurement at the start of an improvement cycle: its signals, and the magnitude of the cycle before. */
  measure: (cycle: number): StepKey => step(`ever-thinker:measure:${cycle}`),
  /** One tool call's result, in the turn that made it. */
  tool: (turn: CallKey, callId: string): StepKey => step(`tool:${turn}:${callId}`),
  /** The commit of a task round (a git trailer). */
  commit: (taskId: string, attempt: number): StepKey => step(`commit:${taskId}:${attempt}`),
  /** The merge of a task into the base branch (a git trailer). */
  merge: (taskId: string): StepKey => step(`merge:${taskId}`),
  /** The merge queue's merge of the base into a task branch before merging it (a git trailer). */
  update: (taskId: string, attempt: number): StepKey => step(`update:${taskId}:${attempt}`),
  /** The merge queue's test run of an updated branch. */
  retest: (taskId: string, attempt: number): StepKey => step(`retest:${taskId}:${attempt}`),
  /** Opening a task's PR; a task re-implemented on a fresh branch opens a second one. */
  githubOpen: (taskId: string, generation = 1): StepKey => step(generation > 1 ? `github:open:${taskId}:r${generation}` : `github:open:${taskId}`),
  /** Pushing a branch the merge queue brought up to date. */
  githubRefresh: (taskId: string, attempt: number): StepKey => step(`github:refresh:${taskId}:${attempt}`),
  githubUpdate: (taskId: string, revision: number): StepKey => step(`github:update:${taskId}:${revision}`),
  githubMerge: (taskId: string): StepKey => step(`github:merge:${taskId}`),
  githubReview: (kind: string, taskId: string, attempt: number): StepKey => step(`github:review:${kind}:${taskId}:${attempt}`),
};

/** The events of one round of a task (`T2#3`): assigned, submitted, reviewed, merged. */
export function correlationId(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}
