import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../config/index.ts';
import { estimateTokens } from '../llm/token-count.ts';
import { namedPaths, rankFiles, type RankedFile } from './ranking.ts';
import { renderMap } from './render-map.ts';
import { RepoMap, type MapFile, type RepoSnapshot, type TreeSource } from './repo-map.ts';
import { fitDiff, showFiles, tailWithin } from './sections.ts';
import { ConversationWindow, type WindowOptions } from './window.ts';

/** The budgets every prompt is built within (from `limits.max_context_tokens` and `context.*`). */
export interface ContextSettings {
  maxContextTokens: number;
  /** A step's opening prompt beyond the system prompt and tools: at most 40% of the context. */
  promptTokens: number;
  /** Of those, the repository map's: at most half. */
  mapTokens: number;
  keepTurns: number;
}

/** The opening prompt takes at most this share of a conversation's limit: the rest is room for the tool loop. */
const PROMPT_SHARE = 0.4;
/** A failing test run's last lines get at most this much of a prompt. */
const TEST_OUTPUT_TOKENS = 1500;
/** Without tools, at most this many files beyond those named or touched are shown, each relevant at least half as much as the best. */
const RELEVANT_FILES = 6;

export function contextSettings(config: Pick<Config, 'limits' | 'context'>): ContextSettings {
  const maxContextTokens = config.limits.max_context_tokens;
  const promptTokens = Math.max(1, Math.min(config.context.prompt_tokens, Math.floor(maxContextTokens * PROMPT_SHARE)));
  return { maxContextTokens, promptTokens, mapTokens: Math.max(1, Math.min(config.context.map_tokens, Math.floor(promptTokens / 2))), keepTurns: config.context.keep_turns };
}

/** What a task's prompt is chosen by: its words, and the files its branch already changed. */
export interface TaskQuery {
  /** Title, description, criteria, and for a revision the review's comments. */
  text: string;
  /** Files earlier attempts touched: the branch's changes and the worktree's uncommitted ones. */
  touched: readonly string[];
}

export interface TaskContextOptions {
  /** The task's worktree, at the commit to map. */
  cwd: string;
  query: TaskQuery;
  /** With tools the model reads the rest itself: only named and touched files are shown. Without, the most relevant ones too. */
  withTools: boolean;
  /** The output of the last failing test run, if any. */
  testOutput?: string | undefined;
  /** Tokens the rest of the prompt already takes (task text, review comments), out of `promptTokens`. */
  reserved: number;
}

export interface TaskContext {
  /** The sections, ready to join into the prompt: the map, the files, the test output. */
  sections: string[];
  tokens: number;
  named: string[];
  shown: string[];
  left: string[];
}

/**
 * What every prompt of a run is built from, within its budgets: the repository map (kept by git,
 * see RepoMap), the files that matter to a task, a diff and a test run cut to size, and the
 * conversation windows that keep each step's tool loop under `limits.max_context_tokens`.
 */
export class ContextManager {
  readonly map: RepoMap;

  constructor(
    readonly settings: ContextSettings,
    trees: TreeSource,
  ) {
    this.map = new RepoMap(trees);
  }

  /**
   * A task's map, files and test output, within `promptTokens` less what the rest of its prompt
   * takes: the test output first (at most TEST_OUTPUT_TOKENS), then the map (at most `mapTokens`,
   * at most half of what is left), then the files named by the task and touched by earlier
   * attempts (cut where they do not fit whole), and without tools the most relevant other files.
   */
  async forTask(options: TaskContextOptions): Promise<TaskContext> {
    const snapshot = await this.map.at(options.cwd);
    const named = namedPaths(options.query.text, snapshot.files);
    const ranked = rankFiles(snapshot.files, { text: options.query.text, named, touched: options.query.touched });
    let budget = Math.max(0, this.settings.promptTokens - options.reserved);
    const sections: string[] = [];

    if (options.testOutput) {
      const tests = `The last test run failed; its last lines:\n${tailWithin(options.testOutput, Math.min(TEST_OUTPUT_TOKENS, Math.floor(budget / 4)))}`;
      sections.push(tests);
      budget -= estimateTokens(tests);
    }
    const map = renderMap(snapshot, ranked, Math.min(this.settings.mapTokens, Math.floor(budget / 2)), `Repository map at ${snapshot.commit.slice(0, 8)}`);
    sections.push(`${map.text}\n${options.withTools ? 'Read any file with read_file; list_files and search find the rest.' : 'Only the files below are shown in full; write every file you change whole.'}`);
    budget -= map.tokens + 20;

    const candidates = [
      ...ranked.filter((entry) => entry.why === 'named' || entry.why === 'touched').map((entry) => ({ entry, cut: true })),
      ...(options.withTools ? [] : relevant(ranked).map((entry) => ({ entry, cut: false }))),
    ];
    const contents = candidates.flatMap(({ entry, cut }) => {
      const content = readText(options.cwd, entry.file);
      return content === undefined ? [] : [{ path: entry.file.path, content, cut }];
    });
    const readMore = options.withTools ? 'read_file {path} from line {line} for the rest' : 'the rest of the file is not shown';
    const files = showFiles(contents, Math.max(0, budget), readMore);
    if (files.text !== '') {
      const left = files.left.length > 0 ? `\n(left out for size: ${files.left.join(', ')})` : '';
      sections.push(`${options.withTools ? 'Files the task names or earlier attempts changed' : 'Files the task names, earlier attempts changed, or that look relevant'}:\n${files.text}${left}`);
    }
    return { sections, tokens: sections.reduce((sum, section) => sum + estimateTokens(section), 0), named, shown: files.shown, left: files.left };
  }

  /** The map of the base branch for the Ever-Thinker, ranked by the run's requirements and work, and what the map measures. */
  async forProject(cwd: string, branch: string, query: string, reserved: number): Promise<{ map: string; signals: string[] }> {
    const snapshot = await this.map.at(cwd, `refs/heads/${branch}`);
    const ranked = rankFiles(snapshot.files, { text: query, named: [], touched: [] });
    const budget = Math.max(0, Math.min(this.settings.mapTokens * 2, this.settings.promptTokens - reserved));
    const map = renderMap(snapshot, ranked, budget, `Repository map of ${branch} at ${snapshot.commit.slice(0, 8)}`);
    return { map: map.text, signals: mapSignals(snapshot) };
  }

  /** A diff within the review's share of the prompt. */
  diff(diff: string, reserved: number): { text: string; files: number; whole: number } {
    return fitDiff(diff, Math.max(500, this.settings.promptTokens - reserved));
  }

  /** The end of a test run's output, within TEST_OUTPUT_TOKENS. */
  testTail(output: string): string {
    return tailWithin(output, Math.min(TEST_OUTPUT_TOKENS, Math.floor(this.settings.promptTokens / 4)));
  }

  /** A conversation kept within `limits.max_context_tokens` (see ConversationWindow). */
  window(options: Omit<WindowOptions, 'limit' | 'keepTurns'>, prompt: string): ConversationWindow {
    return new ConversationWindow({ ...options, limit: this.settings.maxContextTokens, keepTurns: this.settings.keepTurns }, prompt);
  }
}

/** The files relevant to the task beyond those it names: at least half as relevant as the best, at most RELEVANT_FILES. */
function relevant(ranked: readonly RankedFile[]): RankedFile[] {
  const others = ranked.filter((entry) => entry.why === 'relevant' && !entry.file.binary);
  const best = others[0]?.score ?? 0;
  return others.filter((entry) => entry.score >= best / 2).slice(0, RELEVANT_FILES);
}

function readText(cwd: string, file: MapFile): string | undefined {
  if (file.binary) return undefined;
  try {
    const buffer = fs.readFileSync(path.join(cwd, file.path));
    return buffer.subarray(0, 8000).includes(0) ? undefined : buffer.toString('utf8');
  } catch {
    return undefined;
  }
}

const TEST_PATH = /(^|\/)(tests?|__tests__|spec)\/|[._-](test|spec)\.[^/]+$|(^|\/)test_[^/]+$/;
const SOURCE = /\.(m?[jt]sx?|cjs|cts|py|go|rs|java|kt|rb|php|cs|c|cc|cpp|h|hpp)$/;

/** What the map itself measures: the largest source files, and source files no test file names. */
export function mapSignals(snapshot: RepoSnapshot): string[] {
  const sources = snapshot.files.filter((file) => SOURCE.test(file.path) && !TEST_PATH.test(file.path) && !file.binary);
  const tests = snapshot.files.filter((file) => TEST_PATH.test(file.path)).map((file) => file.path.toLowerCase());
  const stem = (file: string) => file.slice(file.lastIndexOf('/') + 1).replace(/\.[^.]+$/, '').toLowerCase();
  const untested = sources.filter((file) => stem(file.path) !== 'index' && !tests.some((test) => test.includes(stem(file.path))));
  const largest = [...sources].sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1)).slice(0, 3);
  const signals = [`source files: ${sources.length}, test files: ${tests.length}, ${(snapshot.bytes / 1024).toFixed(0)} KB in all`];
  if (largest.length > 0) signals.push(`largest source files: ${largest.map((file) => `${file.path} (${(file.size / 1024).toFixed(1)} KB, ${file.declarations.length} declarations)`).join(', ')}`);
  if (untested.length > 0) signals.push(`source files no test file names: ${untested.length}${untested.length > 0 ? ` (${untested.slice(0, 5).map((file) => file.path).join(', ')}${untested.length > 5 ? ', ...' : ''})` : ''}`);
  return signals;
}
