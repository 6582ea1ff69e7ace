using System.Net.WebSockets;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>api-key, jwt, origin and connection-rate-limit on the HTTP upgrade, hosted and proxied.</summary>
public class UpgradePolicyTests
{
    private const string Secret = "a-test-signing-key-of-32-bytes!!";

    private static async Task<int> UpgradeStatusAsync(Uri uri, string extraHeaders = "")
    {
        using var raw = await RawWebSocket.ConnectAsync(uri, extraHeaders: extraHeaders);
        return raw.StatusCode;
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task ApiKey_FromHeaderQueryOrEnvironment_SetsTheSubject_WrongOrMissingGets401(Mode mode)
    {
        Environment.SetEnvironmentVariable("SLUICE_TEST_ALICE_KEY", "k-alice");
        await using var harness = await PolicyHarness.StartAsync(p =>
        {
            p.UseUpgradePolicy(new ApiKeyPolicy(new()
            {
                Header = "X-Api-Key",
                Query = "apikey",
                Keys = [new() { Key = "env:SLUICE_TEST_ALICE_KEY", Subject = "alice" }, new() { Key = "k-bob", Subject = "bob" }],
            }));
            p.Inbound((m, ctx) => WebSocketMessage.FromText($"{ctx.Connection.Subject}:{m.Text}"));
        });

        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode)));
        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode), "X-Api-Key: k-wrong\r\n"));
        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode, "?apikey=k-bo")));

        using var alice = await WebSocketClient.ConnectAsync(harness.Uri(mode), o => o.SetRequestHeader("X-Api-Key", "k-alice"));
        using var bob = await WebSocketClient.ConnectAsync(harness.Uri(mode, "?apikey=k-bob"));
        await alice.SendTextAsync("hi");
        Assert.Equal("alice:hi", await alice.ReceiveTextAsync());
        await bob.SendTextAsync("hi");
        Assert.Equal("bob:hi", await bob.ReceiveTextAsync());
    }

    [Fact]
    public void ApiKey_WithAnUnsetEnvironmentVariable_IsAConfigurationError()
    {
        var error = Assert.Throws<PolicyConfigurationException>(() => new ApiKeyPolicy(new() { Keys = [new() { Key = "env:SLUICE_TEST_NOT_SET", Subject = "x" }] }));
        Assert.Equal("keys[0].key: the environment variable SLUICE_TEST_NOT_SET is not set", Assert.Single(error.Errors));
    }

    [Fact]
    public async Task ApiKey_AsAnAuthenticationScheme_WorksWithRequireAuthorization()
    {
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.UseAuthentication();
                app.UseAuthorization();
                app.MapWebSocket("/secure", ws => ws.OnMessage((m, c) => c.Subject)).RequireAuthorization();
            },
            services =>
            {
                services.AddAuthentication("keys").AddApiKey("keys", o => o.Keys.Add(new() { Key = "k-carol", Subject = "carol" }));
                services.AddAuthorization();
            });

        Assert.Equal(401, await UpgradeStatusAsync(server.WebSocketUri("/secure")));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/secure"), o => o.SetRequestHeader("X-Api-Key", "k-carol"));
        await client.SendTextAsync("who");
        Assert.Equal("carol", await client.ReceiveTextAsync());
    }

    private static string Token(string subject, TimeSpan lifetime, string key = Secret, string? audience = null, DateTime? now = null) =>
        new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Subject = new ClaimsIdentity([new Claim("sub", subject)]),
            NotBefore = (now ?? DateTime.UtcNow).AddMinutes(-1),
            IssuedAt = (now ?? DateTime.UtcNow).AddMinutes(-1),
            Expires = (now ?? DateTime.UtcNow) + lifetime,
            Audience = audience,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
        });

    internal static string Token(string subject, TimeSpan lifetime, TimeProvider time) => Token(subject, lifetime, now: time.GetUtcNow().UtcDateTime);

    internal static Task<PolicyHarness> StartJwtAsync(JwtPolicyOptions options, TimeProvider? time = null) =>
        PolicyHarness.StartAsync((p, services) =>
        {
            p.UseUpgradePolicy(new JwtPolicy(options, services.GetRequiredService<ILoggerFactory>(), timeProvider: time));
            p.Inbound((m, ctx) => WebSocketMessage.FromText($"{ctx.Connection.Subject}:{m.Text}"));
        });

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Jwt_BearerHeaderOrAccessTokenQuery_SetsSubjectFromSub_InvalidGets401(Mode mode)
    {
        await using var harness = await StartJwtAsync(new() { SigningKey = Secret, Audience = "chat" });

        using var header = await WebSocketClient.ConnectAsync(harness.Uri(mode), o => o.SetRequestHeader("Authorization", "Bearer " + Token("ann", TimeSpan.FromHours(1), audience: "chat")));
        await header.SendTextAsync("hi");
        Assert.Equal("ann:hi", await header.ReceiveTextAsync());

        using var query = await WebSocketClient.ConnectAsync(harness.Uri(mode, "?access_token=" + Token("bob", TimeSpan.FromHours(1), audience: "chat")));
        await query.SendTextAsync("hi");
        Assert.Equal("bob:hi", await query.ReceiveTextAsync());

        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode)));
        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode, "?access_token=" + Token("eve", TimeSpan.FromHours(1), "another-key-that-is-32-bytes-long", "chat"))));
        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode, "?access_token=" + Token("ann", TimeSpan.FromHours(1), audience: "other"))));
        Assert.Equal(401, await UpgradeStatusAsync(harness.Uri(mode, "?access_token=" + Token("ann", TimeSpan.FromSeconds(-30), audience: "chat"))));
        using var raw = await RawWebSocket.ConnectAsync(harness.Uri(mode), extraHeaders: "Authorization: Bearer not.a.token\r\n");
        Assert.Contains("WWW-Authenticate: Bearer", raw.ResponseHead, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Jwt_ClosesTheConnectionWith1008_WhenTheTokenExpires(Mode mode)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var harness = await StartJwtAsync(new() { SigningKey = Secret }, time);
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode, "?access_token=" + Token("ann", TimeSpan.FromSeconds(2), time)));

        await client.SendTextAsync("still valid");
        Assert.Equal("ann:still valid", await client.ReceiveTextAsync());
        time.Advance(TimeSpan.FromSeconds(2));

        var (status, reason) = await client.ReceiveCloseAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((WebSocketCloseStatus.PolicyViolation, "token expired"), (status, reason));
        if (mode == Mode.Proxy)
        {
            await MessagePolicyTests.WaitUntilAsync(() => harness.BackendCloses.Count == 1);
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, harness.BackendCloses[0].Status);
        }
    }

    [Fact]
    public async Task Jwt_Base64SigningKey_IsRawBytes()
    {
        var bytes = Encoding.UTF8.GetBytes(Secret);
        await using var harness = await StartJwtAsync(new() { SigningKey = "base64:" + Convert.ToBase64String(bytes) });
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host, "?access_token=" + Token("ann", TimeSpan.FromHours(1))));
        await client.SendTextAsync("x");
        Assert.Equal("ann:x", await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Origin_OnlyExactAllowedOrigins_Get403Otherwise_AndNonBrowsersPass(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(new OriginPolicy(new() { Allow = ["https://app.example.com"] })));

        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode), "Origin: https://app.example.com\r\n"));
        Assert.Equal(403, await UpgradeStatusAsync(harness.Uri(mode), "Origin: https://evil.example.com\r\n"));
        Assert.Equal(403, await UpgradeStatusAsync(harness.Uri(mode), "Origin: https://app.example.com.evil.com\r\n"));
        Assert.Equal(403, await UpgradeStatusAsync(harness.Uri(mode), "Origin: http://app.example.com\r\n"));
        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode)));
    }

    [Fact]
    public async Task Origin_RequireOrigin_RefusesRequestsWithoutOne()
    {
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(new OriginPolicy(new() { Allow = ["*"], RequireOrigin = true })));
        Assert.Equal(403, await UpgradeStatusAsync(harness.Uri(Mode.Host)));
        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(Mode.Host), "Origin: https://anything.example\r\n"));
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task ConnectionRateLimit_Gets429WithRetryAfter_PastThePermits(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p => p.UseUpgradePolicy(new ConnectionRateLimitPolicy(new() { Permits = 2, PerSeconds = 30 })));

        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode)));
        Assert.Equal(101, await UpgradeStatusAsync(harness.Uri(mode)));
        using var refused = await RawWebSocket.ConnectAsync(harness.Uri(mode));

        Assert.Equal(429, refused.StatusCode);
        var retryAfter = refused.ResponseHead.Split("\r\n").Single(l => l.StartsWith("Retry-After:", StringComparison.OrdinalIgnoreCase));
        Assert.InRange(int.Parse(retryAfter["Retry-After:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture), 1, 30);
    }

    [Fact]
    public async Task SubjectFromAnUpgradePolicy_ReachesTheBackendAsXSluiceSubject()
    {
        await using var backend = await TestServer.StartAsync(app => app.MapWebSocket("/headers", ws =>
            ws.OnConnected(c => c.SendAsync(c.RequestHeaders["X-Sluice-Subject"].ToString()))));
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.BaseAddress.Authority}/headers", p =>
            p.UseUpgradePolicy(new ApiKeyPolicy(new() { Keys = [new() { Key = "k-dan", Subject = "dan" }] }))));

        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"), o =>
        {
            o.SetRequestHeader("X-Api-Key", "k-dan");
            o.SetRequestHeader("X-Sluice-Subject", "mallory");
        });

        Assert.Equal("dan", await client.ReceiveTextAsync());
    }

    [Fact]
    public void Catalog_HasEveryContractType_WithTheRightKind()
    {
        var upgrade = new[] { "api-key", "jwt", "origin", "connection-rate-limit", "connection-limit", "http-auth" };
        var message = new[] { "size-limit", "rate-limit", "json-schema", "json-redact", "json-filter", "json-transform", "log", "timer", "script" };
        Assert.Equal(upgrade.Concat(message).Order(), BuiltInPolicyTypes.All.Keys.Order());
        Assert.All(upgrade, n => Assert.Equal(PolicyKind.Upgrade, BuiltInPolicyTypes.All[n].Kind));
        Assert.All(message, n => Assert.Equal(PolicyKind.Message, BuiltInPolicyTypes.All[n].Kind));
    }

    [Fact]
    public void OptionsBinding_RejectsUnknownMembers_AndReadsContractNames()
    {
        var binding = Json.PolicyJson.OptionsBinding;
        var options = JsonSerializer.Deserialize<RateLimitPolicyOptions>("""{ "permits": 10, "perSeconds": 1, "burst": 20, "partitionBy": "subject", "action": "reply", }""", binding)!;
        Assert.Equal((10, 1.0, 20, MessageRateLimitPartition.Subject, PolicyAction.Reply), (options.Permits, options.PerSeconds, options.Burst!.Value, options.PartitionBy, options.Action));

        var typo = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<SizeLimitPolicyOptions>("""{ "maxByte": 10 }""", binding));
        Assert.Contains("maxByte", typo.Message, StringComparison.Ordinal);
    }
}
