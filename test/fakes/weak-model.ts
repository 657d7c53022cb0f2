import type { FakeStep, RecordedRequest, Script } from './http-fake.ts';

/**
 * A model that answers the way small and local models do, for whole runs against a loopback fake
 * (either API): each purpose (clarify, plan, implement, revise, review, analyze) has its own queue
 * of answers, taken in order; the last one repeats. What the run asked for is read off the request
 * as a server would see it: the structured-output name when the client sent one, else the prompt.
 */

export type Purpose = 'clarify' | 'plan' | 'implement' | 'revise' | 'review' | 'analyze';

export type Answer = string | FakeStep;

export interface WeakModel {
  script: Script<FakeStep>;
  /** Requests seen per purpose, in order. */
  seen: Record<Purpose, RecordedRequest[]>;
  /** Replace the queue of a purpose (e.g. before `retry`, when the model "improves"). */
  answer(purpose: Purpose, answers: Answer[]): void;
}

const byPrompt: [RegExp, Purpose][] = [
  [/Clarify the scope\.\s*$/, 'clarify'],
  [/Plan the tasks\.\s*$/, 'plan'],
  [/Implement the task, with tests\.[\s\S]*$/, 'implement'],
  [/Address every comment\.[\s\S]*$/, 'revise'],
  [/Review it\.\s*$/, 'review'],
  [/what is worth improving\?/, 'analyze'],
];

interface Message {
  role?: string;
  content?: unknown;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((block) => (typeof block === 'object' && block !== null && 'text' in block ? String((block as { text: unknown }).text) : '')).join('');
  return '';
}

/** The purpose of a request: the first user message says what was asked, in either API's shape. */
export function purposeOf(request: RecordedRequest): Purpose | undefined {
  const body = request.body as { messages?: Message[] } | undefined;
  const first = (body?.messages ?? []).find((message) => message.role === 'user');
  const text = textOf(first?.content);
  return byPrompt.find(([pattern]) => pattern.test(text))?.[1];
}

/** What every text answer's reply step also says (e.g. `usage: 'none'` for a server that reports none). */
export type ReplyDefaults = Omit<Extract<FakeStep, { kind: 'reply' }>, 'kind' | 'text'>;

export function weakModel(answers: Partial<Record<Purpose, Answer[]>>, defaults: ReplyDefaults = {}): WeakModel {
  const queues = new Map<Purpose, Answer[]>(Object.entries(answers) as [Purpose, Answer[]][]);
  const used = new Map<Purpose, number>();
  const seen: Record<Purpose, RecordedRequest[]> = { clarify: [], plan: [], implement: [], revise: [], review: [], analyze: [] };
  const script: Script<FakeStep> = (request) => {
    // The preflight call that proves the key and the endpoint before a run starts.
    if (/Reply with the single word: ok/.test(JSON.stringify(request.body))) return { kind: 'reply', text: 'ok', stopReason: 'length' };
    const purpose = purposeOf(request);
    if (purpose === undefined) return { kind: 'status', status: 400, errorType: 'invalid_request_error', message: 'the weak model fake cannot tell what this request asks for' };
    seen[purpose].push(request);
    const queue = queues.get(purpose) ?? [];
    const index = used.get(purpose) ?? 0;
    used.set(purpose, index + 1);
    const next = queue[Math.min(index, queue.length - 1)];
    if (next === undefined) return { kind: 'status', status: 500, errorType: 'server_error', message: `no scripted answer for ${purpose}` };
    return typeof next === 'string' ? { kind: 'reply', ...defaults, text: next } : next.kind === 'reply' ? { ...defaults, ...next } : next;
  };
  return {
    script,
    seen,
    answer(purpose, list) {
      queues.set(purpose, list);
      used.set(purpose, 0);
    },
  };
}
