// Types of wsguard.js, the wsguard browser client. Hand-written; keep in step with the JSDoc.

export interface Position {
  epoch: string;
  offset: number;
}

/** An `event` frame of the wire protocol, as the server sent it. */
export interface WsguardEvent {
  type: "event";
  event: string;
  thread_id: string | null;
  run_id: string | null;
  request_id: string | null;
  offset: number | null;
  epoch: string;
  data: Record<string, unknown>;
  ts: string;
}

export type State = "connecting" | "open" | "closed";
export type Role = "leader" | "follower" | "alone";
/** A connection's transport: a WebSocket on `/ws`, or Server-Sent Events on `/sse` with commands by POST. */
export type Transport = "websocket" | "sse";
/** `"auto"`: WebSocket, falling back to SSE after two WebSocket attempts in a row fail to open. */
export type TransportMode = "auto" | Transport;

export interface BackoffOptions {
  /** ms before the first retry (half to all of it, jittered); default 100 */
  baseDelay?: number;
  /** default 2 */
  factor?: number;
  /** ms; default 10000 */
  maxDelay?: number;
  /** ms: the most a reconnect after 1001 going_away waits; default 5000 */
  goingAwayDelay?: number;
  /** consecutive failed attempts before stopping; default null (no bound) */
  maxAttempts?: number | null;
}

export interface ConnectOptions {
  /** A JWT, or an async provider of fresh ones: a ticket is fetched with it before every connection. */
  token?: string | (() => Promise<string>);
  /** An async provider of one-time tickets, instead of `token`. */
  ticket?: () => Promise<string>;
  /** One socket shared by every tab of the origin (default true). */
  share?: boolean;
  /** Tabs share a socket only with tabs of the same key: use the user id when several users may sign in on one origin. */
  shareKey?: string;
  /** Default: /api/tickets on the socket's host. */
  ticketUrl?: string;
  /**
   * `"auto"` (default): WebSocket; after two WebSocket attempts in a row end without a `welcome`,
   * Server-Sent Events, with WebSocket tried again at the first reconnect `retryWebSocketAfter`
   * ms later. `"websocket"` or `"sse"`: only that one.
   */
  transport?: TransportMode;
  /** GET /sse; default: the socket's URL over http(s), its last path segment `ws` turned into `sse`. */
  sseUrl?: string;
  /** ms on SSE before `"auto"` tries WebSocket again, at the next reconnect; default 300000 (5 minutes). */
  retryWebSocketAfter?: number;
  backoff?: BackoffOptions;
  /** ms between application `ping`s; default the server's heartbeat interval. */
  pingInterval?: number;
  /** ms to wait for any frame after a `ping` (or for the `welcome` of a new connection) before giving it up; default 10000. */
  pingTimeout?: number;
  /** ms a new leader waits for the other tabs' subscriptions before subscribing; default 1000. */
  gatherTimeout?: number;
}

/** A thread's retained events after an offset (`GET /api/threads/{threadId}/events`). */
export interface History {
  threadId: string;
  epoch: string;
  /** the thread's last offset */
  offset: number;
  /** `event` frames, in offset order */
  events: WsguardEvent[];
  /** false when events after `since` are no longer retained: redraw from what came */
  complete: boolean;
  /** where to subscribe from: the last event returned, else the thread's last offset */
  position: Position;
}

export interface HistoryOptions {
  /** the offset the page already has (default 0: everything retained) */
  since?: number;
  /** at most this many events (default 100, at most 1000) */
  limit?: number;
}

export interface RecoveryFailure {
  threadId: string;
  /** where this tab was */
  asked: Position;
  /** where the thread stands now; events continue after it */
  position: Position;
}

export interface StopDetail {
  /** the close code, or null when the ticket request or the provider failed */
  code: number | null;
  /** HTTP status of a refused ticket request */
  status?: number;
  reason: string;
  /** which rule decided */
  why: string;
  /** what the application or the user can do */
  action: string;
}

export interface Stats {
  delivered: number;
  duplicatesDropped: number;
  replayed: number;
  recoveryFailures: number;
  /** sockets this tab opened */
  connections: number;
}

/** A server frame that answers a command: it echoes the command's `ref`. */
export interface Reply {
  type: string;
  ref: string;
  [field: string]: unknown;
}

export interface SendOptions {
  /** ms to wait for the reply, waiting for a connection included; default 10000 */
  timeout?: number;
}

/**
 * Why `send` rejected: `code` is the server's error code (`bad_request`, `unknown_type`,
 * `rate_limited`, `unauthorized`, ...), or one of the client's: `timeout`, `connection_lost` (the
 * connection closed before the reply), `not_delivered` (SSE: the command's POST was refused;
 * `status` says how), `too_big` (over the server's max_message_bytes, not sent), `closed`,
 * `stopped`.
 */
export declare class CommandError extends Error {
  constructor(code: string, message: string, reply?: unknown);
  code: string;
  /** the `error` frame, the server's or one the client made up */
  reply: { type: "error"; ref: unknown; code: string; message: string; status?: number } | null;
  /** the HTTP status of a refused command POST */
  status: number | null;
}

interface WsguardEventMap {
  state: CustomEvent<{ state: State }>;
  role: CustomEvent<{ role: Role }>;
  transport: CustomEvent<{ transport: Transport }>;
  recoveryfailed: CustomEvent<RecoveryFailure>;
  stopped: CustomEvent<StopDetail>;
  userevent: CustomEvent<WsguardEvent>;
}

export declare class WsguardClient extends EventTarget {
  constructor(url: string, options?: ConnectOptions);
  /** The WebSocket URL, resolved against the page (`ws:` or `wss:`); event streams go to the `sseUrl` option, by default the `/sse` beside it. */
  readonly url: string;
  readonly state: State;
  readonly role: Role;
  /** The transport of the current (or last) connection, whichever tab holds it; null before the first. */
  readonly transport: Transport | null;
  /**
   * The session id of the last `welcome`, whichever tab holds the connection; every reconnect
   * sends it as `resume=` so the server keeps the session. null before the first `welcome`.
   */
  readonly sessionId: string | null;
  /** The user id the server authenticated (the last `welcome`'s `user_id`); null before the first `welcome`. */
  readonly userId: string | null;
  readonly stats: Stats;
  subscribe(threadId: string, callback: (event: WsguardEvent) => void, options?: { since?: Position }): () => void;
  position(threadId: string): Position | null;
  /**
   * Send a command of `type` (an application's own, or `ping`) with `fields`, from any tab and
   * over either transport: the reply that echoes its `ref`, or a CommandError. `subscribe` and
   * `unsubscribe` are refused (use `subscribe()`).
   */
  send(type: string, fields?: Record<string, unknown>, options?: SendOptions): Promise<Reply>;
  /** The thread's retained events over HTTP with this client's token; then subscribe with `{ since: history.position }`. */
  history(threadId: string, options?: HistoryOptions): Promise<History>;
  close(): void;
  addEventListener<K extends keyof WsguardEventMap>(
    type: K,
    listener: (event: WsguardEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WsguardEventMap>(
    type: K,
    listener: (event: WsguardEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export declare function connect(url: string, options?: ConnectOptions): WsguardClient;

export declare class HistoryError extends Error {
  constructor(status: number, message: string, retryAfter: number | null);
  status: number;
  retryAfter: number | null;
}

export declare function historyUrl(socketUrl: string | URL, threadId: string, options?: HistoryOptions & { userId?: string }): string;

export declare function readHistory(body: unknown): History;

export declare function fetchHistory(
  socketUrl: string | URL,
  threadId: string,
  options: HistoryOptions & { userId?: string; token: string; fetch?: typeof fetch },
): Promise<History>;

export interface Decision {
  reconnect: boolean;
  delay: number;
  why: string;
  action?: string;
}

export declare class ReconnectPolicy {
  constructor(options?: BackoffOptions & { random?: () => number });
  attempts: number;
  connected(): void;
  afterClose(code: number, options?: { freshCredentials?: boolean }): Decision;
  afterRefusal(status: number, retryAfter?: number | null): Decision;
  afterNetworkError(): Decision;
}

/** ms on SSE before `"auto"` tries WebSocket again: 300000. */
export declare const RETRY_WEBSOCKET_AFTER: number;

/** Which transport each connection attempt uses (the `transport` option's rule). */
export declare class TransportChooser {
  constructor(
    mode?: TransportMode,
    options?: { retryAfter?: number; failures?: number; from?: { transport: Transport; fellBackAt: number | null } | null },
  );
  readonly mode: TransportMode;
  current: Transport;
  fellBackAt: number | null;
  /** The transport of the next attempt (`now`: ms since the epoch). */
  next(now: number): Transport;
  /** An attempt over `transport` ended; `welcomed`: whether its `welcome` arrived. */
  ended(transport: Transport, welcomed: boolean, now: number): void;
  snapshot(): { transport: Transport; fellBackAt: number | null };
}

export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;

export declare function earliest(positions: Iterable<Position | null>): Position | null;

export declare class ThreadTracker {
  duplicatesDropped: number;
  holdLimit: number;
  subscribe(threadId: string, since?: Position | null): void;
  unsubscribe(threadId: string): void;
  isSubscribed(threadId: string): boolean;
  position(threadId: string): Position | null;
  snapshot(): Record<string, Position | null>;
  receive<E extends { thread_id: string | null; offset: number | null; epoch: string | null }>(event: E): E[];
  onSubscribed(
    frame: { thread_id: string; epoch: string; offset: number; recovered: boolean },
    asked: Position | null,
  ): { failure: RecoveryFailure | null; deliver: WsguardEvent[] };
}
