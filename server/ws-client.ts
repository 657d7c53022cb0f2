import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';

const acceptGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * A minimal RFC 6455 client (text frames, ping/pong, close) over `node:net`: Node 20 has no
 * global WebSocket without a flag, and the inspector bridge and the tests need only this much.
 * Events: `message` (text), `close` (code), `error`.
 */
export class MiniWebSocket extends EventEmitter {
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private closed = false;
  /** Messages that arrived before anyone listened (e.g. right behind the handshake). */
  private unheard: string[] = [];

  private constructor(readonly socket: net.Socket) {
    super();
    this.on('newListener', (event: string) => {
      if (event !== 'message' || this.unheard.length === 0) return;
      queueMicrotask(() => {
        const held = this.unheard;
        this.unheard = [];
        for (const text of held) this.emit('message', text);
      });
    });
    socket.on('data', (data: Buffer) => this.onData(data));
    // A reset after the server dropped us is a close, not a crash: only report it to listeners.
    socket.on('error', (error) => {
      if (this.listenerCount('error') > 0) this.emit('error', error);
    });
    socket.on('close', () => this.finish(1006));
  }

  /** Connects and completes the opening handshake; rejects if the server does not upgrade. */
  static connect(url: string, timeoutMs = 5000): Promise<MiniWebSocket> {
    const target = new URL(url);
    if (target.protocol !== 'ws:') return Promise.reject(new Error(`only ws:// URLs are supported, not ${url}`));
    const key = randomBytes(16).toString('base64');
    const expected = createHash('sha1').update(key + acceptGuid).digest('base64');
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 80) });
      let head = Buffer.alloc(0);
      const fail = (error: Error) => {
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(() => fail(new Error(`no WebSocket handshake from ${url} within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        socket.write(
          `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      const onHead = (data: Buffer) => {
        head = Buffer.concat([head, data]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.off('data', onHead);
        clearTimeout(timer);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const accept = lines.find((line) => line.toLowerCase().startsWith('sec-websocket-accept:'))?.slice(21).trim();
        if (!/^HTTP\/1\.1 101/.test(lines[0] ?? '') || accept !== expected) {
          fail(new Error(`${url} refused the WebSocket upgrade: ${lines[0] ?? 'no status line'}`));
          return;
        }
        socket.removeAllListeners('error');
        const client = new MiniWebSocket(socket);
        resolve(client);
        const rest = head.subarray(end + 4);
        if (rest.length > 0) client.onData(rest);
      };
      socket.on('data', onHead);
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(text: string): void {
    this.frame(0x1, Buffer.from(text, 'utf8'));
  }

  close(code = 1000): void {
    if (this.closed) return;
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    this.frame(0x8, payload);
    this.socket.end();
  }

  /** Drops the connection without a close handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  private frame(opcode: number, payload: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    const length = payload.length;
    const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    if (length < 126) header[1] = 0x80 | length;
    else if (length < 65536) {
      header[1] = 0x80 | 126;
      header.writeUInt16BE(length, 2);
    } else {
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    // Clients must mask what they send (RFC 6455 5.3).
    const mask = randomBytes(4);
    const masked = Buffer.alloc(length);
    for (let index = 0; index < length; index += 1) masked[index] = (payload[index] as number) ^ (mask[index % 4] as number);
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  private onData(data: Buffer): void {
    this.buffer = this.buffer.length > 0 ? Buffer.concat([this.buffer, data]) : data;
    for (;;) {
      if (this.buffer.length < 2) return;
      const first = this.buffer[0] as number;
      const second = this.buffer[1] as number;
      let length = second & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      const masked = (second & 0x80) !== 0;
      const start = offset + (masked ? 4 : 0);
      if (this.buffer.length < start + length) return;
      let payload = this.buffer.subarray(start, start + length);
      if (masked) {
        const mask = this.buffer.subarray(offset, offset + 4);
        payload = Buffer.from(payload.map((byte, index) => byte ^ (mask[index % 4] as number)));
      }
      this.buffer = this.buffer.subarray(start + length);
      this.onFrame(first & 0x0f, (first & 0x80) !== 0, payload);
    }
  }

  private onFrame(opcode: number, fin: boolean, payload: Buffer): void {
    if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
      this.fragments.push(payload);
      if (!fin) return;
      const whole = Buffer.concat(this.fragments);
      this.fragments = [];
      const text = whole.toString('utf8');
      if (this.listenerCount('message') > 0) this.emit('message', text);
      else this.unheard.push(text);
    } else if (opcode === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.frame(0x8, payload.subarray(0, 2));
      this.socket.end();
      this.finish(code);
    } else if (opcode === 0x9) {
      this.frame(0xa, payload);
    }
  }

  private finish(code: number): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', code);
  }
}
