using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// Issue 14's rewrite expressions through the gateway process and a python backend that echoes the path and query it
/// was asked for: headers, the jwt policy's claims and subject, the api-key policy's subject, the connection's id and an
/// environment variable, each URL-encoded; unknown expressions are config errors at the target's JSON path.
/// </summary>
public class RewriteExpressionTests
{
    private const string AdminKey = "rewrite-admin-key";

    [Fact]
    public async Task EveryExpressionKind_ReachesThePythonBackend_EncodedInItsPlace()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            {
              "admin": { "apiKey": "{{AdminKey}}" },
              "routes": [
                { "path": "/jwt/{room}", "upgrade": ["jwt"],
                  "proxy": { "target": "ws://{{backend.Authority}}/headers/${params.room}/${claims.tenant}/${connection.id}?s=${subject}&h=${headers.X-Tenant}&e=${env.REWRITE_TEST_VALUE}&none=${claims.missing}&g=${claims.groups}" } },
                { "path": "/key", "upgrade": ["api-key"], "proxy": { "target": "ws://{{backend.Authority}}/headers/key/${subject}" } }
              ],
              "policies": {
                "jwt": { "type": "jwt", "options": { "signingKey": "{{JwtGateway.Secret}}" } },
                "api-key": { "type": "api-key", "options": { "header": "X-Api-Key", "keys": [ { "key": "k-bob", "subject": "bob/../x y" } ] } }
              }
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string> { ["REWRITE_TEST_VALUE"] = "v/1?&#" });
        var token = JwtGateway.Token($$"""{"sub":"ann@example.com","tenant":"acme/eu?x=1#f","groups":["g 1","g2"],"exp":{{JwtGateway.In(TimeSpan.FromHours(1))}}}""");

        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/jwt/r%201"), o =>
        {
            o.SetRequestHeader("Authorization", "Bearer " + token);
            o.SetRequestHeader("X-Tenant", "t 1/%2E%2E?#&=");
        }))
        {
            using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
            var id = (string)(await ConnectionsAsync(gateway, "/jwt/{room}")).Single()!["id"]!;
            Assert.Equal(
                $"/headers/r%201/acme%2Feu%3Fx%3D1%23f/{id}?s=ann%40example.com&h=t%201%2F%252E%252E%3F%23%26%3D&e=v%2F1%3F%26%23&none=&g=g%201",
                seen.RootElement.GetProperty("path").GetString());
        }

        using var keyed = await WebSocketClient.ConnectAsync(gateway.Ws("/key"), o => o.SetRequestHeader("X-Api-Key", "k-bob"));
        using var keySeen = JsonDocument.Parse(await keyed.ReceiveTextAsync());
        Assert.Equal("/headers/key/bob%2F..%2Fx%20y", keySeen.RootElement.GetProperty("path").GetString());

        using var dots = await RawWebSocket.ConnectAsync(gateway.Ws("/jwt/r"), extraHeaders: $"Authorization: Bearer {token}\r\nX-Tenant: ..\r\n");
        Assert.Equal(400, dots.StatusCode);
    }

    [Fact]
    public async Task UnknownExpressions_AreConfigErrors_AtTheTargetsPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            { "routes": [
              { "path": "/a/{room}", "proxy": { "target": "ws://127.0.0.1:9001/${params.room}/${foo.bar}" } },
              { "path": "/b", "proxy": { "target": "ws://127.0.0.1:9001/${connection.ip}" } },
              { "path": "/c", "proxy": { "target": "ws://127.0.0.1:9001/${headers.X}/${subject}/${claims.sub}/${connection.id}/${env.ANY}" } }
            ] }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("routes[0].proxy.target: 'ws://127.0.0.1:9001/${params.room}/${foo.bar}': '${foo.bar}' is not an expression", error, StringComparison.Ordinal);
        Assert.Contains("routes[1].proxy.target: 'ws://127.0.0.1:9001/${connection.ip}': '${connection.ip}' is not an expression", error, StringComparison.Ordinal);
        Assert.DoesNotContain("routes[2]", error, StringComparison.Ordinal);
    }

    private static async Task<JsonArray> ConnectionsAsync(GatewayProcess gateway, string route)
    {
        using var admin = new HttpClient { BaseAddress = gateway.Http("/_sluice/") };
        admin.DefaultRequestHeaders.Authorization = new("Bearer", AdminKey);
        return (await admin.GetFromJsonAsync<JsonArray>("connections?route=" + Uri.EscapeDataString(route)))!;
    }
}
