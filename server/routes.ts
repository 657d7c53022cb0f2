import fs from 'node:fs';
import uWS from 'uWebSockets.js';
import { isLoopbackPeer, type AccessPolicy, type AccessRequest } from './access.ts';
import { bearerMatches } from './auth.ts';
import { errorReply, jsonReply, readBody, reply, replyLater, type Reply } from './http.ts';
import type { ClientData, Hub } from './hub.ts';
import { interventionEvent, interventionNote, parseIntervention } from './intervention.ts';
import { LogQueryError, parseLimit, readLogs, type LogQuery } from './logs.ts';
import type { PrometheusMetrics } from './prometheus.ts';
import { healthView, metricsView, runsView, stateView, tasksView, type ViewContext } from './views.ts';

export interface AppOptions {
  context: ViewContext;
  /** Who may use the server (host names, origins, the token off loopback). */
  access: AccessPolicy;
  hub: Hub;
  token: string;
  logsDir: string;
  enableWebSocket: boolean;
  prometheus: PrometheusMetrics;
}

const maxBodyBytes = 64 * 1024;
const dashboard = fs.readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8');

const query = (req: uWS.HttpRequest): URLSearchParams => new URLSearchParams(req.getQuery() ?? '');

type Handler = (res: uWS.HttpResponse, req: uWS.HttpRequest) => void;

const accessRequest = (res: uWS.HttpResponse, req: uWS.HttpRequest): AccessRequest => ({
  host: req.getHeader('host'),
  origin: req.getHeader('origin'),
  authorization: req.getHeader('authorization'),
  query: req.getQuery() ?? '',
  fromLoopback: isLoopbackPeer(new Uint8Array(res.getRemoteAddress())),
});

/** The routes of the monitoring server. Handlers read what they need from `req` before any await (uWS rule). */
export function createApp(options: AppOptions): uWS.TemplatedApp {
  const { context, hub, prometheus, access } = options;
  const uwsApp = uWS.App();
  const guard =
    (handler: Handler): Handler =>
    (res, req) => {
      const refused = access.refusal(accessRequest(res, req));
      if (refused) reply(res, () => refused);
      else handler(res, req);
    };
  const app = {
    get: (pattern: string, handler: Handler) => uwsApp.get(pattern, guard(handler)),
    post: (pattern: string, handler: Handler) => uwsApp.post(pattern, guard(handler)),
    any: (pattern: string, handler: Handler) => uwsApp.any(pattern, guard(handler)),
  };
  const prometheusText = (): Promise<Reply> =>
    prometheus.render(context.runId, metricsView(context)).then((body) => ({ status: 200, body, contentType: prometheus.contentType }));

  app.get('/', (res) => reply(res, () => ({ status: 200, body: dashboard, contentType: 'text/html; charset=utf-8' })));
  app.get('/api/health', (res) => reply(res, () => jsonReply(200, healthView(context))));
  app.get('/api/metrics', (res, req) => {
    if (req.getHeader('accept').includes('text/plain')) replyLater(res, prometheusText);
    else reply(res, () => jsonReply(200, metricsView(context)));
  });
  app.get('/metrics', (res) => replyLater(res, prometheusText));
  app.get('/api/state', (res, req) => {
    const withDefinitions = query(req).get('definitions') !== '0';
    reply(res, () => jsonReply(200, stateView(context, withDefinitions)));
  });
  app.get('/api/tasks', (res) => reply(res, () => jsonReply(200, tasksView(context))));
  app.get('/api/runs', (res) => reply(res, () => jsonReply(200, runsView(context))));
  app.get('/api/logs', (res, req) => {
    const params = query(req);
    reply(res, () => logs(options, params));
  });
  app.post('/api/intervention', (res, req) => {
    if (!bearerMatches(req.getHeader('authorization'), options.token)) {
      reply(res, () => errorReply(401, 'missing or wrong token: send the header Authorization: Bearer <token> that the run printed'));
      return;
    }
    replyLater(res, async () => intervene(options, await readBody(res, maxBodyBytes)));
  });
  if (options.enableWebSocket) {
    uwsApp.ws<ClientData>('/ws', {
      compression: uWS.DISABLED,
      maxPayloadLength: 16 * 1024,
      idleTimeout: 120,
      // Above the hub's own limit, so the hub closes a slow client before uWS silently drops messages.
      maxBackpressure: 4 * 1024 * 1024,
      upgrade: (res, req, upgradeContext) => {
        const refused = access.refusal(accessRequest(res, req));
        if (refused) {
          reply(res, () => refused);
          return;
        }
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        res.upgrade<ClientData>({ open: false }, key, protocol, extensions, upgradeContext);
      },
      open: (ws) => {
        ws.getUserData().open = true;
        hub.add(ws);
        try {
          hub.sendTo(ws, { type: 'hello', state: stateView(context, false), definitions: context.live.definitions });
        } catch {
          // An exception out of a uWS callback would end the process, and with it the run.
          hub.remove(ws);
          ws.end(1011, 'state unavailable');
        }
      },
      close: (ws) => hub.remove(ws),
    });
  }
  app.any('/*', (res, req) => {
    const where = `${req.getMethod().toUpperCase()} ${req.getUrl()}`;
    reply(res, () => errorReply(404, `no such endpoint: ${where}`));
  });
  return uwsApp;
}

function logs(options: AppOptions, params: URLSearchParams): Reply {
  try {
    const limitText = params.get('limit');
    const logQuery: LogQuery = limitText === null ? {} : { limit: parseLimit(limitText) };
    for (const key of ['agent', 'level', 'task', 'cursor', 'run'] as const) {
      const value = params.get(key);
      if (value) logQuery[key] = value;
    }
    return jsonReply(200, readLogs(options.logsDir, options.context.runId, logQuery));
  } catch (error) {
    if (error instanceof LogQueryError) return errorReply(400, error.message);
    throw error;
  }
}

function intervene(options: AppOptions, body: Buffer | null): Reply {
  if (body === null) return errorReply(413, `the body is larger than ${maxBodyBytes} bytes`);
  const parsed = parseIntervention(body);
  if (!parsed.ok) return errorReply(400, parsed.reason);
  const { live, store, runId } = options.context;
  const root = live.attached;
  if (!root || !live.isLive()) return errorReply(409, `run ${runId} is not live (${live.rootStatus()}): nothing to intervene in`);
  const event = interventionEvent(parsed.value);
  const message = interventionNote(parsed.value);
  store.addAlert({ runId, level: 'info', kind: 'intervention', message });
  options.hub.publish({ type: 'alert', level: 'info', kind: 'intervention', message, source: 'human' });
  root.send(event);
  return jsonReply(202, { accepted: true, event });
}
