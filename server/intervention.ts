import { z } from 'zod';

const reason = z.string().max(2000).optional();
const simple = <A extends string>(action: A) => z.object({ action: z.literal(action), reason });

/** The body of `POST /api/intervention`. */
export const interventionSchema = z.discriminatedUnion('action', [
  simple('pause'),
  simple('resume'),
  simple('abort'),
  simple('approve'),
  simple('reject'),
  z.object({
    action: z.literal('answer'),
    reason,
    answer: z.string({ error: 'required for answer' }).min(1, 'must not be empty').max(20_000),
    /** The question answered (`Q1`, `budget`); may be left out when only one question is open. */
    question_id: z.string().min(1).max(64).optional(),
  }),
  z.object({ action: z.literal('skip'), reason, task_id: z.string({ error: 'required for skip' }).min(1, 'must not be empty') }),
  z.object({ action: z.literal('acknowledge'), reason, alert_id: z.int({ error: 'required for acknowledge: the id of an alert (GET /api/alerts)' }).positive() }),
]);

export type Intervention = z.infer<typeof interventionSchema>;

/** The event the root actor receives for an intervention; typed here, not imported from machines/. */
export type InterventionEvent =
  | { type: 'run.pause' }
  | { type: 'run.resume' }
  | { type: 'run.abort'; reason: string }
  | { type: 'human.approved' }
  | { type: 'human.rejected'; reason: string }
  | { type: 'human.answered'; answer: string; questionId?: string }
  | { type: 'task.skip'; taskId: string; reason?: string }
  | { type: 'alert.acknowledged'; alertId: number };

/** Parses a request body into an intervention, or a one-line reason why not. */
export function parseIntervention(body: Buffer): { ok: true; value: Intervention } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: `malformed JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
  const parsed = interventionSchema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return { ok: false, reason: `${where}${issue?.message ?? 'invalid body'}`.replace(/\s+/g, ' ') };
}

const by = 'through the monitoring server';

export function interventionEvent(intervention: Intervention): InterventionEvent {
  switch (intervention.action) {
    case 'pause':
      return { type: 'run.pause' };
    case 'resume':
      return { type: 'run.resume' };
    case 'abort':
      return { type: 'run.abort', reason: intervention.reason ?? `aborted ${by}` };
    case 'approve':
      return { type: 'human.approved' };
    case 'reject':
      return { type: 'human.rejected', reason: intervention.reason ?? `rejected ${by}` };
    case 'answer':
      return { type: 'human.answered', answer: intervention.answer, ...(intervention.question_id ? { questionId: intervention.question_id } : {}) };
    case 'skip':
      return { type: 'task.skip', taskId: intervention.task_id, ...(intervention.reason ? { reason: intervention.reason } : {}) };
    case 'acknowledge':
      return { type: 'alert.acknowledged', alertId: intervention.alert_id };
  }
}

/** The alert row that records an intervention; the answer's text stays in the event journal. */
export function interventionNote(intervention: Intervention): string {
  const task =
    intervention.action === 'skip' ? ` ${intervention.task_id}`
      : intervention.action === 'answer' && intervention.question_id ? ` ${intervention.question_id}`
        : intervention.action === 'acknowledge' ? ` alert #${intervention.alert_id}`
          : '';
  const why = intervention.reason ? `: ${intervention.reason}` : '';
  return `${intervention.action}${task} ${by}${why}`;
}
