// Drives the JavaScript client (clients/js) in node against a real gateway, for tests/Sluice.Gateway.Tests/Clients.
//
//   node client.mjs roundtrip WS_BASE                 subscribe, publish, receive; errors from the gateway; unsubscribe
//   node client.mjs restart WS_BASE                   prints SUBSCRIBED; the test restarts the gateway on the same port;
//                                                     the client reconnects, resubscribes and receives again
//   node client.mjs vanish WS_BASE                    nothing listens yet: prints REFUSED after 3 attempts; the test
//                                                     starts the gateway; the client connects and subscribes
//   node client.mjs close WS_BASE HTTP_BASE CODE      the admin API closes the client with CODE: does it reconnect?
//   node client.mjs garbage                           a raw server here answers garbage frames: errors, no crash
//   node client.mjs recover WS_BASE HTTP_BASE         (history) away while 5 messages are published: exactly those, in order
//   node client.mjs presence WS_BASE                  (presence) count, subjects, join and leave events
//   node client.mjs sample WS_BASE                    samples/JsChat: a line typed in one chat reaches another
//
// WS_BASE is ws://127.0.0.1:PORT; the route is /topics. Prints "OK <details>" and exits 0, "SKIP <why>" and exits 0
// when the gateway lacks the feature, or "FAIL <why>" and exits 1. Every wait is bounded.
import { WebSocket, WebSocketServer } from 'ws';
import { SluiceClient } from '../../clients/js/index.js';

const [scenario, base, httpBase, code] = process.argv.slice(2);
const url = `${base}/topics`;
const trace = [];

function fail(message) {
  console.log(`FAIL ${message} (trace: ${trace.slice(-30).join(', ')})`);
  process.exit(1);
}

// A client that records its state changes and errors; fast reconnects so that the tests do not wait long.
function client(options = {}) {
  const c = new SluiceClient(options.url ?? url, { WebSocket, initialDelayMs: 100, maxDelayMs: 1000, ...options });
  c.states = [];
  c.errors = [];
  c.on('state', (s) => { c.states.push(s.state); trace.push(`${options.name ?? 'c'}:${s.state}${s.code ? ' ' + s.code : ''}`); });
  c.on('error', (e) => { c.errors.push(e); trace.push(`${options.name ?? 'c'}:error ${e.message}`); });
  return c;
}

function until(predicate, what, ms = 30000) {
  return new Promise((resolve) => {
    const started = Date.now();
    const check = () => {
      if (predicate()) return resolve();
      if (Date.now() - started > ms) fail(`timed out waiting for ${what}`);
      setTimeout(check, 20);
    };
    check();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A receiver that collects one topic's messages.
async function receiver(name, topic, options) {
  const c = client({ name, ...options });
  c.received = [];
  await c.connect();
  c.ack = await c.subscribe(topic, (m) => c.received.push(m));
  return c;
}

async function roundtrip() {
  const a = await receiver('a', 'room');
  const b = await receiver('b', 'room');
  b.publish('room', { text: 'hello', n: 1 });
  await until(() => a.received.length === 1, 'a to receive the message');
  const m = a.received[0];
  if (m.topic !== 'room' || m.data.text !== 'hello' || m.data.n !== 1) fail(`a received ${JSON.stringify(m)}`);
  if (b.received.length !== 0) fail('the publisher got its own message');

  // Order of 200 messages of one publisher.
  for (let i = 0; i < 200; i++) b.publish('room', i);
  await until(() => a.received.length === 201, '200 more messages');
  for (let i = 0; i < 200; i++) if (a.received[i + 1].data !== i) fail(`message ${i} arrived as ${a.received[i + 1].data}`);

  // The gateway's refusal rejects the subscribe with its status (an invalid topic: a control character).
  const refused = await a.subscribe('bad\u0001topic').then(() => null, (e) => e);
  if (!refused || refused.status !== 400 || refused.policy !== 'pubsub') fail(`the invalid subscribe was not refused with 400: ${refused}`);
  if (a.topics.includes('bad\u0001topic')) fail('a refused topic is kept for resubscription');

  // Unsubscribed: nothing more arrives. b's publishes reach a in order, so once the marker is there, 'after' was routed.
  const markers = [];
  await a.subscribe('marker', (m) => markers.push(m));
  await a.unsubscribe('room');
  if (a.topics.includes('room')) fail('room is still kept after unsubscribe');
  b.publish('room', 'after');
  b.publish('marker', 'sync');
  await until(() => markers.length === 1, 'the marker');
  if (a.received.length !== 201) fail('a message arrived after unsubscribe');
  if (a.states.join(',') !== 'connecting,connected') fail(`states were ${a.states}`);
  a.close(); b.close();
  if (a.state !== 'closed') fail(`after close() the state is ${a.state}`);
  console.log(`OK roundtrip ${a.received.length}`);
}

async function restart() {
  const a = await receiver('a', 'room', { initialDelayMs: 200, maxDelayMs: 2000 });
  await a.subscribe('other', () => {});
  const acks = [];
  a.on('subscribed', (s) => acks.push(s.topic));
  console.log('SUBSCRIBED');
  await until(() => a.states.includes('reconnecting'), 'the client to see the gateway go', 60000);
  await until(() => a.state === 'connected' && a.states.lastIndexOf('connected') > a.states.indexOf('reconnecting'), 'the client to reconnect', 90000);
  // Resubscribed on its own: both topics acknowledged by the new gateway, and a new publisher reaches it.
  await until(() => acks.includes('room') && acks.includes('other'), 'both topics resubscribed');
  const b = client({ name: 'b' });
  await b.connect();
  await b.subscribe('sync');
  b.publish('room', 'after restart');
  await until(() => a.received.length === 1, 'the message after the restart');
  if (a.received[0].data !== 'after restart') fail(`after the restart a received ${JSON.stringify(a.received)}`);
  a.close(); b.close();
  console.log(`OK restart ${a.states.filter((s) => s === 'reconnecting').length}`);
}

async function vanish() {
  const a = client({ name: 'a', initialDelayMs: 100, maxDelayMs: 400 });
  a.received = [];
  const connected = a.connect();
  const subscribed = a.subscribe('room', (m) => a.received.push(m)); // before the connection: sent once connected
  await until(() => a.states.filter((s) => s === 'reconnecting').length >= 3, 'three refused attempts');
  if (a.state === 'closed') fail('the client gave up');
  console.log('REFUSED');
  await connected;
  await subscribed;
  const b = client({ name: 'b' });
  await b.connect();
  await b.subscribe('sync');
  b.publish('room', 'back');
  await until(() => a.received.length === 1, 'the message after the server came back');
  a.close(); b.close();
  console.log(`OK vanish ${a.states.filter((s) => s === 'reconnecting').length}`);
}

async function listConnections() {
  const response = await fetch(`${httpBase}/_sluice/connections`);
  if (!response.ok) fail(`GET connections answered ${response.status}`);
  const body = await response.json();
  return Array.isArray(body) ? body : body.connections ?? [];
}

async function closeAll(closeCode) {
  const connections = await listConnections();
  for (const c of connections) {
    const r = await fetch(`${httpBase}/_sluice/connections/${encodeURIComponent(c.id)}/close?code=${closeCode}&reason=test`, { method: 'POST' });
    if (r.status !== 202) fail(`close answered ${r.status}`);
  }
  return connections.length;
}

async function close() {
  const closeCode = Number(code);
  const a = client({ name: 'a' });
  await a.connect();
  await a.subscribe('room');
  if (await closeAll(closeCode) !== 1) fail('expected one connection');
  await until(() => a.states.includes('disconnected'), 'the close');
  // Either it comes back (and resubscribes), or it is closed for good and stays so.
  await until(() => a.state === 'closed' || (a.state === 'connected' && a.states.lastIndexOf('connected') > 1), 'the client to settle', 30000);
  if (a.state === 'closed') {
    await sleep(1500); // longer than a reconnect delay here: a reconnect would have started
    if (a.state !== 'closed' || a.states.includes('reconnecting')) fail(`it reconnected after ${closeCode}: ${a.states}`);
    console.log(`OK close ${closeCode} final`);
    return;
  }
  await until(() => a.topics.length === 1, 'the topic kept');
  const acked = await a.subscribe('room'); // already held: resolves at once once resubscribed
  a.close();
  console.log(`OK close ${closeCode} reconnected ${acked.topic}`);
}

async function garbage() {
  // A raw server: answers each subscribe with garbage first, then the real answer and one real message.
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server.on('listening', r));
  server.on('connection', (ws) => ws.on('message', (raw) => {
    const frame = JSON.parse(raw.toString());
    if (frame.op !== 'subscribe') return;
    ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    ws.send('not json {');
    ws.send('[1,2,3]');
    ws.send('null');
    ws.send('{"op":42}');
    ws.send('{"op":"teleport","topic":"room"}');
    ws.send('{"error":"not an object"}');
    ws.send(JSON.stringify({ op: 'subscribed', topic: frame.topic }));
    ws.send(JSON.stringify({ op: 'message', topic: frame.topic, data: 'real', offset: 'x', epoch: 7 }));
  }));
  const a = client({ name: 'a', url: `ws://127.0.0.1:${server.address().port}/topics` });
  const received = [];
  await a.connect();
  await a.subscribe('room', (m) => received.push(m));
  await until(() => received.length === 1, 'the real message after the garbage');
  if (a.state !== 'connected') fail(`state ${a.state}`);
  if (a.errors.length < 6) fail(`only ${a.errors.length} errors for 7 garbage frames: ${a.errors.map((e) => e.message)}`);
  if (a.position('room') !== undefined) fail('a bad offset was taken as a position');
  a.close();
  server.close();
  console.log(`OK garbage ${a.errors.length}`);
}

// Does the route keep history? Only then do messages carry offsets.
async function hasHistory(a, b, topic) {
  b.publish(topic, 'probe');
  await until(() => a.received.length === 1, 'the probe');
  return Number.isSafeInteger(a.received[0].offset);
}

async function recover() {
  const a = await receiver('a', 'news', { initialDelayMs: 5000, maxDelayMs: 5000, random: () => 0.999, token: 'k-alice', tokenParam: 'key' });
  const b = client({ name: 'b', token: 'k-bob', tokenParam: 'key' });
  await b.connect();
  await b.subscribe('sync');
  if (!(await hasHistory(a, b, 'news'))) {
    a.close(); b.close();
    console.log('SKIP the gateway keeps no history: messages carry no offset (needs the pubsub branch: history, recovery)');
    return;
  }
  const before = a.position('news');
  const acks = [];
  a.on('subscribed', (s) => acks.push(s));
  // The gateway closes both with 1012 (restart): b is back at once, a waits 5 s; 5 messages are published meanwhile.
  await closeAll(1012);
  // b is back on a new connection (its first one may still look connected while the gateway closes it).
  await until(() => a.state === 'reconnecting' && b.state === 'connected' && b.states.filter((s) => s === 'connected').length === 2, 'a away and b back');
  for (let i = 1; i <= 5; i++) b.publish('news', `missed ${i}`);
  if (a.state !== 'reconnecting') fail('a came back before the messages were published: the test proves nothing');
  await until(() => a.state === 'connected', 'a to come back', 30000);
  await until(() => a.received.length >= 6 && acks.length === 1, 'the 5 missed messages', 30000);
  if (acks[0].recovered !== true) fail(`the resubscribe answered recovered: ${acks[0].recovered}`);
  b.publish('news', 'live');
  await until(() => a.received.length >= 7, 'the live message');
  await sleep(300); // a duplicate would arrive now
  const texts = a.received.slice(1).map((m) => m.data);
  const expected = ['missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5', 'live'];
  if (JSON.stringify(texts) !== JSON.stringify(expected)) fail(`received ${JSON.stringify(texts)}`);
  const offsets = a.received.map((m) => m.offset);
  if (offsets.some((o, i) => i > 0 && o !== offsets[i - 1] + 1)) fail(`offsets ${offsets}`);
  if (a.position('news').offset !== before.offset + 6) fail(`position ${JSON.stringify(a.position('news'))} after ${JSON.stringify(before)}`);
  a.close(); b.close();
  console.log(`OK recover ${texts.length} recovered`);
}

async function presence() {
  const a = await receiver('a', 'lobby', { token: 'k-alice', tokenParam: 'key' });
  const probe = await a.presence('lobby').then((p) => p, (e) => e);
  if (probe instanceof Error) {
    a.close();
    if (probe.status === 400) { console.log(`SKIP the gateway has no presence: ${probe.message} (needs the pubsub branch: presence)`); return; }
    fail(`presence failed: ${probe.message}`);
  }
  const events = [];
  a.on('join', (e) => events.push(`join ${e.subject}`));
  a.on('leave', (e) => events.push(`leave ${e.subject}`));
  const b = await receiver('b', 'lobby', { token: 'k-bob', tokenParam: 'key' });
  await until(() => events.includes('join bob'), 'the join event');
  const both = await a.presence('lobby');
  if (both.count !== 2 || both.subjects.join(',') !== 'alice,bob') fail(`presence ${JSON.stringify(both)}`);
  b.close();
  await until(() => events.includes('leave bob'), 'the leave event');
  a.close();
  console.log(`OK presence ${events.join(',')}`);
}

// The sample of samples/JsChat, run twice: what one chat is given as input the other prints.
async function sample() {
  const { chat } = await import('../../samples/JsChat/chat.mjs');
  const { PassThrough } = await import('node:stream');
  const printed = [];
  const listenerInput = new PassThrough();
  const listener = chat({ url, topic: 'sample', WebSocket, input: listenerInput, print: (line) => { printed.push(line); trace.push(`listener: ${line}`); } });
  await until(() => printed.includes('[subscribed to sample]'), 'the listener subscribed');
  const talkerInput = new PassThrough();
  const talker = chat({ url, topic: 'sample', WebSocket, input: talkerInput, print: (line) => trace.push(`talker: ${line}`) });
  await until(() => trace.includes('talker: [subscribed to sample]'), 'the talker subscribed');
  talkerInput.end('hello from the sample\n');
  await until(() => printed.includes('sample: {"text":"hello from the sample"}'), 'the line reached the other chat');
  listenerInput.end();
  await Promise.all([listener, talker]);
  console.log('OK sample');
}

const scenarios = { roundtrip, restart, vanish, close, garbage, recover, presence, sample };
if (!scenarios[scenario]) fail(`unknown scenario ${scenario}`);
const watchdog = setTimeout(() => fail('the scenario took over 150 s'), 150000);
try {
  await scenarios[scenario]();
} catch (e) {
  fail(e.stack ?? String(e));
}
clearTimeout(watchdog);
process.exit(0);
