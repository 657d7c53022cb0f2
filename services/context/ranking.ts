import type { MapFile } from './repo-map.ts';

/**
 * Which files of the map matter to a task, by its words. A file's terms are the words of its path
 * and of its declarations (camelCase, snake_case and kebab-case split, lower-cased); the task's
 * are the words of its title, description, criteria (and review comments). A file scores the sum,
 * over the terms it shares with the task, of each term's rarity in the repository (ln(1 + N/df)),
 * so `registry` in a task ranks src/registry.js far above files that merely share `src`.
 * Files the task names and files earlier attempts touched come first whatever their score.
 * Deterministic: ties go to the shallower path, then to the path in byte order.
 */

export interface RankedFile {
  file: MapFile;
  score: number;
  why: 'named' | 'touched' | 'relevant' | 'other';
}

/** Words too common in task text to tell files apart. */
const STOPWORDS = new Set([
  'the', 'and', 'for', 'with', 'that', 'this', 'from', 'into', 'each', 'its', 'are', 'was', 'were', 'has', 'have', 'had', 'not', 'but',
  'all', 'any', 'can', 'will', 'should', 'must', 'when', 'then', 'than', 'also', 'only', 'one', 'two', 'new', 'add', 'adds', 'added',
  'use', 'uses', 'used', 'make', 'makes', 'made', 'get', 'gets', 'set', 'sets', 'returns', 'return', 'given', 'which', 'what', 'how',
  'they', 'them', 'their', 'there', 'here', 'out', 'our', 'you', 'your', 'via', 'per', 'like', 'same', 'other', 'more', 'most', 'such',
  'file', 'files', 'code', 'task', 'change', 'changes', 'work', 'works', 'does', 'done', 'keep', 'keeps', 'just', 'about', 'after', 'before',
  'src', 'lib', 'js', 'ts', 'mjs', 'cjs', 'tsx', 'jsx', 'index',
]);

/** The words of a text: identifiers split at case changes, digits and separators, lower-cased. */
export function termsOf(text: string): Set<string> {
  const terms = new Set<string>();
  const split = text
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .replace(/([A-Za-z])(\d)/g, '$1 $2')
    .replace(/(\d)([A-Za-z])/g, '$1 $2');
  for (const word of split.toLowerCase().split(/[^a-z0-9]+/)) {
    if (word === '' || STOPWORDS.has(word)) continue;
    // Numbers tell tasks apart (step 12, v2); single letters and two-letter words mostly do not.
    if (!/^\d+$/.test(word) && word.length < 3) continue;
    terms.add(word);
  }
  return terms;
}

/**
 * A file's terms and depth, kept by its map entry: a snapshot's entries are shared with the next
 * snapshot's for every file that did not change (RepoMap), so each prompt splits only new files.
 */
const fileFacts = new WeakMap<MapFile, { terms: ReadonlySet<string>; depth: number }>();

function factsOf(file: MapFile): { terms: ReadonlySet<string>; depth: number } {
  let facts = fileFacts.get(file);
  if (facts === undefined) {
    facts = { terms: termsOf(`${file.path} ${file.declarations.join(' ')}`), depth: file.path.split('/').length };
    fileFacts.set(file, facts);
  }
  return facts;
}

/** The characters a path is mentioned with as one word: a mention starts and ends at the edges of a run of them. */
const PATH_RUN = /[A-Za-z0-9_./-]+/g;
const PATH_ONLY = /^[A-Za-z0-9_./-]+$/;

/** The paths and file names of a map, as namedPaths looks them up; kept by the snapshot's file list. */
interface PathIndex {
  /** Paths made only of PATH_RUN characters, and file names (with a dot, of at most three files) likewise, to their paths. */
  paths: ReadonlySet<string>;
  names: ReadonlyMap<string, readonly string[]>;
  /** Paths and names with other characters (a space, `+`, `@`, non-ASCII), looked for one by one. */
  otherPaths: readonly string[];
  otherNames: ReadonlyMap<string, readonly string[]>;
}

const pathIndexes = new WeakMap<readonly MapFile[], PathIndex>();

function pathIndexOf(files: readonly MapFile[]): PathIndex {
  const kept = pathIndexes.get(files);
  if (kept) return kept;
  const byName = new Map<string, string[]>();
  for (const file of files) {
    const name = file.path.slice(file.path.lastIndexOf('/') + 1);
    const paths = byName.get(name) ?? [];
    paths.push(file.path);
    byName.set(name, paths);
  }
  // A name more than three files have is too vague to be a mention of any of them.
  const names = [...byName].filter(([name, paths]) => name.includes('.') && paths.length <= 3);
  const index: PathIndex = {
    paths: new Set(files.map((file) => file.path).filter((file) => PATH_ONLY.test(file))),
    names: new Map(names.filter(([name]) => PATH_ONLY.test(name))),
    otherPaths: files.map((file) => file.path).filter((file) => !PATH_ONLY.test(file)),
    otherNames: new Map(names.filter(([name]) => !PATH_ONLY.test(name))),
  };
  pathIndexes.set(files, index);
  return index;
}

/**
 * What in a text could be a path or file name made of PATH_RUN characters mentioned as a whole
 * word: each run of those characters, and each start of a run that ends before a dot no letter or
 * digit follows (`src/a.js.` names src/a.js; `a.json` does not name `a.js`, nor `xsrc/a.js` src/a.js).
 */
function mentionsIn(text: string): Set<string> {
  const found = new Set<string>();
  for (const [run] of text.matchAll(PATH_RUN)) {
    found.add(run);
    for (let dot = run.indexOf('.', 1); dot > 0; dot = run.indexOf('.', dot + 1)) {
      if (!/[A-Za-z0-9]/.test(run[dot + 1] ?? '')) found.add(run.slice(0, dot));
    }
  }
  return found;
}

/**
 * Paths of the map a text names: a whole path (`src/store/base.js`) anywhere in it, or a file name
 * (`base.js`, with its extension) that only a few files have (more than three is too vague to be a name).
 * Looked up from the text's words, not by searching the text for every path of the map.
 */
export function namedPaths(text: string, files: readonly MapFile[]): string[] {
  const index = pathIndexOf(files);
  const named = new Set<string>();
  const mentions = mentionsIn(text);
  for (const mention of mentions) {
    if (index.paths.has(mention)) named.add(mention);
    for (const file of index.names.get(mention) ?? []) named.add(file);
  }
  const mentioned = (needle: string) => {
    // A path or name as a whole word: not `xsrc/a.js` nor `a.json` for `a.js`.
    const at = new RegExp(`(^|[^A-Za-z0-9_./-])${needle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9_/-]|\\.[A-Za-z0-9])`);
    return at.test(text);
  };
  for (const file of index.otherPaths) if (mentioned(file)) named.add(file);
  for (const [name, paths] of index.otherNames) if (mentioned(name)) for (const file of paths) named.add(file);
  return [...named].sort();
}

/** Every file of the map, most relevant to the query first (see the module comment). */
export function rankFiles(files: readonly MapFile[], query: { text: string; named: readonly string[]; touched: readonly string[] }): RankedFile[] {
  const wanted = termsOf(query.text);
  const facts = files.map(factsOf);
  const frequency = new Map<string, number>();
  for (const { terms } of facts) for (const term of terms) if (wanted.has(term)) frequency.set(term, (frequency.get(term) ?? 0) + 1);
  const named = new Set(query.named);
  const touched = new Set(query.touched);
  const ranked = files.map((file, index) => {
    let score = 0;
    for (const term of facts[index]?.terms ?? []) {
      const df = frequency.get(term);
      if (df !== undefined) score += Math.log(1 + files.length / df);
    }
    const why: RankedFile['why'] = named.has(file.path) ? 'named' : touched.has(file.path) ? 'touched' : score > 0 ? 'relevant' : 'other';
    return { file, score, why, depth: facts[index]?.depth ?? 0 };
  });
  const order = { named: 0, touched: 1, relevant: 2, other: 3 };
  ranked.sort((a, b) => order[a.why] - order[b.why] || b.score - a.score || a.depth - b.depth || (a.file.path < b.file.path ? -1 : a.file.path > b.file.path ? 1 : 0));
  return ranked.map(({ file, score, why }) => ({ file, score, why }));
}
