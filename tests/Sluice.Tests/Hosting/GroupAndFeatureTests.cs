using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Hosting;

/// <summary>Route groups carry pipelines (socketify routers); features extend connections (socketify register).</summary>
public class GroupAndFeatureTests
{
    [Fact]
    public async Task Groups_CarryTheirInterceptorsToEveryEndpoint_AndNest_OuterFirst()
    {
        await using var server = await TestServer.StartAsync(app =>
        {
            var api = app.MapGroup("/api").WithWebSocketPipeline(p => p.Inbound(m => WebSocketMessage.FromText(m.Text + " >api")));
            api.MapWebSocket("/users", ws => ws.OnMessage((m, c) => m.Text + $" >users({c.RoutePattern})"));
            var v2 = api.MapGroup("/v2").WithWebSocketPipeline(p => p.Inbound(m => WebSocketMessage.FromText(m.Text + " >v2")));
            v2.MapWebSocket("/items", ws =>
            {
                ws.Inbound(m => WebSocketMessage.FromText(m.Text + " >items"));
                ws.OnMessage((m, c) => m.Text);
            });
            app.MapWebSocket("/outside", ws => ws.OnMessage((m, c) => m.Text));
        });

        Assert.Equal("x >api >users(/api/users)", await RoundTripAsync(server, "/api/users", "x"));
        Assert.Equal("x >api >v2 >items", await RoundTripAsync(server, "/api/v2/items", "x"));
        Assert.Equal("x", await RoundTripAsync(server, "/outside", "x"));
    }

    [Fact]
    public async Task Groups_CarryUpgradeSteps_And_EndpointConventionsApplyToTheUpgrade()
    {
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.UseAuthentication();
                app.UseAuthorization();
                var secured = app.MapGroup("/secure")
                    .WithWebSocketPipeline(p => p.UseUpgrade(ctx => ctx.HttpContext.Request.Query.ContainsKey("blocked")
                        ? UpgradeResult.Reject(451, "blocked by group")
                        : UpgradeResult.Continue()));
                secured.MapWebSocket("/chat", ws => ws.OnMessage((m, c) => $"{c.Subject}: {m.Text}")).RequireAuthorization();
            },
            services =>
            {
                services.AddAuthentication("Test").AddScheme<AuthenticationSchemeOptions, HeaderAuthentication>("Test", _ => { });
                services.AddAuthorization();
            });

        using (var anonymous = await RawWebSocket.ConnectAsync(server.WebSocketUri("/secure/chat")))
        {
            Assert.Equal(401, anonymous.StatusCode);
        }

        using (var blocked = await RawWebSocket.ConnectAsync(server.WebSocketUri("/secure/chat?blocked=1"), extraHeaders: "X-User: ann\r\n"))
        {
            Assert.Equal(451, blocked.StatusCode);
        }

        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/secure/chat"), o => o.SetRequestHeader("X-User", "ann"));
        await client.SendTextAsync("hi");
        Assert.Equal("ann: hi", await client.ReceiveTextAsync());
    }

    private sealed class Session : IAsyncDisposable
    {
        public static int Created;
        public static int Disposed;

        public Session() => Interlocked.Increment(ref Created);

        public List<string> Cart { get; } = [];

        public ValueTask DisposeAsync()
        {
            Interlocked.Increment(ref Disposed);
            return default;
        }
    }

    [Fact]
    public async Task Features_AreCreatedLazilyOncePerConnection_AndDisposedWhenItEnds()
    {
        var closed = new TaskCompletionSource();
        Session.Created = Session.Disposed = 0;
        await using var server = await TestServer.StartAsync(app =>
        {
            var shop = app.MapGroup("/shop").WithWebSocketPipeline(p => p.AddFeature(c => new Session()));
            shop.MapWebSocket("/cart", ws =>
            {
                ws.OnMessage((m, c) =>
                {
                    if (m.Text == "count")
                    {
                        return c.TryGetFeature<Session>(out var s) ? s.Cart.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none";
                    }

                    c.Feature<Session>().Cart.Add(m.Text);
                    return string.Join(",", c.Feature<Session>().Cart);
                });
                ws.OnClosed((c, i) => closed.TrySetResult());
            });
            shop.MapWebSocket("/browse", ws => ws.OnMessage((m, c) => "browsing"));
        });

        using (var browser = await WebSocketClient.ConnectAsync(server.WebSocketUri("/shop/browse")))
        {
            await browser.SendTextAsync("look");
            Assert.Equal("browsing", await browser.ReceiveTextAsync());
        }

        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/shop/cart"));
        await client.SendTextAsync("count");
        Assert.Equal("none", await client.ReceiveTextAsync());
        await client.SendTextAsync("apple");
        Assert.Equal("apple", await client.ReceiveTextAsync());
        await client.SendTextAsync("pear");
        Assert.Equal("apple,pear", await client.ReceiveTextAsync());
        Assert.Equal(1, Session.Created);

        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await HostModeTests.WaitUntilAsync(() => Session.Disposed == 1);
    }

    private sealed record Clock(DateTimeOffset ConnectedAt);

    [Fact]
    public async Task AppWideFeature_IsAvailableOnEveryEndpoint_AndAGroupCanOverrideIt()
    {
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.MapWebSocket("/a", ws => ws.OnMessage((m, c) => c.Feature<Clock>().ConnectedAt.Year.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                app.MapGroup("/g").WithWebSocketPipeline(p => p.AddFeature(c => new Clock(DateTimeOffset.UnixEpoch)))
                    .MapWebSocket("/b", ws => ws.OnMessage((m, c) => c.Feature<Clock>().ConnectedAt.Year.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            },
            services => services.AddSluice().AddConnectionFeature(c => new Clock(c.ConnectedAt)));

        Assert.Equal(DateTimeOffset.UtcNow.Year.ToString(System.Globalization.CultureInfo.InvariantCulture), await RoundTripAsync(server, "/a", "x"));
        Assert.Equal("1970", await RoundTripAsync(server, "/g/b", "x"));
    }

    [Fact]
    public async Task Feature_ThatWasNotRegistered_ExplainsHowToRegisterIt()
    {
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/plain", ws => ws.OnMessage((m, c) =>
        {
            try
            {
                c.Feature<Session>();
                return "unexpected";
            }
            catch (InvalidOperationException ex)
            {
                return ex.Message;
            }
        })));

        var answer = await RoundTripAsync(server, "/plain", "x");

        Assert.Contains("AddFeature<Session>()", answer, StringComparison.Ordinal);
    }

    private static async Task<string> RoundTripAsync(TestServer server, string path, string text)
    {
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri(path));
        await client.SendTextAsync(text);
        return await client.ReceiveTextAsync();
    }

    private sealed class HeaderAuthentication(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            var user = Request.Headers["X-User"].ToString();
            return Task.FromResult(user.Length == 0
                ? AuthenticateResult.NoResult()
                : AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, user)], "Test")), "Test")));
        }
    }
}
