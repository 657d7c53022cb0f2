import type { Gauge, Registry } from 'prom-client';
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
    const { registry, measures, limit } = await (this.gauges ??= createGauges());
    for (const [measure, gauge] of measures) {
      const value = metrics[measure];
      if (value === null) gauge.remove({ run_id: runId });
      else gauge.set({ run_id: runId }, value);
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
  return { registry, measures, limit };
}
