// The demo page's topic panel: the `demo` topic on /chat through the JavaScript client (clients/js), which the gateway
// serves as /sluice-client.js. The client reconnects with backoff, resubscribes, and reports its state.
import { SluiceClient } from '/sluice-client.js';

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const client = new SluiceClient(`${scheme}://${location.host}/chat`, { maxDelayMs: 10000 });
window.sluiceDemo = client; // for the browser tests and the curious

const add = (text, cls = '') => {
  const li = document.createElement('li');
  li.className = cls;
  li.textContent = text;
  $('ps-messages').appendChild(li);
  $('ps-messages').scrollTop = $('ps-messages').scrollHeight;
};

client.on('state', ({ state, code, delayMs }) => {
  const online = state === 'connected';
  $('ps-status').textContent = state === 'reconnecting' ? `retry in ${(delayMs / 1000).toFixed(1)} s` : state;
  $('ps-status').className = 'status ' + (online ? 'online' : 'offline');
  $('ps-text').disabled = $('ps-send').disabled = !online;
  if (state === 'disconnected') add(`disconnected (${code})`, 'system');
});
client.on('error', (e) => add(`error: ${e.message}`, 'system'));

client.subscribe('demo', (m) => add(typeof m.data?.text === 'string' ? m.data.text : JSON.stringify(m.data)))
  .catch((e) => add(`not subscribed: ${e.message}`, 'system'));
client.connect().catch((e) => add(e.message, 'system'));

$('ps-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('ps-text').value.trim();
  if (!text) return;
  try {
    client.publish('demo', { text });
    add(text, 'mine'); // the gateway sends a message to every subscriber but its publisher
    $('ps-text').value = '';
  } catch (error) {
    add(`not sent: ${error.message}`, 'system');
  }
});
