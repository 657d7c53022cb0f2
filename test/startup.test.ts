/**
 * Start-up: the installed CLI runs the built JavaScript, and each command imports only what it
 * uses (the timings are in bench/startup.bench.ts; here, which modules load).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { bin, cleanEnv, root } from './helpers/cli.ts';

const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-startup-'));
/** The packages each chunk of the bundle holds (written by scripts/bundle.js). */
const bundled = JSON.parse(fs.readFileSync(path.join(root, 'dist', 'bundle', 'packages.json'), 'utf8')) as Record<string, string[]>;
test.after.always(() => fs.rmSync(temp, { recursive: true, force: true }));

// Hooks that name every module loaded on stderr, so a test sees what a command imports: an ES
// module loader hook, and (for what CommonJS packages and createRequire load) the CJS loader's.
const hooks = path.join(temp, 'hooks.mjs');
fs.writeFileSync(hooks, "import fs from 'node:fs';\nexport async function load(url, context, next) {\n  fs.writeSync(2, `LOADED ${url}\\n`);\n  return next(url, context);\n}\n");
const register = path.join(temp, 'register.mjs');
fs.writeFileSync(
  register,
  [
    "import fs from 'node:fs';",
    "import Module, { register } from 'node:module';",
    `register(${JSON.stringify(pathToFileURL(hooks).href)});`,
    'const load = Module._load;',
    'Module._load = function (request, parent, isMain) {',
    '  try { fs.writeSync(2, `LOADED ${Module._resolveFilename(request, parent, isMain)}\\n`); } catch {}',
    '  return load.apply(this, arguments);',
    '};',
    '',
  ].join('\n'),
);

/** Runs the installed CLI and returns its exit status, its stderr without the hook's lines, and the packages it loaded. */
function withLoads(args: string[]) {
  const result = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, bin, ...args], { cwd: root, env: cleanEnv({ DUO_AGENT_MONITOR_PORT: '0' }), encoding: 'utf8', timeout: 120_000 });
  const lines = result.stderr.split('\n');
  const urls = lines.filter((line) => line.startsWith('LOADED ')).map((line) => line.slice('LOADED '.length));
  // A package is loaded from node_modules (the bundle leaves it to Node), or inside a chunk of the bundle.
  const packages = new Set(urls.flatMap((url) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1] ?? []));
  for (const url of urls) {
    const chunk = /\/dist\/bundle\/([^/]+\.js)$/.exec(url)?.[1];
    if (chunk !== undefined) for (const name of bundled[chunk] ?? []) packages.add(name);
  }
  return { code: result.status, stderr: lines.filter((line) => !line.startsWith('LOADED ')).join('\n'), urls, packages };
}

const heavy = ['@anthropic-ai/sdk', 'openai', '@statelyai/inspect'];

test('--help and --version load nothing but their own few modules', (t) => {
  for (const flag of ['--help', '--version']) {
    const run = withLoads([flag]);
    t.is(run.code, 0, run.stderr);
    t.deepEqual([...run.packages], [], `${flag} loads no package`);
    const files = run.urls.filter((url) => url.startsWith('file:') || url.startsWith('/'));
    t.true(files.every((url) => url.startsWith(pathToFileURL(root).href) || url.startsWith(root)), files.join('\n'));
    t.true(run.urls.some((url) => url.includes('/dist/bundle/main.js')), 'it runs the built JavaScript');
  }
});

test('runs loads neither an SDK, nor the monitoring server, nor the actor system', (t) => {
  const run = withLoads(['runs', '--target', temp]);
  t.is(run.code, 0, run.stderr);
  for (const name of [...heavy, 'uWebSockets.js', 'prom-client', 'pino']) t.false(run.packages.has(name), `runs loaded ${name}`);
});

test('a replayed run loads no SDK and no Stately inspector; --inspect loads the inspector', (t) => {
  const run = withLoads(['demo', '--target', path.join(temp, 'replayed'), '--max-tokens', '5000']);
  t.is(run.code, 3, run.stderr);
  t.true(run.packages.has('uWebSockets.js') && run.packages.has('xstate') && run.packages.has('pino'), 'the run itself did start');
  for (const name of heavy) t.false(run.packages.has(name), `a replay loaded ${name}`);
  t.false(run.packages.has('prom-client'), 'prom-client waits for the first scrape of /metrics');
  t.false(run.packages.has('yaml'), 'yaml waits for a settings file to read (the demo target has none)');
  const inspected = withLoads(['demo', '--target', path.join(temp, 'inspected'), '--max-tokens', '5000', '--inspect']);
  t.is(inspected.code, 3, inspected.stderr);
  t.true(inspected.packages.has('@statelyai/inspect'), 'the hook does see the modules a command needs');
});

test('without a build, bin/moderator.js says in one line what to run', (t) => {
  const copy = path.join(temp, 'unbuilt', 'bin', 'moderator.js');
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  fs.copyFileSync(bin, copy);
  const result = spawnSync(process.execPath, [copy, '--help'], { encoding: 'utf8' });
  t.is(result.status, 1);
  t.is(result.stderr, 'moderator: the build is missing (dist/bundle/main.js): run npm run build\n');
  t.is(result.stdout, '');
});
