// Acknowledges every message to its sender and counts the messages of each connection.
// `data` is the text (or an ArrayBuffer for binary); returning it passes it on unchanged.
function policy(data, context) {
  context.state.count = (context.state.count ?? 0) + 1;
  context.source.send(JSON.stringify({ ack: context.state.count, connection: context.connectionId }));
  return data;
}
