import type { ModelRequest } from './provider.ts';

/** A stream that goes quiet mid-reply: the SDKs' timeouts cover only the wait for the headers. */
/**
 * Aborts a stream that has gone quiet. The SDKs' timeout covers only the wait for response
 * headers; a stream that stalls after them would otherwise hang the run.
 */
export class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  fired = false;

  constructor(private readonly ms: number) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Starts or restarts the countdown; call it on every stream event. */
  touch(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort(new Error(`no stream event for ${this.ms} ms`));
    }, this.ms);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

/** The signal an SDK call gets: the caller's cancellation and the idle watchdog. */
export function callSignal(request: ModelRequest, watchdog: IdleWatchdog): AbortSignal {
  return request.signal ? AbortSignal.any([request.signal, watchdog.signal]) : watchdog.signal;
}

/**
 * Throws when a stream ended early because it was aborted: the SDKs end the iteration quietly
 * when their signal fires mid-stream, which would otherwise look like a short, complete reply.
 */
export function assertNotCutShort(request: ModelRequest, watchdog: IdleWatchdog): void {
  request.signal?.throwIfAborted();
  if (watchdog.fired) throw new StreamStalled();
}

/** Thrown when the idle watchdog ended a stream; classified as `idle`. */
export class StreamStalled extends Error {
  constructor() {
    super('the stream stalled');
    this.name = 'StreamStalled';
  }
}
