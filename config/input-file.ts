import fs from 'node:fs';
import { ModeratorError } from '../errors.ts';

/**
 * Files a person names on the command line (`--config`, `--agents`, `--replay`, `--record`) are
 * read whole, so each is read through here: only a regular file, and never more than a cap.
 * `--config /dev/zero` would otherwise read until memory runs out (8 GB was seen), and a named
 * pipe would hold the process at `open` forever.
 */

/** The most a settings file (duo-agent.config.yaml, agents.yaml) may hold; see readYamlFile for why this much. */
export const SETTINGS_FILE_CAP = 128 * 1024;
/** The most a recorded session may hold: the bundled demo's is 54 KB, a long real run a few MB. */
export const SESSION_FILE_CAP = 64 * 1024 * 1024;

/** The file named is not one Moderator reads: `problem` completes "<file> ..." ("is a character device, not a regular file", "is 2.4 MiB, over the 128 KiB limit"). */
export class InputFileError extends ModeratorError {
  readonly problem: string;

  constructor(file: string, problem: string) {
    super('usage', `${file} ${problem}`);
    this.problem = problem;
  }
}

function kindOf(stat: fs.Stats): string {
  if (stat.isDirectory()) return 'a folder';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isSocket()) return 'a socket';
  return 'not a plain file';
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Reads a regular file of at most `capBytes` as UTF-8, reading no more than `capBytes + 1` bytes
 * whatever its size says (a file in /proc says 0 and has content; a file may grow meanwhile).
 * Throws an InputFileError for anything else, and the errno error (ENOENT, EACCES, ...) of a file
 * that cannot be opened, for the caller to phrase.
 */
export function readInputFile(file: string, capBytes: number): string {
  // O_NONBLOCK: opening a named pipe must not wait for a writer; it is refused just below.
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new InputFileError(file, `is ${kindOf(stat)}, not a regular file`);
    const tooBig = (size?: number) => new InputFileError(file, `is ${size === undefined ? 'over' : `${formatBytes(size)}, over`} the ${formatBytes(capBytes)} limit`);
    if (stat.size > capBytes) throw tooBig(stat.size);
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, capBytes + 1 - length));
      const read = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      length += read;
      if (length > capBytes) throw tooBig();
    }
    return Buffer.concat(chunks, length).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}
