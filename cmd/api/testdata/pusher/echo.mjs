// echo.mjs: Laravel Echo (broadcaster "pusher", on pusher-js) scripted like
// client.mjs, with Echo's own API. Channel names in commands are Echo's
// (without private-/presence-); reports carry the Pusher channel name.
// Channels are authorized with Echo's `authorizer` option, signing with the
// server library as a Laravel backend would. Commands:
//   {"op":"channel","channel":"news","listen":".OrderShipped"}            public
//   {"op":"private","channel":"orders","listen":[".OrderShipped","OrderPaid"]}
//   {"op":"encryptedPrivate","channel":"vault","listen":".Secret"}
//   {"op":"join","channel":"room","user":{"user_id":"1","user_info":{"id":1,"name":"Ann"}}}
//   "whisper": "typing" (or a list) in any of these listens for client-typing;
//   auth overrides as in client.mjs ("auth", "channelData", "key", "secret", "socketId").
//   {"op":"whisper","channel":"private-orders","event":"typing","data":{}}
//   {"op":"leave","channel":"room"}   (Echo leaves every variant of the name)
//   {"op":"disconnect"}, {"op":"connect"}, {"op":"exit"}
// Reports: ready, state, error, closed, done/fail as client.mjs; subscribed
// {channel}; subscription_error {channel, type, status, error}; event
// {channel, event (as listened for, e.g. ".OrderShipped"), data};
// whisper {channel, event, data}; here {channel, users}; joining and
// leaving {channel, user} (users are the members' user_info, as Echo gives them).
import Echo from 'laravel-echo';
import { env, out, serve, authorize, answer, Pusher, pusherOptions, reportConnection } from './common.mjs';

const subscriptions = new Map(); // Pusher channel name → its command, for the authorizer

const echo = new Echo({
  broadcaster: 'pusher',
  key: env.key,
  Pusher,
  ...pusherOptions,
  authorizer: (channel) => ({
    authorize: (socketId, callback) =>
      answer(callback, () => authorize(socketId, channel.name, subscriptions.get(channel.name))),
  }),
});
reportConnection(echo.connector.pusher);

const kinds = {
  channel: { prefix: '', open: (name) => echo.channel(name) },
  private: { prefix: 'private-', open: (name) => echo.private(name) },
  encryptedPrivate: { prefix: 'private-encrypted-', open: (name) => echo.encryptedPrivate(name) },
  join: { prefix: 'presence-', open: (name) => echo.join(name) },
};

function list(v) {
  return v === undefined ? [] : [].concat(v);
}

function open(op, cmd) {
  const name = kinds[op].prefix + cmd.channel;
  subscriptions.set(name, cmd);
  const ch = kinds[op].open(cmd.channel);
  ch.subscribed(() => out({ kind: 'subscribed', channel: name }));
  ch.error((e) => out({ kind: 'subscription_error', channel: name, type: e?.type, status: e?.status, error: e?.error ?? e }));
  for (const event of list(cmd.listen)) ch.listen(event, (data) => out({ kind: 'event', channel: name, event, data }));
  for (const event of list(cmd.whisper)) {
    ch.listenForWhisper(event, (data) => out({ kind: 'whisper', channel: name, event, data }));
  }
  if (op === 'join') {
    ch.here((users) => out({ kind: 'here', channel: name, users }))
      .joining((user) => out({ kind: 'joining', channel: name, user }))
      .leaving((user) => out({ kind: 'leaving', channel: name, user }));
  }
}

serve({
  ...Object.fromEntries(Object.keys(kinds).map((op) => [op, (cmd) => open(op, cmd)])),
  whisper(cmd) {
    const ch = echo.connector.channels[cmd.channel];
    if (!ch) throw new Error(`no Echo channel ${cmd.channel}`);
    ch.whisper(cmd.event, cmd.data ?? {});
  },
  leave(cmd) {
    echo.leave(cmd.channel);
  },
  connect() {
    echo.connector.pusher.connect();
  },
  disconnect() {
    echo.disconnect();
  },
  exit() {
    echo.disconnect();
    process.exit(0);
  },
});
