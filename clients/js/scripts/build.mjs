// Builds the ES module bundles into the folder named by the first argument:
// hybrid-realtime.js (the core, no imports) and react.js (the React
// bindings; imports react and ./hybrid-realtime.js). The output is
// byte-for-byte reproducible, so `npm run check` can compare it.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: node scripts/build.mjs OUTDIR');
  process.exit(2);
}
const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const banner = `/*! ${pkg.name} ${pkg.version} | ${pkg.license} */`;

const common = {
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2020',
  charset: 'utf8',
  legalComments: 'none',
  banner: { js: banner },
  logLevel: 'warning',
};

await build({
  ...common,
  entryPoints: ['src/index.ts'],
  outfile: join(outdir, 'hybrid-realtime.js'),
});

// The React bindings share the core bundle rather than carrying a copy.
const coreAsSibling = {
  name: 'core-as-sibling',
  setup(b) {
    b.onResolve({ filter: /^\.\/index\.js$/ }, () => ({ path: './hybrid-realtime.js', external: true }));
  },
};
await build({
  ...common,
  entryPoints: ['src/react.ts'],
  outfile: join(outdir, 'react.js'),
  external: ['react'],
  plugins: [coreAsSibling],
});
