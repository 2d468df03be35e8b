import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../src/backoff.js';
import { retryAfterMs } from '../src/errors.js';
import { before, compareIds, isAfter, isId } from '../src/ids.js';
import { decodeTokenTimes, tokenSchedule } from '../src/jwt.js';
import { makeJwt } from './helpers.js';

test('ids compare as numbers: by length, then digit by digit', () => {
  assert.ok(compareIds('9', '10') < 0);
  assert.ok(compareIds('100', '99') > 0);
  assert.equal(compareIds('9007199254740993', '9007199254740993'), 0);
  assert.ok(compareIds('9007199254740993', '9007199254740992') > 0, 'past 2^53');
  assert.ok(isAfter('1', null));
  assert.ok(!isAfter('5', '5'));
  assert.equal(before('100'), '99');
  assert.equal(before('0'), '0');
  assert.equal(before('9223372036854775807'), '9223372036854775806');
  for (const ok of ['0', '1', '9223372036854775807']) assert.ok(isId(ok), ok);
  for (const bad of ['', '01', '-1', '1.5', 'abc', '12345678901234567890', 5]) assert.ok(!isId(bad), String(bad));
});

test("a JWT's exp and iat are read without verifying it, and renewal comes at 80% of the lifetime", () => {
  const t = makeJwt({ sub: 'ü', iat: 1_000, exp: 1_100 });
  assert.deepEqual(decodeTokenTimes(t), { exp: 1_100, iat: 1_000 });
  assert.deepEqual(decodeTokenTimes('not a jwt'), { exp: null, iat: null });
  assert.deepEqual(decodeTokenTimes('a.!!!.b'), { exp: null, iat: null });

  // Clocks agree: the schedule follows iat.
  assert.deepEqual(tokenSchedule({ iat: 1_000, exp: 1_100 }, 1_010_000), { renewAt: 1_080_000, expiresAt: 1_100_000 });
  // The local clock is an hour behind: the lifetime still counts from now.
  assert.deepEqual(tokenSchedule({ iat: 1_000, exp: 1_100 }, 1_000_000 - 3_600_000), { renewAt: -2_520_000, expiresAt: -2_500_000 });
  // No iat: from now to exp.
  assert.deepEqual(tokenSchedule({ iat: null, exp: 1_100 }, 1_000_000), { renewAt: 1_080_000, expiresAt: 1_100_000 });
  assert.equal(tokenSchedule({ iat: null, exp: null }, 0), null);
});

test('backoff: full jitter under an exponential cap, at least Retry-After', () => {
  const b = new Backoff(500, 4_000, () => 0.999999);
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [499, 999, 1999, 3999, 3999]);
  assert.equal(b.next(10_000), 10_000);
  b.reset();
  assert.equal(b.next(), 499);
  assert.equal(new Backoff(500, 4_000, () => 0).next(), 0);
  assert.equal(retryAfterMs('3', 0), 3_000);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6_000);
  assert.equal(retryAfterMs(null, 0), null);
});
