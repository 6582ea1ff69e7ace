using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;
using Sluice.Tests.Proxy;

namespace Sluice.Tests.Pipeline;

/// <summary>
/// A received message is borrowed: its payload and the object itself serve the connection's next message once its
/// pipeline has finished (so a round trip allocates nothing); <see cref="WebSocketMessage.Detach"/> keeps one.
/// </summary>
public class MessageOwnershipTests
{
    private sealed record Seen(WebSocketMessage Message, WebSocketMessage Detached, string TextThen, bool Borrowed);

    [Fact]
    public async Task Host_ReceivedMessagesShareOneObject_DetachedCopiesKeepTheirContent()
    {
        var seen = new ConcurrentQueue<Seen>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws =>
        {
            ws.Use(ctx =>
            {
                seen.Enqueue(new Seen(ctx.Message, ctx.Message.Detach(), ctx.Message.Text, ctx.Message.IsBorrowed));
                return true;
            }).InboundOnly();
            // The handler answers with the received message itself: it is sent before its pipeline ends.
            ws.OnMessage((message, _) => message);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));

        foreach (var text in new[] { "one", "two", "three, the longest" })
        {
            await client.SendTextAsync(text);
            Assert.Equal(text, await client.ReceiveTextAsync());
        }

        var all = seen.ToArray();
        Assert.Equal(["one", "two", "three, the longest"], all.Select(s => s.TextThen));
        Assert.All(all, s => Assert.True(s.Borrowed));
        Assert.All(all, s => Assert.Same(all[0].Message, s.Message));
        Assert.Equal(["one", "two", "three, the longest"], all.Select(s => s.Detached.Text));
        Assert.All(all, s => Assert.False(s.Detached.IsBorrowed));
    }

    [Fact]
    public async Task Proxy_EachDirectionRebindsItsOwnObject_AndEveryMessageArrivesIntact()
    {
        var inbound = new ConcurrentQueue<WebSocketMessage>();
        var outbound = new ConcurrentQueue<WebSocketMessage>();
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p/{**rest}", $"ws://{backend.Authority}/echo/x", p =>
            p.Use(new Recorder(inbound, outbound))));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/any"));

        for (var i = 0; i < 50; i++)
        {
            var text = new string((char)('a' + (i % 26)), i + 1);
            await client.SendTextAsync(text);
            Assert.Equal(text, await client.ReceiveTextAsync());
        }

        Assert.Equal(50, inbound.Count);
        Assert.Equal(50, outbound.Count);
        Assert.Single(inbound.Distinct(ReferenceEqualityComparer.Instance));
        Assert.Single(outbound.Distinct(ReferenceEqualityComparer.Instance));
        Assert.NotSame(inbound.First(), outbound.First());
    }

    [Fact]
    public async Task Proxy_AppSendsBetweenBackendMessages_LeaveEveryMessageIntact()
    {
        // The outbound context, and the object it rebinds to each backend message, is shared with the app's sends
        // under the outbound gate: an app send for every client message interleaves with the backend's echoes.
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p/{**rest}", $"ws://{backend.Authority}/echo/x", p =>
            p.Use(async (context, next) =>
            {
                var text = context.Message.Text;
                await next(context);
                await context.Connection.SendAsync(WebSocketMessage.FromText("side " + text));
            }).InboundOnly()));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/any"));

        const int Count = 300;
        var sent = Enumerable.Range(0, Count).Select(i => $"m{i} " + new string('x', i % 40)).ToList();
        foreach (var text in sent)
        {
            await client.SendTextAsync(text);
        }

        var echoes = new List<string>();
        var sides = new List<string>();
        for (var i = 0; i < 2 * Count; i++)
        {
            var text = await client.ReceiveTextAsync();
            (text.StartsWith("side ", StringComparison.Ordinal) ? sides : echoes).Add(text);
        }

        Assert.Equal(sent, echoes);
        Assert.Equal(sent.Select(t => "side " + t), sides);
    }

    private sealed class Recorder(ConcurrentQueue<WebSocketMessage> inbound, ConcurrentQueue<WebSocketMessage> outbound) : IMessageInterceptor
    {
        public ValueTask InboundAsync(MessageContext context, MessageDelegate next)
        {
            inbound.Enqueue(context.Message);
            return next(context);
        }

        public ValueTask OutboundAsync(MessageContext context, MessageDelegate next)
        {
            outbound.Enqueue(context.Message);
            return next(context);
        }
    }
}
