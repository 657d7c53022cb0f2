import readline from 'node:readline/promises';
import type { Readable, Writable } from 'node:stream';
import type { AnyActorRef } from 'xstate';
import type { Asking } from '../machines/orchestrator.machine.ts';
import type { Store } from '../services/store/store.ts';
import { groupDigits } from '../protocol/numbers.ts';

export interface TerminalQuestionsOptions {
  store: Store;
  runId: string;
  root: AnyActorRef;
  input: Readable;
  output: Writable;
  /** The timeout people are told about (`limits.intervention_timeout_minutes`). */
  timeoutMinutes: number;
}

const asked = (asking: Asking | null): string => (asking === null ? '' : `${asking.kind}:${asking.ids.join(',')}`);

/**
 * Asks on the terminal what the orchestrator asks a person (its context's `asking`): each clarify
 * question in turn (Enter keeps the assumption), or whether to go on past the budget forecast.
 * The same questions are open on the dashboard and the API; an answer given there ends the
 * prompt here. Answers are kept with their questions before the orchestrator hears them, so the
 * plan that follows sees them.
 */
export class TerminalQuestions {
  private current = '';
  private abort: AbortController | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: TerminalQuestionsOptions) {
    const subscription = options.root.subscribe((snapshot: { context?: { asking?: Asking | null } }) => this.onAsking(snapshot.context?.asking ?? null));
    this.unsubscribe = () => subscription.unsubscribe();
    this.onAsking((options.root.getSnapshot() as { context?: { asking?: Asking | null } }).context?.asking ?? null);
  }

  stop(): void {
    this.unsubscribe();
    this.abort?.abort();
  }

  private onAsking(asking: Asking | null): void {
    const key = asked(asking);
    if (key === this.current) return;
    this.current = key;
    this.abort?.abort();
    this.abort = undefined;
    if (asking === null) return;
    const abort = new AbortController();
    this.abort = abort;
    const ask = asking.kind === 'questions' ? this.askQuestions(asking, abort.signal) : this.askBudget(asking, abort.signal);
    ask.catch(() => {
      // Aborted: answered elsewhere, timed out, or the run ended. The orchestrator decides what follows.
    });
  }

  /** One line interface per question session: lines typed ahead are read by the next question, not lost. */
  private async session(work: (prompt: (text: string) => Promise<string>) => Promise<void>, signal: AbortSignal): Promise<void> {
    const terminal = readline.createInterface({ input: this.options.input, output: this.options.output, terminal: false });
    try {
      await work(async (text) => (await terminal.question(text, { signal })).trim());
    } finally {
      terminal.close();
    }
  }

  private async askQuestions(asking: Asking, signal: AbortSignal): Promise<void> {
    const { store, runId, root } = this.options;
    const questions = store.questions.list(runId).filter((question) => asking.ids.includes(question.id));
    const scope = store.runs.get(runId)?.scope as { assumptions?: unknown } | null | undefined;
    const assumptions = Array.isArray(scope?.assumptions) ? scope.assumptions.map(String) : [];
    this.options.output.write(
      `\nThe Moderator has ${questions.length} question(s) before it plans (${this.options.timeoutMinutes} min, then its assumptions stand; also on the dashboard).\n` +
        (assumptions.length ? `Its assumptions:\n${assumptions.map((assumption) => `  - ${assumption}`).join('\n')}\n` : ''),
    );
    await this.session(async (prompt) => {
      for (const question of questions) {
        // Answered on the dashboard meanwhile: not asked again.
        if (store.questions.list(runId).find((stored) => stored.id === question.id)?.answer != null) continue;
        const answer = await prompt(`${question.id}: ${question.text}\n  your answer (Enter: the assumption stands): `);
        if (signal.aborted) return;
        if (answer !== '') store.questions.answer(runId, question.id, answer, 'terminal');
        root.send({ type: 'human.answered', questionId: question.id, answer });
      }
    }, signal);
  }

  private async askBudget(asking: Asking, signal: AbortSignal): Promise<void> {
    const forecast = asking.forecast;
    if (!forecast) return;
    const over = forecast.budget === 'tokens'
      ? `~${groupDigits(forecast.tokensAtFinish)} tokens, more than the budget of ${groupDigits(forecast.maxTokensTotal)}`
      : `~$${forecast.costAtFinish.toFixed(2)}, more than the budget of $${String(forecast.maxCostUsd)}`;
    await this.session(async (prompt) => {
      for (;;) {
        const answer = (await prompt(`\nThe forecast to finish the ${forecast.tasksLeft} task(s) left is ${over}. Go on (the run still stops at the budget) or stop now? [continue/stop] `)).toLowerCase();
        if (signal.aborted) return;
        if (answer === 'continue' || answer === 'stop') {
          this.options.root.send({ type: 'human.answered', questionId: 'budget', answer });
          return;
        }
      }
    }, signal);
  }
}
