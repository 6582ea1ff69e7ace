using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Http;

/// <summary>
/// The <c>http-auth</c> upgrade policy through the real gateway process, against real Kestrel services on loopback:
/// one service per behaviour (allowing, refusing, failing, misbehaving, slow, down), one route and policy for each.
/// </summary>
public sealed class HttpAuthTests(HttpAuthTests.Services services) : IClassFixture<HttpAuthTests.Services>
{
    [Fact]
    public async Task Allowed_SubjectAndClaimsOfTheAnswer_BecomeTheConnections_AndOnlyListedHeadersAreSent()
    {
        using var client = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/allow?room=blue"), o =>
        {
            o.SetRequestHeader("Authorization", "Bearer good");
            o.SetRequestHeader("X-Not-Listed", "secret");
        });

        var call = await services.Allow.NextCallAsync();
        Assert.Equal("application/json; charset=utf-8", call.ContentType);
        using var sent = JsonDocument.Parse(call.Body);
        Assert.Equal("/allow", sent.RootElement.GetProperty("path").GetString());
        Assert.Equal("blue", sent.RootElement.GetProperty("query").GetProperty("room").GetString());
        Assert.Equal("127.0.0.1", sent.RootElement.GetProperty("ip").GetString());
        var headers = sent.RootElement.GetProperty("headers").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(new Dictionary<string, string?> { ["Authorization"] = "Bearer good" }, headers);

        // The inbound script reads the connection's subject and claims, as ${subject} and ${claims.X} do.
        await client.SendTextAsync("who");
        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("alice", seen.RootElement.GetProperty("subject").GetString());
        Assert.Equal("admin", seen.RootElement.GetProperty("role").GetString());
        Assert.Equal(["a", "b"], seen.RootElement.GetProperty("groups").EnumerateArray().Select(g => g.GetString()));

        using var admin = new HttpClient();
        using var list = JsonDocument.Parse(await admin.GetStringAsync(services.Gateway.Http("/_sluice/connections?route=/allow")));
        Assert.Contains(list.RootElement.EnumerateArray(), c => c.GetProperty("subject").GetString() == "alice");
    }

    [Theory]
    [InlineData("/deny401", 401)]
    [InlineData("/deny403", 403)]
    public async Task RefusedByTheService_TheStatusIsPassedToTheClient(string route, int status)
    {
        var (answer, head, _) = await HttpTestHelpers.UpgradeAsync(services.Gateway.Ws(route));

        Assert.Equal(status, answer);
        var metrics = await services.Gateway.MetricsAsync(m => m.Sum("sluice_http_auth_decisions_total", "outcome=\"refused\"", $"policy=\"{route[1..]}\"") >= 1);
        Assert.True(metrics.Sum("sluice_http_auth_decisions_total", "outcome=\"refused\"", $"policy=\"{route[1..]}\"") >= 1);
        if (status == 401)
        {
            Assert.Contains("WWW-Authenticate: Bearer realm=\"test\"", head, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Theory]
    [InlineData("/fail500", "answered 500")]
    [InlineData("/notjson", "not JSON")]
    [InlineData("/subjectnumber", "subject is not a non-empty string")]
    [InlineData("/redirect", "redirects are not followed")]
    [InlineData("/slow", "no answer within 1000 ms")]
    [InlineData("/down", "the request failed")]
    public async Task AnswerThatIsNotADecision_Is502_WithTheReasonLoggedNotSent(string route, string logged)
    {
        var (status, head, body) = await HttpTestHelpers.UpgradeAsync(services.Gateway.Ws(route));

        Assert.Equal(502, status);
        Assert.DoesNotContain(logged, head + body, StringComparison.Ordinal);
        Assert.Contains("the authorization service failed", body, StringComparison.Ordinal);
        await services.Gateway.WaitForOutputAsync(logged, TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task AnswerOf100MB_Is502_AndIsNotReadWhole()
    {
        var before = services.Gateway.ResidentBytes();

        var (status, _, _) = await HttpTestHelpers.UpgradeAsync(services.Gateway.Ws("/huge"));

        Assert.Equal(502, status);
        await services.Gateway.WaitForOutputAsync("over 65536 bytes", TimeSpan.FromSeconds(20));
        var written = await services.Huge.Written.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(written < 50L * 1024 * 1024, $"the service wrote {written} bytes: the gateway read on");
        Assert.True(services.Gateway.ResidentBytes() - before < 50L * 1024 * 1024, "the gateway's memory grew by the answer's size");
    }

    [Fact]
    public async Task Cache_TwoUpgradesWithTheSameCredentials_AskTheServiceOnce()
    {
        using (await WebSocketClient.ConnectAsync(services.Gateway.Ws("/cached"), o => o.SetRequestHeader("Authorization", "Bearer same")))
        {
        }

        using var second = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/cached"), o => o.SetRequestHeader("Authorization", "Bearer same"));
        using var other = await WebSocketClient.ConnectAsync(services.Gateway.Ws("/cached"), o => o.SetRequestHeader("Authorization", "Bearer other"));

        Assert.Equal("Bearer same", JsonDocument.Parse((await services.Cached.NextCallAsync()).Body).RootElement.GetProperty("headers").GetProperty("Authorization").GetString());
        Assert.Equal("Bearer other", JsonDocument.Parse((await services.Cached.NextCallAsync()).Body).RootElement.GetProperty("headers").GetProperty("Authorization").GetString());
        Assert.False(services.Cached.Calls.Reader.TryRead(out _), "a cached credential was asked again");
        Assert.Equal(WebSocketState.Open, second.State);
    }

    /// <summary>The services, and one gateway with a route and an http-auth policy per service.</summary>
    public sealed class Services : HttpServicesFixture
    {
        public HttpService Allow { get; private set; } = null!;

        public HttpService Cached { get; private set; } = null!;

        public override async Task InitializeAsync()
        {
            Allow = await Add(HttpService.AnswerAsync(200, """{"subject":"alice","claims":{"role":"admin","groups":["a","b"]}}"""));
            Cached = await Add(HttpService.AnswerAsync(200, """{"subject":"bob"}"""));
            var deny401 = await Add(HttpService.StartAsync((context, _) =>
            {
                context.Response.StatusCode = 401;
                context.Response.Headers.WWWAuthenticate = "Bearer realm=\"test\"";
                return Task.CompletedTask;
            }));
            var deny403 = await Add(HttpService.AnswerAsync(403));
            var fail500 = await Add(HttpService.AnswerAsync(500, """{"subject":"alice"}"""));
            var notJson = await Add(HttpService.AnswerAsync(200, "hello"));
            var subjectNumber = await Add(HttpService.AnswerAsync(200, """{"subject":42}"""));
            var redirect = await Add(HttpService.StartAsync((context, _) =>
            {
                context.Response.Redirect(Allow.Url("/"));
                return Task.CompletedTask;
            }));
            var slow = await Add(HttpService.StartAsync(async (context, _) => await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted)));
            var huge = Huge.Url("/huge");

            // Generous timeouts (a loaded machine), except where the timeout is the test.
            string Policy(HttpService service, string extra = ", \"timeoutMs\": 15000") =>
                $$"""{ "type": "http-auth", "options": { "url": "{{service.Url("/auth")}}", "forwardHeaders": ["Authorization"] {{extra}} } }""";
            var config = $$"""
                {
                  "routes": [
                    { "path": "/allow", "handler": { "type": "echo" }, "upgrade": ["allow"], "inbound": ["who"] },
                    { "path": "/deny401", "handler": { "type": "echo" }, "upgrade": ["deny401"] },
                    { "path": "/deny403", "handler": { "type": "echo" }, "upgrade": ["deny403"] },
                    { "path": "/fail500", "handler": { "type": "echo" }, "upgrade": ["fail500"] },
                    { "path": "/notjson", "handler": { "type": "echo" }, "upgrade": ["notjson"] },
                    { "path": "/subjectnumber", "handler": { "type": "echo" }, "upgrade": ["subjectnumber"] },
                    { "path": "/redirect", "handler": { "type": "echo" }, "upgrade": ["redirect"] },
                    { "path": "/slow", "handler": { "type": "echo" }, "upgrade": ["slow"] },
                    { "path": "/huge", "handler": { "type": "echo" }, "upgrade": ["huge"] },
                    { "path": "/down", "handler": { "type": "echo" }, "upgrade": ["down"] },
                    { "path": "/cached", "handler": { "type": "echo" }, "upgrade": ["cached"] }
                  ],
                  "policies": {
                    "allow": {{Policy(Allow)}},
                    "deny401": {{Policy(deny401)}},
                    "deny403": {{Policy(deny403)}},
                    "fail500": {{Policy(fail500)}},
                    "notjson": {{Policy(notJson)}},
                    "subjectnumber": {{Policy(subjectNumber)}},
                    "redirect": {{Policy(redirect)}},
                    "slow": {{Policy(slow, ", \"timeoutMs\": 1000")}},
                    "huge": { "type": "http-auth", "options": { "url": "{{huge}}", "timeoutMs": 20000 } },
                    "down": { "type": "http-auth", "options": { "url": "http://127.0.0.1:{{GatewayProcess.FreePort()}}/auth" } },
                    "cached": {{Policy(Cached, ", \"timeoutMs\": 15000, \"cacheSeconds\": 600")}},
                    "who": { "type": "script", "options": { "source": "(data, context) => JSON.stringify({ subject: context.subject, role: context.claims.role, groups: context.claims.groups })" } }
                  }
                }
                """;
            await StartGatewayAsync(config);
        }
    }
}
