// The socket owner: credentials, one WebSocket at a time, reconnects, resume, resubscription with
// `since`, the ping watchdog and token refresh. It serves one or many tabs' subscriptions (the
// demand) and hands every frame to a sink; the tabs decide what each of them delivers.

import { ReconnectPolicy, parseRetryAfter } from "./policy.js";
import { earliest } from "./tracker.js";

/**
 * @typedef {import("./tracker.js").Position} Position
 * @typedef {{reconnect: boolean, delay: number, why: string, action?: string}} Decision
 * @typedef {{code: number | null, reason: string, why: string, action: string, status?: number}} StopDetail
 * @typedef {object} Sink
 * @property {(frame: any) => void} event  an `event` frame off the socket
 * @property {(frame: any, asked: Position | null, to: string | null) => void} subscribed  a
 *   subscription went live (`to`: only that tab needs to hear it)
 * @property {(state: "connecting" | "open" | "closed") => void} state
 * @property {(welcome: any) => void} welcome
 * @property {(detail: StopDetail) => void} stopped  will not reconnect
 */

/** A refusal of the ticket request, with its status and Retry-After. */
class Refused extends Error {
  /** @param {number} status @param {number | null} retryAfter */
  constructor(status, retryAfter) {
    super(`ticket request refused with HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The application's token or ticket provider failed (other than with fetch's network error):
 * the client stops rather than loop. */
class ProviderFailed extends Error {}

/** Seconds since the epoch at which a JWT expires, or null when it cannot be read. */
export function tokenExpiry(/** @type {string} */ token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/** How long before `exp` to refresh: a quarter of what is left, at least 1 s from now. */
function refreshDelay(/** @type {number} */ exp) {
  const left = exp * 1000 - Date.now();
  return Math.max(1000, left - Math.min(60000, left / 4));
}

export class Engine {
  /**
   * @param {object} options
   * @param {string} options.url  absolute ws:// or wss:// URL
   * @param {string} options.ticketUrl  absolute URL of POST /api/tickets
   * @param {string | (() => Promise<string>) | undefined} options.token
   * @param {(() => Promise<string>) | undefined} options.ticket
   * @param {object} [options.backoff]  ReconnectPolicy options
   * @param {number | undefined} options.pingInterval  ms; default: the server's heartbeat interval
   * @param {number} options.pingTimeout  ms without any frame after a ping before giving up the socket
   * @param {Sink} sink
   */
  constructor(options, sink) {
    this.options = options;
    this.sink = sink;
    this.policy = new ReconnectPolicy(options.backoff);
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {Map<string, Map<string, Position | null>>} thread -> tab -> that tab's position */
    this.demand = new Map();
    /** @type {Map<string, {position: Position | null, state: "idle" | "pending" | "live", asked: Position | null}>} */
    this.threads = new Map();
    /** @type {WebSocket | null} */
    this.socket = null;
    this.open = false;
    this.stopped = false;
    this.connections = 0;
    this.refs = 0;
    /** @type {Set<string>} threads whose resubscription is not answered yet */
    this.unanswered = new Set();
    /** @type {Promise<void>} resolved once every tab has said what it follows */
    this.gate = Promise.resolve();
    /** @type {(() => void) | null} ends the current attempt early (offline, watchdog, close) */
    this.abandon = null;
    /** whether a `ping` went out and nothing has come back since */
    this.awaitingPong = false;
    /** @type {(() => void) | null} ends a reconnect delay early (back online) */
    this.wake = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refreshTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.pingTimer = undefined;
    this.onOffline = () => this.abandon?.();
    this.onOnline = () => {
      this.policy.connected();
      this.wake?.();
    };
    globalThis.addEventListener?.("offline", this.onOffline);
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /** Connect, and keep reconnecting until told to stop or a close code says not to. */
  start() {
    this.run().catch((error) => this.finish({ code: null, reason: "", why: `client error: ${error}`, action: "report it" }));
  }

  /** Close with 1000 and never reconnect; no `stopped` event (the application asked). */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.cleanup();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      detach(socket);
      socket.close(1000);
    }
    this.abandon?.();
    this.wake?.();
    this.sink.state("closed");
  }

  // ------------------------------------------------------------------------- the demand

  /**
   * Tab `tab` follows `threadId` from `position` (null: from now on).
   * @param {string} tab @param {string} threadId @param {Position | null} position
   */
  want(tab, threadId, position) {
    let tabs = this.demand.get(threadId);
    if (!tabs) this.demand.set(threadId, (tabs = new Map()));
    tabs.set(tab, position);
    let thread = this.threads.get(threadId);
    if (!thread) this.threads.set(threadId, (thread = { position: null, state: "idle", asked: null }));
    if (!this.open) return;
    if (thread.state === "idle") {
      this.subscribeSocket(threadId);
    } else if (thread.state === "live" && thread.position) {
      const { epoch, offset } = thread.position;
      this.sink.subscribed({ thread_id: threadId, epoch, offset, recovered: true, replayed: 0 }, thread.position, tab);
    }
  }

  /** @param {string} tab @param {string} threadId */
  unwant(tab, threadId) {
    const tabs = this.demand.get(threadId);
    if (!tabs) return;
    tabs.delete(tab);
    if (tabs.size) return;
    this.demand.delete(threadId);
    this.threads.delete(threadId);
    this.unanswered.delete(threadId);
    if (this.open) this.sendFrame({ type: "unsubscribe", thread_id: threadId });
  }

  /** Tab `tab` is gone: drop everything it followed. @param {string} tab */
  dropTab(tab) {
    for (const [threadId, tabs] of [...this.demand]) if (tabs.has(tab)) this.unwant(tab, threadId);
  }

  /** @returns {Set<string>} the tabs that follow anything */
  tabs() {
    const tabs = new Set();
    for (const followers of this.demand.values()) for (const tab of followers.keys()) tabs.add(tab);
    return tabs;
  }

  /** @param {string} threadId */
  subscribeSocket(threadId) {
    const thread = this.threads.get(threadId);
    if (!thread) return;
    // The socket's own position when it has one: every tab heard all it delivered; otherwise
    // the earliest of the tabs' own, so that the replay covers every tab.
    const since = thread.position ?? earliest(this.demand.get(threadId)?.values() ?? []);
    thread.state = "pending";
    thread.asked = since;
    this.unanswered.add(threadId);
    /** @type {Record<string, unknown>} */
    const command = { type: "subscribe", thread_id: threadId, ref: ++this.refs };
    if (since) command.since = { epoch: since.epoch, offset: since.offset };
    this.sendFrame(command);
  }

  /** @param {Record<string, unknown>} frame */
  sendFrame(frame) {
    if (this.socket && this.open) this.socket.send(JSON.stringify(frame));
  }

  // --------------------------------------------------------------------------- the loop

  async run() {
    while (!this.stopped) {
      const decision = await this.attempt();
      if (this.stopped) return;
      if (!decision.reconnect) {
        this.finish(decision.detail ?? { code: null, reason: "", why: decision.why, action: decision.action ?? "" });
        return;
      }
      this.sink.state("connecting");
      await this.sleep(decision.delay);
      while (!this.stopped && globalThis.navigator?.onLine === false) await this.sleep(60000);
    }
  }

  /** @param {number} ms */
  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = null;
        resolve(undefined);
      }
      this.wake = done;
    });
  }

  /** @param {StopDetail} detail */
  finish(detail) {
    if (this.stopped) return;
    this.stopped = true;
    this.cleanup();
    this.sink.state("closed");
    this.sink.stopped(detail);
  }

  cleanup() {
    clearTimeout(this.refreshTimer);
    clearTimeout(this.pingTimer);
    globalThis.removeEventListener?.("offline", this.onOffline);
    globalThis.removeEventListener?.("online", this.onOnline);
  }

  /** Fresh credentials for the next attempt: the socket URL with a ticket and `resume`. */
  async connectUrl() {
    const { token, ticket, ticketUrl, url } = this.options;
    let value;
    if (ticket) {
      value = await callProvider(ticket, "ticket");
    } else {
      const bearer = typeof token === "function" ? await callProvider(token, "token") : String(token);
      this.scheduleRefreshFrom(bearer);
      let response;
      try {
        response = await fetch(ticketUrl, { method: "POST", headers: { Authorization: `Bearer ${bearer}` }, cache: "no-store" });
      } catch (error) {
        throw new TypeError(`ticket request failed: ${error}`);
      }
      if (!response.ok) throw new Refused(response.status, parseRetryAfter(response.headers.get("Retry-After")));
      const body = await response.json().catch(() => ({}));
      if (typeof body.ticket !== "string") throw new Refused(response.status, null);
      value = body.ticket;
    }
    const target = new URL(url);
    target.searchParams.set("ticket", value);
    if (this.sessionId) target.searchParams.set("resume", this.sessionId);
    return target.toString();
  }

  get freshCredentials() {
    return Boolean(this.options.ticket) || typeof this.options.token === "function";
  }

  /**
   * One connection attempt, resolved with what to do when it ends.
   * @returns {Promise<Decision & {detail?: StopDetail}>}
   */
  async attempt() {
    this.sink.state("connecting");
    let target;
    try {
      target = await this.connectUrl();
    } catch (error) {
      if (error instanceof Refused) {
        const decision = this.policy.afterRefusal(error.status, error.retryAfter);
        const detail = { code: null, status: error.status, reason: error.message, why: decision.why, action: decision.action ?? "" };
        return { ...decision, detail };
      }
      if (error instanceof ProviderFailed) {
        const why = error.message;
        return { reconnect: false, delay: 0, why, detail: { code: null, reason: why, why, action: "fix the credentials provider, then reload" } };
      }
      return this.policy.afterNetworkError();
    }
    if (this.stopped) return { reconnect: false, delay: 0, why: "closed" };
    return new Promise((resolve) => {
      const socket = new WebSocket(target);
      this.socket = socket;
      let opened = false;
      /** @param {number} code @param {string} reason */
      const end = (code, reason) => {
        detach(socket);
        this.abandon = null;
        if (this.socket === socket) this.socket = null;
        this.lost();
        const decision = opened ? this.policy.afterClose(code, { freshCredentials: this.freshCredentials }) : this.policy.afterNetworkError();
        const detail = { code, reason, why: decision.why, action: decision.action ?? "" };
        resolve({ ...decision, detail });
      };
      this.abandon = () => {
        socket.close();
        end(1006, "abandoned: no answer or offline");
      };
      socket.onopen = () => {
        opened = true;
      };
      socket.onclose = (event) => end(event.code, event.reason);
      socket.onmessage = (message) => this.onFrame(socket, message.data);
    });
  }

  lost() {
    this.open = false;
    clearTimeout(this.pingTimer);
    for (const thread of this.threads.values()) thread.state = "idle";
    this.unanswered.clear();
  }

  /** @param {WebSocket} socket @param {unknown} data */
  onFrame(socket, data) {
    this.awaitingPong = false;
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (frame.type === "event") {
      if (frame.thread_id != null && frame.offset != null) {
        const thread = this.threads.get(frame.thread_id);
        if (thread && frame.epoch) thread.position = { epoch: frame.epoch, offset: frame.offset };
      }
      this.sink.event(frame);
    } else if (frame.type === "subscribed") {
      this.onSubscribed(frame);
    } else if (frame.type === "welcome") {
      this.onWelcome(socket, frame);
    } else if (frame.type === "refreshed" && typeof frame.exp === "number") {
      this.scheduleRefresh(frame.exp);
    } else if (frame.type === "error" && frame.code === "unauthorized" && frame.ref === "refresh") {
      this.scheduleRefreshRetry();
    }
  }

  /** @param {WebSocket} socket @param {any} welcome */
  async onWelcome(socket, welcome) {
    this.sessionId = welcome.session_id;
    this.connections += 1;
    this.sink.welcome(welcome);
    await this.gate;
    if (this.socket !== socket) return;
    this.open = true;
    this.sink.state("open");
    this.startWatchdog(welcome);
    for (const threadId of this.demand.keys()) this.subscribeSocket(threadId);
    if (!this.unanswered.size) this.policy.connected();
  }

  /** @param {any} frame */
  onSubscribed(frame) {
    const thread = this.threads.get(frame.thread_id);
    if (!thread) return;
    const asked = thread.asked;
    const server = { epoch: frame.epoch, offset: frame.offset };
    const current = thread.position;
    if (!frame.recovered || !current || current.epoch !== server.epoch || current.offset < server.offset) {
      thread.position = server;
    }
    thread.state = "live";
    thread.asked = null;
    this.sink.subscribed(frame, asked, null);
    if (this.unanswered.delete(frame.thread_id) && !this.unanswered.size) this.policy.connected();
  }

  // ---------------------------------------------------------------- watchdog and refresh

  /**
   * A page cannot see WebSocket pings, so it sends `ping` itself and gives the socket up when
   * nothing at all comes back within the timeout (a half-open TCP connection).
   * @param {any} welcome
   */
  startWatchdog(welcome) {
    const interval = this.options.pingInterval ?? Math.max(1, Number(welcome.heartbeat?.interval) || 20) * 1000;
    const ping = () => {
      if (!this.open) return;
      this.awaitingPong = true;
      this.sendFrame({ type: "ping" });
      this.pingTimer = setTimeout(verdict, this.options.pingTimeout);
    };
    const verdict = () => {
      if (!this.open) return;
      if (this.awaitingPong) this.abandon?.();
      else this.pingTimer = setTimeout(ping, interval);
    };
    this.awaitingPong = false;
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(ping, interval);
  }

  /** @param {string} token */
  scheduleRefreshFrom(token) {
    const exp = tokenExpiry(token);
    if (exp !== null && typeof this.options.token === "function") this.scheduleRefresh(exp);
  }

  /** @param {number} exp */
  scheduleRefresh(exp) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), refreshDelay(exp));
  }

  scheduleRefreshRetry() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), 2000);
  }

  /** Send `refresh` with a fresh token before the current one expires. */
  async refresh() {
    const provider = this.options.token;
    if (typeof provider !== "function" || this.stopped) return;
    if (!this.open) return this.scheduleRefreshRetry();
    try {
      const token = String(await provider());
      this.sendFrame({ type: "refresh", token, ref: "refresh" });
    } catch {
      this.scheduleRefreshRetry();
    }
  }
}

/** @param {() => Promise<string>} provider @param {string} what */
async function callProvider(provider, what) {
  let value;
  try {
    value = await provider();
  } catch (error) {
    // fetch() rejects with a TypeError when the network is down: that is worth retrying.
    if (error instanceof TypeError) throw error;
    throw new ProviderFailed(`the ${what} provider failed: ${error instanceof Error ? error.message : error}`);
  }
  if (typeof value !== "string" || !value) throw new ProviderFailed(`the ${what} provider returned no ${what}`);
  return value;
}

/** @param {WebSocket} socket */
function detach(socket) {
  socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
}
