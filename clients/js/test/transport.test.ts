// The transport state machine, through the public client, on a fake clock.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ev, FakeWindow, flush, problem } from './helpers.js';
import { setup } from './setup.js';

const TICKETS = '/api/realtime/tickets';
const POLLING = '/api/realtime/polling';

describe('SSE', () => {
  test('happy path: a ticket is fetched, the URL has the ticket and no token, events arrive and move the cursor', async () => {
    const seen: string[] = [];
    const { server, es, tokens, client, settle } = setup({
      eventHandlers: { notification: (e) => seen.push(`notification ${e.id}`), '*': (e) => seen.push(`* ${e.id}`) },
    });
    await settle();

    const [ticketReq] = server.requests;
    assert.equal(ticketReq.method, 'POST');
    assert.equal(ticketReq.path, TICKETS);
    assert.equal(ticketReq.token, tokens.issued[0]);
    assert.equal(es.made.length, 1);
    const url = es.last.url;
    assert.ok(url.startsWith('https://rt.example.com/api/realtime/sse?'), url);
    assert.equal(es.last.query.get('channels'), 'broadcast,user:42');
    assert.equal(es.last.query.get('ticket'), 'tk_1');
    assert.equal(es.last.query.get('token'), null);
    assert.ok(!url.includes(tokens.issued[0]) && !url.includes('eyJ'), 'the JWT must not be in the URL');
    assert.equal(es.last.query.get('lastEventId'), null, 'no cursor: start at the head');
    assert.equal(client.isConnected, false);
    assert.equal(client.activeMethod, 'sse');

    es.last.ready('10');
    assert.equal(client.isConnected, true);
    assert.equal(client.cursor, '10');

    es.last.event(ev(11));
    es.last.event(ev(12, 'order.shipped', 'broadcast'));
    assert.deepEqual(seen, ['notification 11', '* 11', '* 12']);
    assert.equal(client.cursor, '12');
    assert.equal(client.lastEvent?.id, '12');
    assert.deepEqual(client.lastEvent?.data, { n: 12 });
    client.close();
  });

  test('a start cursor is sent as lastEventId on the first connect', async () => {
    const { es, client, settle } = setup({ cursor: '41' });
    await settle();
    assert.equal(es.last.query.get('lastEventId'), '41');
    client.close();
  });

  test('repeated ids are dropped, and ids are compared as numbers', async () => {
    const { es, client, ids, settle } = setup({ cursor: '98' });
    await settle();
    es.last.ready('98');
    for (const id of [97, 98, 99, 100, 99, 100, 101, 101, 1000]) es.last.event(ev(id));
    assert.deepEqual(ids(), ['99', '100', '101', '1000']);
    assert.equal(client.cursor, '1000');
    client.close();
  });

  test('only the named event types it listens for reach it over SSE, as in a browser', async () => {
    const { es, client, settle } = setup({ eventTypes: [], eventHandlers: { notification: () => {}, '*': () => {} } });
    await settle();
    es.last.ready('1');
    es.last.event(ev(2, 'notification'));
    es.last.event(ev(3, 'not.listened'));
    assert.equal(client.lastEvent?.id, '2');
    client.close();
  });
});

describe('fallback to long-polling', () => {
  test('without EventSource it long-polls with the JWT as bearer, and follows the cursor', async () => {
    const { server, tokens, client, ids, settle } = setup({ EventSource: null });
    await settle();
    assert.equal(server.requestsTo(TICKETS).length, 0);
    const first = server.lastPoll.req;
    assert.equal(first.token, tokens.issued[0]);
    assert.equal(first.query.get('channels'), 'broadcast,user:42');
    assert.equal(first.query.get('timeout'), '0', 'the first poll is answered at once');
    assert.equal(first.query.get('cursor'), null, 'no cursor: the server starts at its head');
    assert.equal(client.activeMethod, 'polling');
    assert.equal(client.isConnected, false);

    server.lastPoll.respond({ events: [ev(5), ev(6)], cursor: '9' });
    await settle();
    assert.deepEqual(ids(), ['5', '6']);
    assert.equal(client.isConnected, true);
    assert.equal(client.cursor, '9', 'the poll looked through to 9');
    assert.equal(server.polls.length, 2);
    assert.equal(server.lastPoll.req.query.get('cursor'), '9');
    assert.equal(server.lastPoll.req.query.get('timeout'), '25', 'then long-polls');

    server.lastPoll.respond({ events: [ev(9), ev(10)], cursor: '10' });
    await settle();
    assert.deepEqual(ids(), ['5', '6', '10'], 'ids at or before the cursor are dropped');
    client.close();
  });

  test('a handler that reconnects in the middle of a poll answer loses nothing', async () => {
    let client: any;
    const seen: string[] = [];
    const ids = () => seen;
    const { server, settle, ...rest } = setup({
      EventSource: null,
      cursor: '1',
      eventHandlers: {
        notification: (e) => {
          seen.push(e.id);
          if (e.id === '3') client.reconnect();
        },
      },
    });
    client = rest.client;
    await settle();
    server.lastPoll.respond({ events: [ev(2), ev(3), ev(4), ev(5)], cursor: '9' });
    await settle();
    assert.equal(server.lastPoll.req.query.get('cursor'), '3');
    server.lastPoll.respond({ events: [ev(4), ev(5)], cursor: '9' });
    await settle();
    assert.deepEqual(ids(), ['2', '3', '4', '5']);
    assert.equal(client.cursor, '9');
    client.close();
  });

  test('SSE that fails to open 3 times in a row falls back to polling from the same cursor', async () => {
    const { server, es, clock, client, settle } = setup({ cursor: '7' });
    await settle();
    es.last.fail(true);
    assert.equal(client.activeMethod, 'sse');
    await clock.tick(clock.delays()[0]); // the backoff wait
    assert.equal(es.made.length, 2);
    es.last.fail(true);
    await clock.tick(clock.delays()[0]);
    assert.equal(es.made.length, 3);
    assert.equal(server.polls.length, 0);
    es.last.fail(true);
    await settle();
    assert.equal(es.made.length, 3);
    assert.equal(client.activeMethod, 'polling');
    assert.equal(server.polls.length, 1);
    assert.equal(server.lastPoll.req.query.get('cursor'), '7');
    assert.ok(es.made.every((e) => e.closed));
    client.close();
  });

  test("the browser's own reconnect attempts count as failures too", async () => {
    const { server, es, client, settle } = setup({ cursor: '7' });
    await settle();
    const only = es.last;
    only.fail(false);
    only.fail(false);
    assert.equal(client.activeMethod, 'sse');
    assert.equal(only.closed, false, 'the browser is retrying by itself');
    only.fail(false);
    await settle();
    assert.equal(only.closed, true);
    assert.equal(es.made.length, 1);
    assert.equal(client.activeMethod, 'polling');
    assert.equal(server.lastPoll.req.query.get('cursor'), '7');
    client.close();
  });

  test('no ready within sseOpenTimeoutMs (a buffering proxy) switches to polling at once, from the same cursor', async () => {
    const { server, es, clock, client, settle } = setup({ cursor: '7' });
    await settle();
    const stream = es.last;
    stream.emit('open', ''); // 200 OK, headers through, body held back by the proxy
    await clock.tick(9_999);
    assert.equal(server.polls.length, 0);
    await clock.tick(1);
    assert.equal(stream.closed, true);
    assert.equal(client.activeMethod, 'polling');
    assert.match(String(client.error?.message), /no ready event within 10000 ms/);
    assert.equal(server.polls.length, 1);
    assert.equal(server.lastPoll.req.query.get('cursor'), '7');
    client.close();
  });

  test('while polling, SSE is tried again every sseRetryIntervalMs and takes over with no loss or duplicate at the seam', async () => {
    const { server, es, clock, client, ids, settle } = setup({ cursor: '7', sseRetryIntervalMs: 20_000 });
    await settle();
    es.last.emit('open', '');
    await clock.tick(10_000); // buffered: poll instead
    assert.equal(client.activeMethod, 'polling');

    server.lastPoll.respond({ events: [ev(8)], cursor: '8' });
    await settle();
    const inFlight = server.lastPoll;
    assert.equal(inFlight.req.query.get('cursor'), '8');

    await clock.tick(19_000);
    assert.equal(es.made.length, 1, 'not yet');
    await clock.tick(1_000);
    assert.equal(es.made.length, 2, 'the SSE probe');
    const probe = es.last;
    assert.equal(probe.query.get('lastEventId'), '8');
    assert.equal(client.activeMethod, 'polling');

    // The poll answers while the probe is still connecting.
    inFlight.respond({ events: [ev(9), ev(10)], cursor: '10' });
    await settle();
    const next = server.lastPoll;
    assert.equal(next.req.query.get('cursor'), '10');
    assert.equal(next.req.aborted, false, 'polling goes on until SSE is ready');

    probe.ready('8'); // the stream replays from 8
    await settle();
    assert.equal(next.req.aborted, true, 'the poll in flight is aborted once SSE is ready');
    assert.equal(client.activeMethod, 'sse');
    assert.equal(client.isConnected, true);
    for (const id of [9, 10, 11, 12]) probe.event(ev(id));
    await clock.tick(120_000);
    assert.deepEqual(ids(), ['8', '9', '10', '11', '12']);
    assert.equal(server.polls.length, 3, 'no poll after the switch');
    assert.equal(es.made.length, 2, 'no probe after the switch');
    client.close();
  });

  test('a probe that fails leaves polling running and is tried again later', async () => {
    const { server, es, clock, client, settle } = setup({ cursor: '7', sseRetryIntervalMs: 1_000 });
    await settle();
    es.last.emit('open', '');
    await clock.tick(10_000);
    await clock.tick(1_000);
    assert.equal(es.made.length, 2);
    es.last.fail(true);
    await settle();
    assert.equal(client.activeMethod, 'polling');
    assert.equal(server.lastPoll.req.aborted, false);
    await clock.tick(1_000);
    assert.equal(es.made.length, 3);
    client.close();
  });
});

describe('heartbeats', () => {
  test('silence past 2.5 heartbeats (seen as ping events) reconnects, and falls back to polling when it keeps happening', async () => {
    const { server, es, clock, client, settle } = setup({ cursor: '7' });
    await settle();
    es.last.ready('7', 'c_1', 10);
    es.last.emit('ping', '');
    es.last.event(ev(8));
    await clock.tick(24_999);
    assert.equal(es.made.length, 1);
    await clock.tick(1);
    assert.equal(es.made[0].closed, true, 'silent for 25 s');
    assert.equal(es.made.length, 2);
    assert.equal(es.last.query.get('lastEventId'), '8');

    // A proxy that passes ready and then buffers: ready alone does not prove the stream healthy.
    es.last.ready('8', 'c_2', 10);
    await clock.tick(25_000);
    assert.equal(es.made.length, 3);
    es.last.ready('8', 'c_3', 10);
    await clock.tick(25_000);
    assert.equal(client.activeMethod, 'polling');
    assert.equal(server.lastPoll.req.query.get('cursor'), '8');
    assert.match(String(client.error?.message), /no heartbeat/);
    client.close();
  });

  test('a quiet stream is not cut when heartbeats are comments, which EventSource does not show', async () => {
    const { es, clock, client, settle } = setup({ cursor: '7' });
    await settle();
    es.last.ready('7', 'c_1', 15);
    await clock.tick(10 * 60_000);
    assert.equal(es.made.length, 1);
    assert.equal(es.last.closed, false);
    assert.equal(client.isConnected, true);
    client.close();
  });

  test('a stream that dropped after ready reconnects by itself (Last-Event-ID); ready must come again in time', async () => {
    const { server, es, clock, client, settle } = setup({ cursor: '7' });
    await settle();
    es.last.ready('7');
    es.last.fail(false); // network blip: the browser reconnects
    assert.equal(client.isConnected, false);
    await clock.tick(2_000);
    es.last.ready('7');
    assert.equal(client.isConnected, true);
    assert.equal(es.made.length, 1);
    es.last.fail(false);
    await clock.tick(15_000); // never ready again, beyond the open timeout and the reconnect grace: buffered
    assert.equal(client.activeMethod, 'polling');
    assert.equal(server.lastPoll.req.query.get('cursor'), '7');
    client.close();
  });
});

describe('tokens', () => {
  test('the token is renewed at 80% of its lifetime, in place, through the connection endpoint', async () => {
    const { server, es, clock, tokens, client, settle } = setup();
    // tokenSource: 3600 s tokens
    await settle();
    es.last.ready('1', 'c_abc');
    await clock.tick(2_879_000);
    assert.equal(tokens.issued.length, 1);
    await clock.tick(1_000); // 80% of 3600 s
    assert.equal(tokens.issued.length, 2);
    const renew = server.requestsTo('/api/realtime/connections/');
    assert.equal(renew.length, 1);
    assert.equal(renew[0].method, 'POST');
    assert.equal(renew[0].path, '/api/realtime/connections/c_abc/token');
    assert.equal(renew[0].token, tokens.issued[1]);
    assert.equal(es.made.length, 1, 'no reconnect');
    await clock.tick(2_880_000);
    assert.equal(tokens.issued.length, 3, 'and again at 80% of the new one');
    assert.equal(server.requestsTo('/api/realtime/connections/').length, 2);
    client.close();
  });

  test('a token renewed while the stream was reconnecting is handed to it at its next ready', async () => {
    const { server, es, clock, tokens, client, settle } = setup();
    await settle();
    es.last.ready('1', 'c_one');
    await clock.tick(2_879_000);
    es.last.fail(false); // the browser reconnects by itself, with the first ticket
    await clock.tick(2_000); // the renewal falls due meanwhile
    assert.equal(tokens.issued.length, 2);
    assert.equal(server.requestsTo('/api/realtime/connections/').length, 0, 'no connection to renew yet');
    es.last.ready('1', 'c_two');
    await settle();
    const renew = server.requestsTo('/api/realtime/connections/');
    assert.equal(renew.length, 1);
    assert.equal(renew[0].path, '/api/realtime/connections/c_two/token');
    assert.equal(renew[0].token, tokens.issued[1]);
    assert.equal(es.made.length, 1);
    client.close();
  });

  test('token_expired: a new token and ticket, resuming with lastEventId = cursor', async () => {
    const { server, es, tokens, client, ids, settle } = setup({ cursor: '10' });
    await settle();
    es.last.ready('10');
    es.last.event(ev(11));
    es.last.emit('token_expired', { reason: 'the token expired' });
    await settle();
    assert.equal(es.made[0].closed, true);
    assert.equal(tokens.issued.length, 2);
    const tickets = server.requestsTo(TICKETS);
    assert.equal(tickets.length, 2);
    assert.equal(tickets[1].token, tokens.issued[1]);
    assert.equal(es.made.length, 2);
    assert.equal(es.last.query.get('ticket'), 'tk_2');
    assert.equal(es.last.query.get('lastEventId'), '11');
    es.last.ready('11');
    es.last.event(ev(11));
    es.last.event(ev(12));
    assert.deepEqual(ids(), ['11', '12']);
    client.close();
  });

  test('a 401 on a poll gets a new token and polls again at once', async () => {
    const { server, tokens, client, settle } = setup({ EventSource: null, cursor: '3' });
    await settle();
    server.lastPoll.respond({ events: [ev(4)], cursor: '4' });
    await settle();
    server.lastPoll.fail(problem(401, 'invalid_token')); // e.g. the signing key was revoked
    await settle();
    assert.equal(tokens.issued.length, 2);
    assert.equal(server.polls.length, 3);
    assert.equal(server.lastPoll.req.token, tokens.issued[1]);
    assert.equal(server.lastPoll.req.query.get('cursor'), '4');
    assert.equal(client.isConnected, true, 'no backoff, no disconnect');
    client.close();
  });

  test('a 401 with a token fresh from getToken is a failure, retried with backoff and another token', async () => {
    const { server, clock, tokens, client, settle } = setup({ EventSource: null });
    await settle();
    server.lastPoll.fail(problem(401, 'invalid_token'));
    await settle();
    assert.equal(server.polls.length, 1);
    assert.equal(client.error && (client.error as any).code, 'invalid_token');
    await clock.tick(clock.delays()[0]);
    assert.equal(server.polls.length, 2);
    assert.equal(server.lastPoll.req.token, tokens.issued[1]);
    client.close();
  });

  test('a 401 on the ticket with a cached token gets a new token', async () => {
    const { server, es, clock, tokens, client, settle } = setup();
    await settle();
    es.last.ready('1');
    let first = true;
    server.route('POST', TICKETS, () => (first ? ((first = false), problem(401, 'invalid_token')) : null));
    es.last.fail(true); // the stream ends; a fresh connect needs a ticket
    await clock.tick(1_000);
    const tickets = server.requestsTo(TICKETS);
    assert.equal(tickets.length, 3);
    assert.equal(tickets[1].token, tokens.issued[0], 'the cached token first');
    assert.equal(tickets[2].token, tokens.issued[1], 'then a fresh one');
    assert.equal(es.made.length, 2);
    client.close();
  });

  test('getToken failing is an error with backoff, not an SSE failure', async () => {
    const { es, clock, client, settle } = setup({
      getToken: async () => {
        throw new Error('backend down');
      },
    });
    await settle();
    assert.match(String(client.error?.message), /getToken failed: backend down/);
    for (let i = 0; i < 5; i++) await clock.tick(30_000);
    assert.equal(client.activeMethod, 'sse', 'no fallback: SSE never got a chance');
    assert.equal(es.made.length, 0);
    client.close();
  });
});

describe('resync', () => {
  test('over SSE, resync reaches the handlers and moves the cursor', async () => {
    const resyncs: unknown[] = [];
    const { es, client, settle } = setup({
      cursor: '5',
      eventHandlers: { resync: (e) => resyncs.push(e.data), '*': () => {} },
    });
    await settle();
    es.last.emit('resync', { cursor: '50', reason: 'too old' }, '50');
    es.last.ready('50');
    es.last.event(ev(51));
    assert.deepEqual(resyncs, [{ cursor: '50', reason: 'too old' }]);
    assert.equal(client.cursor, '51');
    client.close();
  });

  test('over polling, resync comes first, then the events', async () => {
    const { server, client, got, settle } = setup({ EventSource: null, cursor: '5' });
    await settle();
    server.lastPoll.respond({ events: [ev(60), ev(61)], cursor: '70', resync: true });
    await settle();
    assert.deepEqual(got.map((e) => `${e.type} ${e.id}`), ['resync 59', 'notification 60', 'notification 61']);
    assert.deepEqual(got[0].data, { cursor: '59', reason: 'events before the cursor were lost to retention; reload your state' });
    assert.equal(client.cursor, '70');
    client.close();
  });

  test('a cursor past the head (the events were reset) restarts from the head with a resync', async () => {
    const { server, clock, client, got, settle } = setup({ EventSource: null, cursor: '500' });
    await settle();
    server.lastPoll.fail(problem(400, 'cursor_ahead'));
    await clock.tick(1_000);
    assert.equal(server.lastPoll.req.query.get('cursor'), null);
    server.lastPoll.respond({ events: [], cursor: '20' });
    await settle();
    assert.deepEqual(got.map((e) => `${e.type} ${e.id}`), ['resync 20']);
    assert.equal(client.cursor, '20');
    await clock.tick(1_000); // an empty answer at once: the next poll waits a second
    server.lastPoll.respond({ events: [ev(21)], cursor: '21' });
    await settle();
    assert.deepEqual(got.map((e) => e.id), ['20', '21']);
    client.close();
  });
});

describe('backoff', () => {
  test('waits grow exponentially with full jitter, honour Retry-After, and reset after a success', async () => {
    const rolls = [0.5, 0.25, 0.999, 0.5, 0.1, 0.5, 0.5];
    let i = 0;
    const { server, clock, client, settle } = setup({
      EventSource: null,
      random: () => rolls[i++ % rolls.length],
      backoff: { initialMs: 500, maxMs: 4_000 },
    });
    await settle();
    const retryDelay = async (res: Parameters<typeof server.lastPoll.fail>[0]) => {
      server.lastPoll.fail(res);
      await settle();
      const d = clock.delays()[0];
      await clock.tick(d);
      return d;
    };
    const delays = [];
    for (let n = 0; n < 5; n++) delays.push(await retryDelay(problem(503, 'unavailable')));
    // floor(roll * min(4000, 500 * 2^n))
    assert.deepEqual(delays, [250, 250, 1998, 2000, 400]);
    assert.equal(client.isConnected, false);
    assert.equal(await retryDelay(problem(429, 'rate_limited', { 'Retry-After': '7' })), 7_000);

    server.lastPoll.respond({ events: [ev(1)], cursor: '1' });
    await settle();
    assert.equal(client.isConnected, true);
    assert.equal(client.error, null);
    i = 0;
    assert.equal(await retryDelay(problem(503, 'unavailable')), 250, 'back to the first step');
    client.close();
  });

  test('a 400 (bad channels) stops retrying until reconnect()', async () => {
    const { server, clock, client, settle } = setup({ EventSource: null });
    await settle();
    server.lastPoll.fail(problem(400, 'invalid_channel'));
    await clock.tick(120_000);
    assert.equal(server.polls.length, 1);
    assert.equal(client.error && (client.error as any).code, 'invalid_channel');
    client.reconnect();
    await settle();
    assert.equal(server.polls.length, 2);
    client.close();
  });
});

describe('the browser', () => {
  test('offline pauses everything; online reconnects at once, SSE first, from the cursor', async () => {
    const win = new FakeWindow();
    const { server, es, clock, client, settle } = setup({ window: win, cursor: '3' });
    await settle();
    es.last.ready('3');
    es.last.event(ev(4));
    win.goOffline();
    assert.equal(es.last.closed, true);
    assert.equal(client.isConnected, false);
    assert.equal(client.activeMethod, null);
    const before = server.requests.length;
    await clock.tick(10 * 60_000);
    assert.equal(server.requests.length, before, 'no requests while offline');
    assert.equal(es.made.length, 1);
    win.goOnline();
    await settle();
    assert.equal(es.made.length, 2);
    assert.equal(es.last.query.get('lastEventId'), '4');
    client.close();
  });

  test('a client made while offline waits for online', async () => {
    const win = new FakeWindow();
    win.navigator.onLine = false;
    const { server, es, client, settle } = setup({ window: win });
    await settle();
    assert.equal(server.requests.length, 0);
    win.goOnline();
    await settle();
    assert.equal(es.made.length, 1);
    client.close();
  });

  test('becoming visible connects at once when a retry is waiting', async () => {
    const win = new FakeWindow();
    const { server, client, clock, settle } = setup({ window: win, EventSource: null, random: () => 0.99 });
    await settle();
    server.lastPoll.fail(problem(503, 'unavailable'));
    await settle();
    server.polls.length = 0;
    win.setVisible(false);
    await clock.tick(100);
    assert.equal(server.polls.length, 0);
    win.setVisible(true);
    await settle();
    assert.equal(server.polls.length, 1);
    client.close();
  });

  test('close() stops every timer, the stream and the poll in flight, and the listeners', async () => {
    const win = new FakeWindow();
    const { server, es, clock, client, settle } = setup({ window: win, cursor: '7' });
    await settle();
    es.last.emit('open', '');
    await clock.tick(10_000); // polling, with a probe and a renewal scheduled
    assert.ok(clock.pending > 0);
    const poll = server.lastPoll;
    client.close();
    assert.equal(clock.pending, 0, 'no timer left');
    assert.equal(poll.req.aborted, true);
    assert.ok(es.made.every((e) => e.closed));
    assert.equal(win.count() + win.document.count(), 0, 'window listeners removed');
    assert.equal(client.isConnected, false);
    assert.equal(client.activeMethod, null);
    const n = server.requests.length;
    await clock.tick(3_600_000);
    win.goOnline();
    await flush();
    assert.equal(server.requests.length, n);
  });

  test('a handler that throws does not stop delivery', async () => {
    const errors: unknown[] = [];
    const g = globalThis as any;
    const saved = g.reportError;
    g.reportError = (e: unknown) => errors.push(e);
    try {
      const { es, client, settle } = setup({
        eventHandlers: { notification: () => { throw new Error('app bug'); }, '*': () => {} },
      });
      await settle();
      es.last.ready('1');
      es.last.event(ev(2));
      es.last.event(ev(3));
      assert.equal(errors.length, 2);
      assert.equal(client.cursor, '3');
      client.close();
    } finally {
      g.reportError = saved;
    }
  });
});
