import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModeratorError } from '../errors.ts';

/**
 * One process drives a target at a time: the lock is a file created with O_EXCL in the target's
 * state folder, held for the process's whole session of a run (start, resume or retry), so two
 * runs started at the same instant can never both prepare, plan and merge on one repository.
 *
 * A lock left by a killed process names a process that is gone: it is stale, and taken over by
 * renaming it aside first (a rename succeeds for one contender only), then creating ours.
 */

interface Holder {
  pid: number;
  host: string;
  at: string;
  what: string;
}

export class TargetBusyError extends ModeratorError {
  constructor(message: string) {
    super('usage', message);
  }
}

export interface TargetLock {
  readonly file: string;
  release(): void;
}

const LOCK_NAME = 'run.lock';

function readHolder(file: string): Holder | undefined {
  try {
    const value = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Holder>;
    return typeof value.pid === 'number' && typeof value.host === 'string' ? (value as Holder) : undefined;
  } catch {
    // Being written right now, or torn by a kill: not a holder we can name.
    return undefined;
  }
}

/**
 * Takes the lock of `stateDir` for `what` (e.g. "run 2026…"), or throws a TargetBusyError naming
 * the process that holds it. `isAlive` says whether a pid on this host still runs.
 */
export function lockTarget(stateDir: string, what: string, isAlive: (pid: number) => boolean): TargetLock {
  fs.mkdirSync(stateDir, { recursive: true });
  const file = path.join(stateDir, LOCK_NAME);
  const mine: Holder = { pid: process.pid, host: os.hostname(), at: new Date().toISOString(), what };
  for (let attempt = 0; attempt < 5; attempt += 1) {
    try {
      const fd = fs.openSync(file, 'wx');
      try {
        fs.writeFileSync(fd, JSON.stringify(mine));
      } finally {
        fs.closeSync(fd);
      }
      return {
        file,
        release() {
          // Only our own: a lock that was taken over meanwhile belongs to its new holder.
          if (readHolder(file)?.pid === process.pid) fs.rmSync(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = readHolder(file);
    if (holder === undefined) {
      // Created a moment ago and not yet written: the other process is alive, by definition.
      const age = Date.now() - (fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0);
      if (age < 2_000) throw new TargetBusyError(`another Moderator process is starting on this target (${file}); wait for it or stop it first`);
    } else if (holder.pid === process.pid && holder.host === os.hostname()) {
      throw new TargetBusyError(`this process already holds ${file}`);
    } else if (holder.host !== os.hostname() || isAlive(holder.pid)) {
      throw new TargetBusyError(`${holder.what} is using this target (process ${holder.pid} on ${holder.host}, since ${holder.at}); wait for it or stop it first`);
    }
    // Stale: move it aside. Two processes may both judge it stale; the second rename would then
    // move the first one's fresh lock, so what was moved is read back, and a live lock is put
    // back (link fails if a third process created one meanwhile) before giving way.
    const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(file, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      continue;
    }
    const moved = readHolder(aside);
    if (moved !== undefined && (moved.pid !== holder?.pid || moved.at !== holder?.at)) {
      try {
        fs.linkSync(aside, file);
      } catch {
        // A third process holds it now; it is theirs either way.
      }
      fs.rmSync(aside, { force: true });
      throw new TargetBusyError(`${moved.what} is using this target (process ${moved.pid}); wait for it or stop it first`);
    }
    fs.rmSync(aside, { force: true });
  }
  throw new TargetBusyError(`could not take ${file}: other processes keep taking it; wait for them or stop them first`);
}
