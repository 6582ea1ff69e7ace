using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net.WebSockets;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// Large binary messages streamed fragment by fragment (<see cref="WebSocketStreamingOptions"/>), through real sockets:
/// relayed as they arrive in both directions, intact, seen only by interceptors that handle fragments, limited by
/// <see cref="WebSocketStreamingOptions.MaxBytes"/>, and ended cleanly when a peer vanishes mid-message.
/// </summary>
public class StreamingTests
{
    private const int Above = 64 * 1024;

    [Fact]
    public async Task LargeBinaryMessage_IsRelayedToTheBackendAsItArrives_AndArrivesIntact()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, _ => { });
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        var message = RandomBytes(3 * 1024 * 1024);
        var part = 512 * 1024;

        // The first 2.5 MiB go as fragments of a message that has not ended: a proxy that held messages whole would
        // give the backend nothing yet.
        for (var offset = 0; offset < message.Length - part; offset += part)
        {
            await client.SendAsync(message.AsMemory(offset, part), WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);
        }

        await HostModeTests.WaitUntilAsync(() => Volatile.Read(ref backend.BytesOfCurrentMessage) >= 2 * 1024 * 1024, 20_000);
        await client.SendAsync(message.AsMemory(message.Length - part), WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);

        Assert.Equal($"{message.Length}:{Hash(message)}", await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));

        // The connection goes on with whole messages afterwards.
        await client.SendBinaryAsync([1, 2, 3]);
        Assert.Equal($"3:{Hash([1, 2, 3])}", await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task OnlyInterceptorsThatHandleFragments_SeeAStreamedMessage_AndEverySkipIsCounted()
    {
        var aware = new ConcurrentQueue<(bool IsFragment, bool IsFinal, long Offset, int Length)>();
        var unaware = new ConcurrentQueue<int>();
        using var skips = new SkipRecorder();
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, p =>
        {
            p.Use(ctx =>
            {
                aware.Enqueue((ctx.Message.IsFragment, ctx.Message.IsFinal, ctx.Message.FragmentOffset, ctx.Message.Length));
                return true;
            }).InboundOnly().HandlesFragments();
            p.Use(ctx =>
            {
                unaware.Enqueue(ctx.Message.Length);
                return true;
            }).InboundOnly().WithName("whole-only");
        });
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        var small = RandomBytes(1000);
        await client.SendBinaryAsync(small);
        Assert.Equal($"{small.Length}:{Hash(small)}", await client.ReceiveTextAsync());
        var large = RandomBytes(1024 * 1024);
        await client.SendBinaryAsync(large);
        Assert.Equal($"{large.Length}:{Hash(large)}", await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));

        // The unaware interceptor saw the small message only; the aware one saw it whole, then the large one in pieces.
        Assert.Equal([small.Length], unaware);
        var seen = aware.ToArray();
        Assert.Equal((false, true, 0L, small.Length), seen[0]);
        var fragments = seen[1..];
        Assert.True(fragments.Length > 1, $"{fragments.Length} fragment(s)");
        Assert.All(fragments, f => Assert.True(f.IsFragment));
        Assert.Equal(fragments.Length - 1, Array.FindIndex(fragments, f => f.IsFinal));
        long expected = 0;
        foreach (var fragment in fragments)
        {
            Assert.Equal(expected, fragment.Offset);
            expected += fragment.Length;
        }

        Assert.Equal(large.Length, expected);
        await HostModeTests.WaitUntilAsync(() => skips.Count("whole-only") == 1);
        Assert.Equal(1, skips.Count("whole-only"));
    }

    [Fact]
    public async Task MessageFromTheBackend_IsStreamedToTheClient_AndHoldsTheOutboundGate_SoAnAppSendFollowsIt()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, _ => { });
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await HostModeTests.WaitUntilAsync(() => registry.Count == 1 && backend.Sockets.Count == 1);
        var connection = Assert.Single(registry.List());
        var toClient = Assert.Single(backend.Sockets);

        var message = RandomBytes(1024 * 1024);
        await toClient.SendAsync(message.AsMemory(0, 512 * 1024), WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);

        // The first half reaches the client before the backend has ended the message.
        var buffer = new byte[message.Length + 1];
        var received = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (received < 512 * 1024)
        {
            var result = await client.ReceiveAsync(buffer.AsMemory(received), timeout.Token);
            Assert.Equal(WebSocketMessageType.Binary, result.MessageType);
            Assert.False(result.EndOfMessage);
            received += result.Count;
        }

        // An app send now must wait for the end of the streamed message: nothing interleaves with its fragments.
        var appSend = connection.SendAsync("from the app").AsTask();
        await Task.Delay(300);
        await toClient.SendAsync(message.AsMemory(512 * 1024), WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);

        received = await ReceiveRestOfBinaryAsync(client, buffer, received, timeout.Token);

        Assert.Equal(Hash(message), Hash(buffer.AsSpan(0, received)));
        Assert.Equal("from the app", await client.ReceiveTextAsync());
        await appSend.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task PongsFromTheBackend_BetweenTheFragmentsOfAStreamedMessage_ReachAnOptedInInterceptor_WithoutStallingTheMessage()
    {
        // The backend's keep-alive sends a pong every 20 ms, so pongs arrive between the fragments of the message it
        // streams. An interceptor opted in to pongs gives the connection a control chain, which runs under the outbound
        // gate; the backend pump already holds that gate for the streamed message and must not wait for itself.
        var accepted = new TaskCompletionSource<WebSocket>(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestServer.StartAsync(app =>
        {
            app.UseWebSockets();
            app.Run(async context =>
            {
                using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext { KeepAliveInterval = TimeSpan.FromMilliseconds(20) });
                accepted.TrySetResult(socket);
                await finished.Task;
            });
        });
        var pongs = 0;
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.BaseAddress.Authority}/sink", p =>
        {
            p.ConfigureOptions(o => o.Streaming = new WebSocketStreamingOptions { AboveBytes = Above, MaxBytes = 64 * 1024 * 1024 });
            p.Use(context =>
            {
                if (context.Message.Type == MessageType.Pong)
                {
                    Interlocked.Increment(ref pongs);
                }

                return true;
            }).WithControlFrames(ControlFrames.Pong);
        }));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        var toClient = await accepted.Task.WaitAsync(TimeSpan.FromSeconds(20));
        try
        {
            var message = RandomBytes(1024 * 1024);
            const int part = 128 * 1024;
            var sending = Task.Run(async () =>
            {
                for (var offset = 0; offset < message.Length; offset += part)
                {
                    await toClient.SendAsync(message.AsMemory(offset, part), WebSocketMessageType.Binary, endOfMessage: offset + part == message.Length, CancellationToken.None);
                    await Task.Delay(60);
                }
            });

            var buffer = new byte[message.Length + 1];
            var received = 0;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            received = await ReceiveRestOfBinaryAsync(client, buffer, received, timeout.Token);

            await sending.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(Hash(message), Hash(buffer.AsSpan(0, received)));
            Assert.True(Volatile.Read(ref pongs) > 0, "no pong reached the interceptor");
        }
        finally
        {
            finished.TrySetResult();
        }
    }

    [Fact]
    public async Task MessageFromTheBackend_IsStreamedToACompressedClientLeg_Intact_WithAnAppSendAfterIt()
    {
        // The client's leg negotiated permessage-deflate (System.Net.WebSockets runs it): it sends the fragments it is
        // given as one compressed fragmented message, and holds back the app's message until the last one.
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/sink", p => p.ConfigureOptions(o =>
        {
            o.EnableCompression = true;
            o.Streaming = new WebSocketStreamingOptions { AboveBytes = Above, MaxBytes = 64 * 1024 * 1024 };
        })));
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o => o.DangerousDeflateOptions = new WebSocketDeflateOptions());
        await HostModeTests.WaitUntilAsync(() => registry.Count == 1 && backend.Sockets.Count == 1);
        var toClient = Assert.Single(backend.Sockets);

        var message = RandomBytes(1024 * 1024);
        await toClient.SendAsync(message.AsMemory(0, 512 * 1024), WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);

        // Once the message has begun to arrive, an app send waits for its end.
        var buffer = new byte[message.Length + 1];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var first = await client.ReceiveAsync(buffer, timeout.Token);
        Assert.Equal(WebSocketMessageType.Binary, first.MessageType);
        Assert.False(first.EndOfMessage);
        var received = first.Count;
        var appSend = Assert.Single(registry.List()).SendAsync("from the app").AsTask();
        await toClient.SendAsync(message.AsMemory(512 * 1024), WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);
        received = await ReceiveRestOfBinaryAsync(client, buffer, received, timeout.Token);

        Assert.Equal(Hash(message), Hash(buffer.AsSpan(0, received)));
        Assert.Equal("from the app", await client.ReceiveTextAsync());
        await appSend.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task StreamedMessage_LongerThanMaxBytes_ClosesBothLegsWith1009()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, _ => { }, maxBytes: 256 * 1024);
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        var part = RandomBytes(100 * 1024);
        var close = Task.Run(() => client.ReceiveCloseAsync(TimeSpan.FromSeconds(20)));
        try
        {
            for (var i = 0; i < 4; i++)
            {
                await client.SendAsync(part, WebSocketMessageType.Binary, endOfMessage: i == 3, CancellationToken.None);
            }
        }
        catch (WebSocketException)
        {
            // The proxy may already have closed.
        }

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, (await close).Status);
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty, 15_000);
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, Assert.Single(backend.Closes));
    }

    [Fact]
    public async Task ClientThatVanishesMidMessage_ClosesTheBackendWith1001_AndTheConnectionEnds()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, _ => { });
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using (var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p")))
        {
            await raw.SendFrameAsync(0x2, RandomBytes(200 * 1024), fin: false);
            await HostModeTests.WaitUntilAsync(() => Volatile.Read(ref backend.BytesOfCurrentMessage) >= 200 * 1024, 15_000);
        }

        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty, 15_000);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, Assert.Single(backend.Closes));
        await HostModeTests.WaitUntilAsync(() => registry.Count == 0, 15_000);
    }

    [Fact]
    public async Task BackendThatVanishesMidMessage_ClosesTheClientWith1014()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, _ => { });
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await HostModeTests.WaitUntilAsync(() => backend.Sockets.Count == 1);
        var toClient = Assert.Single(backend.Sockets);
        await toClient.SendAsync(RandomBytes(200 * 1024), WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);
        backend.AbortAll();

        var buffer = new byte[256 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        WebSocketReceiveResult result;
        do
        {
            result = await client.ReceiveAsync(buffer, timeout.Token);
        }
        while (result.MessageType != WebSocketMessageType.Close);

        Assert.Equal((WebSocketCloseStatus)1014, client.CloseStatus);
        await HostModeTests.WaitUntilAsync(() => registry.Count == 0, 15_000);
    }

    [Fact]
    public async Task FragmentDroppedAtTheStart_DropsTheWholeMessage_ButOneDroppedMidWay_ClosesWith1008()
    {
        await using var backend = await CountingBackend.StartAsync();
        await using var proxy = await StartProxyAsync(backend, p => p.Use(ctx =>
                !(ctx.Message.IsFragment && ctx.Message.Payload.Span[0] == 0xFF && (ctx.Message.FragmentOffset == 0 || ctx.Message.IsFinal)))
            .HandlesFragments());
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        // Dropped at its first fragment: nothing of it reaches the backend; the next message does.
        var dropped = RandomBytes(300 * 1024);
        dropped[0] = 0xFF;
        await client.SendBinaryAsync(dropped);
        var kept = RandomBytes(300 * 1024);
        kept.AsSpan().Replace((byte)0xFF, (byte)0);
        await client.SendBinaryAsync(kept);
        Assert.Equal($"{kept.Length}:{Hash(kept)}", await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));

        // Dropped at its last fragment, after the rest went on: the message cannot be cut short.
        await client.SendAsync(kept.AsMemory(0, 200 * 1024), WebSocketMessageType.Binary, endOfMessage: false, CancellationToken.None);
        await HostModeTests.WaitUntilAsync(() => Volatile.Read(ref backend.BytesOfCurrentMessage) >= 200 * 1024, 15_000);
        await client.SendAsync(new byte[] { 0xFF, 1, 2 }, WebSocketMessageType.Binary, endOfMessage: true, CancellationToken.None);
        var (status, _) = await client.ReceiveCloseAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
    }

    [Fact]
    public async Task HostMode_TheHandlerReceivesTheFragments_WithIsFinalOnTheLast()
    {
        var fragments = 0;
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/h", ws =>
        {
            ws.ConfigureOptions(o => o.Streaming = new WebSocketStreamingOptions { AboveBytes = Above, MaxBytes = 64 * 1024 * 1024 });
            IncrementalHash? hash = null;
            long length = 0;
            ws.OnMessage((message, _) =>
            {
                if (!message.IsFragment)
                {
                    return $"whole {message.Length}";
                }

                Interlocked.Increment(ref fragments);
                hash ??= IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                hash.AppendData(message.Payload.Span);
                length += message.Length;
                if (!message.IsFinal)
                {
                    return null;
                }

                var reply = $"{length}:{Convert.ToHexString(hash.GetHashAndReset())}";
                length = 0;
                return reply;
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/h"));

        var message = RandomBytes(2 * 1024 * 1024);
        for (var offset = 0; offset < message.Length; offset += 256 * 1024)
        {
            await client.SendAsync(message.AsMemory(offset, 256 * 1024), WebSocketMessageType.Binary, endOfMessage: offset + (256 * 1024) == message.Length, CancellationToken.None);
        }

        Assert.Equal($"{message.Length}:{Hash(message)}", await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));
        Assert.True(fragments > 1, $"{fragments} fragment(s)");
        await client.SendBinaryAsync(new byte[10]);
        Assert.Equal("whole 10", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task HostMode_AFragmentDroppedAfterTheHandlerHadSomeOfItsMessage_ClosesWith1008()
    {
        // The handler would otherwise wait for an IsFinal that never comes.
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/h", ws =>
        {
            ws.ConfigureOptions(o => o.Streaming = new WebSocketStreamingOptions { AboveBytes = Above, MaxBytes = 64 * 1024 * 1024 });
            ws.Use(ctx => !(ctx.Message.IsFinal && ctx.Message.IsFragment)).HandlesFragments();
            ws.OnMessage((message, _) => { });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/h"));

        await client.SendBinaryAsync(RandomBytes(300 * 1024));
        var (status, _) = await client.ReceiveCloseAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
    }

    private static Task<TestServer> StartProxyAsync(CountingBackend backend, Action<WebSocketProxyBuilder> configure, long maxBytes = 64 * 1024 * 1024) =>
        TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/sink", p =>
        {
            p.ConfigureOptions(o => o.Streaming = new WebSocketStreamingOptions { AboveBytes = Above, MaxBytes = maxBytes });
            configure(p);
        }));

    /// <summary>Reads the rest of a binary message into <paramref name="buffer"/> after <paramref name="received"/> bytes; returns its whole length.</summary>
    private static async Task<int> ReceiveRestOfBinaryAsync(WebSocket client, byte[] buffer, int received, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await client.ReceiveAsync(buffer.AsMemory(received), cancellationToken);
            Assert.Equal(WebSocketMessageType.Binary, result.MessageType);
            received += result.Count;
            if (result.EndOfMessage)
            {
                return received;
            }
        }
    }

    private static byte[] RandomBytes(int length)
    {
        var bytes = new byte[length];
        Random.Shared.NextBytes(bytes);
        return bytes;
    }

    private static string Hash(ReadOnlySpan<byte> bytes) => Convert.ToHexString(SHA256.HashData(bytes));

    /// <summary>
    /// A backend on System.Net.WebSockets (not Sluice) that hashes each message as it arrives, without holding it, and
    /// answers "length:sha256"; it records its sockets (to send from them) and the close codes it received.
    /// </summary>
    private sealed class CountingBackend : IAsyncDisposable
    {
        public long BytesOfCurrentMessage;

        private CountingBackend(TestServer server) => Server = server;

        public TestServer Server { get; }

        public string Authority => Server.BaseAddress.Authority;

        public ConcurrentQueue<WebSocket> Sockets { get; } = new();

        public ConcurrentQueue<WebSocketCloseStatus?> Closes { get; } = new();

        public static async Task<CountingBackend> StartAsync()
        {
            CountingBackend? backend = null;
            var server = await TestServer.StartAsync(app =>
            {
                app.UseWebSockets();
                app.Run(async context =>
                {
                    if (!context.WebSockets.IsWebSocketRequest)
                    {
                        context.Response.StatusCode = StatusCodes.Status400BadRequest;
                        return;
                    }

                    using var socket = await context.WebSockets.AcceptWebSocketAsync();
                    backend!.Sockets.Enqueue(socket);
                    await backend.RunAsync(socket);
                });
            });
            backend = new CountingBackend(server);
            return backend;
        }

        public void AbortAll()
        {
            foreach (var socket in Sockets)
            {
                socket.Abort();
            }
        }

        public ValueTask DisposeAsync() => Server.DisposeAsync();

        private async Task RunAsync(WebSocket socket)
        {
            var buffer = new byte[64 * 1024];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            try
            {
                while (true)
                {
                    var result = await socket.ReceiveAsync(buffer, CancellationToken.None);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        Closes.Enqueue(socket.CloseStatus);
                        await socket.CloseOutputAsync(socket.CloseStatus ?? WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                        return;
                    }

                    hash.AppendData(buffer, 0, result.Count);
                    Interlocked.Add(ref BytesOfCurrentMessage, result.Count);
                    if (result.EndOfMessage)
                    {
                        var reply = $"{Interlocked.Exchange(ref BytesOfCurrentMessage, 0)}:{Convert.ToHexString(hash.GetHashAndReset())}";
                        await socket.SendAsync(System.Text.Encoding.UTF8.GetBytes(reply), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
                    }
                }
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
            {
                // Aborted by the test, or the proxy went away.
            }
        }
    }

    /// <summary>Listens to <c>sluice.interceptor.skipped</c> and sums it by the interceptor's name.</summary>
    private sealed class SkipRecorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<string, long> _counts = new();

        public SkipRecorder()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "Sluice" && instrument.Name == "sluice.interceptor.skipped")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "policy" && tag.Value is string name)
                    {
                        _counts.AddOrUpdate(name, value, (_, old) => old + value);
                    }
                }
            });
            _listener.Start();
        }

        public long Count(string name) => _counts.TryGetValue(name, out var count) ? count : 0;

        public void Dispose() => _listener.Dispose();
    }
}
