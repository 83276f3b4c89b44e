import assert from "node:assert/strict";
import { test } from "node:test";

import { ReconnectPolicy, parseRetryAfter } from "../policy.js";

const fixed = (value) => new ReconnectPolicy({ random: () => value });

test("the codes the protocol says not to reconnect after stop, with a reason and an action", () => {
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 4001, 4002, 4003, 4029]) {
    const decision = fixed(0.5).afterClose(code);
    assert.equal(decision.reconnect, false, `code ${code}`);
    assert.match(decision.why, new RegExp(`^${code}: `));
    assert.ok(decision.action, `code ${code} says what to do`);
  }
});

test("network loss, heartbeat timeout and slow consumer back off with jitter, growing", () => {
  for (const code of [1005, 1006, 1011, 1012, 1013, 1014, 4008]) {
    assert.equal(fixed(0).afterClose(code).reconnect, true, `code ${code}`);
  }
  const low = fixed(0);
  assert.deepEqual([1, 2, 3, 4].map(() => low.afterClose(1006).delay), [50, 100, 200, 400]);
  const high = fixed(0.999999);
  const delays = [1, 2, 3].map(() => high.afterClose(1011).delay);
  assert.ok(delays[0] <= 100 && delays[1] <= 200 && delays[2] <= 400 && delays[2] > 399, String(delays));
});

test("backoff is capped at maxDelay and restarts from the bottom once connected", () => {
  const policy = new ReconnectPolicy({ maxDelay: 1000, random: () => 0.999999 });
  for (let i = 0; i < 20; i++) policy.afterNetworkError();
  assert.ok(policy.afterNetworkError().delay <= 1000);
  policy.connected();
  assert.ok(policy.afterNetworkError().delay <= 100);
});

test("1001 going_away waits a random delay of up to goingAwayDelay, not the backoff", () => {
  assert.equal(fixed(0.5).afterClose(1001).delay, 2500);
  assert.equal(fixed(0).afterClose(1001).delay, 0);
  const policy = fixed(0.5);
  policy.afterClose(1001);
  assert.equal(policy.attempts, 0);
});

test("4401 reconnects only with fresh credentials", () => {
  assert.equal(fixed(0).afterClose(4401).reconnect, false);
  assert.equal(fixed(0).afterClose(4401, { freshCredentials: true }).reconnect, true);
});

test("an unknown close code stops", () => {
  assert.equal(fixed(0).afterClose(4999).reconnect, false);
});

test("429 and 503 wait at least Retry-After, plus jitter; 401 and 403 stop", () => {
  const decision = fixed(0.999999).afterRefusal(429, 3);
  assert.ok(decision.reconnect && decision.delay >= 3000 && decision.delay < 3000 + 1500 + 1, String(decision.delay));
  assert.equal(fixed(0).afterRefusal(503, 1).delay, 1000);
  assert.equal(fixed(0).afterRefusal(503).delay, 50);
  assert.equal(fixed(0).afterRefusal(401).reconnect, false);
  assert.equal(fixed(0).afterRefusal(403).action, "sign in again");
});

test("maxAttempts bounds consecutive failures", () => {
  const policy = new ReconnectPolicy({ maxAttempts: 2, random: () => 0 });
  assert.equal(policy.afterNetworkError().reconnect, true);
  assert.equal(policy.afterNetworkError().reconnect, true);
  assert.equal(policy.afterNetworkError().reconnect, false);
});

test("Retry-After: seconds or an HTTP date", () => {
  assert.equal(parseRetryAfter("5"), 5);
  assert.equal(parseRetryAfter(" 2.5 "), 2.5);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter("soon"), null);
  const now = Date.parse("Mon, 30 Nov 2026 10:00:00 GMT");
  assert.equal(parseRetryAfter("Mon, 30 Nov 2026 10:00:07 GMT", now), 7);
  assert.equal(parseRetryAfter("Mon, 30 Nov 2026 09:00:00 GMT", now), 0);
});
