using System.Collections.Concurrent;
using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// Every expression kind of a proxy target through real sockets: the URL is built after the upgrade steps ran (so the
/// subject and claims they set are there), with the id the connection then has, and each value arrives whole.
/// </summary>
public class RewriteExpressionProxyTests
{
    private const string Env = "SLUICE_REWRITE_SOCKET_TEST";

    private static Task<TestServer> StartProxyAsync(RecordingBackend backend, string target, ConcurrentQueue<WebSocketConnection> connected) =>
        TestServer.StartAsync(app => app.MapWebSocketProxy("/p/{room}", $"ws://{backend.Authority}{target}", p =>
        {
            p.UseUpgrade(ctx =>
            {
                if (ctx.HttpContext.Request.Headers["X-Login"].ToString() is { Length: > 0 } login)
                {
                    ctx.Subject = login;
                    ctx.HttpContext.User = new ClaimsPrincipal(new ClaimsIdentity([new Claim("tenant", "acme/eu?x#y&z=%41")], "test"));
                }

                return UpgradeResult.Continue();
            });
            p.OnConnected(connected.Enqueue);
        }));

    [Fact]
    public async Task EveryExpressionKind_IsResolvedAfterTheUpgradeSteps_WithTheConnectionsOwnId()
    {
        Environment.SetEnvironmentVariable(Env, "s3cr3t/&=");
        await using var backend = await RecordingBackend.StartAsync();
        var connected = new ConcurrentQueue<WebSocketConnection>();
        await using var proxy = await StartProxyAsync(
            backend,
            $"/headers/r/${{params.room}}/${{connection.id}}?q=${{query.q}}&h=${{headers.X-Tenant}}&s=${{subject}}&c=${{claims.tenant}}&e=${{env.{Env}}}",
            connected);
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/a%20b?q=1%262"), o =>
        {
            o.SetRequestHeader("X-Tenant", "t 1/?#%&=");
            o.SetRequestHeader("X-Login", "alice smith");
        });

        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());

        var connection = Assert.Single(connected);
        var query = seen.RootElement.GetProperty("query");
        Assert.Equal($"r/a b/{connection.Id}", seen.RootElement.GetProperty("path").GetString());
        Assert.Equal("1&2", query.GetProperty("q").GetString());
        Assert.Equal("t 1/?#%&=", query.GetProperty("h").GetString());
        Assert.Equal("alice smith", query.GetProperty("s").GetString());
        Assert.Equal("acme/eu?x#y&z=%41", query.GetProperty("c").GetString());
        Assert.Equal("s3cr3t/&=", query.GetProperty("e").GetString());
        Assert.Equal(
            $"ws://{backend.Authority}/headers/r/a%20b/{connection.Id}?q=1%262&h=t%201%2F%3F%23%25%26%3D&s=alice%20smith&c=acme%2Feu%3Fx%23y%26z%3D%2541&e=s3cr3t%2F%26%3D",
            ((ProxyConnection)connection).BackendUri.OriginalString);
    }

    [Fact]
    public async Task MissingValues_AreEmpty_AndDotValues_Get400()
    {
        await using var backend = await RecordingBackend.StartAsync();
        var connected = new ConcurrentQueue<WebSocketConnection>();
        await using var proxy = await StartProxyAsync(backend, "/headers/x/${headers.X-Tenant}?s=${subject}&c=${claims.tenant}&e=${env.SLUICE_REWRITE_NOT_SET}", connected);

        using (var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p/r")))
        {
            using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
            Assert.Equal("x/", seen.RootElement.GetProperty("path").GetString());
            Assert.Equal("?s=&c=&e=", ((ProxyConnection)Assert.Single(connected)).BackendUri.Query);
        }

        using var dots = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/r"), extraHeaders: "X-Tenant: ..\r\n");
        Assert.Equal(400, dots.StatusCode);
        using var login = await RawWebSocket.ConnectAsync(proxy.WebSocketUri("/p/r"), extraHeaders: "X-Login: .\r\n");
        Assert.Equal(400, login.StatusCode);
        Assert.Single(connected);
    }
}
