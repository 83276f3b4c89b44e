// Per-thread positions: which events a tab has already delivered, and when a recovery failed.
// Pure and synchronous, shared by every role and unit-tested with node --test. Each tab keeps
// its own tracker, so that a tab never delivers an event twice or out of order whichever tab
// holds the socket.

/**
 * @typedef {{epoch: string, offset: number}} Position
 * @typedef {{threadId: string, asked: Position, position: Position}} RecoveryFailure
 * @typedef {{thread_id: string, epoch: string, offset: number, recovered: boolean}} SubscribedFrame
 */

/**
 * The position to resubscribe from on behalf of several tabs: the earliest known one, so that
 * the replay covers every tab (each drops what it already has). Null when no tab has one.
 * @param {Iterable<Position | null>} positions
 * @returns {Position | null}
 */
export function earliest(positions) {
  /** @type {Position | null} */
  let first = null;
  for (const position of positions) {
    if (position && (first === null || position.offset < first.offset)) first = position;
  }
  return first;
}

/** One tab's subscribed threads and the last offset delivered in each. */
export class ThreadTracker {
  constructor() {
    /** @type {Map<string, Position | null>} */
    this.positions = new Map();
    /** @type {Map<string, any[]>} events that arrived ahead of a gap, per thread, by offset */
    this.held = new Map();
    /** the most events held back per thread before they are delivered anyway */
    this.holdLimit = 1000;
    this.duplicatesDropped = 0;
  }

  /**
   * Start tracking `threadId`; `since` seeds a position kept elsewhere (it then replays after it).
   * @param {string} threadId @param {Position | null} [since]
   */
  subscribe(threadId, since = null) {
    if (!this.positions.has(threadId) || since) this.positions.set(threadId, since ?? null);
  }

  /** @param {string} threadId */
  unsubscribe(threadId) {
    this.positions.delete(threadId);
    this.held.delete(threadId);
  }

  /** @param {string} threadId */
  isSubscribed(threadId) {
    return this.positions.has(threadId);
  }

  /** @param {string} threadId @returns {Position | null} */
  position(threadId) {
    return this.positions.get(threadId) ?? null;
  }

  /** @returns {Record<string, Position | null>} every subscribed thread and its position */
  snapshot() {
    return Object.fromEntries(this.positions);
  }

  /**
   * The events to deliver now, in order, after `event` arrived: none when it is a duplicate or
   * not for this tab (a thread it does not follow, or before it knows where its subscription
   * starts); it and any held-back successors when it is the next offset. An event that arrives
   * ahead of a gap (tabs hear several senders during a leader change) is held back until the
   * gap fills or the thread's next `subscribed` says what the server could replay.
   * @template {{thread_id: string | null, offset: number | null, epoch: string | null}} E
   * @param {E} event
   * @returns {E[]}
   */
  receive(event) {
    if (event.thread_id == null || event.offset == null || event.epoch == null) return [event];
    const threadId = event.thread_id;
    const current = this.positions.get(threadId);
    if (!current) return [];
    if (current.epoch === event.epoch && event.offset <= current.offset) {
      this.duplicatesDropped += 1;
      return [];
    }
    if (current.epoch === event.epoch && event.offset > current.offset + 1 && this.holdLimit > 0) {
      return this.holdBack(threadId, event);
    }
    this.positions.set(threadId, { epoch: event.epoch, offset: event.offset });
    return [event, ...this.release(threadId)];
  }

  /**
   * @template {{thread_id: string | null, offset: number | null, epoch: string | null}} E
   * @param {string} threadId @param {E} event @returns {E[]}
   */
  holdBack(threadId, event) {
    const held = this.held.get(threadId) ?? [];
    if (held.some((other) => other.offset === event.offset && other.epoch === event.epoch)) {
      this.duplicatesDropped += 1;
      return [];
    }
    held.push(event);
    held.sort((a, b) => Number(a.offset) - Number(b.offset));
    this.held.set(threadId, held);
    if (held.length > this.holdLimit) return this.release(threadId, true);
    return [];
  }

  /**
   * Held-back events that now follow the thread's position; with `all`, every later one in order
   * (the gap will not fill).
   * @param {string} threadId @param {boolean} [all] @returns {any[]}
   */
  release(threadId, all = false) {
    const held = this.held.get(threadId);
    if (!held) return [];
    const out = [];
    const keep = [];
    for (const event of held) {
      const current = this.positions.get(threadId);
      if (!current || event.epoch !== current.epoch) {
        keep.push(event);
      } else if (event.offset <= current.offset) {
        this.duplicatesDropped += 1;
      } else if (all || event.offset === current.offset + 1) {
        this.positions.set(threadId, { epoch: event.epoch, offset: event.offset });
        out.push(event);
      } else {
        keep.push(event);
      }
    }
    if (keep.length && !all) this.held.set(threadId, keep);
    else this.held.delete(threadId);
    return out;
  }

  /**
   * A subscription of the socket went live for `frame.thread_id`, asked from `asked` (the
   * `since` sent, or null). Sets the tab's position and says whether this tab lost events:
   * the server could not replay (another epoch, a gap no longer retained), or the replay
   * started after this tab's own position. Events held back for the thread are released after
   * it, in order: the server has replayed all it will.
   * @param {SubscribedFrame} frame
   * @param {Position | null} asked
   * @returns {{failure: RecoveryFailure | null, deliver: any[]}}
   */
  onSubscribed(frame, asked) {
    const threadId = frame.thread_id;
    if (!this.positions.has(threadId)) return { failure: null, deliver: [] };
    const server = { epoch: frame.epoch, offset: frame.offset };
    const current = this.positions.get(threadId);
    /** @type {RecoveryFailure | null} */
    let failure = null;
    if (!current) {
      this.positions.set(threadId, server);
    } else {
      const replayedFromMine = frame.recovered && asked !== null && current.epoch === asked.epoch && current.offset >= asked.offset;
      const nothingMissed = current.epoch === server.epoch && current.offset >= server.offset;
      if (!replayedFromMine && !nothingMissed) {
        this.positions.set(threadId, server);
        failure = { threadId, asked: current, position: server };
      }
    }
    return { failure, deliver: this.release(threadId, true) };
  }
}
