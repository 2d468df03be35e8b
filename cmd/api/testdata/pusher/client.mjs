// client.mjs: one pusher-js client (Node build), scripted with JSON lines on
// stdin, reporting JSON lines on stdout. Configuration: see common.mjs. It
// connects at start. Commands:
//   {"op":"subscribe","channel":"presence-room","user":{"user_id":"1","user_info":{}}}
//       optional auth overrides: "auth", "channelData", "key", "secret", "socketId";
//       "raw": true sends the pusher:subscribe frame itself, bypassing pusher-js
//       (which throws on channel_data that is not JSON)
//   {"op":"unsubscribe","channel":"…"}
//   {"op":"trigger","channel":"private-x","event":"client-x","data":{}}   (channel.trigger)
//   {"op":"send","event":"…","data":…,"channel":"…"}   (any frame, unchecked by pusher-js)
//   {"op":"signin","user":{"id":"1","user_info":{}}}   (pusher:signin; key/secret overrides)
//   {"op":"disconnect"}, {"op":"connect"}, {"op":"exit"}
// Reports: ready; state {state, previous, socketId}; subscribed {channel,
// members?, me?, count?}; subscription_error {channel, type, status, error};
// event {channel?, event, data, id?, userId?}; error {error, channel?};
// closed {code, reason}; done/fail per command; exception {error} (thrown
// inside pusher-js); sent/frame with FRAMES=1.
import { env, out, serve, authorize, authenticateUser, answer, Pusher, pusherOptions, reportConnection, eventLine, frame } from './common.mjs';

const subscriptions = new Map(); // channel name → its subscribe command, for the authorizer
let signin = {};

const pusher = new Pusher(env.key, {
  ...pusherOptions,
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, callback) =>
      answer(callback, () => authorize(socketId, channelName, subscriptions.get(channelName))),
  },
  userAuthentication: {
    customHandler: ({ socketId }, callback) => answer(callback, () => authenticateUser(socketId, signin)),
  },
});
reportConnection(pusher);

// Events outside any subscribed channel (pusher:signin_success, events for
// the signed-in user, stray events): channels report their own.
const quiet = new Set(['pusher:error', 'pusher:ping', 'pusher:pong']);
pusher.bind_global((event, data) => {
  if (frame?.event !== event || quiet.has(event)) return;
  if (frame.channel && pusher.channel(frame.channel)) return;
  out(eventLine(frame.channel, event, data));
});

const bound = new WeakSet();
const ownLines = new Set(['pusher:subscription_succeeded', 'pusher:subscription_error']);

function watch(channel) {
  if (bound.has(channel)) return;
  bound.add(channel);
  channel.bind('pusher:subscription_succeeded', (data) => {
    const line = { kind: 'subscribed', channel: channel.name };
    if (channel.members) {
      const m = channel.members;
      Object.assign(line, { members: m.members, me: m.me, count: m.count });
    }
    out(line);
  });
  channel.bind('pusher:subscription_error', (e) =>
    out({ kind: 'subscription_error', channel: channel.name, type: e?.type, status: e?.status, error: e?.error ?? e }),
  );
  channel.bind_global((event, data) => {
    if (!ownLines.has(event)) out(eventLine(channel.name, event, data));
  });
}

serve({
  subscribe(cmd) {
    if (cmd.raw) {
      // pusher:subscribe sent as is, past pusher-js's checks and without a
      // channel object: the answer shows as frames (FRAMES=1) and as
      // event/error lines for pusher:subscription_error and pusher:error.
      const auth = cmd.channel.startsWith('private-') || cmd.channel.startsWith('presence-');
      const data = auth ? authorize(pusher.connection.socket_id, cmd.channel, cmd) : {};
      return pusher.send_event('pusher:subscribe', { ...data, channel: cmd.channel });
    }
    subscriptions.set(cmd.channel, cmd);
    watch(pusher.subscribe(cmd.channel));
  },
  unsubscribe(cmd) {
    pusher.unsubscribe(cmd.channel);
    subscriptions.delete(cmd.channel);
  },
  trigger(cmd) {
    const channel = pusher.channel(cmd.channel);
    if (!channel) throw new Error(`not subscribed to ${cmd.channel}`);
    return channel.trigger(cmd.event, cmd.data ?? {});
  },
  send(cmd) {
    return pusher.send_event(cmd.event, cmd.data, cmd.channel);
  },
  signin(cmd) {
    signin = cmd;
    pusher.signin();
  },
  connect() {
    pusher.connect();
  },
  disconnect() {
    pusher.disconnect();
  },
  exit() {
    pusher.disconnect();
    process.exit(0);
  },
});
