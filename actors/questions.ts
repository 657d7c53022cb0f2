import type { Store } from '../services/store/store.ts';

/**
 * The clarify step's questions with what became of them, for the Moderator's plan prompt: a
 * person's answer, or the note that the assumptions stand. Empty when there were no questions,
 * so a run without questions sends the prompt it always did.
 */
export function questionsAndAnswers(store: Store, runId: string): string {
  const questions = store.questions.list(runId);
  if (questions.length === 0) return '';
  const lines = questions.map((question) =>
    question.answer === null
      ? `- ${question.id}: ${question.text}\n  (not answered: your assumption stands)`
      : `- ${question.id}: ${question.text}\n  Answer from a person: ${question.answer}`,
  );
  return `Your questions and what a person answered (an answer overrules an assumption):\n${lines.join('\n')}\n\n`;
}
