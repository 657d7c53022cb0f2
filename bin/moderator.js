#!/usr/bin/env node
// The installed entry point runs the JavaScript that `npm install` built into dist/ (the
// `prepare` script): loading the TypeScript through tsx's hooks cost ~0.9 s per command.
// tsx stays for the tests and for development (`npm run dev -- ...`).
import fs from 'node:fs';

const entry = new URL('../dist/main.js', import.meta.url);
if (!fs.existsSync(entry)) {
  process.stderr.write('moderator: the build is missing (dist/main.js): run npm run build\n');
  process.exit(1);
}
await import(entry.href);
