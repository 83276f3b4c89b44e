import assert from "node:assert/strict";
import { test } from "node:test";

import { CommandError, Replies, failure, streamUrl } from "../engine.js";

test("refs are the tab's own strings, never an integer or 'refresh'", () => {
  const replies = new Replies("tab-a");
  const refs = [replies.nextRef(), replies.nextRef()];
  assert.deepEqual(refs, ["tab-a.1", "tab-a.2"]);
  assert.notEqual(new Replies("tab-b").nextRef(), refs[0]);
});

test("the reply with the same ref resolves the command; others are not its business", async () => {
  const replies = new Replies("t");
  const frame = { type: "ping", ref: replies.nextRef() };
  const reply = replies.expect(frame, 1000);
  assert.equal(replies.settle({ type: "pong", ref: "other.1" }), false);
  assert.equal(replies.settle({ type: "subscribed", ref: 1 }), false);
  assert.equal(replies.settle({ type: "pong" }), false);
  assert.equal(replies.settle({ type: "pong", ref: frame.ref }), true);
  assert.deepEqual(await reply, { type: "pong", ref: "t.1" });
  assert.equal(replies.settle({ type: "pong", ref: frame.ref }), false, "settled once");
  assert.equal(replies.pending.size, 0);
});

test("an error with the same ref rejects with its code and message", async () => {
  const replies = new Replies("t");
  const frame = { type: "launch", ref: replies.nextRef() };
  const reply = replies.expect(frame, 1000);
  replies.settle({ type: "error", ref: frame.ref, code: "unknown_type", message: "unknown type 'launch'" });
  await assert.rejects(reply, (error) => {
    assert.ok(error instanceof CommandError);
    assert.equal(error.code, "unknown_type");
    assert.match(error.message, /unknown type 'launch'/);
    assert.equal(error.reply.ref, "t.1");
    assert.equal(error.status, null);
    return true;
  });
});

test("no reply within the timeout rejects with code timeout", async () => {
  const replies = new Replies("t");
  const reply = replies.expect({ type: "ping", ref: replies.nextRef() }, 20);
  await assert.rejects(reply, (error) => error instanceof CommandError && error.code === "timeout");
  assert.equal(replies.pending.size, 0);
});

test("a made-up failure carries the POST's status", async () => {
  const replies = new Replies("t");
  const reply = replies.expect({ type: "big", ref: "t.9" }, 1000);
  replies.settle(failure("t.9", "not_delivered", "POST answered HTTP 413", 413));
  await assert.rejects(reply, (error) => error.code === "not_delivered" && error.status === 413);
});

test("a new connection owner: what the last one took is lost, the rest is sent again", async () => {
  const replies = new Replies("t");
  const taken = replies.expect({ type: "a", ref: replies.nextRef() }, 1000);
  const waiting = replies.expect({ type: "b", ref: replies.nextRef() }, 1000);
  replies.accept("t.1");
  assert.deepEqual(replies.unaccepted().map((entry) => entry.frame.type), ["b"]);
  replies.failAll("connection_lost", "gone", (entry) => entry.accepted);
  await assert.rejects(taken, (error) => error.code === "connection_lost");
  assert.equal(replies.pending.size, 1);
  replies.failAll("closed", "the client was closed");
  await assert.rejects(waiting, (error) => error.code === "closed");
});

test("the SSE URL beside the socket's", () => {
  assert.equal(streamUrl("ws://h:8765/ws"), "http://h:8765/sse");
  assert.equal(streamUrl("wss://h/app/ws?x=1"), "https://h/app/sse?x=1");
  assert.equal(streamUrl("wss://h/socket"), "https://h/sse");
});
