// wsguard browser client: one connection per browser (a WebSocket, or Server-Sent Events where
// the network breaks upgrades), shared by the user's tabs, each event delivered once and in
// order in every tab, across reconnects and leader changes.
// Plain ES module, no dependencies, no build step; works under a strict CSP and offline.
//
//   import { connect } from "/client/wsguard.js";
//   const client = connect("/ws", { token: async () => jwt });
//   const stop = client.subscribe("chat-1", (event) => render(event));
//   const pong = await client.send("ping");

import { CommandError, Engine, Replies, streamUrl } from "./engine.js";
import { fetchHistory } from "./history.js";
import { ThreadTracker } from "./tracker.js";

export { CommandError } from "./engine.js";
export { HistoryError, fetchHistory, historyUrl, readHistory } from "./history.js";
export { ReconnectPolicy, RETRY_WEBSOCKET_AFTER, TransportChooser, parseRetryAfter } from "./policy.js";
export { ThreadTracker, earliest } from "./tracker.js";

const THREAD_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Commands `send` leaves to `subscribe`, which keeps the subscriptions across reconnects. */
const SUBSCRIPTION_COMMANDS = new Set(["subscribe", "unsubscribe"]);

/**
 * @typedef {import("./tracker.js").Position} Position
 * @typedef {import("./history.js").History} History
 * @typedef {import("./engine.js").StopDetail} StopDetail
 * @typedef {import("./policy.js").Transport} Transport
 * @typedef {import("./policy.js").TransportMode} TransportMode
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
 * @property {TransportMode} [transport]  "auto" (default): WebSocket, and Server-Sent Events after
 *   two WebSocket attempts in a row fail to open; "websocket" or "sse": only that one
 * @property {string} [sseUrl]  GET /sse: default, the socket's URL with http(s) and a last path
 *   segment `ws` turned into `sse`
 * @property {number} [retryWebSocketAfter]  ms on SSE before "auto" tries WebSocket again, at the
 *   next reconnect (default 300000)
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
    const transport = options.transport ?? "auto";
    if (transport !== "auto" && transport !== "websocket" && transport !== "sse") {
      throw new TypeError(`wsguard: transport must be "auto", "websocket" or "sse"`);
    }
    const socket = socketUrl(url);
    /** @type {string} the WebSocket URL connected to, resolved against the page (`ws:` or `wss:`) */
    this.url = socket.toString();
    this.options = options;
    this.ticketUrl = options.ticketUrl ?? ticketUrlFor(socket);
    this.sseUrl = options.sseUrl ? new URL(options.sseUrl, globalThis.location?.href).toString() : streamUrl(socket);
    this.tabId = randomId();
    this.tracker = new ThreadTracker();
    this.replies = new Replies(this.tabId);
    /** @type {Transport | null} the transport of the current (or last) connection */
    this.transport = null;
    /** @type {{transport: Transport, fellBackAt: number | null} | null} the leader's transport choice */
    this.carryOn = null;
    /** @type {Map<string, Set<(event: any) => void>>} */
    this.callbacks = new Map();
    /** @type {State} */
    this.state = "connecting";
    /** @type {Role} */
    this.role = "alone";
    this.closed = false;
    /** @type {string | null} the session of the last `welcome`, which every reconnect resumes; null before the first */
    this.sessionId = null;
    /** @type {string | null} the user the server authenticated, from the last `welcome`; null before the first */
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

  /**
   * Send a command of type `type` (the application's own, or `ping`) with `fields`, from any tab
   * and over either transport; resolves to the server's reply (the frame that echoes the `ref`
   * the client gives it), rejects with a CommandError on an `error` reply, after `timeout` ms
   * (waiting for a connection included), or when the connection closes first.
   * @param {string} type
   * @param {Record<string, unknown>} [fields]
   * @param {{timeout?: number}} [options]  default 10000 ms
   * @returns {Promise<any>}
   */
  send(type, fields = {}, options = {}) {
    if (typeof type !== "string" || !type) throw new TypeError("wsguard: type must be a non-empty string");
    if (SUBSCRIPTION_COMMANDS.has(type)) throw new TypeError(`wsguard: use client.subscribe() rather than send("${type}")`);
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) throw new TypeError("wsguard: fields must be an object");
    const timeout = options.timeout ?? 10000;
    if (!(timeout > 0)) throw new TypeError("wsguard: timeout must be a positive number of ms");
    if (this.closed) return Promise.reject(new CommandError("closed", "the client is closed"));
    const frame = { ...fields, type, ref: this.replies.nextRef() };
    const reply = this.replies.expect(frame, timeout);
    this.forward(frame, Date.now() + timeout);
    return reply;
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
    this.replies.failAll("closed", "the client was closed");
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

  /**
   * Hand a command to the connection owner: this tab's engine, or the leader's.
   * @param {Record<string, unknown>} frame @param {number} deadline
   */
  forward(frame, deadline) {
    if (this.engine) {
      this.replies.accept(frame.ref);
      this.engine.command(this.tabId, frame, deadline);
    } else {
      this.post({ kind: "command", frame, deadline });
    }
  }

  /**
   * A new connection owner (a new leader, or this tab): the commands the last one took died with
   * its connection; those it never took go to the new one.
   */
  forwardAgain() {
    this.replies.failAll("connection_lost", "the tab holding the connection went away", (entry) => entry.accepted);
    for (const { frame, deadline } of this.replies.unaccepted()) this.forward(frame, deadline);
  }

  /** @param {Transport} transport */
  setTransport(transport) {
    if (transport === this.transport) return;
    this.transport = transport;
    this.dispatchEvent(new CustomEvent("transport", { detail: { transport } }));
  }

  newEngine() {
    const options = this.options;
    const engine = new Engine(
      {
        url: this.url,
        sseUrl: this.sseUrl,
        ticketUrl: this.ticketUrl,
        transport: options.transport ?? "auto",
        retryWebSocketAfter: options.retryWebSocketAfter,
        carryOn: this.carryOn,
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
        welcome: (welcome, transport) => {
          this.sessionId = welcome.session_id;
          this.userId = welcome.user_id;
          this.carryOn = engine.chooser.snapshot();
          this.setTransport(transport);
          this.postWelcome();
        },
        reply: (frame, tab) => {
          if (tab === this.tabId) this.replies.settle(frame);
          else this.post({ kind: "reply", frame, to: tab });
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
    this.replies.failAll("stopped", detail.why);
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
    this.forwardAgain();
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

  postWelcome() {
    if (!this.sessionId) return;
    this.post({ kind: "welcome", sessionId: this.sessionId, userId: this.userId, transport: this.transport, carryOn: this.carryOn });
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
        this.postWelcome();
        break;
      }
      case "command":
        engine.command(tab, message.frame, Number(message.deadline) || 0);
        this.post({ kind: "accepted", ref: message.frame?.ref, to: tab });
        break;
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
        this.forwardAgain();
        break;
      case "accepted":
        if (message.to === this.tabId) this.replies.accept(message.ref);
        break;
      case "reply":
        if (message.to === this.tabId) this.replies.settle(message.frame);
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
        this.carryOn = message.carryOn ?? null;
        if (message.transport) this.setTransport(message.transport);
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
