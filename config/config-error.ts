import { ModeratorError } from '../errors.ts';

/** One problem with one input, already phrased for a person. */
export interface ConfigIssue {
  /** Where the value came from: a file label, an environment variable, a flag, "defaults". */
  readonly source: string;
  /** Dotted field path, e.g. "limits.max_error_rate"; empty when the problem is the whole input. */
  readonly field: string;
  /** "expected ..., found ..." or "unknown field ...", without source and field. */
  readonly problem: string;
  /** `source: field: problem`, one line; without the field when the source names it already. */
  readonly message: string;
}

/** `sourceNamesField`: an environment variable or a flag stands for exactly one field. */
export function configIssue(source: string, field: string, problem: string, sourceNamesField = false): ConfigIssue {
  const message = field === '' || sourceNamesField ? `${source}: ${problem}` : `${source}: ${field}: ${problem}`;
  return { source, field, problem, message };
}

/**
 * Any bad configuration input: file, environment variable, flag, stored run settings.
 * The CLI prints `message` (the first issue, one line) and exits with status 2; `issues`
 * keeps every problem found so a caller can list them all.
 */
export class ConfigError extends ModeratorError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly [ConfigIssue, ...ConfigIssue[]], options?: { cause?: unknown }) {
    const others = issues.length - 1;
    const more = others === 0 ? '' : ` (and ${others} more ${others === 1 ? 'problem' : 'problems'})`;
    super('config', issues[0].message + more, options);
    this.issues = issues;
  }

  /** A ConfigError with a single issue. */
  static of(source: string, field: string, problem: string, options?: { cause?: unknown }): ConfigError {
    return new ConfigError([configIssue(source, field, problem)], options);
  }
}
