using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Protocol;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>Backpressure, leaks, keep-alive on both legs and compression per leg.</summary>
[Collection(nameof(ResourceSensitive))]
public class ProxyResourceTests
{
    [Fact]
    public async Task ClientThatStopsReading_WhileBackendFloods_KeepsGatewayMemoryBounded()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Node);
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/flood"));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        // Read a little to prove the flood flows, then stop reading entirely.
        for (var i = 0; i < 5; i++)
        {
            await client.ReceiveMessageAsync();
        }

        var samples = new List<long>();
        for (var i = 0; i < 6; i++)
        {
            await Task.Delay(500);
            samples.Add(GC.GetTotalMemory(forceFullCollection: true));
        }

        // Nothing queues without bound: once the sockets' buffers are full the pumps wait, and memory is flat.
        var growth = samples[^1] - samples[1];
        Assert.True(growth < 8 * 1024 * 1024, $"managed memory grew by {growth / 1024} KiB while the client did not read: {string.Join(", ", samples.Select(s => s / 1024))} KiB");
        var connection = Assert.Single(proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>().List());
        var sent = connection.OutboundBytes;
        await Task.Delay(1000);
        Assert.True(connection.OutboundBytes - sent < 1024 * 1024, "the proxy kept forwarding to a client that does not read");
    }

    [Fact]
    public async Task BackendThatPausesReading_WhileClientSends_GetsEveryMessageInOrder_OnceItReads()
    {
        // 24 MiB is more than loopback's socket buffers hold: the proxy's sends to the backend fill its socket, the rest
        // of a send is awaited (SocketSend), and the client's sends wait in turn.
        const int Count = 3_000;
        const int Size = 8 * 1024;
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestServer.StartAsync(app =>
        {
            app.UseWebSockets();
            app.Run(async context =>
            {
                using var socket = await context.WebSockets.AcceptWebSocketAsync();
                await reading.Task.WaitAsync(context.RequestAborted);
                var order = "in order";
                for (var i = 0; i < Count; i++)
                {
                    var buffer = (await socket.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).Payload;
                    if (buffer.Length != Size || BitConverter.ToInt32(buffer) != i || buffer[^1] != (byte)i)
                    {
                        order = $"message {i} differs";
                        break;
                    }
                }

                await socket.SendAsync(Encoding.UTF8.GetBytes(order), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
            });
        });
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", backend.WebSocketUri("/").ToString()));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));

        var sending = Task.Run(async () =>
        {
            var message = new byte[Size];
            for (var i = 0; i < Count; i++)
            {
                BitConverter.TryWriteBytes(message, i);
                message[^1] = (byte)i;
                await client.SendBinaryAsync(message);
            }
        });
        await Task.Delay(1000);
        Assert.False(sending.IsCompleted, "every message fit in the buffers: the test would not reach a partial send");

        reading.SetResult();
        await sending.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("in order", await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task EveryWayAConnectionEnds_LeavesNoLoopsConnectionsOrSockets()
    {
        await using var recording = await RecordingBackend.StartAsync();
        await using var dying = await ExternalPeer.StartServerAsync(PeerKind.Python);
        await using var proxy = await TestServer.StartAsync(app =>
        {
            app.MapWebSocketProxy("/echo", $"ws://{recording.Authority}/echo/x", p => p.Use(ctx =>
            {
                ctx.Close(WebSocketCloseStatus.PolicyViolation, "policy");
                return false;
            }).When(ctx => ctx.Message.Text == "policy-close"));
            app.MapWebSocketProxy("/backend-closes", $"ws://{recording.Authority}/close/4001");
            app.MapWebSocketProxy("/backend-dies", $"ws://{dying.Authority}/die");
            app.MapWebSocketProxy("/idle", $"ws://{recording.Authority}/echo/x", p => p.ConfigureOptions(o => o.IdleTimeout = TimeSpan.FromSeconds(1)));
            app.MapWebSocketProxy("/small", $"ws://{recording.Authority}/echo/x", p => p.ConfigureOptions(o => o.MaxMessageBytes = 10));
        });
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        await WarmUpAsync(proxy);
        await HostModeTests.WaitUntilAsync(() => registry.Count == 0 && ReceiveLoops.Running == 0);
        var baselineSockets = CountSockets();

        for (var round = 0; round < 3; round++)
        {
            // Client closes.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/echo")))
            {
                await c.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            }

            // Policy closes.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/echo")))
            {
                await c.SendTextAsync("policy-close");
                await c.ReceiveCloseAsync();
            }

            // Backend closes.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/backend-closes")))
            {
                await c.SendTextAsync("x");
                await c.ReceiveCloseAsync();
            }

            // Backend dies without a close frame.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/backend-dies")))
            {
                await c.SendTextAsync("x");
                await c.ReceiveCloseAsync();
            }

            // Idle timeout.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/idle")))
            {
                await c.ReceiveCloseAsync();
            }

            // Protocol limit.
            using (var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/small")))
            {
                await c.SendTextAsync("far more than ten bytes");
                await c.ReceiveCloseAsync();
            }

            // Client vanishes without a close frame.
            using (var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/echo")))
            {
                await raw.SendTextAsync("hello");
                await raw.ReadFrameAsync();
            }
        }

        await HostModeTests.WaitUntilAsync(() => registry.Count == 0 && ReceiveLoops.Running == 0, 15_000);
        await HostModeTests.WaitUntilAsync(() => CountSockets() <= baselineSockets + 2, 15_000);
    }

    [Fact]
    public async Task HalfOpenBackend_IsFoundByKeepAlive_AndTheClientGets1014()
    {
        using var silent = new SilentBackend();
        FakeTimeProvider time = null!;
        var interval = TimeSpan.FromMinutes(1);
        await using var proxy = await TestServer.StartAsync(
            app => app.MapWebSocketProxy("/p", $"ws://127.0.0.1:{silent.Port}/", p => p.ConfigureOptions(o =>
            {
                o.KeepAliveInterval = interval;
                // Longer than the steps below: the close timer must not cut the 1014 close short.
                o.CloseTimeout = TimeSpan.FromHours(1);
            })),
            services => time = FakeClock.Register(services));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await FakeClock.WaitForConnectionsAsync(proxy);

        // On the fake clock, step by half an interval; the client (which answers) gets time to answer each ping.
        var closing = client.ReceiveCloseAsync(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 10 && !closing.IsCompleted; i++)
        {
            await time.AdvanceAndAwaitPongsAsync(proxy, interval / 2, interval);
        }

        var (status, reason) = await closing;

        Assert.Equal(((WebSocketCloseStatus)1014, "backend connection lost"), (status, reason));
        Assert.Contains("backend", (await proxy.Logs.WaitForAsync(e => e.EventId.Id == 105)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SilentClient_IsFoundByKeepAlive_AndTheBackendGets1001()
    {
        await using var backend = await RecordingBackend.StartAsync();
        FakeTimeProvider time = null!;
        await using var proxy = await TestServer.StartAsync(
            app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo/x", p => p.ConfigureOptions(o => o.KeepAliveInterval = TimeSpan.FromMinutes(1))),
            services => time = FakeClock.Register(services));
        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));
        await FakeClock.WaitForConnectionsAsync(proxy);

        // A ping after one interval, which the raw client never answers; past two intervals it is dropped.
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0x9, (await raw.ReadFrameAsync(TimeSpan.FromSeconds(5)))!.Opcode);
        time.Advance(TimeSpan.FromMinutes(2));

        Assert.True(await raw.WaitForTcpCloseAsync(TimeSpan.FromSeconds(15)));
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal((WebSocketCloseStatus.EndpointUnavailable, "client went away"), (backend.Closes.Single().Status, backend.Closes.Single().Description));
    }

    [Theory]
    [InlineData(PeerKind.Python)]
    [InlineData(PeerKind.Node)]
    public async Task Compression_IsNegotiatedPerLeg_AndMessagesSurviveBothLegs(PeerKind backendKind)
    {
        await using var backend = await ExternalPeer.StartServerAsync(backendKind, deflate: true);
        await using var proxy = await TestServer.StartAsync(app =>
        {
            app.MapWebSocketProxy("/both", $"ws://{backend.Authority}/headers", p =>
            {
                p.ConfigureOptions(o => o.EnableCompression = true);
                p.EnableBackendCompression = true;
            });
            app.MapWebSocketProxy("/client-only", $"ws://{backend.Authority}/headers", p => p.ConfigureOptions(o => o.EnableCompression = true));
        });

        foreach (var (path, backendCompressed) in new[] { ("/both", true), ("/client-only", false) })
        {
            using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri(path), o => o.DangerousDeflateOptions = new WebSocketDeflateOptions());
            using var hello = JsonDocument.Parse(await client.ReceiveTextAsync());
            Assert.Equal(backendCompressed, hello.RootElement.GetProperty("extensions").GetArrayLength() > 0);

            var text = string.Concat(Enumerable.Repeat("compressible ✓ ", 5000));
            await client.SendTextAsync(text);
            Assert.Equal(text, await client.ReceiveTextAsync());
            var binary = new byte[100_000];
            Random.Shared.NextBytes(binary);
            await client.SendBinaryAsync(binary);
            Assert.Equal(binary, (await client.ReceiveMessageAsync()).Payload);
        }
    }

    [Fact]
    public async Task CompressedMessage_ThatInflatesPastTheLimit_ClosesWith1009()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo/x", p => p.ConfigureOptions(o =>
        {
            o.EnableCompression = true;
            o.MaxMessageBytes = 1024 * 1024;
        })));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o => o.DangerousDeflateOptions = new WebSocketDeflateOptions());

        // 16 MiB of zeros deflates to a few KiB: a zip bomb for a server that inflates without a cap.
        await client.SendAsync(new byte[16 * 1024 * 1024], WebSocketMessageType.Binary, true, CancellationToken.None);

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, (await client.ReceiveCloseAsync()).Status);
    }

    private static async Task WarmUpAsync(TestServer proxy)
    {
        using var c = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/echo"));
        await c.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
    }

    private static int CountSockets() =>
        Directory.EnumerateFiles("/proc/self/fd").Count(fd =>
        {
            try
            {
                return new FileInfo(fd).LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true;
            }
            catch (IOException)
            {
                return false;
            }
        });

    /// <summary>Completes the WebSocket handshake, then never sends or reads anything: a half-open backend.</summary>
    private sealed class SilentBackend : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<TcpClient> _clients = [];

        public SilentBackend()
        {
            _listener.Start();
            _ = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public void Dispose()
        {
            _listener.Stop();
            foreach (var client in _clients)
            {
                client.Dispose();
            }
        }

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync();
                    _clients.Add(client);
                    var stream = client.GetStream();
                    var head = new StringBuilder();
                    var one = new byte[1];
                    while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await stream.ReadAsync(one) == 1)
                    {
                        head.Append((char)one[0]);
                    }

                    var key = head.ToString().Split("\r\n").First(l => l.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase))[18..].Trim();
                    await stream.WriteAsync(Encoding.ASCII.GetBytes(
                        $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ServerHandshake.ComputeAccept(key)}\r\n\r\n"));
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidOperationException)
            {
            }
        }
    }
}

/// <summary>Tests that count process-wide resources run alone.</summary>
[CollectionDefinition(nameof(ResourceSensitive), DisableParallelization = true)]
public sealed class ResourceSensitive;
