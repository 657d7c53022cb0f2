import { ToolError } from './tool-error.ts';

/** The task used up its configured tool turns; the caller decides (stagnant, needs review). */
export class ToolTurnsExhausted extends ToolError {
  readonly max: number;

  constructor(max: number) {
    super(`the task used all of its ${max} tool turns; stopping instead of looping on`);
    this.max = max;
  }
}

/**
 * A cap on tool turns per task. One turn is one model reply that asked for tools, however many
 * calls it held. `used` lets a resumed run start from the count kept in its machine context.
 */
export class ToolTurns {
  readonly max: number;
  private taken: number;

  constructor(max: number, used = 0) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`tool turns: expected a positive integer cap, found ${max}`);
    if (!Number.isInteger(used) || used < 0) throw new RangeError(`tool turns: expected a used count of 0 or more, found ${used}`);
    this.max = max;
    this.taken = used;
  }

  get used(): number {
    return this.taken;
  }

  get remaining(): number {
    return Math.max(0, this.max - this.taken);
  }

  /** Counts one turn; throws ToolTurnsExhausted when the cap was already reached. */
  take(): void {
    if (this.taken >= this.max) throw new ToolTurnsExhausted(this.max);
    this.taken += 1;
  }
}
