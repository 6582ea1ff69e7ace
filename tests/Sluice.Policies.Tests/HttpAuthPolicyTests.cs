using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>
/// <c>http-auth</c> in code, host and proxy mode, against a real Kestrel auth service: the subject it answers, and a
/// cache whose entries expire on the policy's clock.
/// </summary>
public sealed class HttpAuthPolicyTests
{
    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task CachedAnswer_IsReused_UntilItExpiresOnThePolicysClock(Mode mode)
    {
        var calls = 0;
        await using var service = await StartServiceAsync(async context =>
        {
            Interlocked.Increment(ref calls);
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"subject":"carol"}""");
        });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var services = new ServiceCollection().AddLogging().AddSluiceHttpCallouts().BuildServiceProvider();
        var policy = new HttpAuthPolicy(
            new HttpAuthPolicyOptions { Url = service.Url, ForwardHeaders = ["Authorization"], TimeoutMs = 10_000, CacheSeconds = 10 },
            services.GetRequiredService<IHttpClientFactory>(),
            services.GetRequiredService<ILoggerFactory>(),
            timeProvider: time);
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UseUpgradePolicy(policy);
            p.Inbound((m, ctx) => WebSocketMessage.FromText($"{ctx.Connection.Subject}:{m.Text}"));
        });

        async Task ConnectAsync()
        {
            using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode), o => o.SetRequestHeader("Authorization", "Bearer c"));
            await client.SendTextAsync("hi");
            Assert.Equal("carol:hi", await client.ReceiveTextAsync());
        }

        await ConnectAsync();
        await ConnectAsync();
        Assert.Equal(1, Volatile.Read(ref calls));

        time.Advance(TimeSpan.FromSeconds(11));
        await ConnectAsync();
        Assert.Equal(2, Volatile.Read(ref calls));
    }

    [Fact]
    public void Options_AreValidatedWithTheirMembers()
    {
        var errors = new HttpAuthPolicyOptions { Url = "/relative", TimeoutMs = 700_000, MaxCacheEntries = 0 }.Validate().Select(e => e.ToString()).ToList();

        Assert.Equal(
            ["url: '/relative' is not an absolute http:// or https:// URL", "timeoutMs: must be between 1 and 600000", "maxCacheEntries: must be at least 1"],
            errors);
    }

    private static async Task<AuthService> StartServiceAsync(RequestDelegate respond)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.Run(respond);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new AuthService(app, address + "/auth");
    }

    private sealed record AuthService(WebApplication App, string Url) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => App.DisposeAsync();
    }
}
