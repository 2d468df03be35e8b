// The WebSocket transport (hybridrt.v1), its fallback to SSE and back,
// client events and presence, through the public client on a fake clock.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Member } from '../src/types.js';
import { ev, problem, webSockets } from './helpers.js';
import { setup } from './setup.js';

const TICKETS = '/api/realtime/tickets';
const PUBLISH = '/api/realtime/publish';

/** wsSetup is setup with a fake WebSocket, as a browser has one. */
function wsSetup(over: Parameters<typeof setup>[0] = {}) {
  const ws = webSockets();
  return { ws, ...setup({ WebSocket: ws.ctor, openTimeoutMs: 1_000, failuresBeforeFallback: 2, retryIntervalMs: 5_000, ...over }) };
}

describe('WebSocket', () => {
  test('happy path: the token goes in the first message, never the URL; subscribe from the cursor; events once, in order', async () => {
    const { ws, es, server, tokens, client, ids, settle } = wsSetup({ cursor: '9' });
    await settle();
    assert.equal(ws.made.length, 1);
    assert.equal(es.made.length, 0, 'no EventSource while the WebSocket is tried');
    assert.equal(server.requestsTo(TICKETS).length, 0, 'no ticket: the token goes over the socket');
    assert.equal(ws.last.url, 'wss://rt.example.com/api/realtime/ws');
    assert.deepEqual(ws.last.protocols, ['hybridrt.v1']);
    assert.equal(client.activeMethod, 'websocket');

    ws.last.open();
    assert.deepEqual(ws.last.sent, [{ op: 'auth', token: tokens.issued[0] }]);
    ws.last.msg({ op: 'ready', connectionId: 'c_abc', cursor: '12' });
    const sub = ws.last.sentOf('subscribe');
    assert.deepEqual(sub.channels, ['broadcast', 'user:42']);
    assert.equal(sub.cursor, '9', 'from the client cursor, not the head the server names');
    assert.equal(client.isConnected, false, 'live only once subscribed');
    for (const id of [10, 11]) ws.last.event(ev(id)); // the replay comes before subscribed
    ws.last.msg({ op: 'subscribed', ref: sub.ref });
    assert.equal(client.isConnected, true);
    assert.equal(client.connectionId, 'c_abc');
    for (const id of [11, 12, 13]) ws.last.event(ev(id));
    assert.deepEqual(ids(), ['10', '11', '12', '13']);
    assert.equal(client.cursor, '13');

    ws.last.msg({ op: 'ping' });
    assert.equal(ws.last.sent.at(-1).op, 'pong');
    client.close();
    assert.equal(ws.last.closed, true);
  });

  test('an upgrade refused failuresBeforeFallback times: SSE; a probe every retryIntervalMs; live again over the WebSocket with nothing lost or repeated', async () => {
    const { ws, es, clock, client, ids, settle } = wsSetup({ cursor: '1' });
    await settle();
    ws.last.fail(1006);
    await clock.tick(clock.delays()[0]);
    assert.equal(ws.made.length, 2);
    assert.equal(client.activeMethod, 'websocket', 'one refusal is not enough');
    ws.last.fail(1006);
    await settle();
    assert.equal(client.activeMethod, 'sse');
    assert.equal(es.made.length, 1);
    assert.equal(es.last.query.get('lastEventId'), '1');
    es.last.ready('1');
    for (const id of [2, 3]) es.last.event(ev(id));
    assert.equal(client.activeMethod, 'sse');

    // A probe of the WebSocket, beside SSE, after the retry interval.
    await clock.tick(5_000);
    assert.equal(ws.made.length, 3);
    const probe = ws.made[2];
    probe.open();
    probe.msg({ op: 'ready', connectionId: 'c_probe', cursor: '4' });
    assert.equal(probe.sentOf('subscribe').cursor, '3', 'the probe starts from the cursor');
    es.last.event(ev(4)); // SSE goes on meanwhile
    probe.event(ev(4));
    probe.event(ev(5));
    assert.equal(client.activeMethod, 'sse', 'still on SSE until the probe is live');
    probe.msg({ op: 'subscribed', ref: probe.sentOf('subscribe').ref });
    assert.equal(client.activeMethod, 'websocket');
    assert.equal(client.isConnected, true);
    assert.equal(es.last.closed, true, 'the old stream closes once the probe is live');
    probe.event(ev(6));
    assert.deepEqual(ids(), ['2', '3', '4', '5', '6']);
    client.close();
  });

  test('an upgrade accepted and then silent: SSE at once after openTimeoutMs, without counting failures', async () => {
    const { ws, es, clock, client, settle } = wsSetup({ failuresBeforeFallback: 5 });
    await settle();
    ws.last.open(); // and nothing more
    await clock.tick(999);
    assert.equal(es.made.length, 0);
    await clock.tick(1);
    await settle();
    assert.equal(ws.made[0].closed, true);
    assert.equal(client.activeMethod, 'sse');
    assert.equal(es.made.length, 1);
    assert.match(String(client.error?.message), /WebSocket/);
    client.close();
  });

  test('a live WebSocket that breaks after a while reconnects over the WebSocket, from the cursor', async () => {
    const { ws, es, clock, client, settle } = wsSetup();
    await settle();
    ws.last.live('7');
    ws.last.event(ev(8));
    await clock.tick(60_000);
    for (let i = 0; i < 3; i++) {
      ws.last.fail(1006);
      await clock.tick(clock.delays()[0]);
      assert.equal(client.activeMethod, 'websocket', `break ${i + 1}`);
      ws.last.live('8');
      await clock.tick(60_000);
    }
    assert.equal(es.made.length, 0);
    assert.equal(ws.last.sentOf('subscribe').cursor, '8');
    client.close();
  });

  test('4001 (the token expired or was refused): a new token, a new socket, the same cursor', async () => {
    const { ws, tokens, client, settle } = wsSetup();
    await settle();
    ws.last.live('3');
    ws.last.event(ev(4));
    ws.last.fail(4001, 'token expired');
    await settle();
    assert.equal(ws.made.length, 2, 'at once: a token problem is no failure of the transport');
    ws.last.open();
    assert.equal(ws.last.sentOf('auth').token, tokens.issued[1]);
    ws.last.msg({ op: 'ready', connectionId: 'c_2', cursor: '4' });
    assert.equal(ws.last.sentOf('subscribe').cursor, '4');
    client.close();
  });
});

describe('client events', () => {
  test('over the WebSocket: published with a ref, the id resolved, its own event dropped when it comes back; an error rejects with its code', async () => {
    const { ws, client, ids, settle } = wsSetup();
    await settle();
    ws.last.live('1');
    const sent = client.publish('user:42', 'client-typing', { typing: true });
    const m = ws.last.sentOf('publish');
    assert.deepEqual({ channel: m.channel, type: m.type, data: m.data }, { channel: 'user:42', type: 'client-typing', data: { typing: true } });
    ws.last.msg({ op: 'published', ref: m.ref, id: '2' });
    assert.equal(await sent, '2');
    ws.last.event(ev(2, 'client-typing'));
    ws.last.event(ev(3));
    assert.deepEqual(ids(), ['3'], 'not its own client event');

    const refused = client.publish('user:42', 'client-typing');
    const r = ws.last.sentOf('publish');
    ws.last.msg({ op: 'error', ref: r.ref, code: 'client_event_rate_limited', message: 'slow down' });
    await assert.rejects(refused, (err: any) => err.code === 'client_event_rate_limited' && err.status === 429);
    await assert.rejects(client.publish('user:42', 'typing'), TypeError, 'a type without client- is refused before it is sent');
    client.close();
  });

  test('over SSE: POST /api/realtime/publish with the token and the stream\'s connection id; its own event dropped', async () => {
    const { es, server, tokens, client, ids, settle } = setup();
    server.route('POST', PUBLISH, () => ({ status: 201, body: { ids: ['5'] } }));
    await settle();
    es.last.ready('4', 'c_sse');
    assert.equal(await client.publish('user:42', 'client-cursor', { x: 1 }), '5');
    const [req] = server.requestsTo(PUBLISH);
    assert.equal(req.token, tokens.issued[0]);
    assert.deepEqual(req.body, { channel: 'user:42', type: 'client-cursor', data: { x: 1 }, connectionId: 'c_sse' });
    es.last.event(ev(5, 'client-cursor'));
    es.last.event(ev(6));
    assert.deepEqual(ids(), ['6']);

    server.route('POST', PUBLISH, () => problem(403, 'insufficient_scope'));
    await assert.rejects(client.publish('broadcast', 'client-cursor'), (err: any) => err.status === 403 && err.code === 'insufficient_scope');
    client.close();
  });
});

describe('presence', () => {
  test('the members, then joins and leaves; a list that comes again after a reconnect is diffed into joins and leaves', async () => {
    const { ws, clock, client, settle } = wsSetup({ channels: ['presence-room'] });
    await settle();
    ws.last.live('1');
    const room = client.presence<{ name: string }>('presence-room');
    assert.equal(room.members, null, 'null until heard');
    const joined: string[] = [];
    const left: string[] = [];
    const lists: string[] = [];
    room.onJoin((m) => joined.push(m.id));
    room.onLeave((m) => left.push(m.id));
    room.subscribe((ms) => lists.push(ms.map((m) => m.id).join(',')));
    const names = (ms: Member<{ name: string }>[] | null) => ms?.map((m) => `${m.id}:${m.info?.name}`);

    ws.last.msg({ op: 'presence', channel: 'presence-room', members: [{ id: 'bo', info: { name: 'Bo' } }, { id: 'ann', info: { name: 'Ann' } }] });
    assert.deepEqual(names(room.members), ['ann:Ann', 'bo:Bo'], 'ordered by id');
    assert.deepEqual(joined, [], 'the first list is no join');
    ws.last.msg({ op: 'member_added', channel: 'presence-room', member: { id: 'cy', info: { name: 'Cy' } } });
    ws.last.msg({ op: 'member_removed', channel: 'presence-room', member: { id: 'bo' } });
    assert.deepEqual(joined, ['cy']);
    assert.deepEqual(left, ['bo']);

    // The socket breaks; meanwhile cy left and dan came: the next list says so.
    ws.last.fail(1006);
    await clock.tick(clock.delays()[0]);
    ws.last.live('1');
    ws.last.msg({ op: 'presence', channel: 'presence-room', members: [{ id: 'ann' }, { id: 'dan' }] });
    assert.deepEqual(joined, ['cy', 'dan']);
    assert.deepEqual(left, ['bo', 'cy']);
    assert.deepEqual(lists, ['ann,bo', 'ann,bo,cy', 'ann,cy', 'ann,dan']);
    assert.throws(() => client.presence('room'), TypeError, 'only presence- channels of the client');
    client.close();
  });
});
