import type { PostedReview } from './pr-provider.ts';

export interface PrTask {
  id: string;
  type: string;
  title: string;
  description: string;
  acceptanceCriteria: string[];
}

export interface PrTests {
  command: string;
  passed: boolean;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
}

function testsLine(tests: PrTests | undefined): string {
  if (!tests) return 'No test run was recorded.';
  const outcome = tests.passed ? 'passed' : `failed (exit ${tests.exitCode ?? 'none'}${tests.timedOut ? ', timed out' : ''})`;
  return `\`${tests.command}\` ${outcome} in ${(tests.durationMs / 1000).toFixed(1)} s.`;
}

/** A PR's description: the task, its acceptance criteria and the latest test run. */
export function pullRequestBody(task: PrTask, tests: PrTests | undefined, revision: number): string {
  return [
    task.description,
    '',
    '### Acceptance criteria',
    ...task.acceptanceCriteria.map((criterion) => `- ${criterion}`),
    '',
    `### Tests${revision > 1 ? ` (revision ${revision})` : ''}`,
    testsLine(tests),
    '',
    `Task ${task.id} (${task.type}), implemented and submitted by Moderator's TechLead.`,
  ].join('\n');
}

/** The hidden line that identifies a posted review, so a step run again after a crash finds it. */
export function reviewMarker(review: Pick<PostedReview, 'taskId' | 'attempt' | 'kind'>): string {
  return `<!-- moderator-review ${review.kind} ${review.taskId} round ${review.attempt} -->`;
}

/**
 * A review's text. `asComment` says the verdict could not be given as an approval or a change
 * request (GitHub refuses both on a PR by the same account), so the text carries it instead.
 */
export function reviewBody(review: PostedReview, asComment: boolean): string {
  const verdict = review.verdict === 'approve' ? 'approved' : 'changes requested';
  const heading = review.kind === 'conflict'
    ? `### Moderator: merge conflict, round ${review.attempt}: ${verdict}`
    : review.kind === 'tests'
      ? `### Moderator merge queue: tests fail with the base merged in, round ${review.attempt}: ${verdict}`
      : `### Moderator review, round ${review.attempt}: ${verdict}`;
  return [
    heading,
    ...(asComment ? ['', `**Verdict: ${review.verdict === 'approve' ? 'APPROVE' : 'REQUEST_CHANGES'}** (posted as a comment: GitHub does not let the account that opened a PR approve it or request changes on it).`] : []),
    '',
    review.summary,
    '',
    '**Acceptance criteria**',
    ...review.criteria.map((criterion) => `- ${criterion}`),
    '',
    `**Tests**: ${review.tests ? `\`${review.tests.command}\` ${review.tests.passed ? 'passed' : 'failed'}` : 'no test run recorded'}.`,
    ...(review.comments.length ? ['', '**Comments**', ...review.comments.map((comment) => `- ${comment}`)] : []),
    '',
    reviewMarker(review),
  ].join('\n');
}
