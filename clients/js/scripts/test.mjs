// Bundles each test/*.test.ts (with the sources it imports) into
// .test-build/ and runs them with node's test runner.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const out = join(root, '.test-build');
rmSync(out, { recursive: true, force: true });
const tests = readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort();
await build({
  absWorkingDir: root,
  entryPoints: tests.map((f) => join('test', f)),
  outdir: out,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'inline',
  // Run against the installed React and the committed bundles as they are.
  external: ['react', 'react-test-renderer', '../dist/*'],
  logLevel: 'warning',
});
const files = tests.map((f) => join(out, f.replace(/\.ts$/, '.mjs')));
const args = ['--enable-source-maps', '--test', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
