import type { Store } from './store/store.ts';

/**
 * Wall time a run actually ran, summed over every process that drove it: each process adds its
 * own elapsed time to `runs.active_ms` as it goes, so a crash loses at most one tick of it.
 */
export class RunClock {
  private accountedAt: number;

  constructor(private readonly store: Store, private readonly runId: string, private readonly now: () => number = Date.now) {
    this.accountedAt = now();
  }

  /** Adds the time since the last flush to the run and returns the run's total. */
  flush(): number {
    const current = this.now();
    this.store.runs.addActiveTime(this.runId, current - this.accountedAt);
    this.accountedAt = current;
    return this.store.runs.get(this.runId)?.activeMs ?? 0;
  }

  /** Flushes when the last flush is older than `everyMs`, so readers of the store see a live runtime. */
  flushIfDue(everyMs: number): void {
    if (this.now() - this.accountedAt >= everyMs) this.flush();
  }

  /** The run's total without writing. */
  peek(): number {
    return (this.store.runs.get(this.runId)?.activeMs ?? 0) + (this.now() - this.accountedAt);
  }
}
