// A node `ws` proxy as a node developer would write it: accept, connect to the backend, pump both ways through
// three hook functions. MODE=noop: the hooks do nothing. MODE=redact: one hook removes /password from JSON text,
// the way a json-redact policy does (parse, delete, stringify). A fourth argument `deflate` negotiates
// permessage-deflate on both legs, compressing every message (threshold 0) as .NET does.
//   node proxy.mjs PORT BACKEND_URL [noop|redact] [deflate]
import { WebSocketServer, WebSocket } from 'ws';

const [port, backend, mode = 'noop', compression] = process.argv.slice(2);
const perMessageDeflate = compression === 'deflate' ? { threshold: 0 } : false;
const noop = (data) => data;
const redact = (data, isBinary) => {
  if (isBinary) return data;
  try {
    const value = JSON.parse(data);
    if (value && typeof value === 'object' && 'password' in value) { delete value.password; return JSON.stringify(value); }
  } catch { /* not JSON: forward as is */ }
  return data;
};
const inbound = [mode === 'redact' ? redact : noop, noop, noop];
const outbound = [noop, noop, noop];

const server = new WebSocketServer({ host: '127.0.0.1', port: Number(port), perMessageDeflate, maxPayload: 16 << 20 });
server.on('connection', (client, request) => {
  const upstream = new WebSocket(backend + request.url, { perMessageDeflate, maxPayload: 16 << 20 });
  const queued = [];
  const pump = (hooks, to) => (data, isBinary) => {
    let message = isBinary ? data : data.toString('utf8');
    for (const hook of hooks) message = hook(message, isBinary);
    if (to.readyState === WebSocket.OPEN) to.send(message, { binary: isBinary });
    else queued.push([message, isBinary]);
  };
  client.on('message', pump(inbound, upstream));
  upstream.on('open', () => { for (const [m, b] of queued.splice(0)) upstream.send(m, { binary: b }); });
  upstream.on('message', pump(outbound, client));
  const closeBoth = () => { client.terminate(); upstream.terminate(); };
  client.on('close', closeBoth); upstream.on('close', closeBoth);
  client.on('error', closeBoth); upstream.on('error', closeBoth);
});
server.on('listening', () => console.log(`LISTENING ${port}`));
