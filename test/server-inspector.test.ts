import net from 'node:net';
import test from 'ava';
import uWS from 'uWebSockets.js';
import { createActor } from 'xstate';
import { createStatelyInspector } from '../server/inspector.ts';
import { eventually, tinyTree } from './helpers/monitor-fixture.ts';

/** A port nothing listens on (bound, read, released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A stand-in for @statelyai/inspect's relay: a WebSocket server that keeps what it receives. */
interface Relay {
  received: Record<string, unknown>[];
  /** Clients connected now. */
  connected(): number;
  /** Stops listening; connected clients stay. */
  close(): void;
  /** Closes every connected client, as a relay that went away would. */
  dropAll(): void;
}

function startRelay(port: number): Promise<Relay> {
  const received: Record<string, unknown>[] = [];
  const clients = new Set<uWS.WebSocket<unknown>>();
  const app = uWS.App().ws('/*', {
    open: (ws) => {
      clients.add(ws);
    },
    close: (ws) => {
      clients.delete(ws);
    },
    message: (_ws, message) => {
      received.push(JSON.parse(Buffer.from(message).toString('utf8')) as Record<string, unknown>);
    },
  });
  return new Promise((resolve, reject) =>
    app.listen('127.0.0.1', port, (socket) => {
      if (!socket) reject(new Error(`relay port ${port} taken`));
      else {
        resolve({
          received,
          connected: () => clients.size,
          close: () => uWS.us_listen_socket_close(socket),
          dropAll: () => [...clients].forEach((ws) => ws.close()),
        });
      }
    }),
  );
}

test('the --inspect bridge survives a missing relay, then delivers Stately events once one listens', async (t) => {
  const port = await freePort();
  const inspector = createStatelyInspector({ url: `ws://127.0.0.1:${port}`, retryMs: 50 });
  t.teardown(() => inspector.stop());
  const actor = createActor(tinyTree, { id: 'orchestrator', systemId: 'orchestrator', inspect: inspector.inspect });
  t.teardown(() => actor.stop());
  actor.start();
  actor.send({ type: 'test.advance' });
  t.is(actor.getSnapshot().status, 'active', 'nothing listening breaks nothing');

  const relay = await startRelay(port);
  t.teardown(() => relay.close());
  const expected = ['orchestrator', 'moderator', 'techlead-1', 'monitor', 'everThinker'];
  const machines = await eventually('the held events to arrive', () => {
    const actors = relay.received.filter((event) => event.type === '@xstate.actor');
    return actors.length >= expected.length ? actors : undefined;
  });
  t.deepEqual(expected.filter((name) => !machines.some((event) => event.name === name)), [], 'every agent is registered');
  const root = machines.find((event) => event.name === 'orchestrator');
  t.regex(String(root?.definition), /"clarifying"/, 'the machine definition goes along, as the Stately inspector expects');
  t.true(relay.received.some((event) => event.type === '@xstate.snapshot'));

  actor.send({ type: 'test.warn' });
  await eventually('a live event after connecting', () =>
    relay.received.find((event) => event.type === '@xstate.event' && (event.event as { type?: string } | undefined)?.type === 'test.warn'),
  );
  t.pass();
});

test('the --inspect bridge reconnects when the relay goes away and comes back', async (t) => {
  const port = await freePort();
  const first = await startRelay(port);
  const inspector = createStatelyInspector({ url: `ws://127.0.0.1:${port}`, retryMs: 50 });
  t.teardown(() => inspector.stop());
  const actor = createActor(tinyTree, { id: 'orchestrator', systemId: 'orchestrator', inspect: inspector.inspect });
  t.teardown(() => actor.stop());
  actor.start();
  await eventually('the first relay to hear the run', () => first.received.some((event) => event.type === '@xstate.actor'));

  first.close();
  first.dropAll();
  const second = await startRelay(port);
  t.teardown(() => second.close());
  await eventually('the bridge to connect to the second relay', () => second.connected() > 0);
  actor.send({ type: 'test.advance' });
  t.is(actor.getSnapshot().status, 'active', 'a relay that went away broke nothing');
  await eventually('the held event at the second relay', () =>
    second.received.find((event) => event.type === '@xstate.event' && (event.event as { type?: string } | undefined)?.type === 'test.advance'),
  );
  t.pass();
});
