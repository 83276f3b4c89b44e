// wsguard browser client: one connection per browser, shared by the user's tabs, each event
// delivered once and in order in every tab, across reconnects and leader changes.
// Plain ES module, no dependencies, no build step; works under a strict CSP and offline.
//
//   import { connect } from "/client/wsguard.js";
//   const client = connect("/ws", { token: async () => jwt });
//   const stop = client.subscribe("chat-1", (event) => render(event));

import { Engine } from "./engine.js";
import { fetchHistory } from "./history.js";
import { ThreadTracker } from "./tracker.js";

export { HistoryError, fetchHistory, historyUrl, readHistory } from "./history.js";
export { ReconnectPolicy, parseRetryAfter } from "./policy.js";
export { ThreadTracker, earliest } from "./tracker.js";

const THREAD_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * @typedef {import("./tracker.js").Position} Position
 * @typedef {import("./history.js").History} History
 * @typedef {import("./engine.js").StopDetail} StopDetail
 * @typedef {"connecting" | "open" | "closed"} State
 * @typedef {"leader" | "follower" | "alone"} Role
 * @typedef {object} ConnectOptions
 * @property {string | (() => Promise<string>)} [token]  a JWT, or an async provider of fresh ones;
 *   a ticket is fetched with it from POST /api/tickets before every connection
 * @property {() => Promise<string>} [ticket]  an async provider of one-time tickets instead
 * @property {boolean} [share]  one socket for every tab of this origin (default true)
 * @property {string} [shareKey]  tabs share a socket only with tabs of the same key: set it to
 *   the user id when one browser may hold several users' sessions on one origin
 * @property {string} [ticketUrl]  default: /api/tickets on the socket's host
 * @property {{baseDelay?: number, factor?: number, maxDelay?: number, goingAwayDelay?: number, maxAttempts?: number | null}} [backoff]
 * @property {number} [pingInterval]  ms between application pings; default the server's heartbeat interval
 * @property {number} [pingTimeout]  ms to wait for any frame after a ping (default 10000)
 * @property {number} [gatherTimeout]  ms a new leader waits for the other tabs' subscriptions (default 1000)
 */

/**
 * Connect to a wsguard server; returns at once, the connection is made in the background.
 * @param {string} url  the socket's URL: ws://, wss://, http(s):// or a path like "/ws"
 * @param {ConnectOptions} [options]
 */
export function connect(url, options = {}) {
  return new WsguardClient(url, options);
}

/** A wsguard connection that survives drops and leader changes without losing or repeating events. */
export class WsguardClient extends EventTarget {
  /** @param {string} url @param {ConnectOptions} [options] */
  constructor(url, options = {}) {
    super();
    if ((options.token === undefined) === (options.ticket === undefined)) {
      throw new TypeError("wsguard: pass exactly one of { token } and { ticket }");
    }
    if (options.ticket !== undefined && typeof options.ticket !== "function") {
      throw new TypeError("wsguard: ticket must be an async function returning a one-time ticket");
    }
    const socket = socketUrl(url);
    this.url = socket.toString();
    this.options = options;
    this.ticketUrl = options.ticketUrl ?? ticketUrlFor(socket);
    this.tabId = randomId();
    this.tracker = new ThreadTracker();
    /** @type {Map<string, Set<(event: any) => void>>} */
    this.callbacks = new Map();
    /** @type {State} */
    this.state = "connecting";
    /** @type {Role} */
    this.role = "alone";
    this.closed = false;
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {string | null} */
    this.userId = null;
    /** @type {Engine | null} */
    this.engine = null;
    this.counts = { delivered: 0, replayed: 0, recoveryFailures: 0 };
    /** @type {() => void} */
    let resolveClosed = () => {};
    this.untilClosed = new Promise((resolve) => (resolveClosed = () => resolve(undefined)));
    this.resolveClosed = resolveClosed;
    this.onPageHide = () => this.close();
    globalThis.addEventListener?.("pagehide", this.onPageHide);
    const canShare = Boolean(globalThis.navigator?.locks?.request) && typeof globalThis.BroadcastChannel === "function";
    if (options.share !== false && canShare) {
      this.startShared();
    } else {
      this.engine = this.newEngine();
      this.engine.start();
    }
  }

  /** Counters for monitoring and tests; `replayed` counts events the server replayed for this tab's threads. */
  get stats() {
    return {
      ...this.counts,
      duplicatesDropped: this.tracker.duplicatesDropped,
      connections: this.engine?.connections ?? 0,
    };
  }

  /**
   * Receive the events of `threadId`, each once and in order, until the returned function is
   * called. `since` resumes from a position saved earlier (see `position()`).
   * @param {string} threadId
   * @param {(event: any) => void} callback
   * @param {{since?: Position}} [options]
   * @returns {() => void} unsubscribe
   */
  subscribe(threadId, callback, options = {}) {
    if (typeof threadId !== "string" || !THREAD_ID.test(threadId)) {
      throw new TypeError("wsguard: threadId must match [A-Za-z0-9._:-]{1,128}");
    }
    if (typeof callback !== "function") throw new TypeError("wsguard: callback must be a function");
    if (this.closed) throw new Error("wsguard: the client is closed");
    let callbacks = this.callbacks.get(threadId);
    if (!callbacks) {
      this.callbacks.set(threadId, (callbacks = new Set()));
      this.tracker.subscribe(threadId, options.since ?? null);
      this.want(threadId);
    }
    callbacks.add(callback);
    const own = callbacks;
    return () => {
      own.delete(callback);
      if (own.size || this.callbacks.get(threadId) !== own) return;
      this.callbacks.delete(threadId);
      this.tracker.unsubscribe(threadId);
      if (this.engine) this.engine.unwant(this.tabId, threadId);
      else this.post({ kind: "unsub", threadId });
    };
  }

  /**
   * The thread's retained events after `since`, over HTTP with this client's token: draw them,
   * then `subscribe(threadId, callback, { since: history.position })` goes on without a gap.
   * @param {string} threadId
   * @param {{since?: number, limit?: number}} [options]
   * @returns {Promise<History>}
   */
  async history(threadId, options = {}) {
    if (typeof threadId !== "string" || !THREAD_ID.test(threadId)) {
      throw new TypeError("wsguard: threadId must match [A-Za-z0-9._:-]{1,128}");
    }
    const token = this.options.token;
    if (token === undefined) throw new TypeError("wsguard: history needs the { token } option (a ticket opens only a socket)");
    const bearer = typeof token === "function" ? await token() : String(token);
    return fetchHistory(this.url, threadId, { ...options, token: bearer });
  }

  /** The epoch and last offset delivered for `threadId` in this tab. @param {string} threadId */
  position(threadId) {
    return this.tracker.position(threadId);
  }

  /** Stop this tab's client; with sharing, another tab takes the socket over. */
  close() {
    if (this.closed) return;
    this.closed = true;
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
    if (this.role === "follower") this.post({ kind: "bye" });
    this.engine?.stop();
    this.lockRequests?.abort();
    this.resolveClosed();
    this.channel?.close();
    this.setState("closed");
  }

  // ------------------------------------------------------------------------ internals

  /** @param {string} threadId */
  want(threadId) {
    if (this.engine) this.engine.want(this.tabId, threadId, this.tracker.position(threadId));
    else this.post({ kind: "sub", threadId, position: this.tracker.position(threadId) });
  }

  newEngine() {
    const options = this.options;
    const engine = new Engine(
      {
        url: this.url,
        ticketUrl: this.ticketUrl,
        token: options.token,
        ticket: options.ticket,
        backoff: options.backoff,
        pingInterval: options.pingInterval,
        pingTimeout: options.pingTimeout ?? 10000,
      },
      {
        event: (frame) => {
          this.post({ kind: "event", frame });
          this.onEvent(frame);
        },
        subscribed: (frame, asked, to) => {
          if (to !== this.tabId) this.post({ kind: "subscribed", frame, asked, to });
          if (to === null || to === this.tabId) this.onSubscribed(frame, asked);
        },
        state: (state) => {
          this.post({ kind: "state", state });
          this.setState(state);
        },
        welcome: (welcome) => {
          this.sessionId = welcome.session_id;
          this.userId = welcome.user_id;
          this.post({ kind: "welcome", sessionId: this.sessionId, userId: this.userId });
        },
        stopped: (detail) => {
          this.post({ kind: "stopped", detail });
          this.onStopped(detail);
        },
      },
    );
    engine.sessionId = this.sessionId;
    for (const threadId of this.callbacks.keys()) engine.want(this.tabId, threadId, this.tracker.position(threadId));
    return engine;
  }

  /** @param {any} frame */
  onEvent(frame) {
    if (frame.thread_id == null) {
      this.dispatchEvent(new CustomEvent("userevent", { detail: frame }));
      return;
    }
    for (const event of this.tracker.receive(frame)) this.deliver(event);
  }

  /** @param {any} event */
  deliver(event) {
    this.counts.delivered += 1;
    for (const callback of this.callbacks.get(event.thread_id) ?? []) {
      try {
        callback(event);
      } catch (error) {
        report(error);
      }
    }
  }

  /** @param {any} frame @param {Position | null} asked */
  onSubscribed(frame, asked) {
    if (!this.tracker.isSubscribed(frame.thread_id)) return;
    this.counts.replayed += Number(frame.replayed) || 0;
    const { failure, deliver } = this.tracker.onSubscribed(frame, asked);
    if (failure) {
      this.counts.recoveryFailures += 1;
      this.dispatchEvent(new CustomEvent("recoveryfailed", { detail: failure }));
    }
    for (const event of deliver) this.deliver(event);
  }

  /** @param {State} state */
  setState(state) {
    if (state === this.state || (this.closed && state !== "closed")) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  /** @param {Role} role */
  setRole(role) {
    if (role === this.role) return;
    this.role = role;
    this.dispatchEvent(new CustomEvent("role", { detail: { role } }));
  }

  /** @param {StopDetail} detail */
  onStopped(detail) {
    if (this.closed) return;
    this.setState("closed");
    this.dispatchEvent(new CustomEvent("stopped", { detail }));
    // A stopped leader keeps the lock a moment, so that the other tabs hear "stopped" before
    // one of them could take over and reconnect.
    const holdLock = this.role === "leader";
    this.closed = true;
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
    this.engine?.stop();
    if (holdLock) {
      setTimeout(() => this.release(), 500);
    } else {
      this.release();
    }
  }

  release() {
    this.lockRequests?.abort();
    this.resolveClosed();
    this.channel?.close();
  }

  // --------------------------------------------------------------------------- sharing

  startShared() {
    this.setRole("follower");
    const name = `wsguard:${this.url}:${this.options.shareKey ?? ""}`;
    this.lockName = name;
    this.channel = new BroadcastChannel(name);
    this.channel.onmessage = (message) => this.onMessage(message.data);
    this.lockRequests = new AbortController();
    const { signal } = this.lockRequests;
    const locks = navigator.locks;
    // A lock per tab, held for its lifetime: a new leader asks which tabs are alive.
    locks.request(`${name}:tab:${this.tabId}`, { signal }, () => this.untilClosed).catch(ignoreAbort);
    locks.request(name, { signal }, () => this.lead()).catch(ignoreAbort);
    this.post({ kind: "hello", subs: this.tracker.snapshot() });
  }

  /** Holding the lock: own the socket for every tab until this one closes. */
  async lead() {
    if (this.closed) return;
    this.setRole("leader");
    const engine = this.newEngine();
    this.engine = engine;
    const others = await this.otherTabs();
    /** @type {Set<string>} */
    this.waitingFor = new Set(others);
    engine.gate = new Promise((resolve) => {
      this.openGate = () => resolve(undefined);
      setTimeout(this.openGate, this.options.gatherTimeout ?? 1000);
      if (!others.length) resolve(undefined);
    });
    this.post({ kind: "leader" });
    engine.start();
    await this.untilClosed;
  }

  /** The ids of the other live tabs sharing this socket, from their per-tab locks. */
  async otherTabs() {
    const prefix = `${this.lockName}:tab:`;
    const snapshot = await navigator.locks.query();
    return (snapshot.held ?? [])
      .map((lock) => lock.name ?? "")
      .filter((lockName) => lockName.startsWith(prefix))
      .map((lockName) => lockName.slice(prefix.length))
      .filter((tab) => tab !== this.tabId);
  }

  /** @param {Record<string, unknown>} message */
  post(message) {
    if (!this.channel || this.role === "alone") return;
    try {
      this.channel.postMessage({ ...message, from: this.tabId });
    } catch {
      // closed channel: this tab is shutting down
    }
  }

  /** @param {any} message */
  onMessage(message) {
    if (this.closed || !message || message.from === this.tabId) return;
    if (this.role === "leader") this.onFollowerMessage(message);
    else this.onLeaderMessage(message);
  }

  /** @param {any} message */
  onFollowerMessage(message) {
    const engine = this.engine;
    if (!engine) return;
    const tab = String(message.from);
    switch (message.kind) {
      case "hello": {
        const subs = message.subs ?? {};
        for (const threadId of [...engine.demand.keys()]) {
          if (!(threadId in subs) && engine.demand.get(threadId)?.has(tab)) engine.unwant(tab, threadId);
        }
        for (const [threadId, position] of Object.entries(subs)) engine.want(tab, threadId, position ?? null);
        this.waitingFor?.delete(tab);
        if (this.waitingFor && !this.waitingFor.size) this.openGate?.();
        this.post({ kind: "state", state: this.state });
        if (this.sessionId) this.post({ kind: "welcome", sessionId: this.sessionId, userId: this.userId });
        break;
      }
      case "sub":
        engine.want(tab, message.threadId, message.position ?? null);
        break;
      case "unsub":
        engine.unwant(tab, message.threadId);
        break;
      case "bye":
        engine.dropTab(tab);
        this.waitingFor?.delete(tab);
        if (this.waitingFor && !this.waitingFor.size) this.openGate?.();
        break;
    }
  }

  /** @param {any} message */
  onLeaderMessage(message) {
    switch (message.kind) {
      case "leader":
        this.post({ kind: "hello", subs: this.tracker.snapshot() });
        break;
      case "event":
        this.onEvent(message.frame);
        break;
      case "subscribed":
        if (message.to === null || message.to === this.tabId) this.onSubscribed(message.frame, message.asked ?? null);
        break;
      case "state":
        this.setState(message.state);
        break;
      case "welcome":
        this.sessionId = message.sessionId;
        this.userId = message.userId;
        break;
      case "stopped":
        this.onStopped(message.detail);
        break;
    }
  }
}

/** @param {string} url */
function socketUrl(url) {
  const resolved = new URL(url, globalThis.location?.href);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
    throw new TypeError(`wsguard: not a WebSocket URL: ${url}`);
  }
  return resolved;
}

/** @param {URL} socket */
function ticketUrlFor(socket) {
  const origin = new URL(socket.toString());
  origin.protocol = socket.protocol === "wss:" ? "https:" : "http:";
  return new URL("/api/tickets", origin).toString();
}

function randomId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** @param {unknown} error */
function ignoreAbort(error) {
  if (!(error instanceof DOMException && error.name === "AbortError")) report(error);
}

/** @param {unknown} error */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}
