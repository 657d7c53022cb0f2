import http from 'node:http';
import os from 'node:os';
import test from 'ava';
import { isLoopbackPeer, isOwnOrigin } from '../server/access.ts';
import { eventually, startFixture, type Fixture } from './helpers/monitor-fixture.ts';
import { openSocket, UpgradeRefused } from './helpers/ws.ts';

/** A request with exactly the headers given (fetch would not let a test set Host or Origin). */
function request(fixture: Fixture, route: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const sent = http.request(fixture.url(route), { method: options.method ?? 'GET', headers: options.headers ?? {} }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    sent.on('error', reject);
    sent.end(options.body);
  });
}

const wsUrl = (fixture: Fixture, query = '') => `${fixture.url('/ws').replace(/^http/, 'ws')}${query}`;
const portOf = (fixture: Fixture) => new URL(fixture.url('/')).port;

test('own origins: the host and port the request was sent to, or a loopback name for a loopback one on the same port', (t) => {
  const cases: [origin: string, host: string, own: boolean][] = [
    ['http://127.0.0.1:8080', '127.0.0.1:8080', true],
    ['http://localhost:8080', '127.0.0.1:8080', true],
    ['http://[::1]:8080', 'localhost:8080', true],
    ['http://localhost:9000', 'localhost:9000', true],
    ['http://localhost', 'localhost', true],
    ['http://monitor.lan:8080', 'monitor.lan:8080', true],
    ['https://monitor.example', 'monitor.example', true],
    ['http://127.0.0.1:3000', '127.0.0.1:8080', false],
    ['http://evil.example', '127.0.0.1:8080', false],
    ['http://evil.example:8080', 'localhost:8080', false],
    ['http://monitor.lan:8080', 'localhost:8080', false],
    ['null', '127.0.0.1:8080', false],
    ['file://', '127.0.0.1:8080', false],
    ['chrome-extension://abcdef', '127.0.0.1:8080', false],
  ];
  for (const [origin, host, own] of cases) t.is(isOwnOrigin(origin, host), own, `${origin} on ${host}`);
});

test('a foreign Origin is refused for WebSocket upgrades, interventions and reads; no Origin and the dashboard own origin work', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const port = portOf(fixture);

  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${Number(port) + 1}`]) {
    const refused = await t.throwsAsync(openSocket(wsUrl(fixture), { origin }), { instanceOf: UpgradeRefused }, origin);
    t.is(refused?.status, 403);
    t.regex(JSON.parse(refused?.body ?? '{}').error, /^origin "[^"\n]+" is not served: only the dashboard's own page may call this server from a browser$/);
  }

  for (const origin of [undefined, `http://127.0.0.1:${port}`, `http://localhost:${port}`]) {
    const client = await openSocket(wsUrl(fixture), origin ? { origin } : {});
    t.teardown(() => client.socket.terminate());
    await eventually(`the hello with origin ${origin ?? '(none)'}`, () => client.messages.find((message) => message.type === 'hello'));
  }

  const post = (origin?: string) =>
    request(fixture, '/api/intervention', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${fixture.monitoring.token}`, ...(origin ? { origin } : {}) },
      body: '{"action":"pause"}',
    });
  t.is((await post('http://evil.example')).status, 403, 'even with the token: a page that learnt it must not post from elsewhere');
  t.deepEqual(fixture.actor.getSnapshot().context.received, [], 'the refused intervention never reached the run');
  t.is((await post(`http://localhost:${port}`)).status, 202);
  t.is((await post()).status, 202, 'curl and the CLI send no Origin');
  t.deepEqual(fixture.actor.getSnapshot().context.received, ['run.pause', 'run.pause']);

  t.is((await request(fixture, '/api/state', { headers: { origin: 'http://evil.example' } })).status, 403);
  t.is((await request(fixture, '/api/health')).status, 200);
});

test('a peer address is loopback when it is 127.0.0.0/8 or ::1, IPv4-mapped or not', (t) => {
  const v6 = (...tail: number[]) => Uint8Array.from([...new Array<number>(16 - tail.length).fill(0), ...tail]);
  t.true(isLoopbackPeer(Uint8Array.from([127, 0, 0, 1])));
  t.true(isLoopbackPeer(Uint8Array.from([127, 0, 1, 1])), "Debian's 127.0.1.1 for the host name");
  t.false(isLoopbackPeer(Uint8Array.from([192, 0, 2, 2])));
  t.false(isLoopbackPeer(Uint8Array.from([0, 0, 0, 0])));
  t.true(isLoopbackPeer(v6(1)));
  t.true(isLoopbackPeer(v6(0xff, 0xff, 127, 0, 0, 1)));
  t.false(isLoopbackPeer(v6(0xff, 0xff, 192, 0, 2, 2)));
  t.false(isLoopbackPeer(v6(2)));
  t.false(isLoopbackPeer(Uint8Array.from([0xfd, ...new Array<number>(14).fill(0), 1])));
});

test('on a non-loopback address a request needs the token unless it comes from this machine by a local name', async (t) => {
  // Bound to every interface, as `monitor.host: 0.0.0.0` does; the test only connects from 127.0.0.1.
  const fixture = await startFixture({ host: '0.0.0.0' });
  t.teardown(() => fixture.close());
  const { token } = fixture.monitoring;
  t.regex(fixture.monitoring.exposure ?? '', /^the monitoring server listens on 0\.0\.0\.0, which is not a loopback address: it is reachable from the network, and every request from another machine needs the token; open http:\/\/0\.0\.0\.0:\d+\/\?token=\S+$/);
  t.true(fixture.monitoring.exposure?.endsWith(`?token=${token}`), 'the printed address opens the dashboard');

  const port = portOf(fixture);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `0.0.0.0:${port}`]) {
    t.is((await request(fixture, '/api/health', { headers: { host } })).status, 200, `${host}: the image's healthcheck and moderator status need no token`);
  }
  // A local browser on a page whose domain was rebound to 127.0.0.1, or any name but a local one.
  for (const host of ['evil.example:8080', `monitor.lan:${port}`]) {
    const refused = await request(fixture, '/api/health', { headers: { host } });
    t.is(refused.status, 401, host);
    t.regex(JSON.parse(refused.body).error, /^this server listens on 0\.0\.0\.0, which is not a loopback address: send Authorization: Bearer <token>, or open the dashboard with \?token=<token>$/);
    t.is((await request(fixture, '/api/health', { headers: { host, authorization: `Bearer ${token}` } })).status, 200, `${host} with the token`);
    t.is((await request(fixture, `/api/health?token=${encodeURIComponent(token)}`, { headers: { host } })).status, 200, `${host} with ?token=`);
    t.is((await request(fixture, '/api/health', { headers: { host, authorization: `Bearer ${token}x` } })).status, 401, 'a wrong token');
  }
});

/** This machine's own non-loopback address: another machine as far as the server can tell, without leaving this one. */
const ownAddress = Object.values(os.networkInterfaces())
  .flat()
  .find((address) => address !== undefined && !address.internal && address.family === 'IPv4')?.address;
if (!ownAddress) console.log('skipped: the requests from another machine need a non-loopback IPv4 address on this one, and it has none');
const fromElsewhere = ownAddress ? test : test.skip;

fromElsewhere('on a non-loopback address, from another machine every route and the WebSocket need the token, which the page and its WebSocket take as ?token=', async (t) => {
  const fixture = await startFixture({ host: '0.0.0.0' });
  t.teardown(() => fixture.close());
  const { token } = fixture.monitoring;
  const elsewhere = (route: string) => `http://${ownAddress}:${portOf(fixture)}${route}`;
  const get = (route: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get(elsewhere(route), { headers }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });

  for (const route of ['/', '/api/health', '/api/metrics', '/metrics', '/api/state', '/api/tasks', '/api/runs', '/api/logs']) {
    t.is((await get(route)).status, 401, route);
    t.is((await get(route, { authorization: `Bearer ${token}` })).status, 200, `${route} with the token`);
  }
  const page = await get(`/?token=${encodeURIComponent(token)}`);
  t.is(page.status, 200);
  t.regex(page.body, /data-agent/);

  const wsElsewhere = (query = '') => `${elsewhere('/ws').replace(/^http/, 'ws')}${query}`;
  const refused = await t.throwsAsync(openSocket(wsElsewhere()), { instanceOf: UpgradeRefused });
  t.is(refused?.status, 401);
  const client = await openSocket(wsElsewhere(`?token=${encodeURIComponent(token)}`));
  t.teardown(() => client.socket.terminate());
  await eventually('the hello', () => client.messages.find((message) => message.type === 'hello'));
  const foreign = await t.throwsAsync(openSocket(wsElsewhere(`?token=${encodeURIComponent(token)}`), { origin: 'http://evil.example' }), { instanceOf: UpgradeRefused });
  t.is(foreign?.status, 403, 'the token does not make a foreign page welcome');
});

test('a configured token is not printed in the exposure notice, and a loopback server gives none', async (t) => {
  const exposed = await startFixture({ host: '0.0.0.0', token: 'a-configured-token-of-enough-length' });
  t.teardown(() => exposed.close());
  t.regex(exposed.monitoring.exposure ?? '', /\?token=<monitor\.token>$/);
  t.false(exposed.monitoring.exposure?.includes('a-configured-token-of-enough-length'));
  t.is((await request(exposed, '/api/health', { headers: { host: 'monitor.lan', authorization: 'Bearer a-configured-token-of-enough-length' } })).status, 200);

  const local = await startFixture();
  t.teardown(() => local.close());
  t.is(local.monitoring.exposure, undefined);
  t.is((await request(local, '/api/health')).status, 200, 'reads on loopback need no token');
});
