import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TreeChange, TreeEntry } from '../git/trees.ts';
import { MAX_OUTLINE_BYTES, outlineOf, type OutlineParser } from './outline.ts';

/** What the map asks of git (GitService has these): one call each, reading objects, not the work tree. */
export interface TreeSource {
  commitOf(cwd: string, rev: string): Promise<string>;
  listTree(cwd: string, commit: string): Promise<TreeEntry[]>;
  treeChanges(cwd: string, from: string, to: string): Promise<TreeChange[]>;
}

/** One file of the map. */
export interface MapFile {
  path: string;
  size: number;
  blob: string;
  declarations: readonly string[];
  parser: OutlineParser;
  /** Not text (a NUL byte in its first 8000 bytes, as git decides), or a symlink: never shown whole. */
  binary: boolean;
}

/** The map of one commit. */
export interface RepoSnapshot {
  commit: string;
  /** Sorted by path. */
  files: readonly MapFile[];
  byPath: ReadonlyMap<string, MapFile>;
  bytes: number;
}

/** How the map was kept, for tests and the benchmark: full listings, incremental updates, files read and parsed. */
export interface RepoMapStats {
  listed: number;
  updated: number;
  read: number;
  outlined: number;
}

/** Snapshots kept by commit: a task's implement, test and review steps ask for the same few. */
const KEPT_SNAPSHOTS = 8;
/** git looks for a NUL byte in this much of a file to call it binary. */
const BINARY_PROBE_BYTES = 8000;

interface Known {
  size: number;
  declarations: readonly string[];
  parser: OutlineParser;
  binary: boolean;
}

/**
 * The repository map: every file of a commit with its size and top-level declarations. Built once
 * per process from `git ls-tree` (no walk of the work tree), then, for each later commit, updated
 * from `git diff-tree` against the last commit mapped: only the files that changed are read and
 * parsed. Outlines are kept by blob id, so a file that is the same in two worktrees is parsed once.
 *
 * A file's content is read from the checkout at `cwd` (which has the commit checked out: a task's
 * worktree at its HEAD, the target at its base branch). The content is hashed as git hashes a
 * blob: only when it is the blob the tree names is its outline kept under that blob; an edited,
 * uncommitted file is outlined as it is on disk but not remembered as the committed blob.
 */
export class RepoMap {
  readonly stats: RepoMapStats = { listed: 0, updated: 0, read: 0, outlined: 0 };
  private readonly known = new Map<string, Known>();
  private readonly snapshots = new Map<string, RepoSnapshot>();
  private latest: RepoSnapshot | undefined;
  /** One map update at a time: concurrent steps (parallel TechLeads) would otherwise diff from a moving base. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly source: TreeSource) {}

  /** The map of `rev` as checked out at `cwd` (default its HEAD). */
  at(cwd: string, rev = 'HEAD'): Promise<RepoSnapshot> {
    const next = this.queue.then(() => this.build(cwd, rev));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async build(cwd: string, rev: string): Promise<RepoSnapshot> {
    const commit = await this.source.commitOf(cwd, rev);
    const kept = this.snapshots.get(commit);
    if (kept) return kept;
    let byPath: Map<string, MapFile>;
    if (this.latest) {
      this.stats.updated += 1;
      byPath = new Map(this.latest.byPath);
      for (const change of await this.source.treeChanges(cwd, this.latest.commit, commit)) {
        if (change.status === 'deleted') byPath.delete(change.path);
        else byPath.set(change.path, this.fileOf(cwd, { path: change.path, mode: change.mode, blob: change.blob, size: -1 }));
      }
    } else {
      this.stats.listed += 1;
      byPath = new Map((await this.source.listTree(cwd, commit)).map((entry) => [entry.path, this.fileOf(cwd, entry)]));
    }
    const files = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const snapshot: RepoSnapshot = { commit, files, byPath: new Map(files.map((file) => [file.path, file])), bytes: files.reduce((sum, file) => sum + file.size, 0) };
    this.snapshots.set(commit, snapshot);
    if (this.snapshots.size > KEPT_SNAPSHOTS) this.snapshots.delete(this.snapshots.keys().next().value as string);
    this.latest = snapshot;
    return snapshot;
  }

  /** A file of the map: what is known of its blob, else read and outlined now. `size` -1: git did not say. */
  private fileOf(cwd: string, entry: TreeEntry): MapFile {
    const known = this.known.get(entry.blob);
    if (known) return { path: entry.path, blob: entry.blob, ...known };
    if (entry.mode === '120000') return { path: entry.path, size: Math.max(entry.size, 0), blob: entry.blob, declarations: [], parser: 'none', binary: true };
    const read = this.read(path.join(cwd, entry.path), entry.size);
    // Gone from the checkout: listed with what git says of it.
    if (!read) return { path: entry.path, size: Math.max(entry.size, 0), blob: entry.blob, declarations: [], parser: 'none', binary: false };
    const outline: Known = read.content === undefined
      ? { size: read.size, declarations: [], parser: 'none', binary: read.binary }
      : { size: read.size, ...outlineOf(entry.path, read.content), binary: false };
    if (read.content !== undefined) this.stats.outlined += 1;
    // Too large to read: nothing to outline, whatever its content. Otherwise kept only if it is the committed blob.
    if (read.tooLarge || blobId(read.buffer, entry.blob.length) === entry.blob) this.known.set(entry.blob, outline);
    return { path: entry.path, blob: entry.blob, ...outline };
  }

  private read(file: string, size: number): { size: number; buffer: Buffer; content: string | undefined; binary: boolean; tooLarge: boolean } | undefined {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return undefined;
    }
    try {
      const actual = size >= 0 ? size : fs.fstatSync(fd).size;
      if (actual > MAX_OUTLINE_BYTES) return { size: actual, buffer: Buffer.alloc(0), content: undefined, binary: false, tooLarge: true };
      this.stats.read += 1;
      const buffer = fs.readFileSync(fd);
      const binary = buffer.subarray(0, BINARY_PROBE_BYTES).includes(0);
      return { size: buffer.length, buffer, content: binary ? undefined : buffer.toString('utf8'), binary, tooLarge: false };
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The id git gives a blob of these bytes: SHA-1 for 40-digit ids, SHA-256 for 64 (a sha256 repository). */
function blobId(buffer: Buffer, length: number): string {
  return createHash(length === 64 ? 'sha256' : 'sha1').update(`blob ${buffer.length}\0`).update(buffer).digest('hex');
}
