// A bare node `ws` fan-out server speaking Sluice's pubsub protocol: each publish is serialised once into one Buffer
// that every subscriber is sent (ws writes a small header per send and the shared payload unmasked, uncopied).
//   node fanout.mjs PORT
import { WebSocketServer, WebSocket } from 'ws';

const topics = new Map();
const server = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]), perMessageDeflate: false });
server.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (data) => {
    let message;
    try { message = JSON.parse(data); } catch { return; }
    if (message.op === 'subscribe') {
      if (!topics.has(message.topic)) topics.set(message.topic, new Set());
      topics.get(message.topic).add(ws); mine.add(message.topic);
      ws.send(JSON.stringify({ op: 'subscribed', topic: message.topic }));
    } else if (message.op === 'publish') {
      const subscribers = topics.get(message.topic);
      if (!subscribers) return;
      const payload = Buffer.from(JSON.stringify({ op: 'message', topic: message.topic, data: message.data }));
      for (const subscriber of subscribers) {
        if (subscriber !== ws && subscriber.readyState === WebSocket.OPEN) subscriber.send(payload, { binary: false });
      }
    }
  });
  ws.on('close', () => { for (const topic of mine) topics.get(topic)?.delete(ws); });
});
server.on('listening', () => console.log(`LISTENING ${process.argv[2]}`));
