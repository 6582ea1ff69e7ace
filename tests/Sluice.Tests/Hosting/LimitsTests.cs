using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Hosting;

/// <summary>Message size, idle timeout, keep-alive, connection cap and non-WebSocket requests.</summary>
public class LimitsTests
{
    private static Task<TestServer> StartEchoAsync(Action<WebSocketEndpointOptions>? options = null, Action<SluiceOptions>? sluice = null, TimeProvider? time = null) =>
        TestServer.StartAsync(
            app => app.MapWebSocket("/echo", ws =>
            {
                if (options is not null)
                {
                    ws.ConfigureOptions(options);
                }

                ws.OnMessage((m, c) => WebSocketMessage.FromText(m.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }),
            services =>
            {
                services.Configure<SluiceOptions>(o => sluice?.Invoke(o));
                if (time is not null)
                {
                    services.AddSingleton(time);
                }
            });

    [Fact]
    public async Task MessageOfExactlyTheLimit_Passes_OneByteMoreClosesWith1009()
    {
        await using var server = await StartEchoAsync(o => o.MaxMessageBytes = 1000);
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x2, new byte[1000]);
        Assert.Equal("1000", (await ws.ReadFrameAsync())!.Text);

        await ws.SendFrameAsync(0x2, new byte[1001]);
        Assert.Equal((ushort)1009, (await ws.ReadCloseAsync()).Code);
    }

    [Fact]
    public async Task FragmentsAddingUpPastTheLimit_CloseWith1009()
    {
        await using var server = await StartEchoAsync(o => o.MaxMessageBytes = 1000);
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x2, new byte[600], fin: false);
        await ws.SendFrameAsync(0x0, new byte[401], fin: true);

        Assert.Equal((ushort)1009, (await ws.ReadCloseAsync()).Code);
    }

    [Fact]
    public async Task DefaultLimit_IsOneMebibyte()
    {
        await using var server = await StartEchoAsync();
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        await ws.SendFrameAsync(0x2, new byte[1024 * 1024]);
        Assert.Equal("1048576", (await ws.ReadFrameAsync())!.Text);
        await ws.SendFrameAsync(0x2, new byte[(1024 * 1024) + 1]);
        Assert.Equal((ushort)1009, (await ws.ReadCloseAsync()).Code);
    }

    // The timer tests run on a fake clock (the server's TimeProvider): an hour of idle time or minutes of
    // keep-alive pass in milliseconds, and no real clock could close these connections within the tests' bounds.
    [Fact]
    public async Task IdleConnection_IsClosedWith1001()
    {
        var time = new FakeTimeProvider();
        await using var server = await StartEchoAsync(o => o.IdleTimeout = TimeSpan.FromHours(1), time: time);
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));
        await FakeClock.WaitForConnectionsAsync(server);

        time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(1));
        var (code, reason) = await ws.ReadCloseAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(((ushort?)1001, "idle timeout"), (code, reason));
    }

    [Fact]
    public async Task KeepAlive_PingsASilentClient_AndDropsOneThatNeverAnswers()
    {
        var time = new FakeTimeProvider();
        await using var server = await StartEchoAsync(o => o.KeepAliveInterval = TimeSpan.FromMinutes(1), time: time);
        using var ws = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));
        await FakeClock.WaitForConnectionsAsync(server);

        // One interval of silence: a ping. The raw client never answers it: past two intervals the server gives up.
        time.Advance(TimeSpan.FromMinutes(1));
        var ping = await ws.ReadFrameAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(0x9, ping!.Opcode);
        time.Advance(TimeSpan.FromMinutes(2));

        Assert.True(await ws.WaitForTcpCloseAsync(TimeSpan.FromSeconds(10)), "a silent client must be dropped");
        await server.Logs.WaitForAsync(e => e.EventId.Id == 105);
    }

    [Fact]
    public async Task KeepAlive_KeepsAClientThatAnswersPings()
    {
        var time = new FakeTimeProvider();
        var interval = TimeSpan.FromMinutes(1);
        await using var server = await StartEchoAsync(o => o.KeepAliveInterval = interval, time: time);
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        await FakeClock.WaitForConnectionsAsync(server);

        // ClientWebSocket answers pings only while a receive is pending, as browsers always have one. Five minutes of
        // silence from the app, well past the two-interval timeout: the pongs alone keep the connection.
        var reply = client.ReceiveTextAsync(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 10; i++)
        {
            await time.AdvanceAndAwaitPongsAsync(server, TimeSpan.FromSeconds(30), interval);
        }

        await client.SendTextAsync("still alive");
        Assert.Equal("11", await reply);
    }

    [Fact]
    public async Task PlainHttpRequest_OnAWebSocketRoute_Gets400WithAnExplanation()
    {
        await using var server = await StartEchoAsync();
        using var http = server.CreateHttpClient();

        using var response = await http.GetAsync(new Uri("/echo", UriKind.Relative));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("WebSocket", body, StringComparison.Ordinal);
        Assert.Single(body.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task UnsupportedVersion_Gets426WithTheSupportedVersion()
    {
        await using var server = await StartEchoAsync();
        var uri = server.WebSocketUri("/echo");
        using var ws = await RawWebSocket.ConnectAsync(uri,
            $"GET /echo HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");

        Assert.Equal(426, ws.StatusCode);
        Assert.Contains("Sec-WebSocket-Version: 13", ws.ResponseHead, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task ConnectionsBeyondTheCap_Get503WithRetryAfter_OthersKeepWorking()
    {
        await using var server = await StartEchoAsync(sluice: o => o.MaxConnections = 2);
        using var first = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        using var second = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));

        using var third = await RawWebSocket.ConnectAsync(server.WebSocketUri("/echo"));

        Assert.Equal(503, third.StatusCode);
        Assert.Contains("Retry-After:", third.ResponseHead, StringComparison.OrdinalIgnoreCase);
        await first.SendTextAsync("ok");
        Assert.Equal("2", await first.ReceiveTextAsync());

        await second.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await HostModeTests.WaitUntilAsync(() => server.Services.GetService(typeof(IWebSocketConnectionRegistry)) is IWebSocketConnectionRegistry { Count: 1 });
        using var fourth = await WebSocketClient.ConnectAsync(server.WebSocketUri("/echo"));
        await fourth.SendTextAsync("in");
        Assert.Equal("2", await fourth.ReceiveTextAsync());
    }

    [Fact]
    public void DefaultConnectionCap_IsASafeShareOfTheOpenFileLimit()
    {
        Assert.Equal(7360, ConnectionBudget.Compute(20_000, 0, null).MaxConnections);
        Assert.Equal(7282, ConnectionBudget.Compute(20_000, 200, null).MaxConnections);
        Assert.Equal(57, ConnectionBudget.Compute(200, 0, null).MaxConnections);
        Assert.Equal(2, ConnectionBudget.Compute(300, 400, null).MaxConnections);
    }

    [Fact]
    public void HostedConnectionsOnly_FitsAboutTwiceAsManyConnections_InTheSameLimit()
    {
        var hosted = ConnectionBudget.Compute(20_000, 200, null, backendSockets: false);
        Assert.Equal(14_136, hosted.MaxConnections);
        // Every accepted socket still fits: pending ones and upgraded ones, with no backend socket per connection.
        Assert.True(hosted.MaxPending + hosted.MaxUpgraded <= hosted.Sockets, hosted.ToString());
        Assert.True(hosted.MaxPending >= hosted.Sockets / 5, hosted.ToString());
        Assert.Equal(10_000, ConnectionBudget.Compute(20_000, 200, 10_000, backendSockets: false).MaxConnections);
        Assert.Equal(7282, ConnectionBudget.Compute(20_000, 200, 10_000).MaxConnections);
    }

    [Fact]
    public void MapWebSocketProxy_Throws_WhenTheAppSaidItHostsEveryConnection()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddSluice(o => o.HostedConnectionsOnly = true);
        using var app = builder.Build();
        var error = Assert.Throws<InvalidOperationException>(() => app.MapWebSocketProxy("/p", "ws://127.0.0.1:1/"));
        Assert.Contains("HostedConnectionsOnly", error.Message);
    }

    [Fact]
    public void ConnectionBudget_FitsEveryAcceptedSocketAndEveryBackendInTheOpenFileLimit()
    {
        long[] limits = [64, 200, 600, 1024, 4096, 20_000, 65_536, 1 << 20];
        int?[] requests = [null, 1, 2, 100, 5_000, 1_000_000];
        foreach (var limit in limits)
        {
            foreach (var openNow in new long[] { 0, 40, 200 })
            {
                foreach (var (requested, backends) in requests.SelectMany(r => new[] { (r, true), (r, false) }))
                {
                    var budget = ConnectionBudget.Compute(limit, openNow, requested, backends);
                    var context = $"limit {limit}, open {openNow}, requested {requested}, backends {backends}: {budget}";
                    // Pending connections, upgraded client sockets (Kestrel's count) and one backend socket per WebSocket.
                    if (limit - Math.Min(1024, limit / 4) - openNow >= 8)
                    {
                        Assert.True(budget.MaxPending + budget.MaxUpgraded + (backends ? budget.MaxConnections : 0) <= budget.Sockets, context);
                        Assert.Equal(limit - Math.Min(1024, limit / 4) - openNow, budget.Sockets);
                    }

                    Assert.True(budget.MaxPending >= budget.Sockets / 5, context);
                    Assert.True(budget.MaxUpgraded > budget.MaxConnections, context);
                    Assert.InRange(budget.MaxConnections, 1, requested ?? int.MaxValue);
                    Assert.Equal(requested > budget.MaxConnections ? requested : null, budget.Requested);
                }
            }
        }
    }
}
