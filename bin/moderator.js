#!/usr/bin/env node
// The installed entry point runs the JavaScript that `npm install` built (the `prepare` script):
// tsc's output in dist/, bundled into dist/bundle/ (scripts/bundle.js). Loading the TypeScript
// through tsx's hooks cost ~0.9 s per command, and dist/'s ~300 separate modules most of a resume's
// start-up. tsx stays for the tests and for development (`npm run dev -- ...`).
import fs from 'node:fs';

const entry = new URL('../dist/bundle/main.js', import.meta.url);
if (!fs.existsSync(entry)) {
  process.stderr.write('moderator: the build is missing (dist/bundle/main.js): run npm run build\n');
  process.exit(1);
}
await import(entry.href);
