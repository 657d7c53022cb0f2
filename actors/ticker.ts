import { fromCallback, type ActorSystem, type EventObject } from 'xstate';
import type { MetricsSample, MonitorTick } from '../machines/monitor.machine.ts';

/** The system of any tree, whose actors are looked up by systemId. */
// `any`: xstate types a system by the actors it holds; the ticker reads any tree's.
export type AnyActorSystem = ActorSystem<any>;

export interface TickerOptions {
  /** One measurement of the run; the actor system gives the agents' live states. */
  sample: (system: AnyActorSystem) => Promise<MetricsSample>;
  /**
   * Moments worth measuring at once rather than at the next interval (a failed model call, a task
   * that ended): calls `now` for each; returns how to stop watching.
   */
  watch?: (now: () => void) => () => void;
  /** A measurement that failed (the store closing under a finishing run, a bug): said, never thrown into the tree. */
  onError?: (error: unknown) => void;
}

/**
 * The Monitor's clock: every `intervalMs`, and at the moments `watch` reports, it measures the run
 * and sends `monitor.tick`. An invoked callback (not an `after` delay) so it restarts by itself on
 * resume (checkpoint rule 3). Its interval runs on the actor system's scheduler, the clock the
 * tree was created with: real time in a run, a SimulatedClock in tests.
 */
export function tickerActor(options: TickerOptions) {
  return fromCallback<EventObject, { intervalMs: number }>(({ sendBack, receive, self, system, input }) => {
    let stopped = false;
    let measuring = false;
    let again = false;
    const measure = (): void => {
      if (stopped) return;
      // One measurement at a time; a request meanwhile is served by one more right after.
      if (measuring) {
        again = true;
        return;
      }
      measuring = true;
      options
        .sample(system)
        .then(
          (sample) => {
            if (!stopped) sendBack({ type: 'monitor.tick', sample } satisfies MonitorTick);
          },
          (error: unknown) => {
            if (!stopped) options.onError?.(error);
          },
        )
        .finally(() => {
          measuring = false;
          if (again) {
            again = false;
            measure();
          }
        });
    };
    const arm = (): void => system.scheduler.schedule(self, self, { type: 'ticker.due' }, input.intervalMs, 'interval');
    receive((event) => {
      if (event.type === 'ticker.due') {
        arm();
        measure();
      } else if (event.type === 'ticker.now') {
        measure();
      }
    });
    arm();
    const unwatch = options.watch?.(measure);
    // The scheduler drops this actor's pending interval when it stops.
    return () => {
      stopped = true;
      unwatch?.();
    };
  });
}
