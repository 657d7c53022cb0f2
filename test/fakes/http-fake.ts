import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request as a fake API received it. */
export interface RecordedRequest {
  method: string;
  path: string;
  /** Lower-case names, as node gives them. */
  headers: Record<string, string>;
  /** The JSON body, or the raw text when it is not JSON. */
  body: unknown;
  /** `performance.now()` when the request arrived, to measure the waits between retries. */
  at: number;
}

/**
 * Steps answer requests in order (request n gets step n; the last step answers every request after
 * it), or a function picks the step from the request.
 */
export type Script<Step> = Step[] | ((request: RecordedRequest, index: number) => Step);

export interface FakeServer<Step> {
  /** `http://127.0.0.1:<port>`, no path. */
  url: string;
  requests: RecordedRequest[];
  /** Requests a side route answered (e.g. count_tokens): outside the script and `requests`. */
  sideRequests: RecordedRequest[];
  /** Replaces the script; its steps count from the next request. */
  setScript(script: Script<Step>): void;
  close(): Promise<void>;
}

/** What a handler uses to answer: it never writes to a socket the client has already closed. */
export interface Responder {
  request: RecordedRequest;
  res: http.ServerResponse;
  /** Resolves after `ms`, or early when the server closes. */
  wait(ms: number): Promise<void>;
  /** True once the client went away (e.g. its timeout fired). */
  gone(): boolean;
  json(status: number, body: unknown, headers?: Record<string, string>): void;
  /** Starts a `text/event-stream` response. */
  startStream(headers?: Record<string, string>): void;
  /** Writes raw SSE text; false when the client is gone. */
  write(text: string): boolean;
  end(): void;
}

/** The node:http plumbing both fakes share: 127.0.0.1, port 0, every request recorded. */
export async function startHttpFake<Step>(
  script: Script<Step>,
  handle: (step: Step, responder: Responder) => Promise<void>,
  /** Answers a request outside the script (true when it did), as an API's auxiliary endpoints are. */
  side?: (request: RecordedRequest, res: http.ServerResponse) => boolean,
): Promise<FakeServer<Step>> {
  let current = script;
  let offset = 0;
  const requests: RecordedRequest[] = [];
  const sideRequests: RecordedRequest[] = [];
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown = raw;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        // kept as text: a handler answers 400 like the real API would
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : (value ?? '');
      const request: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers, body, at: performance.now() };
      if (side?.(request, res)) {
        sideRequests.push(request);
        return;
      }
      requests.push(request);
      const index = requests.length - 1 - offset;
      const step = typeof current === 'function' ? current(request, index) : current[Math.min(index, current.length - 1)];
      let closed = false;
      res.on('close', () => {
        closed = true;
      });
      const responder: Responder = {
        request,
        res,
        wait: (ms) =>
          new Promise<void>((resolve) => {
            const entry = { timer: setTimeout(() => { timers.delete(entry); resolve(); }, ms), resolve };
            timers.add(entry);
          }),
        gone: () => closed || res.destroyed,
        json(status, value, extra = {}) {
          if (this.gone()) return;
          res.writeHead(status, { 'content-type': 'application/json', ...extra });
          res.end(JSON.stringify(value));
        },
        startStream(extra = {}) {
          if (this.gone()) return;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', ...extra });
          res.flushHeaders();
        },
        write(text) {
          if (this.gone()) return false;
          res.write(text);
          return true;
        },
        end() {
          if (!this.gone()) res.end();
        },
      };
      if (step === undefined) {
        responder.json(500, { error: 'the fake has no script step for this request' });
        return;
      }
      handle(step, responder).catch((error: unknown) => {
        if (!responder.gone()) res.destroy(error instanceof Error ? error : new Error(String(error)));
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    sideRequests,
    setScript(next) {
      current = next;
      offset = requests.length;
    },
    async close() {
      for (const entry of timers) {
        clearTimeout(entry.timer);
        entry.resolve();
      }
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Splits a string into pieces of `size` characters, as a server streams partial JSON. */
export function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let start = 0; start < text.length; start += size) out.push(text.slice(start, start + size));
  return out.length > 0 ? out : [''];
}

/** Token counts a fake reports, mapped to each API's own usage fields. */
export interface FakeUsage {
  input?: number;
  output?: number;
  cacheRead?: number;
  cacheWrite?: number;
}

export interface FakeToolCall {
  id?: string;
  name: string;
  input: unknown;
  /** Sent as the arguments exactly as written (a weak model's `{"path": "a",}`), instead of `input` as JSON. */
  rawArguments?: string;
}

/** What a fake does with one request. Both fakes take the same steps. */
export type FakeStep =
  | {
      kind: 'reply';
      text?: string;
      toolCalls?: FakeToolCall[];
      /** The API's own value (`end_turn`, `stop`, ...); by default derived from the tool calls. */
      stopReason?: string;
      /** `'none'`: the server reports no usage at all, as many local servers do. */
      usage?: FakeUsage | 'none';
      model?: string;
      /** Wait before the response headers (beyond a client timeout: the client gives up). */
      delayMs?: number;
      /** Pause after the first piece of text, mid-stream. */
      stallMs?: number;
    }
  | { kind: 'status'; status: number; errorType?: string; message?: string; headers?: Record<string, string>; delayMs?: number }
  /** `body`: a 200 whose JSON body is cut short; `event`: a stream whose first event's data is not JSON. */
  | { kind: 'malformed'; where: 'body' | 'event' }
  /** The stream starts, then the API reports an error inside it. */
  | { kind: 'stream_error'; errorType?: string; message?: string }
  /** The stream starts, then the connection is cut (a proxy or a crashed server). */
  | { kind: 'reset' };

/** Step constructors, so scripts read as what happens. */
export const step = {
  reply: (options: Omit<Extract<FakeStep, { kind: 'reply' }>, 'kind'> = {}): FakeStep => ({ kind: 'reply', ...options }),
  rateLimited: (headers: Record<string, string> = { 'retry-after-ms': '10' }): FakeStep => ({ kind: 'status', status: 429, errorType: 'rate_limit_error', message: 'Number of requests has exceeded your rate limit', headers }),
  overloaded: (headers: Record<string, string> = { 'retry-after-ms': '10' }): FakeStep => ({ kind: 'status', status: 529, errorType: 'overloaded_error', message: 'Overloaded', headers }),
  serverError: (headers: Record<string, string> = { 'retry-after-ms': '10' }): FakeStep => ({ kind: 'status', status: 500, errorType: 'api_error', message: 'Internal server error', headers }),
  unauthorized: (): FakeStep => ({ kind: 'status', status: 401, errorType: 'authentication_error', message: 'invalid x-api-key' }),
  status: (status: number, options: Omit<Extract<FakeStep, { kind: 'status' }>, 'kind' | 'status'> = {}): FakeStep => ({ kind: 'status', status, ...options }),
  malformed: (where: 'body' | 'event' = 'event'): FakeStep => ({ kind: 'malformed', where }),
  streamError: (errorType = 'overloaded_error', message = 'Overloaded'): FakeStep => ({ kind: 'stream_error', errorType, message }),
  reset: (): FakeStep => ({ kind: 'reset' }),
};

/** How a fake server treats structured output requests: as the real servers do, in their variety. */
export type StructuredSupport =
  /** Honours it (the reply is whatever the step says; a test checks the request). */
  | 'accept'
  /** 400 for `json_schema` (llama.cpp builds with a grammar: "Either json_schema or grammar can be specified"), takes `json_object`. */
  | 'refuse-json-schema'
  /** 400 for any `response_format` / forced `tool_choice`. */
  | 'refuse-all';
