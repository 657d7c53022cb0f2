/**
 * The synthetic project and the scripted model of the synthetic-run benchmarks (context, scale).
 *
 * The project: four pipeline areas (src/<area>/base.js and a test each); task i adds
 * src/<area>/m<i>.js (about 0.9 KB) and test/<area>/m<i>.test.js, following the area's base.js
 * it names. The scripted TechLead reads that file, writes the two new files and answers; the
 * revision reads its module, edits it and answers. So the repository grows by two files and
 * ~1.2 KB a task. `createTarget`'s `libraryFiles` adds an established codebase beside it (packages
 * of small modules nobody's task names), so a walk of the whole tree costs what it would in a
 * real repository.
 */
import { execFileSync } from 'node:child_process';
import type { ModelProvider, ModelReply, ModelRequest, ToolCall } from '../services/llm/provider.ts';
import { countRequestTokens } from '../services/llm/token-count.ts';
import { commitFiles } from '../test/helpers/repository.ts';

export const AREAS = ['parse', 'format', 'store', 'route'] as const;

export const fnName = (area: string, index: number) => `${area}M${index}`;
export const areaOf = (index: number) => AREAS[index % AREAS.length] as string;

function baseModule(area: string): string {
  return [
    `/** The ${area} pipeline's shared helpers: every step module builds on these. */`,
    '',
    'export function normalise(input) {',
    "  if (input === undefined || input === null) return '';",
    "  return String(input).replace(/\\r\\n/g, '\\n').trim();",
    '}',
    '',
    'export function lines(text) {',
    "  return text === '' ? [] : text.split('\\n');",
    '}',
    '',
    `export const ${area}Options = { separator: ':', keepEmpty: false };`,
    '',
  ].join('\n');
}

export function stepModule(area: string, index: number, revised = false): string {
  const fn = fnName(area, index);
  return [
    `import { lines, normalise, ${area}Options } from './base.js';`,
    '',
    `/** Step ${index} of the ${area} pipeline: tags every line with its position and the step number. */`,
    `export function ${fn}(input) {`,
    '  const text = normalise(input);',
    ...(revised ? ["  if (text === '') return '';"] : []),
    '  return lines(text)',
    `    .filter((line) => ${area}Options.keepEmpty || line.trim() !== '')`,
    `    .map((line, position) => [position, line, ${index}].join(${area}Options.separator))`,
    "    .join('\\n');",
    '}',
    '',
    `/** How many lines step ${index} keeps. */`,
    `export function ${fn}Count(input) {`,
    `  return lines(normalise(input)).filter((line) => ${area}Options.keepEmpty || line.trim() !== '').length;`,
    '}',
    '',
    `export const ${fn}Meta = { step: ${index}, area: '${area}', stable: ${index % 3 === 0} };`,
    '',
  ].join('\n');
}

export function stepTest(area: string, index: number): string {
  const fn = fnName(area, index);
  return [
    "import { test } from 'node:test';",
    "import assert from 'node:assert/strict';",
    `import { ${fn}, ${fn}Count } from '../../src/${area}/m${index}.js';`,
    '',
    `test('${fn} tags lines', () => assert.equal(${fn}('a\\nb'), '0:a:${index}\\n1:b:${index}'));`,
    `test('${fn}Count counts kept lines', () => assert.equal(${fn}Count('a\\n\\nb'), 2));`,
    '',
  ].join('\n');
}

/** Library modules in packages of LIBRARY_PACKAGE_FILES, each with its own few declarations. */
const LIBRARY_PACKAGE_FILES = 50;

function libraryModule(pkg: number, index: number): string {
  const name = `lib${pkg}_${index}`;
  return [
    `/** Helper ${index} of package ${pkg}: kept small, as most of a mature codebase is. */`,
    `export function ${name}(value) {`,
    `  return typeof value === 'number' ? value * ${index + 1} + ${pkg} : String(value ?? '').length;`,
    '}',
    '',
    `export const ${name}Limit = ${(pkg * 31 + index * 7) % 997};`,
    '',
  ].join('\n');
}

/** The files of the established codebase: `count` of them, README first in each package. */
function libraryFiles(count: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (let index = 0; index < count; index += 1) {
    const pkg = Math.floor(index / LIBRARY_PACKAGE_FILES);
    const file = index % LIBRARY_PACKAGE_FILES;
    if (file === 0) files[`packages/p${pkg}/README.md`] = `# p${pkg}\n\nHelpers ${pkg * LIBRARY_PACKAGE_FILES} to ${(pkg + 1) * LIBRARY_PACKAGE_FILES - 1}.\n`;
    else files[`packages/p${pkg}/src/h${file}.js`] = libraryModule(pkg, file);
  }
  return files;
}

export interface TargetOptions {
  /** Files of an established codebase beside the pipelines (default none). */
  libraryFiles?: number;
  /**
   * Its objects in one pack, as in a cloned repository (default false: loose, as just committed).
   * A checkout of loose objects opens and inflates one file per blob, which a real repository's
   * checkouts do not pay.
   */
  packed?: boolean;
}

/** The target repository on `main`, one commit; returns how many files it tracks. */
export function createTarget(dir: string, options: TargetOptions = {}): number {
  const files: Record<string, string> = {
    'package.json': `${JSON.stringify({ name: 'pipelines', version: '1.0.0', type: 'module', scripts: { test: 'node scripts/check.js' } }, null, 2)}\n`,
    'README.md': '# pipelines\n\nText pipelines in four areas (parse, format, store, route), one module per step.\n',
    'scripts/check.js': "console.log('ok');\n",
    'src/index.js': AREAS.map((area) => `export * as ${area} from './${area}/base.js';`).join('\n') + '\n',
    ...libraryFiles(options.libraryFiles ?? 0),
  };
  for (const area of AREAS) {
    files[`src/${area}/base.js`] = baseModule(area);
    files[`test/${area}/base.test.js`] = `import { test } from 'node:test';\nimport assert from 'node:assert/strict';\nimport { normalise } from '../../src/${area}/base.js';\n\ntest('normalise trims', () => assert.equal(normalise(' a '), 'a'));\n`;
  }
  commitFiles(dir, files, 'The four pipeline areas');
  if (options.packed) execFileSync('git', ['gc', '--quiet'], { cwd: dir, stdio: 'pipe' });
  return Object.keys(files).length;
}

export function planTasks(count: number) {
  return Array.from({ length: count }, (_, offset) => {
    const index = offset + 1;
    const area = areaOf(index);
    const fn = fnName(area, index);
    return {
      id: `T${index}`,
      title: `Add ${area} step ${index}`,
      type: 'feature',
      description: `Add src/${area}/m${index}.js exporting ${fn}(input) and ${fn}Count(input), built on the helpers of src/${area}/base.js, with a test in test/${area}/m${index}.test.js.`,
      acceptance_criteria: [`${fn}('a\\nb') tags each line with its position and ${index}`, `${fn}Count counts the kept lines`, `test/${area}/m${index}.test.js passes`],
      depends_on: [],
    };
  });
}

/** One request the scripted model answered. */
export interface Counted {
  agent: string;
  purpose: string;
  taskId: string | undefined;
  tokens: number;
}

export interface ScriptedModelOptions {
  /**
   * Count every request with gpt-tokenizer's o200k (services/llm/token-count.ts
   * `countRequestTokens`: system prompt, every message, tool definitions); default true. Off, the
   * usage is a length estimate, for benchmarks that measure time and not prompts.
   */
  countTokens?: boolean;
}

/**
 * What a model that does the synthetic tasks right would answer, from the request alone, at once
 * (latency zero). Every tenth task is asked for changes once.
 */
export class ScriptedModel implements ModelProvider {
  readonly name = 'scripted';
  readonly description = 'scripted model (bench/pipelines.ts)';
  readonly counted: Counted[] = [];
  private readonly counting: boolean;

  constructor(private readonly tasks: number, options: ScriptedModelOptions = {}) {
    this.counting = options.countTokens ?? true;
  }

  async complete(request: ModelRequest): Promise<ModelReply> {
    const tokens = this.counting
      ? countRequestTokens(request.system, request.messages, request.tools ?? [])
      : Math.ceil((request.system.length + request.messages.reduce((sum, item) => sum + (item.role === 'tool' ? JSON.stringify(item.results).length : item.content.length), 0)) / 4);
    this.counted.push({ agent: request.agent, purpose: request.purpose, taskId: request.taskId, tokens });
    const answer = this.answer(request);
    const text = typeof answer === 'string' ? answer : '';
    const toolCalls = typeof answer === 'string' ? [] : answer;
    return {
      text,
      toolCalls,
      stopReason: toolCalls.length > 0 ? 'tool_use' : 'end',
      model: 'scripted',
      usage: { inputTokens: tokens, outputTokens: Math.ceil((text.length + JSON.stringify(toolCalls).length) / 4), cacheReadTokens: 0, cacheWriteTokens: 0 },
      costUsd: 0,
      latencyMs: 0,
    };
  }

  private answer(request: ModelRequest): string | ToolCall[] {
    const index = Number(request.taskId?.slice(1) ?? 0);
    const area = areaOf(index);
    const turn = request.messages.filter((item) => item.role === 'tool').length;
    const tools = (request.tools ?? []).length > 0;
    const call = (name: string, input: unknown): ToolCall[] => [{ id: `${request.purpose}-${index}-${turn}`, name, input }];
    switch (request.purpose) {
      case 'clarify':
        return JSON.stringify({ summary: `Pipeline steps in four areas, ${this.tasks} of them.`, assumptions: ['plain ES modules, node:test'], questions: [] });
      case 'plan':
        return JSON.stringify({ tasks: planTasks(this.tasks) });
      case 'implement': {
        const module = { path: `src/${area}/m${index}.js`, content: stepModule(area, index) };
        const test = { path: `test/${area}/m${index}.test.js`, content: stepTest(area, index) };
        if (!tools) return JSON.stringify({ summary: `added ${fnName(area, index)}`, files: [module, test], delete: [] });
        if (turn === 0) return call('read_file', { path: `src/${area}/base.js` });
        if (turn === 1) return [{ id: `w1-${index}`, name: 'write_file', input: module }, { id: `w2-${index}`, name: 'write_file', input: test }];
        return JSON.stringify({ summary: `added ${fnName(area, index)} with its test`, files: [], delete: [] });
      }
      case 'revise': {
        const file = `src/${area}/m${index}.js`;
        if (!tools) return JSON.stringify({ summary: 'empty input returns an empty string', files: [{ path: file, content: stepModule(area, index, true) }], delete: [] });
        if (turn === 0) return call('read_file', { path: file });
        if (turn === 1) return call('edit_file', { path: file, old_text: '  const text = normalise(input);\n', new_text: "  const text = normalise(input);\n  if (text === '') return '';\n" });
        return JSON.stringify({ summary: 'empty input returns an empty string', files: [], delete: [] });
      }
      case 'review': {
        const firstRound = !request.messages.some((item) => item.role === 'user' && /review round [2-9]/.test(item.content));
        if (index % 10 === 0 && firstRound) {
          return JSON.stringify({ verdict: 'request_changes', summary: 'Empty input is not handled.', comments: [`${fnName(area, index)}('') must return '' before splitting`] });
        }
        return JSON.stringify({ verdict: 'approve', summary: 'The step and its test meet the criteria.', comments: [] });
      }
      case 'analyze':
        return JSON.stringify({ proposals: [] });
      default:
        throw new Error(`the scripted model has no answer for ${request.purpose}`);
    }
  }
}
