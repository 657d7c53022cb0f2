import type { AnyActorRef, InspectionEvent } from 'xstate';
import { RunView } from '../services/store/run-view.ts';
import type { Store } from '../services/store/store.ts';
import { AccessPolicy } from './access.ts';
import { generateToken } from './auth.ts';
import { Hub } from './hub.ts';
import { LiveState } from './live-state.ts';
import { listen } from './listen.ts';
import { PrometheusMetrics } from './prometheus.ts';
import { createApp } from './routes.ts';
import { metricsView, type Limits, type ViewContext } from './views.ts';

export { MonitorServerError } from './monitor-server-error.ts';
export type { ChartNode, ChartTransition } from './chart.ts';

export interface MonitoringOptions {
  store: Store;
  runId: string;
  target: string;
  /** Interface to listen on; the config's `monitor.host`, 127.0.0.1 by default. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  enableWebSocket: boolean;
  /**
   * Bearer token for `POST /api/intervention`, and for requests from other machines when `host`
   * is not a loopback address; a random one per run when not configured.
   */
  token?: string;
  /** `<target>/.duo-agent/logs`, the pino files `<agent>.jsonl`. */
  logsDir: string;
  limits: Limits;
  /** Push the Monitor's alerts on the live feed (`live` in `agents.monitor.alert_channels`); default true. They are stored and served at /api/alerts either way. */
  liveAlerts?: boolean;
  now?: () => number;
}

export interface Monitoring {
  /** `http://host:port/`, with the port actually bound. */
  url: string;
  token: string;
  /**
   * Set when the server listens on an address other machines can reach (e.g. `0.0.0.0`): a line
   * for the person running it, saying so and how to open the dashboard with the token.
   */
  exposure: string | undefined;
  /** For the actor system's `inspect` option: every inspection event. Cheap; never throws. */
  observe(event: InspectionEvent): void;
  /** The root actor: interventions are sent to it. */
  attach(root: AnyActorRef): void;
  close(): Promise<void>;
}

/** A client whose unsent messages pass this is closed rather than let memory grow. */
const maxBufferedBytes = 1024 * 1024;
const metricsIntervalMs = 2000;

/**
 * Starts the monitoring server of one run (uWebSockets.js): JSON API, Prometheus text, the
 * WebSocket feed and the dashboard. It answers from memory: the run's rows from a view the
 * store's writes keep current, its live state from inspection events; it never makes the run wait.
 */
export async function startMonitoring(options: MonitoringOptions): Promise<Monitoring> {
  const now = options.now ?? Date.now;
  const token = options.token ?? generateToken();
  const hub = new Hub(maxBufferedBytes);
  const liveAlerts = options.liveAlerts ?? true;
  const live = new LiveState(
    (message) => {
      if (message.type === 'alert' && message.source === 'monitor' && !liveAlerts) return;
      hub.publish(message);
    },
    () => hub.size > 0,
  );
  // Seeded now (a resumed run has history), then kept current by the store's change reports.
  const view = new RunView(options.store, options.runId);
  const context: ViewContext = {
    store: options.store,
    view,
    runId: options.runId,
    target: options.target,
    live,
    limits: options.limits,
    startedAt: now(),
    now,
    websocketClients: () => hub.size,
  };
  const access = new AccessPolicy(options.host, token);
  const app = createApp({ context, access, hub, token, logsDir: options.logsDir, enableWebSocket: options.enableWebSocket, prometheus: new PrometheusMetrics() });
  const listening = await listen(app, options.host, options.port).catch((error: unknown) => {
    view.close();
    throw error;
  });
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${listening.port}/`;

  const metricsTimer = setInterval(() => {
    if (hub.size === 0) return;
    try {
      hub.publish({ type: 'metrics', ...metricsView(context) });
    } catch {
      // A store closed under a finishing run: the next request reports it.
    }
  }, metricsIntervalMs);
  metricsTimer.unref();

  let closed = false;
  return {
    url,
    token,
    exposure: access.exposed
      ? `the monitoring server listens on ${options.host}, which is not a loopback address: it is reachable from the network, and every request from another machine needs the token; ` +
        `open ${url}?token=${options.token ? '<monitor.token>' : token}`
      : undefined,
    observe(event) {
      if (closed) return;
      try {
        live.observe(event);
      } catch {
        // Never let monitoring break the actor system: a throwing inspector aborts actor.start().
      }
    },
    attach(root) {
      live.attach(root);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(metricsTimer);
      hub.closeAll();
      view.close();
      await listening.close();
    },
  };
}

export type { Limits };
