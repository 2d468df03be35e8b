// What the drivers share: configuration from the environment, JSON lines on
// stdout, commands as JSON lines on stdin, the server library signing as an
// app's backend would, and pusher-js with its WebSocket frames visible.
//
// Environment: HOST (127.0.0.1), PORT (6001), APP_ID, KEY, SECRET, TLS=0/1,
// ENCRYPTION_MASTER_KEY (base64 of 32 bytes; every driver has the same
// default, so what one encrypts another decrypts), PUSHER_OPTIONS (JSON
// merged into pusher-js's options, e.g. {"activityTimeout":2000}), FRAMES=1
// (report every frame sent and received).
import { createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import PusherServer from 'pusher';
import Pusher from 'pusher-js';

export const env = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 6001),
  appId: process.env.APP_ID || 'app',
  key: process.env.KEY || '',
  secret: process.env.SECRET || '',
  tls: process.env.TLS === '1',
  masterKey: process.env.ENCRYPTION_MASTER_KEY || Buffer.from('hybridrt-test-encryption-key-32b').toString('base64'),
  frames: process.env.FRAMES === '1',
};

// out writes one JSON line. Writes to a pipe are synchronous on Linux, so a
// line is out before the next statement runs, and before process.exit.
export function out(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

// serverLib is the Node server library as an app's backend holds it; key
// and secret may be overridden, to sign as another app would.
export function serverLib({ key, secret } = {}) {
  return new PusherServer({
    appId: env.appId,
    key: key ?? env.key,
    secret: secret ?? env.secret,
    host: env.host,
    port: String(env.port),
    useTLS: env.tls,
    encryptionMasterKeyBase64: env.masterKey,
  });
}

// authorize answers pusher-js's channel authorization as the app's backend
// would (authorizeChannel), unless the subscribe command o overrides it:
// auth (sent verbatim), channelData (a raw string, signed as given), key and
// secret (sign as another app), socketId (sign for another connection).
export function authorize(socketId, channel, o = {}) {
  if (o.auth !== undefined) {
    return o.channelData === undefined ? { auth: o.auth } : { auth: o.auth, channel_data: o.channelData };
  }
  const signFor = o.socketId ?? socketId;
  if (o.channelData !== undefined) {
    const sig = createHmac('sha256', o.secret ?? env.secret)
      .update(`${signFor}:${channel}:${o.channelData}`)
      .digest('hex');
    return { auth: `${o.key ?? env.key}:${sig}`, channel_data: o.channelData };
  }
  return serverLib(o).authorizeChannel(signFor, channel, o.user);
}

// authenticateUser answers pusher-js's user authentication (pusher:signin).
export function authenticateUser(socketId, o = {}) {
  return serverLib(o).authenticateUser(o.socketId ?? socketId, o.user);
}

// answer adapts a synchronous signer to pusher-js's callback.
export function answer(callback, sign) {
  let result;
  try {
    result = sign();
  } catch (e) {
    callback(e, null);
    return;
  }
  callback(null, result);
}

export const pusherOptions = {
  cluster: 'mt1', // pusher-js 8 insists on one; wsHost decides where it connects
  wsHost: env.host,
  wsPort: env.port,
  wssPort: env.port,
  forceTLS: env.tls,
  enabledTransports: ['ws', 'wss'],
  disableStats: true,
  ...JSON.parse(process.env.PUSHER_OPTIONS || '{}'),
};

// frame is the frame pusher-js is handling now (parsed), so that a handler
// can read what pusher-js drops: the event's id and the raw data.
export let frame = null;

// Every WebSocket pusher-js opens reports its frames (FRAMES=1) and its
// close code, whether or not pusher-js still listens.
Pusher.Runtime.createWebSocket = ((create) => (url) => {
  const ws = create.call(Pusher.Runtime, url);
  const send = ws.send.bind(ws);
  ws.send = (text) => {
    if (env.frames) out({ kind: 'sent', frame: text });
    return send(text);
  };
  before(ws, 'onmessage', (ev) => {
    try {
      frame = JSON.parse(ev.data);
    } catch {
      frame = null;
    }
    if (env.frames) out({ kind: 'frame', frame: ev.data });
  });
  before(ws, 'onclose', (ev) => out({ kind: 'closed', code: ev.code, reason: ev.reason }));
  return ws;
})(Pusher.Runtime.createWebSocket);

function before(ws, name, hook) {
  let handler;
  const run = (ev) => {
    hook(ev);
    handler?.(ev);
  };
  Object.defineProperty(ws, name, { get: () => run, set: (fn) => (handler = fn) });
}

export { Pusher };

// reportConnection reports the connection's states and errors: pusher:error
// frames as {code, message} (with the frame's channel, if any), other
// failures by their pusher-js type.
export function reportConnection(pusher) {
  pusher.connection.bind('state_change', ({ previous, current }) =>
    out({ kind: 'state', state: current, previous, socketId: pusher.connection.socket_id }),
  );
  pusher.connection.bind('error', (err) => {
    if (err?.type === 'PusherError') {
      out({ kind: 'error', error: err.data, channel: frame?.event === 'pusher:error' ? frame.channel : undefined });
    } else {
      out({ kind: 'error', error: { type: err?.type, message: err?.error?.message } });
    }
  });
}

// eventLine is the report of an event an app sees, with the frame's id and
// user_id when pusher-js is handling that event's frame.
export function eventLine(channel, event, data) {
  const line = { kind: 'event', channel, event, data };
  if (frame && frame.event === event && frame.channel === channel) {
    if (frame.id !== undefined) line.id = frame.id;
    if (frame.user_id !== undefined) line.userId = frame.user_id;
  }
  return line;
}

// serve reads commands (JSON lines) and runs handlers[cmd.op]; each command
// ends in {"kind":"done","op",result?} or {"kind":"fail","op","error"}. The
// driver exits when stdin closes, so a test that dies takes it along.
export function serve(handlers) {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', async (text) => {
    if (!text.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(text);
      const run = handlers[cmd.op];
      if (!run) throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
      const result = await run(cmd);
      out(result === undefined ? { kind: 'done', op: cmd.op } : { kind: 'done', op: cmd.op, result });
    } catch (e) {
      out({ kind: 'fail', op: cmd?.op, error: String(e?.message ?? e) });
    }
  });
  rl.on('close', () => process.exit(0));
  // pusher-js throws on some bad input (channel_data that is not JSON):
  // report it and go on, as a page would.
  process.on('uncaughtException', (e) => out({ kind: 'exception', error: String(e?.message ?? e) }));
  process.on('unhandledRejection', (e) => out({ kind: 'exception', error: String(e?.message ?? e) }));
  out({ kind: 'ready' });
}
