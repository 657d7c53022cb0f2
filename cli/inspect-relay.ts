import net from 'node:net';

/**
 * Whether something accepts connections at a `ws://` relay address. `--inspect` without a relay
 * would otherwise say nothing: the bridge holds its events and retries quietly, by design.
 * A refused loopback port answers at once; the timeout is only for an address that never answers.
 */
export function relayListening(url: string, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port, protocol } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port || (protocol === 'wss:' ? 443 : 80)) });
    const done = (listening: boolean) => {
      socket.destroy();
      resolve(listening);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
