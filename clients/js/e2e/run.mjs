// A check of the built client in a real browser against a real service:
//
//   HRT_URL=http://127.0.0.1:18080 node e2e/run.mjs     (npm run e2e)
//
// It needs a running hybridrt (with HEARTBEAT_INTERVAL=2s, so the heartbeat
// scenario is short) and Chromium. It signs up a tenant, serves e2e/page.html
// and dist/ from one origin that also proxies /api/ to the service (the page
// and the service must share an origin: the service sends no CORS headers),
// opens the page in headless Chromium, and prints each scenario's result.
// Not part of `npm test`: CI has no service or browser for it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const service = (process.env.HRT_URL ?? 'http://127.0.0.1:18080').replace(/\/$/, '');
const chromium = process.env.CHROMIUM ?? 'chromium';
const root = new URL('..', import.meta.url).pathname;

async function api(method, path, key, body) {
  const res = await fetch(service + path, {
    method,
    headers: { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const signup = await api('POST', '/v1/tenants', null, { name: `js-e2e-${Date.now()}` });
const key = signup.apiKey;

const results = [];
let finish;
const finished = new Promise((r) => (finish = r));

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  try {
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(readFileSync(join(root, 'e2e/page.html')));
    } else if (req.method === 'GET' && url.pathname.startsWith('/dist/')) {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(readFileSync(join(root, 'dist', url.pathname.slice(6))));
    } else if (req.method === 'POST' && url.pathname === '/mint') {
      // The app's backend: mint a token for user 42.
      const t = await api('POST', '/v1/tokens', key, { sub: '42', ttl: Number(url.searchParams.get('ttl') ?? 3600) });
      res.end(t.token);
    } else if (req.method === 'POST' && url.pathname === '/publish') {
      const body = JSON.parse(await read(req));
      res.end(JSON.stringify(await api('POST', '/v1/events', key, body)));
    } else if (req.method === 'POST' && url.pathname === '/report') {
      const r = JSON.parse(await read(req));
      if (r.done) finish();
      else {
        results.push(r);
        console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.detail ? ` — ${r.detail}` : ''}`);
      }
      res.end('{}');
    } else {
      proxy(req, res);
    }
  } catch (err) {
    res.writeHead(500);
    res.end(String(err));
  }
});

function read(req) {
  return new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => resolve(b));
  });
}

// proxy streams a request to the service and its answer back, unbuffered (SSE).
function proxy(req, res) {
  const target = new URL(req.url, service);
  const up = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
  res.on('close', () => up.destroy());
}

await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(join(tmpdir(), 'hybridrt-js-e2e-'));
const browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${profile}`, `${origin}/`], {
  stdio: ['ignore', 'ignore', 'ignore'],
});
const timeout = setTimeout(() => {
  console.log('FAIL the page did not finish within 180 s');
  finish();
}, 180_000);
await finished;
clearTimeout(timeout);
browser.kill();
await new Promise((r) => (browser.exitCode !== null ? r() : browser.once('exit', r)));
rmSync(profile, { recursive: true, force: true });
server.close();
server.closeAllConnections();
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed || results.length === 0 ? 1 : 0);
