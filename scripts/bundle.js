// The third step of `npm run build`: the JavaScript tsc emitted into dist/ is bundled, with the
// dependencies that allow it, into dist/bundle/, which bin/moderator.js runs. Node loads a module
// graph file by file (resolve, read, compile, link): a resume loaded ~300 ES modules and spent
// most of its start-up doing it (95 of them zod's); the bundle is a few dozen chunks. Dynamic
// imports stay split points (`splitting`), so a command still loads only what it uses.
//
// Left to Node, as installed: native addons (better-sqlite3, uWebSockets.js, and ws's optional
// bufferutil and utf-8-validate, which it requires in a try), pino (its transports
// start worker threads from their own files), and what is required lazily by name at run time
// (typescript, gpt-tokenizer), and CommonJS packages that are imported with import(): esbuild's
// chunk of one exports only `default`, where Node gives its named exports too (prom-client).
//
// Every built file that reads something next to itself through `import.meta.url` (the dashboard,
// the demo's recording, dist/package.json, createRequire) is given the URL it has in dist/, not
// the chunk's, so those reads find the same files as the unbundled dist/ does. Only dist/'s own
// files are rewritten; a dependency that used `import.meta.url` would see its chunk's URL, and
// the build refuses one (checked below) rather than ship it.
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.join(root, 'dist');
const outdir = path.join(dist, 'bundle');

const external = ['better-sqlite3', 'uWebSockets.js', 'pino', 'typescript', 'gpt-tokenizer', 'bufferutil', 'utf-8-validate', 'prom-client'];

/** Rewrites `import.meta.url` in dist/'s own files to the URL the file has in dist/. */
const keepModuleUrls = {
  name: 'keep-module-urls',
  setup(builder) {
    builder.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!args.path.startsWith(`${dist}${path.sep}`) || args.path.startsWith(`${outdir}${path.sep}`)) return undefined;
      const source = await fs.promises.readFile(args.path, 'utf8');
      if (!source.includes('import.meta.url') && !source.includes('import.meta.dirname')) return { contents: source, loader: 'js' };
      if (source.includes('import.meta.dirname')) throw new Error(`${path.relative(root, args.path)} uses import.meta.dirname: use import.meta.url (the bundle rewrites only that)`);
      const relative = path.relative(outdir, args.path).split(path.sep).join('/');
      return { contents: source.replaceAll('import.meta.url', `new URL(${JSON.stringify(relative)}, import.meta.url).href`), loader: 'js' };
    });
  },
};

fs.rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: [path.join(dist, 'main.js')],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  // CommonJS dependencies bundled into ES chunks still call require() for Node's own modules.
  banner: { js: "import { createRequire as __moderatorCreateRequire } from 'node:module'; const require = __moderatorCreateRequire(import.meta.url);" },
  plugins: [keepModuleUrls],
  metafile: true,
  absWorkingDir: root,
  logLevel: 'warning',
});

// A dependency reading files beside itself would look for them in dist/bundle/.
const packages = {};
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  const inside = new Set();
  for (const input of Object.keys(output.inputs)) {
    const name = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1];
    if (name === undefined) continue;
    inside.add(name);
    const text = fs.readFileSync(path.join(root, input), 'utf8');
    if (/import\.meta\.(url|dirname|filename)/.test(text)) throw new Error(`${input} (bundled into ${file}) reads import.meta: add its package to the bundle's external list`);
  }
  packages[path.basename(file)] = [...inside].sort();
  if (output.entryPoint?.startsWith('node_modules/') && output.exports.length === 1 && output.exports[0] === 'default') {
    throw new Error(`${output.entryPoint} is CommonJS imported with import(): its chunk would export only default; add its package to the bundle's external list`);
  }
}
// Which packages each chunk holds: what a loaded chunk means (test/startup.test.ts reads it).
fs.writeFileSync(path.join(outdir, 'packages.json'), `${JSON.stringify(packages, null, 1)}\n`);
