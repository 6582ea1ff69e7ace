// A console chat on one topic through the gateway's pubsub handler, with Sluice.Client: it reconnects on its own,
// subscribes again and, on a route with history, gets what it missed.
//
//   dotnet run --project src/Sluice.Gateway                              # the embedded demo: /chat is a pubsub route
//   dotnet run --project samples/PubSubClient -- ws://127.0.0.1:5080/chat demo
//
// Type a line to publish it; Ctrl+C to leave.
using System.Text.Json.Nodes;
using Sluice.Client;

var uri = new Uri(args.Length > 0 ? args[0] : "ws://127.0.0.1:5080/chat");
var topic = args.Length > 1 ? args[1] : "demo";
var options = new SluiceClientOptions
{
    Token = Environment.GetEnvironmentVariable("SLUICE_TOKEN"), // a jwt route reads ?access_token=
    MaxReconnectDelay = TimeSpan.FromSeconds(10),
};

await using var client = new SluiceClient(uri, options);
client.StateChanged += (_, change) => Console.WriteLine(change.State switch
{
    SluiceClientState.Reconnecting => $"[reconnecting in {change.Delay?.TotalSeconds:0.0} s after {(int?)change.CloseStatus}]",
    SluiceClientState.Closed => $"[closed: {(int?)change.CloseStatus} {change.CloseDescription}]",
    var state => $"[{state.ToString().ToLowerInvariant()}]",
});
client.Subscribed += (_, s) => Console.WriteLine(s.Recovered is { } recovered ? $"[subscribed to {s.Topic}, recovered: {recovered}]" : $"[subscribed to {s.Topic}]");
client.MessageReceived += (_, m) => Console.WriteLine($"{m.Topic}{(m.Offset is { } o ? "#" + o : "")}: {m.Data}");
client.PresenceChanged += (_, p) => Console.WriteLine($"[{p.Subject ?? "someone"} {(p.Joined ? "joined" : "left")}]");
client.Error += (_, e) => Console.WriteLine($"[error: {e.Message}]");

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };

await client.ConnectAsync(stop.Token);
await client.SubscribeAsync(topic, stop.Token);
while (!stop.IsCancellationRequested && await Console.In.ReadLineAsync(stop.Token) is { } line)
{
    try
    {
        await client.PublishAsync(topic, new JsonObject { ["text"] = line }, stop.Token);
    }
    catch (SluiceException ex)
    {
        Console.WriteLine($"[not sent: {ex.Message}]");
    }
}
