import Bottleneck from 'bottleneck';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import { messageOf } from '../../errors.ts';
import { PrError } from './pr-error.ts';

/** GitHub's quota as its last answer reported it (x-ratelimit-* headers). */
export interface RateLimitStatus {
  /** `core` for the REST API. */
  resource: string;
  limit: number;
  remaining: number;
  used: number;
  /** When the window resets, ISO time. */
  resetAt: string;
  /** When the answer carrying these figures arrived, ISO time. */
  observedAt: string;
}

export interface GitHubClientOptions {
  /** The REST API's root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
  baseUrl: string;
  token: string;
  /** Spacing of writes (POST, PATCH, PUT, DELETE), in ms; GitHub asks integrations for 1 s. 0: none. */
  writeSpacingMs: number;
  /** Extra spacing of writes that notify people (PRs, reviews, comments, merges), in ms. 0: none. */
  notificationSpacingMs: number;
  /** A spent rate limit is waited for when it resets within this many seconds; later, the request fails. */
  rateLimitWaitSeconds: number;
  /**
   * Milliseconds per second of every wait the plugins derive from `retry-after`, `x-ratelimit-reset`
   * and their own backoff (1, 4, 9 s). Default 1000; tests shrink the waits with it.
   */
  retryAfterBaseValue?: number;
  /** Retries of 5xx answers and network failures (plugin-retry), default 3. */
  retries?: number;
  /** Warnings (limits hit, waits) and a debug line per request; never given the request options, which hold the token. */
  log?: { warn: (line: string) => void; debug: (line: string) => void };
}

/** The statuses plugin-retry must not repeat: its default list, plus 405 and 409, which no retry changes (FACTS.md). */
const DO_NOT_RETRY = [400, 401, 403, 404, 405, 409, 410, 422, 451];

const ThrottledOctokit = Octokit.plugin(throttling, retry);

export type GitHubOctokit = InstanceType<typeof ThrottledOctokit>;

interface HttpFailure {
  status: number;
  message: string;
  response?: { headers: Record<string, string | number | undefined>; data?: unknown } | undefined;
}

/** Octokit's RequestError, told by shape: its class lives in a package this project does not depend on directly. */
export function isHttpFailure(error: unknown): error is HttpFailure {
  return error instanceof Error && typeof (error as { status?: unknown }).status === 'number';
}

function header(headers: Record<string, string | number | undefined> | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return value === undefined ? undefined : String(value);
}

/**
 * Octokit with the throttling and retry plugins, set up for an unattended run: writes spaced as
 * GitHub asks, primary and secondary rate limits waited out when the wait is bounded, 5xx and
 * network failures retried with backoff, and the quota of the last answer kept for the metrics.
 */
export class GitHubClient {
  readonly octokit: GitHubOctokit;
  readonly baseUrl: string;
  private quota: RateLimitStatus | null = null;

  constructor(options: GitHubClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    const log = options.log ?? { warn: () => {}, debug: () => {} };
    const base = options.retryAfterBaseValue ?? 1000;
    const waitable = (what: string) => (retryAfter: number, request: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
      const wait = retryAfter <= options.rateLimitWaitSeconds && retryCount < 3;
      log.warn(`GitHub ${what} on ${request.method} ${request.url}: ${wait ? `waiting ${retryAfter} s, then retrying` : `the wait of ${retryAfter} s is longer than git.rate_limit_wait_seconds (${options.rateLimitWaitSeconds}); giving up`}`);
      return wait;
    };
    this.octokit = new ThrottledOctokit({
      baseUrl: this.baseUrl,
      auth: options.token,
      userAgent: 'moderator',
      // The request-log plugin's debug line carries the request options (headers included): only its text is kept.
      log: { debug: (line: string) => log.debug(line), info: (line: string) => log.debug(line), warn: (line: string) => log.warn(line), error: (line: string) => log.debug(line) },
      throttle: {
        onRateLimit: waitable('rate limit'),
        onSecondaryRateLimit: waitable('secondary rate limit'),
        retryAfterBaseValue: base,
        // The plugin's own groups space writes 1 s and notifying writes 3 s, fixed; these carry the configured spacing.
        write: new Bottleneck.Group({ maxConcurrent: 1, minTime: options.writeSpacingMs }),
        notifications: new Bottleneck.Group({ maxConcurrent: 1, minTime: options.notificationSpacingMs }),
      },
      retry: { doNotRetry: DO_NOT_RETRY, retries: options.retries ?? 3, retryAfterBaseValue: base },
    });
    this.octokit.hook.after('request', (response) => this.observe(response.headers as Record<string, string | number | undefined>));
    this.octokit.hook.error('request', (error) => {
      if (isHttpFailure(error)) this.observe(error.response?.headers);
      throw error;
    });
  }

  /** The quota GitHub reported last, or null before the first answer (or from a server without limits). */
  rateLimit(): RateLimitStatus | null {
    return this.quota;
  }

  /**
   * The PrError for a failed request, its message saying what failed and what to do; GitHub's
   * own words are quoted, never the request (which holds the token).
   */
  failure(what: string, error: unknown): PrError {
    if (error instanceof PrError) return error;
    if (!isHttpFailure(error)) return new PrError('pr_api', `${what} failed: ${messageOf(error)}`, { cause: error });
    const said = githubMessage(error);
    const options = { cause: error, status: error.status };
    const headers = error.response?.headers;
    if (!error.response) return new PrError('pr_api', `${what}: cannot reach GitHub at ${this.baseUrl} (${said}); check git.api_url and the network`, options);
    switch (error.status) {
      case 401:
        return new PrError('pr_auth', `${what}: GitHub refused the token (401 ${said}): set a valid DUO_AGENT_GIT_TOKEN`, options);
      case 403:
      case 429: {
        if (header(headers, 'x-ratelimit-remaining') === '0') {
          const reset = new Date(Number(header(headers, 'x-ratelimit-reset') ?? 0) * 1000).toISOString();
          return new PrError('pr_rate_limited', `${what}: GitHub's rate limit is spent until ${reset}: resume the run after that`, options);
        }
        if (/secondary rate limit/i.test(said) || header(headers, 'retry-after') !== undefined) {
          return new PrError('pr_rate_limited', `${what}: GitHub's secondary rate limit (${said}): resume the run in a few minutes`, options);
        }
        return new PrError('pr_auth', `${what}: GitHub refused it (403 ${said}): the token needs write access to contents and pull requests`, options);
      }
      case 404:
        return new PrError('pr_not_found', `${what}: GitHub answered 404 (${said}): check git.repository, and that the token can see it`, options);
      case 405:
        return new PrError('pr_not_mergeable', `${what}: GitHub refused (405 ${said}): finish the PR on GitHub by hand`, options);
      case 409:
        return new PrError('pr_head_changed', `${what}: GitHub refused (409 ${said}): someone pushed to the branch; look at the PR`, options);
      case 422:
        return new PrError('pr_invalid', `${what}: GitHub refused (422 ${said})`, options);
      default:
        return new PrError('pr_api', `${what}: GitHub answered ${error.status} (${said})`, options);
    }
  }

  private observe(headers: Record<string, string | number | undefined> | undefined): void {
    const limit = header(headers, 'x-ratelimit-limit');
    const remaining = header(headers, 'x-ratelimit-remaining');
    const reset = header(headers, 'x-ratelimit-reset');
    if (limit === undefined || remaining === undefined || reset === undefined) return;
    this.quota = {
      resource: header(headers, 'x-ratelimit-resource') ?? 'core',
      limit: Number(limit),
      remaining: Number(remaining),
      used: Number(header(headers, 'x-ratelimit-used') ?? Number(limit) - Number(remaining)),
      resetAt: new Date(Number(reset) * 1000).toISOString(),
      observedAt: new Date().toISOString(),
    };
  }
}

/** GitHub's message and the details of its `errors` list, in one line. */
export function githubMessage(error: HttpFailure): string {
  const data = error.response?.data as { message?: unknown; errors?: unknown } | undefined;
  const message = typeof data?.message === 'string' ? data.message : error.message;
  const details = Array.isArray(data?.errors)
    ? data.errors.map((entry: unknown) => (typeof entry === 'string' ? entry : typeof (entry as { message?: unknown })?.message === 'string' ? String((entry as { message: string }).message) : '')).filter((text) => text !== '')
    : [];
  return [message, ...details].join(': ').replace(/\s+/g, ' ').trim();
}
