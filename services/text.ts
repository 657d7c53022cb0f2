/** Small text helpers for the one-line messages and progress output every layer writes. */

/** `1 task`, `2 tasks`; `plural(n, 'entry', 'entries')` for the irregular ones. */
export function plural(count: number, word: string, many = `${word}s`): string {
  return `${count} ${count === 1 ? word : many}`;
}

/** Keeps a text on one line and short: whitespace runs become one space, an ellipsis marks the cut. */
export function oneLine(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The first line of a text (a commit summary, a model's summary), cut to `max` characters. */
export function firstLine(text: string, max = 100): string {
  return oneLine(text.trim().split('\n')[0] ?? '', max);
}

/** The last `count` non-empty lines of an output, for showing why a command failed. */
export function lastLines(text: string, count: number): string[] {
  return text.split('\n').map((line) => line.trimEnd()).filter((line) => line.trim() !== '').slice(-count);
}
