import { interventionEventTypes } from '../machines/events.ts';
import type { CallReport } from '../services/llm/gateway.ts';
import type { JournalMessage } from '../services/store/types.ts';
import { groupDigits } from '../protocol/numbers.ts';

/** A person's intervention as one line: what was asked for, and what it named. */
function describeIntervention(type: string, payload: Record<string, unknown>): string {
  const text = (value: unknown) => (typeof value === 'string' && value.length > 120 ? `${value.slice(0, 117)}...` : String(value));
  switch (type) {
    case 'human.answered':
      return `answer${payload.questionId ? ` to ${String(payload.questionId)}` : ''}: ${payload.answer === '' ? '(the assumption stands)' : text(payload.answer)}`;
    case 'human.rejected':
    case 'run.abort':
      return `${type === 'run.abort' ? 'abort' : 'plan rejected'}: ${text(payload.reason)}`;
    case 'task.skip':
      return `skip ${String(payload.taskId)}${payload.reason ? `: ${text(payload.reason)}` : ''}`;
    case 'alert.acknowledged':
      return `alert #${String(payload.alertId)} acknowledged`;
    default:
      return ({ 'human.approved': 'plan approved', 'run.pause': 'pause', 'run.resume': 'resume' } as Record<string, string>)[type] ?? type;
  }
}

/**
 * Progress lines for the person at the terminal, on stderr, so stdout stays free for `--json`.
 * Each line starts with the run's elapsed time in this process.
 */
export class Reporter {
  private readonly started = Date.now();
  private tokens = 0;

  constructor(private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)) {}

  line(text: string): void {
    const seconds = Math.floor((Date.now() - this.started) / 1000);
    const stamp = `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
    this.write(`[${stamp}] ${text}`);
  }

  /** Starts the token count from what earlier sessions of the run used. */
  setTokens(tokens: number): void {
    this.tokens = tokens;
  }

  phase(phase: string): void {
    this.line(`phase: ${phase}`);
  }

  modelCall(report: CallReport): void {
    const what = `${report.agent} ${report.purpose}${report.taskId ? ` ${report.taskId}` : ''}`;
    if (report.error) {
      this.line(`  model ${what}: failed: ${report.error}`);
      return;
    }
    const usage = report.reply?.usage;
    if (!usage) return;
    if (report.fromJournal) {
      this.line(`  model ${what}: reply taken from the journal, not sent again`);
      return;
    }
    this.tokens += usage.inputTokens + usage.outputTokens + usage.cacheReadTokens + usage.cacheWriteTokens;
    const how = usage.source === 'estimated' ? ' (estimated: no usage from the server)' : usage.source === 'counted' ? ' (counted: no usage from the server)' : '';
    this.line(`  model ${what}: ${usage.inputTokens} in / ${usage.outputTokens} out tokens${how} (run total ${groupDigits(this.tokens)})`);
  }

  /**
   * Lines for the journaled messages a person should see. `stopReason` is the orchestrator's
   * reason once it has decided to stop: the summary prints it, so a failure or limit that became
   * that reason is not printed here as well (a budget stop used to show its error twice).
   */
  messages(messages: JournalMessage[], stopReason: string | null = null, channels: { alerts?: boolean } = {}): void {
    const isStopReason = (text: string) => stopReason !== null && stopReason.endsWith(text);
    for (const message of messages) {
      const payload = message.payload as Record<string, unknown>;
      // The Monitor's alerts, when the console is one of agents.monitor.alert_channels.
      if (message.type === 'health.alert' && channels.alerts !== false && !isStopReason(String(payload.message))) this.line(`alert (${String(payload.level)}): ${String(payload.message)}`);
      if (interventionEventTypes.has(message.type)) this.line(`intervention received: ${describeIntervention(message.type, payload)}`);
      if (message.type === 'question.timeout') {
        this.line(payload.id === 'questions' ? 'no answer in time: the Moderator\'s assumptions stand and the run goes on' : `no answer in time to the ${String(payload.id)} question`);
      }
      if (message.type === 'agent.retry' && typeof payload.approach === 'number') this.line(`${message.to} retries its step with a different approach (${payload.approach})`);
      if (message.type === 'monitor.limit_reached' && !isStopReason(String(payload.reason))) this.line(`limit reached: ${String(payload.reason)}`);
      if (message.type === 'agent.failed' && !isStopReason(String(payload.message))) {
        this.line(`error: ${String(payload.agent)}${payload.taskId ? ` ${String(payload.taskId)}` : ''}: ${String(payload.message)}`);
      }
      if (message.type === 'agent.stalled') this.line(`${String(payload.agent)} made no progress for too long; the orchestrator decides`);
    }
  }
}
