using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection;

namespace Sluice.LoadTest;

/// <summary>
/// The fan-out servers compared: Sluice's pubsub protocol, ASP.NET Core SignalR with a group (what a .NET user would
/// pick instead), and a bare ASP.NET Core loop that sends the publisher's bytes to every subscriber.
/// </summary>
internal static class FanOutServers
{
    public static async Task<int> RunAsync(Arguments args)
    {
        var port = args.Int("port");
        switch (args.String("kind"))
        {
            case "sluice":
            {
                // Hosted connections hold one descriptor each: the default cap (which leaves room for a proxy's second
                // socket) would refuse a quarter of 10,000 subscribers at an open-file limit of 20,000.
                var redis = args.String("redis", string.Empty);
                var app = Servers.CreateApp(port, services =>
                {
                    var sluice = services.AddSluice(o => o.HostedConnectionsOnly = true);
                    if (redis.Length > 0)
                    {
                        // Cross-node: subscribers on one node, the publisher on another, topics through Redis.
                        sluice.AddRedisBackplane(redis);
                    }
                }, sluice: true);
                var history = args.Int("history", 0);
                app.MapWebSocket("/ws", ws => ws.UsePubSubProtocol(new PubSubProtocolOptions
                {
                    History = history > 0 ? new TopicHistoryOptions { Size = history } : null,
                }));
                await app.RunAsync();
                return 0;
            }

            case "signalr":
            {
                var app = Servers.CreateApp(port, services => services.AddSignalR(o => o.MaximumParallelInvocationsPerClient = 1));
                app.UseWebSockets();
                app.MapHub<TopicHub>("/ws");
                await app.RunAsync();
                return 0;
            }

            case "bare":
            {
                var app = Servers.CreateApp(port);
                app.UseWebSockets();
                var subscribers = new List<WebSocket>();
                app.Run(context => BareAsync(context, subscribers));
                await app.RunAsync();
                return 0;
            }

            default:
                throw new ArgumentException("--kind is sluice, signalr or bare");
        }
    }

    private static async Task BareAsync(HttpContext context, List<WebSocket> subscribers)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var publisher = context.Request.Query["role"] == "pub";
        if (!publisher)
        {
            lock (subscribers)
            {
                subscribers.Add(socket);
            }
        }

        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var result = await socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                if (publisher)
                {
                    WebSocket[] targets;
                    lock (subscribers)
                    {
                        targets = [.. subscribers];
                    }

                    var payload = buffer.AsMemory(0, result.Count);
                    var sends = new Task[targets.Length];
                    for (var i = 0; i < targets.Length; i++)
                    {
                        sends[i] = targets[i].SendAsync(payload, WebSocketMessageType.Text, true, CancellationToken.None).AsTask();
                    }

                    await Task.WhenAll(sends);
                }
            }
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            lock (subscribers)
            {
                subscribers.Remove(socket);
            }
        }
    }

    /// <summary>A hub that does what the pubsub protocol does: join a group, send to the others in it.</summary>
    internal sealed class TopicHub : Hub
    {
        public Task Subscribe(string topic) => Groups.AddToGroupAsync(Context.ConnectionId, topic);

        public Task Publish(string topic, System.Text.Json.JsonElement data) => Clients.OthersInGroup(topic).SendAsync("message", topic, data);
    }
}
