import http from 'node:http';
import test from 'ava';
import { isOwnOrigin } from '../server/access.ts';
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

test('on a non-loopback address every request needs the token, which the page and its WebSocket take as ?token=', async (t) => {
  // Bound to every interface, as `monitor.host: 0.0.0.0` does; the test only connects to 127.0.0.1.
  const fixture = await startFixture({ host: '0.0.0.0' });
  t.teardown(() => fixture.close());
  const { token } = fixture.monitoring;
  t.regex(fixture.monitoring.exposure ?? '', /^the monitoring server listens on 0\.0\.0\.0, which is not a loopback address: it is reachable from the network, and every request needs the token; open http:\/\/0\.0\.0\.0:\d+\/\?token=\S+$/);
  t.true(fixture.monitoring.exposure?.endsWith(`?token=${token}`), 'the printed address opens the dashboard');

  for (const route of ['/', '/api/health', '/api/metrics', '/metrics', '/api/state', '/api/tasks', '/api/runs', '/api/logs']) {
    const refused = await request(fixture, route);
    t.is(refused.status, 401, route);
    t.regex(JSON.parse(refused.body).error, /^this server listens on 0\.0\.0\.0, which is not a loopback address: send Authorization: Bearer <token>, or open the dashboard with \?token=<token>$/);
    t.is((await request(fixture, route, { headers: { authorization: `Bearer ${token}` } })).status, 200, `${route} with the token`);
  }
  t.is((await request(fixture, '/api/health', { headers: { authorization: `Bearer ${token}x` } })).status, 401, 'a wrong token');
  t.is((await request(fixture, '/api/health?token=nope')).status, 401);
  const page = await request(fixture, `/?token=${encodeURIComponent(token)}`);
  t.is(page.status, 200);
  t.regex(page.body, /data-agent/);
  t.is((await request(fixture, '/api/health', { headers: { authorization: `Bearer ${token}`, host: 'monitor.lan:8080' } })).status, 200, 'any host name: the token is the guard here');

  const refused = await t.throwsAsync(openSocket(wsUrl(fixture)), { instanceOf: UpgradeRefused });
  t.is(refused?.status, 401);
  const client = await openSocket(wsUrl(fixture, `?token=${encodeURIComponent(token)}`));
  t.teardown(() => client.socket.terminate());
  await eventually('the hello', () => client.messages.find((message) => message.type === 'hello'));
  const foreign = await t.throwsAsync(openSocket(wsUrl(fixture, `?token=${encodeURIComponent(token)}`), { origin: 'http://evil.example' }), { instanceOf: UpgradeRefused });
  t.is(foreign?.status, 403, 'the token does not make a foreign page welcome');
});

test('a configured token is not printed in the exposure notice, and a loopback server gives none', async (t) => {
  const exposed = await startFixture({ host: '0.0.0.0', token: 'a-configured-token-of-enough-length' });
  t.teardown(() => exposed.close());
  t.regex(exposed.monitoring.exposure ?? '', /\?token=<monitor\.token>$/);
  t.false(exposed.monitoring.exposure?.includes('a-configured-token-of-enough-length'));
  t.is((await request(exposed, '/api/health', { headers: { authorization: 'Bearer a-configured-token-of-enough-length' } })).status, 200);

  const local = await startFixture();
  t.teardown(() => local.close());
  t.is(local.monitoring.exposure, undefined);
  t.is((await request(local, '/api/health')).status, 200, 'reads on loopback need no token');
});
