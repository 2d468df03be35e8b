// Fails when the committed dist/ is not what the sources build to: builds
// the bundles and the declarations into a temporary folder and compares
// every file, byte for byte, both ways.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'hybridrt-check-'));
const require = createRequire(import.meta.url);

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

try {
  try {
    execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), tmp], { cwd: root, stdio: 'inherit' });
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json'), '--outDir', tmp], {
      cwd: root,
      stdio: 'inherit',
    });
  } catch {
    throw new Error('check: building src/ failed (see above)');
  }
  const dist = join(root, 'dist');
  const want = files(tmp);
  const have = files(dist);
  const problems = [];
  for (const f of want) {
    if (!have.includes(f)) problems.push(`dist/${f} is missing`);
    else if (!readFileSync(join(tmp, f)).equals(readFileSync(join(dist, f)))) problems.push(`dist/${f} differs from a fresh build`);
  }
  for (const f of have) if (!want.includes(f)) problems.push(`dist/${f} is not built from src/ (stale?)`);
  if (problems.length) {
    for (const p of problems) console.error(p);
    console.error('dist/ is out of date: run `npm run build && npm run types` and commit dist/.');
    process.exitCode = 1;
  } else {
    console.log(`dist/ matches a fresh build (${want.length} files).`);
  }
} catch (err) {
  console.error(err.message);
  process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
