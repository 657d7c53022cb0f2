import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { ConfigError } from './config-error.ts';
import { InputFileError, SETTINGS_FILE_CAP, readInputFile } from './input-file.ts';
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
 * The first key a mapping repeats, as a JavaScript object would see it (`1` and `"1"` are one
 * property). yaml's own `uniqueKeys` check compares each key with every earlier one through its
 * node equality: quadratic, 3.7 s for 20,000 keys here, minutes for 200,000; this is one Set per
 * mapping.
 */
function firstDuplicateKey(doc: Yaml.Document.Parsed): Yaml.Node | undefined {
  const { isScalar, visit } = yamlModule();
  let duplicate: Yaml.Node | undefined;
  visit(doc, {
    Map(_, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (seen.has(key)) {
          duplicate = pair.key as Yaml.Node;
          return visit.BREAK;
        }
        seen.add(key);
      }
      return undefined;
    },
  });
  return duplicate;
}

/**
 * Reads a YAML settings file. Returns undefined when the file does not exist and
 * `missingSource` is undefined (a default location may be absent); with `missingSource`
 * (the flag that named the file) a missing file is an error. An empty file is `{}`.
 * Only a regular file of at most SETTINGS_FILE_CAP is read: parsing that much takes ~0.3-0.5 s
 * at worst here (one mapping of ~10,000 keys, on 2 busy cores), a real settings file a few KB.
 */
export function readYamlFile(
  file: string,
  label: string,
  missingSource?: string,
): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readInputFile(file, SETTINGS_FILE_CAP);
  } catch (error) {
    if (error instanceof InputFileError) {
      throw ConfigError.of(missingSource ?? label, '', `cannot read "${label}": it ${error.problem}`, { cause: error });
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingSource === undefined) return undefined;
    const why = code === 'ENOENT' ? 'no such file' : code === 'ENOTDIR' ? 'part of its path is not a folder' : (code ?? 'unreadable');
    throw ConfigError.of(missingSource ?? label, '', `cannot read "${label}": ${why}`, { cause: error });
  }

  const { LineCounter, parseDocument } = yamlModule();
  const lineCounter = new LineCounter();
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `line ${line}, column ${col}`;
  };
  let doc: Yaml.Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  } catch (error) {
    // Thousands of nested brackets overflow the parser's stack.
    throw ConfigError.of(label, '', `invalid YAML: ${(error as Error).message}`, { cause: error });
  }
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    throw ConfigError.of(label, '', `invalid YAML at ${at(syntax.pos[0])}: ${syntax.message}`, { cause: syntax });
  }
  const duplicate = firstDuplicateKey(doc);
  if (duplicate !== undefined) {
    throw ConfigError.of(label, '', `invalid YAML at ${at(duplicate.range?.[0] ?? 0)}: the key ${JSON.stringify(String(duplicate))} appears twice in one mapping`);
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
