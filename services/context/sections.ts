import { estimateTokens } from '../llm/token-count.ts';

/**
 * Prompt sections cut to a token budget, by estimateTokens (it errs high, and loads no tokenizer):
 * file contents, a diff, the end of a test run's output. Each cut says what was left out and how to get it, so a model
 * never mistakes part of a file for all of it.
 */

export interface FileContent {
  path: string;
  content: string;
}

export interface ShownFiles {
  text: string;
  tokens: number;
  shown: string[];
  /** Candidates that did not fit at all. */
  left: string[];
}

/** A line-boundary prefix of `text` within `budget` tokens, and how many lines it holds. */
export function headWithin(text: string, budget: number): { text: string; lines: number } {
  const lines = text.split('\n');
  let used = 0;
  let count = 0;
  for (const line of lines) {
    const cost = estimateTokens(line) + 1;
    if (used + cost > budget) break;
    used += cost;
    count += 1;
  }
  return { text: lines.slice(0, count).join('\n'), lines: count };
}

/** The last lines of `text` within `budget` tokens (a failing test run ends with what matters). */
export function tailWithin(text: string, budget: number): string {
  const lines = text.replace(/\n+$/, '').split('\n');
  let used = 0;
  let first = lines.length;
  while (first > 0) {
    const cost = estimateTokens(lines[first - 1] ?? '') + 1;
    if (used + cost > budget) break;
    used += cost;
    first -= 1;
  }
  return first === 0 ? lines.join('\n') : `[${first} earlier lines left out]\n${lines.slice(first).join('\n')}`;
}

/**
 * Whole files in the order given while they fit; a file that does not fit whole is shown from its
 * start when `cut` allows it (files the task names or earlier attempts touched), with a line that
 * says where it stops, else listed as left out.
 */
export function showFiles(files: readonly (FileContent & { cut: boolean })[], budget: number, readMore: string): ShownFiles {
  const parts: string[] = [];
  const shown: string[] = [];
  const left: string[] = [];
  let used = 0;
  for (const file of files) {
    const body = file.content.endsWith('\n') ? file.content : `${file.content}\n`;
    const whole = `--- ${file.path}\n${body}--- end of ${file.path}`;
    const cost = estimateTokens(whole) + 2;
    if (used + cost <= budget) {
      parts.push(whole);
      shown.push(file.path);
      used += cost;
      continue;
    }
    const room = budget - used - 60;
    if (file.cut && room >= 200) {
      const head = headWithin(body, room);
      const total = body.replace(/\n$/, '').split('\n').length;
      const part = `--- ${file.path} (lines 1-${head.lines} of ${total})\n${head.text}\n--- cut at line ${head.lines}: ${readMore.replace('{path}', file.path).replace('{line}', String(head.lines + 1))}`;
      parts.push(part);
      shown.push(file.path);
      used += estimateTokens(part) + 2;
      continue;
    }
    left.push(file.path);
  }
  return { text: parts.join('\n\n'), tokens: used, shown, left };
}

/**
 * A unified diff within `budget` tokens: whole files' diffs in order while they fit, then each
 * remaining file by its header and a count of what was left out, so the reviewer still sees which
 * files changed and how much.
 */
export function fitDiff(diff: string, budget: number): { text: string; tokens: number; files: number; whole: number } {
  const sections = diff.split(/(?=^diff --git )/m).filter((section) => section.trim() !== '');
  const parts: string[] = [];
  let used = 0;
  let whole = 0;
  const unlisted: string[] = [];
  for (const section of sections) {
    const cost = estimateTokens(section);
    if (used + cost <= budget) {
      parts.push(section.replace(/\n$/, ''));
      used += cost;
      whole += 1;
      continue;
    }
    const header = section.split('\n')[0] ?? '';
    const added = (section.match(/^\+(?!\+\+ )/gm) ?? []).length;
    const removed = (section.match(/^-(?!-- )/gm) ?? []).length;
    const note = `${header}\n[the diff of this file is left out for size: +${added} -${removed} lines]`;
    const noteCost = estimateTokens(note);
    // Past the budget even for the notes, the rest are only named.
    if (used + noteCost > budget) {
      unlisted.push(header.replace(/^diff --git a\/(\S+) .*$/, '$1'));
      continue;
    }
    parts.push(note);
    used += noteCost;
  }
  if (unlisted.length > 0) {
    const line = `[${unlisted.length} more changed files left out for size: ${unlisted.slice(0, 20).join(', ')}${unlisted.length > 20 ? ', ...' : ''}]`;
    parts.push(line);
    used += estimateTokens(line);
  }
  return { text: parts.join('\n'), tokens: used, files: sections.length, whole };
}
