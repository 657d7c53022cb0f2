import { ModeratorError } from '../errors.ts';

/** The monitoring server could not start (e.g. its port is taken) or failed while serving. */
export class MonitorServerError extends ModeratorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('monitor', message, options);
  }
}
