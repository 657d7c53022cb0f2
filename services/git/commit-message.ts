import { GitError } from './git-error.ts';

/** The trailer that ties a commit to the effect step that made it (see DESIGN, checkpoint rule 2). */
export const STEP_TRAILER = 'Moderator-Step';

/** What a commit message is built from: the task as the planner wrote it. */
export interface CommitTask {
  id: string;
  type: string;
  title: string;
  description: string;
  acceptanceCriteria: string[];
}

const SUBJECT_MAX = 72;

/**
 * One ref-name component made of characters git accepts everywhere (check-ref-format), so a
 * task id like "T 1: login?" can never make `git branch` fail halfway through a run.
 */
function refComponent(raw: string, fallback: string): string {
  let s = raw.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/-{2,}/g, '-').replace(/\.{2,}/g, '.');
  // A component may not start with "." or "-" (git treats "-x" as an option) nor end in ".lock".
  for (;;) {
    const next = s.replace(/^[.-]+/, '').replace(/[.-]+$/, '').replace(/\.lock$/i, '');
    if (next === s) break;
    s = next;
  }
  return s === '' ? fallback : s;
}

/**
 * `<prefix>/<type>/<task id>`; a task re-implemented on a fresh branch (its generation 2) gets
 * `<task id>-r2`, so the first branch and its PR stay as they were for people to read.
 */
export function branchName(prefix: string, type: string, taskId: string, generation = 1): string {
  const prefixParts = prefix.split('/').map((part) => refComponent(part, '')).filter((part) => part !== '');
  const task = refComponent(taskId, 'task');
  return [...prefixParts, refComponent(type.toLowerCase(), 'task'), generation > 1 ? `${task}-r${generation}` : task].join('/');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Cuts to `max` characters (code points, so an emoji is never split) with a trailing ellipsis. */
function truncate(text: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  return `${chars.slice(0, max - 1).join('').trimEnd()}…`;
}

export function commitMessage(task: CommitTask, summary?: string): string {
  const subject = truncate(`${oneLine(task.type)}(${oneLine(task.id)}): ${oneLine(task.title)}`, SUBJECT_MAX);
  const parts = [subject];
  const body = (summary ?? task.description).trim();
  if (body !== '') parts.push(body);
  const footer = [`Task: ${oneLine(task.id)}`];
  const criteria = task.acceptanceCriteria.map(oneLine).filter((item) => item !== '');
  if (criteria.length > 0) footer.push('Acceptance criteria:', ...criteria.map((item) => `- ${item}`));
  parts.push(footer.join('\n'));
  return parts.join('\n\n');
}

/** Refuses step keys that would break the trailer line or could never be found again. */
export function checkStepKey(stepKey: string): void {
  if (stepKey.trim() === '' || stepKey !== stepKey.trim() || /[\u0000-\u001f\u007f]/.test(stepKey)) {
    throw new GitError(`invalid step key ${JSON.stringify(stepKey)}: it must be one non-empty line without surrounding spaces`);
  }
}

export function stepTrailerLine(stepKey: string): string {
  return `${STEP_TRAILER}: ${stepKey}`;
}

/** The message with the step trailer as its own last paragraph, where git looks for trailers. */
export function withStepTrailer(message: string, stepKey: string): string {
  return `${message.trimEnd()}\n\n${stepTrailerLine(stepKey)}\n`;
}

/**
 * Whether a full commit message carries exactly this step's trailer. `git log --grep` matches
 * substrings, so "Moderator-Step: T1" would also find T10: the exact line is checked here.
 */
export function hasStepTrailer(message: string, stepKey: string): boolean {
  const line = stepTrailerLine(stepKey);
  return message.split('\n').some((candidate) => candidate.trimEnd() === line);
}

/** Every step key a full commit message carries a trailer line for. */
export function stepKeysOf(message: string): string[] {
  const prefix = `${STEP_TRAILER}: `;
  return message.split('\n').map((line) => line.trimEnd()).filter((line) => line.startsWith(prefix)).map((line) => line.slice(prefix.length)).filter((key) => key !== '');
}
