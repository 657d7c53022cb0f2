import type { Gauge, Registry } from 'prom-client';
import { isContextZone, zoneRank } from '../services/context/window.ts';
import type { MetricsBody } from './views.ts';

/** The numeric fields of the metrics (a null one, such as a forecast not known yet, is left out of the scrape). */
type Measure = { [K in keyof MetricsBody]: MetricsBody[K] extends number | null ? K : never }[keyof MetricsBody];

const help: Record<Measure, string> = {
  tokens_used: 'Tokens used by every model call of the run (input, output and cache).',
  context_size: 'Input tokens of the largest prompt sent so far.',
  tasks_completed: 'Tasks merged.',
  tasks_total: 'Tasks planned or proposed.',
  prs_merged: 'Pull requests merged.',
  cost_usd: 'Cost of the model calls, in US dollars.',
  error_rate: 'Share of model calls that failed.',
  runtime_seconds: 'Time the run has been running, over every session.',
  improvement_cycle: 'Improvement cycles started by the Ever-Thinker.',
  calls_sent: 'Model calls sent, including failed and interrupted ones.',
  tasks_in_flight: 'Tasks started and not ended: being implemented, in review, waiting to merge or merging.',
  review_queue_length: 'Pull requests waiting for a reviewer.',
  merge_queue_length: 'Approved pull requests waiting to merge, and the one merging.',
  health_score: 'Health of the run, 0-100 (healthy from 80, degraded from 50, critical below).',
  alerts_open: 'Warnings and critical alerts nobody acknowledged.',
  consecutive_errors: 'Model calls of this session that failed one after another.',
  forecast_tokens_at_finish: 'Forecast: tokens the run will have used when the tasks left are done.',
  forecast_cost_at_finish_usd: 'Forecast: cost in US dollars when the tasks left are done.',
  forecast_tokens_to_finish: 'Forecast: tokens still needed for the tasks left.',
  forecast_cost_to_finish_usd: 'Forecast: cost in US dollars still needed for the tasks left.',
  improvement_magnitude: 'Measured magnitude of the latest improvement cycle.',
};

interface Gauges {
  registry: Registry;
  measures: Map<Measure, Gauge<'run_id'>>;
  limit: Gauge<'run_id' | 'limit'>;
  contextTokens: Gauge<'run_id' | 'agent'>;
  contextZone: Gauge<'run_id' | 'agent'>;
}

/** prom-client's text format, the same for every registry. */
const textContentType = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * The run's metrics as Prometheus text, in a registry of its own (not prom-client's global one,
 * so two servers in one process, as in tests, never share gauges). Gauges are set at scrape time.
 * prom-client (with the OpenTelemetry API it loads) is imported at the first scrape: most runs are
 * never scraped, and it was a tenth of a resume's start-up.
 */
export class PrometheusMetrics {
  private gauges: Promise<Gauges> | undefined;

  get contentType(): string {
    return textContentType;
  }

  async render(runId: string, metrics: MetricsBody): Promise<string> {
    const { registry, measures, limit, contextTokens, contextZone } = await (this.gauges ??= createGauges());
    for (const [measure, gauge] of measures) {
      const value = metrics[measure];
      if (value === null) gauge.remove({ run_id: runId });
      else gauge.set({ run_id: runId }, value);
    }
    for (const [agent, context] of Object.entries(metrics.context_by_agent)) {
      contextTokens.set({ run_id: runId, agent }, context.tokens);
      contextZone.set({ run_id: runId, agent }, isContextZone(context.zone) ? zoneRank(context.zone) : 0);
    }
    for (const [name, value] of Object.entries(metrics.limits)) {
      if (value !== null) limit.set({ run_id: runId, limit: name }, value);
    }
    return registry.metrics();
  }
}

async function createGauges(): Promise<Gauges> {
  const { Gauge, Registry } = await import('prom-client');
  const registry = new Registry();
  const measures = new Map<Measure, Gauge<'run_id'>>();
  for (const [measure, text] of Object.entries(help) as [Measure, string][]) {
    measures.set(measure, new Gauge({ name: `moderator_${measure}`, help: text, labelNames: ['run_id'], registers: [registry] }));
  }
  const limit = new Gauge({ name: 'moderator_limit', help: 'Configured limits of the run.', labelNames: ['run_id', 'limit'], registers: [registry] });
  const contextTokens = new Gauge({ name: 'moderator_context_tokens', help: "Prompt tokens of each agent's latest call, counted before it was sent.", labelNames: ['run_id', 'agent'], registers: [registry] });
  const contextZone = new Gauge({ name: 'moderator_context_zone', help: "Context zone of each agent's conversation: 0 ok, 1 summarise (70%), 2 prune (85%), 3 stop (95% of max_context_tokens).", labelNames: ['run_id', 'agent'], registers: [registry] });
  return { registry, measures, limit, contextTokens, contextZone };
}
