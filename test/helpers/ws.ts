import WebSocket from 'ws';

export interface OpenSocket {
  socket: WebSocket;
  /** Every message received so far, parsed, from the first one on. */
  messages: Record<string, unknown>[];
  /** Resolves with the close code. */
  closed: Promise<number>;
}

/** An upgrade the server answered with an HTTP status instead of 101. */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}: ${body}`);
  }
}

/**
 * Opens a WebSocket (the `ws` client) and keeps every message. The listener is attached before
 * the handshake completes: one added after `open` resolves can miss the server's hello, which
 * arrives right behind the 101.
 */
export function openSocket(url: string, options: WebSocket.ClientOptions = {}): Promise<OpenSocket> {
  const socket = new WebSocket(url, { handshakeTimeout: 5000, ...options });
  const messages: Record<string, unknown>[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>));
  const closed = new Promise<number>((resolve) => socket.once('close', resolve));
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve({ socket, messages, closed }));
    socket.on('error', reject);
    socket.once('unexpected-response', (request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        request.destroy();
        reject(new UpgradeRefused(response.statusCode ?? 0, body));
      });
    });
  });
}
