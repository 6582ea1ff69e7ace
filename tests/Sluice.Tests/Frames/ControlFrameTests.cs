using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Frames;

/// <summary>
/// Control frames (ping, pong, close) in the chains of interceptors that opted in, through real sockets in host and
/// proxy mode: observed, dropped, answered, a close rewritten; and the protocol's rules whatever an interceptor does.
/// </summary>
public class ControlFrameTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private static string TextOf(WebSocketMessage message) => Encoding.UTF8.GetString(message.Payload.Span);

    /// <summary>A host-mode echo whose pipeline <paramref name="configure"/> sets up.</summary>
    private static Task<TestServer> StartHostAsync(Action<WebSocketEndpointBuilder> configure, FakeTimeProvider? time = null, Action<WebSocketEndpointOptions>? options = null) =>
        TestServer.StartAsync(
            app => app.MapWebSocket("/echo", ws =>
            {
                configure(ws);
                if (options is not null)
                {
                    ws.ConfigureOptions(options);
                }

                ws.OnMessage((m, c) => m);
            }),
            services =>
            {
                if (time is not null)
                {
                    services.AddSingleton<TimeProvider>(time);
                }
            });

    [Fact]
    public async Task Host_OnlyInterceptorsThatOptIn_SeeAPing_AndItIsAnswered()
    {
        var optedIn = new ConcurrentQueue<MessageType>();
        var dataOnly = new ConcurrentQueue<MessageType>();
        await using var server = await StartHostAsync(ws =>
        {
            ws.Use((ctx, next) => { optedIn.Enqueue(ctx.Message.Type); return next(ctx); }).WithControlFrames(ControlFrames.Ping).InboundOnly();
            ws.Use((ctx, next) => { dataOnly.Enqueue(ctx.Message.Type); return next(ctx); }).InboundOnly();
        });
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x9, Bytes("are you there"));
        var pong = await ws.ReadFrameAsync(Wait);
        Assert.Equal(0xA, pong!.Opcode);
        Assert.Equal("are you there", pong.Text);

        await ws.SendTextAsync("data");
        Assert.Equal("data", (await ws.ReadFrameAsync(Wait))!.Text);
        Assert.Equal([MessageType.Ping, MessageType.Text], optedIn);
        Assert.Equal([MessageType.Text], dataOnly);
    }

    [Fact]
    public async Task Host_ADroppedPing_IsNotAnswered_AndAReplyAnswersIt()
    {
        await using var server = await StartHostAsync(ws => ws.Use((ctx, next) =>
        {
            if (ctx.Message.Type == MessageType.Ping)
            {
                switch (TextOf(ctx.Message))
                {
                    case "drop":
                        return default;
                    case "answer":
                        ctx.Reply(WebSocketMessage.FromPong(Bytes("answered by the interceptor")));
                        return default;
                }
            }

            return next(ctx);
        }).WithControlFrames(ControlFrames.Ping));
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x9, Bytes("drop"));
        await ws.SendFrameAsync(0x9, Bytes("answer"));
        await ws.SendFrameAsync(0x9, Bytes("plain"));
        await ws.SendTextAsync("after");

        // The dropped ping left no pong: the first frame back answers the second ping.
        var first = await ws.ReadFrameAsync(Wait);
        Assert.Equal((0xA, "answered by the interceptor"), (first!.Opcode, first.Text));
        var second = await ws.ReadFrameAsync(Wait);
        Assert.Equal((0xA, "plain"), (second!.Opcode, second.Text));
        Assert.Equal("after", (await ws.ReadFrameAsync(Wait))!.Text);
    }

    [Fact]
    public async Task Host_ARewrittenClose_IsTheAnswer_WhileTheAppSeesTheCloseReceived()
    {
        var closed = new TaskCompletionSource<ConnectionCloseInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        WebSocketMessage? seen = null;
        await using var server = await StartHostAsync(ws =>
        {
            ws.Use((ctx, next) =>
            {
                seen = ctx.Message.Detach();
                ctx.Message = WebSocketMessage.FromClose((WebSocketCloseStatus)4001, "rewritten");
                return next(ctx);
            }).WithControlFrames(ControlFrames.Close);
            ws.OnClosed((c, info) => closed.TrySetResult(info));
        });
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendCloseAsync(1000, "bye");

        Assert.Equal(((ushort?)4001, "rewritten"), await ws.ReadCloseAsync(Wait));
        Assert.True(await ws.WaitForTcpCloseAsync(Wait));
        var info = await closed.Task.WaitAsync(Wait);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, info.Status);
        Assert.Equal(MessageType.Close, seen!.Type);
        Assert.Equal((WebSocketCloseStatus?)WebSocketCloseStatus.NormalClosure, seen.CloseStatus);
        Assert.Equal("bye", seen.CloseDescription);
    }

    [Theory]
    [InlineData(1005, "")]
    [InlineData(1006, "")]
    [InlineData(1015, "")]
    [InlineData(999, "")]
    [InlineData(5000, "")]
    [InlineData(4000, "long")]
    public async Task Host_AnInvalidRewrite_AnswersTheCloseAsReceived_AndIsLogged(int code, string reason)
    {
        var text = reason == "long" ? new string('é', 62) : null; // 124 bytes of UTF-8
        await using var server = await StartHostAsync(ws => ws.Use((ctx, next) =>
        {
            ctx.Message = WebSocketMessage.FromClose((WebSocketCloseStatus)code, text);
            return next(ctx);
        }).WithControlFrames(ControlFrames.Close));
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendCloseAsync(1000, "bye");

        Assert.Equal(((ushort?)1000, "bye"), await ws.ReadCloseAsync(Wait));
        await server.Logs.WaitForAsync(e => e.EventId.Id == 231);
    }

    [Fact]
    public async Task Host_AnInterceptorThatThrowsOrDrops_NeitherStopsAPongNorTheCloseHandshake()
    {
        await using var server = await StartHostAsync(
            ws => ws.Use((ctx, next) =>
            {
                if (ctx.Message.Type == MessageType.Ping)
                {
                    throw new InvalidOperationException("interceptor bug");
                }

                // A close is never dropped: not calling next leaves it to go on as it came.
                return ctx.Message.Type == MessageType.Close ? default : next(ctx);
            }).WithControlFrames(ControlFrames.All),
            options: o => o.InterceptorErrorMode = InterceptorErrorMode.CloseConnection);
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x9, Bytes("p"));
        var pong = await ws.ReadFrameAsync(Wait);
        Assert.Equal((0xA, "p"), (pong!.Opcode, pong.Text));
        await server.Logs.WaitForAsync(e => e.EventId.Id == 230);

        // The connection carries on.
        await ws.SendTextAsync("still here");
        Assert.Equal("still here", (await ws.ReadFrameAsync(Wait))!.Text);

        await ws.SendCloseAsync(4100, "going");
        Assert.Equal(((ushort?)4100, "going"), await ws.ReadCloseAsync(Wait));
        Assert.True(await ws.WaitForTcpCloseAsync(Wait));
    }

    [Fact]
    public async Task Host_KeepAlive_KeepsWorking_WhenAnInterceptorSwallowsEveryPong()
    {
        var time = new FakeTimeProvider();
        var interval = TimeSpan.FromMinutes(1);
        var pongs = 0;
        await using var server = await StartHostAsync(
            ws => ws.Use((ctx, next) =>
            {
                if (ctx.Message.Type != MessageType.Pong)
                {
                    return next(ctx);
                }

                Interlocked.Increment(ref pongs);
                return default;
            }).WithControlFrames(ControlFrames.Pong),
            time,
            o => o.KeepAliveInterval = interval);
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        await FakeClock.WaitForConnectionsAsync(server);

        // Five minutes of pings and pongs, past the two-interval timeout: the swallowed pongs still keep the connection.
        var reply = client.ReceiveTextAsync(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 10; i++)
        {
            await time.AdvanceAndAwaitPongsAsync(server, TimeSpan.FromSeconds(30), interval);
        }

        await HostModeTests.WaitUntilAsync(() => Volatile.Read(ref pongs) > 0);
        await client.SendTextAsync("still alive");
        Assert.Equal("still alive", await reply);
    }

    [Fact]
    public void Factories_CarryCodeAndReason_AndControlFramesStayOutOfSendAsync()
    {
        var close = WebSocketMessage.FromClose((WebSocketCloseStatus)4000, "é");
        Assert.Equal((MessageType.Close, (WebSocketCloseStatus?)(WebSocketCloseStatus)4000, "é", 4), (close.Type, close.CloseStatus, close.CloseDescription, close.Length));
        Assert.True(close.IsControl);
        Assert.Null(WebSocketMessage.FromClose(null).CloseStatus);
        Assert.Throws<ArgumentException>(() => WebSocketMessage.FromClose(null, "reason without a code"));
        Assert.Throws<ArgumentException>(() => WebSocketMessage.FromPing(new byte[126]));
        Assert.Null(WebSocketMessage.FromText("x").CloseStatus);
        _ = new ReloadableInterceptors(b => Assert.Throws<ArgumentOutOfRangeException>(() => b.Use((ctx, next) => next(ctx)).WithControlFrames((ControlFrames)8)));
    }

    [Fact]
    public async Task Proxy_AClientCloseRewritten_ReachesTheBackend_AndTheClientGetsItsEcho()
    {
        await using var backend = await ControlBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo", p =>
            p.Use((ctx, next) =>
            {
                // An interceptor that opted in sees data messages too.
                if (ctx.Message.Type == MessageType.Close)
                {
                    ctx.Message = WebSocketMessage.FromClose((WebSocketCloseStatus)4002, "for the backend");
                }

                return next(ctx);
            }).WithControlFrames(ControlFrames.Close).InboundOnly()));
        using var ws = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));
        await ws.SendTextAsync("hello");
        Assert.Equal("hello", (await ws.ReadFrameAsync(Wait))!.Text);

        await ws.SendCloseAsync(1000, "bye");

        Assert.Equal(((ushort?)1000, "bye"), await ws.ReadCloseAsync(Wait));
        var info = await backend.Closed.Task.WaitAsync(Wait);
        Assert.Equal(((WebSocketCloseStatus?)(WebSocketCloseStatus)4002, "for the backend"), (info.Status, info.Description));
    }

    [Fact]
    public async Task Proxy_ABackendCloseRewritten_ReachesTheClient()
    {
        await using var backend = await ControlBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/close", p =>
            p.Use((ctx, next) =>
            {
                if (ctx.Message.CloseStatus == (WebSocketCloseStatus)4000)
                {
                    ctx.Message = WebSocketMessage.FromClose((WebSocketCloseStatus)4003, "rewritten for the client");
                }

                return next(ctx);
            }).WithControlFrames(ControlFrames.Close).OutboundOnly()));
        using var ws = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));

        await ws.SendTextAsync("close please");

        Assert.Equal(((ushort?)4003, "rewritten for the client"), await ws.ReadCloseAsync(Wait));
        await ws.SendCloseAsync(4003, "rewritten for the client");
        Assert.True(await ws.WaitForTcpCloseAsync(Wait));
    }

    [Fact]
    public async Task Proxy_AnInvalidRewrite_RelaysTheOriginalClose_AndIsLogged()
    {
        await using var backend = await ControlBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo", p =>
            p.Use((ctx, next) =>
            {
                if (ctx.Message.Type == MessageType.Close)
                {
                    ctx.Message = WebSocketMessage.FromClose((WebSocketCloseStatus)1006, "abnormal");
                }

                return next(ctx);
            }).WithControlFrames(ControlFrames.Close)));
        using var ws = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));
        await ws.SendTextAsync("hello");
        Assert.Equal("hello", (await ws.ReadFrameAsync(Wait))!.Text);

        await ws.SendCloseAsync(4005, "original");

        Assert.Equal(((ushort?)4005, "original"), await ws.ReadCloseAsync(Wait));
        var info = await backend.Closed.Task.WaitAsync(Wait);
        Assert.Equal(((WebSocketCloseStatus?)(WebSocketCloseStatus)4005, "original"), (info.Status, info.Description));
        await proxy.Logs.WaitForAsync(e => e.EventId.Id == 231);
    }

    [Fact]
    public async Task Proxy_PingsFromEitherSide_AreAnsweredOnTheirLeg_UnlessDropped()
    {
        await using var backend = await ControlBackend.StartAsync();
        var seen = new ConcurrentQueue<(MessageDirection, MessageType, string)>();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo", p =>
            p.Use((ctx, next) =>
            {
                seen.Enqueue((ctx.Direction, ctx.Message.Type, TextOf(ctx.Message)));
                return TextOf(ctx.Message) == "drop" ? default : next(ctx);
            }).WithControlFrames(ControlFrames.Ping | ControlFrames.Pong)));
        using var ws = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));

        // From the client: answered by the proxy on the client's leg, unless dropped.
        await ws.SendFrameAsync(0x9, Bytes("drop"));
        await ws.SendFrameAsync(0x9, Bytes("client ping"));
        var pong = await ws.ReadFrameAsync(Wait);
        Assert.Equal((0xA, "client ping"), (pong!.Opcode, pong.Text));

        // From the backend (it pings when asked): answered on the backend's leg, unless dropped.
        await ws.SendTextAsync("ping me:drop");
        await ws.SendTextAsync("ping me:backend ping");
        Assert.Equal("ping me:drop", (await ws.ReadFrameAsync(Wait))!.Text);
        Assert.Equal("ping me:backend ping", (await ws.ReadFrameAsync(Wait))!.Text);
        await HostModeTests.WaitUntilAsync(() => backend.Pongs.Contains("backend ping"));
        Assert.DoesNotContain("drop", backend.Pongs);

        Assert.Contains((MessageDirection.Inbound, MessageType.Ping, "drop"), seen);
        Assert.Contains((MessageDirection.Outbound, MessageType.Ping, "backend ping"), seen);
    }

    /// <summary>
    /// A host-mode backend: <c>/echo</c> echoes, and on "ping me:X" sends a ping carrying X before echoing; it records
    /// the pongs it gets (an interceptor opted in to pongs) and its close. <c>/close</c> closes with 4000 on any message.
    /// </summary>
    private sealed class ControlBackend : IAsyncDisposable
    {
        private ControlBackend(TestServer server) => Server = server;

        public TestServer Server { get; }

        public string Authority => Server.BaseAddress.Authority;

        public ConcurrentQueue<string> Pongs { get; } = new();

        public TaskCompletionSource<ConnectionCloseInfo> Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static async Task<ControlBackend> StartAsync()
        {
            ControlBackend? backend = null;
            var server = await TestServer.StartAsync(app =>
            {
                app.MapWebSocket("/echo", ws =>
                {
                    ws.Use((ctx, next) =>
                    {
                        if (ctx.Message.Type == MessageType.Pong)
                        {
                            backend!.Pongs.Enqueue(TextOf(ctx.Message));
                        }

                        return next(ctx);
                    }).WithControlFrames(ControlFrames.Pong);
                    ws.OnClosed((c, info) => backend!.Closed.TrySetResult(info));
                    ws.OnMessage(async (m, c) =>
                    {
                        if (m.IsText && m.Text.StartsWith("ping me:", StringComparison.Ordinal))
                        {
                            await c.SendToClientAsync(WebSocketMessage.FromPing(Bytes(m.Text["ping me:".Length..])));
                        }

                        return (object?)m.Detach();
                    });
                });
                app.MapWebSocket("/close", ws => ws.OnMessage((m, c) => { _ = c.CloseAsync((WebSocketCloseStatus)4000, "backend says bye"); }));
            });
            backend = new ControlBackend(server);
            return backend;
        }

        public ValueTask DisposeAsync() => Server.DisposeAsync();
    }
}
