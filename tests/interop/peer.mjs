// A WebSocket peer written with node `ws`, for Sluice's interop tests.
//
//   node peer.mjs server               listen on 127.0.0.1 (free port); print "LISTENING <port>"
//   node peer.mjs client URL SCENARIO  run a scenario against URL; print "OK <details>" or exit 1
//
// Same server paths and client scenarios as peer.py.
import { WebSocketServer, WebSocket } from 'ws';
import { randomBytes } from 'node:crypto';

const MAX = 4 * 1024 * 1024;
const [mode, url, scenario] = process.argv.slice(2);

function serve() {
  const server = new WebSocketServer({
    host: '127.0.0.1', port: 0, maxPayload: MAX, perMessageDeflate: process.env.PEER_DEFLATE === '1',
    handleProtocols: (protocols) => ['chat.v2', 'chat.v1'].find((p) => protocols.has(p)) ?? false,
  });
  server.on('connection', (ws, request) => {
    const path = request.url;
    if (path.startsWith('/headers')) {
      ws.send(JSON.stringify({ path, headers: request.headers, subprotocol: ws.protocol, extensions: Object.keys(ws._extensions ?? {}) }));
    }
    if (path.startsWith('/hello')) ws.send('hello');
    if (path.startsWith('/flood')) {
      const chunk = randomBytes(64 * 1024);
      const pump = () => { while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1 << 20) ws.send(chunk); if (ws.readyState === WebSocket.OPEN) setTimeout(pump, 1); };
      pump();
    }
    // The tests read how each connection ended, as this side saw it.
    ws.on('close', (code, reason) => console.log(`CLOSED ${path} ${code} ${reason.toString()}`.trimEnd()));
    ws.on('message', (data, isBinary) => {
      if (path.startsWith('/close/')) { const code = Number(path.split('/')[2]); ws.close(code, `backend-${code}`); return; }
      if (path.startsWith('/die')) { ws._socket.destroy(); return; }
      ws.send(data, { binary: isBinary });
    });
  });
  server.on('listening', () => console.log(`LISTENING ${server.address().port}`));
}

function fail(message) { console.log(`FAIL ${message}`); process.exit(1); }

function open(protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { maxPayload: MAX, perMessageDeflate: false });
    const queue = []; const waiters = [];
    ws.on('message', (data, isBinary) => { const m = { data: isBinary ? data : data.toString('utf8'), isBinary }; const w = waiters.shift(); w ? w(m) : queue.push(m); });
    ws.recv = () => new Promise((res, rej) => { const m = queue.shift(); if (m) return res(m); const t = setTimeout(() => rej(new Error('timeout')), 10000); waiters.push((x) => { clearTimeout(t); res(x); }); });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

async function expectEcho(ws, payload, isBinary) {
  ws.send(payload, { binary: isBinary });
  const got = await ws.recv();
  const same = isBinary ? got.isBinary && Buffer.compare(got.data, payload) === 0 : !got.isBinary && got.data === payload;
  if (!same) fail(`echo mismatch for ${isBinary ? 'binary' : 'text'} of ${payload.length}`);
}

async function client() {
  const ws = await open(scenario === 'subprotocol' ? ['chat.v1'] : undefined);
  if (scenario === 'sizes') {
    for (const size of [0, 125, 126, 65535, 65536, 1024 * 1024]) {
      await expectEcho(ws, randomBytes(size), true);
      await expectEcho(ws, 'a'.repeat(size), false);
    }
    await expectEcho(ws, 'héllo wörld ✓ 🎉 '.repeat(1000), false);
    console.log('OK sizes');
  } else if (scenario === 'order') {
    for (let i = 0; i < 1000; i++) ws.send(String(i).padStart(4, '0'));
    for (let i = 0; i < 1000; i++) { const m = await ws.recv(); if (m.data !== String(i).padStart(4, '0')) fail(`message ${i} arrived as ${m.data}`); }
    console.log('OK order');
  } else if (scenario === 'fragmented') {
    ws.send('frag-', { fin: false }); ws.send('ment-', { fin: false }); ws.send('ed ✓', { fin: true });
    const m = await ws.recv(); if (m.data !== 'frag-ment-ed ✓') fail(`fragmented echo was ${m.data}`);
    console.log('OK fragmented');
  } else if (scenario === 'close') {
    await new Promise((resolve) => { ws.on('close', (code, reason) => { console.log(`OK close ${code} ${reason}`); resolve(); }); ws.close(4000, 'node-bye'); });
    return;
  } else if (scenario === 'subprotocol') {
    console.log(`OK subprotocol ${ws.protocol}`);
  } else fail(`unknown scenario ${scenario}`);
  ws.close(1000);
}

if (mode === 'server') serve(); else client().catch((e) => fail(e.message));
