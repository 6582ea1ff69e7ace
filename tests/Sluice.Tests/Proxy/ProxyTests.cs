using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>Proxy mode through real sockets: messages, handshake, close paths and failures.</summary>
public class ProxyTests
{
    private static Task<TestServer> StartProxyAsync(string target, Action<WebSocketProxyBuilder>? configure = null, string pattern = "/p/{**rest}", Action<IServiceCollection>? services = null) =>
        TestServer.StartAsync(app => app.MapWebSocketProxy(pattern, target, configure), services);

    [Fact]
    public async Task Messages_KeepOpcodeBytesAndOrder_AtBoundarySizes()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.ConfigureOptions(o => o.MaxMessageBytes = 2 * 1024 * 1024));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/any"));

        foreach (var size in new[] { 0, 125, 126, 65535, 65536, 1024 * 1024 })
        {
            var bytes = new byte[size];
            Random.Shared.NextBytes(bytes);
            await client.SendBinaryAsync(bytes);
            var binary = await client.ReceiveMessageAsync();
            Assert.Equal(WebSocketMessageType.Binary, binary.Type);
            Assert.Equal(bytes, binary.Payload);

            var text = new string('é', size / 2);
            await client.SendTextAsync(text);
            Assert.Equal(text, await client.ReceiveTextAsync());
        }

        for (var i = 0; i < 1000; i++)
        {
            await client.SendTextAsync(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        for (var i = 0; i < 1000; i++)
        {
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), await client.ReceiveTextAsync());
        }
    }

    [Theory]
    [InlineData(PeerKind.Python, PeerKind.Python)]
    [InlineData(PeerKind.Python, PeerKind.Node)]
    [InlineData(PeerKind.Node, PeerKind.Python)]
    [InlineData(PeerKind.Node, PeerKind.Node)]
    public async Task ExternalClientAndBackend_AllScenarios(PeerKind clientKind, PeerKind backendKind)
    {
        await using var backend = await ExternalPeer.StartServerAsync(backendKind);
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo", p => p.ConfigureOptions(o => o.MaxMessageBytes = 4 * 1024 * 1024));

        foreach (var scenario in new[] { "sizes", "order", "fragmented" })
        {
            await ExternalPeer.RunClientAsync(clientKind, proxy.WebSocketUri("/p/x"), scenario);
        }

        Assert.StartsWith("OK close 4000", await ExternalPeer.RunClientAsync(clientKind, proxy.WebSocketUri("/p/x"), "close"), StringComparison.Ordinal);
        Assert.Equal("OK subprotocol chat.v1", await ExternalPeer.RunClientAsync(clientKind, proxy.WebSocketUri("/p/x"), "subprotocol"));
    }

    [Fact]
    public async Task FragmentedClientMessage_ArrivesWholeAtPolicies_AndAtTheBackend()
    {
        await using var backend = await RecordingBackend.StartAsync();
        var seen = new List<int>();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.Use(ctx =>
        {
            lock (seen)
            {
                seen.Add(ctx.Message.Length);
            }

            return true;
        }).InboundOnly());
        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await raw.SendFrameAsync(0x1, "part one, "u8, fin: false);
        await raw.SendFrameAsync(0x9, "ping"u8);
        await raw.SendFrameAsync(0x0, "part two"u8, fin: true);

        var frames = new[] { await raw.ReadFrameAsync(), await raw.ReadFrameAsync() };
        Assert.Contains(frames, f => f!.Opcode == 0xA && f.Text == "ping");
        Assert.Contains(frames, f => f!.Opcode == 0x1 && f.Text == "part one, part two");
        Assert.Equal([18], seen);
    }

    [Fact]
    public async Task Subprotocols_ClientOfferGoesToBackend_BackendChoiceGoesToClient()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/protocols", pattern: "/p");

        using var v1 = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o => o.AddSubProtocol("chat.v1"));
        using var both = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o =>
        {
            o.AddSubProtocol("chat.v1");
            o.AddSubProtocol("chat.v2");
        });
        using var none = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o => o.AddSubProtocol("other"));

        Assert.Equal("chat.v1", v1.SubProtocol);
        Assert.Equal("chat.v2", both.SubProtocol);
        Assert.Null(none.SubProtocol);
    }

    [Fact]
    public async Task Handshake_ForwardsSelectedHeaders_SetsForwardedAndSubject_StripsForgedSubject_AndOnlyPatternQuery()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/rooms/{room}", $"ws://{backend.Authority}/headers/rooms/${{params.room}}?user=${{query.user}}", p =>
        {
            p.ForwardHeaders.Add("Authorization");
            p.UseUpgrade(ctx =>
            {
                ctx.Subject = "alice";
                return UpgradeResult.Continue();
            });
        }));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/rooms/a%20b?user=ann%26co&secret=1"), o =>
        {
            o.SetRequestHeader("Authorization", "Bearer abc");
            o.SetRequestHeader("X-Sluice-Subject", "mallory");
            o.SetRequestHeader("X-Not-Forwarded", "nope");
            o.SetRequestHeader("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        });

        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        var headers = seen.RootElement.GetProperty("headers");
        Assert.Equal("rooms/a b", seen.RootElement.GetProperty("path").GetString());
        Assert.Equal("ann&co", seen.RootElement.GetProperty("query").GetProperty("user").GetString());
        Assert.False(seen.RootElement.GetProperty("query").TryGetProperty("secret", out _));
        Assert.Equal("Bearer abc", headers.GetProperty("authorization").GetString());
        Assert.Equal("alice", headers.GetProperty("x-sluice-subject").GetString());
        Assert.Equal("127.0.0.1", headers.GetProperty("x-forwarded-for").GetString());
        Assert.Equal("http", headers.GetProperty("x-forwarded-proto").GetString());
        Assert.False(headers.TryGetProperty("x-not-forwarded", out _));
        Assert.Contains("0af7651916cd43dd8448eb211c80319c", headers.GetProperty("traceparent").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnonymousClient_CannotForgeTheSubjectHeader()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/headers/x");
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"), o => o.SetRequestHeader("X-Sluice-Subject", "mallory"));

        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());

        Assert.False(seen.RootElement.GetProperty("headers").TryGetProperty("x-sluice-subject", out _));
    }

    [Fact]
    public void UnknownRouteParameterInTarget_FailsWhenTheEndpointIsMapped()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddSluice();
        using var app = builder.Build();

        var error = Assert.Throws<FormatException>(() => app.MapWebSocketProxy("/chat/{room}", "ws://127.0.0.1:1/rooms/${params.rom}"));

        Assert.Contains("unknown route parameter 'rom'", error.Message, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => app.MapWebSocketProxy("/x/{host}", "ws://${params.host}/steal"));
        Assert.Throws<FormatException>(() => app.MapWebSocketProxy("/y", "http://127.0.0.1/not-a-websocket"));
    }

    [Fact]
    public async Task ClientClose_IsRelayedToBackendWithCodeAndReason_AndEchoed()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x");
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));
        await HostModeTests.WaitUntilAsync(() => !backend.Connections.IsEmpty);

        await client.CloseAsync((WebSocketCloseStatus)4100, "client leaving", CancellationToken.None);

        Assert.Equal(((WebSocketCloseStatus)4100, "client leaving"), (client.CloseStatus, client.CloseStatusDescription));
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal(new ConnectionCloseInfo((WebSocketCloseStatus)4100, "client leaving", ConnectionCloseInitiator.Client), Assert.Single(backend.Closes));
    }

    [Fact]
    public async Task BackendClose_IsRelayedToClientWithCodeAndReason()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/close/4200");
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await client.SendTextAsync("close please");

        Assert.Equal(((WebSocketCloseStatus)4200, "backend says bye"), await client.ReceiveCloseAsync());
    }

    [Theory]
    [InlineData(PeerKind.Python)]
    [InlineData(PeerKind.Node)]
    public async Task BackendLostWithoutCloseFrame_ClientGets1014(PeerKind kind)
    {
        await using var backend = await ExternalPeer.StartServerAsync(kind);
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/die");
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await client.SendTextAsync("this kills the backend");

        var (status, reason) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus)1014, status);
        Assert.Equal("backend connection lost", reason);
    }

    [Fact]
    public async Task BackendRefusing_Gets502AndNoUpgrade_AndIsLoggedWithTheReason()
    {
        var port = FreePort();
        await using var proxy = await StartProxyAsync($"ws://127.0.0.1:{port}/nothing-listens");

        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(502, raw.StatusCode);
        var entry = await proxy.Logs.WaitForAsync(e => e.EventId.Id == 300);
        Assert.Contains("connection refused", entry.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BackendHangingInHandshake_Gets502AfterTheConnectTimeout()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var accepted = new List<Socket>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                accepted.Add(await listener.AcceptSocketAsync());
            }
        });
        await using var proxy = await StartProxyAsync($"ws://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/hang", p => p.ConnectTimeout = TimeSpan.FromMilliseconds(500));

        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(502, raw.StatusCode);
        Assert.Contains("no handshake within 500 ms", (await proxy.Logs.WaitForAsync(e => e.EventId.Id == 300)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BackendRejectingTheHandshake_Gets502()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/reject");

        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(502, raw.StatusCode);
        Assert.Contains("403", (await proxy.Logs.WaitForAsync(e => e.EventId.Id == 300)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PolicyClose_ClosesBothLegsWithTheCode()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.Use(ctx =>
        {
            ctx.Close(WebSocketCloseStatus.PolicyViolation, "not allowed");
            return false;
        }).When(ctx => ctx.Message.Text == "bad"));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await client.SendTextAsync("bad");

        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "not allowed"), await client.ReceiveCloseAsync());
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, Assert.Single(backend.Closes).Status);
    }

    [Fact]
    public async Task ReplyOutcome_AnswersTheClient_AndNothingReachesTheBackend()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.Use(ctx =>
        {
            ctx.Reply(WebSocketMessage.FromText("""{"error":"nope"}"""));
            return false;
        }).When(ctx => ctx.Message.Text == "question").InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await client.SendTextAsync("question");
        await client.SendTextAsync("echo me");

        Assert.Equal("""{"error":"nope"}""", await client.ReceiveTextAsync());
        Assert.Equal("echo me", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task MessageOverTheLimit_ClosesBothLegsWith1009()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.ConfigureOptions(o => o.MaxMessageBytes = 100));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));

        await client.SendBinaryAsync(new byte[101]);

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, (await client.ReceiveCloseAsync()).Status);
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, Assert.Single(backend.Closes).Status);
    }

    [Fact]
    public async Task IdleTimeout_ClosesBothLegsWith1001()
    {
        await using var backend = await RecordingBackend.StartAsync();
        FakeTimeProvider time = null!;
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p => p.ConfigureOptions(o => o.IdleTimeout = TimeSpan.FromHours(1)), services: s => time = FakeClock.Register(s));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));
        await FakeClock.WaitForConnectionsAsync(proxy);

        // An hour on the fake clock: no real clock could close it within the test's bounds.
        var closing = client.ReceiveCloseAsync();
        time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));

        Assert.Equal((WebSocketCloseStatus.EndpointUnavailable, "idle timeout"), await closing);
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, Assert.Single(backend.Closes).Status);
    }

    [Fact]
    public async Task Shutdown_ClosesBothLegsWith1001()
    {
        await using var backend = await RecordingBackend.StartAsync();
        var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x");
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));
        await HostModeTests.WaitUntilAsync(() => !backend.Connections.IsEmpty);
        var closing = client.ReceiveCloseAsync();

        await proxy.DisposeAsync();

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, (await closing).Status);
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, Assert.Single(backend.Closes).Status);
    }

    [Fact]
    public async Task Injection_IntoEitherLeg_FromAnyThread_AndGracefulCloseByTheApp()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", p =>
        {
            p.UseUpgrade(ctx =>
            {
                ctx.Subject = "ann";
                return UpgradeResult.Continue();
            });
            p.Outbound(m => WebSocketMessage.FromText("via-chain:" + m.Text));
        });
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x"));
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        await HostModeTests.WaitUntilAsync(() => registry.Count == 1);
        var connection = Assert.IsType<ProxyConnection>(Assert.Single(registry.List(routePattern: "/p/{**rest}", subject: "ann")));
        Assert.Null(connection.LastInboundAt);

        // To the backend, after the inbound chain: the echo then comes back through the outbound chain.
        await Task.Run(() => connection.SendToBackendAsync(WebSocketMessage.FromText("injected")).AsTask());
        Assert.Equal("via-chain:injected", await client.ReceiveTextAsync());

        // To the client, after the outbound chain: untouched.
        await Task.Run(() => connection.SendToClientAsync(WebSocketMessage.FromText("direct")).AsTask());
        Assert.Equal("direct", await client.ReceiveTextAsync());

        await client.SendTextAsync("from client");
        Assert.Equal("via-chain:from client", await client.ReceiveTextAsync());
        Assert.NotNull(connection.LastInboundAt);
        Assert.NotNull(connection.LastOutboundAt);
        Assert.Equal(1, connection.InboundMessages);
        Assert.Equal(3, connection.OutboundMessages);

        await Task.Run(() => connection.CloseAsync((WebSocketCloseStatus)4500, "admin closed"));
        Assert.Equal(((WebSocketCloseStatus)4500, "admin closed"), await client.ReceiveCloseAsync());
        await HostModeTests.WaitUntilAsync(() => !backend.Closes.IsEmpty);
        Assert.Equal((WebSocketCloseStatus)4500, Assert.Single(backend.Closes).Status);
    }

    [Fact]
    public async Task TwoHundredConcurrentConnections_AllRoundTrip()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x");

        await Parallel.ForAsync(0, 200, new ParallelOptions { MaxDegreeOfParallelism = 200 }, async (i, _) =>
        {
            using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri($"/p/{i}"));
            for (var n = 0; n < 10; n++)
            {
                await client.SendTextAsync($"{i}-{n}");
                Assert.Equal($"{i}-{n}", await client.ReceiveTextAsync());
            }

            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        });

        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        await HostModeTests.WaitUntilAsync(() => registry.Count == 0 && backend.Closes.Count == 200);
    }

    [Fact]
    public async Task AnUpgradeThatFailsAnyWay_GivesItsConnectionPlaceBack()
    {
        // One place only: a target selector that throws, a backend that is down and a target that cannot be formed
        // each fail an upgrade; none may keep the place, or the last client would get 503.
        await using var backend = await RecordingBackend.StartAsync();
        var attempt = 0;
        await using var proxy = await TestServer.StartAsync(
            app => app.MapWebSocketProxy("/p", _ => Interlocked.Increment(ref attempt) switch
            {
                1 => throw new InvalidOperationException("the selector failed"),
                2 => ValueTask.FromResult(new Uri($"ws://127.0.0.1:{FreePort()}/down")),
                3 => throw new FormatException("no target"),
                _ => ValueTask.FromResult(new Uri($"ws://{backend.Authority}/echo/x")),
            }),
            s => s.Configure<SluiceOptions>(o => o.MaxConnections = 1));

        for (var i = 0; i < 3; i++)
        {
            using var failed = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p"));
            Assert.NotEqual(101, failed.StatusCode);
        }

        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await client.SendTextAsync("the place was free");
        Assert.Equal("the place was free", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task ConnectionCap_Refuses_Newcomers_With503_AndKeepsEveryoneElse()
    {
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await StartProxyAsync($"ws://{backend.Authority}/echo/x", services: s => s.Configure<SluiceOptions>(o => o.MaxConnections = 3));
        var clients = new List<ClientWebSocket>();
        for (var i = 0; i < 3; i++)
        {
            clients.Add(await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/x")));
        }

        using var refused = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(503, refused.StatusCode);
        Assert.Contains("Retry-After", refused.ResponseHead, StringComparison.OrdinalIgnoreCase);
        foreach (var client in clients)
        {
            await client.SendTextAsync("alive");
            Assert.Equal("alive", await client.ReceiveTextAsync());
            client.Dispose();
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
