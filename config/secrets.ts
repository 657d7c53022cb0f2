import { envValue, type Env } from './env.ts';

/** Credentials, kept apart from Config so that Config can be stored, logged and served. */
export interface Secrets {
  anthropicApiKey?: string;
  openaiApiKey?: string;
  gitToken?: string;
  /** Bearer token for POST /api/intervention, read again on every resume (never stored). */
  monitorToken?: string;
}

/** DUO_AGENT_* first (the seed's names), then the vendors' usual names as a fallback. */
export function readSecrets(env: Env): Secrets {
  const secrets: Secrets = {};
  const anthropicApiKey = firstSet(env, 'DUO_AGENT_API_KEY', 'ANTHROPIC_API_KEY');
  const openaiApiKey = firstSet(env, 'OPENAI_API_KEY');
  const gitToken = firstSet(env, 'DUO_AGENT_GIT_TOKEN', 'GITHUB_TOKEN');
  if (anthropicApiKey !== undefined) secrets.anthropicApiKey = anthropicApiKey;
  if (openaiApiKey !== undefined) secrets.openaiApiKey = openaiApiKey;
  if (gitToken !== undefined) secrets.gitToken = gitToken;
  const monitorToken = firstSet(env, 'DUO_AGENT_MONITOR_TOKEN');
  if (monitorToken !== undefined) secrets.monitorToken = monitorToken;
  return secrets;
}

function firstSet(env: Env, ...names: string[]): string | undefined {
  for (const name of names) {
    // A key pasted with `$(cat key.txt)` carries a newline the APIs would reject.
    const value = envValue(env, name)?.trim();
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

export const REDACTED = '[redacted]';

/** `text` with every occurrence of every secret value replaced by "[redacted]". */
export function redact(text: string, secrets: Secrets): string {
  const values = [secrets.anthropicApiKey, secrets.openaiApiKey, secrets.gitToken, secrets.monitorToken]
    .filter((value): value is string => value !== undefined && value !== '')
    // Longest first, so a secret that contains another is not left half-visible.
    .sort((a, b) => b.length - a.length);
  let out = text;
  for (const value of values) out = out.split(value).join(REDACTED);
  return out;
}

const SECRET_NAMES = new Set([
  'DUO_AGENT_API_KEY',
  'DUO_AGENT_GIT_TOKEN',
  'DUO_AGENT_MONITOR_TOKEN',
  'OPENAI_API_KEY',
  'ANTHROPIC_API_KEY',
  'GITHUB_TOKEN',
  'ANTHROPIC_AUTH_TOKEN',
]);
const SECRET_SUFFIX = /_(?:API_KEY|TOKEN|SECRET|PASSWORD|ACCESS_KEY|PRIVATE_KEY)$/i;
/** A parent `node --test` or tsx loader must not leak into the target's own test run. */
const NODE_RUNTIME = new Set(['NODE_OPTIONS', 'NODE_TEST_CONTEXT']);
/** What any program needs to run at all: where programs are, the user, language and terminal. */
const BASE_NAMES = new Set(['PATH', 'HOME', 'LANG', 'TZ', 'TERM', 'USER', 'LOGNAME', 'TMPDIR']);
const LOCALE_NAME = /^LC_[A-Z]+$/;

/**
 * Names that can never be passed to the target's commands, even when declared in
 * `project.pass_env`: Moderator's credentials, anything named like one, and Node runtime options.
 */
export function isWithheldName(name: string): boolean {
  const upper = name.toUpperCase();
  return SECRET_NAMES.has(upper) || SECRET_SUFFIX.test(name) || NODE_RUNTIME.has(upper);
}

/**
 * The environment for a target's test and setup commands and the TechLead's run_command: an
 * allow-list, since the target's code is not ours. PATH, HOME, LANG, LC_*, TZ, TERM, USER,
 * LOGNAME and TMPDIR, plus the variables the project declares (`project.pass_env`); never a
 * credential or a Node runtime option of the Moderator process, declared or not. Anything else
 * this process has (a DATABASE_URL with a password, AWS keys, ...) stays out.
 */
export function childProcessEnv(env: Env, passEnv: readonly string[] = []): Record<string, string> {
  const declared = new Set(passEnv);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || isWithheldName(name)) continue;
    if (BASE_NAMES.has(name) || LOCALE_NAME.test(name) || declared.has(name)) out[name] = value;
  }
  return out;
}

/**
 * The environment of Moderator's own git processes: PATH and HOME (for the user's global
 * config, of which the git runner overrides what matters). Without LANG git speaks its untranslated
 * messages, which the one-line errors quote.
 */
export function gitEnv(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['PATH', 'HOME'] as const) {
    const value = env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
