import assert from "node:assert/strict";
import { test } from "node:test";

import { HistoryError, fetchHistory, historyUrl, readHistory } from "../history.js";

const E = "epoch-1";
const frame = (offset) => ({ type: "event", event: "step", thread_id: "t", offset, epoch: E, data: {} });
const body = (offset, events, complete = true) => ({ thread_id: "t", epoch: E, offset, complete, events });

test("the history URL is on the socket's host, over HTTP(S), with since and limit", () => {
  assert.equal(historyUrl("ws://h:8765/ws", "chat-1"), "http://h:8765/api/threads/chat-1/events?since=0&limit=100");
  assert.equal(
    historyUrl("wss://h/ws?ticket=x", "a.b:c", { since: 7, limit: 5, userId: "u 1" }),
    "https://h/api/threads/a.b%3Ac/events?since=7&limit=5&user_id=u+1",
  );
});

test("the position is the last event returned, so that a limited page goes on from there", () => {
  assert.deepEqual(readHistory(body(9, [frame(3), frame(4)])).position, { epoch: E, offset: 4 });
});

test("without events the position is the thread's last offset (nothing left to fetch)", () => {
  const history = readHistory(body(9, [], false));
  assert.deepEqual(history.position, { epoch: E, offset: 9 });
  assert.equal(history.complete, false);
  assert.equal(history.threadId, "t");
});

test("an answer that is not a history is refused", () => {
  assert.throws(() => readHistory({ thread_id: "t", epoch: E, offset: 1, events: [] }), TypeError);
  assert.throws(() => readHistory(body(1, [{ type: "welcome" }])), TypeError);
  assert.throws(() => readHistory(null), TypeError);
});

test("the token goes as a bearer; an error status becomes a HistoryError with Retry-After", async () => {
  const asked = [];
  const answer = (status, json, headers = {}) => async (url, init) => {
    asked.push({ url, init });
    return { ok: status === 200, status, json: async () => json, headers: new Map(Object.entries(headers)) };
  };
  const history = await fetchHistory("ws://h/ws", "t", { token: "jwt", since: 2, fetch: answer(200, body(4, [frame(3), frame(4)])) });
  assert.deepEqual(history.events.map((e) => e.offset), [3, 4]);
  assert.equal(asked[0].init.headers.Authorization, "Bearer jwt");
  assert.match(asked[0].url, /since=2/);
  await assert.rejects(
    fetchHistory("ws://h/ws", "t", { token: "jwt", fetch: answer(503, { error: "backend unavailable" }, { "Retry-After": "1" }) }),
    (error) => error instanceof HistoryError && error.status === 503 && error.retryAfter === 1,
  );
});
