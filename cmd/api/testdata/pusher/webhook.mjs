// webhook.mjs: a Pusher app's webhook endpoint, written as Pusher's docs
// write one with the Node server library: pusher.webhook({headers, rawBody}),
// isValid(), getEvents(). Configuration: APP_ID, KEY, SECRET (see
// common.mjs); it listens on 127.0.0.1, on a port of its own. It answers
// 200 to a valid webhook and 401 to any other request. Reports:
//   {"kind":"listening","port":n}, then ready (see serve in common.mjs)
//   {"kind":"webhook","path":…,"valid":true|false,"key":…,"events":[…] | null,"time":ms | null,"sent":n}
//       one a request: events and time from getEvents() and getTime() when
//       valid (null otherwise); sent is how many events the body holds, read
//       without the library, so an invalid request still shows what came.
import { createServer } from 'node:http';
import PusherServer from 'pusher';
import { env, out, serve } from './common.mjs';

const pusher = new PusherServer({ appId: env.appId, key: env.key, secret: env.secret, cluster: 'mt1' });

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const webhook = pusher.webhook({ headers: req.headers, rawBody });
    const valid = webhook.isValid();
    let sent = 0;
    try {
      sent = JSON.parse(rawBody).events?.length ?? 0;
    } catch {
      // not JSON: sent stays 0
    }
    out({
      kind: 'webhook',
      path: req.url,
      valid,
      key: req.headers['x-pusher-key'] ?? null,
      events: valid ? webhook.getEvents() : null,
      time: valid ? webhook.getTime().getTime() : null,
      sent,
    });
    res.writeHead(valid ? 200 : 401, { 'Content-Type': 'text/plain' });
    res.end(valid ? 'ok' : 'invalid webhook');
  });
});

server.listen(0, '127.0.0.1', () => {
  out({ kind: 'listening', port: server.address().port });
  serve({});
});
