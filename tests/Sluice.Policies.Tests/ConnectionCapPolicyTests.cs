using System.Net.WebSockets;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>
/// connection-limit counts open connections per partition and gives a place back however the connection or its
/// upgrade ends; api-key's expiresAt refuses a key after its time and closes the connections opened with it, by the
/// TimeProvider the policy is given.
/// </summary>
public class ConnectionCapPolicyTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task ConnectionLimit_ByIp_RefusesWith429AndRetryAfter_AndAClosedConnectionGivesItsPlaceBack(Mode mode)
    {
        var policy = new ConnectionLimitPolicy(new() { Max = 2 });
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(policy));
        using var first = await WebSocketClient.ConnectAsync(harness.Uri(mode));
        using var second = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        using (var third = await RawWebSocket.ConnectAsync(harness.Uri(mode)))
        {
            Assert.Equal(429, third.StatusCode);
            Assert.Contains("Retry-After: 5", third.ResponseHead, StringComparison.OrdinalIgnoreCase);
        }

        await first.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        using var replacement = await ConnectWhenAllowedAsync(harness.Uri(mode));
        await replacement.SendTextAsync("still here");
        Assert.Equal("still here", await replacement.ReceiveTextAsync());
        Assert.Equal(2, policy.OpenFor("i:127.0.0.1"));

        await second.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        await replacement.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
        await WaitUntilAsync(() => policy.PartitionCount == 0);
    }

    [Fact]
    public async Task ConnectionLimit_AnUpgradeRefusedAfterTheCount_GivesItsPlaceBack()
    {
        var policy = new ConnectionLimitPolicy(new() { Max = 1 });
        await using var harness = await PolicyHarness.StartAsync(p => p
            .UseUpgradePolicy(policy)
            .UseUpgrade(u => u.HttpContext.Request.Headers.ContainsKey("X-Fail") ? UpgradeResult.Reject(403, "no") : UpgradeResult.Continue()));

        // Each refused upgrade was counted by the policy first; none keeps its place.
        for (var i = 0; i < 5; i++)
        {
            using var refused = await RawWebSocket.ConnectAsync(harness.Uri(Mode.Host), extraHeaders: "X-Fail: 1\r\n");
            Assert.Equal(403, refused.StatusCode);
        }

        using var client = await ConnectWhenAllowedAsync(harness.Uri(Mode.Host));
        using var over = await RawWebSocket.ConnectAsync(harness.Uri(Mode.Host));
        Assert.Equal(429, over.StatusCode);
    }

    [Fact]
    public async Task ConnectionLimit_BySubject_CountsEachSubjectApart_AndAnonymousClientsByIp()
    {
        var policy = new ConnectionLimitPolicy(new() { Max = 1, PartitionBy = ConnectionLimitPartition.Subject });
        await using var harness = await PolicyHarness.StartAsync(p => p
            .UseUpgrade(u =>
            {
                u.Subject = u.HttpContext.Request.Headers["X-User"].ToString() is { Length: > 0 } user ? user : null;
                return UpgradeResult.Continue();
            })
            .UseUpgradePolicy(policy));

        using var alice = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host), o => o.SetRequestHeader("X-User", "alice"));
        using (var again = await RawWebSocket.ConnectAsync(harness.Uri(Mode.Host), extraHeaders: "X-User: alice\r\n"))
        {
            Assert.Equal(429, again.StatusCode);
        }

        using var bob = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host), o => o.SetRequestHeader("X-User", "bob"));
        using var anonymous = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));
        using (var secondAnonymous = await RawWebSocket.ConnectAsync(harness.Uri(Mode.Host)))
        {
            Assert.Equal(429, secondAnonymous.StatusCode);
        }

        Assert.Equal(1, policy.OpenFor("s:alice"));
        Assert.Equal(1, policy.OpenFor("s:bob"));
        Assert.Equal(1, policy.OpenFor("i:127.0.0.1"));
    }

    [Fact]
    public void ConnectionLimit_Options_AreValidated()
    {
        var errors = new ConnectionLimitPolicyOptions { Max = 0, PartitionBy = (ConnectionLimitPartition)7 }.Validate().Select(e => e.Member).ToList();
        Assert.Equal(["max", "partitionBy"], errors);
        Assert.Throws<PolicyConfigurationException>(() => new ConnectionLimitPolicy(new() { Max = -1 }));
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task ApiKey_ExpiresAt_ClosesTheConnectionWith1008KeyExpired_AndRefusesTheKeyAfterwards(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var policy = new ApiKeyPolicy(
            new()
            {
                Keys =
                [
                    new() { Key = "k-soon", Subject = "soon", ExpiresAt = time.GetUtcNow().AddMinutes(1) },
                    new() { Key = "k-past", Subject = "past", ExpiresAt = time.GetUtcNow().AddSeconds(-1) },
                    new() { Key = "k-forever", Subject = "forever" },
                ],
            },
            "keys",
            time);
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(policy));

        using (var past = await RawWebSocket.ConnectAsync(harness.Uri(mode), extraHeaders: "X-Api-Key: k-past\r\n"))
        {
            Assert.Equal(401, past.StatusCode);
        }

        using var soon = await WebSocketClient.ConnectAsync(harness.Uri(mode), o => o.SetRequestHeader("X-Api-Key", "k-soon"));
        using var forever = await WebSocketClient.ConnectAsync(harness.Uri(mode), o => o.SetRequestHeader("X-Api-Key", "k-forever"));

        // A round trip first: the expiry timer is armed by the connected hook, which runs after the 101, and a timer
        // armed after the clock moved would be due that much later.
        await soon.SendTextAsync("armed");
        Assert.Equal("armed", await soon.ReceiveTextAsync());
        time.Advance(TimeSpan.FromSeconds(59));
        await soon.SendTextAsync("before");
        Assert.Equal("before", await soon.ReceiveTextAsync());

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "key expired"), await soon.ReceiveCloseAsync(Bound));

        using (var expired = await RawWebSocket.ConnectAsync(harness.Uri(mode), extraHeaders: "X-Api-Key: k-soon\r\n"))
        {
            Assert.Equal(401, expired.StatusCode);
        }

        // A key without expiresAt is untouched by time.
        time.Advance(TimeSpan.FromDays(400));
        await forever.SendTextAsync("after");
        Assert.Equal("after", await forever.ReceiveTextAsync());
    }

    [Fact]
    public async Task ApiKey_ExpiresAtBeyondTheTimersLongestStep_ClosesAtTheRightTime()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var policy = new ApiKeyPolicy(new() { Keys = [new() { Key = "k", Subject = "s", ExpiresAt = time.GetUtcNow().AddDays(70) }] }, "keys", time);
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(policy));
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host), o => o.SetRequestHeader("X-Api-Key", "k"));
        for (var day = 0; day < 69; day++)
        {
            time.Advance(TimeSpan.FromDays(1));
        }

        await client.SendTextAsync("day 69");
        Assert.Equal("day 69", await client.ReceiveTextAsync());
        time.Advance(TimeSpan.FromDays(1));
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "key expired"), await client.ReceiveCloseAsync(Bound));
    }

    private static async Task<ClientWebSocket> ConnectWhenAllowedAsync(Uri uri)
    {
        // The place of a connection that ended is given back when its request completes, just after the close.
        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            try
            {
                return await WebSocketClient.ConnectAsync(uri);
            }
            catch (WebSocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Bound;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not become true in time");
            await Task.Delay(50);
        }
    }
}
