using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Pipeline;

/// <summary>Short-circuit outcomes: drop, reply to the source, close with a code; and interceptor failures.</summary>
public class OutcomeTests
{
    [Fact]
    public async Task Reply_AnswersTheSource_AndDoesNotReachTheHandler()
    {
        var handled = 0;
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/reply", ws =>
        {
            ws.Use(async (ctx, next) =>
            {
                if (ctx.Message.Text == "ping")
                {
                    ctx.Reply(WebSocketMessage.FromText("pong"));
                    return;
                }

                await next(ctx);
            });
            ws.OnMessage((m, c) =>
            {
                Interlocked.Increment(ref handled);
                return m;
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/reply"));

        await client.SendTextAsync("ping");
        Assert.Equal("pong", await client.ReceiveTextAsync());
        await client.SendTextAsync("echo");
        Assert.Equal("echo", await client.ReceiveTextAsync());
        Assert.Equal(1, handled);
    }

    [Fact]
    public async Task ADropByATransformOrAStep_IsSeenByTheInterceptorsAroundIt_WhenNextReturns()
    {
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/drops", ws =>
        {
            ws.Use(async (ctx, next) =>
            {
                await next(ctx);
                seen.Enqueue($"{ctx.Message.Text}:{ctx.Outcome}");
            }).InboundOnly();
            ws.Inbound(m => m.Text == "transform-drop" ? null : m);
            ws.Use(ctx => ctx.Message.Text != "step-drop");
            ws.Inbound(async (m, _) =>
            {
                await Task.Yield();
                return m.Text == "async-drop" ? null : m;
            });
            ws.OnMessage((m, _) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/drops"));

        foreach (var text in new[] { "transform-drop", "step-drop", "async-drop", "kept" })
        {
            await client.SendTextAsync(text);
        }

        Assert.Equal("kept", await client.ReceiveTextAsync());
        Assert.Equal(["transform-drop:Dropped", "step-drop:Dropped", "async-drop:Dropped", "kept:Forwarded"], seen.ToArray());
    }

    [Fact]
    public async Task Close_ClosesTheConnectionWithTheCode_AndCompletesTheHandshake()
    {
        ConnectionCloseInfo? closed = null;
        var closedSignal = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/close", ws =>
        {
            ws.Use(ctx =>
            {
                ctx.Close(WebSocketCloseStatus.PolicyViolation, "forbidden word");
                return false;
            }).When(ctx => ctx.Message.Text.Contains("forbidden", StringComparison.Ordinal));
            ws.OnMessage((m, c) => m);
            ws.OnClosed((c, info) =>
            {
                closed = info;
                closedSignal.TrySetResult();
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/close"));

        await client.SendTextAsync("a forbidden word");
        var (status, reason) = await client.ReceiveCloseAsync();
        await client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);

        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
        Assert.Equal("forbidden word", reason);
        await closedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new ConnectionCloseInfo(WebSocketCloseStatus.PolicyViolation, "forbidden word", ConnectionCloseInitiator.Server), closed);
    }

    [Fact]
    public async Task ThrowingInterceptor_DropsMessage_LogsWithoutPayload_AndKeepsConnectionOpen()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/throws", ws =>
        {
            ws.Use(async (ctx, next) =>
            {
                if (ctx.Message.Text.StartsWith("boom", StringComparison.Ordinal))
                {
                    await Task.Yield();
                    throw new InvalidOperationException("interceptor exploded");
                }

                await next(ctx);
            }).WithName("exploder");
            ws.OnMessage((m, c) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/throws"));

        await client.SendTextAsync("boom secret-payload-123");
        await client.SendTextAsync("still here");

        Assert.Equal("still here", await client.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, client.State);
        var entry = await server.Logs.WaitForAsync(e => e.EventId.Id == 200);
        Assert.Contains("exploder", entry.Message, StringComparison.Ordinal);
        Assert.Contains("/throws", entry.Message, StringComparison.Ordinal);
        Assert.Contains(entry.State, kv => kv.Key == "ConnectionId" && kv.Value is string { Length: > 0 });
        Assert.DoesNotContain(server.Logs.Entries, e => e.Message.Contains("secret-payload-123", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ThrowingInterceptor_WithCloseMode_ClosesWith1011()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/throws", ws =>
        {
            ws.ConfigureOptions(o => o.InterceptorErrorMode = InterceptorErrorMode.CloseConnection);
            ws.Use(ctx => Fail());
            ws.OnMessage((m, c) => m);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/throws"));

        await client.SendTextAsync("anything");

        var (status, _) = await client.ReceiveCloseAsync();
        Assert.Equal(WebSocketCloseStatus.InternalServerError, status);
    }

    private static bool Fail() => throw new InvalidOperationException("sync failure");

    [Fact]
    public async Task ThrowingHandler_IsTreatedLikeAnInterceptorFailure()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/handler", ws =>
            ws.OnMessage((m, c) => m.Text == "bad" ? throw new FormatException("bad input") : m)));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/handler"));

        await client.SendTextAsync("bad");
        await client.SendTextAsync("good");

        Assert.Equal("good", await client.ReceiveTextAsync());
        var entry = await server.Logs.WaitForAsync(e => e.EventId.Id == 200);
        Assert.Contains("handler", entry.Message, StringComparison.Ordinal);
    }
}
