import fs from 'node:fs';
import path from 'node:path';

const skipped = new Set(['.git', 'node_modules', '.duo-agent']);

export interface TreeFile {
  path: string;
  content: string;
}

/**
 * The text files of a work tree, for a prompt: sorted, skipping .git, node_modules and Moderator's
 * folder, binary files left out, and cut at `maxBytes` in all (the list of paths is always whole).
 */
export function readTree(root: string, maxBytes = 80_000): { files: TreeFile[]; paths: string[]; truncated: boolean } {
  const paths: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (skipped.has(entry.name)) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) paths.push(path.relative(root, full).split(path.sep).join('/'));
    }
  };
  walk(root);
  const files: TreeFile[] = [];
  let budget = maxBytes;
  let truncated = false;
  for (const file of paths) {
    const buffer = fs.readFileSync(path.join(root, file));
    if (buffer.includes(0)) continue;
    if (buffer.length > budget) {
      truncated = true;
      continue;
    }
    budget -= buffer.length;
    files.push({ path: file, content: buffer.toString('utf8') });
  }
  return { files, paths, truncated };
}

/** Files as a prompt section: one fenced block per file. */
export function formatFiles(files: TreeFile[]): string {
  if (files.length === 0) return '(the repository has no files yet)';
  return files.map((file) => `--- ${file.path}\n${file.content}${file.content.endsWith('\n') ? '' : '\n'}--- end of ${file.path}`).join('\n\n');
}
