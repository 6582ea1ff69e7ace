using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Caps;

/// <summary>
/// <c>forwarded.trustedProxies</c>: from a trusted peer, <c>X-Forwarded-For</c> names the client for every <c>ip</c>
/// partition and for the <c>X-Forwarded-For</c> the backend (python3-websockets) sees; from any other peer the
/// forwarding headers are ignored, whatever they hold, and the client's own chain is never passed on.
/// </summary>
public class ClientAddressTests
{
    [Fact]
    public async Task FromATrustedPeer_XForwardedFor_IsTheClient_ForIpPartitions_AndTheBackend()
    {
        await using var python = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(python.Authority, """["10.0.0.0/8", "127.0.0.1"]""")));

        // One connection per minute per client address: the forwarded address is the partition.
        Assert.Equal(101, await StatusAsync(gateway, "198.51.100.7"));
        Assert.Equal(429, await StatusAsync(gateway, "198.51.100.7"));
        Assert.Equal(101, await StatusAsync(gateway, "198.51.100.8"));

        // The walk stops at the first address no trusted proxy vouched for: the client's own prefix does not count.
        Assert.Equal(101, await StatusAsync(gateway, "203.0.113.50, 198.51.100.9, 10.1.2.3"));
        Assert.Equal(429, await StatusAsync(gateway, "192.0.2.1, 198.51.100.9"));

        // IPv6 clients are counted per /64.
        Assert.Equal(101, await StatusAsync(gateway, "2001:db8::1"));
        Assert.Equal(429, await StatusAsync(gateway, "2001:db8::ffff"));
        Assert.Equal(101, await StatusAsync(gateway, "[2001:db8:0:1::1]:4711"));

        // An entry that is not an address stops the walk: the peer stays the client.
        Assert.Equal(101, await StatusAsync(gateway, "not-an-ip"));
        Assert.Equal(429, await StatusAsync(gateway, null));

        var seen = await BackendHeadersAsync(gateway, "203.0.113.50, 198.51.100.7, 10.1.2.3", "https");
        Assert.Equal("198.51.100.7, 10.1.2.3, 127.0.0.1", seen.GetProperty("x-forwarded-for").GetString());
        Assert.Equal("https", seen.GetProperty("x-forwarded-proto").GetString());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("""["10.0.0.0/8", "2001:db8::/32", "::1"]""")]
    public async Task FromAnUntrustedPeer_ForwardingHeaders_AreIgnored_AndNeverPassedOn(string? trusted)
    {
        await using var python = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(python.Authority, trusted)));

        Assert.Equal(101, await StatusAsync(gateway, "198.51.100.7"));

        // Each of these is still 127.0.0.1, whose one connection per minute is used up.
        var manyHops = string.Join(", ", Enumerable.Range(0, 300).Select(i => $"10.{i / 250}.{i % 250}.1"));
        foreach (var forwarded in new[] { "198.51.100.8", "garbage, ;;, 999.1.1.1,,", manyHops, "2001:db8::5", "::1", "[::1]:80, 127.0.0.1" })
        {
            Assert.Equal(429, await StatusAsync(gateway, forwarded));
        }

        Assert.False(gateway.HasExited);
        var seen = await BackendHeadersAsync(gateway, "203.0.113.50, 198.51.100.7", "https");
        Assert.Equal("127.0.0.1", seen.GetProperty("x-forwarded-for").GetString());
        Assert.Equal("http", seen.GetProperty("x-forwarded-proto").GetString());
    }

    [Fact]
    public async Task BadTrustedProxies_AndCaps_AreNamedByTheirJsonPaths()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            { "forwarded": { "trustedProxies": ["10.0.0.1/8", "garbage", "1", "10.0.0.0/33", "192.168.0.0/16", "::1"] },
              "limits": { "maxConnectionsPerIp": 0 },
              "routes": [ { "path": "/e", "handler": { "type": "echo" }, "upgrade": ["cap", "keys"] } ],
              "policies": {
                "cap": { "type": "connection-limit", "options": { "max": 0, "partitionBy": "room" } },
                "keys": { "type": "api-key", "options": { "keys": [ { "key": "k", "subject": "s", "expiresAt": "next tuesday" } ] } } } }
            """);
        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);
        var all = output + error;
        Assert.NotEqual(0, exitCode);
        Assert.Contains("forwarded.trustedProxies[0]", all, StringComparison.Ordinal);
        Assert.Contains("write 10.0.0.0/8", all, StringComparison.Ordinal);
        Assert.Contains("forwarded.trustedProxies[1]", all, StringComparison.Ordinal);
        Assert.Contains("forwarded.trustedProxies[2]", all, StringComparison.Ordinal);
        Assert.Contains("forwarded.trustedProxies[3]", all, StringComparison.Ordinal);
        Assert.DoesNotContain("forwarded.trustedProxies[4]", all, StringComparison.Ordinal);
        Assert.DoesNotContain("forwarded.trustedProxies[5]", all, StringComparison.Ordinal);
        Assert.Contains("limits.maxConnectionsPerIp", all, StringComparison.Ordinal);
        Assert.Contains("policies.cap.options.partitionBy", all, StringComparison.Ordinal);
        Assert.Contains("policies.keys.options.keys[0].expiresAt", all, StringComparison.Ordinal);

        var valid = folder.Write("""
            { "forwarded": { "trustedProxies": ["10.0.0.0/8", "::1"] }, "limits": { "maxConnectionsPerIp": 10 },
              "routes": [ { "path": "/e", "handler": { "type": "echo" }, "upgrade": ["cap", "keys"] } ],
              "policies": {
                "cap": { "type": "connection-limit", "options": { "max": 0 } },
                "keys": { "type": "api-key", "options": { "keys": [ { "key": "k", "subject": "s", "expiresAt": "2030-01-01T00:00:00Z" } ] } } } }
            """, "max.json");
        (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", valid);
        Assert.NotEqual(0, exitCode);
        Assert.Contains("policies.cap.options.max", output + error, StringComparison.Ordinal);
        Assert.DoesNotContain("expiresAt", output + error, StringComparison.Ordinal);
    }

    private static string Config(string backend, string? trusted) => $$"""
        {
          {{(trusted is null ? string.Empty : $$"""
          "forwarded": { "trustedProxies": {{trusted}} },
          """)}}
          "routes": [
            { "path": "/limited", "handler": { "type": "echo" }, "upgrade": ["one-per-minute"] },
            { "path": "/backend", "proxy": { "target": "ws://{{backend}}/headers/x" } } ],
          "policies": {
            "one-per-minute": { "type": "connection-rate-limit", "options": { "permits": 1, "perSeconds": 60, "partitionBy": "ip" } } }
        }
        """;

    private static async Task<int> StatusAsync(GatewayProcess gateway, string? forwardedFor)
    {
        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/limited"), extraHeaders: forwardedFor is null ? string.Empty : $"X-Forwarded-For: {forwardedFor}\r\n");
        return raw.StatusCode;
    }

    private static async Task<JsonElement> BackendHeadersAsync(GatewayProcess gateway, string forwardedFor, string proto)
    {
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/backend"), o =>
        {
            o.SetRequestHeader("X-Forwarded-For", forwardedFor);
            o.SetRequestHeader("X-Forwarded-Proto", proto);
        });
        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        return seen.RootElement.GetProperty("headers").Clone();
    }
}
