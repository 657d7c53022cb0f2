import type uWS from 'uWebSockets.js';
import { safeJson } from './safe-json.ts';

export interface ClientData {
  open: boolean;
}

type Client = uWS.WebSocket<ClientData>;

/** Messages serialised and written together, between checks for clients that fell behind. */
const flushBatch = 64;

/**
 * The WebSocket clients of the dashboard. Messages are queued by the caller (the inspection
 * observer) and written once per event-loop turn, corked, to every client. A client that does
 * not keep up is closed: the run never waits for a reader.
 */
export class Hub {
  private readonly clients = new Set<Client>();
  private queue: unknown[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  /** Clients closed because their unsent data passed `maxBufferedBytes`. */
  dropped = 0;

  constructor(private readonly maxBufferedBytes: number) {}

  get size(): number {
    return this.clients.size;
  }

  add(client: Client): void {
    this.clients.add(client);
  }

  remove(client: Client): void {
    client.getUserData().open = false;
    this.clients.delete(client);
  }

  /** Queues a message for every client; cheap, never throws, never writes synchronously. */
  publish(message: unknown): void {
    if (this.clients.size === 0) return;
    this.queue.push(message);
    if (!this.scheduled) {
      this.scheduled = setImmediate(() => this.flush());
      this.scheduled.unref();
    }
  }

  /** Sends to one client now (the hello on connect). */
  sendTo(client: Client, message: unknown): void {
    this.write(client, [safeJson(message)]);
  }

  /**
   * Serialises and writes the queue in batches, and stops as soon as no client is left: a burst
   * (thousands of large inspection events) that only a slow client would get is then dropped
   * with it, instead of being serialised whole on the run's event loop first.
   */
  flush(): void {
    this.scheduled = undefined;
    const queue = this.queue;
    this.queue = [];
    for (let start = 0; start < queue.length && this.clients.size > 0; start += flushBatch) {
      const texts = queue.slice(start, start + flushBatch).map(safeJson);
      for (const client of [...this.clients]) this.write(client, texts);
    }
  }

  closeAll(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.queue = [];
    for (const client of [...this.clients]) {
      this.remove(client);
      client.end(1001, 'server closing');
    }
  }

  private write(client: Client, texts: string[]): void {
    if (!client.getUserData().open) return;
    let slow = false;
    client.cork(() => {
      for (const text of texts) {
        // 2 = dropped by uWS's own backpressure limit: the client is as good as gone.
        if (client.send(text, false, false) === 2 || client.getBufferedAmount() > this.maxBufferedBytes) {
          slow = true;
          break;
        }
      }
    });
    if (slow) {
      this.dropped += 1;
      this.remove(client);
      // close(), not end(): a close frame would queue behind the data the client is not reading.
      client.close();
    }
  }
}
