import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { capText, defineTool, type ToolContext } from './define-tool.ts';
import { ToolError } from './tool-error.ts';

/** Larger files are refused by read_file and edit_file: they are data, not source to edit. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** How much of a file's start is looked at for a NUL byte, as git does to call a file binary. */
const BINARY_SNIFF_BYTES = 8000;
const MAX_LIST_ENTRIES = 2000;
/** Entries never listed: git's own data, and dependencies too big to be worth a model's tokens. */
const SKIPPED_DIRS = new Set(['.git', 'node_modules']);

const relativePath = (what: string) => z.string().min(1).describe(`${what}, relative to the worktree root (no absolute paths, no "..", nothing in .git)`);

async function textFile(context: ToolContext, relative: string): Promise<{ file: string; text: string }> {
  const file = await context.paths.resolve(relative);
  const shown = context.paths.display(file);
  let stat;
  try {
    stat = await fs.stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ToolError(`${shown} does not exist`);
    throw error;
  }
  if (stat.isDirectory()) throw new ToolError(`${shown} is a directory; use list_files`);
  // FIFOs and devices would block or never end.
  if (!stat.isFile()) throw new ToolError(`${shown} is not a regular file`);
  if (stat.size > MAX_FILE_BYTES) throw new ToolError(`${shown} is ${stat.size} bytes, more than the ${MAX_FILE_BYTES} a tool reads`);
  const bytes = await fs.readFile(file);
  if (bytes.subarray(0, BINARY_SNIFF_BYTES).includes(0)) throw new ToolError(`${shown} is a binary file (${bytes.length} bytes); it is not shown`);
  return { file, text: bytes.toString('utf8') };
}

function countOccurrences(text: string, needle: string): number {
  let count = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) count += 1;
  return count;
}

export const readFileTool = defineTool({
  name: 'read_file',
  description: 'Read a text file of the worktree. Lines keep their endings. Use offset and limit (in lines) for long files; the result says where to continue when it is cut.',
  input: z.strictObject({
    path: relativePath('The file'),
    offset: z.int().min(1).optional().describe('First line to return, counting from 1 (default 1)'),
    limit: z.int().min(1).optional().describe('How many lines to return at most (default: the rest of the file)'),
  }),
  async run(input, context) {
    const { file, text } = await textFile(context, input.path);
    const shown = context.paths.display(file);
    if (text === '') return `[${shown} is empty]`;
    const lines = text.split(/(?<=\n)/);
    const first = input.offset ?? 1;
    if (first > lines.length) return { content: `offset ${first} is past the end: ${shown} has ${lines.length} lines`, isError: true };
    const last = Math.min(lines.length, first - 1 + (input.limit ?? lines.length));
    const cap = context.outputCapBytes;
    let end = first - 1;
    let size = 0;
    while (end < last) {
      const bytes = Buffer.byteLength(lines[end] ?? '', 'utf8');
      // The first line is always shown, cut if it alone is over the cap.
      if (end >= first && size + bytes > cap) break;
      size += bytes;
      end += 1;
    }
    let content = capText(lines.slice(first - 1, end).join(''), cap, 'the line is longer than the output cap');
    if (end < lines.length) {
      const why = end < last ? `; output cap of ${cap} bytes reached` : '';
      content += `${content.endsWith('\n') ? '' : '\n'}[… lines ${first}-${end} of ${lines.length} shown${why}; continue with offset=${end + 1}]`;
    }
    return content;
  },
});

export const writeFileTool = defineTool({
  name: 'write_file',
  description: 'Create or replace a file of the worktree with the given content. Missing folders are created.',
  input: z.strictObject({
    path: relativePath('The file'),
    content: z.string().describe('The whole new content of the file'),
  }),
  async run(input, context) {
    const file = await context.paths.resolve(input.path);
    const shown = context.paths.display(file);
    const existing = await fs.stat(file).catch(() => null);
    if (existing?.isDirectory()) throw new ToolError(`${shown} is a directory`);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, input.content, 'utf8');
    return `${existing ? 'replaced' : 'created'} ${shown} (${Buffer.byteLength(input.content, 'utf8')} bytes)`;
  },
});

export const editFileTool = defineTool({
  name: 'edit_file',
  description: 'Replace one exact occurrence of old_text with new_text in a file. old_text must occur exactly once: include enough surrounding lines to make it unique. Whitespace and line endings count.',
  input: z.strictObject({
    path: relativePath('The file'),
    old_text: z.string().min(1).describe('The exact text to replace, as it is in the file'),
    new_text: z.string().describe('The text to put in its place'),
  }),
  async run(input, context) {
    const { file, text } = await textFile(context, input.path);
    const shown = context.paths.display(file);
    const count = countOccurrences(text, input.old_text);
    if (count === 0) return { content: `old_text was not found in ${shown}; read the file and copy the text exactly`, isError: true };
    if (count > 1) return { content: `old_text was found ${count} times in ${shown}; include more surrounding text so it matches once`, isError: true };
    const at = text.indexOf(input.old_text);
    // Slices, not String.replace: "$&" or "$1" in new_text must stay literal.
    await fs.writeFile(file, text.slice(0, at) + input.new_text + text.slice(at + input.old_text.length), 'utf8');
    const line = text.slice(0, at).split('\n').length;
    return `edited ${shown} at line ${line}`;
  },
});

export const listFilesTool = defineTool({
  name: 'list_files',
  description: 'List a folder of the worktree (default: its root). Folders end with "/", symlinks show their target. .git and node_modules are skipped. Paths are relative to the worktree root.',
  input: z.strictObject({
    path: z.string().optional().describe('The folder, relative to the worktree root (default: the root)'),
    recursive: z.boolean().optional().describe('Also list everything below (default false)'),
  }),
  async run(input, context) {
    const dir = await context.paths.resolve(input.path, { allowRoot: true });
    const stat = await fs.stat(dir).catch(() => null);
    if (stat === null) throw new ToolError(`${input.path ?? '.'} does not exist`);
    if (!stat.isDirectory()) throw new ToolError(`${context.paths.display(dir)} is a file; use read_file`);
    const entries: string[] = [];
    const skipped = new Set<string>();
    let full = false;
    const walk = async (folder: string): Promise<void> => {
      const children = (await fs.readdir(folder, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const child of children) {
        if (entries.length >= MAX_LIST_ENTRIES) {
          full = true;
          return;
        }
        const absolute = path.join(folder, child.name);
        const shown = context.paths.display(absolute);
        // By name whatever the type: a worktree's `.git` is a file pointing at the main repository.
        if (SKIPPED_DIRS.has(child.name)) {
          skipped.add(child.name);
        } else if (child.isSymbolicLink()) {
          // Listed, never followed: its target may be outside the worktree.
          entries.push(`${shown} -> ${await fs.readlink(absolute).catch(() => '?')}`);
        } else if (child.isDirectory()) {
          entries.push(`${shown}/`);
          if (input.recursive) await walk(absolute);
        } else {
          entries.push(shown);
        }
      }
    };
    await walk(dir);
    const notes = [
      ...(skipped.size > 0 ? [`[skipped: ${[...skipped].sort().join(', ')}]`] : []),
      ...(full ? [`[… stopped at ${MAX_LIST_ENTRIES} entries; list a subfolder]`] : []),
    ];
    const body = entries.length === 0 ? `[${context.paths.display(dir)} is empty]` : entries.join('\n');
    return capText([body, ...notes].join('\n'), context.outputCapBytes, 'list a subfolder');
  },
});
