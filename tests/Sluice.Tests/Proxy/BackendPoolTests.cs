using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Time.Testing;
using Sluice.Proxy;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>Backend pools through real sockets: balancing, failover at connect time, passive and active health.</summary>
public sealed class BackendPoolTests : IAsyncLifetime
{
    private readonly List<NamedBackend> _backends = [];

    public async Task InitializeAsync()
    {
        foreach (var name in new[] { "b0", "b1", "b2" })
        {
            _backends.Add(await NamedBackend.StartAsync(name));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var backend in _backends)
        {
            await backend.DisposeAsync();
        }
    }

    private IEnumerable<string> Targets(string path = "/ws/${params.rest}") => _backends.Select(b => $"ws://{b.Authority}{path}");

    private static Task<TestServer> StartProxyAsync(BackendPool pool, Action<WebSocketProxyBuilder>? configure = null) =>
        TestServer.StartAsync(app => app.MapWebSocketProxy("/p/{**rest}", pool, configure));

    private static async Task<(ClientWebSocket Client, string Backend)> ConnectAsync(TestServer proxy, string pathAndQuery = "/p/x")
    {
        var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri(pathAndQuery));
        return (client, await client.ReceiveTextAsync());
    }

    private static async Task<string> NameOfOneConnectionAsync(TestServer proxy, string pathAndQuery = "/p/x")
    {
        var (client, name) = await ConnectAsync(proxy, pathAndQuery);
        using (client)
        {
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        return name;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 20)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        while (!condition())
        {
            Assert.False(timeout.IsCancellationRequested, $"timed out waiting until {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task RoundRobin_GivesEachTargetItsTurn()
    {
        await using var pool = new BackendPool("/p/{**rest}", Targets());
        await using var proxy = await StartProxyAsync(pool);

        var names = new List<string>();
        for (var i = 0; i < 9; i++)
        {
            names.Add(await NameOfOneConnectionAsync(proxy));
        }

        Assert.Equal(["b0", "b1", "b2", "b0", "b1", "b2", "b0", "b1", "b2"], names);
    }

    [Fact]
    public async Task LeastConnections_SendsANewConnectionToTheTargetWithFewestOpen()
    {
        await using var pool = new BackendPool("/p/{**rest}", Targets(), new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.LeastConnections });
        await using var proxy = await StartProxyAsync(pool);
        var open = new List<(ClientWebSocket Client, string Backend)>();
        for (var i = 0; i < 6; i++)
        {
            open.Add(await ConnectAsync(proxy));
        }

        Assert.Equal([2, 2, 2], open.GroupBy(o => o.Backend).OrderBy(g => g.Key).Select(g => g.Count()));

        // Both of b1's connections close: b1 is now the least loaded, and takes the next two.
        foreach (var (client, _) in open.Where(o => o.Backend == "b1"))
        {
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        await WaitUntilAsync(() => pool.GetTargets()[1].OpenConnections == 0, "b1's connections are counted closed");
        var next = new[] { await ConnectAsync(proxy), await ConnectAsync(proxy) };
        Assert.All(next, n => Assert.Equal("b1", n.Backend));
        Assert.Equal([2, 2, 2], pool.GetTargets().Select(t => t.OpenConnections));
        foreach (var (client, _) in open.Concat(next))
        {
            client.Dispose();
        }
    }

    [Fact]
    public async Task Random_ReachesEveryTarget()
    {
        await using var pool = new BackendPool("/p/{**rest}", Targets(), new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.Random });
        await using var proxy = await StartProxyAsync(pool);

        var names = new HashSet<string>();
        for (var i = 0; i < 40 && names.Count < 3; i++)
        {
            names.Add(await NameOfOneConnectionAsync(proxy));
        }

        // The chance that 40 random picks miss one of three targets is 3 * (2/3)^40, about 3e-7.
        Assert.Equal(["b0", "b1", "b2"], names.Order());
    }

    [Fact]
    public async Task Hash_SameValueSameTarget_AndOnlyTheDownTargetsValuesMove()
    {
        var options = new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.Hash, HashBy = "${query.user}", ReactivationPeriod = TimeSpan.FromHours(1) };
        await using var pool = new BackendPool("/p/{**rest}", Targets(), options);
        await using var proxy = await StartProxyAsync(pool, p => p.ConnectTimeout = TimeSpan.FromSeconds(10));
        var users = Enumerable.Range(0, 24).Select(i => $"user{i}").ToList();
        var first = new Dictionary<string, string>();
        foreach (var user in users)
        {
            first[user] = await NameOfOneConnectionAsync(proxy, $"/p/x?user={user}");
        }

        foreach (var user in users)
        {
            Assert.Equal(first[user], await NameOfOneConnectionAsync(proxy, $"/p/x?user={user}"));
        }

        Assert.Equal(3, first.Values.Distinct().Count());

        // b1 goes away: its users fail over (to their second choice), everyone else stays put.
        await _backends[1].Server.StopAsync();
        var during = new Dictionary<string, string>();
        foreach (var user in users)
        {
            during[user] = await NameOfOneConnectionAsync(proxy, $"/p/x?user={user}");
        }

        Assert.All(users, u => Assert.Equal(first[u] == "b1" ? during[u] : first[u], during[u]));
        Assert.DoesNotContain("b1", during.Values);
        Assert.False(pool.GetTargets()[1].Healthy);
    }

    [Fact]
    public async Task Failover_RefusedTarget_NextHealthyTargetServes_AndPassiveHealthMarksItUnhealthy()
    {
        var refused = $"ws://127.0.0.1:{Ports.Closed()}/ws/${{params.rest}}";
        await using var pool = new BackendPool("/p/{**rest}", [refused, .. Targets()], new BackendPoolOptions { UnhealthyAfter = 2, ReactivationPeriod = TimeSpan.FromHours(1) });
        await using var proxy = await StartProxyAsync(pool);

        // Round-robin starts at the refused target: the first connection fails over to b0.
        Assert.Equal("b0", await NameOfOneConnectionAsync(proxy));
        Assert.True(pool.GetTargets()[0].Healthy);

        // Its turn comes again with the fifth connection: the second failure in a row.
        for (var i = 0; i < 4; i++)
        {
            await NameOfOneConnectionAsync(proxy);
        }

        var state = pool.GetTargets()[0];
        Assert.False(state.Healthy);
        Assert.Equal("connection refused", state.LastError);
        Assert.NotNull(state.LastErrorAt);

        // Unhealthy: no more attempts on it, so no more failures recorded.
        var names = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            names.Add(await NameOfOneConnectionAsync(proxy));
        }

        Assert.Equal(2, names.Count(n => n == "b0"));
        Assert.Equal(state.LastErrorAt, pool.GetTargets()[0].LastErrorAt);
    }

    [Fact]
    public async Task Failover_HandshakeRejected_TriesTheNext_ButOnlyA5xxCountsAgainstTheTargetsHealth()
    {
        _backends[1].Health = HealthAnswer.Status500;
        var notFound = $"ws://{_backends[0].Authority}/nothing-here";
        var broken = $"ws://{_backends[1].Authority}/healthz";
        await using var pool = new BackendPool("/p/{**rest}", [notFound, broken, $"ws://{_backends[2].Authority}/ws/x"], new BackendPoolOptions { UnhealthyAfter = 1, ReactivationPeriod = TimeSpan.FromHours(1) });
        await using var proxy = await StartProxyAsync(pool);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("b2", await NameOfOneConnectionAsync(proxy));
        }

        // A 404 is about this client's request: a client must not be able to mark backends down by asking for nonsense.
        var states = pool.GetTargets();
        Assert.True(states[0].Healthy);
        Assert.Null(states[0].LastError);
        Assert.False(states[1].Healthy);
        Assert.Equal("the backend answered 500 Internal Server Error instead of 101", states[1].LastError);
    }

    [Fact]
    public async Task Failover_TargetThatNeverAnswersTheHandshake_TimesOutWithinItsShare_AndTheNextServes()
    {
        using var silent = new SilentListener();
        await using var pool = new BackendPool("/p/{**rest}", [$"ws://{silent.Authority}/ws/x", $"ws://{_backends[2].Authority}/ws/x"]);
        await using var proxy = await StartProxyAsync(pool, p => p.ConnectTimeout = TimeSpan.FromSeconds(4));

        Assert.Equal("b2", await NameOfOneConnectionAsync(proxy));

        // Two targets in 4 s: the silent one had half of it.
        Assert.Equal("no handshake within 2000 ms", pool.GetTargets()[0].LastError);
    }

    [Fact]
    public async Task AllTargetsFail_Is502_WithOneLogLineNamingTheRouteAndEachFailure()
    {
        using var silent = new SilentListener();
        var refused = Ports.Closed();
        await using var pool = new BackendPool("/p/{**rest}", [$"ws://127.0.0.1:{refused}/ws/a?token=secret", $"ws://{silent.Authority}/ws/b"]);
        await using var proxy = await StartProxyAsync(pool, p => p.ConnectTimeout = TimeSpan.FromSeconds(1));

        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(502, raw.StatusCode);
        var line = await proxy.Logs.WaitForAsync(e => e.EventId.Id == 301);
        Assert.Contains("No backend of /p/{**rest} accepted the connection (2 tried)", line.Message, StringComparison.Ordinal);
        Assert.Contains($"ws://127.0.0.1:{refused}/ws/a: connection refused", line.Message, StringComparison.Ordinal);
        Assert.Contains($"ws://{silent.Authority}/ws/b: no handshake within", line.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoHealthyTarget_Is502_WithoutTryingAny()
    {
        var refused = $"ws://127.0.0.1:{Ports.Closed()}/ws/x";
        await using var pool = new BackendPool("/p/{**rest}", [refused], new BackendPoolOptions { UnhealthyAfter = 1, ReactivationPeriod = TimeSpan.FromHours(1) });
        await using var proxy = await StartProxyAsync(pool);
        using (var first = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x")))
        {
            Assert.Equal(502, first.StatusCode);
        }

        using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/x"));

        Assert.Equal(502, raw.StatusCode);
        var line = await proxy.Logs.WaitForAsync(e => e.EventId.Id == 302);
        Assert.Contains("No backend of /p/{**rest} is healthy", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PassiveHealth_WithoutChecks_ReactivatesAfterTheReactivationPeriodOfTheTimeProvider()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var backend = await NamedBackend.StartAsync("late");
        var port = backend.Server.BaseAddress.Port;
        await backend.Server.StopAsync();
        await using var pool = new BackendPool("/p/{**rest}", [$"ws://127.0.0.1:{port}/ws/x", $"ws://{_backends[0].Authority}/ws/x"],
            new BackendPoolOptions { UnhealthyAfter = 1, ReactivationPeriod = TimeSpan.FromSeconds(30) }, time);
        await using var proxy = await StartProxyAsync(pool);
        Assert.Equal("b0", await NameOfOneConnectionAsync(proxy));
        Assert.False(pool.GetTargets()[0].Healthy);

        time.Advance(TimeSpan.FromSeconds(29));
        Assert.False(pool.GetTargets()[0].Healthy);
        time.Advance(TimeSpan.FromSeconds(2));

        Assert.True(pool.GetTargets()[0].Healthy);
    }

    [Theory]
    [InlineData(HealthAnswer.Status500, "health check: GET /healthz answered 500")]
    [InlineData(HealthAnswer.Hang, "health check: no answer within 500 ms")]
    [InlineData(HealthAnswer.CutMidResponse, "health check: ")]
    public async Task ActiveHealth_BadHealthEndpoint_MakesTheTargetUnhealthy_OpenConnectionsStay_AndItComesBack(HealthAnswer answer, string error)
    {
        var check = new BackendHealthCheckOptions { Interval = TimeSpan.FromMilliseconds(300), Timeout = TimeSpan.FromMilliseconds(500), UnhealthyAfter = 2, HealthyAfter = 2, Path = "/healthz" };
        await using var pool = new BackendPool("/p/{**rest}", Targets(), new BackendPoolOptions { HealthCheck = check });
        await using var proxy = await StartProxyAsync(pool);
        await WaitUntilAsync(() => pool.GetTargets().All(t => t.LastCheckAt is not null), "every target has been checked");
        var open = new List<(ClientWebSocket Client, string Backend)>();
        for (var i = 0; i < 3; i++)
        {
            open.Add(await ConnectAsync(proxy));
        }

        _backends[1].Health = answer;
        await WaitUntilAsync(() => !pool.GetTargets()[1].Healthy, "b1 is unhealthy");

        Assert.StartsWith(error, pool.GetTargets()[1].LastError, StringComparison.Ordinal);
        Assert.True(pool.GetTargets()[0].Healthy && pool.GetTargets()[2].Healthy);
        for (var i = 0; i < 4; i++)
        {
            Assert.NotEqual("b1", await NameOfOneConnectionAsync(proxy));
        }

        // The connection already on b1 is left alone.
        var onB1 = open.Single(o => o.Backend == "b1").Client;
        await onB1.SendTextAsync("still there");
        Assert.Equal("still there", await onB1.ReceiveTextAsync());

        // A hanging check was given up at its timeout: the backend is not left holding one request per interval.
        await Task.Delay(check.Interval * 4);
        Assert.True(_backends[1].HealthInFlight <= 1, $"{_backends[1].HealthInFlight} health requests still open");

        _backends[1].Health = HealthAnswer.Ok;
        await WaitUntilAsync(() => pool.GetTargets()[1].Healthy, "b1 is healthy again");
        foreach (var (client, _) in open)
        {
            client.Dispose();
        }
    }

    [Fact]
    public async Task ActiveHealth_WithoutPath_IsAWebSocketHandshake_AndASilentTargetFailsIt()
    {
        using var silent = new SilentListener();
        var check = new BackendHealthCheckOptions { Interval = TimeSpan.FromMilliseconds(300), Timeout = TimeSpan.FromMilliseconds(400), UnhealthyAfter = 1 };
        await using var pool = new BackendPool("/p/{**rest}", [$"ws://{silent.Authority}/ws/${{params.rest}}", $"ws://{_backends[0].Authority}/ws/${{params.rest}}"], new BackendPoolOptions { HealthCheck = check });
        await using var proxy = await StartProxyAsync(pool);

        await WaitUntilAsync(() => !pool.GetTargets()[0].Healthy && pool.GetTargets()[1].LastCheckAt is not null, "the silent target failed its check");

        Assert.Equal("health check: no answer within 400 ms", pool.GetTargets()[0].LastError);
        Assert.True(pool.GetTargets()[1].Healthy);
        Assert.Null(pool.GetTargets()[1].LastError);
        Assert.Equal("b0", await NameOfOneConnectionAsync(proxy));
    }

    [Fact]
    public async Task ActiveHealth_RunsOnTheTimeProvidersInterval_AndStopsWhenThePoolIsDisposed()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var check = new BackendHealthCheckOptions { Interval = TimeSpan.FromMinutes(5), Timeout = TimeSpan.FromSeconds(5), Path = "/healthz" };
        var pool = new BackendPool("/p/{**rest}", Targets(), new BackendPoolOptions { HealthCheck = check }, time);
        await using var proxy = await StartProxyAsync(pool);

        // The first check runs at once; the next only when the clock has moved by the interval.
        await WaitUntilAsync(() => _backends[0].HealthRequests == 1, "the first check");
        await Task.Delay(500);
        Assert.Equal(1, _backends[0].HealthRequests);
        var checkedAt = pool.GetTargets()[0].LastCheckAt;

        // The backend counts the request before the pool has recorded it and armed its next wait; a clock moved in
        // between would arm that wait from the new time. So the clock moves by the interval until the second check
        // comes, each time after a pause: each move brings at most one check.
        for (var moves = 0; _backends[0].HealthRequests < 2 && moves < 20; moves++)
        {
            time.Advance(TimeSpan.FromMinutes(5));
            for (var waited = 0; _backends[0].HealthRequests < 2 && waited < 10; waited++)
            {
                await Task.Delay(100);
            }
        }

        await WaitUntilAsync(() => _backends[0].HealthRequests == 2, "the second check");
        await WaitUntilAsync(() => pool.GetTargets()[0].LastCheckAt > checkedAt, "the second check is recorded");

        await pool.DisposeAsync();
        time.Advance(TimeSpan.FromMinutes(15));
        await Task.Delay(500);

        Assert.Equal(2, _backends[0].HealthRequests);
    }

    [Fact]
    public async Task MapWebSocketProxy_RefusesAPoolWhoseTargetsDoNotFitTheRoute()
    {
        await using var pool = new BackendPool("/p/{room}", ["ws://127.0.0.1:1/${params.room}"]);

        var error = await Assert.ThrowsAsync<FormatException>(() => TestServer.StartAsync(app => app.MapWebSocketProxy("/q/{other}", pool)));

        Assert.Contains("unknown route parameter 'room'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pool_RefusesBadTargetsAndOptions()
    {
        Assert.Throws<FormatException>(() => new BackendPool("/p/{room}", ["ws://127.0.0.1:1/${params.rom}"]));
        Assert.Throws<ArgumentException>(() => new BackendPool("/p", []));
        Assert.Throws<ArgumentException>(() => new BackendPool("/p", ["ws://127.0.0.1:1/"], new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.Hash }));
        var hashError = Assert.Throws<FormatException>(() => new BackendPool("/p", ["ws://127.0.0.1:1/"], new BackendPoolOptions { LoadBalancing = BackendLoadBalancing.Hash, HashBy = "${subjct}" }));
        Assert.Contains("is not an expression", hashError.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new BackendPool("/p", ["ws://127.0.0.1:1/"], new BackendPoolOptions { HealthCheck = new() { Path = "healthz" } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BackendPool("/p", ["ws://127.0.0.1:1/"], new BackendPoolOptions { HealthCheck = new() { HealthyAfter = 0 } }));
    }
}
