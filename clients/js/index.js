// @sluice/client: a client for the Sluice gateway's pub/sub protocol (docs/topics.md). Plain ES module, no
// dependencies, no build step: it runs as-is in browsers and in node (pass `WebSocket` where node has none).

/** The connection's states, in the order a connection goes through them. */
export const States = Object.freeze({
  idle: 'idle',
  connecting: 'connecting',
  connected: 'connected',
  disconnected: 'disconnected',
  reconnecting: 'reconnecting',
  closed: 'closed',
});

// Closes after which a new connection would be refused or closed the same way: a policy said no (1008, 4xxx), or the
// client sent something the server cannot take (1002, 1003, 1007, 1009, 1010). Anything else (1001 going away, 1006
// dropped, 1011 server error, 1012 restart, 1013 try again later, 1000 from the server) is worth another try.
const FINAL_CODES = new Set([1002, 1003, 1007, 1009, 1010]);
const isPolicyClose = (code) => code === 1008 || (code >= 4000 && code <= 4999);

/** An error answered by the gateway (`{"error":{"policy","status","message"}}`) or raised by the client. */
export class SluiceError extends Error {
  constructor(message, { status, policy, op, topic, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SluiceError';
    this.status = status;
    this.policy = policy;
    this.op = op;
    this.topic = topic;
  }
}

/**
 * A reconnecting pub/sub client. Subscriptions are kept across reconnects: after each reconnect every topic is
 * subscribed again, with `since` (the last offset and epoch seen) when the route keeps history.
 */
export class SluiceClient {
  #url;
  #options;
  #WebSocket;
  #socket = null;
  #state = States.idle;
  #listeners = new Map();
  #topics = new Map(); // topic -> { handlers: Set, position: {offset, epoch} | null, recovered: boolean | undefined }
  #pending = []; // operations sent and not yet answered, oldest first: the protocol has no request ids
  #attempt = 0;
  #timer = null;
  #connectTimer = null;
  #firstConnect = null;
  #closedByUser = false;

  /**
   * @param {string} url the pub/sub route, ws:// or wss://
   * @param {import('./index.js').SluiceClientOptions} [options]
   */
  constructor(url, options = {}) {
    this.#url = url;
    this.#options = {
      token: undefined,
      tokenParam: 'access_token',
      reconnect: true,
      reconnectOnPolicyClose: false,
      initialDelayMs: 500,
      maxDelayMs: 30000,
      maxAttempts: Infinity,
      connectTimeoutMs: 10000,
      requestTimeoutMs: 10000,
      random: Math.random,
      ...options,
    };
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket: pass options.WebSocket (e.g. the "ws" package in node < 22)');
    }
  }

  /** The current state: idle, connecting, connected, disconnected, reconnecting or closed. */
  get state() { return this.#state; }

  /** The topics this client keeps subscribed. */
  get topics() { return [...this.#topics.keys()]; }

  /** The last position seen on a topic ({offset, epoch}), or undefined when the route keeps no history. */
  position(topic) {
    const p = this.#topics.get(topic)?.position;
    return p ? { ...p } : undefined;
  }

  /** Listens to an event; returns a function that stops listening. */
  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) { this.#listeners.get(event)?.delete(listener); }

  /** Opens the connection. Resolves once connected; rejects if the client closes for good before that. */
  connect() {
    if (this.#state === States.closed) return Promise.reject(new SluiceError('the client is closed'));
    if (this.#state === States.connected) return Promise.resolve();
    if (!this.#firstConnect) {
      let resolve, reject;
      const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
      this.#firstConnect = { promise, resolve, reject };
      promise.catch(() => {}); // the caller may not await it; the error event still reports why
      this.#open(States.connecting);
    }
    return this.#firstConnect.promise;
  }

  /**
   * Subscribes to a topic (again after every reconnect). Resolves with the gateway's answer, e.g.
   * `{topic, recovered}`; rejects with a SluiceError when the gateway refuses (403, 429, 400).
   */
  subscribe(topic, onMessage) {
    this.#checkTopic(topic);
    let entry = this.#topics.get(topic);
    const isNew = !entry;
    if (isNew) {
      entry = { handlers: new Set(), position: null, recovered: undefined, acked: false, waiters: [] };
      this.#topics.set(topic, entry);
    }
    if (onMessage) entry.handlers.add(onMessage);
    if (!isNew && entry.acked) return Promise.resolve({ topic, recovered: entry.recovered });
    // Not connected: sent with every other topic once the connection opens; answered then.
    if (this.#state !== States.connected) return new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    return this.#request({ op: 'subscribe', topic }, 'subscribed').catch((error) => {
      if (error.status !== undefined) this.#topics.delete(topic); // refused: it will not be tried again
      throw error;
    });
  }

  /** Stops a subscription. Resolves when the gateway has answered (at once when not connected). */
  unsubscribe(topic) {
    if (!this.#topics.delete(topic) || this.#state !== States.connected) return Promise.resolve();
    return this.#request({ op: 'unsubscribe', topic }, 'unsubscribed').then(() => undefined);
  }

  /**
   * Publishes `data` (any JSON value) to every other subscriber of the topic. Not acknowledged by the protocol: a
   * refusal arrives as an `error` event. Throws when not connected (nothing is queued, so nothing is sent late).
   */
  publish(topic, data) {
    this.#checkTopic(topic);
    if (data === undefined) throw new TypeError('data must be a JSON value');
    this.#send({ op: 'publish', topic, data }, { op: 'publish', topic });
  }

  /** Who is subscribed to a topic, on every node: `{count, subjects}` (routes with `presence` only). */
  presence(topic) {
    this.#checkTopic(topic);
    return this.#request({ op: 'presence', topic }, 'presence').then(({ count, subjects }) => ({ count, subjects }));
  }

  /** Closes the connection for good: no reconnect. */
  close(code = 1000, reason = '') {
    this.#closedByUser = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#connectTimer);
    const socket = this.#socket;
    this.#socket = null;
    if (socket) {
      this.#detach(socket);
      try { socket.close(code, reason); } catch { /* already closing */ }
    }
    this.#failPending(new SluiceError('the client was closed'));
    this.#finish({ code, reason, byClient: true });
  }

  // ---- connection ----

  #open(state) {
    this.#setState(state, { attempt: this.#attempt });
    let socket;
    try {
      socket = new this.#WebSocket(this.#connectUrl());
    } catch (error) {
      // A malformed URL: no retry will fix it.
      this.#emit('error', new SluiceError(`cannot connect to ${this.#url}: ${error.message}`, { cause: error }));
      this.#finish({ code: 1006, reason: error.message });
      return;
    }
    this.#socket = socket;
    this.#connectTimer = setTimeout(() => {
      if (this.#socket === socket && socket.readyState !== 1) {
        this.#emit('error', new SluiceError(`no connection within ${this.#options.connectTimeoutMs} ms`));
        this.#detach(socket);
        try { socket.close(); } catch { /* not open yet */ }
        this.#lost(socket, { code: 1006, reason: 'connect timeout' });
      }
    }, this.#options.connectTimeoutMs);
    socket.onopen = () => this.#opened(socket);
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onerror = () => { /* the close event follows and says more */ };
    socket.onclose = (event) => this.#lost(socket, { code: event.code, reason: event.reason, wasClean: event.wasClean });
  }

  #connectUrl() {
    const { token, tokenParam } = this.#options;
    const value = typeof token === 'function' ? token() : token;
    if (value === undefined || value === null || value === '') return this.#url;
    const url = new URL(this.#url);
    url.searchParams.set(tokenParam, value);
    return url.toString();
  }

  #opened(socket) {
    if (this.#socket !== socket) return;
    clearTimeout(this.#connectTimer);
    const reconnected = this.#attempt > 0;
    this.#attempt = 0;
    // Taken before the state turns connected: a topic subscribed by a 'connected' listener is sent by subscribe().
    const topics = [...this.#topics];
    this.#setState(States.connected, { reconnected });
    this.#firstConnect?.resolve();
    for (const [topic, entry] of topics) if (this.#topics.get(topic) === entry) this.#resubscribe(topic, entry);
  }

  #resubscribe(topic, entry) {
    entry.acked = false;
    const frame = { op: 'subscribe', topic };
    // Only a route with history gives offsets, and only such a route accepts `since`.
    if (entry.position) frame.since = { offset: entry.position.offset, epoch: entry.position.epoch };
    this.#request(frame, 'subscribed').catch((error) => {
      if (error.status !== undefined) {
        // Refused: forgotten, and whoever waits for it is told.
        if (this.#topics.get(topic) === entry) this.#topics.delete(topic);
        for (const waiter of entry.waiters.splice(0)) waiter.reject(error);
      }
      if (error.status !== undefined || this.#state === States.connected) this.#emit('error', error);
    });
  }

  #lost(socket, { code, reason, wasClean }) {
    if (this.#socket !== socket) return;
    clearTimeout(this.#connectTimer);
    this.#detach(socket);
    this.#socket = null;
    this.#failPending(new SluiceError(`the connection closed (${code})`));
    for (const entry of this.#topics.values()) entry.acked = false;
    if (this.#closedByUser) return;
    this.#setState(States.disconnected, { code, reason, wasClean });
    const { reconnect, reconnectOnPolicyClose, maxAttempts } = this.#options;
    const retry = reconnect && !FINAL_CODES.has(code) && (!isPolicyClose(code) || reconnectOnPolicyClose) && this.#attempt < maxAttempts;
    if (!retry) {
      this.#finish({ code, reason });
      return;
    }
    const delay = this.nextDelay(this.#attempt);
    this.#attempt++;
    this.#setState(States.reconnecting, { attempt: this.#attempt, delayMs: delay, code, reason });
    this.#timer = setTimeout(() => { if (!this.#closedByUser) this.#open(States.connecting); }, delay);
  }

  /** The wait before reconnect attempt `attempt` (0-based): full jitter over an exponential bound, capped. */
  nextDelay(attempt) {
    const { initialDelayMs, maxDelayMs, random } = this.#options;
    const bound = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
    return Math.floor(random() * bound);
  }

  #finish(detail) {
    if (this.#state === States.closed) return;
    this.#setState(States.closed, detail);
    const closed = new SluiceError('the client closed');
    for (const entry of this.#topics.values()) for (const waiter of entry.waiters.splice(0)) waiter.reject(closed);
    this.#firstConnect?.reject(new SluiceError(`the client closed (${detail.code}${detail.reason ? ': ' + detail.reason : ''})`));
  }

  #detach(socket) {
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.#emit('state', { state, ...detail });
    this.#emit(state, detail);
  }

  // ---- frames ----

  #receive(data) {
    if (typeof data !== 'string') {
      this.#emit('error', new SluiceError('the server sent a binary frame; the protocol is JSON text'));
      return;
    }
    let frame;
    try { frame = JSON.parse(data); } catch {
      this.#emit('error', new SluiceError(`the server sent a frame that is not JSON: ${data.slice(0, 100)}`));
      return;
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.#emit('error', new SluiceError(`the server sent a frame that is not a JSON object: ${data.slice(0, 100)}`));
      return;
    }
    if (frame.error && typeof frame.error === 'object') {
      const { policy, status, message } = frame.error;
      const pending = this.#pending.shift();
      const error = new SluiceError(`${policy ?? 'gateway'} answered ${status}: ${message}`, { status, policy, op: pending?.op, topic: pending?.topic });
      if (pending?.reject) pending.reject(error); else this.#emit('error', error);
      return;
    }
    const { op, topic } = frame;
    if (typeof op !== 'string' || typeof topic !== 'string') {
      this.#emit('error', new SluiceError(`the server sent a frame without "op" and "topic": ${data.slice(0, 100)}`));
      return;
    }
    switch (op) {
      case 'message': return this.#message(topic, frame);
      case 'join':
      case 'leave': return this.#emit(op, { topic, subject: frame.subject ?? null });
      case 'subscribed': this.#subscribed(topic, frame); return this.#answer(op, topic, frame);
      case 'unsubscribed':
      case 'presence': return this.#answer(op, topic, frame);
      default: this.#emit('error', new SluiceError(`the server sent an unknown op '${op}'`));
    }
  }

  #message(topic, frame) {
    const entry = this.#topics.get(topic);
    if (!entry) return; // unsubscribed meanwhile
    if (Number.isSafeInteger(frame.offset) && typeof frame.epoch === 'string') {
      const p = entry.position;
      // The gateway promises no duplicates; this keeps that promise even if a replay and a live message overlapped.
      if (p && p.epoch === frame.epoch && frame.offset <= p.offset) return;
      entry.position = { offset: frame.offset, epoch: frame.epoch };
    }
    const message = { topic, data: frame.data, offset: frame.offset, epoch: frame.epoch };
    for (const handler of entry.handlers) this.#call(handler, message);
    this.#emit('message', message);
  }

  #subscribed(topic, frame) {
    const entry = this.#topics.get(topic);
    if (!entry) return;
    entry.acked = true;
    entry.recovered = frame.recovered;
    for (const waiter of entry.waiters.splice(0)) waiter.resolve(frame);
    // The ack's offset is where live messages start. Take it when there is no position yet or when recovery failed
    // (the messages in between are gone); after a recovery the replayed messages move the position themselves.
    if (Number.isSafeInteger(frame.offset) && typeof frame.epoch === 'string' && (!entry.position || frame.recovered === false)) {
      entry.position = { offset: frame.offset, epoch: frame.epoch };
    }
    this.#emit('subscribed', { topic, recovered: frame.recovered });
  }

  #answer(op, topic, frame) {
    // Publishes are not acknowledged: any still pending before this answer went through.
    while (this.#pending.length && this.#pending[0].op === 'publish') this.#pending.shift();
    const index = this.#pending.findIndex((p) => p.expect === op && p.topic === topic);
    if (index < 0) return;
    const [pending] = this.#pending.splice(index, 1);
    pending.resolve(frame);
  }

  // ---- requests ----

  #request(frame, expect) {
    return new Promise((resolve, reject) => {
      const pending = { op: frame.op, topic: frame.topic, expect, resolve: undefined, reject: undefined };
      const timer = setTimeout(() => {
        const i = this.#pending.indexOf(pending);
        if (i >= 0) this.#pending.splice(i, 1);
        reject(new SluiceError(`no answer to ${frame.op} '${frame.topic}' within ${this.#options.requestTimeoutMs} ms`, { op: frame.op, topic: frame.topic }));
      }, this.#options.requestTimeoutMs);
      pending.resolve = (value) => { clearTimeout(timer); resolve(value); };
      pending.reject = (error) => { clearTimeout(timer); reject(error); };
      try { this.#send(frame, pending); } catch (error) { pending.reject(error); }
    });
  }

  #send(frame, pending) {
    const socket = this.#socket;
    if (this.#state !== States.connected || !socket) throw new SluiceError(`not connected (${this.#state})`, { op: frame.op, topic: frame.topic });
    socket.send(JSON.stringify(frame));
    // A publish stays pending only so that an error answered to it is not blamed on the next request.
    this.#pending.push(pending);
  }

  #failPending(error) {
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) p.reject?.(error);
  }

  #checkTopic(topic) {
    if (typeof topic !== 'string' || topic.length === 0) throw new TypeError('topic must be a non-empty string');
  }

  #emit(event, detail) {
    const listeners = this.#listeners.get(event);
    if (!listeners) return;
    for (const listener of [...listeners]) this.#call(listener, detail, event);
  }

  #call(listener, value, event) {
    // A listener that throws must not break the connection: report it as an error event and go on (an error
    // listener that throws goes to the console, not back to itself).
    try { listener(value); } catch (error) {
      if (event !== 'error' && this.#listeners.get('error')?.size) this.#emit('error', error);
      else console.error(error);
    }
  }
}
