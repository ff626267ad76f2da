// Backoff with jitter (static/chat/backoff.js): reconnecting 0.5 s doubling
// to 30 s, between half and all of it; resending 1 s doubling to 15 s,
// between 80 % and all of it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffCap, backoffDelay, RECONNECT, RETRY } from "../../static/chat/backoff.js";

test("the cap doubles from the minimum and stops at the maximum", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffCap(n, RECONNECT)),
    [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
  );
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((n) => backoffCap(n, RETRY)),
    [1000, 2000, 4000, 8000, 15000, 15000]
  );
});

test("a huge or odd attempt count stays at the cap or the minimum", () => {
  assert.equal(backoffCap(5000, RECONNECT), 30000);
  assert.equal(backoffDelay(5000, RECONNECT, () => 0.999), 30000 * (0.5 + 0.999 * 0.5));
  assert.equal(backoffCap(-3, RECONNECT), 500);
  assert.equal(backoffCap(Number.NaN, RETRY), 1000);
});

test("reconnect waits are between half and all of the cap", () => {
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const cap = backoffCap(attempt, RECONNECT);
    assert.equal(backoffDelay(attempt, RECONNECT, () => 0), cap / 2);
    const top = backoffDelay(attempt, RECONNECT, () => 0.999999);
    assert.ok(top < cap && top > cap * 0.99, `${attempt}: ${top}`);
  }
});

test("retry waits are between 80 % and all of the cap", () => {
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const cap = backoffCap(attempt, RETRY);
    assert.equal(backoffDelay(attempt, RETRY, () => 0), cap * 0.8);
    assert.ok(backoffDelay(attempt, RETRY, () => 0.999999) < cap);
  }
});

test("Math.random's jitter stays in range and spreads", () => {
  const waits = Array.from({ length: 2000 }, () => backoffDelay(3, RECONNECT));
  assert.ok(waits.every((w) => w >= 2000 && w < 4000));
  assert.ok(Math.min(...waits) < 2200 && Math.max(...waits) > 3800, "jitter covers the range");
});
