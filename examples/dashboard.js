// dashboard.js: the seed's dashboard, on the SDK's React bindings, written
// with createElement so it runs without a build step.
import { createElement as h, useState } from 'react';
import { HybridDashboardProvider, useHybridDashboard, useHybridRealtime } from '/sdk/react.js';

const url = window.location.origin;

function TokenForm({ onToken }) {
  const [value, setValue] = useState(new URLSearchParams(location.search).get('token') ?? '');
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
    h('h2', null, 'Dashboard ', h('span', { className: 'badge ' + (isConnected ? 'live' : '') },
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

function App() {
  const [token, setToken] = useState(null);
  if (!token) return h(TokenForm, { onToken: setToken });
  return h(HybridDashboardProvider, { url, getToken: async () => token },
    h(Dashboard), h(Feed, { token }));
}

ReactDOM.createRoot(document.getElementById('root')).render(h(App));
