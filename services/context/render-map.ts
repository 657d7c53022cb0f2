import { estimateTokens } from '../llm/token-count.ts';
import type { RankedFile } from './ranking.ts';
import type { RepoSnapshot } from './repo-map.ts';

/**
 * The repository map as prompt text, within a token budget. Files are grouped under their folder;
 * the most relevant ones (in the ranking's order) are listed with their size and declarations,
 * the next ones with their size only, and the rest counted per folder on one closing line:
 *
 *   Repository map: 212 files, 384 KB (declarations from TypeScript's parser; "~" marks a line scan)
 *   src/store/
 *     base.js 0.4 KB: normalise(input), lines(text), storeOptions
 *     m12.js 0.9 KB
 *   Not listed: 150 files in src/parse/ (40, 36 KB), test/ (72, 40 KB), ...
 *
 * How many files get declarations and how many a line is found by binary search on the rendered
 * text's token estimate (estimateTokens, per line: no tokenizer is loaded to size a section), so
 * the map stays within the budget and uses most of it. The same snapshot, ranking and budget
 * always give the same text.
 */

export interface RenderedMap {
  text: string;
  tokens: number;
  /** Files listed, and of those with their declarations. */
  listed: number;
  withDeclarations: number;
}

function kilobytes(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function folderOf(file: string): string {
  const slash = file.lastIndexOf('/');
  return slash < 0 ? '' : file.slice(0, slash + 1);
}

/** The first `depth` folders of a path (`src/store/` at depth 2), or `./` for top-level files. */
function folderPrefix(file: string, depth: number): string {
  const parts = file.split('/').slice(0, -1);
  return parts.length === 0 ? './' : `${parts.slice(0, depth).join('/')}/`;
}

export function renderMap(snapshot: RepoSnapshot, ranked: readonly RankedFile[], budget: number, header: string): RenderedMap {
  const memo = new Map<string, number>();
  const tokensOf = (line: string) => {
    let count = memo.get(line);
    if (count === undefined) {
      count = estimateTokens(line) + 1;
      memo.set(line, count);
    }
    return count;
  };
  const scanned = snapshot.files.some((file) => file.parser === 'line-scan');
  const parsed = snapshot.files.some((file) => file.parser === 'typescript');
  const how = parsed && scanned ? ` (declarations from TypeScript's parser; "~" marks names from a line scan)` : parsed ? ` (declarations from TypeScript's parser)` : scanned ? ` ("~" marks declarations from a line scan)` : '';
  const title = `${header}: ${snapshot.files.length} files, ${kilobytes(snapshot.bytes)}${how}`;

  // The binary searches below render some 20 times: what is not listed is counted from these totals
  // less the files a render lists, not by walking every file of the map each time.
  const totals = folderTotals(ranked);
  const render = (withDeclarations: number, listed: number): { lines: string[]; tokens: number } => {
    const shown = ranked.slice(0, listed);
    const detailed = new Set(ranked.slice(0, withDeclarations).map((entry) => entry.file.path));
    const byFolder = new Map<string, string[]>();
    for (const { file } of [...shown].sort((a, b) => (a.file.path < b.file.path ? -1 : 1))) {
      const name = file.path.slice(folderOf(file.path).length);
      const declarations = detailed.has(file.path) && file.declarations.length > 0 ? `: ${file.parser === 'line-scan' ? '~' : ''}${file.declarations.join(', ')}` : '';
      const folder = folderOf(file.path);
      const entries = byFolder.get(folder) ?? [];
      entries.push(`${folder === '' ? '' : '  '}${name} ${kilobytes(file.size)}${declarations}`);
      byFolder.set(folder, entries);
    }
    const lines = [title];
    for (const [folder, entries] of byFolder) {
      if (folder !== '') lines.push(folder);
      lines.push(...entries);
    }
    if (listed < ranked.length) lines.push(notListed(totals, shown, budget / 4, tokensOf));
    return { lines, tokens: lines.reduce((sum, line) => sum + tokensOf(line), 0) };
  };

  // The largest count that fits, for a cost that only grows with the count.
  const largest = (limit: number, fits: (count: number) => boolean): number => {
    let low = 0;
    let high = limit;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (fits(middle)) low = middle;
      else high = middle - 1;
    }
    return low;
  };
  const total = ranked.length;
  const withDeclarations = largest(total, (count) => render(count, count).tokens <= budget);
  const listed = largest(total - withDeclarations, (extra) => render(withDeclarations, withDeclarations + extra).tokens <= budget) + withDeclarations;
  const result = render(withDeclarations, listed);
  return { text: result.lines.join('\n'), tokens: result.tokens, listed, withDeclarations };
}

/** The files and bytes under each folder prefix (two levels deep, then one; see folderPrefix), and in all. */
interface FolderTotals {
  count: number;
  bytes: number;
  /** By depth, each folder's totals, in folder order. */
  byDepth: ReadonlyMap<number, ReadonlyMap<string, { count: number; bytes: number }>>;
}

const NOT_LISTED_DEPTHS = [2, 1] as const;

/** The files and bytes under each folder prefix at `depth`. */
function folderSizes(ranked: readonly RankedFile[], depth: number): Map<string, { count: number; bytes: number }> {
  const folders = new Map<string, { count: number; bytes: number }>();
  for (const { file } of ranked) {
    const folder = folderPrefix(file.path, depth);
    const entry = folders.get(folder) ?? { count: 0, bytes: 0 };
    entry.count += 1;
    entry.bytes += file.size;
    folders.set(folder, entry);
  }
  return folders;
}

function folderTotals(ranked: readonly RankedFile[]): FolderTotals {
  const byDepth = new Map<number, Map<string, { count: number; bytes: number }>>();
  for (const depth of NOT_LISTED_DEPTHS) byDepth.set(depth, new Map([...folderSizes(ranked, depth)].sort((a, b) => (a[0] < b[0] ? -1 : 1))));
  return { count: ranked.length, bytes: ranked.reduce((sum, { file }) => sum + file.size, 0), byDepth };
}

/**
 * One line counting the files not listed (all but `listed`), per folder (two levels deep, then
 * one, then none, as the budget allows): where the rest of the repository is, for list_files and
 * read_file.
 */
function notListed(totals: FolderTotals, listed: readonly RankedFile[], budget: number, tokensOf: (line: string) => number): string {
  const count = totals.count - listed.length;
  const bytes = totals.bytes - listed.reduce((sum, { file }) => sum + file.size, 0);
  for (const depth of NOT_LISTED_DEPTHS) {
    const shown = folderSizes(listed, depth);
    const parts: string[] = [];
    for (const [folder, all] of totals.byDepth.get(depth) ?? []) {
      const left = all.count - (shown.get(folder)?.count ?? 0);
      if (left > 0) parts.push(`${folder} (${left}, ${kilobytes(all.bytes - (shown.get(folder)?.bytes ?? 0))})`);
    }
    const line = `Not listed: ${count} files, ${kilobytes(bytes)}, in ${parts.join(', ')}`;
    if (tokensOf(line) <= budget) return line;
  }
  return `Not listed: ${count} more files, ${kilobytes(bytes)}`;
}
