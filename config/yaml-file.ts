import fs from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { ConfigError } from './config-error.ts';
import { describeFound } from './issues.ts';
import { isMapping } from './layers.ts';

const require = createRequire(import.meta.url);
let yaml: typeof Yaml | undefined;
/**
 * The yaml package, loaded when the first file is read: a resume reads no settings file, nor does
 * a run on a target without one, and yaml was ~100 ms of a loaded machine's start-up. require,
 * not import(), because config loading is synchronous; the package ships CommonJS for Node.
 */
const yamlModule = (): typeof Yaml => (yaml ??= require('yaml') as typeof Yaml);

/**
 * Reads a YAML settings file. Returns undefined when the file does not exist and
 * `missingSource` is undefined (a default location may be absent); with `missingSource`
 * (the flag that named the file) a missing file is an error. An empty file is `{}`.
 */
export function readYamlFile(
  file: string,
  label: string,
  missingSource?: string,
): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingSource === undefined) return undefined;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? 'unreadable');
    throw ConfigError.of(missingSource ?? label, '', `cannot read "${label}": ${why}`, { cause: error });
  }

  const { LineCounter, parseDocument } = yamlModule();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    const { line, col } = lineCounter.linePos(syntax.pos[0]);
    const problem = `invalid YAML at line ${line}, column ${col}: ${syntax.message}`;
    throw ConfigError.of(label, '', problem, { cause: syntax });
  }

  let values: unknown;
  try {
    values = doc.toJS();
  } catch (error) {
    // Unresolved aliases and alias bombs surface only here.
    throw ConfigError.of(label, '', `invalid YAML: ${(error as Error).message}`, { cause: error });
  }
  if (values === null || values === undefined) return {};
  if (!isMapping(values)) {
    throw ConfigError.of(label, '', `expected a mapping of settings at the top level, found ${describeFound(values)}`);
  }
  return values;
}
