using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>Start, listen, reload, limits and stop: what the gateway process does over its life.</summary>
public class LifecycleTests
{
    [Fact]
    public async Task Demo_RunsWithNoFlags_PrintsItsRoutesAndDashboard_AndServesEchoAndChat()
    {
        await using var gateway = await GatewayProcess.StartAsync(configPath: null);

        Assert.Contains("/echo", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("/chat", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("/demo/{room}", gateway.Output, StringComparison.Ordinal);
        Assert.Contains($"http://127.0.0.1:{gateway.Port}/_sluice", gateway.Output, StringComparison.Ordinal);

        using var echo = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        await echo.SendTextAsync("hello");
        Assert.Equal("hello", await echo.ReceiveTextAsync());

        using var chatter = await WebSocketClient.ConnectAsync(gateway.Ws("/demo/lobby"));
        await chatter.SendTextAsync("""{"user":"ann","text":"hi","password":"hunter2"}""");
        using var roomMessage = JsonDocument.Parse(await chatter.ReceiveTextAsync());
        Assert.Equal("***", roomMessage.RootElement.GetProperty("password").GetString());
        Assert.True(roomMessage.RootElement.TryGetProperty("gatewayMs", out _));

        using var subscriber = await WebSocketClient.ConnectAsync(gateway.Ws("/chat"));
        await subscriber.SendTextAsync("""{"op":"subscribe","topic":"t"}""");
        Assert.Equal("""{"op":"subscribed","topic":"t"}""", await subscriber.ReceiveTextAsync());

        using var http = new HttpClient();
        var page = await http.GetStringAsync(gateway.Http("/"));
        Assert.Contains("<html", page, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task UrlsFlag_WinsOverListenInTheFile()
    {
        using var folder = new ConfigFolder();
        var filePort = GatewayProcess.FreePort();
        var flagPort = GatewayProcess.FreePort();
        var path = folder.Write($$"""{ "listen": ["http://127.0.0.1:{{filePort}}"], "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");

        await using var gateway = await GatewayProcess.StartAsync(path, urls: $"http://127.0.0.1:{flagPort}");

        using var client = await WebSocketClient.ConnectAsync(new Uri($"ws://127.0.0.1:{flagPort}/echo"));
        Assert.Equal(WebSocketState.Open, client.State);
        await Assert.ThrowsAnyAsync<WebSocketException>(() => WebSocketClient.ConnectAsync(new Uri($"ws://127.0.0.1:{filePort}/echo")));
    }

    [Fact]
    public async Task ListenInTheFile_IsUsedWithoutTheFlag()
    {
        using var folder = new ConfigFolder();
        var port = GatewayProcess.FreePort();
        var path = folder.Write($$"""{ "listen": ["http://127.0.0.1:{{port}}"], "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");

        await using var gateway = await GatewayProcess.StartWithoutUrlsAsync(path, port);

        using var client = await WebSocketClient.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/echo"));
        Assert.Equal(WebSocketState.Open, client.State);
    }

    [Theory]
    [InlineData(PeerKind.Python)]
    [InlineData(PeerKind.Node)]
    public async Task Sigterm_Closes1001OnBothLegs_AndExits0(PeerKind backendKind)
    {
        await using var backend = await ExternalPeer.StartServerAsync(backendKind);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""{ "routes": [ { "path": "/p", "proxy": { "target": "ws://{{backend.Authority}}/echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/p"));
        await client.SendTextAsync("up");
        Assert.Equal("up", await client.ReceiveTextAsync());

        var receiveClose = client.ReceiveCloseAsync(TimeSpan.FromSeconds(20));
        var exitCode = await gateway.StopAsync();

        Assert.Equal(0, exitCode);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, (await receiveClose).Status);
        Assert.StartsWith("CLOSED /echo 1001", await backend.WaitForLineAsync("CLOSED /echo"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MaxConnections_Reached_Is503_WithRetryAfter()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "limits": { "maxConnections": 2 }, "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var first = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        using var second = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        using var third = await RawWebSocket.ConnectAsync(gateway.Ws("/echo"));

        Assert.Equal(503, third.StatusCode);
        Assert.Matches(@"(?im)^Retry-After: \d+\r?$", third.ResponseHead);
        await second.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await WaitUntilAsync(async () =>
        {
            using var retry = await RawWebSocket.ConnectAsync(gateway.Ws("/echo"));
            return retry.StatusCode == 101;
        });
    }

    [Fact]
    public async Task IdleTimeout_Closes1001()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "limits": { "idleTimeoutSeconds": 1 }, "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"), o => o.KeepAliveInterval = TimeSpan.Zero);

        var (status, _) = await client.ReceiveCloseAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, status);
    }

    [Fact]
    public async Task HotReload_AValidChange_AppliesToTheNextMessageOfAnOpenConnection_AndToNewRoutes()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write(Config("/before"));
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        await client.SendTextAsync("""{"tag":"x"}""");
        Assert.Equal("""{"tag":"x","stamp":"/before"}""", await client.ReceiveTextAsync());

        folder.Write(Config("/after") + "\n");
        await gateway.WaitForOutputAsync("reloaded");

        await client.SendTextAsync("""{"tag":"y"}""");
        Assert.Equal("""{"tag":"y","stamp":"/after"}""", await client.ReceiveTextAsync());
        using var added = await WebSocketClient.ConnectAsync(gateway.Ws("/after"));
        Assert.Equal(WebSocketState.Open, added.State);
        Assert.Equal(HttpStatusCode.NotFound, await StatusAsync(gateway, "/before"));

        static string Config(string route) => $$"""
            {
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["stamp"] },
                { "path": "{{route}}", "handler": { "type": "echo" } },
              ],
              "policies": { "stamp": { "type": "json-transform", "options": { "set": { "/stamp": "{{route}}" } } } },
            }
            """;
    }

    [Fact]
    public async Task HotReload_AnInvalidChange_IsLoggedWithItsPaths_AndTheRunningConfigurationStays()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["small"] } ], "policies": { "small": { "type": "size-limit", "options": { "maxBytes": 4, "action": "reply" } } } }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["smal"] } ], "policies": { "small": { "type": "size-limit", "options": { "maxBytes": 4 } } } }""");
        await gateway.WaitForOutputAsync("rejected");

        Assert.Contains("routes[0].inbound[0]: unknown policy 'smal'; did you mean 'small'?", gateway.Output, StringComparison.Ordinal);
        await client.SendTextAsync("12345");
        using var error = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal(413, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());
        Assert.Equal(WebSocketState.Open, client.State);
    }

    [Fact]
    public async Task HotReload_OfAdminPath_KeepsTheMappedAdminPathGuarded_AndSaysARestartIsNeeded()
    {
        using var folder = new ConfigFolder();
        const string Config = """{ "admin": { "path": "/_a", "apiKey": "env:SLUICE_RELOAD_ADMIN_KEY" }, "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""";
        var path = folder.Write(Config);
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string> { ["SLUICE_RELOAD_ADMIN_KEY"] = "reload-admin-key-0123456789" });

        folder.Write(Config.Replace("/_a", "/_b", StringComparison.Ordinal));
        await gateway.WaitForOutputAsync("reloaded");

        Assert.Contains("admin.path takes effect when the gateway restarts", gateway.Output, StringComparison.Ordinal);
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(gateway.Http("/_a/connections"))).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(gateway.Http("/_a/metrics"))).StatusCode);
    }

    [Fact]
    public async Task AdminWithoutAKey_RefusesCrossSiteRequestsAndForeignHosts_EvenFromLoopback()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write("""{ "routes": [ { "path": "/topics", "handler": { "type": "pubsub" } } ] }"""));
        using var http = new HttpClient();

        using var crossSite = new HttpRequestMessage(HttpMethod.Post, gateway.Http("/_sluice/topics/t")) { Content = new StringContent("{}") };
        crossSite.Headers.Add("Origin", "https://evil.example.com");
        using var rebound = new HttpRequestMessage(HttpMethod.Get, gateway.Http("/_sluice/connections"));
        rebound.Headers.Host = "evil.example.com";
        using var sameSite = new HttpRequestMessage(HttpMethod.Post, gateway.Http("/_sluice/topics/t")) { Content = new StringContent("{}") };
        sameSite.Headers.Add("Origin", $"http://127.0.0.1:{gateway.Port}");

        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(crossSite)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(rebound)).StatusCode);
        Assert.True((await http.SendAsync(sameSite)).IsSuccessStatusCode);
        Assert.True((await http.GetAsync(gateway.Http("/_sluice/connections"))).IsSuccessStatusCode);
    }

    [Fact]
    public async Task EnvValues_AreNeverPrinted_NotInTheBanner_NotInErrors_NotOnTheDashboard()
    {
        using var folder = new ConfigFolder();
        const string Secret = "s3cr3t-backend-token";
        var environment = new Dictionary<string, string> { ["SLUICE_SECRET_TARGET"] = $"ws://127.0.0.1:9/feed?token={Secret}" };
        var path = folder.Write("""{ "routes": [ { "path": "/feed", "proxy": { "target": "env:SLUICE_SECRET_TARGET" } } ] }""");
        await using (var gateway = await GatewayProcess.StartAsync(path, environment))
        {
            using var http = new HttpClient();
            var snapshot = await http.GetStringAsync(gateway.Http("/_sluice/snapshot"));
            using var rejected = await RawWebSocket.ConnectAsync(gateway.Ws("/feed"));

            Assert.Equal(502, rejected.StatusCode);
            Assert.Contains("env:SLUICE_SECRET_TARGET", gateway.Output, StringComparison.Ordinal);
            Assert.Contains("env:SLUICE_SECRET_TARGET", snapshot, StringComparison.Ordinal);
            Assert.DoesNotContain(Secret, snapshot, StringComparison.Ordinal);
            Assert.DoesNotContain(Secret, rejected.ResponseHead, StringComparison.Ordinal);
            await gateway.WaitForOutputAsync("unavailable");
            Assert.DoesNotContain(Secret, gateway.Output + gateway.Error, StringComparison.Ordinal);
        }

        environment["SLUICE_SECRET_TARGET"] = $"ws://${{params.nope}}/{Secret}";
        var (exitCode, _, error) = await GatewayProcess.RunAsync(["--check", "--config", path], environment);
        Assert.Equal(1, exitCode);
        Assert.Contains("env:SLUICE_SECRET_TARGET", error, StringComparison.Ordinal);
        Assert.DoesNotContain(Secret, error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PluginPolicyAndHandler_LoadFromThePluginsFolder()
    {
        using var folder = new ConfigFolder();
        folder.AddSamplePlugin();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/shout", "handler": { "type": "MyCompany.Policies.Shout, MyCompany.Policies" }, "inbound": ["audit"] } ],
              "policies": { "audit": { "type": "MyCompany.Policies.Audit, MyCompany.Policies", "options": { } } },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/shout"));

        await client.SendTextAsync("quiet please");

        Assert.Equal("QUIET PLEASE", await client.ReceiveTextAsync());
    }

    private static async Task<HttpStatusCode> StatusAsync(GatewayProcess gateway, string path)
    {
        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws(path));
        return (HttpStatusCode)raw.StatusCode;
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "The condition did not hold within 10 s.");
            await Task.Delay(100);
        }
    }
}
