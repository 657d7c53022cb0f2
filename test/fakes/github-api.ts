/**
 * A loopback fake of the GitHub REST endpoints Moderator uses, backed by a real bare repository
 * on disk: pushes land there (directly, or through `git http-backend` over HTTP with the same
 * token check GitHub makes), mergeability is computed with `git merge-tree`, and a merge writes
 * a real merge commit on the base branch. Status codes, headers (x-ratelimit-*, retry-after,
 * x-oauth-scopes) and bodies follow GitHub's documentation, including its refusals: 401, 403
 * rate limits, 404, 405, 409 and 422.
 */
import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { RecordedRequest } from './http-fake.ts';

export interface FakeGitHubOptions {
  owner: string;
  repo: string;
  /** The repository's git data: a bare repository (the base branch must exist there to open PRs). */
  bare: string;
  token: string;
  /** The login the token belongs to; PRs it opens are its own (so it cannot approve them). */
  login?: string;
  /** A classic token's scopes (x-oauth-scopes); undefined: a fine-grained token, no such header. */
  scopes?: string[] | undefined;
  permissions?: { admin: boolean; push: boolean; pull: boolean };
  private?: boolean;
  defaultBranch?: string;
  /** mergeable is null on the first read after the head or the base moved, as GitHub computes it lazily. */
  lazyMergeable?: boolean;
  /** Serve git's smart HTTP at /<owner>/<repo>.git through `git http-backend`, asking for the token. */
  gitHttp?: boolean;
}

export interface FakePull {
  number: number;
  title: string;
  body: string;
  head: string;
  base: string;
  headSha: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergeCommitSha: string | null;
  author: string;
  createdAt: string;
  mergedAt: string | null;
  closedAt: string | null;
  /** `${base}:${head}` shas mergeability was computed for (lazyMergeable). */
  computedFor: string | null;
}

export interface FakeReview {
  id: number;
  pull: number;
  event: string;
  body: string;
  author: string;
}

/** A canned answer for the next matching request(s). */
export interface Fault {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface Match {
  method: string;
  path: RegExp;
}

export interface FakeGitHub {
  /** `http://127.0.0.1:<port>`: the API's base URL. */
  url: string;
  /** The git remote over HTTP (with gitHttp). */
  gitUrl: string;
  requests: RecordedRequest[];
  pulls: FakePull[];
  reviews: FakeReview[];
  /** Merges the fake performed (each one a merge commit on the base). */
  merges: { pull: number; sha: string }[];
  /** Git HTTP requests and whether they carried the right token. */
  gitRequests: { path: string; authorized: boolean }[];
  /** The next `times` requests matching answer `fault` instead (GitHub's refusals, rate limits). */
  fault(match: Match, fault: Fault, times?: number): void;
  /**
   * The next matching request is held and never answered, as if the connection died with the
   * client; with `apply` its effect happens first (the PR is opened, the merge made). Poll
   * `arrived()` to kill the client at that moment.
   */
  hold(match: Match, options: { apply: boolean }): { arrived: () => boolean };
  /** The next `looks` reads of any PR see required checks pending (mergeable_state "blocked"); Infinity: until changed. */
  checksPendingFor(looks: number): void;
  close(): Promise<void>;
}

const DOCS = 'https://docs.github.com/rest';

/** GitHub's standard refusals, as its API words them. */
export const githubFaults = {
  /** A spent primary rate limit: 403 with x-ratelimit-remaining 0 and the reset time. */
  rateLimited: (resetInSeconds: number): Fault => ({
    status: 403,
    body: { message: 'API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID ABCD:1234.', documentation_url: `${DOCS}/overview/rate-limits-for-the-rest-api` },
    headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + resetInSeconds), 'x-ratelimit-used': '5000' },
  }),
  secondaryRateLimited: (retryAfterSeconds: number): Fault => ({
    status: 403,
    body: { message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID ABCD:1234.', documentation_url: `${DOCS}/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits` },
    headers: { 'retry-after': String(retryAfterSeconds) },
  }),
  notMergeable: (): Fault => ({ status: 405, body: { message: 'Pull Request is not mergeable', documentation_url: `${DOCS}/pulls/pulls#merge-a-pull-request` } }),
  headModified: (): Fault => ({ status: 409, body: { message: 'Head branch was modified. Review and try the merge again.', documentation_url: `${DOCS}/pulls/pulls#merge-a-pull-request` } }),
  serverError: (): Fault => ({ status: 502, body: { message: 'Server Error' } }),
};

/** git in the bare repository, without blocking: the fake shares its process with the tests and the CLIs they watch. */
function git(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, encoding: 'utf8', env: { ...process.env, ...env } }, (error, stdout) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 128) : 0, out: stdout });
    });
  });
}

export async function startFakeGitHub(options: FakeGitHubOptions): Promise<FakeGitHub> {
  const { owner, repo, bare } = options;
  const login = options.login ?? 'moderator-bot';
  const defaultBranch = options.defaultBranch ?? 'main';
  const requests: RecordedRequest[] = [];
  const pulls: FakePull[] = [];
  const reviews: FakeReview[] = [];
  const merges: { pull: number; sha: string }[] = [];
  const gitRequests: { path: string; authorized: boolean }[] = [];
  const faults: { match: Match; fault: Fault; left: number }[] = [];
  const holds: { match: Match; apply: boolean; arrived: boolean }[] = [];
  let pendingLooks = 0;
  // Issues and PRs share numbers on GitHub: the repository's first PR is rarely #1.
  let nextNumber = 7;
  let nextReviewId = 100;
  const quota = { limit: 5000, remaining: 5000, reset: Math.floor(Date.now() / 1000) + 3600 };
  // One request at a time changes the state, as on GitHub: two racing POSTs cannot both open a PR.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };
  let baseUrl = '';

  const refSha = async (branch: string): Promise<string | null> => {
    const result = await git(bare, ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]);
    return result.code === 0 ? result.out.trim() : null;
  };

  /** GitHub moves a PR's head when its branch is pushed. */
  const refresh = async (pull: FakePull) => {
    if (pull.state !== 'open') return;
    pull.headSha = (await refSha(pull.head)) ?? pull.headSha;
  };

  const mergeability = async (pull: FakePull): Promise<{ mergeable: boolean | null; state: string; tree: string | null }> => {
    if (pull.merged || pull.state === 'closed') return { mergeable: null, state: 'unknown', tree: null };
    const baseSha = (await refSha(pull.base)) ?? '';
    const key = `${baseSha}:${pull.headSha}`;
    if (options.lazyMergeable && pull.computedFor !== key) {
      pull.computedFor = key;
      return { mergeable: null, state: 'unknown', tree: null };
    }
    pull.computedFor = key;
    const result = await git(bare, ['merge-tree', '--write-tree', '--name-only', '--no-messages', baseSha, pull.headSha]);
    if (result.code === 1) return { mergeable: false, state: 'dirty', tree: null };
    const tree = result.out.split('\n')[0]?.trim() ?? null;
    return { mergeable: true, state: 'clean', tree };
  };

  const userOf = (name: string) => ({ login: name, id: name === login ? 1 : 2, type: 'User', html_url: `${baseUrl}/${name}` });
  const repoJson = () => ({
    id: 42, node_id: 'R_42', name: repo, full_name: `${owner}/${repo}`, private: options.private ?? true, owner: userOf(owner),
    html_url: `${baseUrl}/${owner}/${repo}`, default_branch: defaultBranch, permissions: options.permissions ?? { admin: false, push: true, pull: true },
  });
  const pullJson = async (pull: FakePull, full: boolean) => {
    const base = { label: `${owner}:${pull.base}`, ref: pull.base, sha: await refSha(pull.base), repo: repoJson(), user: userOf(owner) };
    const head = { label: `${owner}:${pull.head}`, ref: pull.head, sha: pull.headSha, repo: repoJson(), user: userOf(owner) };
    const summary = {
      url: `${baseUrl}/repos/${owner}/${repo}/pulls/${pull.number}`, id: 1000 + pull.number, node_id: `PR_${pull.number}`, number: pull.number,
      html_url: `${baseUrl}/${owner}/${repo}/pull/${pull.number}`, state: pull.state, locked: false, title: pull.title, body: pull.body, user: userOf(pull.author),
      created_at: pull.createdAt, updated_at: pull.mergedAt ?? pull.closedAt ?? pull.createdAt, closed_at: pull.closedAt, merged_at: pull.mergedAt,
      merge_commit_sha: pull.mergeCommitSha, draft: false, head, base,
    };
    if (!full) return summary;
    const merge = await mergeability(pull);
    const blocked = merge.mergeable === true && pendingLooks > 0;
    if (blocked) pendingLooks -= 1;
    return { ...summary, merged: pull.merged, mergeable: merge.mergeable, mergeable_state: blocked ? 'blocked' : merge.state, rebaseable: merge.mergeable, merged_by: pull.merged ? userOf(login) : null, comments: 0, review_comments: 0, commits: 1, additions: 1, deletions: 0, changed_files: 1 };
  };
  const reviewJson = (review: FakeReview) => ({
    id: review.id, node_id: `PRR_${review.id}`, user: userOf(review.author), body: review.body, commit_id: pulls.find((pull) => pull.number === review.pull)?.headSha ?? null,
    state: review.event === 'APPROVE' ? 'APPROVED' : review.event === 'REQUEST_CHANGES' ? 'CHANGES_REQUESTED' : 'COMMENTED',
    html_url: `${baseUrl}/${owner}/${repo}/pull/${review.pull}#pullrequestreview-${review.id}`, submitted_at: new Date().toISOString(),
  });

  const validation = (message: string | { field: string; code: string }) => ({
    status: 422,
    body: { message: 'Validation Failed', errors: [typeof message === 'string' ? { resource: 'PullRequest', code: 'custom', message } : { resource: 'PullRequest', ...message }], documentation_url: `${DOCS}/pulls/pulls#create-a-pull-request` },
  });
  const notFound = (message = 'Not Found') => ({ status: 404, body: { message, documentation_url: DOCS } });

  /** The REST API: what GitHub answers, and what it changes. */
  async function api(method: string, url: URL, body: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
    const prefix = `/repos/${owner}/${repo}`;
    const route = url.pathname;
    if (!route.startsWith(prefix)) return notFound();
    const rest = route.slice(prefix.length);
    if (method === 'GET' && rest === '') return { status: 200, body: repoJson() };
    const branch = /^\/branches\/(.+)$/.exec(rest);
    if (method === 'GET' && branch) {
      const name = decodeURIComponent(branch[1] as string);
      const sha = await refSha(name);
      return sha ? { status: 200, body: { name, commit: { sha, url: `${baseUrl}${prefix}/commits/${sha}` }, protected: false } } : notFound('Branch not found');
    }
    if (rest === '/pulls' && method === 'GET') {
      const state = url.searchParams.get('state') ?? 'open';
      const head = url.searchParams.get('head');
      const base = url.searchParams.get('base');
      const found = pulls.filter((pull) =>
        (state === 'all' || pull.state === state) && (head === null || `${owner}:${pull.head}` === head) && (base === null || pull.base === base));
      for (const pull of found) await refresh(pull);
      return { status: 200, body: await Promise.all(found.map((pull) => pullJson(pull, false))) };
    }
    if (rest === '/pulls' && method === 'POST') {
      const head = String(body.head ?? '');
      const base = String(body.base ?? '');
      const headSha = await refSha(head);
      const baseSha = await refSha(base);
      if (!headSha) return validation({ field: 'head', code: 'invalid' });
      if (!baseSha) return validation({ field: 'base', code: 'invalid' });
      if (pulls.some((pull) => pull.state === 'open' && pull.head === head && pull.base === base)) return validation(`A pull request already exists for ${owner}:${head}.`);
      if ((await git(bare, ['merge-base', '--is-ancestor', headSha, baseSha])).code === 0) return validation(`No commits between ${base} and ${head}`);
      const pull: FakePull = {
        number: nextNumber, title: String(body.title ?? ''), body: String(body.body ?? ''), head, base, headSha, state: 'open', merged: false, mergeCommitSha: null,
        author: login, createdAt: new Date().toISOString(), mergedAt: null, closedAt: null, computedFor: null,
      };
      nextNumber += 3;
      pulls.push(pull);
      return { status: 201, body: await pullJson(pull, false) };
    }
    const single = /^\/pulls\/(\d+)(\/merge|\/reviews)?$/.exec(rest);
    const pull = single ? pulls.find((candidate) => candidate.number === Number(single[1])) : undefined;
    if (!single || !pull) return notFound();
    const what = single[2] ?? '';
    if (what === '' && method === 'GET') {
      await refresh(pull);
      return { status: 200, body: await pullJson(pull, true) };
    }
    if (what === '' && method === 'PATCH') {
      if (typeof body.title === 'string') pull.title = body.title;
      if (typeof body.body === 'string') pull.body = body.body;
      if (body.state === 'closed' || body.state === 'open') {
        if (pull.merged) return { status: 422, body: { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'custom', message: 'Cannot change the state of a merged pull request.' }] } };
        pull.state = body.state;
        pull.closedAt = body.state === 'closed' ? new Date().toISOString() : null;
      }
      await refresh(pull);
      return { status: 200, body: await pullJson(pull, true) };
    }
    if (what === '/merge' && method === 'PUT') {
      await refresh(pull);
      if (pull.state !== 'open') return githubFaults.notMergeable();
      if (typeof body.sha === 'string' && body.sha !== pull.headSha) return githubFaults.headModified();
      if ((body.merge_method ?? 'merge') !== 'merge') return { status: 405, body: { message: 'Merge commits are the only allowed merge method in this fake.', documentation_url: DOCS } };
      const baseSha = (await refSha(pull.base)) ?? '';
      const merge = await mergeability({ ...pull, computedFor: `${baseSha}:${pull.headSha}` });
      if (!merge.mergeable || !merge.tree) return githubFaults.notMergeable();
      if (pendingLooks > 0) return { status: 405, body: { message: 'Required status check "ci" is expected.', documentation_url: DOCS } };
      const message = `${String(body.commit_title ?? `Merge pull request #${pull.number} from ${owner}/${pull.head}`)}\n\n${String(body.commit_message ?? pull.title)}`;
      const identity = { GIT_AUTHOR_NAME: 'GitHub', GIT_AUTHOR_EMAIL: 'noreply@github.com', GIT_COMMITTER_NAME: 'GitHub', GIT_COMMITTER_EMAIL: 'noreply@github.com' };
      const sha = (await git(bare, ['commit-tree', merge.tree, '-p', baseSha, '-p', pull.headSha, '-m', message], identity)).out.trim();
      await git(bare, ['update-ref', `refs/heads/${pull.base}`, sha, baseSha]);
      Object.assign(pull, { state: 'closed', merged: true, mergeCommitSha: sha, mergedAt: new Date().toISOString(), closedAt: new Date().toISOString() });
      merges.push({ pull: pull.number, sha });
      return { status: 200, body: { sha, merged: true, message: 'Pull Request successfully merged' } };
    }
    if (what === '/reviews' && method === 'GET') return { status: 200, body: reviews.filter((review) => review.pull === pull.number).map(reviewJson) };
    if (what === '/reviews' && method === 'POST') {
      const event = String(body.event ?? 'PENDING');
      if (pull.author === login && (event === 'APPROVE' || event === 'REQUEST_CHANGES')) {
        return { status: 422, body: { message: 'Unprocessable Entity', errors: [event === 'APPROVE' ? 'Can not approve your own pull request' : 'Can not request changes on your own pull request'], documentation_url: `${DOCS}/pulls/reviews#create-a-review-for-a-pull-request`, status: '422' } };
      }
      if (event !== 'PENDING' && event !== 'APPROVE' && typeof body.body !== 'string') return { status: 422, body: { message: 'Unprocessable Entity', errors: ['Body is required'] } };
      const review: FakeReview = { id: nextReviewId, pull: pull.number, event, body: String(body.body ?? ''), author: login };
      nextReviewId += 1;
      reviews.push(review);
      return { status: 200, body: reviewJson(review) };
    }
    return notFound();
  }

  const rateHeaders = (): Record<string, string> => ({
    'x-ratelimit-limit': String(quota.limit),
    'x-ratelimit-remaining': String(quota.remaining),
    'x-ratelimit-used': String(quota.limit - quota.remaining),
    'x-ratelimit-reset': String(quota.reset),
    'x-ratelimit-resource': 'core',
  });

  /** git's smart HTTP, through the real `git http-backend` CGI, after GitHub's token check. */
  function serveGit(req: http.IncomingMessage, res: http.ServerResponse, url: URL, raw: Buffer): void {
    const expected = `Basic ${Buffer.from(`x-access-token:${options.token}`).toString('base64')}`;
    const authorized = req.headers.authorization === expected;
    gitRequests.push({ path: url.pathname, authorized });
    if (!authorized) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"', 'content-type': 'text/plain' });
      res.end('Invalid username or token. Password authentication is not supported for Git operations.\n');
      return;
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: path.dirname(bare),
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: `/${path.basename(bare)}${url.pathname.slice(`/${owner}/${repo}.git`.length)}`,
        REQUEST_METHOD: req.method ?? 'GET',
        QUERY_STRING: url.search.replace(/^\?/, ''),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        CONTENT_LENGTH: String(raw.length),
        REMOTE_USER: login,
        REMOTE_ADDR: '127.0.0.1',
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const out: Buffer[] = [];
    cgi.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    cgi.on('close', () => {
      const all = Buffer.concat(out);
      const split = all.indexOf('\r\n\r\n') >= 0 ? all.indexOf('\r\n\r\n') : all.indexOf('\n\n');
      const gap = all.indexOf('\r\n\r\n') >= 0 ? 4 : 2;
      const headerText = all.subarray(0, split).toString('latin1');
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of headerText.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === 'status') status = Number(value.split(' ')[0]);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.end(all.subarray(split + gap));
    });
    cgi.stdin.end(raw);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', baseUrl);
      if (options.gitHttp && url.pathname.startsWith(`/${owner}/${repo}.git/`)) {
        serveGit(req, res, url, raw);
        return;
      }
      let body: Record<string, unknown> = {};
      try {
        body = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
      } catch {
        // GitHub answers 400 "Problems parsing JSON"
        body = { __unparsable: true };
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : (value ?? '');
      const method = req.method ?? 'GET';
      requests.push({ method, path: `${url.pathname}${url.search}`, headers, body, at: performance.now() });
      const common: Record<string, string> = {
        'content-type': 'application/json; charset=utf-8',
        'x-github-api-version-selected': '2022-11-28',
        'x-github-request-id': `FAKE:${requests.length}`,
        ...(options.scopes !== undefined ? { 'x-oauth-scopes': options.scopes.join(', '), 'x-accepted-oauth-scopes': 'repo' } : {}),
      };
      const send = (status: number, value: unknown, extra: Record<string, string> = {}) => {
        res.writeHead(status, { ...common, ...rateHeaders(), ...extra });
        res.end(value === undefined ? '' : JSON.stringify(value));
      };
      const auth = headers.authorization ?? '';
      if (auth !== `token ${options.token}` && auth !== `bearer ${options.token}` && auth !== `Bearer ${options.token}`) {
        send(401, { message: 'Bad credentials', documentation_url: DOCS, status: '401' });
        return;
      }
      quota.remaining = Math.max(0, quota.remaining - 1);
      const matches = (match: Match) => match.method === method && match.path.test(url.pathname);
      const fault = faults.find((entry) => entry.left > 0 && matches(entry.match));
      if (fault) {
        fault.left -= 1;
        send(fault.fault.status, fault.fault.body, fault.fault.headers);
        return;
      }
      if (body.__unparsable) {
        send(400, { message: 'Problems parsing JSON', documentation_url: DOCS });
        return;
      }
      const hold = holds.find((entry) => !entry.arrived && matches(entry.match));
      if (hold) {
        // Never answered: the client dies with the request in flight.
        if (hold.apply) void serially(() => api(method, url, body)).then(() => { hold.arrived = true; });
        else hold.arrived = true;
        return;
      }
      void serially(() => api(method, url, body)).then((answer) => send(answer.status, answer.body));
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: baseUrl,
    gitUrl: `${baseUrl}/${owner}/${repo}.git`,
    requests,
    pulls,
    reviews,
    merges,
    gitRequests,
    fault(match, fault, times = 1) {
      faults.push({ match, fault, left: times });
    },
    hold(match, holdOptions) {
      const entry = { match, apply: holdOptions.apply, arrived: false };
      holds.push(entry);
      return { arrived: () => entry.arrived };
    },
    checksPendingFor(looks) {
      pendingLooks = looks;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
