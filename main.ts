import { readFileSync } from 'node:fs';
import { parseCli, usage } from './cli/args.ts';
import { exitCodeForError, isAlive, listRuns, resumeRun, retryRun, runDemo, startRun, type CliContext } from './cli/commands.ts';
import { showStatus } from './cli/status.ts';
import { doctor } from './cli/doctor.ts';
import { Reporter } from './cli/reporter.ts';
import { resolveTarget } from './config/index.ts';
import { messageOf } from './errors.ts';

/**
 * The CLI entry: parse, dispatch, and turn every error into one line on stderr and an exit
 * status (2 for bad input). The only place that reads process.env is the config it is handed to.
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
        return listRuns(context, args);
      case 'doctor':
        return await doctor(context, args);
      case 'status':
        return await showStatus(context, args, isAlive);
      case 'demo':
        return await runDemo(context, args);
      case 'resume':
        return await resumeRun(context, args, args.runId as string);
      case 'retry':
        return await retryRun(context, args, args.runId as string);
      case 'run':
        return await startRun(context, args, {
          requirements: args.requirements as string,
          target: resolveTarget(args.target, context.env, context.cwd),
        });
    }
  } catch (error) {
    process.stderr.write(`moderator: ${messageOf(error)}\n`);
    return exitCodeForError(error);
  }
}

// `moderator runs --json | head -1` closes stdout early: that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

const code = await main(process.argv.slice(2));
process.exitCode = code;
