// A thread's retained events over HTTP (GET /api/threads/{threadId}/events), so that a page draws
// a thread on load and then subscribes from where the history stopped, without a gap:
//
//   const history = await client.history("chat-1");
//   history.events.forEach(render);
//   client.subscribe("chat-1", render, { since: history.position });

/**
 * @typedef {import("./tracker.js").Position} Position
 * @typedef {object} History
 * @property {string} threadId
 * @property {string} epoch
 * @property {number} offset  the thread's last offset
 * @property {any[]} events  `event` frames, in offset order
 * @property {boolean} complete  false when events after `since` are no longer retained: redraw from what came
 * @property {Position} position  where to subscribe from: the last event returned, else the thread's last offset
 * @typedef {object} HistoryOptions
 * @property {number} [since]  the offset the page already has (default 0: everything retained)
 * @property {number} [limit]  at most this many events (default 100, at most 1000)
 * @property {string} [userId]  another user's thread, with an admin token
 */

/** An error status from the history endpoint. */
export class HistoryError extends Error {
  /** @param {number} status @param {string} message @param {number | null} retryAfter */
  constructor(status, message, retryAfter) {
    super(`wsguard: history refused with HTTP ${status}: ${message}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * The history URL on the socket's host.
 * @param {string | URL} socketUrl  ws://, wss://, http(s):// or a path
 * @param {string} threadId
 * @param {HistoryOptions} [options]
 */
export function historyUrl(socketUrl, threadId, options = {}) {
  const url = new URL(String(socketUrl), globalThis.location?.href);
  if (url.protocol === "ws:") url.protocol = "http:";
  else if (url.protocol === "wss:") url.protocol = "https:";
  const found = new URL(`/api/threads/${encodeURIComponent(threadId)}/events`, url.origin);
  found.searchParams.set("since", String(options.since ?? 0));
  found.searchParams.set("limit", String(options.limit ?? 100));
  if (options.userId !== undefined) found.searchParams.set("user_id", options.userId);
  return found.toString();
}

/**
 * Check an answer's body and say where to subscribe from.
 * @param {any} body
 * @returns {History}
 */
export function readHistory(body) {
  const valid =
    body &&
    typeof body.thread_id === "string" &&
    typeof body.epoch === "string" &&
    Number.isInteger(body.offset) &&
    typeof body.complete === "boolean" &&
    Array.isArray(body.events) &&
    body.events.every((/** @type {any} */ e) => e && e.type === "event" && Number.isInteger(e.offset));
  if (!valid) throw new TypeError("wsguard: not a history answer");
  const last = body.events.length ? body.events[body.events.length - 1].offset : body.offset;
  return {
    threadId: body.thread_id,
    epoch: body.epoch,
    offset: body.offset,
    events: body.events,
    complete: body.complete,
    position: { epoch: body.epoch, offset: last },
  };
}

/**
 * Fetch a thread's history with a bearer token.
 * @param {string | URL} socketUrl
 * @param {string} threadId
 * @param {HistoryOptions & {token: string, fetch?: typeof fetch}} options
 * @returns {Promise<History>}
 */
export async function fetchHistory(socketUrl, threadId, options) {
  const get = options.fetch ?? globalThis.fetch;
  const response = await get(historyUrl(socketUrl, threadId, options), {
    headers: { Authorization: `Bearer ${options.token}` },
    cache: "no-store",
  });
  if (!response.ok) {
    let message = "";
    try {
      message = String((await response.json()).error ?? "");
    } catch {
      // not JSON: the status says enough
    }
    const retryAfter = Number(response.headers.get("Retry-After"));
    throw new HistoryError(response.status, message, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null);
  }
  return readHistory(await response.json());
}
