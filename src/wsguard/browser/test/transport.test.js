import assert from "node:assert/strict";
import { test } from "node:test";

import { RETRY_WEBSOCKET_AFTER, TransportChooser } from "../policy.js";

const MINUTE = 60 * 1000;

test("auto starts on WebSocket and falls back to SSE after two attempts in a row without a welcome", () => {
  const chooser = new TransportChooser("auto");
  assert.equal(chooser.next(0), "websocket");
  chooser.ended("websocket", false, 0);
  assert.equal(chooser.next(1), "websocket", "one failure is not enough");
  chooser.ended("websocket", false, 1);
  assert.equal(chooser.next(2), "sse");
  assert.deepEqual(chooser.snapshot(), { transport: "sse", fellBackAt: 1 });
});

test("a WebSocket that worked in between resets the count", () => {
  const chooser = new TransportChooser("auto");
  chooser.ended("websocket", false, 0);
  chooser.ended("websocket", true, 1);
  chooser.ended("websocket", false, 2);
  assert.equal(chooser.next(3), "websocket");
});

test("SSE stays while it works, and WebSocket is tried again at the first attempt after retryAfter", () => {
  const chooser = new TransportChooser("auto");
  chooser.ended("websocket", false, 0);
  chooser.ended("websocket", false, 0);
  for (const now of [1 * MINUTE, 2 * MINUTE, 4 * MINUTE]) {
    assert.equal(chooser.next(now), "sse");
    chooser.ended("sse", true, now);
  }
  assert.equal(chooser.next(RETRY_WEBSOCKET_AFTER), "websocket");
  chooser.ended("websocket", true, RETRY_WEBSOCKET_AFTER);
  assert.equal(chooser.next(RETRY_WEBSOCKET_AFTER + 1), "websocket", "WebSocket works again: it stays");
  assert.equal(chooser.fellBackAt, null);
});

test("one failed try after retryAfter goes straight back to SSE for another retryAfter", () => {
  const chooser = new TransportChooser("auto", { retryAfter: 1000 });
  chooser.ended("websocket", false, 0);
  chooser.ended("websocket", false, 0);
  assert.equal(chooser.next(1000), "websocket");
  chooser.ended("websocket", false, 1000);
  assert.equal(chooser.next(1001), "sse");
  assert.equal(chooser.next(1999), "sse");
  assert.equal(chooser.next(2000), "websocket");
});

test("when SSE fails twice as well, the upgrade was not the problem: back to WebSocket", () => {
  const chooser = new TransportChooser("auto");
  chooser.ended("websocket", false, 0);
  chooser.ended("websocket", false, 0);
  chooser.ended("sse", false, 1);
  assert.equal(chooser.next(2), "sse");
  chooser.ended("sse", false, 2);
  assert.equal(chooser.next(3), "websocket");
  assert.equal(chooser.fellBackAt, null);
});

test("an outcome of another transport than the current one is ignored", () => {
  const chooser = new TransportChooser("auto");
  chooser.ended("sse", false, 0);
  chooser.ended("sse", false, 0);
  assert.equal(chooser.next(1), "websocket");
});

test("fixed modes never switch", () => {
  for (const mode of /** @type {const} */ (["websocket", "sse"])) {
    const chooser = new TransportChooser(mode);
    for (let i = 0; i < 5; i++) chooser.ended(mode, false, i);
    assert.equal(chooser.next(10 * RETRY_WEBSOCKET_AFTER), mode);
  }
  assert.throws(() => new TransportChooser(/** @type {any} */ ("long-polling")), TypeError);
});

test("a new leader carries on from the last one's fallback, and its retry clock", () => {
  const chooser = new TransportChooser("auto", { retryAfter: 1000, from: { transport: "sse", fellBackAt: 500 } });
  assert.equal(chooser.next(600), "sse");
  assert.equal(chooser.next(1500), "websocket");
  assert.equal(new TransportChooser("auto", { from: { transport: "websocket", fellBackAt: null } }).next(0), "websocket");
  assert.equal(new TransportChooser("websocket", { from: { transport: "sse", fellBackAt: 0 } }).next(0), "websocket");
});
