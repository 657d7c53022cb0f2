import fs from 'node:fs';
import uWS from 'uWebSockets.js';
import { isLoopbackPeer, type AccessPolicy, type AccessRequest } from './access.ts';
import { bearerMatches } from './auth.ts';
import { errorReply, jsonReply, readBody, reply, replyLater, type Reply } from './http.ts';
import type { ClientData, Hub } from './hub.ts';
import { interventionEvent, interventionNote, parseIntervention, type Intervention } from './intervention.ts';
import { LogQueryError, parseLimit, readLogs, type LogQuery } from './logs.ts';
import type { PrometheusMetrics } from './prometheus.ts';
import { alertsView, healthView, metricsHistoryView, metricsView, runsView, stateView, tasksView, type ViewContext } from './views.ts';

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
  app.get('/api/metrics/history', (res, req) => {
    const limit = Number.parseInt(query(req).get('limit') ?? '', 10);
    reply(res, () => jsonReply(200, metricsHistoryView(context, Number.isInteger(limit) && limit > 0 ? limit : 10_080)));
  });
  app.get('/api/alerts', (res) => reply(res, () => jsonReply(200, alertsView(context))));
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

/**
 * An answer names an open question (or the only one open), and is kept with it before the
 * orchestrator hears it, so the plan that follows sees it. A budget question takes `continue` or
 * `stop`. Returns the intervention to send, or why not.
 */
function resolveAnswer(options: AppOptions, answer: Extract<Intervention, { action: 'answer' }>): { ok: true; value: Intervention } | { ok: false; reply: Reply } {
  const { live, store, runId } = options.context;
  const context = live.rootContext() as { asking?: { kind?: string; ids?: string[]; answered?: string[] } | null } | undefined;
  const asking = context?.asking;
  const open = (asking?.ids ?? []).filter((id) => !(asking?.answered ?? []).includes(id));
  if (open.length === 0) return { ok: false, reply: errorReply(409, `run ${runId} asks no question now: nothing to answer`) };
  const questionId = answer.question_id ?? (open.length === 1 ? open[0] : undefined);
  if (questionId === undefined) return { ok: false, reply: errorReply(400, `question_id: required while ${open.length} questions are open (${open.join(', ')})`) };
  if (!open.includes(questionId)) return { ok: false, reply: errorReply(409, `question ${questionId} is not open (open: ${open.join(', ')})`) };
  if (asking?.kind === 'budget') {
    if (!['continue', 'stop'].includes(answer.answer.trim().toLowerCase())) return { ok: false, reply: errorReply(400, 'answer: the budget question takes "continue" or "stop"') };
    return { ok: true, value: { ...answer, question_id: questionId, answer: answer.answer.trim().toLowerCase() } };
  }
  if (!store.questions.answer(runId, questionId, answer.answer, 'api')) return { ok: false, reply: errorReply(409, `question ${questionId} was answered already`) };
  return { ok: true, value: { ...answer, question_id: questionId } };
}

function intervene(options: AppOptions, body: Buffer | null): Reply {
  if (body === null) return errorReply(413, `the body is larger than ${maxBodyBytes} bytes`);
  const parsed = parseIntervention(body);
  if (!parsed.ok) return errorReply(400, parsed.reason);
  const { live, store, runId } = options.context;
  const root = live.attached;
  if (!root || !live.isLive()) return errorReply(409, `run ${runId} is not live (${live.rootStatus()}): nothing to intervene in`);
  let intervention = parsed.value;
  if (intervention.action === 'answer') {
    const resolved = resolveAnswer(options, intervention);
    if (!resolved.ok) return resolved.reply;
    intervention = resolved.value;
  }
  if (intervention.action === 'acknowledge' && !store.alerts.acknowledge(runId, intervention.alert_id)) {
    return errorReply(404, `run ${runId} has no alert #${intervention.alert_id} (see GET /api/alerts)`);
  }
  const event = interventionEvent(intervention);
  const message = interventionNote(intervention);
  store.alerts.add({ runId, level: 'info', kind: 'intervention', message });
  options.hub.publish({ type: 'alert', level: 'info', kind: 'intervention', message, source: 'human' });
  root.send(event);
  return jsonReply(202, { accepted: true, event });
}
