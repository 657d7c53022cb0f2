/**
 * Start-up of the installed CLI (bin/moderator.js running the built dist/), spawn to result.
 * Prints ONE JSON line. Run with `npm run bench:startup` (it needs a current `npm run build`).
 *
 * - helpMs, versionMs: `moderator --help` / `--version`, spawn to exit.
 * - resumeMs: a demo run killed with SIGKILL while it implements T2, resumed with `--resume`:
 *   spawn to the resumed run's first progress line after the restored actor tree started (the
 *   checkpointer prints `phase: <phase>` at the root's first snapshot). That span holds the
 *   process start, the imports, opening the database, git's crash recovery, the monitoring
 *   server and restoring the tree; the resumed process is then stopped with SIGINT.
 * - nodeMs: `node -e 0`, the floor nothing here can go under on this machine at this moment.
 * - helpViaTsxMs: `--help` through tsx's loader hooks from the TypeScript, as before the build.
 * - ...CpuMs: the CPU time (user + system, all threads, 10 ms ticks from /proc) the process
 *   used for the same span. On a machine shared with other work the wall times stretch with the
 *   load; the CPU times much less, so both are printed.
 * Each figure is the median of `runs` spawns; each wall time has its goal beside it.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assertBuilt } from '../test/helpers/build.ts';
import { median } from './stats.ts';

const root = path.resolve(import.meta.dirname, '..');
const bin = path.join(root, 'bin', 'moderator.js');
const runs = Number(process.argv[2] ?? 7);
const resumeRuns = Math.max(3, Math.ceil(runs / 2));

/** The environment of a user who configured nothing (config/ reads it). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key.startsWith('DUO_AGENT_') || key.endsWith('_API_KEY') || key === 'NODE_OPTIONS' || key === 'NODE_TEST_CONTEXT') delete env[key];
  }
  return env;
}

const env = cleanEnv();


const tickMs = 10; // USER_HZ is 100 on Linux
const quote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;

/**
 * Spawn to exit of one command, in ms, and the CPU it used: run under a shell that prints its
 * own /proc stat after waiting for it, whose cutime and cstime are the child's CPU time.
 */
function timed(args: string[]): { ms: number; cpuMs: number } {
  const command = `${[process.execPath, ...args].map(quote).join(' ')} >/dev/null && cat /proc/$$/stat`;
  const started = performance.now();
  const result = spawnSync('sh', ['-c', command], { cwd: root, env, encoding: 'utf8' });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  // Fields after the ")" that ends the command name: cutime and cstime are the 16th and 17th.
  const fields = result.stdout.slice(result.stdout.lastIndexOf(')') + 2).split(' ');
  return { ms, cpuMs: (Number(fields[13]) + Number(fields[14])) * tickMs };
}

/** The CPU time a live process has used so far (utime + stime). */
function cpuOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * tickMs;
}

/** Medians of `count` runs of one command. */
function measure(args: string[], count: number): { ms: number; cpuMs: number } {
  const samples = Array.from({ length: count }, () => timed(args));
  return { ms: median(samples.map((sample) => sample.ms)), cpuMs: median(samples.map((sample) => sample.cpuMs)) };
}

/**
 * Spawns the CLI, and at the first stderr line matching `until` notes the ms since the spawn and
 * sends the process `signal`; resolves when it has exited, with that time and its stderr.
 */
function untilLine(args: string[], until: RegExp, signal: NodeJS.Signals): Promise<{ ms: number; cpuMs: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [bin, ...args], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let ms: number | undefined;
    let cpuMs = 0;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (ms === undefined && stderr.split('\n').some((line) => until.test(line))) {
        ms = performance.now() - started;
        cpuMs = child.pid === undefined ? 0 : cpuOf(child.pid);
        child.kill(signal);
      }
    });
    child.on('error', reject);
    child.on('close', () => {
      if (ms === undefined) reject(new Error(`${args.join(' ')} ended before a line matched ${until}:\n${stderr}`));
      else resolve({ ms, cpuMs, stderr });
    });
  });
}

/** A demo run killed with SIGKILL while the TechLead works on T2: its target and run id. */
async function killedDemo(): Promise<{ target: string; runId: string }> {
  const target = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-startup-')), 'todo');
  const { stderr } = await untilLine(['demo', '--target', target, '--port', '0'], /task 2\/\d+ T2/, 'SIGKILL');
  const runId = /run (\S+) on /.exec(stderr)?.[1];
  if (!runId) throw new Error(`no run id in the demo's output:\n${stderr}`);
  return { target, runId };
}

assertBuilt();
const node = measure(['-e', '0'], runs);
const help = measure([bin, '--help'], runs);
const version = measure([bin, '--version'], runs);
const helpViaTsx = measure(['--import', 'tsx', path.join(root, 'main.ts'), '--help'], Math.min(runs, 3));

const resumes: { ms: number; cpuMs: number }[] = [];
for (let index = 0; index < resumeRuns; index += 1) {
  const { target, runId } = await killedDemo();
  const resumed = await untilLine(['--resume', runId, '--target', target, '--port', '0'], /^\[\d\d:\d\d\] phase: /, 'SIGINT');
  if (!/resuming run/.test(resumed.stderr)) throw new Error(`the run was not resumed:\n${resumed.stderr}`);
  resumes.push(resumed);
  fs.rmSync(path.dirname(target), { recursive: true, force: true, maxRetries: 3 });
}

console.log(
  JSON.stringify({
    bench: 'startup',
    runs,
    loadAverage: os.loadavg()[0]?.toFixed(2),
    nodeMs: node.ms,
    nodeCpuMs: node.cpuMs,
    helpMs: help.ms,
    helpGoalMs: 150,
    helpCpuMs: help.cpuMs,
    versionMs: version.ms,
    versionGoalMs: 150,
    versionCpuMs: version.cpuMs,
    resumeMs: median(resumes.map((resume) => resume.ms)),
    resumeGoalMs: 400,
    resumeCpuMs: median(resumes.map((resume) => resume.cpuMs)),
    resumeRunsMs: resumes.map((resume) => Math.round(resume.ms)),
    helpViaTsxMs: helpViaTsx.ms,
    helpViaTsxCpuMs: helpViaTsx.cpuMs,
  }),
);
