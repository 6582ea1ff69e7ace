using System.IO.Pipelines;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Sluice.Tests.Infrastructure;
using Sluice.Tests.Proxy;

namespace Sluice.Tests.Hosting;

/// <summary>
/// <see cref="SluiceConnectionBuilderExtensions.UseWebSocketHandoff{TBuilder}"/>: the upgrade request ends once the
/// connection runs on its own, and the connection goes on over the socket's pipes with everything it had.
/// </summary>
/// <remarks>On Kestrel's socket transport; <see cref="UpgradeHandoffOnSluiceSocketsTests"/> runs them all on Sluice's.</remarks>
public class UpgradeHandoffTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    /// <summary>Whether the server runs on Sluice's socket transport (<c>UseSluiceSockets</c>).</summary>
    protected virtual bool SluiceSockets => false;

    private void UseTransport(WebApplicationBuilder builder)
    {
        if (SluiceSockets)
        {
            builder.WebHost.UseSluiceSockets();
        }
    }

    /// <summary>A server whose requests report, by path, when they end.</summary>
    private Task<TestServer> StartAsync(bool handoff, RequestEndings ended, Action<WebApplication> map) =>
        TestServer.StartAsync(
            app =>
            {
                ended.Track(app);
                map(app);
            },
            configureBuilder: builder =>
            {
                UseTransport(builder);
                if (handoff)
                {
                    builder.WebHost.ConfigureKestrel(o => o.ConfigureEndpointDefaults(listen => listen.UseWebSocketHandoff()));
                }
            });

    [Fact]
    public async Task Hosted_TheRequestEnds_AndTheConnectionKeepsItsRequestData()
    {
        var ended = new RequestEndings();
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var connection = new TaskCompletionSource<WebSocketConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(handoff: true, ended, app => app.MapWebSocket("/rooms/{room}", ws =>
        {
            ws.OnConnected(c =>
            {
                c.Closed.Register(closed.SetResult);
                connection.SetResult(c);
            });
            ws.OnMessage((m, c) =>
                $"{m.Text} room={c.RouteValues["room"]} team={c.RequestHeaders["X-Team"]} user={c.Query["user"]} path={c.RequestPath}");
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/rooms/blue?user=ann"), o => o.SetRequestHeader("X-Team", "red"));

        await ended.Of("/rooms/blue").WaitAsync(Wait);
        Assert.False(closed.Task.IsCompleted);

        // Kestrel has since cleared the request (its headers and route values are reused by the next request).
        for (var i = 0; i < 3; i++)
        {
            await client.SendTextAsync($"m{i}");
            Assert.Equal($"m{i} room=blue team=red user=ann path=/rooms/blue", await client.ReceiveTextAsync());
        }

        // The copy it keeps is read-only (a write would change nothing the app or a policy saw at the upgrade) and
        // looked up without regard to case, as the request's own collection is.
        var headers = (await connection.Task.WaitAsync(Wait)).RequestHeaders;
        Assert.True(headers.IsReadOnly);
        Assert.Throws<NotSupportedException>(() => headers["X-Team"] = "blue");
        Assert.Equal("red", headers["x-TEAM"]);
        Assert.Equal(0, headers["X-None"].Count);
        Assert.Equal("websocket", headers.Upgrade.ToString());

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
        await closed.Task.WaitAsync(Wait);
    }

    [Fact]
    public async Task Compressed_TheDeflateLegRunsOverTheSocketsPipes()
    {
        var ended = new RequestEndings();
        await using var server = await StartAsync(handoff: true, ended, app => app.MapWebSocket("/z", ws =>
        {
            ws.ConfigureOptions(o => o.EnableCompression = true);
            ws.OnMessage((m, c) => m.Text);
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/z"), o => o.DangerousDeflateOptions = new WebSocketDeflateOptions());
        await ended.Of("/z").WaitAsync(Wait);

        var text = string.Concat(Enumerable.Repeat("compressible ", 10_000));
        await client.SendTextAsync(text);
        Assert.Equal(text, await client.ReceiveTextAsync());
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    [Fact]
    public async Task TheSocketCloses_BeforeTheClosedHooksEnd()
    {
        // Kestrel no longer counts a handed-off socket, so it must not outlive the connection's place.
        var ended = new RequestEndings();
        var hookMayEnd = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(handoff: true, ended, app => app.MapWebSocket("/slow-hook", ws =>
        {
            ws.OnMessage((m, c) => m.Text);
            ws.OnClosed((c, info) => new ValueTask(hookMayEnd.Task));
        }));
        using var client = await RawWebSocket.ConnectAsync(server.WebSocketUri("/slow-hook"));
        Assert.Equal(101, client.StatusCode);
        await ended.Of("/slow-hook").WaitAsync(Wait);

        await client.SendCloseAsync(1000, "bye");
        Assert.Equal((ushort?)1000, (await client.ReadCloseAsync()).Code);

        // The closed hook cannot return until the test lets it, and the server has closed TCP all the same.
        Assert.True(await client.WaitForTcpCloseAsync(Wait));
        hookMayEnd.SetResult();
    }

    [Fact]
    public async Task ASlowReader_GetsEveryByteInOrder_AndHttpResponsesOnTheSameListenerArriveWhole()
    {
        // The connection sends to the socket itself: what the socket's buffer cannot take now is sent when it can.
        const int Messages = 48;
        const int Size = 256 * 1024;
        var ended = new RequestEndings();
        var body = new byte[3 * 1024 * 1024];
        Random.Shared.NextBytes(body);
        bool? blocking = null;
        await using var server = await StartAsync(handoff: true, ended, app =>
        {
            app.Use((context, next) =>
            {
                blocking ??= context.Features.Get<IConnectionSocketFeature>()!.Socket.Blocking;
                return next(context);
            });
            app.MapGet("/big", () => Results.Bytes(body, "application/octet-stream"));
            app.MapWebSocket("/flood", ws => ws.OnMessage(async (WebSocketMessage m, WebSocketConnection c) =>
            {
                for (var i = 0; i < Messages; i++)
                {
                    var payload = new byte[Size];
                    payload.AsSpan().Fill((byte)i);
                    await c.SendAsync(WebSocketMessage.FromBinary(payload));
                }
            }));
        });

        using var http = server.CreateHttpClient();
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(body, await http.GetByteArrayAsync("/big"));
        }

        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/flood"));
        await client.SendTextAsync("go");

        // 12 MiB is far more than both sockets' buffers: the server's sends wait for this reader.
        await Task.Delay(300);
        for (var i = 0; i < Messages; i++)
        {
            var received = await client.ReceiveMessageAsync();
            Assert.Equal(Size, received.Payload.Length);
            Assert.True(received.Payload.All(b => b == (byte)i), $"message {i} holds another message's bytes");
        }

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
        Assert.Equal(body, await http.GetByteArrayAsync("/big"));

        // The middleware sits right on the socket here, so it sends itself (non-blocking sends from the writer's thread).
        Assert.False(blocking);
    }

    [Fact]
    public async Task AMiddlewareThatWrapsTheTransport_SeesTheFramesAfterThe101Too()
    {
        // Sending to the socket directly would bypass such a middleware (a byte counter here; a logger, a TLS layer).
        var counted = new CountingMiddleware();
        bool? blocking = null;
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.Use((context, next) =>
                {
                    blocking ??= context.Features.Get<IConnectionSocketFeature>()!.Socket.Blocking;
                    return next(context);
                });
                app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m.Text));
            },
            configureBuilder: builder =>
            {
                UseTransport(builder);
                builder.WebHost.ConfigureKestrel(o => o.ConfigureEndpointDefaults(listen =>
                {
                    listen.Use(counted.Wrap);
                    listen.UseWebSocketHandoff();
                }));
            });
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        var text = new string('x', 100_000);

        await client.SendTextAsync(text);
        Assert.Equal(text, await client.ReceiveTextAsync());
        Assert.True(counted.Written > 100_000, $"the wrapping middleware saw {counted.Written} bytes written");

        // The handoff leaves the socket's mode alone; Sluice's transport sends from the writer's thread itself, so its
        // sockets are non-blocking from the accept on.
        Assert.Equal(!SluiceSockets, blocking);
    }

    [Fact]
    public async Task WithoutTheMiddleware_TheRequestLastsAsLongAsTheConnection()
    {
        var ended = new RequestEndings();
        await using var server = await StartAsync(handoff: false, ended, app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m.Text)));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        await client.SendTextAsync("hi");
        Assert.Equal("hi", await client.ReceiveTextAsync());
        Assert.False(ended.Of("/echo").IsCompleted);

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await ended.Of("/echo").WaitAsync(Wait);
    }

    [Fact]
    public async Task Proxy_MessagesFlowBothWays_AndWhatTheUpgradeRegisteredIsDisposedWhenTheConnectionEnds()
    {
        var ended = new RequestEndings();
        var place = new Place();
        await using var backend = await RecordingBackend.StartAsync();
        await using var server = await StartAsync(handoff: true, ended, app => app.MapWebSocketProxy("/p/{**rest}", $"ws://{backend.Authority}/echo/x", p => p.UseUpgrade(context =>
        {
            context.RegisterForDispose(place);
            return UpgradeResult.Continue();
        })));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/p/any"));

        await ended.Of("/p/any").WaitAsync(Wait);
        var bytes = new byte[200_000];
        Random.Shared.NextBytes(bytes);
        await client.SendBinaryAsync(bytes);
        Assert.Equal(bytes, (await client.ReceiveMessageAsync()).Payload);
        await client.SendTextAsync("after");
        Assert.Equal("after", await client.ReceiveTextAsync());
        Assert.Equal(0, place.Disposed);

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
        await WaitUntilAsync(() => place.Disposed == 1);
    }

    [Fact]
    public async Task AFailedUpgrade_DisposesWhatItRegistered_Once()
    {
        var ended = new RequestEndings();
        var place = new Place();
        await using var server = await StartAsync(handoff: true, ended, app => app.MapWebSocketProxy("/p", "ws://127.0.0.1:1/nothing-listens", p => p.UseUpgrade(context =>
        {
            context.RegisterForDispose(place);
            return UpgradeResult.Continue();
        })));

        using var refused = await RawWebSocket.ConnectAsync(server.WebSocketUri("/p"));
        Assert.Equal(StatusCodes.Status502BadGateway, refused.StatusCode);
        await WaitUntilAsync(() => place.Disposed == 1);
    }

    [Fact]
    public async Task ServerShutdown_ClosesAHandedOffConnectionWith1001()
    {
        var ended = new RequestEndings();
        var server = await StartAsync(handoff: true, ended, app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => m.Text)));
        await using (server)
        {
            using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
            await ended.Of("/echo").WaitAsync(Wait);

            var stopping = server.StopAsync();
            var (status, _) = await client.ReceiveCloseAsync();
            Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, status);
            await client.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            await stopping.WaitAsync(Wait);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task OverTls_TheConnectionLeavesItsRequest_OnlyWhenTheMiddlewareRunsInsideTls(bool insideTls)
    {
        using var certificate = SelfSigned();
        var ended = new RequestEndings();
        await using var server = await TestServer.StartAsync(
            app =>
            {
                ended.Track(app);
                app.MapWebSocket("/tls", ws => ws.OnMessage((m, c) => "tls:" + m.Text));
            },
            configureBuilder: builder =>
            {
                UseTransport(builder);
                builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, 0, listen =>
                {
                    // Outside TLS the middleware would see encrypted bytes: it must leave such a connection alone.
                    if (!insideTls)
                    {
                        listen.UseWebSocketHandoff();
                    }

                    listen.UseHttps(certificate);
                    if (insideTls)
                    {
                        listen.UseWebSocketHandoff();
                    }
                }));
            });
        using var client = await WebSocketClient.ConnectAsync(
            new Uri($"wss://127.0.0.1:{server.BaseAddress.Port}/tls"),
            o => o.RemoteCertificateValidationCallback = (_, presented, _, _) => presented is not null && presented.GetCertHashString() == certificate.GetCertHashString());

        await client.SendTextAsync("a");
        Assert.Equal("tls:a", await client.ReceiveTextAsync());
        var requestEnded = ended.Of("/tls");
        Assert.Equal(insideTls, await Task.WhenAny(requestEnded, Task.Delay(TimeSpan.FromSeconds(insideTls ? 10 : 1))) == requestEnded);
        await client.SendTextAsync("b");
        Assert.Equal("tls:b", await client.ReceiveTextAsync());
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(20);
        }
    }

    /// <summary>A connection middleware that replaces the transport with its own pipes and counts what is written.</summary>
    private sealed class CountingMiddleware
    {
        private long _written;

        public long Written => Interlocked.Read(ref _written);

        public ConnectionDelegate Wrap(ConnectionDelegate next) => async context =>
        {
            var transport = context.Transport;
            var counting = new CountingStream(transport.Output.AsStream(), this);
            context.Transport = new Pipes(transport.Input, PipeWriter.Create(counting));
            try
            {
                await next(context);
            }
            finally
            {
                context.Transport = transport;
            }
        };

        private sealed record Pipes(PipeReader Input, PipeWriter Output) : IDuplexPipe;

        private sealed class CountingStream(Stream inner, CountingMiddleware owner) : Stream
        {
            public override bool CanRead => false;

            public override bool CanSeek => false;

            public override bool CanWrite => true;

            public override long Length => throw new NotSupportedException();

            public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

            public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
            {
                Interlocked.Add(ref owner._written, buffer.Length);
                await inner.WriteAsync(buffer, cancellationToken);
            }

            public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

            public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

            public override void Flush() => inner.Flush();

            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

            public override void SetLength(long value) => throw new NotSupportedException();
        }
    }

    private sealed class Place : IDisposable
    {
        private int _disposed;

        public int Disposed => Volatile.Read(ref _disposed);

        public void Dispose() => Interlocked.Increment(ref _disposed);
    }
}
