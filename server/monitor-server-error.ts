import { ModeratorError } from '../errors.ts';

/** The monitoring server could not start (e.g. its port is taken) or failed while serving. */
export class MonitorServerError extends ModeratorError {
  /** What went wrong, without the advice (`port 8080 on 127.0.0.1 is in use`). */
  readonly problem: string;

  constructor(problem: string, advice: string, options?: { cause?: unknown }) {
    super('monitor', `${problem}: ${advice}`, options);
    this.problem = problem;
  }
}
