// server.mjs: one call of the Node server library (`pusher`), given as JSON
// on argv[2] or stdin; prints {"status":…,"body":…} (body parsed when JSON),
// or {"error":{"status":…,"body":…,"message":…}} for an HTTP error (status 0
// when no response came, -1 when the library refused the call itself); the
// calls that make no request (signing, webhooks) print {"result":…}. Configuration: see common.mjs (APP_ID, KEY, SECRET,
// HOST, PORT, TLS). Calls:
//   {"call":"trigger","channel":"c" | "channels":["a","b"],"event":"e","data":…,"socket_id":"1.2","info":"user_count"}
//   {"call":"triggerBatch","batch":[{"channel":"c","name":"e","data":…,"socket_id"?,"info"?}]}
//   {"call":"channels","params":{"filter_by_prefix":"presence-","info":"user_count"}}
//   {"call":"channel","channel":"c","params":{"info":"subscription_count,user_count"}}
//   {"call":"users","channel":"presence-c"}
//   {"call":"terminateUserConnections","userId":"1"}
//   {"call":"sendToUser","userId":"1","event":"e","data":…}
//   {"call":"get","path":"/channels","params":{}}, {"call":"post","path":"/events","body":{}}
//   {"call":"authorizeChannel","socketId","channel","user"?}, {"call":"authenticateUser","socketId","user"}
//   {"call":"webhook","headers":{"x-pusher-key":…,"x-pusher-signature":…},"body":"raw body"}
// key and secret in a call override the environment's (to sign as another app).
import { out, serverLib } from './common.mjs';

const calls = {
  trigger: (p, c) => p.trigger(c.channels ?? c.channel, c.event, c.data, params(c)),
  triggerBatch: (p, c) => p.triggerBatch(c.batch),
  channels: (p, c) => p.get({ path: '/channels', params: c.params ?? {} }),
  channel: (p, c) => p.get({ path: `/channels/${c.channel}`, params: c.params ?? {} }),
  users: (p, c) => p.get({ path: `/channels/${c.channel}/users` }),
  terminateUserConnections: (p, c) => p.terminateUserConnections(c.userId),
  sendToUser: (p, c) => p.sendToUser(c.userId, c.event, c.data),
  get: (p, c) => p.get({ path: c.path, params: c.params ?? {} }),
  post: (p, c) => p.post({ path: c.path, body: c.body }),
  authorizeChannel: (p, c) => p.authorizeChannel(c.socketId, c.channel, c.user),
  authenticateUser: (p, c) => p.authenticateUser(c.socketId, c.user),
  webhook: (p, c) => {
    const hook = p.webhook({ headers: c.headers, rawBody: c.body });
    return hook.isValid() ? { valid: true, time: hook.getTime(), events: hook.getEvents() } : { valid: false };
  },
};

function params(c) {
  const p = {};
  if (c.socket_id !== undefined) p.socket_id = c.socket_id;
  if (c.info !== undefined) p.info = c.info;
  return p;
}

async function readStdin() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const call = JSON.parse(process.argv[2] ?? (await readStdin()));
const run = calls[call.call];
if (!run) {
  console.error(`server.mjs: unknown call ${JSON.stringify(call.call)}; one of ${Object.keys(calls).join(', ')}`);
  process.exit(2);
}
try {
  const result = await run(serverLib(call), call);
  if (typeof result?.text === 'function') {
    out({ status: result.status, body: parse(await result.text()) }); // a fetch Response
  } else {
    out({ result }); // computed here, no request made
  }
} catch (e) {
  if (e?.name !== 'PusherRequestError') {
    out({ error: { status: -1, message: String(e?.message ?? e) } }); // refused by the library itself
  } else {
    out({ error: { status: e.status ?? 0, body: e.body === undefined ? null : parse(e.body), message: e.message } });
  }
}
