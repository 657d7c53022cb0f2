import type { Repository } from './repository.ts';

/** One file of a commit's tree, as `git ls-tree -l` lists it. */
export interface TreeEntry {
  path: string;
  /** `100644`, `100755`, `120000` (a symlink). Submodules are not listed. */
  mode: string;
  blob: string;
  size: number;
}

/** A path that differs between two commits, with what it is in the second (nothing when deleted). */
export type TreeChange = { path: string; status: 'deleted' } | { path: string; status: 'changed'; mode: string; blob: string };

/**
 * Read-only questions about commits' trees, for the repository map (services/context): one git
 * call each, reading git's objects rather than walking the work tree, so a map is built once per
 * process from `ls-tree` and then updated from `diff-tree` (what changed between two commits).
 */
export class Trees {
  constructor(private readonly repo: Repository) {}

  /** The commit `rev` names in `cwd` (a worktree's HEAD, a branch). */
  async commitOf(cwd: string, rev: string): Promise<string> {
    return this.repo.revParse(cwd, `${rev}^{commit}`);
  }

  /** Every file of the commit's tree, sorted by path, with its blob and size. */
  async list(cwd: string, commit: string): Promise<TreeEntry[]> {
    const out = await this.repo.git(cwd, ['ls-tree', '-r', '-l', '-z', '--full-tree', commit]);
    const entries: TreeEntry[] = [];
    for (const record of out.split('\0')) {
      // `<mode> SP <type> SP <object> SP <size, right-aligned> TAB <path>`
      const tab = record.indexOf('\t');
      if (tab < 0) continue;
      const [mode = '', type = '', blob = '', size = ''] = record.slice(0, tab).split(/ +/);
      if (type !== 'blob') continue;
      entries.push({ path: record.slice(tab + 1), mode, blob, size: Number(size) || 0 });
    }
    return entries;
  }

  /** Paths whose content or mode differs from `from` to `to` (no rename detection: a rename is a delete and an add). */
  async changes(cwd: string, from: string, to: string): Promise<TreeChange[]> {
    const out = await this.repo.git(cwd, ['diff-tree', '-r', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', from, to]);
    const fields = out.split('\0');
    const changes: TreeChange[] = [];
    for (let index = 0; index + 1 < fields.length; index += 2) {
      // `:<old mode> <new mode> <old blob> <new blob> <status>` NUL `<path>` NUL
      const [, newMode = '', , newBlob = '', status = ''] = (fields[index] ?? '').replace(/^:/, '').split(' ');
      const file = fields[index + 1] ?? '';
      if (file === '') continue;
      if (status.startsWith('D') || newMode === '160000') changes.push({ path: file, status: 'deleted' });
      else changes.push({ path: file, status: 'changed', mode: newMode, blob: newBlob });
    }
    return changes;
  }

  /** Paths of a work tree that differ from its HEAD: edited, added, deleted or untracked. */
  uncommitted(cwd: string): Promise<string[]> {
    return this.repo.dirtyPaths(cwd);
  }
}
