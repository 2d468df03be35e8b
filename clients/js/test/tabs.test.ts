// Tabs sharing one connection through a Web Lock and a BroadcastChannel.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createHybridRealtime } from '../src/index.js';
import { lockName } from '../src/tabs.js';
import type { HybridClient, HybridEvent, HybridRealtimeOptions } from '../src/types.js';
import { broadcastChannels, eventSources, ev, FakeClock, FakeLocks, FakeServer, flush, tokenSource } from './helpers.js';

/** tabs makes the shared fakes of one browser, and a function that opens a tab's client. */
function browser() {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const es = eventSources();
  const tokens = tokenSource(clock);
  const locks = new FakeLocks();
  const BC = broadcastChannels();
  const open = (over: Partial<HybridRealtimeOptions> = {}) => {
    const got: HybridEvent[] = [];
    const client: HybridClient = createHybridRealtime({
      url: 'https://rt.example.com',
      channels: ['user:42', 'broadcast'],
      getToken: tokens.getToken,
      eventHandlers: { '*': (e) => got.push(e) },
      eventTypes: ['notification'],
      clock, fetch: server.fetch, EventSource: es.ctor, WebSocket: null, random: Math.random, window: null,
      locks, BroadcastChannel: BC,
      ...over,
    });
    return { client, got, ids: () => got.map((e) => `${e.type === 'resync' ? 'resync ' : ''}${e.id}`) };
  };
  return { clock, server, es, tokens, open };
}

describe('tabs', () => {
  test('two tabs share one connection; when the leader closes, the other takes over from the same cursor', async () => {
    const { server, es, open } = browser();
    const a = open();
    await flush();
    const b = open();
    await flush();
    assert.equal(a.client.state.role, 'leader');
    assert.equal(b.client.state.role, 'follower');
    assert.equal(es.made.length, 1, 'one transport');
    assert.equal(server.requests.length, 1, 'one ticket');

    es.last.ready('10');
    es.last.event(ev(11));
    es.last.event(ev(12));
    await flush();
    assert.deepEqual(a.ids(), ['11', '12']);
    assert.deepEqual(b.ids(), ['11', '12']);
    assert.equal(b.client.isConnected, true);
    assert.equal(b.client.activeMethod, 'sse');
    assert.equal(b.client.cursor, '12');
    assert.equal(b.client.lastEvent?.id, '12');

    a.client.close();
    await flush();
    assert.equal(es.made[0].closed, true);
    assert.equal(b.client.state.role, 'leader');
    assert.equal(es.made.length, 2);
    assert.equal(es.last.query.get('lastEventId'), '12', 'the new leader resumes from its cursor');
    es.last.ready('12');
    es.last.event(ev(12));
    es.last.event(ev(13));
    await flush();
    assert.deepEqual(b.ids(), ['11', '12', '13']);
    assert.deepEqual(a.ids(), ['11', '12'], 'a closed tab gets nothing more');
    b.client.close();
  });

  test('a tab that joins late gets what it missed from the leader, or a resync when that is gone', async () => {
    const { es, open } = browser();
    const a = open();
    await flush();
    es.last.ready('10');
    for (const id of [11, 12, 13, 14, 15]) es.last.event(ev(id));
    await flush();

    const c = open({ cursor: '12' });
    await flush();
    es.last.event(ev(16));
    await flush();
    assert.deepEqual(c.ids(), ['13', '14', '15', '16']);

    const d = open({ cursor: '3' }); // older than anything the leader has seen
    await flush();
    assert.deepEqual(d.ids(), ['resync 10', '11', '12', '13', '14', '15', '16']);

    const e = open(); // no cursor: from now on
    await flush();
    es.last.event(ev(17));
    await flush();
    assert.deepEqual(e.ids(), ['17']);
    assert.equal(e.client.cursor, '17');
    assert.equal(es.made.length, 1);
    for (const t of [a, c, d, e]) t.client.close();
  });

  test("a follower's reconnect() asks the leader, and followers see the leader's state", async () => {
    const { es, open } = browser();
    const a = open();
    await flush();
    const b = open();
    await flush();
    es.last.ready('1');
    await flush();
    assert.equal(b.client.isConnected, true);
    b.client.reconnect();
    await flush();
    assert.equal(es.made.length, 2);
    assert.equal(es.made[0].closed, true);
    assert.equal(b.client.isConnected, false, 'the leader is connecting again');
    es.last.ready('1');
    await flush();
    assert.equal(b.client.isConnected, true);
    a.client.close();
    b.client.close();
  });

  test('tabs with other channels have their own connection', async () => {
    const { es, open } = browser();
    const a = open();
    const b = open({ channels: ['dashboard'] });
    await flush();
    assert.equal(a.client.state.role, 'leader');
    assert.equal(b.client.state.role, 'leader');
    assert.equal(es.made.length, 2);
    assert.equal(lockName('https://rt.example.com', ['b', 'a']), lockName('https://rt.example.com', ['a', 'b']));
    a.client.close();
    b.client.close();
  });

  test('shareAcrossTabs: false, or no Web Locks, runs a connection per tab', async () => {
    const { es, open } = browser();
    const a = open({ shareAcrossTabs: false });
    const b = open({ locks: null });
    await flush();
    assert.equal(a.client.state.role, 'solo');
    assert.equal(b.client.state.role, 'solo');
    assert.equal(es.made.length, 2);
    a.client.close();
    b.client.close();
  });

  test('presence reaches the followers: the members when they join, then every change; their publish goes over HTTP naming the shared connection', async () => {
    const { server, es, open } = browser();
    const a = open({ channels: ['presence-room'] });
    await flush();
    es.last.ready('10', 'c_leader');
    es.last.emit('presence', { channel: 'presence-room', members: [{ id: 'ann' }, { id: 'bo' }] });
    await flush();
    const b = open({ channels: ['presence-room'] });
    await flush();
    assert.equal(b.client.state.role, 'follower');
    const room = b.client.presence('presence-room');
    assert.deepEqual(room.members?.map((m) => m.id), ['ann', 'bo'], 'the leader\'s members, in the welcome');
    const joined: string[] = [];
    room.onJoin((m) => joined.push(m.id));
    es.last.emit('member_added', { channel: 'presence-room', member: { id: 'cy' } });
    await flush();
    assert.deepEqual(joined, ['cy']);
    assert.deepEqual(room.members?.map((m) => m.id), ['ann', 'bo', 'cy']);

    server.route('POST', '/api/realtime/publish', () => ({ status: 201, body: { ids: ['11'] } }));
    assert.equal(await b.client.publish('presence-room', 'client-typing', { typing: true }), '11');
    const [req] = server.requestsTo('/api/realtime/publish');
    assert.equal(req.body.connectionId, 'c_leader');
    a.client.close();
    b.client.close();
  });
});
