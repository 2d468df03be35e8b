// The React bindings, rendered with react-test-renderer on the fakes.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createElement } from 'react';
import TestRenderer from 'react-test-renderer';
import { HybridDashboardProvider, useHybridDashboard, useHybridRealtime } from '../src/react.js';
import type { HybridRealtimeOptions } from '../src/types.js';
import { eventSources, ev, FakeClock, FakeServer, flush, tokenSource } from './helpers.js';

const { act, create } = TestRenderer as any;
(globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;

function fakes() {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const es = eventSources();
  const tokens = tokenSource(clock);
  const base = {
    url: 'https://rt.example.com',
    getToken: tokens.getToken,
    clock, fetch: server.fetch, EventSource: es.ctor, WebSocket: null, random: () => 0.5,
    locks: null, BroadcastChannel: null, window: null,
  };
  return { clock, server, es, tokens, base };
}

async function step(fn: () => void = () => {}): Promise<void> {
  await act(async () => {
    fn();
    await flush();
  });
}

describe('useHybridRealtime', () => {
  test('returns { isConnected, connectionMethod, lastEvent, error, reconnect, client }, keeps one connection across renders, closes on unmount', async () => {
    const { es, base } = fakes();
    let result: ReturnType<typeof useHybridRealtime> | null = null;
    const calls: string[] = [];
    function App({ tag }: { tag: string }) {
      const options: HybridRealtimeOptions = {
        ...base,
        channels: ['user:42'],
        eventHandlers: { notification: (e) => calls.push(`${tag} ${e.id}`) },
      };
      result = useHybridRealtime(options);
      return null;
    }
    let root: any;
    await step(() => {
      root = create(createElement(App, { tag: 'first' }));
    });
    assert.deepEqual(Object.keys(result!).sort(), ['client', 'connectionMethod', 'error', 'isConnected', 'lastEvent', 'reconnect']);
    assert.equal(result!.isConnected, false);
    assert.equal(result!.connectionMethod, 'sse');
    assert.equal(es.made.length, 1);

    await step(() => es.last.ready('1'));
    assert.equal(result!.isConnected, true);
    await step(() => es.last.event(ev(2)));
    assert.equal(result!.lastEvent?.id, '2');

    await step(() => root.update(createElement(App, { tag: 'second' })));
    await step(() => es.last.event(ev(3)));
    assert.deepEqual(calls, ['first 2', 'second 3'], 'the latest handler, without a reconnect');
    assert.equal(es.made.length, 1);

    await step(() => result!.reconnect());
    assert.equal(es.made.length, 2);
    assert.equal(es.last.query.get('lastEventId'), '3');

    await step(() => root.unmount());
    assert.ok(es.made.every((e) => e.closed));
  });
});

describe('HybridDashboardProvider', () => {
  test('loads with fetchDashboardData, and loads again on dashboard_update and on resync', async () => {
    const { es, base } = fakes();
    let loads = 0;
    const fetchDashboardData = async () => ({ users: ++loads });
    let value: ReturnType<typeof useHybridDashboard> | null = null;
    function Show() {
      value = useHybridDashboard();
      return null;
    }
    let root: any;
    await step(() => {
      root = create(createElement(HybridDashboardProvider, { ...base, fetchDashboardData }, createElement(Show)));
    });
    assert.deepEqual(Object.keys(value!).sort(), ['connectionMethod', 'dashboardData', 'error', 'isConnected', 'isLoading', 'refreshDashboardData']);
    assert.equal(es.last.query.get('channels'), 'dashboard');
    assert.deepEqual(value!.dashboardData, { users: 1 });
    assert.equal(value!.isLoading, false);

    await step(() => es.last.ready('1'));
    assert.equal(value!.isConnected, true);
    assert.equal(value!.connectionMethod, 'sse');
    await step(() => es.last.event(ev(2, 'dashboard_update', 'dashboard', { updateType: 'STATS_UPDATED', data: { users: 3 } })));
    assert.deepEqual(value!.dashboardData, { users: 2 });
    await step(() => es.last.emit('resync', { cursor: '9', reason: 'too old' }, '9'));
    assert.deepEqual(value!.dashboardData, { users: 3 });
    await step(() => void value!.refreshDashboardData());
    assert.deepEqual(value!.dashboardData, { users: 4 });
    await step(() => root.unmount());
  });

  test("without fetchDashboardData it merges the updates' data", async () => {
    const { es, base } = fakes();
    let value: ReturnType<typeof useHybridDashboard> | null = null;
    function Show() {
      value = useHybridDashboard();
      return null;
    }
    let root: any;
    await step(() => {
      root = create(createElement(HybridDashboardProvider, { ...base, channels: ['dashboard', 'team:1'] }, createElement(Show)));
    });
    assert.equal(value!.isLoading, false);
    assert.equal(value!.dashboardData, null);
    assert.equal(es.last.query.get('channels'), 'dashboard,team:1');
    await step(() => es.last.ready('1'));
    await step(() => es.last.event(ev(2, 'dashboard_update', 'dashboard', { updateType: 'STATS_UPDATED', data: { users: 3 } })));
    await step(() => es.last.event(ev(3, 'dashboard_update', 'dashboard', { updateType: 'ORDERS', data: { orders: 7 } })));
    assert.deepEqual(value!.dashboardData, { users: 3, orders: 7 });
    await step(() => root.unmount());
  });

  test('useHybridDashboard outside a provider says so', () => {
    function Lonely() {
      useHybridDashboard();
      return null;
    }
    const saved = console.error;
    console.error = () => {}; // React logs the error it rethrows
    try {
      assert.throws(() => act(() => {
        create(createElement(Lonely));
      }), /inside <HybridDashboardProvider>/);
    } finally {
      console.error = saved;
    }
  });
});
