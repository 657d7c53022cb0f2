import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** Every `*.lock` file below `dir` (ref locks a killed git leaves under `refs/`). */
export async function findLockFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await findLockFiles(full)));
    else if (entry.name.endsWith('.lock')) found.push(full);
  }
  return found;
}

/**
 * Deletes `lock` if it exists, after giving a young one up to `waitMs` (by its age) to go away
 * on its own: a git process orphaned by the crash may still be finishing, and deleting a live
 * lock lets two writers corrupt the index. True when a lock was deleted.
 */
export async function removeStaleLock(lock: string, waitMs: number): Promise<boolean> {
  for (;;) {
    let stat: Stats;
    try {
      stat = await fs.stat(lock);
    } catch {
      return false;
    }
    if (Date.now() - stat.mtimeMs >= waitMs) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await fs.rm(lock, { force: true });
  return true;
}
