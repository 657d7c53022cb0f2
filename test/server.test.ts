import net from 'node:net';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import test from 'ava';
import { MonitorServerError, startMonitoring } from '../server/index.ts';
import { eventually, limits, startFixture, type Fixture } from './helpers/monitor-fixture.ts';
import { openSocket, UpgradeRefused } from './helpers/ws.ts';

const getJson = async (fixture: Fixture, route: string, headers: Record<string, string> = {}) => {
  const response = await fetch(fixture.url(route), { headers });
  return { status: response.status, type: response.headers.get('content-type') ?? '', body: (await response.json()) as Record<string, unknown> };
};

/** Posts an intervention with the server's token, another token, or (null) none. */
const intervene = async (fixture: Fixture, body: string, token: string | null = fixture.monitoring.token) => {
  const response = await fetch(fixture.url('/api/intervention'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
};

/** A WebSocket client that keeps every message it got. */
async function listen(fixture: Fixture) {
  const { socket, messages, closed } = await openSocket(fixture.url('/ws').replace(/^http/, 'ws'));
  const waitFor = (what: string, match: (message: Record<string, unknown>) => boolean) => eventually(what, () => messages.find(match));
  return { socket, messages, closed, waitFor };
}

test('health follows the run: healthy, degraded when the monitor alerts, unhealthy when the run fails', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const first = await getJson(fixture, '/api/health');
  t.is(first.status, 200);
  t.like(first.body, {
    status: 'healthy',
    run_id: 'r1',
    phase: 'clarifying',
    agents: { moderator: 'idle', techlead_1: 'idle', merge_queue: 'not_started', monitor: 'running.watching', ever_thinker: 'idle' },
    techleads: [{ id: 'techlead-1', task_id: 'T2', state: 'idle' }],
  });
  t.is(typeof first.body.uptime_seconds, 'number');

  fixture.actor.send({ type: 'test.warn' });
  t.like((await getJson(fixture, '/api/health')).body, { status: 'degraded', agents: { monitor: 'running.alerting' } });

  fixture.actor.send({ type: 'test.fail' });
  t.like((await getJson(fixture, '/api/health')).body, {
    status: 'unhealthy',
    phase: 'stopped',
    outcome: 'failed',
    agents: { moderator: 'stopped', techlead_1: 'stopped', monitor: 'stopped', ever_thinker: 'stopped' },
  });
});

test('a failed model call makes the run degraded', async (t) => {
  const fixture = await startFixture({ withErrorCall: true });
  t.teardown(() => fixture.close());
  t.is((await getJson(fixture, '/api/health')).body.status, 'degraded');
});

test('metrics come from the store and the root context, as JSON and as Prometheus text', async (t) => {
  const fixture = await startFixture({ withErrorCall: true });
  t.teardown(() => fixture.close());
  const metrics = await getJson(fixture, '/api/metrics');
  t.regex(metrics.type, /application\/json/);
  t.deepEqual(metrics.body, {
    tokens_used: 4700,
    context_size: 3000,
    tasks_completed: 1,
    tasks_total: 3,
    prs_merged: 1,
    cost_usd: 0.03,
    error_rate: 1 / 3,
    runtime_seconds: 65,
    improvement_cycle: 2,
    calls_sent: 3,
    tasks_in_flight: 1,
    review_queue_length: 0,
    merge_queue_length: 0,
    context_by_agent: { moderator: { tokens: 950, zone: 'ok' }, techlead: { tokens: 2950, zone: 'summarise' } },
    // Three calls are too few for an error rate to count; every budget is under half used.
    health_score: 100,
    alerts_open: 0,
    consecutive_errors: 0,
    // No finished task has spent anything yet: nothing to forecast from.
    forecast_tokens_at_finish: null,
    forecast_cost_at_finish_usd: null,
    forecast_tokens_to_finish: null,
    forecast_cost_to_finish_usd: null,
    forecast: null,
    improvement_magnitude: null,
    limits: { max_tokens_total: 100_000, max_cost_usd: 5, max_runtime_seconds: 3600, max_error_rate: 0.5, max_context_tokens: 10_000 },
  });

  for (const response of [await fetch(fixture.url('/api/metrics'), { headers: { accept: 'text/plain' } }), await fetch(fixture.url('/metrics'))]) {
    t.is(response.status, 200);
    t.regex(response.headers.get('content-type') ?? '', /text\/plain/);
    const text = await response.text();
    t.regex(text, /^# TYPE moderator_tokens_used gauge$/m);
    t.regex(text, /^moderator_tokens_used\{run_id="r1"\} 4700$/m);
    t.regex(text, /^moderator_tasks_completed\{run_id="r1"\} 1$/m);
    t.regex(text, /^moderator_tasks_in_flight\{run_id="r1"\} 1$/m);
    t.regex(text, /^moderator_merge_queue_length\{run_id="r1"\} 0$/m);
    t.regex(text, /^moderator_error_rate\{run_id="r1"\} 0\.333/m);
    t.regex(text, /^moderator_limit\{run_id="r1",limit="max_tokens_total"\} 100000$/m);
    t.regex(text, /^moderator_context_tokens\{run_id="r1",agent="techlead"\} 2950$/m);
    t.regex(text, /^moderator_context_zone\{run_id="r1",agent="techlead"\} 1$/m);
    t.regex(text, /^moderator_context_zone\{run_id="r1",agent="moderator"\} 0$/m);
    t.regex(text, /^moderator_health_score\{run_id="r1"\} 100$/m);
    t.notRegex(text, /^moderator_forecast_tokens_at_finish\{/m, 'a forecast not known yet is left out of the scrape');
  }
});

test('state holds the phase, each agent, the small context, the definitions and a pending question', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const { body } = await getJson(fixture, '/api/state');
  t.like(body, {
    run_id: 'r1',
    phase: 'clarifying',
    live: true,
    agents: { monitor: { state: 'running.watching', value: { running: 'watching' } }, moderator: { state: 'idle' } },
    context: {
      current_task_id: 'T2', tasks_in_flight: ['T2'], techleads: [{ id: 'techlead-1', task_id: 'T2', state: 'idle' }], improvement_cycle: 2, outcome: null, paused: false,
      review_queue: [], merge_queue: [], merging: null,
    },
    pending_question: null,
  });
  const definitions = body.definitions as Record<string, { states: { path: string; states: { path: string }[] }[] }>;
  t.deepEqual(Object.keys(definitions).sort(), ['everThinker', 'moderator', 'monitor', 'orchestrator', 'techlead-1']);
  const running = definitions.monitor?.states.find((state) => state.path === 'running');
  t.deepEqual(running?.states.map((state) => state.path), ['running.watching', 'running.alerting'], 'nested states keep their paths');
  t.deepEqual(definitions.orchestrator?.states.map((state) => state.path), ['clarifying', 'awaitingApproval', 'implementing', 'stopped']);

  fixture.actor.send({ type: 'test.plan' });
  t.like((await getJson(fixture, '/api/state?definitions=0')).body, {
    phase: 'awaitingApproval',
    pending_question: { kind: 'approve_plan', actions: ['approve', 'reject'], deadline: null },
  });
  const approval = (await getJson(fixture, '/api/state?definitions=0')).body.pending_question as { tasks: { id: string; acceptance_criteria: string[] }[] };
  t.deepEqual(approval.tasks.map((task) => [task.id, task.acceptance_criteria]), [['T1', ['works']], ['T2', ['works']], ['T3', ['works']]], 'every task with its acceptance criteria');
  t.false('definitions' in (await getJson(fixture, '/api/state?definitions=0')).body);
});

test('tasks list titles, statuses, attempts and PR numbers; PRs carry their reviews', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const { body } = await getJson(fixture, '/api/tasks');
  t.deepEqual(
    (body.tasks as { id: string; status: string; attempts: number; pr_number: number | null }[]).map((task) => [task.id, task.status, task.attempts, task.pr_number]),
    [['T1', 'merged', 2, 1], ['T2', 'in_review', 1, 2], ['T3', 'pending', 0, null]],
  );
  const prs = body.pull_requests as { number: number; status: string; reviews: { verdict: string; summary: string; comments: string[] }[] }[];
  t.like(prs[0], { number: 1, status: 'merged' });
  t.deepEqual(prs[0]?.reviews.map((review) => review.verdict), ['request_changes', 'approve']);
  t.deepEqual(prs[0]?.reviews[0]?.comments, ['add a test for empty lists']);
  t.deepEqual(prs[1]?.reviews, []);
});

test('runs lists every run of the target and marks the current one', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const runs = (await getJson(fixture, '/api/runs')).body.runs as { id: string; current: boolean; outcome: string | null; active_seconds: number }[];
  t.deepEqual(runs.map((run) => [run.id, run.current, run.outcome]), [['r0', false, 'done'], ['r1', true, null]]);
  t.is(runs[1]?.active_seconds, 65);
});

function writeLogs(dir: string): void {
  const line = (time: number, level: number, agent: string, msg: string, extra: Record<string, unknown> = {}, runId = 'r1') =>
    JSON.stringify({ level, time, pid: 1, hostname: 'h', runId, agent, ...extra, msg });
  fs.writeFileSync(
    path.join(dir, 'orchestrator.jsonl'),
    [line(900, 30, 'orchestrator', 'old run', {}, 'r0'), line(1000, 30, 'orchestrator', 'phase', { phase: 'clarifying' }), line(1004, 30, 'orchestrator', 'message', { type: 'task.assigned', correlationId: 'T2#1' })].join('\n') + '\n',
  );
  fs.writeFileSync(
    path.join(dir, 'techlead.jsonl'),
    [line(1001, 30, 'techlead', 'model call', { callKey: 'techlead:implement:T1:1' }), line(1005, 50, 'techlead', 'model call', { callKey: 'techlead:implement:T2:1', error: 'HTTP 500' })].join('\n') + '\n',
  );
  fs.writeFileSync(path.join(dir, 'ever-thinker.jsonl'), `${line(1002, 40, 'ever-thinker', 'nothing to improve')}\n{not json\n`);
}

test('logs merge the agents files newest first, filter, and page with a cursor', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  writeLogs(fixture.logsDir);
  const page = async (query: string) => (await getJson(fixture, `/api/logs${query}`)).body as { entries: { time: number; agent: string; msg: string; level: number }[]; next_cursor: string | null };

  const all = await page('');
  t.deepEqual(all.entries.map((entry) => entry.time), [1005, 1004, 1002, 1001, 1000], 'merged by time, other runs and broken lines left out');
  t.like(all.entries[0], { agent: 'techlead', level: 50, msg: 'model call', runId: 'r1' });
  t.is(all.next_cursor, null);

  t.deepEqual((await page('?agent=everThinker')).entries.map((entry) => entry.time), [1002]);
  t.deepEqual((await page('?level=warn')).entries.map((entry) => entry.time), [1005, 1002]);
  t.deepEqual((await page('?level=50')).entries.map((entry) => entry.time), [1005]);
  t.deepEqual((await page('?task=T2')).entries.map((entry) => entry.time), [1005, 1004], 'by call key and correlation id');
  t.deepEqual((await page('?run=*')).entries.map((entry) => entry.time), [1005, 1004, 1002, 1001, 1000, 900]);

  const first = await page('?limit=2');
  t.deepEqual(first.entries.map((entry) => entry.time), [1005, 1004]);
  t.truthy(first.next_cursor);
  // Lines written after the first page do not shift the pages that follow it.
  fs.appendFileSync(path.join(fixture.logsDir, 'techlead.jsonl'), `${JSON.stringify({ level: 30, time: 2000, runId: 'r1', agent: 'techlead', msg: 'late' })}\n`);
  const second = await page(`?limit=2&cursor=${first.next_cursor}`);
  t.deepEqual(second.entries.map((entry) => entry.time), [1002, 1001]);
  const third = await page(`?limit=2&cursor=${second.next_cursor}`);
  t.deepEqual(third.entries.map((entry) => entry.time), [1000]);
  t.is(third.next_cursor, null);
  t.is((await page('')).entries[0]?.msg, 'late');

  t.is((await getJson(fixture, '/api/logs?level=loud')).status, 400);
  t.is((await getJson(fixture, '/api/logs?cursor=garbage')).status, 400);
  t.is((await getJson(fixture, '/api/logs?limit=0')).status, 400);
});

test('interventions need the token, a valid body, and reach the root actor', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  t.true(fixture.monitoring.token.length >= 24, 'a generated token is long enough');

  const missing = await intervene(fixture, '{"action":"pause"}', null);
  t.is(missing.status, 401);
  t.is((await intervene(fixture, '{"action":"pause"}', 'not-the-token')).status, 401);
  t.is((await intervene(fixture, '{"action":"pause"}', `${fixture.monitoring.token}x`)).status, 401);

  const malformed = await intervene(fixture, '{"action": pause');
  t.is(malformed.status, 400);
  t.regex(String(malformed.body.error), /^malformed JSON: [^\n]+$/);
  const noTask = await intervene(fixture, '{"action":"skip"}');
  t.is(noTask.status, 400);
  t.is(noTask.body.error, 'task_id: required for skip');
  t.is((await intervene(fixture, '{"action":"answer","answer":""}')).body.error, 'answer: must not be empty');
  t.regex(String((await intervene(fixture, '{"action":"explode"}')).body.error), /^action: /);
  t.deepEqual(fixture.actor.getSnapshot().context.received, [], 'nothing invalid reached the run');

  const skip = await intervene(fixture, JSON.stringify({ action: 'skip', task_id: 'T2', reason: 'blocked upstream' }));
  t.is(skip.status, 202);
  t.deepEqual(skip.body, { accepted: true, event: { type: 'task.skip', taskId: 'T2', reason: 'blocked upstream' } });
  t.deepEqual(fixture.actor.getSnapshot().context.lastEvent, { type: 'task.skip', taskId: 'T2', reason: 'blocked upstream' });

  t.is((await intervene(fixture, '{"action":"pause"}')).status, 202);
  t.true(fixture.actor.getSnapshot().context.paused);
  const unasked = await intervene(fixture, '{"action":"answer","answer":"use sqlite"}');
  t.is(unasked.status, 409);
  t.is(unasked.body.error, 'run r1 asks no question now: nothing to answer');
  fixture.store.questions.add('r1', [{ id: 'Q1', text: 'Which database?' }, { id: 'Q2', text: 'Which port?' }]);
  fixture.actor.send({ type: 'test.ask' });
  t.is((await intervene(fixture, '{"action":"answer","answer":"use sqlite"}')).body.error, 'question_id: required while 2 questions are open (Q1, Q2)');
  t.is((await intervene(fixture, '{"action":"answer","answer":"use sqlite","question_id":"Q9"}')).status, 409);
  t.is((await intervene(fixture, '{"action":"answer","answer":"use sqlite","question_id":"Q1"}')).status, 202);
  t.deepEqual(fixture.actor.getSnapshot().context.lastEvent, { type: 'human.answered', answer: 'use sqlite', questionId: 'Q1' });
  t.like(fixture.store.questions.list('r1')[0], { id: 'Q1', answer: 'use sqlite', answeredBy: 'api' }, 'kept with its question before the run hears it');
  // One question left open: the answer is taken as its.
  t.deepEqual((await intervene(fixture, '{"action":"answer","answer":"8080"}')).body, { accepted: true, event: { type: 'human.answered', answer: '8080', questionId: 'Q2' } });

  const alerts = fixture.store.alerts.list('r1').filter((alert) => alert.kind === 'intervention');
  t.deepEqual(alerts.map((alert) => [alert.level, alert.message]), [
    ['info', 'skip T2 through the monitoring server: blocked upstream'],
    ['info', 'pause through the monitoring server'],
    ['info', 'answer Q1 through the monitoring server'],
    ['info', 'answer Q2 through the monitoring server'],
  ]);

  const abort = await intervene(fixture, '{"action":"abort","reason":"enough"}');
  t.deepEqual(abort.body, { accepted: true, event: { type: 'run.abort', reason: 'enough' } });
  t.is(fixture.actor.getSnapshot().status, 'done');
  const late = await intervene(fixture, '{"action":"resume"}');
  t.is(late.status, 409, 'a finished run takes no more interventions');
  t.deepEqual(fixture.actor.getSnapshot().context.received, ['task.skip', 'run.pause', 'human.answered', 'human.answered', 'run.abort']);
});

test('approve and reject map to the human events while a plan waits', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  fixture.actor.send({ type: 'test.plan' });
  t.deepEqual((await intervene(fixture, '{"action":"approve"}')).body, { accepted: true, event: { type: 'human.approved' } });
  t.deepEqual(fixture.actor.getSnapshot().value, { implementing: 'working' });
  t.deepEqual((await intervene(fixture, '{"action":"reject"}')).body.event, { type: 'human.rejected', reason: 'rejected through the monitoring server' });
});

test('the WebSocket says hello with state and definitions, then pushes phase, agent and message updates', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const client = await listen(fixture);
  t.teardown(() => client.socket.terminate());
  const hello = await client.waitFor('hello', (message) => message.type === 'hello');
  t.like(hello, { state: { phase: 'clarifying', agents: { moderator: { state: 'idle' } } } });
  t.deepEqual(Object.keys(hello.definitions as object).sort(), ['everThinker', 'moderator', 'monitor', 'orchestrator', 'techlead-1']);

  fixture.actor.send({ type: 'test.advance' });
  t.like(await client.waitFor('phase', (message) => message.type === 'phase'), { phase: 'implementing' });
  t.like(await client.waitFor('message from a person', (message) => message.type === 'message'), {
    message: { from: 'human', to: 'orchestrator', type: 'test.advance' },
  });
  t.like(await client.waitFor('moderator state', (message) => message.type === 'agent' && message.agent === 'moderator'), { state: 'planning', value: 'planning' });
  t.like(await client.waitFor('orchestrator state', (message) => message.type === 'agent' && message.agent === 'orchestrator'), { state: 'implementing.working' });
  t.like(await client.waitFor('inter-agent message', (message) => message.type === 'message' && (message.message as { type: string }).type === 'plan.requested'), {
    message: { from: 'orchestrator', to: 'moderator', type: 'plan.requested', payload: {} },
  });
  t.like(await client.waitFor('inspection', (message) => message.type === 'inspection' && (message.event as { type: string }).type === '@xstate.snapshot'), {
    event: { actorId: 'moderator', value: 'planning' },
  });
  fixture.actor.send({ type: 'test.warn' });
  t.like(await client.waitFor('monitor alerting', (message) => message.type === 'agent' && message.agent === 'monitor'), { state: 'running.alerting' });
  t.like(await client.waitFor('alert', (message) => message.type === 'alert'), { level: 'warning', kind: 'tokens', message: '80% of the tokens used', source: 'monitor' });
});

test('metrics are pushed to WebSocket clients every 2 seconds', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const client = await listen(fixture);
  t.teardown(() => client.socket.terminate());
  const metrics = await eventually('metrics', () => client.messages.find((message) => message.type === 'metrics'), 4000);
  t.like(metrics, { tokens_used: 4700, tasks_total: 3 });
});

test('a client that does not read is dropped and the server stays responsive', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const slow = await listen(fixture);
  t.teardown(() => slow.socket.terminate());
  await slow.waitFor('hello', (message) => message.type === 'hello');
  slow.socket.pause();
  t.is((await getJson(fixture, '/api/health')).body.websocket_clients, 1);

  // About 40 MB of inspection messages, far past what the kernel buffers and the 1 MiB limit hold.
  const data = 'x'.repeat(8000);
  for (let index = 0; index < 5000; index += 1) fixture.actor.send({ type: 'flood', index, data });

  const started = performance.now();
  const health = await getJson(fixture, '/api/health');
  t.is(health.status, 200);
  t.true(performance.now() - started < 1000, 'health answers while the flood is dropped');
  await eventually('the slow client to be dropped', async () => (await getJson(fixture, '/api/health')).body.websocket_clients === 0);
  slow.socket.resume();
  const code = await Promise.race([slow.closed, new Promise((resolve) => setTimeout(() => resolve('still open'), 5000))]);
  t.not(code, 'still open', 'the server closed the connection');

  const fresh = await listen(fixture);
  t.teardown(() => fresh.socket.terminate());
  t.like(await fresh.waitFor('hello', (message) => message.type === 'hello'), { type: 'hello' });
});

test('without WebSocket, /ws is a 404 and everything unknown is a JSON 404', async (t) => {
  const fixture = await startFixture({ enableWebSocket: false });
  t.teardown(() => fixture.close());
  const ws = await getJson(fixture, '/ws');
  t.is(ws.status, 404);
  t.regex(String(ws.body.error), /no such endpoint: GET \/ws/);
  const refused = await t.throwsAsync(openSocket(fixture.url('/ws').replace(/^http/, 'ws')), { instanceOf: UpgradeRefused });
  t.is(refused?.status, 404);
  t.is((await getJson(fixture, '/api/nothing')).status, 404);
  const page = await fetch(fixture.url('/'));
  t.regex(page.headers.get('content-type') ?? '', /text\/html/);
  t.regex(await page.text(), /data-agent/);
});

test('a busy port is a MonitorServerError that says what to do', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const port = Number(new URL(fixture.monitoring.url).port);
  const error = await t.throwsAsync(
    startMonitoring({ store: fixture.store, runId: 'r1', target: fixture.dir, host: '127.0.0.1', port, enableWebSocket: true, logsDir: fixture.logsDir, limits }),
    { instanceOf: MonitorServerError },
  );
  t.is(error?.message, `port ${port} on 127.0.0.1 is in use: set DUO_AGENT_MONITOR_PORT or monitor.port (0 picks a free port)`);
  t.is(error?.code, 'monitor');
});

test('two runs never share a fixed port: the second one is refused', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const free = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const options = { store: fixture.store, runId: 'r1', target: fixture.dir, host: '127.0.0.1', port: free, enableWebSocket: false, logsDir: fixture.logsDir, limits };
  const first = await startMonitoring(options);
  t.teardown(() => first.close());
  await t.throwsAsync(startMonitoring(options), { instanceOf: MonitorServerError, message: /is in use/ });
});

test('a configured token is used as given', async (t) => {
  const fixture = await startFixture({ token: 'a-configured-token-of-enough-length' });
  t.teardown(() => fixture.close());
  t.is(fixture.monitoring.token, 'a-configured-token-of-enough-length');
  t.is((await intervene(fixture, '{"action":"pause"}', 'a-configured-token-of-enough-length')).status, 202);
});

test('on a loopback address, a request naming a foreign host (DNS rebinding) is refused', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const status = (host: string) =>
    new Promise<number>((resolve, reject) => {
      const request = http.get(fixture.url('/api/health'), { headers: { host } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
    });
  t.is(await status('evil.example:8080'), 403);
  t.is(await status('localhost:9000'), 200, 'any port: an SSH tunnel keeps working');
  t.is(await status('127.0.0.1'), 200);
});

test('alerts are served newest first at /api/alerts, count against the health score until a person acknowledges them', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  const first = fixture.store.alerts.add({ runId: 'r1', level: 'warning', kind: 'tokens', message: '80% of the tokens used', source: 'monitor' });
  const second = fixture.store.alerts.add({ runId: 'r1', level: 'critical', kind: 'context', message: 'context at 96% of its limit', source: 'monitor' });
  fixture.store.alerts.add({ runId: 'r0', level: 'critical', kind: 'tokens', message: 'another run' });

  const { body } = await getJson(fixture, '/api/alerts');
  const alerts = body.alerts as { id: number; level: string; kind: string; acknowledged_at: string | null }[];
  t.deepEqual(alerts.map((alert) => [alert.id, alert.level, alert.kind, alert.acknowledged_at]), [[second, 'critical', 'context', null], [first, 'warning', 'tokens', null]]);
  const health = (await getJson(fixture, '/api/health')).body;
  t.like(health, { health_score: 93, health_band: 'healthy', health_lost: { alerts: 7 }, status: 'degraded' });

  t.is((await intervene(fixture, '{"action":"acknowledge","alert_id":999}')).status, 404);
  t.is((await intervene(fixture, '{"action":"acknowledge"}')).status, 400);
  t.deepEqual((await intervene(fixture, JSON.stringify({ action: 'acknowledge', alert_id: second }))).body, { accepted: true, event: { type: 'alert.acknowledged', alertId: second } });
  const after = (await getJson(fixture, '/api/alerts')).body.alerts as { id: number; acknowledged_at: string | null }[];
  t.regex(after.find((alert) => alert.id === second)?.acknowledged_at ?? '', /^\d{4}-\d\d-\d\dT/);
  t.is(after.find((alert) => alert.id === first)?.acknowledged_at, null);
  t.like((await getJson(fixture, '/api/health')).body, { health_score: 98, health_lost: { alerts: 2 } });
  t.like((await getJson(fixture, '/api/metrics')).body, { alerts_open: 1, health_score: 98 });
  t.like(fixture.actor.getSnapshot().context.lastEvent, { type: 'alert.acknowledged', alertId: second });
});

test('the metrics series is served oldest first at /api/metrics/history, the newest `limit` ticks', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  for (const minute of [1, 2, 3]) {
    fixture.store.metrics.record('r1', {
      at: `2026-01-01T00:0${minute}:00.000Z`, runtimeMs: minute * 60_000, tokensUsed: minute * 1000, costUsd: minute / 100, callsSent: minute * 2, callErrors: minute === 3 ? 1 : 0,
      contextTokens: 500 * minute, healthScore: 100 - minute, tasksMerged: minute - 1, tasksTotal: 3, forecastTokens: minute === 1 ? null : 9000, forecastCostUsd: minute === 1 ? null : 0.09,
    });
  }
  const series = (await getJson(fixture, '/api/metrics/history')).body.series as Record<string, unknown>[];
  t.deepEqual(series.map((row) => [row.at, row.tokens_used, row.health_score, row.tasks_completed, row.forecast_tokens_at_finish]), [
    ['2026-01-01T00:01:00.000Z', 1000, 99, 0, null],
    ['2026-01-01T00:02:00.000Z', 2000, 98, 1, 9000],
    ['2026-01-01T00:03:00.000Z', 3000, 97, 2, 9000],
  ]);
  t.like(series[2], { cost_usd: 0.03, tasks_total: 3, context_size: 1500, error_rate: 1 / 6, forecast_cost_at_finish_usd: 0.09 });
  const newest = (await getJson(fixture, '/api/metrics/history?limit=1')).body.series as { at: string }[];
  t.deepEqual(newest.map((row) => row.at), ['2026-01-01T00:03:00.000Z']);
});

test('the clarify questions are the pending question of /api/state, with what is answered', async (t) => {
  const fixture = await startFixture();
  t.teardown(() => fixture.close());
  fixture.store.questions.add('r1', [{ id: 'Q1', text: 'Which database?' }, { id: 'Q2', text: 'Which port?' }]);
  fixture.actor.send({ type: 'test.ask' });
  t.is((await intervene(fixture, '{"action":"answer","answer":"sqlite","question_id":"Q1"}')).status, 202);
  t.like((await getJson(fixture, '/api/state?definitions=0')).body, {
    pending_question: {
      kind: 'clarify',
      actions: ['answer'],
      questions: [{ id: 'Q1', text: 'Which database?', answer: 'sqlite', open: false }, { id: 'Q2', text: 'Which port?', answer: null, open: true }],
    },
  });
});
