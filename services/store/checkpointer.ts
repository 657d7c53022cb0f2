import { randomUUID } from 'node:crypto';
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { messageOf } from '../../errors.ts';
import type { Store } from './store.ts';
import type { JournalMessage } from './types.ts';

export interface CheckpointStats {
  /** Snapshot writes actually made (unchanged snapshots are skipped). */
  writes: number;
  /** Microtask flushes, one per burst of state transitions. */
  flushes: number;
  /** Time spent taking, serialising and writing snapshots, in microseconds. */
  persistMicros: number;
  lastSnapshotBytes: number;
  messages: number;
}

export interface CheckpointerOptions {
  store: Store;
  runId: string;
  /** Event types that are inter-agent messages and go to the journal. */
  journaled: ReadonlySet<string>;
  /** Called after each write with the messages it journaled and the phase, outside the transaction. */
  onFlush?: (messages: JournalMessage[], phase: string) => void;
  onError?: (error: unknown) => void;
  /** Called synchronously when the root enters another top-level state. */
  onPhase?: (phase: string) => void;
  /**
   * Store writes that project the snapshot and the messages it journals (the tasks table from the
   * chart's task list, the Monitor's alerts and metrics), made in the checkpoint's own transaction:
   * what the store says never runs ahead of or behind the chart.
   */
  project?: (messages: JournalMessage[]) => void;
}

/**
 * Persists the whole actor tree after every burst of transitions (DESIGN, checkpoint rule 1):
 * any actor's `@xstate.snapshot` schedules one flush per microtask, which takes the root's
 * persisted snapshot, skips it when unchanged or not healthy, and UPSERTs it together with the
 * inter-agent messages delivered since the last flush, in one transaction.
 */
export class Checkpointer {
  readonly stats: CheckpointStats = { writes: 0, flushes: 0, persistMicros: 0, lastSnapshotBytes: 0, messages: 0 };
  private root: AnyActorRef | undefined;
  private scheduled = false;
  private lastJson = '';
  private lastPhase = '';
  private pending: JournalMessage[] = [];
  private stopped = false;
  private reportedPhase = '';

  constructor(private readonly options: CheckpointerOptions) {}

  /** The observer to pass as `inspect` to `createActor`, so not even the first event is missed. */
  readonly observe = (event: InspectionEvent): void => {
    if (this.stopped) return;
    if (event.type === '@xstate.event') {
      const type = event.event.type;
      if (this.options.journaled.has(type)) {
        const { type: _type, ...payload } = event.event as Record<string, unknown>;
        this.pending.push({
          id: randomUUID(),
          from: actorName(event.sourceRef) ?? 'human',
          to: actorName(event.actorRef) ?? 'unknown',
          type,
          payload,
          correlationId: typeof payload.correlationId === 'string' ? payload.correlationId : null,
          at: new Date().toISOString(),
        });
      }
      return;
    }
    if (event.type === '@xstate.snapshot' && event.actorRef === this.root) {
      // Reported at once, not at the flush, so progress lines come out in the order things happen.
      const phase = phaseOf((event.snapshot as { value?: unknown }).value);
      if (phase !== this.reportedPhase) {
        this.reportedPhase = phase;
        this.options.onPhase?.(phase);
      }
    }
    if (event.type === '@xstate.snapshot' && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  };

  attach(root: AnyActorRef): void {
    this.root = root;
  }

  /** Writes now if anything changed; also used once more when the run stops. */
  flush(): void {
    this.scheduled = false;
    const root = this.root;
    if (!root || this.stopped) return;
    const snapshot = root.getSnapshot() as { status: string; value: unknown };
    // Never replace the last good checkpoint with a broken or torn-down tree (rule 1).
    if (snapshot.status !== 'active' && snapshot.status !== 'done') return;
    const started = performance.now();
    try {
      const json = JSON.stringify(root.getPersistedSnapshot());
      const phase = phaseOf(snapshot.value);
      const messages = this.pending;
      if (json === this.lastJson && messages.length === 0) return;
      this.pending = [];
      const project = this.options.project;
      this.options.store.checkpoints.save(this.options.runId, json, snapshot.status, messages, phase === this.lastPhase ? null : phase, project ? () => project(messages) : undefined);
      this.lastJson = json;
      this.lastPhase = phase;
      this.stats.writes += 1;
      this.stats.lastSnapshotBytes = json.length;
      this.stats.messages += messages.length;
      this.stats.persistMicros += (performance.now() - started) * 1000;
      this.options.onFlush?.(messages, phase);
    } catch (error) {
      this.options.onError?.(new Error(`checkpoint failed: ${messageOf(error)}`, { cause: error }));
    } finally {
      this.stats.flushes += 1;
    }
  }

  /** Stops writing: after this, a torn-down tree can never overwrite the last checkpoint. */
  stop(): void {
    this.stopped = true;
  }
}

/** The top-level state name of a state value: `implementing` for `{ implementing: 'working' }`. */
export function phaseOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') return Object.keys(value)[0] ?? 'unknown';
  return 'unknown';
}

/** The id an actor was given (`orchestrator`, or its invoke id); inspection types only promise a ref-like. */
function actorName(ref: unknown): string | undefined {
  return ref && typeof ref === 'object' && 'id' in ref && typeof ref.id === 'string' ? ref.id : undefined;
}
