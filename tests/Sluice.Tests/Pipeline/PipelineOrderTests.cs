using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

/// <summary>Polyflux semantics: class interceptors, before/after next, inbound in order and outbound in reverse.</summary>
public class PipelineOrderTests
{
    private sealed class Recorder(string name, ConcurrentQueue<string> log) : IMessageInterceptor
    {
        public async ValueTask InboundAsync(MessageContext context, MessageDelegate next)
        {
            log.Enqueue($"{name}:in:before");
            await next(context);
            log.Enqueue($"{name}:in:after");
        }

        public async ValueTask OutboundAsync(MessageContext context, MessageDelegate next)
        {
            log.Enqueue($"{name}:out:before");
            await next(context);
            log.Enqueue($"{name}:out:after");
        }
    }

    [Fact]
    public async Task ClassInterceptors_RunInboundInOrder_OutboundInReverse_WithLogicAroundNext()
    {
        var log = new ConcurrentQueue<string>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/chain", ws =>
        {
            ws.Use(new Recorder("A", log));
            ws.Use(new Recorder("B", log));
            ws.OnMessage((m, c) =>
            {
                log.Enqueue("handler");
                return "reply";
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/chain"));

        await client.SendTextAsync("hi");
        Assert.Equal("reply", await client.ReceiveTextAsync());

        // The handler's reply runs the outbound chain (B then A) before the handler returns to the inbound chain.
        Assert.Equal(
            ["A:in:before", "B:in:before", "handler", "B:out:before", "A:out:before", "A:out:after", "B:out:after", "B:in:after", "A:in:after"],
            log.ToArray());
    }

    [Fact]
    public async Task Lambdas_SyncAndAsyncMixed_RunInOneChain()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/mixed", ws =>
        {
            ws.Use(ctx =>
            {
                ctx.Items["steps"] = "sync";
                return true;
            }).InboundOnly();
            ws.Use(async ctx =>
            {
                await Task.Yield();
                ctx.Items["steps"] += ",async";
                return true;
            }).InboundOnly();
            ws.Use(async (ctx, next) =>
            {
                await Task.Delay(1);
                ctx.Items["steps"] += ",wrap";
                await next(ctx);
            }).InboundOnly();
            ws.Inbound(m => WebSocketMessage.FromText(m.Text.ToUpperInvariant()));
            ws.Inbound(async (m, ctx) =>
            {
                await Task.Yield();
                return WebSocketMessage.FromText(m.Text + "!");
            });
            ws.OnMessage((MessageContext ctx) => new ValueTask<object?>($"{ctx.Message.Text} [{ctx.Items["steps"]}]"));
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/mixed"));

        await client.SendTextAsync("hello");

        Assert.Equal("HELLO! [sync,async,wrap]", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task Steps_ReturningFalse_StopTheMessage()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/steps", ws =>
        {
            ws.Use(ctx => ctx.Message.Text != "blocked-sync");
            ws.Use(async ctx =>
            {
                await Task.Yield();
                return ctx.Message.Text != "blocked-async";
            });
            ws.OnMessage((m, c) => m.Text);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/steps"));

        await client.SendTextAsync("blocked-sync");
        await client.SendTextAsync("blocked-async");
        await client.SendTextAsync("passes");

        Assert.Equal("passes", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task Transform_ReturningNull_DropsMessage_AndLaterInterceptorsDoNotRun()
    {
        var later = 0;
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/transform", ws =>
        {
            ws.Inbound(m => m.Text.StartsWith("internal:", StringComparison.Ordinal) ? null : m);
            ws.Use(ctx =>
            {
                Interlocked.Increment(ref later);
                return true;
            }).InboundOnly();
            ws.OnMessage((m, c) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/transform"));

        await client.SendTextAsync("internal:secret");
        await client.SendTextAsync("public");

        Assert.Equal("public", await client.ReceiveTextAsync());
        Assert.Equal(1, later);
    }

    [Fact]
    public async Task OutboundTransform_AppliesToHandlerRepliesAndAppSends()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/out", ws =>
        {
            ws.Outbound(m => WebSocketMessage.FromText($"<{m.Text}>"));
            ws.Outbound(m => m.Text.Contains("drop", StringComparison.Ordinal) ? null : m);
            ws.OnConnected(c => c.SendAsync("welcome"));
            ws.OnMessage((m, c) => m.Text);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/out"));

        Assert.Equal("<welcome>", await client.ReceiveTextAsync());
        await client.SendTextAsync("please drop");
        await client.SendTextAsync("keep");
        Assert.Equal("<keep>", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task When_LimitsAnInterceptorToMatchingMessages()
    {
        var seen = new ConcurrentQueue<string>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/when", ws =>
        {
            ws.Use(ctx =>
            {
                seen.Enqueue(ctx.Message.IsText ? ctx.Message.Text : $"binary:{ctx.Message.Length}");
                return true;
            }).When(ctx => ctx.Message.IsBinary).InboundOnly();
            ws.Use(ctx => false).When(ctx => ctx.Message.IsText && ctx.Json?["type"]?.GetValue<string>() == "debug");
            ws.OnMessage((m, c) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/when"));

        await client.SendBinaryAsync([1, 2, 3]);
        Assert.Equal([1, 2, 3], (await client.ReceiveMessageAsync()).Payload);
        await client.SendTextAsync("""{"type":"debug"}""");
        await client.SendTextAsync("""{"type":"chat"}""");
        Assert.Equal("""{"type":"chat"}""", await client.ReceiveTextAsync());

        Assert.Equal(["binary:3"], seen.ToArray());
    }

    [Fact]
    public async Task MessageContext_HasDirectionChainIdItemsAndConnectionData_PerMessage()
    {
        var observed = new ConcurrentQueue<(MessageDirection Direction, long ChainId, bool ItemsEmpty, string? Room, string? Query, string? Header)>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/rooms/{room}", ws =>
        {
            ws.Use(async (ctx, next) =>
            {
                observed.Enqueue((ctx.Direction, ctx.ChainId, !ctx.Items.ContainsKey("mark"), ctx.Connection.RouteValues["room"] as string,
                    ctx.Connection.Query["user"], ctx.Connection.RequestHeaders["X-Test"]));
                ctx.Items["mark"] = true;
                await next(ctx);
            });
            ws.OnMessage((m, c) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/rooms/blue?user=ann"), o => o.SetRequestHeader("X-Test", "yes"));

        await client.SendTextAsync("one");
        await client.ReceiveTextAsync();
        await client.SendTextAsync("two");
        await client.ReceiveTextAsync();

        var entries = observed.ToArray();
        Assert.Equal(4, entries.Length);
        Assert.Equal([MessageDirection.Inbound, MessageDirection.Outbound, MessageDirection.Inbound, MessageDirection.Outbound], entries.Select(e => e.Direction));
        Assert.All(entries, e => Assert.True(e.ItemsEmpty, "Items must start empty for each message"));
        Assert.All(entries, e => Assert.Equal(("blue", "ann", "yes"), (e.Room, e.Query, e.Header)));
        Assert.Equal(4, entries.Select(e => e.ChainId).Distinct().Count());
    }
}
