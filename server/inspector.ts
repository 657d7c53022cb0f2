import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import WebSocket from 'ws';
import type { InspectionEvent } from 'xstate';
import { safeJson } from './safe-json.ts';

export interface StatelyInspectorOptions {
  /** The relay to send to: `@statelyai/inspect/server`'s `createInspectorServer`, ws://localhost:8080 by default. */
  url?: string;
  /** Wait between connection attempts while nothing listens. */
  retryMs?: number;
  /** Events kept while disconnected; the oldest go first. */
  maxDeferred?: number;
}

export interface StatelyInspector {
  /** Pass as (or call from) the actor system's `inspect` option. */
  inspect: (event: InspectionEvent) => void;
  stop(): void;
}

/**
 * `--inspect`: forwards inspection events to the Stately inspector through a WebSocket relay.
 * It uses @statelyai/inspect's event conversion with an adapter of our own, because the
 * package's WebSocket adapter retries forever on a timer that keeps the process alive and
 * cannot be stopped while connecting. Here nothing listening is fine: events wait (bounded),
 * reconnects are unref'd, and `stop()` ends it all.
 */
export function createStatelyInspector(options: StatelyInspectorOptions = {}): StatelyInspector {
  const adapter = new RelayAdapter(options.url ?? 'ws://localhost:8080', options.retryMs ?? 5000, options.maxDeferred ?? 500);
  const inspector = createInspector(adapter, { autoStart: true });
  inspector.start();
  return {
    inspect: (event) => {
      try {
        inspector.inspect.next?.(event);
      } catch {
        // The bridge is a viewer: it never breaks the run.
      }
    },
    stop: () => inspector.stop(),
  };
}

/** Unsent bytes past which events are dropped: a relay that stops reading must not grow the run's memory. */
const maxBufferedBytes = 1024 * 1024;

class RelayAdapter {
  private socket: WebSocket | undefined;
  private deferred: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly retryMs: number,
    private readonly maxDeferred: number,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.terminate();
    this.socket = undefined;
  }

  send(event: StatelyInspectionEvent): void {
    const text = safeJson(event);
    const socket = this.socket;
    if (socket?.readyState === WebSocket.OPEN) {
      if (socket.bufferedAmount <= maxBufferedBytes) socket.send(text);
      return;
    }
    this.deferred.push(text);
    if (this.deferred.length > this.maxDeferred) this.deferred.shift();
  }

  private connect(): void {
    if (this.stopped) return;
    const socket = new WebSocket(this.url, { handshakeTimeout: 5000 });
    this.socket = socket;
    // A viewer never keeps the process alive once connected; until then the attempt is short (refused or timed out).
    socket.on('upgrade', (response) => response.socket.unref());
    socket.on('open', () => {
      for (const text of this.deferred) socket.send(text);
      this.deferred = [];
    });
    // Nothing listening is normal: ws reports it as an error, always followed by close.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.retry();
    });
  }

  private retry(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.connect(), this.retryMs);
    this.timer.unref();
  }
}
