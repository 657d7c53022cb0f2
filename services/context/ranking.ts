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

function fileTerms(file: MapFile): Set<string> {
  return termsOf(`${file.path} ${file.declarations.join(' ')}`);
}

/**
 * Paths of the map a text names: a whole path (`src/store/base.js`) anywhere in it, or a file name
 * (`base.js`, with its extension) that only a few files have (more than three is too vague to be a name).
 */
export function namedPaths(text: string, files: readonly MapFile[]): string[] {
  const named: string[] = [];
  const byName = new Map<string, string[]>();
  for (const file of files) {
    const name = file.path.slice(file.path.lastIndexOf('/') + 1);
    byName.set(name, [...(byName.get(name) ?? []), file.path]);
  }
  const mentioned = (needle: string) => {
    // A path or name as a whole word: not `xsrc/a.js` nor `a.json` for `a.js`.
    const at = new RegExp(`(^|[^A-Za-z0-9_./-])${needle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9_/-]|\\.[A-Za-z0-9])`);
    return at.test(text);
  };
  for (const file of files) if (mentioned(file.path)) named.push(file.path);
  for (const [name, paths] of byName) {
    if (!name.includes('.') || paths.length > 3 || paths.every((candidate) => named.includes(candidate))) continue;
    if (mentioned(name)) for (const candidate of paths) if (!named.includes(candidate)) named.push(candidate);
  }
  return named.sort();
}

const depth = (file: MapFile) => file.path.split('/').length;

/** Every file of the map, most relevant to the query first (see the module comment). */
export function rankFiles(files: readonly MapFile[], query: { text: string; named: readonly string[]; touched: readonly string[] }): RankedFile[] {
  const wanted = termsOf(query.text);
  const terms = files.map(fileTerms);
  const frequency = new Map<string, number>();
  for (const set of terms) for (const term of set) if (wanted.has(term)) frequency.set(term, (frequency.get(term) ?? 0) + 1);
  const named = new Set(query.named);
  const touched = new Set(query.touched);
  const ranked = files.map((file, index): RankedFile => {
    let score = 0;
    for (const term of terms[index] ?? []) {
      const df = frequency.get(term);
      if (df !== undefined) score += Math.log(1 + files.length / df);
    }
    const why = named.has(file.path) ? 'named' : touched.has(file.path) ? 'touched' : score > 0 ? 'relevant' : 'other';
    return { file, score, why };
  });
  const order = { named: 0, touched: 1, relevant: 2, other: 3 };
  return ranked.sort((a, b) => order[a.why] - order[b.why] || b.score - a.score || depth(a.file) - depth(b.file) || (a.file.path < b.file.path ? -1 : a.file.path > b.file.path ? 1 : 0));
}
