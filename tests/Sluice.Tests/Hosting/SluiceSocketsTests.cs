using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Tests.Infrastructure;
using Sluice.Transport;

namespace Sluice.Tests.Hosting;

/// <summary>Every handoff test again, on Sluice's socket transport.</summary>
public sealed class UpgradeHandoffOnSluiceSocketsTests : UpgradeHandoffTests
{
    protected override bool SluiceSockets => true;
}

/// <summary>
/// <see cref="SluiceWebHostBuilderExtensions.UseSluiceSockets"/>: Kestrel's HTTP runs on it as on its own transport, and
/// a handed-off WebSocket reads its socket itself, with the transport's pipe and loop released.
/// </summary>
public class SluiceSocketsTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static Task<TestServer> StartAsync(Action<WebApplication> map, ConcurrentQueue<ConnectionContext>? accepted = null, int? maxReadBufferSize = null) =>
        TestServer.StartAsync(map, configureBuilder: builder =>
        {
            builder.WebHost.UseSluiceSockets();
            if (maxReadBufferSize is { } max)
            {
                builder.Services.Configure<SocketTransportOptions>(o => o.MaxReadBufferSize = max);
            }

            builder.WebHost.ConfigureKestrel(o => o.ConfigureEndpointDefaults(listen =>
            {
                listen.Use(next => context =>
                {
                    accepted?.Enqueue(context);
                    return next(context);
                });
                listen.UseWebSocketHandoff();
            }));
        });

    [Fact]
    public async Task AnOpenWebSocket_ReadsItsSocketItself_AndTheTransportsPipeIsReleased()
    {
        var accepted = new ConcurrentQueue<ConnectionContext>();
        await using var server = await StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m.Text)), accepted);
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));

        await client.SendTextAsync("a");
        Assert.Equal("a", await client.ReceiveTextAsync());
        var connection = Assert.IsType<SocketTransportConnection>(Assert.Single(accepted));
        Assert.True(connection.InputReleased);

        // Read from the socket directly from here on, in both directions, large messages too.
        var text = new string('x', 300_000);
        await client.SendTextAsync(text);
        Assert.Equal(text, await client.ReceiveTextAsync());
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    [Fact]
    public async Task FramesSentWithTheRequest_BeforeThe101_AreReadFirst()
    {
        // The transport's loop may have read them into its pipe before it stopped: they come before the socket's bytes.
        await using var server = await StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => "echo:" + m.Text)));
        byte[] early = [.. RawWebSocket.Frame(0x1, "early"u8), .. RawWebSocket.Frame(0x1, "second"u8)];
        using var client = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"), sentWithHead: early);
        Assert.Equal(101, client.StatusCode);

        Assert.Equal("echo:early", (await client.ReadFrameAsync(Wait))!.Text);
        Assert.Equal("echo:second", (await client.ReadFrameAsync(Wait))!.Text);
        await client.SendTextAsync("later");
        Assert.Equal("echo:later", (await client.ReadFrameAsync(Wait))!.Text);
        await client.SendCloseAsync(1000);
        Assert.Equal((ushort?)1000, (await client.ReadCloseAsync(Wait)).Code);
    }

    [Fact]
    public async Task FramesThatFillTheTransportsPipeBeforeThe101_AreAllReadInOrder()
    {
        // With a 4 KiB pipe the loop is held by a full pipe when the switch stops it: what it holds comes first, then
        // what is still in the socket.
        await using var server = await StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m.Text)), maxReadBufferSize: 4096);
        var frames = Enumerable.Range(0, 64).Select(i => $"{i:D3}:{new string('x', 1000)}").ToList();
        using var client = await RawWebSocket.ConnectAsync(
            server.WebSocketUri("/echo"), sentWithHead: [.. frames.SelectMany(f => RawWebSocket.Frame(0x1, Encoding.UTF8.GetBytes(f)))]);
        Assert.Equal(101, client.StatusCode);

        foreach (var frame in frames)
        {
            Assert.Equal(frame, (await client.ReadFrameAsync(Wait))!.Text);
        }

        await client.SendCloseAsync(1000);
        Assert.Equal((ushort?)1000, (await client.ReadCloseAsync(Wait)).Code);
    }

    [Fact]
    public async Task AnAddressInUse_FailsTheStart_WithKestrelsError()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;

        var error = await Assert.ThrowsAsync<IOException>(() => TestServer.StartAsync(_ => { }, configureBuilder: builder =>
        {
            builder.WebHost.UseSluiceSockets();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        }));
        Assert.Contains("address already in use", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task AUnixSocketEndpoint_StaysOnKestrelsTransport()
    {
        var path = Path.Combine(Path.GetTempPath(), $"sluice-{Guid.NewGuid():N}.sock");
        var accepted = new ConcurrentQueue<ConnectionContext>();
        try
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseSluiceSockets();
            builder.WebHost.ConfigureKestrel(o => o.ListenUnixSocket(path, listen => listen.Use(next => context =>
            {
                accepted.Enqueue(context);
                return next(context);
            })));
            await using var app = builder.Build();
            app.MapGet("/hello", () => "hello");
            await app.StartAsync();
            using var http = new HttpClient(new SocketsHttpHandler
            {
                ConnectCallback = async (_, cancellationToken) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                },
            });

            Assert.Equal("hello", await http.GetStringAsync("http://unix/hello"));
            Assert.IsNotType<SocketTransportConnection>(Assert.Single(accepted));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Http_KeepAliveRequests_AndUploadsLargerThanTheReadBuffer_ArriveWhole()
    {
        // 3 MiB is more than the transport's pipe holds (1 MiB): its loop waits for Kestrel to read.
        await using var server = await StartAsync(app =>
        {
            app.MapPost("/sum", async (HttpRequest request) =>
            {
                long sum = 0;
                var buffer = new byte[8192];
                int read;
                while ((read = await request.Body.ReadAsync(buffer)) > 0)
                {
                    for (var i = 0; i < read; i++)
                    {
                        sum += buffer[i];
                    }
                }

                return sum.ToString(System.Globalization.CultureInfo.InvariantCulture);
            });
            app.MapGet("/hello", () => "hello");
        });
        using var http = server.CreateHttpClient();
        var body = new byte[3 * 1024 * 1024];
        Random.Shared.NextBytes(body);
        var expected = body.Sum(b => (long)b).ToString(System.Globalization.CultureInfo.InvariantCulture);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("hello", await http.GetStringAsync("/hello"));
            using var response = await http.PostAsync("/sum", new ByteArrayContent(body));
            Assert.Equal(expected, await response.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task AClientThatGoesAway_AbortsItsRequest()
    {
        // Kestrel learns of it from the transport's ConnectionClosed while the request does not read.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(app => app.MapGet("/hang", async (HttpContext context) =>
        {
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                aborted.SetResult();
            }
        }));

        using (var tcp = new TcpClient())
        {
            await tcp.ConnectAsync(server.BaseAddress.Host, server.BaseAddress.Port);
            await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes($"GET /hang HTTP/1.1\r\nHost: {server.BaseAddress.Authority}\r\n\r\n"));
            await started.Task.WaitAsync(Wait);
        }

        await aborted.Task.WaitAsync(Wait);
    }
}
