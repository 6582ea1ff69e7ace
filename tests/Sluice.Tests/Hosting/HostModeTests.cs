using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Hosting;

/// <summary>Host mode: handler results, converters, reply correlation, lifecycle hooks and sending.</summary>
public class HostModeTests
{
    private sealed record Point(int X, int Y);

    private sealed record Temperature(double Celsius);

    private sealed class TemperatureConverter : IWebSocketResultConverter
    {
        public bool TryConvert(object result, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out WebSocketMessage? message)
        {
            message = result is Temperature t ? WebSocketMessage.FromText($"{t.Celsius} °C") : null;
            return message is not null;
        }
    }

    [Fact]
    public async Task HandlerResults_AreConvertedToMessages()
    {
        await using var server = await TestServer.StartAsync(
            app => app.MapWebSocket("/results", ws =>
            {
                ws.AddResultConverter<Point>(p => WebSocketMessage.FromText($"({p.X},{p.Y})"));
                ws.OnMessage((m, c) => m.Text switch
                {
                    "string" => "text reply",
                    "bytes" => new byte[] { 1, 2, 3 },
                    "json" => new { kind = "json", count = 2 },
                    "point" => new Point(1, 2),
                    "temperature" => new Temperature(21.5),
                    "message" => WebSocketMessage.FromBinary(new byte[] { 9 }),
                    _ => null,
                });
            }),
            services => services.AddSluice().AddResultConverter<TemperatureConverter>());
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/results"));

        foreach (var request in new[] { "nothing", "string", "bytes", "json", "point", "temperature", "message" })
        {
            await client.SendTextAsync(request);
        }

        Assert.Equal("text reply", await client.ReceiveTextAsync());
        var bytes = await client.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, bytes.Type);
        Assert.Equal([1, 2, 3], bytes.Payload);
        Assert.Equal("""{"kind":"json","count":2}""", await client.ReceiveTextAsync());
        Assert.Equal("(1,2)", await client.ReceiveTextAsync());
        Assert.Equal("21.5 °C", await client.ReceiveTextAsync());
        Assert.Equal([9], (await client.ReceiveMessageAsync()).Payload);
    }

    [Fact]
    public async Task Reply_KnowsTheMessageItAnswers_SoOutboundCanStampHandlerTime()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/timed", ws =>
        {
            ws.Outbound((m, ctx) => ctx.Cause is { } cause
                ? WebSocketMessage.FromJson(new { reply = m.Text, to = cause.Message.Text, handlerMs = cause.Elapsed.TotalMilliseconds })
                : m);
            ws.OnMessage(async (m, c) =>
            {
                await Task.Delay(50);
                return (object?)$"re: {m.Text}";
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/timed"));

        await client.SendTextAsync("question");

        using var reply = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("re: question", reply.RootElement.GetProperty("reply").GetString());
        Assert.Equal("question", reply.RootElement.GetProperty("to").GetString());
        Assert.True(reply.RootElement.GetProperty("handlerMs").GetDouble() >= 40);
    }

    [Fact]
    public async Task LifecycleHooks_SeeConnectAndCloseWithStatusAndInitiator()
    {
        var events = new ConcurrentQueue<string>();
        var closed = new TaskCompletionSource<ConnectionCloseInfo>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/life", ws =>
        {
            ws.OnConnected(c => events.Enqueue($"connected {c.RoutePattern}"));
            ws.OnConnected(async c => await c.SendAsync("welcome"));
            ws.OnClosed((c, info) => closed.TrySetResult(info));
            ws.OnFaulted((c, e) => events.Enqueue("faulted"));
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/life"));

        Assert.Equal("welcome", await client.ReceiveTextAsync());
        await client.CloseAsync((WebSocketCloseStatus)4321, "leaving", CancellationToken.None);

        var info = await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new ConnectionCloseInfo((WebSocketCloseStatus)4321, "leaving", ConnectionCloseInitiator.Client), info);
        Assert.Equal(["connected /life"], events.ToArray());
        Assert.Equal((WebSocketCloseStatus)4321, client.CloseStatus);
    }

    [Fact]
    public async Task ClosedToken_FiresAtTheEnd_WhetherTakenBeforeOrAfter_AndCloseAsyncCompletesAfterwardsToo()
    {
        var connected = new TaskCompletionSource<(WebSocketConnection Connection, CancellationToken Early)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var hookSaw = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/closed", ws =>
        {
            ws.OnConnected(c => connected.TrySetResult((c, c.Closed)));
            ws.OnClosed(async (c, info) =>
            {
                hookSaw.TrySetResult(c.Closed.IsCancellationRequested);
                await Task.Yield();
                ended.TrySetResult();
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/closed"));
        var (connection, early) = await connected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(early.IsCancellationRequested);

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await ended.Task.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(early.IsCancellationRequested);
        Assert.True(await hookSaw.Task);

        // Asked for after the end: an ended token and a completed close, not an exception.
        await WaitUntilAsync(() => connection.Closed.IsCancellationRequested);
        await connection.CloseAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task FaultedHook_RunsWhenTheClientBreaksTheProtocol_ThenClosedHook()
    {
        var order = new ConcurrentQueue<string>();
        var done = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/fault", ws =>
        {
            ws.OnFaulted((c, e) => order.Enqueue($"faulted {e.GetType().Name}"));
            ws.OnClosed((c, info) =>
            {
                order.Enqueue($"closed {(int?)info.Status}");
                done.TrySetResult();
            });
        }));
        using var raw = await RawWebSocket.ConnectAsync(server.WebSocketUri("/fault"));

        await raw.SendFrameAsync(0x1, "unmasked"u8, mask: false);

        Assert.Equal((ushort)1002, (await raw.ReadCloseAsync()).Code);
        await done.Task.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(["faulted WebSocketProtocolException", "closed 1002"], order.ToArray());
    }

    [Fact]
    public async Task SendAsync_FromManyThreadsAtOnce_DeliversEveryMessageWhole()
    {
        WebSocketConnection? connection = null;
        var connected = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/broadcast", ws =>
        {
            ws.Outbound(m => WebSocketMessage.FromText(m.Text + "."));
            ws.OnConnected(c =>
            {
                connection = c;
                connected.TrySetResult();
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/broadcast"));
        await connected.Task.WaitAsync(TimeSpan.FromSeconds(10));

        await Parallel.ForAsync(0, 8, async (thread, _) =>
        {
            for (var i = 0; i < 250; i++)
            {
                await connection!.SendAsync($"{thread}:{i}:{new string('x', i)}");
            }
        });

        var lastPerThread = new int[8];
        Array.Fill(lastPerThread, -1);
        for (var n = 0; n < 2000; n++)
        {
            var parts = (await client.ReceiveTextAsync()).Split(':');
            var thread = int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
            var index = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(new string('x', index) + ".", parts[2]);
            Assert.Equal(lastPerThread[thread] + 1, index);
            lastPerThread[thread] = index;
        }
    }

    [Fact]
    public async Task SendAsync_FromAnOutboundInterceptor_DoesNotDeadlock()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/nested", ws =>
        {
            ws.Use(async (ctx, next) =>
            {
                await next(ctx);
                if (ctx.Message.Text == "main")
                {
                    await ctx.Connection.SendAsync("extra");
                }
            }).OutboundOnly();
            ws.OnMessage((m, c) => "main");
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/nested"));

        await client.SendTextAsync("go");

        Assert.Equal("main", await client.ReceiveTextAsync());
        Assert.Equal("extra", await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(SendQueueFullMode.DropNewest)]
    [InlineData(SendQueueFullMode.Close)]
    [InlineData(SendQueueFullMode.Wait)]
    public async Task SendQueueFull_FollowsTheConfiguredMode(SendQueueFullMode mode)
    {
        WebSocketConnection? connection = null;
        var connected = new TaskCompletionSource();
        var release = new TaskCompletionSource();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/queue", ws =>
        {
            ws.ConfigureOptions(o =>
            {
                o.SendQueueCapacity = 2;
                o.SendQueueFullMode = mode;
            });

            // A slow outbound interceptor holds the queue full while the test sends more.
            ws.Outbound(async (m, ctx) =>
            {
                await release.Task;
                return m;
            });
            ws.OnConnected(c =>
            {
                connection = c;
                connected.TrySetResult();
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/queue"));
        await connected.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var first = connection!.SendAsync("1").AsTask();
        var second = connection.SendAsync("2").AsTask();
        var third = connection.SendAsync("3").AsTask();
        await Task.Delay(100);
        Assert.Equal(mode == SendQueueFullMode.Wait, !third.IsCompleted);
        release.SetResult();
        await Task.WhenAll(first, second, third).WaitAsync(TimeSpan.FromSeconds(10));

        switch (mode)
        {
            case SendQueueFullMode.DropNewest:
                Assert.Equal("1", await client.ReceiveTextAsync());
                Assert.Equal("2", await client.ReceiveTextAsync());
                await connection.SendAsync("4");
                Assert.Equal("4", await client.ReceiveTextAsync());
                break;
            case SendQueueFullMode.Close:
                var (status, reason) = await client.ReceiveCloseAsync();
                Assert.Equal((WebSocketCloseStatus.PolicyViolation, "send queue full"), (status, reason));
                break;
            case SendQueueFullMode.Wait:
                Assert.Equal(["1", "2", "3"], new[] { await client.ReceiveTextAsync(), await client.ReceiveTextAsync(), await client.ReceiveTextAsync() });
                break;
        }
    }

    [Fact]
    public async Task Registry_ListsOpenConnections_ByRouteAndSubject_AndForgetsClosedOnes()
    {
        await using var server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/a", ws => ws.UseUpgrade(ctx =>
            {
                ctx.Subject = ctx.HttpContext.Request.Query["user"];
                return UpgradeResult.Continue();
            }));
            app.MapWebSocket("/b", ws => { });
        });
        var registry = server.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using var ann = await WebSocketClient.ConnectAsync(server.WebSocketUri("/a?user=ann"));
        using var bob = await WebSocketClient.ConnectAsync(server.WebSocketUri("/a?user=bob"));
        using var other = await WebSocketClient.ConnectAsync(server.WebSocketUri("/b"));

        await WaitUntilAsync(() => registry.Count == 3);
        Assert.Equal(2, registry.List(routePattern: "/a").Count);
        var found = Assert.Single(registry.List(subject: "bob"));
        Assert.True(registry.TryGet(found.Id, out var same) && ReferenceEquals(found, same));

        await bob.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await WaitUntilAsync(() => registry.Count == 2);
        Assert.Empty(registry.List(subject: "bob"));
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                throw new TimeoutException("The condition did not become true.");
            }

            await Task.Delay(20);
        }
    }
}
