import type { Outcome } from '../machines/events.ts';

/** Exit status by outcome; 2 is bad input, 130 an interrupted (resumable) run. */
export const exitCodes: Record<Outcome | 'usage' | 'interrupted', number> = {
  done: 0,
  failed: 1,
  usage: 2,
  budget_exhausted: 3,
  stuck: 4,
  needs_human: 5,
  cancelled: 6,
  interrupted: 130,
};

export function exitCodeOf(outcome: string | null): number {
  return outcome !== null && outcome in exitCodes ? exitCodes[outcome as Outcome] : exitCodes.failed;
}
