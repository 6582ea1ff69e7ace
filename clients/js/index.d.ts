// Types for @sluice/client (hand-written; the package is plain JavaScript).

export type State = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'reconnecting' | 'closed';

export declare const States: Readonly<{ [K in State]: K }>;

/** A JSON value, as published and delivered. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Anything with the browser's WebSocket constructor shape (the global one, or the `ws` package's). */
export interface WebSocketConstructor {
  new (url: string): WebSocketLike;
}

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface SluiceClientOptions {
  /** A token or API key sent as a query parameter (browsers cannot set headers on a WebSocket); a function is asked on each connect. */
  token?: string | (() => string | undefined);
  /** The query parameter for the token: `access_token` (the `jwt` policy) by default; an `api-key` policy's `query` name otherwise. */
  tokenParam?: string;
  /** The WebSocket constructor; default: the global one. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect after a connection is lost (default true). */
  reconnect?: boolean;
  /** Reconnect also after a policy close (1008, 4000-4999); default false, since the next connection would be refused the same way. */
  reconnectOnPolicyClose?: boolean;
  /** The first reconnect's bound in ms (default 500); each attempt doubles it. */
  initialDelayMs?: number;
  /** The largest bound in ms (default 30000). Each delay is random between 0 and the bound (full jitter). */
  maxDelayMs?: number;
  /** Attempts before giving up (default Infinity); reset by each successful connection. */
  maxAttempts?: number;
  /** A connection that is not open within this many ms is abandoned and retried (default 10000). */
  connectTimeoutMs?: number;
  /** Subscribe, unsubscribe and presence reject when unanswered within this many ms (default 10000). */
  requestTimeoutMs?: number;
  /** The random source for jitter, in [0, 1) (default Math.random). */
  random?: () => number;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface Message<T = Json> {
  topic: string;
  data: T;
  /** The message's offset in the topic's history; undefined when the route keeps no history. */
  offset?: number;
  epoch?: string;
}

export interface Subscribed {
  op: 'subscribed';
  topic: string;
  /** With history: the topic's last offset and epoch when the subscription started. */
  offset?: number;
  epoch?: string;
  /** After a resubscribe with `since`: true when every missed message was delivered, false when some are lost. */
  recovered?: boolean;
}

export interface Presence {
  count: number;
  subjects: string[];
}

export interface StateChange {
  state: State;
  /** The close code, on disconnected, reconnecting and closed. */
  code?: number;
  reason?: string;
  wasClean?: boolean;
  /** On connecting and reconnecting: the attempt number (0 on the first connect). */
  attempt?: number;
  /** On reconnecting: the wait before the next attempt. */
  delayMs?: number;
  /** On connected: true after a reconnect. */
  reconnected?: boolean;
  /** On closed: true when close() was called. */
  byClient?: boolean;
}

export interface Events {
  state: StateChange;
  idle: StateChange;
  connecting: StateChange;
  connected: StateChange;
  disconnected: StateChange;
  reconnecting: StateChange;
  closed: StateChange;
  error: Error;
  message: Message;
  subscribed: { topic: string; recovered?: boolean };
  join: { topic: string; subject: string | null };
  leave: { topic: string; subject: string | null };
}

export declare class SluiceError extends Error {
  /** The HTTP-like status the gateway answered (400, 403, 429, 503), or undefined for a client-side error. */
  readonly status?: number;
  /** The policy that answered (`pubsub`, `rate-limit`, ...). */
  readonly policy?: string;
  /** The operation the error was matched to, when known. */
  readonly op?: string;
  readonly topic?: string;
}

export declare class SluiceClient {
  constructor(url: string, options?: SluiceClientOptions);
  readonly state: State;
  readonly topics: string[];
  position(topic: string): Position | undefined;
  on<E extends keyof Events>(event: E, listener: (value: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, listener: (value: Events[E]) => void): void;
  connect(): Promise<void>;
  subscribe<T = Json>(topic: string, onMessage?: (message: Message<T>) => void): Promise<Subscribed>;
  unsubscribe(topic: string): Promise<void>;
  publish(topic: string, data: Json): void;
  presence(topic: string): Promise<Presence>;
  close(code?: number, reason?: string): void;
  /** The wait before reconnect attempt `attempt` (0-based). */
  nextDelay(attempt: number): number;
}
