using System.Net.WebSockets;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Pools;

/// <summary>
/// Backend pools through the real gateway process (docs/gateway-contract.md, "Backend pools and health"): python
/// backends that die and come back, balancing modes, hash stickiness by subject, all targets down, and health
/// endpoints that misbehave.
/// </summary>
public class PoolTests
{
    private static async Task<string> NameOfOneConnectionAsync(GatewayProcess gateway, string path, Action<ClientWebSocketOptions>? configure = null)
    {
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws(path), configure);
        var name = await client.ReceiveTextAsync();
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        return name;
    }

    private static async Task<JsonElement> BackendsAsync(GatewayProcess gateway, string route)
    {
        using var http = new HttpClient();
        using var document = JsonDocument.Parse(await http.GetStringAsync(gateway.Http("/_sluice/backends")));
        return document.RootElement.EnumerateArray().Single(r => r.GetProperty("route").GetString() == route).GetProperty("targets").Clone();
    }

    private static async Task<JsonElement> WaitForTargetAsync(GatewayProcess gateway, string route, int index, Func<JsonElement, bool> condition, string what)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            var target = (await BackendsAsync(gateway, route))[index];
            if (condition(target))
            {
                return target;
            }

            Assert.False(timeout.IsCancellationRequested, $"timed out waiting until {what}: {target}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task ThreeBackends_OneDiesAndComesBack_HealthFlipsInAdminBackends_AndConnectionsGoWhereTheyShould()
    {
        await using var b0 = await PythonPoolBackend.StartAsync("b0");
        await using var b1 = await PythonPoolBackend.StartAsync("b1");
        await using var b2 = await PythonPoolBackend.StartAsync("b2");
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [ { "path": "/pool", "proxy": {
                "targets": ["ws://{{b0.Authority}}/", "ws://{{b1.Authority}}/", "ws://{{b2.Authority}}/"],
                "healthCheck": { "intervalSeconds": 1, "timeoutMs": 500, "unhealthyAfter": 1, "healthyAfter": 1, "path": "/healthz" } } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        await WaitForTargetAsync(gateway, "/pool", 2, t => t.GetProperty("lastCheckAt").ValueKind == JsonValueKind.String, "the first checks ran");
        using var onB0 = await WebSocketClient.ConnectAsync(gateway.Ws("/pool"));
        var first = await onB0.ReceiveTextAsync();
        Assert.Equal("b0", first);
        var names = new List<string> { first };
        for (var i = 0; i < 5; i++)
        {
            names.Add(await NameOfOneConnectionAsync(gateway, "/pool"));
        }

        Assert.Equal([2, 2, 2], names.GroupBy(n => n).OrderBy(g => g.Key).Select(g => g.Count()));
        var healthy = await BackendsAsync(gateway, "/pool");
        Assert.All(healthy.EnumerateArray(), t => Assert.True(t.GetProperty("healthy").GetBoolean()));
        Assert.Equal(1, healthy.EnumerateArray().Sum(t => t.GetProperty("openConnections").GetInt32()));

        await b1.KillAsync();
        var down = await WaitForTargetAsync(gateway, "/pool", 1, t => !t.GetProperty("healthy").GetBoolean(), "b1 is unhealthy");
        Assert.StartsWith("health check:", down.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        Assert.Equal($"ws://{b1.Authority}/", down.GetProperty("target").GetString());
        for (var i = 0; i < 6; i++)
        {
            Assert.NotEqual("b1", await NameOfOneConnectionAsync(gateway, "/pool"));
        }

        using var http = new HttpClient();
        var metrics = await http.GetStringAsync(gateway.Http("/_sluice/metrics"));
        Assert.Matches($"sluice_backend_healthy\\{{[^}}]*route=\"/pool\",target=\"ws://{b1.Authority}/\"}} 0\n", metrics);
        Assert.Matches($"sluice_backend_healthy\\{{[^}}]*route=\"/pool\",target=\"ws://{b0.Authority}/\"}} 1\n", metrics);
        Assert.Matches($"sluice_backend_connections\\{{[^}}]*route=\"/pool\",target=\"ws://{b0.Authority}/\"}} 1\n", metrics);

        await b1.StartAgainAsync();
        await WaitForTargetAsync(gateway, "/pool", 1, t => t.GetProperty("healthy").GetBoolean(), "b1 is healthy again");
        var after = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            after.Add(await NameOfOneConnectionAsync(gateway, "/pool"));
        }

        Assert.Contains("b1", after);

        // The connection opened before all of this is still where it was.
        await onB0.SendTextAsync("still here");
        Assert.Equal("still here", await onB0.ReceiveTextAsync());
        await gateway.WaitForOutputAsync("is unhealthy and gets no new connections");
        await gateway.WaitForOutputAsync("is healthy again");
    }

    [Fact]
    public async Task BalancingModes_SpreadConnections_AndHashKeepsEachSubjectOnOneBackend()
    {
        await using var b0 = await PythonPoolBackend.StartAsync("b0");
        await using var b1 = await PythonPoolBackend.StartAsync("b1");
        await using var b2 = await PythonPoolBackend.StartAsync("b2");
        var targets = $"[\"ws://{b0.Authority}/\", \"ws://{b1.Authority}/\", \"ws://{b2.Authority}/\"]";
        var keys = string.Join(", ", Enumerable.Range(0, 12).Select(i => $$"""{ "key": "key-{{i}}-0123456789abcdef", "subject": "user-{{i}}" }"""));
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [
                { "path": "/rr", "proxy": { "targets": {{targets}} } },
                { "path": "/lc", "proxy": { "targets": {{targets}}, "loadBalancing": "least-connections" } },
                { "path": "/random", "proxy": { "targets": {{targets}}, "loadBalancing": "random" } },
                { "path": "/hash", "upgrade": ["keys"], "proxy": { "targets": {{targets}}, "loadBalancing": "hash", "hashBy": "${subject}" } } ],
              "policies": { "keys": { "type": "api-key", "options": { "keys": [ {{keys}} ] } } } }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);

        var roundRobin = new List<string>();
        for (var i = 0; i < 9; i++)
        {
            roundRobin.Add(await NameOfOneConnectionAsync(gateway, "/rr"));
        }

        Assert.Equal(["b0", "b1", "b2", "b0", "b1", "b2", "b0", "b1", "b2"], roundRobin);

        var held = new List<ClientWebSocket>();
        var leastConnections = new List<string>();
        for (var i = 0; i < 9; i++)
        {
            var client = await WebSocketClient.ConnectAsync(gateway.Ws("/lc"));
            held.Add(client);
            leastConnections.Add(await client.ReceiveTextAsync());
        }

        Assert.Equal([3, 3, 3], leastConnections.GroupBy(n => n).OrderBy(g => g.Key).Select(g => g.Count()));
        held.ForEach(c => c.Dispose());

        var random = new HashSet<string>();
        for (var i = 0; i < 40 && random.Count < 3; i++)
        {
            random.Add(await NameOfOneConnectionAsync(gateway, "/random"));
        }

        Assert.Equal(["b0", "b1", "b2"], random.Order());

        var bySubject = new Dictionary<int, string>();
        for (var round = 0; round < 3; round++)
        {
            for (var i = 0; i < 12; i++)
            {
                var key = $"key-{i}-0123456789abcdef";
                var name = await NameOfOneConnectionAsync(gateway, "/hash", o => o.SetRequestHeader("X-Api-Key", key));
                Assert.Equal(bySubject.TryAdd(i, name) ? name : bySubject[i], name);
            }
        }

        Assert.True(bySubject.Values.Distinct().Count() > 1, "twelve subjects all hashed to one backend");
    }

    [Fact]
    public async Task AllTargetsDown_Is502_WithOneLogLineNamingTheRouteAndEachFailure()
    {
        var first = Ports.Closed();
        var second = Ports.Closed();
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [ { "path": "/down", "proxy": { "targets": ["ws://127.0.0.1:{{first}}/a", "ws://127.0.0.1:{{second}}/b"] } },
                          { "path": "/echo", "handler": { "type": "echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var bystander = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/down"));

        Assert.Equal(502, raw.StatusCode);
        await gateway.WaitForOutputAsync($"No backend of /down accepted the connection (2 tried): ws://127.0.0.1:{first}/a: connection refused; ws://127.0.0.1:{second}/b: connection refused. The client got 502.");
        await bystander.SendTextAsync("unaffected");
        Assert.Equal("unaffected", await bystander.ReceiveTextAsync());

        // Both failed twice in a row by the second attempt: nothing is healthy, said as such.
        using (await RawWebSocket.ConnectAsync(gateway.Ws("/down")))
        {
        }

        using var none = await RawWebSocket.ConnectAsync(gateway.Ws("/down"));
        Assert.Equal(502, none.StatusCode);
        await gateway.WaitForOutputAsync("No backend of /down is healthy (all 2 unhealthy). The client got 502.");
    }

    [Fact]
    public async Task HealthEndpointsThatHangFailOrBreakOff_AndATargetThatNeverAnswers_AreUnhealthy_TheOthersServe()
    {
        await using var hanging = await NamedBackend.StartAsync("hanging");
        await using var failing = await NamedBackend.StartAsync("failing");
        await using var cut = await NamedBackend.StartAsync("cut");
        await using var good = await NamedBackend.StartAsync("good");
        hanging.Health = HealthAnswer.Hang;
        failing.Health = HealthAnswer.Status500;
        cut.Health = HealthAnswer.CutMidResponse;
        using var silent = new SilentListener();
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [
                { "path": "/checked", "proxy": {
                    "targets": ["ws://{{hanging.Authority}}/ws/x", "ws://{{failing.Authority}}/ws/x", "ws://{{cut.Authority}}/ws/x", "ws://{{good.Authority}}/ws/x"],
                    "healthCheck": { "intervalSeconds": 1, "timeoutMs": 400, "unhealthyAfter": 1, "path": "/healthz" } } },
                { "path": "/silent", "proxy": { "targets": ["ws://{{silent.Authority}}/ws/x", "ws://{{good.Authority}}/ws/x"], "connectTimeoutMs": 3000 } },
                { "path": "/echo", "handler": { "type": "echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var bystander = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        var hang = await WaitForTargetAsync(gateway, "/checked", 0, t => !t.GetProperty("healthy").GetBoolean(), "the hanging target is unhealthy");
        // A fresh gateway's first checks can take longer than 400 ms (its HTTP client is cold), so the failing target's
        // first error may be a timeout: the next check, a second later, gives the 500.
        var status = await WaitForTargetAsync(gateway, "/checked", 1, t => !t.GetProperty("healthy").GetBoolean() && t.GetProperty("lastError").GetString() is { } error && error.Contains("500", StringComparison.Ordinal), "the failing target is unhealthy for its 500");
        var broken = await WaitForTargetAsync(gateway, "/checked", 2, t => !t.GetProperty("healthy").GetBoolean(), "the cut-off target is unhealthy");
        Assert.Equal("health check: no answer within 400 ms", hang.GetProperty("lastError").GetString());
        Assert.Equal("health check: GET /healthz answered 500", status.GetProperty("lastError").GetString());
        Assert.StartsWith("health check: ", broken.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        // On a loaded machine one of the good target's 400 ms checks can time out too; the next one brings it back.
        await WaitForTargetAsync(gateway, "/checked", 3, t => t.GetProperty("healthy").GetBoolean(), "the good target is healthy");
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("good", await NameOfOneConnectionAsync(gateway, "/checked"));
        }

        // The silent target takes TCP and never answers: its share of the connect timeout runs out, the next serves.
        Assert.Equal("good", await NameOfOneConnectionAsync(gateway, "/silent"));
        var silentState = (await BackendsAsync(gateway, "/silent"))[0];
        Assert.Equal("no handshake within 1500 ms", silentState.GetProperty("lastError").GetString());

        // Checks that were given up are not left open on the hanging backend, one per interval.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.True(hanging.HealthInFlight <= 1, $"{hanging.HealthInFlight} health checks still open on the hanging backend");
        Assert.True(hanging.HealthRequests >= 3, $"only {hanging.HealthRequests} checks in 3+ s");
        await bystander.SendTextAsync("unaffected");
        Assert.Equal("unaffected", await bystander.ReceiveTextAsync());
    }

    [Fact]
    public async Task Reload_RemovingAPooledRoute_StopsItsHealthChecks_AndKeepsAnUnchangedPoolsHealth()
    {
        await using var watched = await NamedBackend.StartAsync("watched");
        await using var kept = await NamedBackend.StartAsync("kept");
        kept.Health = HealthAnswer.Status500;
        using var folder = new ConfigFolder();
        var keptRoute = $$"""{ "path": "/kept", "proxy": { "targets": ["ws://{{kept.Authority}}/ws/x"], "healthCheck": { "intervalSeconds": 1, "timeoutMs": 500, "unhealthyAfter": 1, "path": "/healthz" } } }""";
        var path = folder.Write($$"""
            { "routes": [ {{keptRoute}},
                { "path": "/watched", "proxy": { "targets": ["ws://{{watched.Authority}}/ws/x"], "healthCheck": { "intervalSeconds": 1, "timeoutMs": 500, "path": "/healthz" } } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        await WaitForTargetAsync(gateway, "/kept", 0, t => !t.GetProperty("healthy").GetBoolean(), "the kept route's target is unhealthy");
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (watched.HealthRequests < 2)
            {
                await Task.Delay(100, timeout.Token);
            }
        }

        folder.Write($$"""{ "routes": [ {{keptRoute}} ] }""");
        await gateway.WaitForOutputAsync("reloaded");
        await Task.Delay(TimeSpan.FromSeconds(1));
        var afterReload = watched.HealthRequests;
        await Task.Delay(TimeSpan.FromSeconds(3));

        Assert.Equal(afterReload, watched.HealthRequests);
        using var http = new HttpClient();
        var backends = await http.GetStringAsync(gateway.Http("/_sluice/backends"));
        Assert.DoesNotContain("/watched", backends, StringComparison.Ordinal);

        // The unchanged pool kept its state through the reload: still unhealthy, no fresh start as healthy.
        Assert.False((await BackendsAsync(gateway, "/kept"))[0].GetProperty("healthy").GetBoolean());

        // The dashboard shows the same: its snapshot carries each pool's targets, and its page has the panel. Its last
        // error is the last check's: on a loaded machine one check can time out (500 ms) instead, so the next is awaited.
        const string answered500 = "health check: GET /healthz answered 500";
        string? lastError = null;
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
        {
            while (true)
            {
                using var snapshot = JsonDocument.Parse(await http.GetStringAsync(gateway.Http("/_sluice/snapshot"), timeout.Token));
                var pool = snapshot.RootElement.GetProperty("pools").EnumerateArray().Single();
                Assert.Equal("/kept", pool.GetProperty("route").GetString());
                Assert.False(pool.GetProperty("targets")[0].GetProperty("healthy").GetBoolean());
                lastError = pool.GetProperty("targets")[0].GetProperty("lastError").GetString();
                if (lastError == answered500 || timeout.IsCancellationRequested)
                {
                    break;
                }

                await Task.Delay(200, CancellationToken.None);
            }
        }

        Assert.Equal(answered500, lastError);
        Assert.Contains("id=\"pools\"", await http.GetStringAsync(gateway.Http("/_sluice/")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_NamesEachPoolMistakeByItsPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            { "routes": [
                { "path": "/both", "proxy": { "target": "ws://127.0.0.1:9001/", "targets": ["ws://127.0.0.1:9002/"] } },
                { "path": "/none", "proxy": { "connectTimeoutMs": 100 } },
                { "path": "/empty", "proxy": { "targets": [] } },
                { "path": "/r/{room}", "proxy": { "targets": ["ws://127.0.0.1:9001/${params.rom}"], "loadBalancing": "round-robbin" } },
                { "path": "/h1", "proxy": { "targets": ["ws://127.0.0.1:9001/"], "loadBalancing": "hash" } },
                { "path": "/h2", "proxy": { "targets": ["ws://127.0.0.1:9001/"], "hashBy": "${subject}" } },
                { "path": "/h3", "proxy": { "targets": ["ws://127.0.0.1:9001/"], "loadBalancing": "hash", "hashBy": "${subjct}" } },
                { "path": "/c", "proxy": { "targets": ["ws://127.0.0.1:9001/"], "healthCheck": { "intervalSeconds": 0, "timeoutMs": 0, "unhealthyAfter": 0, "healthyAfter": 0, "path": "healthz" } } } ] }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("routes[0].proxy: has both target and targets; give exactly one", error, StringComparison.Ordinal);
        Assert.Contains("routes[1].proxy: has neither target nor targets; give exactly one", error, StringComparison.Ordinal);
        Assert.Contains("routes[2].proxy.targets: list at least one target", error, StringComparison.Ordinal);
        Assert.Contains("routes[3].proxy.targets[0]: 'ws://127.0.0.1:9001/${params.rom}': unknown route parameter 'rom'", error, StringComparison.Ordinal);
        Assert.Contains("routes[3].proxy.loadBalancing: 'round-robbin' is not a load balancing mode", error, StringComparison.Ordinal);
        Assert.Contains("round-robin", error, StringComparison.Ordinal);
        Assert.Contains("routes[4].proxy.hashBy: is required for loadBalancing hash", error, StringComparison.Ordinal);
        Assert.Contains("routes[5].proxy.hashBy: applies only to loadBalancing hash", error, StringComparison.Ordinal);
        Assert.Contains("routes[6].proxy.hashBy: '${subjct}': '${subjct}' is not an expression", error, StringComparison.Ordinal);
        Assert.Contains("routes[7].proxy.healthCheck.intervalSeconds:", error, StringComparison.Ordinal);
        Assert.Contains("routes[7].proxy.healthCheck.timeoutMs:", error, StringComparison.Ordinal);
        Assert.Contains("routes[7].proxy.healthCheck.unhealthyAfter:", error, StringComparison.Ordinal);
        Assert.Contains("routes[7].proxy.healthCheck.healthyAfter:", error, StringComparison.Ordinal);
        Assert.Contains("routes[7].proxy.healthCheck.path: 'healthz' must start with '/'", error, StringComparison.Ordinal);
    }
}
