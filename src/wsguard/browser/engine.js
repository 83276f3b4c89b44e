// The connection owner: credentials, one connection at a time (a WebSocket, or an EventSource
// on /sse with commands sent by POST), the choice between them, reconnects, resume,
// resubscription with `since`, the ping watchdog, token refresh and the commands the tabs send.
// It serves one or many tabs' subscriptions (the demand) and hands every frame to a sink; the
// tabs decide what each of them delivers.

import { ReconnectPolicy, TransportChooser, parseRetryAfter } from "./policy.js";
import { earliest } from "./tracker.js";

/**
 * @typedef {import("./tracker.js").Position} Position
 * @typedef {import("./policy.js").Transport} Transport
 * @typedef {import("./policy.js").TransportMode} TransportMode
 * @typedef {{reconnect: boolean, delay: number, why: string, action?: string}} Decision
 * @typedef {{code: number | null, reason: string, why: string, action: string, status?: number}} StopDetail
 * @typedef {object} Sink
 * @property {(frame: any) => void} event  an `event` frame off the connection
 * @property {(frame: any, asked: Position | null, to: string | null) => void} subscribed  a
 *   subscription went live (`to`: only that tab needs to hear it)
 * @property {(state: "connecting" | "open" | "closed") => void} state
 * @property {(welcome: any, transport: Transport) => void} welcome
 * @property {(frame: any, tab: string) => void} reply  the answer to a command tab `tab` sent
 *   (or an `error` frame the client made up: the command was lost or refused before the server)
 * @property {(detail: StopDetail) => void} stopped  will not reconnect
 */

/**
 * One connection of either transport.
 * @typedef {object} Link
 * @property {Transport} transport
 * @property {boolean} welcomed  whether its `welcome` arrived
 * @property {(frame: Record<string, unknown>) => void} send
 * @property {(code?: number) => void} close  detach the handlers and close; idempotent
 * @property {Set<string>} threads  SSE: the threads subscribed on this stream (its ids hold their positions)
 * @property {Set<string>} held  SSE: the threads the `last_event_id` it was opened with resubscribes
 * @typedef {object} LinkEvents
 * @property {() => void} opened
 * @property {(frame: any, id: string) => void} frame  a frame, with its SSE id ("" when none)
 * @property {(code: number, reason: string) => void} ended  closed, or a server's `close` message
 * @property {(frame: Record<string, unknown>, status: number) => void} undelivered  SSE: the POST
 *   of `frame` was not accepted (status 0: no answer)
 */

/** A command sent with `client.send` failed: the server's `error` reply, or no reply at all. */
export class CommandError extends Error {
  /** @param {string} code @param {string} message @param {any} [reply] the `error` frame */
  constructor(code, message, reply = null) {
    super(`wsguard: ${code}: ${message}`);
    this.name = "CommandError";
    this.code = code;
    this.reply = reply;
    /** @type {number | null} the HTTP status of a POST that was not accepted */
    this.status = typeof reply?.status === "number" ? reply.status : null;
  }
}

/**
 * An `error` frame made up by the client for a command that got no reply from the server.
 * @param {unknown} ref @param {string} code @param {string} message @param {number} [status]
 */
export function failure(ref, code, message, status) {
  return status === undefined ? { type: "error", ref, code, message } : { type: "error", ref, code, message, status };
}

/**
 * One tab's commands waiting for their reply, matched by `ref`. The refs are `<prefix>.<n>`, so
 * that the tabs sharing a connection never pick the same one, and never an integer or
 * "refresh" (the refs the engine uses itself).
 */
export class Replies {
  /** @param {string} prefix  unique to the tab */
  constructor(prefix) {
    this.prefix = prefix;
    this.count = 0;
    /** @type {Map<unknown, {frame: Record<string, unknown>, deadline: number, accepted: boolean, resolve: (frame: any) => void, reject: (error: CommandError) => void, timer: ReturnType<typeof setTimeout>}>} */
    this.pending = new Map();
  }

  nextRef() {
    this.count += 1;
    return `${this.prefix}.${this.count}`;
  }

  /**
   * The reply to `frame` (which carries its `ref`): the frame that echoes the ref, or a
   * CommandError for an `error` one or after `timeout` ms.
   * @param {Record<string, unknown>} frame @param {number} timeout ms
   * @returns {Promise<any>}
   */
  expect(frame, timeout) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(frame.ref, "timeout", `no reply within ${timeout} ms`), timeout);
      this.pending.set(frame.ref, { frame, deadline: Date.now() + timeout, accepted: false, resolve, reject, timer });
    });
  }

  /**
   * Settle the command that `frame` answers. @param {any} frame
   * @returns {boolean} whether it answered one of this tab's commands
   */
  settle(frame) {
    const entry = frame == null ? undefined : this.pending.get(frame.ref);
    if (!entry) return false;
    this.pending.delete(frame.ref);
    clearTimeout(entry.timer);
    if (frame.type === "error") entry.reject(new CommandError(String(frame.code), String(frame.message ?? ""), frame));
    else entry.resolve(frame);
    return true;
  }

  /** @param {unknown} ref @param {string} code @param {string} message */
  fail(ref, code, message) {
    this.settle(failure(ref, code, message));
  }

  /** @param {string} code @param {string} message @param {(entry: {accepted: boolean}) => boolean} [which] */
  failAll(code, message, which = () => true) {
    for (const [ref, entry] of [...this.pending]) if (which(entry)) this.fail(ref, code, message);
  }

  /** The connection owner has taken the command: it is on its way. @param {unknown} ref */
  accept(ref) {
    const entry = this.pending.get(ref);
    if (entry) entry.accepted = true;
  }

  /** @returns {{frame: Record<string, unknown>, deadline: number}[]} commands no connection owner has taken yet */
  unaccepted() {
    return [...this.pending.values()].filter((entry) => !entry.accepted);
  }
}

/**
 * The Server-Sent Events URL beside a socket URL: http(s), and a last path segment `ws`
 * becomes `sse` (`wss://host/ws` -> `https://host/sse`); any other path gives `/sse` on the host.
 * @param {string | URL} socketUrl
 */
export function streamUrl(socketUrl) {
  const url = new URL(String(socketUrl));
  url.protocol = url.protocol === "wss:" || url.protocol === "https:" ? "https:" : "http:";
  url.pathname = /\/ws\/?$/.test(url.pathname) ? url.pathname.replace(/\/ws\/?$/, "/sse") : "/sse";
  return url.toString();
}

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
   * @param {string} options.sseUrl  absolute http(s):// URL of GET /sse
   * @param {string} options.ticketUrl  absolute URL of POST /api/tickets
   * @param {TransportMode} [options.transport]  default "auto"
   * @param {number} [options.retryWebSocketAfter]  ms on SSE before "auto" tries WebSocket again
   * @param {{transport: Transport, fellBackAt: number | null} | null} [options.carryOn]  where
   *   the last leader's transport choice was
   * @param {string | (() => Promise<string>) | undefined} options.token
   * @param {(() => Promise<string>) | undefined} options.ticket
   * @param {object} [options.backoff]  ReconnectPolicy options
   * @param {number | undefined} options.pingInterval  ms; default: the server's heartbeat interval
   * @param {number} options.pingTimeout  ms without any frame after a ping before giving up the
   *   connection; also the most a connection may take to send its `welcome`
   * @param {Sink} sink
   */
  constructor(options, sink) {
    this.options = options;
    this.sink = sink;
    this.policy = new ReconnectPolicy(options.backoff);
    this.chooser = new TransportChooser(options.transport ?? "auto", {
      retryAfter: options.retryWebSocketAfter,
      from: options.carryOn ?? null,
    });
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {Map<string, Map<string, Position | null>>} thread -> tab -> that tab's position */
    this.demand = new Map();
    /** @type {Map<string, {position: Position | null, state: "idle" | "pending" | "live", asked: Position | null}>} */
    this.threads = new Map();
    /** @type {Link | null} */
    this.link = null;
    this.open = false;
    this.stopped = false;
    this.connections = 0;
    this.refs = 0;
    /** @type {Set<string>} threads whose resubscription is not answered yet */
    this.unanswered = new Set();
    /** @type {string | null} the last SSE id seen, while it still says where every thread is */
    this.lastEventId = null;
    /** @type {Set<string>} the threads that `lastEventId` holds */
    this.tokenThreads = new Set();
    /** @type {Set<string>} threads left to the server's resume from `last_event_id` */
    this.expected = new Set();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.expectTimer = undefined;
    /** @type {number | null} the server's max_message_bytes */
    this.maxMessageBytes = null;
    /** @type {{tab: string, frame: Record<string, unknown>, deadline: number}[]} commands waiting for a connection */
    this.queued = [];
    /** @type {Map<unknown, string>} ref -> tab, of the commands sent on this connection and not answered */
    this.inflight = new Map();
    /** @type {Promise<void>} resolved once every tab has said what it follows */
    this.gate = Promise.resolve();
    /** @type {((cause: string) => void) | null} ends the current attempt early (offline, watchdog, close) */
    this.abandon = null;
    /** whether a `ping` went out and nothing has come back since */
    this.awaitingPong = false;
    /** @type {(() => void) | null} ends a reconnect delay early (back online) */
    this.wake = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refreshTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.pingTimer = undefined;
    this.onOffline = () => this.abandon?.("offline");
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
    const link = this.link;
    this.link = null;
    link?.close(1000);
    this.abandon?.("stopped");
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
    this.expected.delete(threadId);
    this.link?.threads.delete(threadId);
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

  /**
   * The server resumes `threadId` from `last_event_id` by itself: wait for its `subscribed`.
   * @param {string} threadId
   */
  expectResume(threadId) {
    const thread = this.threads.get(threadId);
    if (!thread) return;
    thread.state = "pending";
    thread.asked = thread.position;
    this.unanswered.add(threadId);
    this.expected.add(threadId);
  }

  /** @param {Record<string, unknown>} frame */
  sendFrame(frame) {
    if (this.link && this.open) this.link.send(frame);
  }

  // ------------------------------------------------------------------------- commands

  /**
   * Send tab `tab`'s command (it carries its `ref`) now, or once connected if before `deadline`;
   * its reply goes to `sink.reply`.
   * @param {string} tab @param {Record<string, unknown>} frame @param {number} deadline ms since the epoch
   */
  command(tab, frame, deadline) {
    if (this.open) this.dispatch(tab, frame);
    else this.queued.push({ tab, frame, deadline });
  }

  /** @param {string} tab @param {Record<string, unknown>} frame */
  dispatch(tab, frame) {
    const size = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (this.maxMessageBytes !== null && size > this.maxMessageBytes) {
      // Sent anyway, it would close the connection of every tab (1009).
      const message = `${size} bytes, over the server's max_message_bytes (${this.maxMessageBytes})`;
      this.sink.reply(failure(frame.ref, "too_big", message), tab);
      return;
    }
    this.inflight.set(frame.ref, tab);
    this.sendFrame(frame);
  }

  /** Send the commands that waited for this connection (those still wanted). */
  flush() {
    const now = Date.now();
    const queued = this.queued;
    this.queued = [];
    for (const { tab, frame, deadline } of queued) if (deadline > now) this.dispatch(tab, frame);
  }

  /**
   * SSE: the POST of `frame` was not accepted. A tab's command fails with `not_delivered`; the
   * client's own commands (subscribe, ping, refresh), or a 404 (the stream is gone), give the
   * stream up, so that the next one starts whole.
   * @param {Record<string, unknown>} frame @param {number} status
   */
  undelivered(frame, status) {
    const tab = this.inflight.get(frame.ref);
    if (tab !== undefined) {
      this.inflight.delete(frame.ref);
      const message = status ? `POST answered HTTP ${status}` : "POST got no answer";
      this.sink.reply(failure(frame.ref, "not_delivered", message, status), tab);
      if (status !== 404) return;
    }
    this.abandon?.(`command POST answered ${status || "nothing"}`);
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
    clearTimeout(this.expectTimer);
    globalThis.removeEventListener?.("offline", this.onOffline);
    globalThis.removeEventListener?.("online", this.onOnline);
  }

  /**
   * Fresh credentials for the next attempt: the URL of `transport` with a ticket, `resume` and,
   * for SSE, `last_event_id`.
   * @param {Transport} transport
   */
  async connectUrl(transport) {
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
    const target = new URL(transport === "sse" ? this.options.sseUrl : url);
    target.searchParams.set("ticket", value);
    if (this.sessionId) target.searchParams.set("resume", this.sessionId);
    if (transport === "sse" && this.lastEventId) target.searchParams.set("last_event_id", this.lastEventId);
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
    const transport = this.chooser.next(Date.now());
    let target;
    try {
      target = await this.connectUrl(transport);
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
      let opened = false;
      let ended = false;
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let welcomeTimer;
      /** @param {number} code @param {string} reason @param {string} [cause] why the client gave it up */
      const end = (code, reason, cause = "") => {
        if (ended) return;
        ended = true;
        clearTimeout(welcomeTimer);
        link.close();
        this.abandon = null;
        if (this.link === link) this.link = null;
        this.lost();
        if (cause !== "offline" && cause !== "stopped") this.chooser.ended(transport, link.welcomed, Date.now());
        const decision = opened ? this.policy.afterClose(code, { freshCredentials: this.freshCredentials }) : this.policy.afterNetworkError();
        const detail = { code, reason, why: decision.why, action: decision.action ?? "" };
        resolve({ ...decision, detail });
      };
      /** @type {LinkEvents} */
      const events = {
        opened: () => {
          opened = true;
        },
        frame: (frame, id) => {
          if (frame.type === "welcome") clearTimeout(welcomeTimer);
          this.onFrame(link, frame, id);
        },
        ended: (code, reason) => end(code, reason),
        undelivered: (frame, status) => this.undelivered(frame, status),
      };
      const token = transport === "sse" ? this.lastEventId : null;
      const link = transport === "sse" ? openStream(target, events) : openSocket(target, events);
      link.held = token ? this.tokenThreads : new Set();
      this.link = link;
      this.abandon = (cause) => end(1006, `abandoned: ${cause}`, cause);
      welcomeTimer = setTimeout(() => this.abandon?.("no welcome"), this.options.pingTimeout);
    });
  }

  lost() {
    this.open = false;
    clearTimeout(this.pingTimer);
    clearTimeout(this.expectTimer);
    for (const thread of this.threads.values()) thread.state = "idle";
    this.unanswered.clear();
    this.expected.clear();
    const inflight = [...this.inflight];
    this.inflight.clear();
    for (const [ref, tab] of inflight) {
      this.sink.reply(failure(ref, "connection_lost", "the connection closed before the reply came"), tab);
    }
  }

  /** @param {Link} link @param {any} frame @param {string} id the SSE id, "" when none */
  onFrame(link, frame, id) {
    this.awaitingPong = false;
    if (frame.ref != null && this.inflight.has(frame.ref)) {
      const tab = /** @type {string} */ (this.inflight.get(frame.ref));
      this.inflight.delete(frame.ref);
      this.sink.reply(frame, tab);
    }
    if (frame.type === "event") {
      if (frame.thread_id != null && frame.offset != null) {
        const thread = this.threads.get(frame.thread_id);
        if (thread && frame.epoch) thread.position = { epoch: frame.epoch, offset: frame.offset };
      }
      this.noteId(link, id);
      this.sink.event(frame);
    } else if (frame.type === "subscribed") {
      link.threads.add(frame.thread_id);
      this.noteId(link, id);
      this.onSubscribed(link, frame);
    } else if (frame.type === "unsubscribed") {
      link.threads.delete(frame.thread_id);
      this.noteId(link, id);
    } else if (frame.type === "welcome") {
      this.onWelcome(link, frame);
    } else if (frame.type === "refreshed" && typeof frame.exp === "number") {
      this.scheduleRefresh(frame.exp);
    } else if (frame.type === "error" && frame.code === "unauthorized" && frame.ref === "refresh") {
      this.scheduleRefreshRetry();
    }
  }

  /**
   * An SSE id came with an `event`, `subscribed` or `unsubscribed`: it holds the position of
   * every thread of the stream, which the engine's positions equal from here on.
   * @param {Link} link @param {string} id
   */
  noteId(link, id) {
    if (link.transport !== "sse" || !id) return;
    this.lastEventId = id;
    this.tokenThreads = link.threads;
  }

  /**
   * The connection is up: subscribe every thread the tabs follow (those the stream's
   * `last_event_id` resumes, the server subscribes by itself), then send the waiting commands.
   * @param {Link} link @param {any} welcome
   */
  async onWelcome(link, welcome) {
    link.welcomed = true;
    this.sessionId = welcome.session_id;
    const limit = Number(welcome.limits?.max_message_bytes);
    this.maxMessageBytes = limit > 0 ? limit : null;
    this.connections += 1;
    if (link.transport === "websocket") {
      this.lastEventId = null;
      this.tokenThreads = new Set();
    }
    this.sink.welcome(welcome, link.transport);
    await this.gate;
    if (this.link !== link) return;
    this.open = true;
    this.sink.state("open");
    this.startWatchdog(welcome);
    for (const threadId of this.demand.keys()) {
      if (link.held.has(threadId) && this.threads.get(threadId)?.position) this.expectResume(threadId);
      else this.subscribeSocket(threadId);
    }
    if (this.expected.size) {
      // An id the server no longer takes (a key it dropped), or a thread left out of an id at
      // its size limit, is resubscribed by nobody: ask outright (a second subscribe repeats nothing).
      this.expectTimer = setTimeout(() => {
        const late = [...this.expected];
        this.expected.clear();
        for (const threadId of late) this.subscribeSocket(threadId);
      }, this.options.pingTimeout);
    }
    if (!this.unanswered.size) this.policy.connected();
    this.flush();
  }

  /** @param {Link} link @param {any} frame */
  onSubscribed(link, frame) {
    const thread = this.threads.get(frame.thread_id);
    if (!thread) {
      // A thread that an SSE resume subscribed by itself and no tab follows any more.
      if (frame.ref == null && this.open && this.link === link) {
        link.threads.delete(frame.thread_id);
        this.sendFrame({ type: "unsubscribe", thread_id: frame.thread_id });
      }
      return;
    }
    this.expected.delete(frame.thread_id);
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
   * A page cannot see WebSocket pings, nor the comment lines of an event stream, so it sends
   * `ping` itself (on SSE by POST) and gives the connection up when nothing at all comes back
   * within the timeout (a half-open TCP connection, a stream a proxy holds back).
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
      if (this.awaitingPong) this.abandon?.("no answer to ping");
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

/** @param {unknown} data @returns {any} a frame, or null when `data` is not a JSON object */
function parseFrame(data) {
  try {
    const frame = JSON.parse(String(data));
    return frame && typeof frame === "object" ? frame : null;
  } catch {
    return null;
  }
}

/**
 * A WebSocket to `url`.
 * @param {string} url @param {LinkEvents} on @returns {Link}
 */
function openSocket(url, on) {
  const socket = new WebSocket(url);
  let closed = false;
  socket.onopen = () => on.opened();
  socket.onclose = (event) => on.ended(event.code, event.reason);
  socket.onmessage = (message) => {
    const frame = parseFrame(message.data);
    if (frame) on.frame(frame, "");
  };
  return {
    transport: "websocket",
    welcomed: false,
    threads: new Set(),
    held: new Set(),
    send: (frame) => socket.send(JSON.stringify(frame)),
    close: (code) => {
      if (closed) return;
      closed = true;
      socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
      socket.close(code);
    },
  };
}

/**
 * An EventSource on `url` (GET /sse), with commands POSTed one after the other, in order, to
 * the `commands` path of its `welcome`. The browser would reconnect by itself with the same,
 * spent ticket: any error closes it instead, and the engine reconnects as after a socket's
 * 1006. A `close` message ends it with its code, as a socket's close frame does.
 * @param {string} url @param {LinkEvents} on @returns {Link}
 */
function openStream(url, on) {
  const source = new EventSource(url);
  let closed = false;
  /** @type {string | null} */
  let commands = null;
  let posting = Promise.resolve();
  /** @param {Record<string, unknown>} frame */
  const post = async (frame) => {
    if (closed) return;
    let status = 0;
    if (commands) {
      try {
        const response = await fetch(commands, {
          method: "POST",
          headers: { "Content-Type": "text/plain;charset=UTF-8" },
          body: JSON.stringify(frame),
          cache: "no-store",
        });
        status = response.status;
      } catch {
        status = 0;
      }
    }
    if (!closed && (status < 200 || status > 299)) on.undelivered(frame, status);
  };
  source.onopen = () => on.opened();
  source.onerror = () => on.ended(1006, "the event stream failed");
  source.onmessage = (message) => {
    const frame = parseFrame(message.data);
    if (!frame) return;
    if (frame.type === "close") {
      on.ended(Number(frame.code) || 1006, String(frame.reason ?? ""));
      return;
    }
    if (frame.type === "welcome" && typeof frame.commands === "string") commands = new URL(frame.commands, url).toString();
    on.frame(frame, message.lastEventId);
  };
  return {
    transport: "sse",
    welcomed: false,
    threads: new Set(),
    held: new Set(),
    send: (frame) => {
      posting = posting.then(() => post(frame));
    },
    close: () => {
      if (closed) return;
      closed = true;
      source.onopen = source.onmessage = source.onerror = null;
      source.close();
    },
  };
}
