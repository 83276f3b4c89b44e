import assert from "node:assert/strict";
import { test } from "node:test";

import { ThreadTracker, earliest } from "../tracker.js";

const E = "epoch-1";
const event = (offset, epoch = E, thread = "t") => ({ thread_id: thread, offset, epoch });
const offsets = (events) => events.map((e) => e.offset);
const subscribed = (offset, recovered, epoch = E) => ({ thread_id: "t", epoch, offset, recovered });

function live(position = 0) {
  const tracker = new ThreadTracker();
  tracker.subscribe("t");
  tracker.onSubscribed(subscribed(position, false), null);
  return tracker;
}

test("each event is delivered once, in order; replays overlapping what a tab has are dropped", () => {
  const tracker = live();
  const got = [1, 2, 3, 2, 3, 4].flatMap((o) => offsets(tracker.receive(event(o))));
  assert.deepEqual(got, [1, 2, 3, 4]);
  assert.equal(tracker.duplicatesDropped, 2);
  assert.deepEqual(tracker.position("t"), { epoch: E, offset: 4 });
});

test("events of threads the tab does not follow, or before its subscription starts, are not its own", () => {
  const tracker = new ThreadTracker();
  tracker.subscribe("t");
  assert.deepEqual(tracker.receive(event(1)), []);
  assert.deepEqual(tracker.receive(event(1, E, "other")), []);
  const userLevel = { thread_id: null, offset: null, epoch: E };
  assert.deepEqual(tracker.receive(userLevel), [userLevel]);
});

test("an event ahead of a gap waits for the gap to fill, then both go out in order", () => {
  const tracker = live(5);
  assert.deepEqual(offsets(tracker.receive(event(8))), []);
  assert.deepEqual(offsets(tracker.receive(event(6))), [6]);
  assert.deepEqual(offsets(tracker.receive(event(8))), []);
  assert.deepEqual(offsets(tracker.receive(event(7))), [7, 8]);
});

test("a subscribed frame releases what is held back, in order", () => {
  const tracker = live(5);
  tracker.receive(event(9));
  tracker.receive(event(8));
  const { failure, deliver } = tracker.onSubscribed(subscribed(9, false), { epoch: E, offset: 5 });
  assert.ok(failure, "the server could not fill 6 and 7");
  assert.deepEqual(offsets(deliver), []);
  assert.deepEqual(tracker.position("t"), { epoch: E, offset: 9 });
});

test("a recovery from this tab's position or earlier succeeds; from later it failed for this tab", () => {
  const tracker = live(5);
  assert.equal(tracker.onSubscribed(subscribed(7, true), { epoch: E, offset: 3 }).failure, null);
  const behind = live(5);
  const { failure } = behind.onSubscribed(subscribed(9, true), { epoch: E, offset: 7 });
  assert.deepEqual(failure, { threadId: "t", asked: { epoch: E, offset: 5 }, position: { epoch: E, offset: 9 } });
});

test("recovered:false with a new epoch fails once and continues in the new epoch", () => {
  const tracker = live(5);
  const first = tracker.onSubscribed(subscribed(0, false, "epoch-2"), { epoch: E, offset: 5 });
  assert.deepEqual(first.failure?.position, { epoch: "epoch-2", offset: 0 });
  assert.equal(tracker.onSubscribed(subscribed(0, false, "epoch-2"), { epoch: "epoch-2", offset: 0 }).failure, null);
  assert.deepEqual(offsets(tracker.receive(event(1, "epoch-2"))), [1]);
});

test("recovered:false when nothing was missed is not a failure", () => {
  const tracker = live(5);
  assert.equal(tracker.onSubscribed(subscribed(5, false), null).failure, null);
});

test("a first subscription starts at the server's position", () => {
  const tracker = new ThreadTracker();
  tracker.subscribe("t");
  assert.equal(tracker.onSubscribed(subscribed(12, false), null).failure, null);
  assert.deepEqual(offsets(tracker.receive(event(12))), []);
  assert.deepEqual(offsets(tracker.receive(event(13))), [13]);
});

test("since seeds a saved position", () => {
  const tracker = new ThreadTracker();
  tracker.subscribe("t", { epoch: E, offset: 3 });
  assert.deepEqual(offsets([3, 4].flatMap((o) => tracker.receive(event(o)))), [4]);
});

test("the hold-back is bounded", () => {
  const tracker = live(0);
  tracker.holdLimit = 3;
  for (const o of [3, 4, 5]) assert.deepEqual(tracker.receive(event(o)), []);
  assert.deepEqual(offsets(tracker.receive(event(6))), [3, 4, 5, 6]);
});

test("earliest: the lowest known position covers every tab", () => {
  assert.equal(earliest([null, null]), null);
  assert.deepEqual(earliest([{ epoch: E, offset: 7 }, null, { epoch: E, offset: 4 }]), { epoch: E, offset: 4 });
});
