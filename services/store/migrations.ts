/**
 * Schema migrations, applied in order; `PRAGMA user_version` holds how many ran.
 * Append only: a shipped migration is never edited, a change is a new entry.
 */
export const migrations: readonly string[] = [
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    requirements TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'interrupted', 'finished')),
    phase TEXT NOT NULL,
    outcome TEXT,
    reason TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    settings_json TEXT NOT NULL,
    snapshot_version INTEGER NOT NULL,
    machine_fingerprint TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    active_ms INTEGER NOT NULL DEFAULT 0,
    sessions INTEGER NOT NULL DEFAULT 1,
    scope_json TEXT
  );
  CREATE TABLE snapshots (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    snapshot_json TEXT NOT NULL,
    status TEXT NOT NULL,
    saved_at TEXT NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1
  );
  CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL REFERENCES runs(id),
    from_actor TEXT NOT NULL,
    to_actor TEXT NOT NULL,
    type TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    correlation_id TEXT,
    at TEXT NOT NULL
  );
  CREATE INDEX messages_run ON messages(run_id, seq);
  CREATE TABLE tasks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL,
    acceptance_json TEXT NOT NULL,
    depends_json TEXT NOT NULL,
    origin TEXT NOT NULL,
    angle TEXT,
    priority REAL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    branch TEXT,
    pr_number INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
  );
  CREATE TABLE pull_requests (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'merged', 'closed')),
    head_sha TEXT,
    merge_sha TEXT,
    revision INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (run_id, task_id)
  );
  CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    pr_number INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    summary TEXT NOT NULL,
    comments_json TEXT NOT NULL,
    tests_passed INTEGER NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (run_id, task_id, attempt)
  );
  CREATE TABLE test_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    command TEXT NOT NULL,
    passed INTEGER NOT NULL,
    exit_code INTEGER,
    timed_out INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    output TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (run_id, task_id, attempt)
  );
  CREATE TABLE model_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    call_key TEXT NOT NULL,
    agent TEXT NOT NULL,
    purpose TEXT NOT NULL,
    task_id TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'ok', 'error')),
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_ms INTEGER,
    error TEXT,
    reply_json TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
  );
  CREATE UNIQUE INDEX model_calls_ok ON model_calls(run_id, call_key) WHERE status = 'ok';
  CREATE INDEX model_calls_run ON model_calls(run_id, agent, status);
  CREATE TABLE effects (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('started', 'done')),
    result_json TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_key)
  );
  CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL
  );
  `,
  // 2: where a live run's monitoring server listens, for `moderator status`.
  `ALTER TABLE runs ADD COLUMN monitor_url TEXT;`,
  // 3: a call whose server sent no usage is counted locally: 'counted' or 'estimated' (NULL: reported by the API).
  `ALTER TABLE model_calls ADD COLUMN usage_source TEXT;`,
  // 4: PRs that live on GitHub: their number and page there, also on the task for the task board.
  `ALTER TABLE pull_requests ADD COLUMN remote_number INTEGER;
   ALTER TABLE pull_requests ADD COLUMN url TEXT;
   ALTER TABLE tasks ADD COLUMN pr_url TEXT;`,
  // 5: a task re-implemented on a fresh branch (the merge queue gave up on its first one) opens
  // a second PR: a PR is unique per task and branch, no longer per task.
  `CREATE TABLE pull_requests_by_branch (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'merged', 'closed')),
    head_sha TEXT,
    merge_sha TEXT,
    revision INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    remote_number INTEGER,
    url TEXT,
    UNIQUE (run_id, task_id, branch)
  );
  INSERT INTO pull_requests_by_branch (number, run_id, task_id, provider, branch, base, title, body, status, head_sha, merge_sha, revision, created_at, updated_at, remote_number, url)
    SELECT number, run_id, task_id, provider, branch, base, title, body, status, head_sha, merge_sha, revision, created_at, updated_at, remote_number, url FROM pull_requests;
  DROP TABLE pull_requests;
  ALTER TABLE pull_requests_by_branch RENAME TO pull_requests;`,
  // 6: each call's prompt as counted before it was sent ('counted' or 'estimated'), and its conversation's context zone.
  `ALTER TABLE model_calls ADD COLUMN prompt_tokens INTEGER;
   ALTER TABLE model_calls ADD COLUMN prompt_source TEXT;
   ALTER TABLE model_calls ADD COLUMN context_zone TEXT;`,
  // 7: the Monitor's series (one row per tick), alerts people acknowledge, questions to people and
  // their answers, each improvement cycle's measured signals, and lint findings per test run.
  `CREATE TABLE metrics (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     run_id TEXT NOT NULL REFERENCES runs(id),
     at TEXT NOT NULL,
     runtime_ms INTEGER NOT NULL,
     tokens_used INTEGER NOT NULL,
     cost_usd REAL NOT NULL,
     calls_sent INTEGER NOT NULL,
     call_errors INTEGER NOT NULL,
     context_tokens INTEGER NOT NULL,
     health_score INTEGER NOT NULL,
     tasks_merged INTEGER NOT NULL,
     tasks_total INTEGER NOT NULL,
     forecast_tokens INTEGER,
     forecast_cost_usd REAL,
     UNIQUE (run_id, at)
   );
   CREATE INDEX metrics_run ON metrics(run_id, id);
   ALTER TABLE alerts ADD COLUMN source TEXT NOT NULL DEFAULT 'human';
   ALTER TABLE alerts ADD COLUMN acknowledged_at TEXT;
   CREATE TABLE questions (
     run_id TEXT NOT NULL REFERENCES runs(id),
     id TEXT NOT NULL,
     text TEXT NOT NULL,
     asked_at TEXT NOT NULL,
     answer TEXT,
     answered_by TEXT,
     answered_at TEXT,
     PRIMARY KEY (run_id, id)
   );
   CREATE TABLE improvement_cycles (
     run_id TEXT NOT NULL REFERENCES runs(id),
     cycle INTEGER NOT NULL,
     before_json TEXT NOT NULL,
     after_json TEXT,
     magnitude REAL,
     tasks_json TEXT NOT NULL DEFAULT '[]',
     at TEXT NOT NULL,
     PRIMARY KEY (run_id, cycle)
   );
   ALTER TABLE test_runs ADD COLUMN lint_findings INTEGER;`,
];
