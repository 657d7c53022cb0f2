/**
 * The CLI the tests and benchmarks spawn is the built JavaScript in dist/ (what `npm install`
 * builds and `bin/moderator.js` runs). A build older than the source would test yesterday's
 * code and pass, so anything that spawns the CLI checks first and refuses with what to do.
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..', '..');
/** Rewritten by every `npm run build` (scripts/build-assets.js), so its time is the build's. */
const stamp = path.join(root, 'dist', 'package.json');
const sourceDirs = ['cli', 'config', 'machines', 'actors', 'services', 'server'];
const sourceFiles = ['main.ts', 'errors.ts', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build-assets.js', 'scripts/bundle.js', 'demos/todo-cli/session.json'];

function newest(dir: string, found: { file: string; ms: number }): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) newest(file, found);
    else if (entry.name.endsWith('.ts') || entry.name.endsWith('.html')) consider(file, found);
  }
}

function consider(file: string, found: { file: string; ms: number }): void {
  const ms = fs.statSync(file).mtimeMs;
  if (ms > found.ms) Object.assign(found, { file, ms });
}

/** The newest source file of the build and its modification time. */
export function newestSource(): { file: string; ms: number } {
  const found = { file: '', ms: 0 };
  for (const dir of sourceDirs) newest(path.join(root, dir), found);
  for (const file of sourceFiles) consider(path.join(root, file), found);
  return found;
}

/** Throws unless dist/ was built after the last change to what it is built from. */
export function assertBuilt(): void {
  if (!fs.existsSync(stamp)) throw new Error('dist/ is missing: run `npm run build` first (`npm test` does)');
  const source = newestSource();
  if (source.ms > fs.statSync(stamp).mtimeMs) {
    throw new Error(`dist/ is older than ${path.relative(root, source.file)}: run \`npm run build\` first (\`npm test\` does)`);
  }
}
