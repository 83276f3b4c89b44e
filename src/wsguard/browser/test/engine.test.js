// The engine over fake transports: a WebSocket that never opens (a proxy that strips Upgrade),
// an EventSource the test drives, and fetch answering tickets and command POSTs.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { Engine } from "../engine.js";

class FakeSocket {
  /** @type {FakeSocket[]} */
  static made = [];
  /** "refused": closes with 1006 unopened; "silent": opens and then says nothing */
  static behaviour = "refused";
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.closed = false;
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onclose = null;
    FakeSocket.made.push(this);
    if (FakeSocket.behaviour === "silent") setTimeout(() => this.onopen?.(), 1);
    else setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 1);
  }
  send() {
    throw new Error("never open");
  }
  close() {
    this.closed = true;
  }
}

class FakeSource {
  /** @type {FakeSource[]} */
  static made = [];
  /** @param {string} url */
  constructor(url) {
    this.url = new URL(url);
    this.closed = false;
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onmessage = null;
    /** @type {any} */ this.onerror = null;
    FakeSource.made.push(this);
  }
  /** @param {any} frame @param {string} [id] */
  message(frame, id = "") {
    this.onmessage?.({ data: JSON.stringify(frame), lastEventId: id });
  }
  /** @param {number} session */
  welcome(session = 1) {
    this.onopen?.();
    this.message({
      type: "welcome",
      session_id: `ses_${session}`,
      user_id: "alice",
      transport: "sse",
      commands: `/sse/commands/c${FakeSource.made.length}`,
      heartbeat: { interval: 20, timeout: 20 },
      limits: { max_connections_per_user: 20, max_message_bytes: 200 },
    });
  }
  close() {
    this.closed = true;
  }
}

/** @type {{url: string, body: any}[]} */
let posts = [];
/** @type {number} */
let postStatus = 202;
let tickets = 0;
const saved = { WebSocket: globalThis.WebSocket, EventSource: globalThis.EventSource, fetch: globalThis.fetch };

beforeEach(() => {
  FakeSocket.made = [];
  FakeSocket.behaviour = "refused";
  FakeSource.made = [];
  posts = [];
  postStatus = 202;
  tickets = 0;
  Object.assign(globalThis, {
    WebSocket: FakeSocket,
    EventSource: FakeSource,
    fetch: async (/** @type {string} */ url, /** @type {any} */ init) => {
      if (url.endsWith("/api/tickets")) {
        tickets += 1;
        return new Response(JSON.stringify({ ticket: `tkt_${tickets}` }), { status: 200 });
      }
      posts.push({ url, body: JSON.parse(init.body) });
      return new Response(null, { status: postStatus });
    },
  });
});

afterEach(() => Object.assign(globalThis, saved));

function sink() {
  const seen = {
    /** @type {any[]} */ events: [],
    /** @type {any[]} */ subscribed: [],
    /** @type {any[]} */ replies: [],
    /** @type {any[]} */ stopped: [],
    /** @type {string[]} */ transports: [],
  };
  return {
    seen,
    sink: {
      event: (/** @type {any} */ frame) => seen.events.push(frame),
      subscribed: (/** @type {any} */ frame) => seen.subscribed.push(frame),
      state: () => {},
      welcome: (/** @type {any} */ _welcome, /** @type {string} */ transport) => seen.transports.push(transport),
      reply: (/** @type {any} */ frame, /** @type {string} */ tab) => seen.replies.push({ frame, tab }),
      stopped: (/** @type {any} */ detail) => seen.stopped.push(detail),
    },
  };
}

/** @param {Record<string, unknown>} [extra] */
function engine(sinkValue, extra = {}) {
  return new Engine(
    {
      url: "ws://h/ws",
      sseUrl: "http://h/sse",
      ticketUrl: "http://h/api/tickets",
      token: "a.b.c",
      ticket: undefined,
      backoff: { baseDelay: 1, maxDelay: 2 },
      pingInterval: undefined,
      pingTimeout: 1000,
      ...extra,
    },
    sinkValue,
  );
}

/** @param {() => unknown} condition */
async function until(condition, what = "condition") {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`${what} did not hold`);
}

const event = (/** @type {number} */ offset) => ({ type: "event", event: "step", thread_id: "chat-1", offset, epoch: "e1", data: {} });

test("auto: two failed upgrades, then SSE; commands go by POST to the welcome's path, in order", async () => {
  const { seen, sink: s } = sink();
  const client = engine(s);
  client.want("tab-a", "chat-1", null);
  client.start();
  await until(() => FakeSource.made.length === 1, "an EventSource");
  assert.equal(FakeSocket.made.length, 2);
  const source = FakeSource.made[0];
  assert.equal(source.url.pathname, "/sse");
  assert.equal(source.url.searchParams.get("ticket"), "tkt_3");
  assert.equal(source.url.searchParams.get("last_event_id"), null);
  source.welcome();
  assert.deepEqual(seen.transports, ["sse"]);
  await until(() => posts.length === 1, "the subscribe POST");
  assert.equal(posts[0].url, "http://h/sse/commands/c1");
  assert.deepEqual(posts[0].body, { type: "subscribe", thread_id: "chat-1", ref: 1 });
  source.message({ type: "subscribed", thread_id: "chat-1", epoch: "e1", offset: 0, recovered: false, replayed: 0, ref: 1 }, "tok1");
  source.message(event(1), "tok2");
  assert.deepEqual(seen.events.map((frame) => frame.offset), [1]);

  client.command("tab-b", { type: "ping", ref: "tab-b.1" }, Date.now() + 1000);
  client.command("tab-b", { type: "echo", text: "x".repeat(300), ref: "tab-b.2" }, Date.now() + 1000);
  await until(() => posts.length === 2, "the ping POST");
  assert.deepEqual(posts[1].body, { type: "ping", ref: "tab-b.1" });
  source.message({ type: "pong", ref: "tab-b.1" });
  assert.deepEqual(seen.replies.map(({ frame, tab }) => [frame.type, frame.code ?? null, tab]), [
    ["error", "too_big", "tab-b"],
    ["pong", null, "tab-b"],
  ]);
  client.stop();
});

test("a close message is a close code: 4008 resumes with last_event_id, 4001 stops for good", async () => {
  const { seen, sink: s } = sink();
  const client = engine(s, { transport: "sse" });
  client.want("tab-a", "chat-1", null);
  client.want("tab-a", "chat-2", null);
  client.start();
  await until(() => FakeSource.made.length === 1);
  const first = FakeSource.made[0];
  first.welcome();
  await until(() => posts.length === 2);
  first.message({ type: "subscribed", thread_id: "chat-1", epoch: "e1", offset: 0, recovered: false, replayed: 0, ref: 1 }, "tok1");
  first.message(event(1), "tok2");
  client.command("tab-a", { type: "ping", ref: "tab-a.1" }, Date.now() + 1000);
  first.message({ type: "close", code: 4008, reason: "slow_consumer" });
  assert.ok(first.closed, "the client closes the EventSource itself: no reconnect with a spent ticket");
  assert.deepEqual(seen.replies.map(({ frame }) => frame.code), ["connection_lost"]);

  await until(() => FakeSource.made.length === 2, "a second stream");
  const second = FakeSource.made[1];
  assert.equal(second.url.searchParams.get("last_event_id"), "tok2");
  assert.equal(second.url.searchParams.get("resume"), "ses_1");
  assert.equal(second.url.searchParams.get("ticket"), "tkt_2");
  const before = posts.length;
  second.welcome();
  await until(() => posts.length === before + 1);
  // chat-1 is the token's to resume; chat-2 never went live, so it is asked for.
  assert.deepEqual(posts.slice(before).map((post) => post.body.thread_id), ["chat-2"]);
  assert.deepEqual(client.expected, new Set(["chat-1"]));
  second.message(event(2), "tok3");
  second.message({ type: "subscribed", thread_id: "chat-1", epoch: "e1", offset: 2, recovered: true, replayed: 1 }, "tok3");
  assert.equal(client.expected.size, 0);
  assert.equal(client.threads.get("chat-1")?.state, "live");
  assert.deepEqual(seen.events.map((frame) => frame.offset), [1, 2]);

  second.message({ type: "close", code: 4001, reason: "superseded" });
  await until(() => seen.stopped.length === 1, "stopped");
  assert.equal(seen.stopped[0].code, 4001);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(FakeSource.made.length, 2, "no reconnect after 4001");
});

test("a thread the token resubscribes that no tab follows any more is unsubscribed", async () => {
  const { sink: s } = sink();
  const client = engine(s, { transport: "sse" });
  client.want("tab-a", "chat-1", null);
  client.start();
  await until(() => FakeSource.made.length === 1);
  FakeSource.made[0].welcome();
  await until(() => posts.length === 1);
  FakeSource.made[0].message({ type: "subscribed", thread_id: "old", epoch: "e1", offset: 4, recovered: true, replayed: 0 }, "tok");
  await until(() => posts.length === 2);
  assert.deepEqual(posts[1].body, { type: "unsubscribe", thread_id: "old" });
  client.stop();
});

test("a stream error, or a 404 on a command POST, reconnects; a tab's refused POST fails only its command", async () => {
  const { seen, sink: s } = sink();
  const client = engine(s, { transport: "sse" });
  client.start();
  await until(() => FakeSource.made.length === 1);
  FakeSource.made[0].welcome();
  postStatus = 413;
  client.command("tab-a", { type: "echo", ref: "tab-a.1" }, Date.now() + 1000);
  await until(() => seen.replies.length === 1);
  assert.equal(seen.replies[0].frame.code, "not_delivered");
  assert.equal(seen.replies[0].frame.status, 413);
  assert.equal(FakeSource.made.length, 1, "the stream stays");
  postStatus = 404;
  client.command("tab-a", { type: "echo", ref: "tab-a.2" }, Date.now() + 1000);
  await until(() => FakeSource.made.length === 2, "a new stream after the 404");
  assert.ok(FakeSource.made[0].closed);
  FakeSource.made[1].welcome();
  FakeSource.made[1].onerror();
  await until(() => FakeSource.made.length === 3, "a new stream after the error");
  assert.ok(FakeSource.made[1].closed);
  client.stop();
  assert.ok(FakeSource.made[2].closed);
});

test("commands wait for the connection until their deadline", async () => {
  const { sink: s } = sink();
  const client = engine(s, { transport: "sse" });
  client.command("tab-a", { type: "late", ref: "tab-a.1" }, Date.now() - 1);
  client.command("tab-a", { type: "ping", ref: "tab-a.2" }, Date.now() + 5000);
  client.start();
  await until(() => FakeSource.made.length === 1);
  FakeSource.made[0].welcome();
  await until(() => posts.length === 1);
  assert.deepEqual(posts.map((post) => post.body.ref), ["tab-a.2"]);
  client.stop();
});

test("the watchdog pings by POST; a stream that says nothing back within pingTimeout is given up", async () => {
  const { sink: s } = sink();
  const client = engine(s, { transport: "sse", pingInterval: 10, pingTimeout: 40 });
  client.start();
  await until(() => FakeSource.made.length === 1);
  FakeSource.made[0].welcome();
  await until(() => posts.length === 1, "a ping");
  assert.deepEqual(posts[0].body, { type: "ping" });
  FakeSource.made[0].message({ type: "pong" });
  await until(() => posts.length === 2, "the next ping");
  await until(() => FakeSource.made.length === 2, "a new stream after the silence");
  assert.ok(FakeSource.made[0].closed);
  client.stop();
});

test("an upgrade that opens but never sends its welcome is given up after pingTimeout, and counts toward the fallback", async () => {
  FakeSocket.behaviour = "silent";
  const { seen, sink: s } = sink();
  const client = engine(s, { pingTimeout: 20 });
  client.start();
  await until(() => FakeSource.made.length === 1, "the fallback to SSE");
  assert.equal(FakeSocket.made.length, 2);
  assert.ok(FakeSocket.made.every((socket) => socket.closed));
  FakeSource.made[0].welcome();
  assert.deepEqual(seen.transports, ["sse"]);
  client.stop();
});
