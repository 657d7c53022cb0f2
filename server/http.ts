import type uWS from 'uWebSockets.js';
import { messageOf } from '../errors.ts';

export interface Reply {
  status: number;
  body: string;
  contentType?: string;
}

const statusText: Record<number, string> = {
  200: 'OK',
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
};

export const jsonReply = (status: number, body: unknown): Reply => ({ status, body: JSON.stringify(body), contentType: 'application/json; charset=utf-8' });

export const errorReply = (status: number, message: string): Reply => jsonReply(status, { error: message });

function write(res: uWS.HttpResponse, reply: Reply): void {
  res
    .writeStatus(`${reply.status} ${statusText[reply.status] ?? 'Unknown'}`)
    .writeHeader('Content-Type', reply.contentType ?? 'application/json; charset=utf-8')
    .writeHeader('Cache-Control', 'no-store')
    .writeHeader('X-Content-Type-Options', 'nosniff')
    // The dashboard's address may carry ?token=: never pass it on.
    .writeHeader('Referrer-Policy', 'no-referrer')
    .end(reply.body);
}

/** Answers at once, inside the handler (uWS corks the handler's own writes). */
export function reply(res: uWS.HttpResponse, make: () => Reply): void {
  let answer: Reply;
  try {
    answer = make();
  } catch (error) {
    answer = errorReply(500, messageOf(error));
  }
  write(res, answer);
}

/**
 * Answers after awaiting: uWS requires `onAborted` before any await, and corked writes after it;
 * a client that went away meanwhile gets nothing (writing to it would throw).
 */
export function replyLater(res: uWS.HttpResponse, make: () => Promise<Reply>): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  make()
    .catch((error: unknown) => errorReply(500, messageOf(error)))
    .then((answer) => {
      if (!aborted) res.cork(() => write(res, answer));
    })
    .catch(() => undefined);
}

/** The request body, up to `limit` bytes; null when it is larger. Call after `onAborted`. */
export function readBody(res: uWS.HttpResponse, limit: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    res.onData((chunk, isLast) => {
      if (!tooLarge) {
        size += chunk.byteLength;
        // uWS reuses the chunk's memory after this callback returns: copy it.
        if (size > limit) tooLarge = true;
        else chunks.push(Buffer.from(chunk.slice(0)));
      }
      if (isLast) resolve(tooLarge ? null : Buffer.concat(chunks));
    });
  });
}
