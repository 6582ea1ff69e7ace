using System.Net.WebSockets;
using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Revocation;

/// <summary>
/// A reload that changes a route's upgrade policies re-checks its open connections with the request each was opened
/// with: those now refused are closed with 1008 <c>credentials revoked</c>, the others stay and keep working.
/// </summary>
public class RevocationTests
{
    private const string KeyOne = "a-first-signing-key-of-32-bytes!!!";
    private const string KeyTwo = "a-second-signing-key-of-32-bytes!!";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Reload_ThatRemovesAKey_ClosesTheHalfOf1000ConnectionsOpenedWithIt_AndTheOtherHalfKeepsWorking()
    {
        const int PerKey = 500;
        using var folder = new ConfigFolder();
        static string Config(bool withB) => $$"""
            { "routes": [ { "path": "/r", "handler": { "type": "echo" }, "upgrade": ["cap", "keys"] } ],
              "policies": {
                "cap": { "type": "connection-limit", "options": { "max": 1001, "partitionBy": "ip" } },
                "keys": { "type": "api-key", "options": { "keys": [ { "key": "k-a", "subject": "a" }{{(withB ? """, { "key": "k-b", "subject": "b" }""" : string.Empty)}} ] } } } }
            """;
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config(withB: true)));

        var keeps = new ClientWebSocket[PerKey];
        var loses = new ClientWebSocket[PerKey];
        try
        {
            // A few at a time: enough to be quick, few enough for a loaded two-core machine.
            await ForEachAsync(PerKey, async i =>
            {
                keeps[i] = await WebSocketClient.ConnectAsync(gateway.Ws("/r"), o => o.SetRequestHeader("X-Api-Key", "k-a"));
                loses[i] = await WebSocketClient.ConnectAsync(gateway.Ws("/r"), o => o.SetRequestHeader("X-Api-Key", "k-b"));
            });

            folder.Write(Config(withB: false));
            await gateway.WaitForOutputAsync($"{2 * PerKey} open connections re-checked, {PerKey} closed", Bound);

            await ForEachAsync(PerKey, async i =>
            {
                Assert.Equal((WebSocketCloseStatus.PolicyViolation, "credentials revoked"), await loses[i].ReceiveCloseAsync(Bound));
                await keeps[i].SendTextAsync($"still {i}");
                Assert.Equal($"still {i}", await keeps[i].ReceiveTextAsync(Bound));
            });

            // The re-check skipped the connection-limit (it counts): 500 open plus this one are within its 1001.
            using var newcomer = await WebSocketClient.ConnectAsync(gateway.Ws("/r"), o => o.SetRequestHeader("X-Api-Key", "k-a"));
            await newcomer.SendTextAsync("new");
            Assert.Equal("new", await newcomer.ReceiveTextAsync());

            // The removed key is refused (once the revoked connections, closed by now, gave their places back).
            foreach (var lost in loses)
            {
                lost.Dispose();
            }

            var deadline = DateTime.UtcNow + Bound;
            int status;
            while ((status = await StatusAsync(gateway, "/r", "X-Api-Key: k-b\r\n")) == 429 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }

            Assert.Equal(401, status);
        }
        finally
        {
            foreach (var socket in keeps.Concat(loses))
            {
                socket?.Dispose();
            }
        }
    }

    [Fact]
    public async Task Reload_ThatNarrowsOriginsAndRotatesTheJwtKey_ClosesOnlyTheConnectionsNowRefused()
    {
        using var folder = new ConfigFolder();
        static string Config(string origins, string jwtKey) => $$"""
            { "routes": [
                { "path": "/o", "handler": { "type": "echo" }, "upgrade": ["origins"] },
                { "path": "/j", "handler": { "type": "echo" }, "upgrade": ["jwt"] },
                { "path": "/untouched", "handler": { "type": "echo" }, "upgrade": ["keys"] } ],
              "policies": {
                "origins": { "type": "origin", "options": { "allow": [{{origins}}] } },
                "jwt": { "type": "jwt", "options": { "signingKey": "{{jwtKey}}" } },
                "keys": { "type": "api-key", "options": { "keys": [ { "key": "k", "subject": "s" } ] } } } }
            """;
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config("\"https://a.example\", \"https://b.example\"", KeyOne)));

        using var fromA = await WebSocketClient.ConnectAsync(gateway.Ws("/o"), o => o.SetRequestHeader("Origin", "https://a.example"));
        using var fromB = await WebSocketClient.ConnectAsync(gateway.Ws("/o"), o => o.SetRequestHeader("Origin", "https://b.example"));
        using var oldToken = await WebSocketClient.ConnectAsync(gateway.Ws("/j"), o => o.SetRequestHeader("Authorization", "Bearer " + Token(KeyOne)));
        using var oldQueryToken = await WebSocketClient.ConnectAsync(gateway.Ws("/j?access_token=" + Token(KeyOne)));
        using var untouched = await WebSocketClient.ConnectAsync(gateway.Ws("/untouched"), o => o.SetRequestHeader("X-Api-Key", "k"));

        folder.Write(Config("\"https://a.example\"", KeyTwo));
        await gateway.WaitForOutputAsync("route /o changed: 2 open connections re-checked, 1 closed", Bound);
        await gateway.WaitForOutputAsync("route /j changed: 2 open connections re-checked, 2 closed", Bound);

        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "credentials revoked"), await fromB.ReceiveCloseAsync(Bound));
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "credentials revoked"), await oldToken.ReceiveCloseAsync(Bound));
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "credentials revoked"), await oldQueryToken.ReceiveCloseAsync(Bound));
        foreach (var open in new[] { fromA, untouched })
        {
            await open.SendTextAsync("still open");
            Assert.Equal("still open", await open.ReceiveTextAsync());
        }

        Assert.DoesNotContain("route /untouched changed", gateway.Output, StringComparison.Ordinal);

        // The rotated key is the one new connections need.
        using var rotated = await WebSocketClient.ConnectAsync(gateway.Ws("/j"), o => o.SetRequestHeader("Authorization", "Bearer " + Token(KeyTwo)));
        Assert.Equal(401, await StatusAsync(gateway, "/j", $"Authorization: Bearer {Token(KeyOne)}\r\n"));
    }

    private static string Token(string signedWith)
    {
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Subject = new ClaimsIdentity([new Claim("sub", "carol")]),
            Expires = DateTime.UtcNow.AddHours(1),
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(signedWith)), SecurityAlgorithms.HmacSha256),
        });
    }

    private static async Task<int> StatusAsync(GatewayProcess gateway, string path, string extraHeaders)
    {
        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws(path), extraHeaders: extraHeaders);
        return raw.StatusCode;
    }

    private static async Task ForEachAsync(int count, Func<int, Task> body)
    {
        var next = -1;
        var workers = Enumerable.Range(0, 8).Select(async _ =>
        {
            for (var i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
            {
                await body(i);
            }
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await Task.WhenAll(workers).WaitAsync(timeout.Token);
    }
}
