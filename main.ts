import { readFileSync } from 'node:fs';
import { parseCli, usage } from './cli/args.ts';
import type { CliContext } from './cli/commands.ts';
import { Reporter } from './cli/reporter.ts';
import { messageOf } from './errors.ts';

/**
 * The CLI entry: parse, dispatch, and turn every error into one line on stderr and an exit
 * status (2 for bad input). The only place that reads process.env is the config it is handed to.
 * Each command imports what it needs when it runs: `--help` and `--version` load no SDK, no
 * SQLite and no server, and start in tens of milliseconds (bench/startup.bench.ts).
 */
export async function main(argv: string[]): Promise<number> {
  const context: CliContext = {
    env: process.env,
    cwd: process.cwd(),
    stdout: (line) => process.stdout.write(`${line}\n`),
    reporter: new Reporter(),
    stdinIsTty: Boolean(process.stdin.isTTY),
  };
  try {
    const args = parseCli(argv);
    switch (args.command) {
      case 'help':
        context.stdout(usage);
        return 0;
      case 'version': {
        const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string };
        context.stdout(pkg.version);
        return 0;
      }
      case 'runs':
        return (await import('./cli/commands.ts')).listRuns(context, args);
      case 'doctor':
        return await (await import('./cli/doctor.ts')).doctor(context, args);
      case 'status': {
        const [{ showStatus }, { isAlive }] = await Promise.all([import('./cli/status.ts'), import('./cli/commands.ts')]);
        return await showStatus(context, args, isAlive);
      }
      case 'demo':
        return await (await import('./cli/commands.ts')).runDemo(context, args);
      case 'resume':
        return await (await import('./cli/commands.ts')).resumeRun(context, args, args.runId as string);
      case 'retry':
        return await (await import('./cli/commands.ts')).retryRun(context, args, args.runId as string);
      case 'run': {
        const [{ startRun }, { resolveTarget }] = await Promise.all([import('./cli/commands.ts'), import('./config/index.ts')]);
        return await startRun(context, args, {
          requirements: args.requirements as string,
          target: resolveTarget(args.target, context.env, context.cwd),
        });
      }
    }
  } catch (error) {
    process.stderr.write(`moderator: ${messageOf(error)}\n`);
    // Loaded already by every command that can fail past parsing; a bad flag pays for it once.
    return (await import('./cli/commands.ts')).exitCodeForError(error);
  }
}

// `moderator runs --json | head -1` closes stdout early: that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

const code = await main(process.argv.slice(2));
process.exitCode = code;
