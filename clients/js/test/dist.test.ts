// The committed bundles: what the package exports and what the service
// serves at /sdk/hybrid-realtime.js. `npm run check` proves they are built
// from src/; this proves they work and import what they should.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as core from '../dist/hybrid-realtime.js';
import * as react from '../dist/react.js';
import { ev } from './helpers.js';
import { setup } from './setup.js';

const text = (name: string) => readFileSync(new URL(`../dist/${name}`, import.meta.url), 'utf8');

test('the core bundle imports nothing; the React bundle imports only react and the core', () => {
  assert.doesNotMatch(text('hybrid-realtime.js'), /^\s*import\s/m);
  assert.doesNotMatch(text('hybrid-realtime.js'), /from\s*["']react["']/);
  const imports = [...text('react.js').matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]).sort();
  assert.deepEqual(imports, ['./hybrid-realtime.js', 'react']);
  assert.deepEqual(Object.keys(core).sort(), ['DEFAULTS', 'HybridError', 'compareIds', 'createHybridRealtime']);
  assert.deepEqual(Object.keys(react).sort(), [
    'HybridDashboardProvider', 'HybridRealtimeProvider', 'useHybridClient', 'useHybridDashboard', 'useHybridRealtime',
    'useHybridRealtimeContext', 'usePresence', 'usePublish',
  ]);
});

test('package.json exports point at the bundles and their types', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.exports['.'].import, './dist/hybrid-realtime.js');
  assert.equal(pkg.exports['.'].types, './dist/index.d.ts');
  assert.equal(pkg.exports['./react'].import, './dist/react.js');
  assert.equal(pkg.exports['./react'].types, './dist/react.d.ts');
  assert.deepEqual(pkg.dependencies ?? {}, {}, 'no runtime dependencies');
  for (const f of ['index.d.ts', 'react.d.ts']) assert.ok(text(f).length > 0);
});

test('the built client runs the SSE happy path', async () => {
  const { es, client, ids, settle } = setup({}, core.createHybridRealtime as any);
  await settle();
  assert.equal(es.last.query.get('ticket'), 'tk_1');
  es.last.ready('1');
  es.last.event(ev(2));
  es.last.event(ev(2));
  assert.deepEqual(ids(), ['2']);
  assert.equal(client.isConnected, true);
  client.close();
});
