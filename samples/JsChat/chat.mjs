// A console chat on one topic through the gateway's pubsub handler, with the JavaScript client (clients/js): it
// reconnects on its own, subscribes again and, on a route with history, gets what it missed.
//
//   dotnet run --project src/Sluice.Gateway -c Release       # the embedded demo: /chat is a pubsub route
//   cd samples/JsChat && npm install && node chat.mjs ws://127.0.0.1:5080/chat demo
//
// Type a line to publish it; Ctrl+D to leave. SLUICE_TOKEN, when set, is sent as ?access_token= (a jwt route).
import readline from 'node:readline';
import { SluiceClient } from '../../clients/js/index.js';

/**
 * Runs the chat until `input` ends: every line is published to `topic` as {"text": line}, every message of the topic
 * is printed. `WebSocket` is node's own (node 22+) or the `ws` package's.
 */
export async function chat({ url, topic, WebSocket, input, print = console.log, token = process.env.SLUICE_TOKEN }) {
  const client = new SluiceClient(url, { WebSocket, token });
  client.on('state', ({ state, code, delayMs }) =>
    print(`[${state}${code ? ` after ${code}` : ''}${delayMs !== undefined ? ` in ${(delayMs / 1000).toFixed(1)} s` : ''}]`));
  client.on('subscribed', ({ topic: t, recovered }) => print(`[subscribed to ${t}${recovered === undefined ? '' : `, recovered: ${recovered}`}]`));
  client.on('join', ({ subject }) => print(`[${subject ?? 'someone'} joined]`));
  client.on('leave', ({ subject }) => print(`[${subject ?? 'someone'} left]`));
  client.on('error', (e) => print(`[error: ${e.message}]`));

  await client.connect();
  await client.subscribe(topic, ({ data, offset }) => print(`${topic}${offset ? `#${offset}` : ''}: ${JSON.stringify(data)}`));
  for await (const line of readline.createInterface({ input, crlfDelay: Infinity })) {
    try {
      client.publish(topic, { text: line });
    } catch (e) {
      print(`[not sent: ${e.message}]`);
    }
  }
  client.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const WebSocket = globalThis.WebSocket ?? (await import('ws')).WebSocket;
  await chat({ url: process.argv[2] ?? 'ws://127.0.0.1:5080/chat', topic: process.argv[3] ?? 'demo', WebSocket, input: process.stdin });
}
