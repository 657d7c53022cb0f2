import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * One pino JSON log per agent under `<dir>/<agent>.jsonl`, every line bound to the run.
 * Writes are synchronous: logs are few, and the lines before a kill -9 are the ones that matter.
 */
export class AgentLogs {
  private readonly loggers = new Map<string, Logger>();
  private readonly destinations: pino.DestinationStream[] = [];

  constructor(private readonly options: { dir: string; runId: string; level: string }) {
    fs.mkdirSync(options.dir, { recursive: true });
  }

  for(agent: string): Logger {
    let logger = this.loggers.get(agent);
    if (!logger) {
      const destination = pino.destination({ dest: path.join(this.options.dir, `${agent}.jsonl`), sync: true, mkdir: true });
      this.destinations.push(destination);
      logger = pino({ level: this.options.level, base: { runId: this.options.runId, agent } }, destination);
      this.loggers.set(agent, logger);
    }
    return logger;
  }
}
