using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Xunit;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>One gateway with jwt routes for the tests below; the jwt policy logs why it refused a token (Debug).</summary>
public sealed class JwtGateway : IAsyncLifetime
{
    public const string Secret = "a-hardening-secret-of-at-least-32-bytes";
    public const string AdminKey = "jwt-hardening-admin-key";

    private readonly ConfigFolder _folder = new();

    public GatewayProcess Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var config = _folder.Write($$"""
            {
              "admin": { "apiKey": "env:SLUICE_JWT_ADMIN_KEY" },
              "routes": [
                { "path": "/jwt", "handler": { "type": "echo" }, "upgrade": ["jwt"] },
                { "path": "/jwt-issuer", "handler": { "type": "echo" }, "upgrade": ["jwt-issuer"] }
              ],
              "policies": {
                "jwt": { "type": "jwt", "options": { "signingKey": "{{Secret}}" } },
                "jwt-issuer": { "type": "jwt", "options": { "signingKey": "{{Secret}}", "issuer": "https://issuer.example" } }
              }
            }
            """);
        Gateway = await GatewayProcess.StartAsync(config, new Dictionary<string, string>
        {
            ["SLUICE_JWT_ADMIN_KEY"] = AdminKey,
            ["Logging__LogLevel__Sluice.Policies.Jwt"] = "Debug",
        });
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        _folder.Dispose();
    }

    /// <summary>
    /// An HS256 token over <paramref name="payload"/> exactly as written, so claims can hold what no token library
    /// writes (400-digit numbers, strings, floats).
    /// </summary>
    public static string Token(string payload, string key = Secret)
    {
        var signingInput = Base64Url("""{"alg":"HS256","typ":"JWT"}""") + "." + Base64Url(payload);
        var signature = HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + Convert.ToBase64String(signature).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static string Token(string subject, long exp, string key = Secret, string? issuer = null) =>
        Token($$"""{"sub":"{{subject}}","exp":{{exp}}{{(issuer is null ? "" : $",\"iss\":\"{issuer}\"")}}}""", key);

    public static long In(TimeSpan span) => DateTimeOffset.UtcNow.Add(span).ToUnixTimeSeconds();

    public async Task<RawWebSocket> UpgradeAsync(string path, string? authorization = null)
    {
        var headers = authorization is null ? "" : $"Authorization: {authorization}\r\n";
        return await RawWebSocket.ConnectAsync(Gateway.Ws(path), extraHeaders: headers);
    }

    public async Task<JsonArray> ConnectionsAsync(string route)
    {
        using var admin = new HttpClient { BaseAddress = Gateway.Http("/_sluice/") };
        admin.DefaultRequestHeaders.Authorization = new("Bearer", AdminKey);
        return (await admin.GetFromJsonAsync<JsonArray>("connections?route=" + Uri.EscapeDataString(route)))!;
    }

    private static string Base64Url(string text) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(text)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

/// <summary>
/// Issue 19's jwt findings, through the real gateway process: which token is read, tokens with extreme claim values,
/// and what the 401 tells the client.
/// </summary>
public class JwtHardeningTests(JwtGateway fixture) : IClassFixture<JwtGateway>
{
    private readonly JwtGateway _fixture = fixture;

    [Fact]
    public async Task RefusedHeaderToken_IsNotRescuedByAValidQueryToken_401()
    {
        var forged = JwtGateway.Token("mallory", JwtGateway.In(TimeSpan.FromHours(1)), key: "not-the-key-not-the-key-not-the-key-!!");
        var valid = JwtGateway.Token("victim", JwtGateway.In(TimeSpan.FromHours(1)));

        using var raw = await _fixture.UpgradeAsync("/jwt?access_token=" + valid, "Bearer " + forged);

        Assert.Equal(401, raw.StatusCode);
    }

    [Fact]
    public async Task QueryToken_IsRead_WhenTheAuthorizationHeaderIsNotBearer()
    {
        // A browser resends cached Basic credentials on a WebSocket upgrade: that is not a header token.
        var valid = JwtGateway.Token("basic-user", JwtGateway.In(TimeSpan.FromHours(1)));

        using var raw = await _fixture.UpgradeAsync("/jwt?access_token=" + valid, "Basic dXNlcjpwYXNz");

        Assert.Equal(101, raw.StatusCode);
    }

    [Fact]
    public async Task ValidHeaderToken_Wins_OverAnyQueryToken()
    {
        var header = JwtGateway.Token("header-user", JwtGateway.In(TimeSpan.FromHours(1)));

        using var raw = await _fixture.UpgradeAsync("/jwt?access_token=garbage", "Bearer " + header);

        Assert.Equal(101, raw.StatusCode);

        // The connection joins the admin list as its pump starts, a moment after the 101 went out.
        var connections = await _fixture.ConnectionsAsync("/jwt");
        for (var tries = 0; tries < 100 && !connections.Any(c => (string?)c!["subject"] == "header-user"); tries++)
        {
            await Task.Delay(50);
            connections = await _fixture.ConnectionsAsync("/jwt");
        }

        Assert.Contains(connections, c => (string?)c!["subject"] == "header-user");
    }

    [Theory]
    [InlineData("253402300800")] // 10000-01-01
    [InlineData("99999999999999")]
    [InlineData("9223372036854775807")]
    public async Task ExpBeyondYear9999_IsAFarExpiry_TheConnectionWorks(string exp)
    {
        var token = JwtGateway.Token($$"""{"sub":"far","exp":{{exp}}}""");

        using var client = await WebSocketClient.ConnectAsync(_fixture.Gateway.Ws("/jwt?access_token=" + token));
        await client.SendTextAsync("still here");

        Assert.Equal("still here", await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("/jwt", "expired", "exp")]
    [InlineData("/jwt", "wrong-key", "key")]
    [InlineData("/jwt-issuer", "wrong-issuer", "issuer")]
    public async Task RefusedToken_ChallengeIsGeneric_TheReasonIsLogged(string route, string subject, string why)
    {
        var token = why switch
        {
            "exp" => JwtGateway.Token(subject, JwtGateway.In(TimeSpan.FromHours(-1)), issuer: "https://issuer.example"),
            "key" => JwtGateway.Token(subject, JwtGateway.In(TimeSpan.FromHours(1)), key: "not-the-key-not-the-key-not-the-key-!!"),
            _ => JwtGateway.Token(subject, JwtGateway.In(TimeSpan.FromHours(1)), issuer: "https://evil.example"),
        };

        using var raw = await _fixture.UpgradeAsync(route, "Bearer " + token);

        Assert.Equal(401, raw.StatusCode);
        var challenge = raw.ResponseHead.Split("\r\n").Single(l => l.StartsWith("WWW-Authenticate:", StringComparison.OrdinalIgnoreCase));
        Assert.Equal("""WWW-Authenticate: Bearer error="invalid_token", error_description="the token is not valid" """.TrimEnd(), challenge);
        await _fixture.Gateway.WaitForOutputAsync("bearer token refused: IDX");
    }

    [Fact]
    public async Task MissingToken_ChallengeHasNoError()
    {
        using var raw = await _fixture.UpgradeAsync("/jwt");

        Assert.Equal(401, raw.StatusCode);
        Assert.Contains("WWW-Authenticate: Bearer\r\n", raw.ResponseHead + "\r\n", StringComparison.Ordinal);
    }

    private static readonly string[] ExtremeValues =
    [
        "0", "-1", "-9223372036854775808", "-9223372036854775809", "9223372036854775807", "9223372036854775808",
        "18446744073709551616", "253402300799", "253402300800", "1e300", "1e400", "-1e400", "1e-400", "1.5", "0.0000001",
        "1700000000.999", "-0", "4.2E+15", new string('9', 400), "-" + new string('9', 400), "\"abc\"", "\"123\"", "\"\"",
        "\"1e400\"", "null", "true", "false", "[]", "[1]", "{}", "{\"a\":1}", "\"" + new string('9', 400) + "\"",
    ];

    [Property(MaxTest = 200)]
    public void ExtremeClaimValues_Get401OrPass_Never500(int seed)
    {
        var random = new Random(seed);
        var claims = new List<string> { "\"sub\":" + (random.Next(3) == 0 ? ExtremeValues[random.Next(ExtremeValues.Length)] : "\"fuzz\"") };
        if (random.Next(3) == 0)
        {
            claims.Add($"\"iss\":{(random.Next(2) == 0 ? "\"https://issuer.example\"" : ExtremeValues[random.Next(ExtremeValues.Length)])}");
        }

        if (random.Next(4) == 0)
        {
            claims.Add($"\"aud\":{ExtremeValues[random.Next(ExtremeValues.Length)]}");
        }

        foreach (var name in new[] { "exp", "nbf", "iat" })
        {
            switch (random.Next(4))
            {
                case 0:
                    break; // absent
                case 1:
                    claims.Add($"\"{name}\":{JwtGateway.In(TimeSpan.FromSeconds(random.Next(-7200, 7200)))}");
                    break;
                default:
                    claims.Add($"\"{name}\":{ExtremeValues[random.Next(ExtremeValues.Length)]}");
                    break;
            }
        }

        var payload = "{" + string.Join(',', claims.OrderBy(_ => random.Next())) + "}";
        var token = JwtGateway.Token(payload);
        var header = random.Next(2) == 0;

        var route = random.Next(2) == 0 ? "/jwt" : "/jwt-issuer";
        using var raw = (header ? _fixture.UpgradeAsync(route, "Bearer " + token) : _fixture.UpgradeAsync(route + "?access_token=" + token)).GetAwaiter().GetResult();

        Assert.True(raw.StatusCode is 101 or 401, $"{payload}: {raw.StatusCode}");
        Assert.False(_fixture.Gateway.HasExited);
    }
}
