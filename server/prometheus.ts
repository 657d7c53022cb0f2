import { Gauge, Registry } from 'prom-client';
import type { MetricsBody } from './views.ts';

type Measure = Exclude<keyof MetricsBody, 'limits'>;

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
};

/**
 * The run's metrics as Prometheus text, in a registry of its own (not prom-client's global one,
 * so two servers in one process, as in tests, never share gauges). Gauges are set at scrape time.
 */
export class PrometheusMetrics {
  private readonly registry = new Registry();
  private readonly gauges = new Map<Measure, Gauge<'run_id'>>();
  private readonly limit: Gauge<'run_id' | 'limit'>;

  constructor() {
    for (const [measure, text] of Object.entries(help) as [Measure, string][]) {
      this.gauges.set(measure, new Gauge({ name: `moderator_${measure}`, help: text, labelNames: ['run_id'], registers: [this.registry] }));
    }
    this.limit = new Gauge({ name: 'moderator_limit', help: 'Configured limits of the run.', labelNames: ['run_id', 'limit'], registers: [this.registry] });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(runId: string, metrics: MetricsBody): Promise<string> {
    for (const [measure, gauge] of this.gauges) gauge.set({ run_id: runId }, metrics[measure]);
    for (const [limit, value] of Object.entries(metrics.limits)) {
      if (value !== null) this.limit.set({ run_id: runId, limit }, value);
    }
    return this.registry.metrics();
  }
}
