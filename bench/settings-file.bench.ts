/**
 * How long a settings file at its size cap (SETTINGS_FILE_CAP) takes to read and parse, for the
 * shapes that cost the YAML parser most: one mapping of as many keys as fit, one flow mapping
 * likewise, and as many aliases as fit. Prints ONE JSON line: milliseconds per shape (the median
 * of `runs`, default 5), the cap, and the load average. Goal: each under ~1 s on a busy 2-core
 * machine. yaml's own uniqueKeys check (off in readYamlFile) is timed too, on the first shape,
 * for comparison: it is quadratic in the keys of a mapping.
 *
 *   node --import tsx bench/settings-file.bench.ts [runs]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { SETTINGS_FILE_CAP } from '../config/input-file.ts';
import { readYamlFile } from '../config/yaml-file.ts';

const runs = Number(process.argv[2] ?? 5);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-settings-bench-'));

/** Lines from `line(i)` until the next one would pass the cap, then `end`. */
function fill(head: string, line: (index: number) => string, end = ''): string {
  let text = head;
  for (let index = 0; ; index += 1) {
    const next = line(index);
    if (Buffer.byteLength(text) + Buffer.byteLength(next) + Buffer.byteLength(end) > SETTINGS_FILE_CAP) return text + end;
    text += next;
  }
}

const shapes: Record<string, string> = {
  keys: fill('model:\n  prices:\n', (index) => `    k${index}: ${index}\n`),
  flowMapping: fill('model: {', (index) => `k${index}: ${index}, `, 'z: 0}\n'),
  aliases: fill('a: &a [1]\n', (index) => `k${index}: *a\n`),
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0);
}

function time(work: () => void): number {
  const started = performance.now();
  work();
  return performance.now() - started;
}

const result: Record<string, number | string> = { capBytes: SETTINGS_FILE_CAP };
for (const [name, text] of Object.entries(shapes)) {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, text);
  result[`${name}Ms`] = median(Array.from({ length: runs }, () => time(() => {
    try {
      readYamlFile(file, name);
    } catch {
      // Refused (a wrong type, too many aliases): still read and parsed in full, which is what is timed.
    }
  })));
}
result.keysWithUniqueKeysCheckMs = median(Array.from({ length: Math.min(runs, 3) }, () => time(() => parseDocument(shapes.keys ?? '', { uniqueKeys: true }))));
result.loadAverage = os.loadavg()[0]?.toFixed(2) ?? '';
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(result));
