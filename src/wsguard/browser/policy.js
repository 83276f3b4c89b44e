// When to reconnect and how long to wait (the close-code table of docs/protocol.md section 6), and
// over which transport. Pure and synchronous (no socket, no clock), shared by every role and
// unit-tested with node --test.

/** Close codes after which the protocol says to come back with backoff (1005 and 1012 to 1014
 * are transient too). */
const BACKOFF_CODES = new Set([1005, 1006, 1011, 1012, 1013, 1014, 4008]);

/** Close codes after which reconnecting would only repeat the failure or fight the server. */
const STOP_CODES = new Map([
  [1000, ["the server closed the connection normally", "reconnect only when the user asks"]],
  [1002, ["protocol error (a client bug)", "report it"]],
  [1003, ["the server refused a binary frame", "report it"]],
  [1007, ["invalid UTF-8 (a client bug)", "report it"]],
  [1008, ["policy violation: too many commands", "send fewer commands"]],
  [1009, ["a frame was larger than the server allows", "send smaller frames"]],
  [4001, ["superseded: the per-user connection limit evicted this connection", "close other tabs or devices, then reload"]],
  [4002, ["replaced: another connection resumed this session", "nothing; another tab or device took over"]],
  [4003, ["disconnected by the server's administrator", "sign in again later"]],
  [4029, ["too many connections: the per-user limit refused this one", "close other tabs or devices, then reload"]],
]);

/** HTTP refusals of the ticket request worth retrying: rate limit, draining, overloaded proxies. */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);

/**
 * @typedef {object} Decision
 * @property {boolean} reconnect  whether to try again
 * @property {number} delay  milliseconds to wait first
 * @property {string} why  which rule decided
 * @property {string} [action]  what the application or user can do, when stopping
 */

/**
 * Seconds from a Retry-After header (delta-seconds or HTTP-date), or null when absent or invalid.
 * @param {string | null | undefined} value
 * @param {number} [now] milliseconds since the epoch
 * @returns {number | null}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - now) / 1000);
}

/**
 * Decides, after each failed or closed connection, whether to try again and after how long.
 * Attempt n waits between half and all of min(maxDelay, baseDelay * factor ** n) (equal jitter);
 * connected() resets the count once a connection has recovered.
 */
export class ReconnectPolicy {
  /**
   * @param {object} [options]
   * @param {number} [options.baseDelay] ms, default 100
   * @param {number} [options.factor] default 2
   * @param {number} [options.maxDelay] ms, default 10000
   * @param {number} [options.goingAwayDelay] ms, default 5000: the most a 1001 waits
   * @param {number | null} [options.maxAttempts] consecutive failures before stopping; null: none
   * @param {() => number} [options.random] uniform in [0, 1)
   */
  constructor({ baseDelay = 100, factor = 2, maxDelay = 10000, goingAwayDelay = 5000, maxAttempts = null, random = Math.random } = {}) {
    if (!(baseDelay >= 0 && factor >= 1 && maxDelay >= baseDelay)) {
      throw new RangeError("need 0 <= baseDelay <= maxDelay and factor >= 1");
    }
    this.baseDelay = baseDelay;
    this.factor = factor;
    this.maxDelay = maxDelay;
    this.goingAwayDelay = goingAwayDelay;
    this.maxAttempts = maxAttempts;
    this.random = random;
    this.attempts = 0;
  }

  /** A connection recovered (every resubscription answered): back off from the bottom again. */
  connected() {
    this.attempts = 0;
  }

  /** @param {string} why @returns {Decision} */
  backoff(why) {
    if (this.maxAttempts !== null && this.attempts >= this.maxAttempts) {
      return { reconnect: false, delay: 0, why: `gave up after ${this.attempts} attempts (${why})`, action: "check the network, then reload" };
    }
    const ceiling = Math.min(this.maxDelay, this.baseDelay * this.factor ** this.attempts);
    this.attempts += 1;
    return { reconnect: true, delay: ceiling / 2 + this.random() * (ceiling / 2), why };
  }

  /**
   * After a connection closed with `code` (1006 when no close frame came).
   * @param {number} code
   * @param {{freshCredentials?: boolean}} [options] whether the next attempt carries a new
   *   token or ticket; only then is reconnecting after 4401 worth it
   * @returns {Decision}
   */
  afterClose(code, { freshCredentials = false } = {}) {
    const stop = STOP_CODES.get(code);
    if (stop) return { reconnect: false, delay: 0, why: `${code}: ${stop[0]}`, action: stop[1] };
    if (code === 1001) {
      return { reconnect: true, delay: this.random() * this.goingAwayDelay, why: "1001: the server is shutting down" };
    }
    if (code === 4401) {
      if (freshCredentials) return this.backoff("4401: token expired, reconnecting with fresh credentials");
      return { reconnect: false, delay: 0, why: "4401: token expired and no way to get a fresh one", action: "pass a token or ticket provider" };
    }
    if (BACKOFF_CODES.has(code)) return this.backoff(`${code}: transient`);
    return { reconnect: false, delay: 0, why: `${code}: unknown close code, not retrying`, action: "report it" };
  }

  /**
   * After POST /api/tickets answered `status` (with Retry-After in seconds, or null).
   * @param {number} status
   * @param {number | null} [retryAfter]
   * @returns {Decision}
   */
  afterRefusal(status, retryAfter = null) {
    if (!RETRY_STATUSES.has(status)) {
      const action = status === 401 || status === 403 ? "sign in again" : "check the server's configuration";
      return { reconnect: false, delay: 0, why: `HTTP ${status}: refused, not retrying`, action };
    }
    const backoff = this.backoff(`HTTP ${status}: retry later`);
    if (!backoff.reconnect || retryAfter === null) return backoff;
    const waitMs = retryAfter * 1000;
    const spread = Math.min(this.maxDelay, Math.max(this.baseDelay, waitMs)) / 2;
    return { reconnect: true, delay: waitMs + this.random() * spread, why: `HTTP ${status}: Retry-After ${retryAfter}s` };
  }

  /** After the network failed before any answer (ticket fetch or upgrade). @returns {Decision} */
  afterNetworkError() {
    return this.backoff("network error");
  }
}

/** @typedef {"websocket" | "sse"} Transport */
/** @typedef {"auto" | Transport} TransportMode */

/** ms after falling back to SSE before `auto` tries WebSocket again: 5 minutes. */
export const RETRY_WEBSOCKET_AFTER = 5 * 60 * 1000;

/**
 * Which transport each connection attempt uses. `"websocket"` and `"sse"` are fixed. `"auto"`
 * starts on WebSocket and falls back to SSE after two WebSocket attempts in a row that ended
 * without a `welcome` (a proxy that strips Upgrade, a CDN that answers the upgrade with an
 * error); it stays there while SSE works, and tries WebSocket once more at the first reconnect
 * `retryAfter` ms or more after falling back: when that attempt fails too, straight back to SSE
 * for another `retryAfter`. Two SSE attempts in a row that fail as well say that the upgrade was
 * not the problem (the server or the network is down): back to WebSocket, which is preferred.
 * Attempts abandoned because the browser went offline are not reported (see `ended`).
 */
export class TransportChooser {
  /**
   * @param {TransportMode} [mode]
   * @param {object} [options]
   * @param {number} [options.retryAfter] ms, default RETRY_WEBSOCKET_AFTER
   * @param {number} [options.failures] attempts in a row that fail before switching, default 2
   * @param {{transport: Transport, fellBackAt: number | null} | null} [options.from] carry on
   *   from another tab's chooser (a new leader starts where the last one was)
   */
  constructor(mode = "auto", { retryAfter = RETRY_WEBSOCKET_AFTER, failures = 2, from = null } = {}) {
    if (mode !== "auto" && mode !== "websocket" && mode !== "sse") {
      throw new TypeError(`wsguard: transport must be "auto", "websocket" or "sse", not ${JSON.stringify(mode)}`);
    }
    this.mode = mode;
    this.retryAfter = retryAfter;
    this.threshold = Math.max(1, failures);
    /** @type {Transport} */
    this.current = mode === "auto" ? "websocket" : mode;
    /** @type {number | null} when `auto` last fell back to SSE */
    this.fellBackAt = null;
    /** whether the current WebSocket attempt is the one try after a fallback */
    this.probing = false;
    this.failures = 0;
    if (mode === "auto" && from && from.transport === "sse" && from.fellBackAt !== null) {
      this.current = "sse";
      this.fellBackAt = from.fellBackAt;
    }
  }

  /**
   * The transport of the next attempt.
   * @param {number} now ms since the epoch
   * @returns {Transport}
   */
  next(now) {
    if (this.mode !== "auto") return this.mode;
    if (this.current === "sse" && this.fellBackAt !== null && now - this.fellBackAt >= this.retryAfter) {
      this.current = "websocket";
      this.probing = true;
      this.failures = 0;
    }
    return this.current;
  }

  /**
   * An attempt over `transport` ended; `welcomed`: whether its `welcome` arrived (the transport
   * works, whatever closed it later).
   * @param {Transport} transport @param {boolean} welcomed @param {number} now ms since the epoch
   */
  ended(transport, welcomed, now) {
    if (this.mode !== "auto" || transport !== this.current) return;
    if (welcomed) {
      this.failures = 0;
      if (transport === "websocket") {
        this.fellBackAt = null;
        this.probing = false;
      }
      return;
    }
    this.failures += 1;
    if (transport === "websocket" && (this.probing || this.failures >= this.threshold)) {
      this.current = "sse";
      this.fellBackAt = now;
      this.probing = false;
      this.failures = 0;
    } else if (transport === "sse" && this.failures >= this.threshold) {
      this.current = "websocket";
      this.fellBackAt = null;
      this.failures = 0;
    }
  }

  /** What another tab needs to carry on from here. @returns {{transport: Transport, fellBackAt: number | null}} */
  snapshot() {
    return { transport: this.current, fellBackAt: this.fellBackAt };
  }
}
