// The second half of `npm run build`: tsc emits only JavaScript, so the files the built code
// reads next to itself (through `new URL(..., import.meta.url)`) are copied beside it here.
import fs from 'node:fs';

const root = new URL('../', import.meta.url);
const dist = new URL('dist/', root);

/** Read at run time relative to the module that reads them; same relative place under dist/. */
const assets = ['server/dashboard.html', 'demos/todo-cli/session.json'];

for (const asset of assets) {
  const to = new URL(asset, dist);
  fs.mkdirSync(new URL('./', to), { recursive: true });
  fs.copyFileSync(new URL(asset, root), to);
}

// main.js reads its version from ./package.json; this one also keeps dist/ an ES module scope.
// It is rewritten on every build, so its time says when the build last ran (test/helpers/build.ts).
const { name, version } = JSON.parse(fs.readFileSync(new URL('package.json', root), 'utf8'));
fs.writeFileSync(new URL('package.json', dist), `${JSON.stringify({ name, version, private: true, type: 'module' }, null, 2)}\n`);
