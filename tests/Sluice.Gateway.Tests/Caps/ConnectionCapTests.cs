using System.Globalization;
using System.Net.WebSockets;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Caps;

/// <summary>
/// <c>limits.maxConnectionsPerIp</c>, the <c>connection-limit</c> upgrade policy and api-key's <c>expiresAt</c>,
/// through the gateway process.
/// </summary>
public class ConnectionCapTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task MaxConnectionsPerIp_Over_Gets429WithRetryAfter_AndPlacesComeBackOnCloseAndOnAFailedUpgrade()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write($$"""
            { "limits": { "maxConnectionsPerIp": 3 },
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" } },
                { "path": "/other", "handler": { "type": "echo" } },
                { "path": "/down", "proxy": { "target": "ws://127.0.0.1:{{ClosedPort()}}/", "connectTimeoutMs": 2000 } } ] }
            """));

        using var first = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        using var second = await WebSocketClient.ConnectAsync(gateway.Ws("/other"));

        // Each of these took the third place, then its backend failed: none keeps it. A place comes back when the
        // failed request ends, just after its 502 is written, so the next attempt may need a moment (bounded).
        for (var i = 0; i < 4; i++)
        {
            var status = await StatusAsync(gateway, "/down");
            for (var retry = 0; status == 429 && retry < 50; retry++)
            {
                await Task.Delay(100);
                status = await StatusAsync(gateway, "/down");
            }

            Assert.Equal(502, status);
        }

        using var third = await ConnectWhenAllowedAsync(gateway.Ws("/echo"));
        using (var over = await RawWebSocket.ConnectAsync(gateway.Ws("/other")))
        {
            Assert.Equal(429, over.StatusCode);
            Assert.Contains("Retry-After: ", over.ResponseHead, StringComparison.OrdinalIgnoreCase);
        }

        // The cap is per address, across routes, and the connections it let in work as before.
        await third.SendTextAsync("three");
        Assert.Equal("three", await third.ReceiveTextAsync());

        await second.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        using var fourth = await ConnectWhenAllowedAsync(gateway.Ws("/other"));
        await fourth.SendTextAsync("four");
        Assert.Equal("four", await fourth.ReceiveTextAsync());
        Assert.Equal(429, await StatusAsync(gateway, "/echo"));
    }

    [Fact]
    public async Task ConnectionLimit_ByIp_AndBySubject()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write("""
            { "routes": [
                { "path": "/by-ip", "handler": { "type": "echo" }, "upgrade": ["one-per-ip"] },
                { "path": "/by-subject", "handler": { "type": "echo" }, "upgrade": ["keys", "two-per-subject"] } ],
              "policies": {
                "one-per-ip": { "type": "connection-limit", "options": { "max": 1, "partitionBy": "ip" } },
                "two-per-subject": { "type": "connection-limit", "options": { "max": 2, "partitionBy": "subject" } },
                "keys": { "type": "api-key", "options": { "keys": [ { "key": "k-alice", "subject": "alice" }, { "key": "k-bob", "subject": "bob" } ] } } } }
            """));

        using (var only = await WebSocketClient.ConnectAsync(gateway.Ws("/by-ip")))
        {
            using var refused = await RawWebSocket.ConnectAsync(gateway.Ws("/by-ip"));
            Assert.Equal(429, refused.StatusCode);
            Assert.Contains("Retry-After: 5", refused.ResponseHead, StringComparison.OrdinalIgnoreCase);
            await only.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        }

        using var again = await ConnectWhenAllowedAsync(gateway.Ws("/by-ip"));

        using var alice1 = await WebSocketClient.ConnectAsync(gateway.Ws("/by-subject"), o => o.SetRequestHeader("X-Api-Key", "k-alice"));
        using var alice2 = await WebSocketClient.ConnectAsync(gateway.Ws("/by-subject"), o => o.SetRequestHeader("X-Api-Key", "k-alice"));
        Assert.Equal(429, await StatusAsync(gateway, "/by-subject", "X-Api-Key: k-alice\r\n"));
        using var bob = await WebSocketClient.ConnectAsync(gateway.Ws("/by-subject"), o => o.SetRequestHeader("X-Api-Key", "k-bob"));
        await bob.SendTextAsync("bob");
        Assert.Equal("bob", await bob.ReceiveTextAsync());
    }

    [Fact]
    public async Task ApiKeyExpiresAt_RefusesTheKeyAfterItsTime_AndClosesItsConnectionsWith1008KeyExpired()
    {
        using var folder = new ConfigFolder();
        static string Config(DateTimeOffset soon) => $$"""
            { "routes": [ { "path": "/keyed", "handler": { "type": "echo" }, "upgrade": ["keys"] } ],
              "policies": { "keys": { "type": "api-key", "options": { "keys": [
                { "key": "k-soon", "subject": "soon", "expiresAt": "{{soon.ToString("O", CultureInfo.InvariantCulture)}}" },
                { "key": "k-past", "subject": "past", "expiresAt": "2020-01-01T00:00:00+01:00" },
                { "key": "k-forever", "subject": "forever" } ] } } } }
            """;

        // The short expiry is written once the gateway runs (a slow start must not use it up), by a reload.
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(DateTimeOffset.UtcNow.AddDays(1))));
        folder.Write(Config(DateTimeOffset.UtcNow.AddSeconds(6)));
        await gateway.WaitForOutputAsync("reloaded");

        Assert.Equal(401, await StatusAsync(gateway, "/keyed", "X-Api-Key: k-past\r\n"));
        using var expiring = await WebSocketClient.ConnectAsync(gateway.Ws("/keyed"), o => o.SetRequestHeader("X-Api-Key", "k-soon"));
        using var forever = await WebSocketClient.ConnectAsync(gateway.Ws("/keyed"), o => o.SetRequestHeader("X-Api-Key", "k-forever"));

        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "key expired"), await expiring.ReceiveCloseAsync(Bound));
        Assert.Equal(401, await StatusAsync(gateway, "/keyed", "X-Api-Key: k-soon\r\n"));
        await forever.SendTextAsync("still open");
        Assert.Equal("still open", await forever.ReceiveTextAsync());
    }

    private static async Task<int> StatusAsync(GatewayProcess gateway, string path, string extraHeaders = "")
    {
        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws(path), extraHeaders: extraHeaders);
        return raw.StatusCode;
    }

    private static async Task<ClientWebSocket> ConnectWhenAllowedAsync(Uri uri)
    {
        // A place comes back when the request of the connection that ended completes, just after the close.
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            try
            {
                return await WebSocketClient.ConnectAsync(uri);
            }
            catch (WebSocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    private static int ClosedPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
