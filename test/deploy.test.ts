/**
 * The container files, checked where no image can be built (no registry here): Dockerfile and
 * compose.yaml parse and name only variables and paths that exist, the entrypoint runs a demo
 * on this machine, the healthcheck reads /api/health, docker/smoke.sh skips saying why, and
 * .ci/run counts a skipped test as skipped.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { parseCli } from '../cli/args.ts';
import { ENV_BINDINGS, readSecrets, resolveTarget } from '../config/index.ts';
import { cleanEnv, root } from './helpers/cli.ts';

const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');
const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-deploy-'));
test.after.always(() => fs.rmSync(temp, { recursive: true, force: true }));

// --- Dockerfile ------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions, with line continuations joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text.split('\n').filter((line) => !/^\s*#/.test(line)).join('\n').replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** The instructions of each build stage, in order. */
function stages(all: Instruction[]): Instruction[][] {
  const out: Instruction[][] = [];
  for (const instruction of all) {
    if (instruction.keyword === 'FROM') out.push([]);
    out.at(-1)?.push(instruction);
  }
  return out;
}

const dockerfile = instructions(read('Dockerfile'));
const [buildStage = [], runtime = []] = stages(dockerfile);
const args = (stage: Instruction[], keyword: string) => stage.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);

test('Dockerfile: two Node 20 slim stages; better-sqlite3 and the TypeScript built in the first, only the result in the second', (t) => {
  t.is(stages(dockerfile).length, 2);
  for (const from of args(dockerfile, 'FROM')) t.regex(from, /^node:20-[a-z]*-?slim\b/);
  const built = args(buildStage, 'RUN').join('\n');
  t.regex(built, /npm ci\b/);
  t.regex(built, /npm rebuild better-sqlite3/);
  t.regex(built, /npm run build/);
  t.regex(built, /npm prune --omit=dev/);
  const copied = args(runtime, 'COPY');
  t.true(copied.includes('--from=build /app/dist ./dist'));
  t.true(copied.includes('--from=build /app/node_modules ./node_modules'));
  t.false(copied.some((copy) => /^\.?\s|^\. /.test(copy)), 'no COPY of the whole context into the image');
  t.regex(args(runtime, 'RUN').join('\n'), /apt-get install[^\n]*\bgit\b/);
});

test('Dockerfile: a non-root user, EXPOSE 8080, the workspace as a volume, a HEALTHCHECK on /api/health, the entrypoint script', (t) => {
  const users = args(runtime, 'USER');
  t.is(users.length, 1);
  t.notRegex(users[0] ?? '', /^(root|0)(:|$)/);
  t.deepEqual(args(runtime, 'EXPOSE'), ['8080']);
  t.deepEqual(args(runtime, 'VOLUME'), ['/workspace']);
  const health = args(runtime, 'HEALTHCHECK').join(' ');
  t.regex(health, /CMD node \/app\/docker\/healthcheck\.js "http:\/\/127\.0\.0\.1:\$\{DUO_AGENT_MONITOR_PORT\}\/api\/health"/);
  t.deepEqual(args(runtime, 'ENTRYPOINT'), ['["/app/docker/entrypoint.sh"]']);
  t.true(args(runtime, 'COPY').includes('docker/entrypoint.sh docker/healthcheck.js ./docker/'));
  t.true((fs.statSync(path.join(root, 'docker', 'entrypoint.sh')).mode & 0o111) !== 0, 'the entrypoint is executable');
  const env = args(runtime, 'ENV').join(' ');
  t.regex(env, /DUO_AGENT_WORKSPACE=\/workspace/);
  t.regex(env, /DUO_AGENT_MONITOR_HOST=0\.0\.0\.0/);
  t.regex(env, /DUO_AGENT_MONITOR_PORT=8080/);
});

test('Dockerfile: every path it copies from the context exists and is not in .dockerignore, and it copies every folder the build compiles', (t) => {
  const ignored = read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  const sources = args(dockerfile, 'COPY')
    .filter((copy) => !copy.startsWith('--from'))
    .flatMap((copy) => copy.split(/\s+/).slice(0, -1));
  t.true(sources.length > 5);
  for (const source of sources) {
    t.true(fs.existsSync(path.join(root, source)), `${source} exists`);
    t.false(ignored.includes(source.split('/')[0] ?? ''), `${source} is not excluded by .dockerignore`);
  }
  const build = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
  for (const pattern of build.include) {
    const top = pattern.split('/')[0] ?? '';
    t.true(sources.includes(top), `the build compiles ${pattern}; the Dockerfile copies ${top}`);
  }
  t.true(sources.includes('demos/todo-cli/session.json'), 'the demo session the build copies beside the JavaScript');
});

// --- compose.yaml ----------------------------------------------------------------------------

interface ComposeService {
  build?: string;
  init?: boolean;
  command?: string[];
  environment?: string[];
  volumes?: string[];
  ports?: string[];
}

const compose = parseYaml(read('compose.yaml')) as { services: Record<string, ComposeService> };
const service = compose.services.moderator ?? {};

test('compose.yaml: built from here, secrets passed through from the environment, the workspace (and so the database) on a volume', (t) => {
  t.is(service.build, '.');
  t.true(service.init, 'an init process reaps what test runs leave');
  const environment = service.environment ?? [];
  for (const secret of ['DUO_AGENT_API_KEY', 'DUO_AGENT_GIT_TOKEN', 'OPENAI_API_KEY', 'DUO_AGENT_MONITOR_TOKEN']) {
    t.true(environment.includes(secret), `${secret} passed through by name, no value in the file`);
  }
  t.deepEqual(service.volumes, ['./workspace:/workspace']);
  t.notThrows(() => parseCli(service.command ?? []), 'the default command is valid Moderator arguments');
});

test('compose.yaml: the port is published on 127.0.0.1 unless told otherwise, and the entrypoint is told where', (t) => {
  t.deepEqual(service.ports, ['${MODERATOR_PUBLISH_ADDRESS:-127.0.0.1}:${MODERATOR_PUBLISH_PORT:-8080}:8080']);
  t.true((service.environment ?? []).includes('MODERATOR_PUBLISH_ADDRESS=${MODERATOR_PUBLISH_ADDRESS:-127.0.0.1}'), 'the same address and default reach the entrypoint');
  t.deepEqual(args(runtime, 'EXPOSE'), ['8080'], 'the container port is the one the image exposes');
});

test('every DUO_AGENT_* variable the container files name is one Moderator reads', (t) => {
  const known = (name: string) =>
    ENV_BINDINGS.some((binding) => binding.name === name) ||
    Object.keys(readSecrets({ [name]: 'a-value-of-sixteen-chars' })).length > 0 ||
    resolveTarget(undefined, { [name]: '/somewhere' }, '/') === '/somewhere';
  const files = ['Dockerfile', 'compose.yaml', 'docker/entrypoint.sh', 'docker/smoke.sh', 'docker/healthcheck.js'];
  const named = new Set(files.flatMap((file) => read(file).match(/\bDUO_AGENT_[A-Z_]+/g) ?? []));
  t.true(named.size >= 10, [...named].join(', '));
  for (const name of named) t.true(known(name), `${name} is read by config/`);
});

// --- the entrypoint, on this machine ---------------------------------------------------------

const entrypoint = path.join(root, 'docker', 'entrypoint.sh');
const runEntrypoint = (entryArgs: string[], env: Record<string, string>) =>
  spawnSync('sh', [entrypoint, ...entryArgs], { cwd: temp, env: cleanEnv({ DUO_AGENT_MONITOR_PORT: '0', ...env }), encoding: 'utf8', timeout: 150_000 });

test('the entrypoint runs the demo into the workspace', (t) => {
  const workspace = path.join(temp, 'workspace');
  fs.mkdirSync(workspace);
  const run = runEntrypoint(['demo', '--json'], { DUO_AGENT_WORKSPACE: workspace });
  t.is(run.status, 0, run.stderr);
  const summary = JSON.parse(run.stdout) as { outcome: string; target: string; prsMerged: number };
  t.like(summary, { outcome: 'done', target: workspace, prsMerged: 4 });
  t.true(fs.existsSync(path.join(workspace, '.duo-agent', 'moderator.db')), 'the database lives in the workspace volume');
  const merges = execFileSync('git', ['log', '--merges', '--oneline', 'main'], { cwd: workspace, encoding: 'utf8' }).trim().split('\n');
  t.is(merges.length, 4);
});

test('the entrypoint refuses, in one line and with exit 2, a port published beyond loopback without a token and a workspace it cannot write', (t) => {
  const workspace = path.join(temp, 'checks');
  fs.mkdirSync(workspace);
  const published = runEntrypoint(['--version'], { DUO_AGENT_WORKSPACE: workspace, MODERATOR_PUBLISH_ADDRESS: '0.0.0.0' });
  t.is(published.status, 2);
  t.regex(published.stderr, /^moderator entrypoint: the monitoring port is published on 0\.0\.0\.0: set DUO_AGENT_MONITOR_TOKEN .*\n$/);
  const withToken = runEntrypoint(['--version'], { DUO_AGENT_WORKSPACE: workspace, MODERATOR_PUBLISH_ADDRESS: '0.0.0.0', DUO_AGENT_MONITOR_TOKEN: 'a-long-random-token-123' });
  t.is(withToken.status, 0, withToken.stderr);
  t.is(withToken.stdout.trim(), (JSON.parse(read('package.json')) as { version: string }).version);

  const file = path.join(temp, 'a-file');
  fs.writeFileSync(file, '');
  const unwritable = runEntrypoint(['--version'], { DUO_AGENT_WORKSPACE: path.join(file, 'workspace') });
  t.is(unwritable.status, 2);
  t.regex(unwritable.stderr, /^moderator entrypoint: the workspace .* is not a writable folder/);
});

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('deploy: the repository-owner check is skipped: only root can give a test repository another owner');

(isRoot ? test : test.skip)("the entrypoint refuses a repository another user owns, before git's dubious-ownership error", (t) => {
  const workspace = path.join(temp, 'owned');
  fs.mkdirSync(path.join(workspace, '.git'), { recursive: true });
  fs.chownSync(path.join(workspace, '.git'), 4242, 4242);
  const run = runEntrypoint(['--version'], { DUO_AGENT_WORKSPACE: workspace });
  t.is(run.status, 2);
  t.regex(run.stderr, /belongs to uid 4242, this container runs as uid 0/);
});

// --- the healthcheck -------------------------------------------------------------------------

test('the HEALTHCHECK script: 0 for healthy or degraded, 1 for unhealthy or no answer', async (t) => {
  let status = 'healthy';
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/health`;
  // Spawned asynchronously: the server that answers lives in this process.
  const check = () => new Promise<number | null>((resolve) => spawn(process.execPath, [path.join(root, 'docker', 'healthcheck.js'), url], { stdio: 'ignore' }).on('close', resolve));
  t.is(await check(), 0);
  status = 'degraded';
  t.is(await check(), 0);
  status = 'unhealthy';
  t.is(await check(), 1);
  await new Promise((resolve) => server.close(resolve));
  t.is(await check(), 1, 'nothing listening');
});

// --- docker/smoke.sh and .ci/run's counting ---------------------------------------------------

const engineHere = ['docker', 'podman'].some((engine) => spawnSync(engine, ['info'], { stdio: 'ignore' }).status === 0);
if (engineHere) console.log('deploy: the smoke script skip tests are skipped: a working container engine is here, and .ci/run runs the real smoke test');

(engineHere ? test.skip : test)('docker/smoke.sh skips with exit 77 and a reason when no engine can build: no daemon, or no registry', (t) => {
  const fakeBin = path.join(temp, 'fake-bin');
  fs.mkdirSync(fakeBin, { recursive: true });
  const fake = (script: string) => {
    fs.writeFileSync(path.join(fakeBin, 'docker'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return spawnSync('bash', [path.join(root, 'docker', 'smoke.sh')], { env: { ...cleanEnv(), PATH: `${fakeBin}:/usr/bin:/bin` }, encoding: 'utf8' });
  };
  const noDaemon = fake('echo "Cannot connect to the Docker daemon" >&2; exit 1');
  t.is(noDaemon.status, 77, noDaemon.stdout + noDaemon.stderr);
  t.regex(noDaemon.stdout, /^docker smoke test skipped: no working docker or podman/);
  const noRegistry = fake('case "$1" in info) exit 0 ;; *) echo "pull access denied" >&2; exit 1 ;; esac');
  t.is(noRegistry.status, 77, noRegistry.stdout + noRegistry.stderr);
  t.regex(noRegistry.stdout, /^docker smoke test skipped: docker cannot pull the base image node:20-bookworm-slim/);
});

test(".ci/tap-counts reads ava's TAP: a skip is a skip, a todo is no failure", (t) => {
  // ava 7's own --tap output for a file with one test of each kind.
  const tap = ['TAP version 13', 'ok 1 - skipped one # SKIP', 'not ok 2 - later # TODO', 'ok 3 - passes', 'not ok 4 - fails', '  ---', '    name: AssertionError', '  ...', '', '1..4', '# tests 3', '# pass 1', '# skip 1', '# fail 2', ''].join('\n');
  const file = path.join(temp, 'run.tap');
  fs.writeFileSync(file, tap);
  t.is(execFileSync('bash', [path.join(root, '.ci', 'tap-counts'), file], { encoding: 'utf8' }), '1 1 1\n');
  t.regex(read('.ci/run'), /read -r passed failed skipped < <\(bash \.ci\/tap-counts "\$tap"\)/);
  t.regex(read('.ci/run'), /echo "\$\{passed\} passed, \$\{failed\} failed, \$\{skipped\} skipped"/);
});
