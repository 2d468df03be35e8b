// dashboard.js: the seed's dashboard, on the SDK's React bindings, written
// with createElement so it runs without a build step; and a room with who is
// here and who is typing (room.js).
import { createElement as h, useState } from 'react';
import { HybridDashboardProvider, useHybridDashboard, useHybridRealtime } from '/sdk/react.js';
import { Room } from '/examples/room.js';

const url = window.location.origin;
const params = new URLSearchParams(location.search);

// ?transports=websocket, sse, polling or a comma list of them, best first,
// makes every client of the page use only those; without it the SDK's
// default applies (WebSocket, then SSE, then long-polling).
const KNOWN_TRANSPORTS = ['websocket', 'sse', 'polling'];
const askedTransports = (params.get('transports') ?? '').split(',').map((t) => t.trim()).filter(Boolean);
const transports = askedTransports.filter((t) => KNOWN_TRANSPORTS.includes(t));
const badTransports = askedTransports.filter((t) => !KNOWN_TRANSPORTS.includes(t));
const forced = transports.length > 0 ? transports : undefined;

function TokenForm({ onToken }) {
  const [value, setValue] = useState(params.get('token') ?? '');
  return h('form', {
    className: 'stack card',
    onSubmit: (e) => { e.preventDefault(); if (value.trim()) onToken(value.trim()); },
  },
    h('div', { className: 'field' },
      h('label', { htmlFor: 'token' }, 'Subscriber token'),
      h('input', { id: 'token', type: 'password', value, onChange: (e) => setValue(e.target.value) }),
      h('p', { className: 'hint' }, 'In your app, getToken asks your backend for it instead.')),
    h('div', { className: 'actions' }, h('button', { type: 'submit' }, 'Connect')));
}

function Dashboard() {
  const { dashboardData, isLoading, isConnected, connectionMethod, refreshDashboardData, error } = useHybridDashboard();
  return h('section', { className: 'card' },
    h('h2', null, 'Dashboard ', h('span', { className: 'badge ' + (isConnected ? `live ${connectionMethod}` : '') },
      isConnected ? connectionMethod : 'connecting')),
    isLoading ? h('p', { className: 'muted' }, 'Loading…') : null,
    error ? h('p', { className: 'flash error' }, String(error.message || error)) : null,
    h('pre', { id: 'dashboard-data' }, JSON.stringify(dashboardData ?? {}, null, 2)),
    h('div', { className: 'actions' }, h('button', { className: 'secondary', onClick: () => refreshDashboardData() }, 'Refresh')));
}

function Feed({ token }) {
  const [events, setEvents] = useState([]);
  const { isConnected, connectionMethod, lastEvent, error, reconnect } = useHybridRealtime({
    url,
    channels: ['broadcast'],
    transports: forced,
    getToken: async () => token,
    eventHandlers: { '*': (e) => setEvents((old) => [e, ...old].slice(0, 20)) },
    eventTypes: ['test', 'notification'],
  });
  return h('section', { className: 'card' },
    h('h2', null, 'Broadcast feed'),
    h('p', null, isConnected ? `Connected over ${connectionMethod}` : 'Disconnected',
      error ? ` (${error.message})` : '', ' ', h('button', { className: 'secondary', onClick: reconnect }, 'Reconnect')),
    lastEvent ? h('p', { className: 'muted' }, `Last event: #${lastEvent.id} ${lastEvent.type}`) : null,
    h('ol', { className: 'log', id: 'feed' }, events.map((e) =>
      h('li', { key: e.id, 'data-event-id': e.id },
        h('div', { className: 'log-head' }, `${e.time} #${e.id} ${e.channel} ${e.type}`),
        h('pre', null, JSON.stringify(e.data))))));
}

function Transports() {
  const ignored = badTransports.length > 0 ? ` Ignored, not a transport: ${badTransports.join(', ')}.` : '';
  if (forced) {
    return h('p', { className: 'hint', id: 'transports' },
      'Transports: only ', h('code', null, forced.join(', ')), ' (from ', h('code', null, '?transports='), ').', ignored);
  }
  return h('p', { className: 'hint', id: 'transports' },
    'Transports: the SDK\'s default, WebSocket first, then SSE, then long-polling. Add ',
    h('code', null, '?transports=sse'), ' (or websocket, polling, or a comma list) to the address to force one.', ignored);
}

function App() {
  const [token, setToken] = useState(null);
  if (!token) return h('div', null, h(Transports), h(TokenForm, { onToken: setToken }));
  return h('div', null,
    h(Transports),
    h(Room, { url, token, transports: forced }),
    h(HybridDashboardProvider, { url, getToken: async () => token, transports: forced },
      h(Dashboard), h(Feed, { token })));
}

// The snippets in the page's text name this service's origin.
for (const el of document.querySelectorAll('.origin')) el.textContent = url;

ReactDOM.createRoot(document.getElementById('root')).render(h(App));
