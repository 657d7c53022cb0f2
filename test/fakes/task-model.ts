import type { FakeStep, RecordedRequest, Script } from './http-fake.ts';
import { purposeOf, type Purpose } from './weak-model.ts';

/**
 * A model for whole runs with several tasks at once (either API, JSON replies): its answers
 * depend on the task a request is about, read off the prompt as a server would see it, so runs
 * whose tasks overlap in time get the same answers in any order. The plan, each change and each
 * review are written by the test; the model only routes and counts.
 */

export interface PlannedTask {
  id: string;
  title: string;
  type?: string;
  description?: string;
  acceptance_criteria?: string[];
  depends_on?: string[];
}

export interface Change {
  summary: string;
  files: { path: string; content: string }[];
}

export interface Verdict {
  verdict: 'approve' | 'request_changes';
  summary: string;
  comments?: string[];
}

/** What a request about a task is: its purpose, the task, and how many of that kind came before. */
export interface Ask {
  purpose: Purpose;
  taskId: string;
  /** 0 for the first implement (or revise, or review) of this task, 1 for the next... */
  nth: number;
  /** The user prompt, to answer what it shows (a conflict, a failing test). */
  prompt: string;
}

export interface TaskModelScript {
  plan: PlannedTask[];
  change(ask: Ask): Change;
  /** Approves every round unless given. */
  review?(ask: Ask): Verdict;
  /** Latency of every answer, as a real model has. */
  delayMs?: number;
}

export interface TaskModel {
  script: Script<FakeStep>;
  /** Every request about a task, in arrival order. */
  asks: Ask[];
  /** The most requests in flight at once (answered ones leave when their delay ends). */
  maxInFlight(): number;
}

function userPrompt(request: RecordedRequest): string {
  const body = request.body as { messages?: { role?: string; content?: unknown }[] } | undefined;
  const first = (body?.messages ?? []).find((message) => message.role === 'user');
  const content = first?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((block) => (typeof block === 'object' && block !== null && 'text' in block ? String((block as { text: unknown }).text) : '')).join('');
  return '';
}

export function taskModel(options: TaskModelScript): TaskModel {
  const asks: Ask[] = [];
  const counts = new Map<string, number>();
  let inFlight = 0;
  let most = 0;
  const delayMs = options.delayMs ?? 0;
  const reply = (value: unknown): FakeStep => {
    // Counted while its delay runs: the fake answers after delayMs, so a request is in flight for that long.
    inFlight += 1;
    most = Math.max(most, inFlight);
    setTimeout(() => {
      inFlight -= 1;
    }, delayMs).unref();
    return { kind: 'reply', text: JSON.stringify(value), delayMs };
  };
  const script: Script<FakeStep> = (request) => {
    if (/Reply with the single word: ok/.test(JSON.stringify(request.body))) return { kind: 'reply', text: 'ok', stopReason: 'length' };
    const purpose = purposeOf(request);
    const prompt = userPrompt(request);
    if (purpose === 'clarify') return reply({ summary: 'As the requirements say.', assumptions: [], questions: [] });
    if (purpose === 'plan') {
      return reply({
        tasks: options.plan.map((task) => ({
          type: 'feature', description: task.title, acceptance_criteria: [`${task.title} works and is tested`], depends_on: [], ...task,
        })),
      });
    }
    if (purpose === 'analyze') return reply({ proposals: [] });
    const taskId = /Task (\S+) \(/.exec(prompt)?.[1];
    if (purpose === undefined || taskId === undefined) {
      return { kind: 'status', status: 400, errorType: 'invalid_request_error', message: 'the task model fake cannot tell what this request asks for, or about which task' };
    }
    const counter = `${purpose}:${taskId}`;
    const nth = counts.get(counter) ?? 0;
    counts.set(counter, nth + 1);
    const ask: Ask = { purpose, taskId, nth, prompt };
    asks.push(ask);
    if (purpose === 'review') return reply(options.review?.(ask) ?? { verdict: 'approve', summary: `${taskId} meets its criteria`, comments: [] });
    return reply(options.change(ask));
  };
  return { script, asks, maxInFlight: () => most };
}
