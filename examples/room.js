// room.js: "who is here" and a typing indicator on a presence channel, with
// HybridRealtimeProvider, usePresence, usePublish and useHybridClient from
// /sdk/react.js. Written with createElement so it runs without a build step.
//
// Everyone whose token allows presence-lobby is a member while the page is
// open, over whichever transport their client uses. Typing in the field sends
// client-typing {typing: true} at most once a second while the keys keep
// coming, and {typing: false} on leaving the field or after 3 s without a key;
// the others show "<name> is typing…" until they hear {typing: false} or 3.5 s
// pass without a new {typing: true} (a sender that vanished says nothing).
import { createElement as h, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { HybridRealtimeProvider, useHybridClient, usePresence, usePublish } from '/sdk/react.js';

export const LOBBY = 'presence-lobby';
const SEND_EVERY_MS = 1000; // at most one {typing: true} a second while typing
const IDLE_MS = 3000;       // then {typing: false} after this long without a key
const SHOWN_MS = 3500;      // how long another's {typing: true} shows without a new one

/**
 * Room connects its own client to the presence channel (one member per tab:
 * tabs do not share it, so two users can try it in two tabs of one browser)
 * and keeps who is typing; RoomBody, inside the provider, shows it all.
 */
export function Room({ url, token, transports }) {
  const [typing, setTyping] = useState({}); // user id → true while shown
  const timers = useRef(new Map());

  const stopShowing = useCallback((user) => {
    clearTimeout(timers.current.get(user));
    timers.current.delete(user);
    setTyping((old) => {
      if (!old[user]) return old;
      const next = { ...old };
      delete next[user];
      return next;
    });
  }, []);

  // One handler object for the life of the provider: it only reads the
  // event's sender (user: the sender's token's sub, set by the service, so it
  // cannot be forged in data) and whether they type.
  const eventHandlers = useMemo(() => ({
    'client-typing': (e) => {
      if (!e.user) return;
      if (e.data && e.data.typing === false) {
        stopShowing(e.user);
        return;
      }
      clearTimeout(timers.current.get(e.user));
      timers.current.set(e.user, setTimeout(() => stopShowing(e.user), SHOWN_MS));
      setTyping((old) => (old[e.user] ? old : { ...old, [e.user]: true }));
    },
  }), [stopShowing]);

  useEffect(() => () => {
    for (const t of timers.current.values()) clearTimeout(t);
    timers.current.clear();
  }, []);

  const getToken = useCallback(async () => token, [token]);
  return h(HybridRealtimeProvider, {
    url,
    channels: [LOBBY],
    getToken,
    transports,
    eventHandlers,
    shareAcrossTabs: false,
  }, h(RoomBody, { me: tokenClaims(token), typing, stopShowing }));
}

function RoomBody({ me, typing, stopShowing }) {
  const client = useHybridClient();
  const state = useClientState(client);
  const publish = usePublish();
  const [news, setNews] = useState('');
  const [problem, setProblem] = useState(null);
  const names = useRef(new Map()); // id → name, for the typing line and for whoever left

  const members = usePresence(LOBBY, {
    onJoin: (m) => setNews(`${nameOf(m, names.current)} joined.`),
    onLeave: (m) => {
      setNews(`${nameOf(m, names.current)} left.`);
      stopShowing(m.id);
    },
  });
  for (const m of members ?? []) names.current.set(m.id, nameOf(m, names.current));

  const sendTyping = useTypingSender(publish, setProblem);
  // No need to leave oneself out: the SDK does not hand a client its own
  // client events. (Another tab of the same user has a connection of its
  // own, and does show this one typing.)
  const typers = Object.keys(typing).map((id) => names.current.get(id) ?? id).sort();
  const method = state && state.isConnected ? state.activeMethod : null;

  return h('section', { className: 'card', 'aria-labelledby': 'room-title' },
    h('h2', { id: 'room-title' }, 'Room ',
      h('span', { id: 'room-transport', className: 'badge ' + (method ? `live ${method}` : ''), title: 'The transport of this room\'s connection' },
        method ?? 'connecting')),
    h('p', { className: 'muted' }, 'Everyone with a token for ', h('code', null, LOBBY),
      ' who has this page open, over WebSocket, SSE or long-polling alike.',
      me.sub ? ' You are ' : null, me.sub ? h('strong', null, me.name ?? me.sub) : null, me.sub ? '.' : null),
    h('h3', { id: 'members-title' }, 'Who is here ',
      members ? h('span', { className: 'badge', id: 'member-count' }, String(members.length)) : null),
    members === null
      ? h('p', { className: 'muted', id: 'members-pending' }, 'Joining…')
      : h('ul', { id: 'members', 'aria-labelledby': 'members-title' }, members.map((m) =>
        h('li', { key: m.id, 'data-member-id': m.id },
          nameOf(m, names.current),
          m.id === me.sub ? h('span', { className: 'muted' }, ' (you)') : null))),
    h('p', { className: 'hint', id: 'presence-news', 'aria-live': 'polite' }, news),
    h('form', { className: 'stack', onSubmit: (e) => e.preventDefault() },
      h('div', { className: 'field' },
        h('label', { htmlFor: 'room-message' }, 'Message'),
        h('input', {
          id: 'room-message', type: 'text', autoComplete: 'off', 'aria-describedby': 'room-message-hint',
          onChange: (e) => sendTyping(e.target.value !== ''),
          onBlur: () => sendTyping(false),
        }),
        h('p', { className: 'hint', id: 'room-message-hint' },
          'The others see that you are typing (a client-typing event); what you type is not sent.'))),
    h('p', { id: 'typing', className: 'muted', 'aria-live': 'polite' }, typingLine(typers)),
    state && state.error && !state.isConnected
      ? h('p', { className: 'flash error', role: 'alert' }, connectionProblem(state.error)) : null,
    problem ? h('p', { className: 'flash error', role: 'alert' }, problem) : null);
}

/**
 * useTypingSender returns typing(active): call it with true on every key
 * (sent at most once a second) and with false when the user stops; it also
 * stops by itself after IDLE_MS without a key.
 */
function useTypingSender(publish, setProblem) {
  const s = useRef({ on: false, lastSent: 0, idle: null });
  const send = useCallback((typing) => {
    publish(LOBBY, 'client-typing', { typing }).then(
      () => setProblem(null),
      (err) => setProblem(explain(err)));
  }, [publish, setProblem]);
  const typing = useCallback((active) => {
    const st = s.current;
    clearTimeout(st.idle);
    st.idle = null;
    if (!active) {
      if (st.on) {
        st.on = false;
        send(false);
      }
      return;
    }
    const now = Date.now();
    if (!st.on || now - st.lastSent >= SEND_EVERY_MS) {
      st.on = true;
      st.lastSent = now;
      send(true);
    }
    st.idle = setTimeout(() => typing(false), IDLE_MS);
  }, [send]);
  useEffect(() => () => clearTimeout(s.current.idle), []);
  return typing;
}

/** useClientState follows the provider's client's state (null before it exists). */
function useClientState(client) {
  const [state, setState] = useState(() => (client ? client.state : null));
  useEffect(() => {
    if (!client) {
      setState(null);
      return undefined;
    }
    setState(client.state);
    return client.subscribe(setState);
  }, [client]);
  return state;
}

function typingLine(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
}

function nameOf(member, known) {
  const name = member.info && typeof member.info.name === 'string' && member.info.name.trim();
  return name || known.get(member.id) || member.id;
}

function connectionProblem(err) {
  if (err.code === 'insufficient_scope') {
    return `Your token does not allow ${LOBBY}: mint it with "channels": ["${LOBBY}"].`;
  }
  return `Not connected: ${err.message || err}`;
}

function explain(err) {
  switch (err && err.code) {
    case 'client_events_disabled':
      return 'The tenant has client events off: turn them on (PATCH /v1/tenant/settings {"clientEvents":true}, or the console\'s Pusher page).';
    case 'insufficient_scope':
      return `Your token may not send to ${LOBBY}: mint it with "publish": ["${LOBBY}"].`;
    case 'client_event_rate_limited':
      return 'Typing too fast for the client event rate; the next one will go through.';
    default:
      return `Could not send that you are typing: ${(err && err.message) || err}`;
  }
}

/** tokenClaims reads the token's sub and info.name, unverified, to mark "(you)". */
export function tokenClaims(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))));
    const name = c.info && typeof c.info.name === 'string' ? c.info.name : undefined;
    return { sub: typeof c.sub === 'string' ? c.sub : undefined, name };
  } catch {
    return {};
  }
}
