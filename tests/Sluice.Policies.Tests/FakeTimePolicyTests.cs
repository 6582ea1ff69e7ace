using System.Globalization;
using System.Net.WebSockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>
/// rate-limit, connection-rate-limit and jwt's close on expiry follow the TimeProvider they are given (or the app's,
/// when built by name from the catalog), so time is advanced here rather than waited for.
/// </summary>
public class FakeTimePolicyTests
{
    private const string Secret = "a-test-signing-key-of-32-bytes!!";

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task RateLimit_RefillsByTheTimeProvider_NotTheWallClock(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UsePolicy(new RateLimitPolicy(new() { Permits = 1, PerSeconds = 60, Action = PolicyAction.Reply }, "slow", time)).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("a");
        Assert.Equal("a", await client.ReceiveTextAsync());
        await client.SendTextAsync("b");
        Assert.Contains("rate limit exceeded", await client.ReceiveTextAsync(), StringComparison.Ordinal);

        time.Advance(TimeSpan.FromSeconds(59));
        await client.SendTextAsync("c");
        Assert.Contains("rate limit exceeded", await client.ReceiveTextAsync(), StringComparison.Ordinal);

        time.Advance(TimeSpan.FromSeconds(1));
        await client.SendTextAsync("d");
        Assert.Equal("d", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task RateLimit_ForgetsBudgetsOnceRefilled_WhenTheSweepRuns()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var policy = new RateLimitPolicy(new() { Permits = 1, PerSeconds = 10, Key = "/k", Action = PolicyAction.Reply }, "keyed", time);
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(policy).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));
        foreach (var k in new[] { "x", "y", "z" })
        {
            await client.SendTextAsync($$"""{"k":"{{k}}"}""");
            Assert.Equal($$"""{"k":"{{k}}"}""", await client.ReceiveTextAsync());
        }

        Assert.Equal(3, policy.BudgetCount);
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(3, policy.BudgetCount);
        time.Advance(TimeSpan.FromSeconds(5)); // the buckets are full again, and the sweep (every 10 s here) runs
        Assert.Equal(0, policy.BudgetCount);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task RateLimit_ByConnection_ForgetsAConnectionsBudgetsWhenItCloses(Mode mode)
    {
        // The clock never moves: only the close can release the budgets, so reconnecting cannot pile them up.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var policy = new RateLimitPolicy(new() { Permits = 1, PerSeconds = 3600, Key = "/k", Action = PolicyAction.Reply }, "hourly", time);
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(policy).InboundOnly());
        for (var round = 0; round < 3; round++)
        {
            using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));
            foreach (var k in new[] { "x", "y", "z" })
            {
                await client.SendTextAsync($$"""{"k":"{{k}}"}""");
                Assert.Equal($$"""{"k":"{{k}}"}""", await client.ReceiveTextAsync());
            }

            Assert.Equal(3, policy.BudgetCount);
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
            for (var waited = 0; policy.BudgetCount != 0 && waited < 10_000; waited += 20)
            {
                await Task.Delay(20);
            }

            Assert.Equal(0, policy.BudgetCount);
        }
    }

    [Fact]
    public async Task RateLimit_BuiltFromTheCatalog_UsesTheAppsTimeProvider()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await PolicyHarness.StartAsync(
            (p, services) =>
            {
                // The connection's keep-alive runs on the app's clock too: off, so that an hour of fake silence is not a lost client.
                p.ConfigureOptions(o => o.KeepAliveInterval = TimeSpan.Zero);
                p.UsePolicy((IMessageInterceptor)BuiltInPolicyTypes.All["rate-limit"].Create(
                    new RateLimitPolicyOptions { Permits = 1, PerSeconds = 3600, Action = PolicyAction.Reply },
                    new PolicyCreationContext("hourly", services, null))).InboundOnly();
            },
            services => services.AddSingleton<TimeProvider>(time));
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("a");
        Assert.Equal("a", await client.ReceiveTextAsync());
        await client.SendTextAsync("b");
        Assert.Contains("rate limit exceeded", await client.ReceiveTextAsync(), StringComparison.Ordinal);
        time.Advance(TimeSpan.FromHours(1));
        await client.SendTextAsync("c");
        Assert.Equal("c", await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task ConnectionRateLimit_RetryAfterCountsDownTheWindow_AndANewWindowLetsIn(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await PolicyHarness.StartAsync(p =>
            p.UseUpgradePolicy(new ConnectionRateLimitPolicy(new() { Permits = 1, PerSeconds = 10 }, timeProvider: time)));

        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode)));
        Assert.Equal((429, 10), await RefusedAsync(harness.Uri(mode)));
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal((429, 6), await RefusedAsync(harness.Uri(mode)));
        time.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode)));
        Assert.Equal((429, 10), await RefusedAsync(harness.Uri(mode)));
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Jwt_ATokenExpiringIn70Days_IsClosedAt70Days_NotAtTheTimersThirtyDayStep(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await UpgradePolicyTests.StartJwtAsync(new() { SigningKey = Secret }, time);
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode, "?access_token=" + UpgradePolicyTests.Token("ann", TimeSpan.FromDays(70), time)));
        await client.SendTextAsync("day 0");
        Assert.Equal("ann:day 0", await client.ReceiveTextAsync());

        // Each step passes one of the policy's 30-day timer steps; the connection must stay open through them.
        foreach (var (advance, day) in new[] { (TimeSpan.FromDays(30), 30), (TimeSpan.FromDays(30), 60), (TimeSpan.FromDays(10) - TimeSpan.FromSeconds(1), 70) })
        {
            time.Advance(advance);
            await client.SendTextAsync($"day {day}");
            Assert.Equal($"ann:day {day}", await client.ReceiveTextAsync());
        }

        time.Advance(TimeSpan.FromSeconds(1));
        var (status, reason) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "token expired"), (status, reason));
    }

    private static async Task<int> UpgradeStatusAsync(Uri uri)
    {
        using var raw = await RawWebSocket.ConnectAsync(uri);
        return raw.StatusCode;
    }

    private static async Task<(int Status, int RetryAfter)> RefusedAsync(Uri uri)
    {
        using var raw = await RawWebSocket.ConnectAsync(uri);
        var retryAfter = raw.ResponseHead.Split("\r\n").Single(l => l.StartsWith("Retry-After:", StringComparison.OrdinalIgnoreCase));
        return (raw.StatusCode, int.Parse(retryAfter["Retry-After:".Length..].Trim(), CultureInfo.InvariantCulture));
    }
}
