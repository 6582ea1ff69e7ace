using System.Net;
using System.Net.WebSockets;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// The rows of gateway-config.md, driven from outside the process: the gateway runs as its users run it, the backends
/// are python3-websockets and node <c>ws</c>, and some clients are too.
/// </summary>
public class ContractTests(ContractGateway fixture) : IClassFixture<ContractGateway>
{
    private readonly ContractGateway _fixture = fixture;

    private Uri Ws(string path) => _fixture.Gateway.Ws(path);

    [Theory]
    [InlineData(PeerKind.Python, "/py", "sizes")]
    [InlineData(PeerKind.Node, "/node", "sizes")]
    [InlineData(PeerKind.Python, "/node", "order")]
    [InlineData(PeerKind.Node, "/py", "fragmented")]
    [InlineData(PeerKind.Python, "/echo", "order")]
    public async Task Proxy_CarriesEveryMessage_BetweenNonDotNetPeers(PeerKind client, string route, string scenario)
    {
        var result = await ExternalPeer.RunClientAsync(client, Ws(route), scenario);

        Assert.StartsWith("OK " + scenario, result, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(PeerKind.Python, "/node")]
    [InlineData(PeerKind.Node, "/py")]
    public async Task ClientClose_IsRelayedToTheBackend_WithTheSameCodeAndReason(PeerKind client, string route)
    {
        var backend = route == "/py" ? _fixture.Python : _fixture.Node;
        var result = await ExternalPeer.RunClientAsync(client, Ws(route + "?tag=" + Guid.NewGuid().ToString("N")), "close");

        Assert.Equal("OK close 4000 python-bye".Replace("python", client == PeerKind.Python ? "python" : "node", StringComparison.Ordinal), result);
        var line = await backend.WaitForLineAsync("CLOSED /echo 4000");
        Assert.EndsWith(client == PeerKind.Python ? "python-bye" : "node-bye", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BackendClose_IsRelayedToTheClient_WithTheSameCodeAndReason()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/backend-closes"));
        await client.SendTextAsync("please close");

        var (status, reason) = await client.ReceiveCloseAsync();

        Assert.Equal((WebSocketCloseStatus)4001, status);
        Assert.Equal("backend-4001", reason);
    }

    [Fact]
    public async Task BackendLostWithoutACloseFrame_Closes1014()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/backend-dies"));
        await client.SendTextAsync("die");

        var (status, _) = await client.ReceiveCloseAsync();

        Assert.Equal((WebSocketCloseStatus)1014, status);
    }

    [Fact]
    public async Task Subprotocols_AreOfferedToTheBackend_AndItsChoiceReachesTheClient()
    {
        var result = await ExternalPeer.RunClientAsync(PeerKind.Node, Ws("/py"), "subprotocol");

        Assert.Equal("OK subprotocol chat.v1", result);
    }

    [Fact]
    public async Task Target_RewritesParamsAndQuery_ForwardsListedHeaders_AndSetsForwardedAndSubject()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/headers/r%201?user=a%26b&other=1"), o =>
        {
            o.SetRequestHeader("X-Api-Key", "k-bob");
            o.SetRequestHeader("X-Request-Id", "req-7");
            o.SetRequestHeader("X-Not-Listed", "no");
            o.SetRequestHeader("X-Sluice-Subject", "forged");
        });

        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        var headers = seen.RootElement.GetProperty("headers");
        Assert.Equal("/headers/r%201?user=a%26b", seen.RootElement.GetProperty("path").GetString());
        Assert.Equal("req-7", headers.GetProperty("x-request-id").GetString());
        Assert.False(headers.TryGetProperty("x-not-listed", out _));
        Assert.Equal("127.0.0.1", headers.GetProperty("x-forwarded-for").GetString());
        Assert.Equal("http", headers.GetProperty("x-forwarded-proto").GetString());
        Assert.Equal("bob", headers.GetProperty("x-sluice-subject").GetString());
    }

    [Fact]
    public async Task ApiKey_MissingOrWrong_Is401_AndAKeyFromTheEnvironmentOrTheQueryIsAccepted()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, await UpgradeStatusAsync("/secure-topics"));
        Assert.Equal(HttpStatusCode.Unauthorized, await UpgradeStatusAsync("/secure-topics", ("X-Api-Key", "k-mallory")));

        using var header = await WebSocketClient.ConnectAsync(Ws("/secure-topics"), o => o.SetRequestHeader("X-Api-Key", "k-alice"));
        using var query = await WebSocketClient.ConnectAsync(Ws("/secure-topics?apikey=k-bob"));
        Assert.Equal(WebSocketState.Open, header.State);
        Assert.Equal(WebSocketState.Open, query.State);
    }

    [Fact]
    public async Task Origin_NotAllowed_Is403()
    {
        Assert.Equal(HttpStatusCode.Forbidden, await UpgradeStatusAsync("/origin", ("Origin", "https://evil.example.com")));

        using var allowed = await WebSocketClient.ConnectAsync(Ws("/origin"), o => o.SetRequestHeader("Origin", "https://app.example.com"));
        Assert.Equal(WebSocketState.Open, allowed.State);
    }

    [Fact]
    public async Task Jwt_BadOrMissing_Is401_AQueryToken_IsAccepted_AndExpiryCloses1008()
    {
        Assert.Equal(HttpStatusCode.Unauthorized, await UpgradeStatusAsync("/jwt"));
        Assert.Equal(HttpStatusCode.Unauthorized, await UpgradeStatusAsync("/jwt", ("Authorization", "Bearer " + Token(TimeSpan.FromMinutes(5), "wrong-key-wrong-key-wrong-key-wrong-key"))));

        using var client = await WebSocketClient.ConnectAsync(Ws("/jwt?access_token=" + Token(TimeSpan.FromSeconds(2))));
        await client.SendTextAsync("hi");
        Assert.Equal("hi", await client.ReceiveTextAsync());
        var (status, reason) = await client.ReceiveCloseAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
        Assert.Equal("token expired", reason);
    }

    [Fact]
    public async Task ConnectionRateLimit_Is429_WithRetryAfter()
    {
        using var first = await WebSocketClient.ConnectAsync(Ws("/limited"));
        using var second = await WebSocketClient.ConnectAsync(Ws("/limited"));

        using var raw = await RawWebSocket.ConnectAsync(Ws("/limited"));

        Assert.Equal(429, raw.StatusCode);
        Assert.Matches(@"(?im)^Retry-After: \d+\r?$", raw.ResponseHead);
    }

    [Fact]
    public async Task BackendDown_Is502_AndNoUpgrade()
    {
        using var raw = await RawWebSocket.ConnectAsync(Ws("/backend-down"));

        Assert.Equal(502, raw.StatusCode);
    }

    [Fact]
    public async Task NotAWebSocketRequest_OnAWebSocketRoute_Is400_WithOneLine()
    {
        using var http = new HttpClient();

        using var response = await http.GetAsync(_fixture.Gateway.Http("/echo"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = (await response.Content.ReadAsStringAsync()).Trim();
        Assert.DoesNotContain('\n', body);
        Assert.Contains("WebSocket", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SizeLimit_IsInclusive_AndOneByteMoreCloses1009()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/echo"));
        var exact = new byte[65536];
        await client.SendBinaryAsync(exact);
        Assert.Equal(65536, (await client.ReceiveMessageAsync()).Payload.Length);

        await client.SendBinaryAsync(new byte[65537]);

        var (status, _) = await client.ReceiveCloseAsync();
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, status);
    }

    [Fact]
    public async Task OverLimitsMaxMessageBytes_Closes1009_WithACompletedCloseHandshake()
    {
        using var raw = await RawWebSocket.ConnectAsync(Ws("/py"));
        await raw.SendFrameAsync(0x2, new byte[1048577]);

        var (code, _) = await raw.ReadCloseAsync();

        Assert.Equal((ushort)1009, code);
    }

    [Fact]
    public async Task InvalidUtf8Text_Closes1007()
    {
        using var raw = await RawWebSocket.ConnectAsync(Ws("/py"));
        await raw.SendFrameAsync(0x1, [0x68, 0xC3, 0x28]);

        var (code, _) = await raw.ReadCloseAsync();

        Assert.Equal((ushort)1007, code);
    }

    [Fact]
    public async Task SchemaReply_SendsOneErrorFrame_AndTheConnectionGoesOn()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/chat"));

        await client.SendTextAsync("""{"nope":1}""");
        using var error = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("chat-schema", error.RootElement.GetProperty("error").GetProperty("policy").GetString());
        Assert.Equal(400, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());

        await client.SendTextAsync("not json at all");
        using var second = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal(400, second.RootElement.GetProperty("error").GetProperty("status").GetInt32());

        await client.SendTextAsync("""{"text":"ok"}""");
        using var ok = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("ok", ok.RootElement.GetProperty("body").GetString());
    }

    [Fact]
    public async Task RedactAndTransform_ChangeTheMessage_BothWays()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/chat"));

        await client.SendTextAsync("""{"text":"hi","password":"hunter2","card":{"number":"4111","exp":"12/30"}}""");

        using var echoed = JsonDocument.Parse(await client.ReceiveTextAsync());
        var root = echoed.RootElement;
        Assert.False(root.TryGetProperty("password", out _));
        Assert.False(root.TryGetProperty("absent", out _));
        Assert.Equal("***", root.GetProperty("card").GetProperty("number").GetString());
        Assert.Equal("12/30", root.GetProperty("card").GetProperty("exp").GetString());
        Assert.Equal("hi", root.GetProperty("body").GetString());
        Assert.False(root.TryGetProperty("text", out _));
        Assert.Equal("sluice", root.GetProperty("via").GetString());
    }

    [Fact]
    public async Task FilterDrop_OnOutbound_SendsNothing_AndLaterMessagesStillFlow()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/chat"));

        await client.SendTextAsync("""{"text":"secret","type":"internal"}""");
        await client.SendTextAsync("""{"text":"visible","type":"chat"}""");

        using var first = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("visible", first.RootElement.GetProperty("body").GetString());
    }

    [Fact]
    public async Task When_AppliesAPolicyOnlyToMatchingMessages()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/chat"));

        await client.SendTextAsync("""{"text":"1","action":"send"}""");
        Assert.Equal("1", Body(await client.ReceiveTextAsync()));
        await client.SendTextAsync("""{"text":"2","action":"send"}""");
        using var limited = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal(429, limited.RootElement.GetProperty("error").GetProperty("status").GetInt32());

        await client.SendTextAsync("""{"text":"3","action":"edit"}""");
        Assert.Equal("3", Body(await client.ReceiveTextAsync()));

        static string? Body(string json) => JsonDocument.Parse(json).RootElement.GetProperty("body").GetString();
    }

    [Fact]
    public async Task RateLimitReply_UsesTheContractsErrorShape()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/reply-rate"));
        for (var i = 0; i < 5; i++)
        {
            await client.SendTextAsync("m" + i);
        }

        var received = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            received.Add(await client.ReceiveTextAsync());
        }

        var error = received.First(r => r.StartsWith("{\"error\"", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(error);
        Assert.Equal("per-user-rate", json.RootElement.GetProperty("error").GetProperty("policy").GetString());
        Assert.Equal(429, json.RootElement.GetProperty("error").GetProperty("status").GetInt32());
        Assert.StartsWith("rate limit exceeded", json.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/schema-close", """{"nope":1}""", 1007)]
    [InlineData("/filter-close", """{"type":"forbidden"}""", 1008)]
    public async Task PolicyClose_UsesThePolicysCode(string route, string message, int code)
    {
        using var client = await WebSocketClient.ConnectAsync(Ws(route));

        await client.SendTextAsync(message);

        var (status, _) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus)code, status);
    }

    [Fact]
    public async Task APolicyThatThrows_DropsTheMessage_LogsRoutePolicyAndConnection_AndKeepsTheConnection()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/throws"));

        await client.SendTextAsync("""{"text":"boom","password":"never-logged"}""");
        await client.SendTextAsync("""{"text":"fine"}""");

        Assert.Contains("fine", await client.ReceiveTextAsync(), StringComparison.Ordinal);
        await _fixture.Gateway.WaitForOutputAsync("throws");
        var line = _fixture.Gateway.Output.Split('\n').Last(l => l.Contains("/throws", StringComparison.Ordinal) && l.Contains("throws", StringComparison.Ordinal));
        Assert.DoesNotContain("never-logged", _fixture.Gateway.Output + _fixture.Gateway.Error, StringComparison.Ordinal);
        Assert.NotEmpty(line);
    }

    [Fact]
    public async Task PubSub_DeliversToOtherSubscribersInOrder_AnswersOps_AndRejectsUnknownOps()
    {
        using var alice = await WebSocketClient.ConnectAsync(Ws("/topics"));
        using var bob = await WebSocketClient.ConnectAsync(Ws("/topics"));
        foreach (var socket in new[] { alice, bob })
        {
            await socket.SendTextAsync("""{"op":"subscribe","topic":"room-1"}""");
            Assert.Equal("""{"op":"subscribed","topic":"room-1"}""", await socket.ReceiveTextAsync());
        }

        for (var i = 0; i < 50; i++)
        {
            await alice.SendTextAsync($"{{\"op\":\"publish\",\"topic\":\"room-1\",\"data\":{{\"n\":{i}}}}}");
        }

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal($"{{\"op\":\"message\",\"topic\":\"room-1\",\"data\":{{\"n\":{i}}}}}", await bob.ReceiveTextAsync());
        }

        await alice.SendTextAsync("""{"op":"dance"}""");
        using var error = JsonDocument.Parse(await alice.ReceiveTextAsync());
        Assert.Equal("pubsub", error.RootElement.GetProperty("error").GetProperty("policy").GetString());
        Assert.Equal(400, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());

        await bob.SendTextAsync("""{"op":"unsubscribe","topic":"room-1"}""");
        Assert.Equal("""{"op":"unsubscribed","topic":"room-1"}""", await bob.ReceiveTextAsync());
    }

    [Fact]
    public async Task Admin_NeedsTheKey_ButHealthzDoesNot()
    {
        using var anonymous = new HttpClient { BaseAddress = _fixture.Gateway.Http("/_sluice/") };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("connections")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("healthz")).StatusCode);

        using var withHeader = new HttpClient { BaseAddress = _fixture.Gateway.Http("/_sluice/") };
        withHeader.DefaultRequestHeaders.Add("X-Api-Key", ContractGateway.AdminKey);
        Assert.Equal(HttpStatusCode.OK, (await withHeader.GetAsync("connections")).StatusCode);
    }

    [Fact]
    public async Task Admin_PublishesToATopic()
    {
        using var subscriber = await WebSocketClient.ConnectAsync(Ws("/topics"));
        await subscriber.SendTextAsync("""{"op":"subscribe","topic":"news"}""");
        await subscriber.ReceiveTextAsync();
        using var admin = _fixture.Admin();

        using var response = await admin.PostAsync("topics/news", new StringContent("""{"headline":"hi"}""", Encoding.UTF8, "application/json"));

        Assert.True(response.IsSuccessStatusCode, response.StatusCode.ToString());
        Assert.Equal("""{"op":"message","topic":"news","data":{"headline":"hi"}}""", await subscriber.ReceiveTextAsync());
    }

    [Fact]
    public async Task Admin_ListsConnections_SendsToEitherLeg_AndClosesWithACode()
    {
        var tag = Guid.NewGuid().ToString("N");
        using var client = await WebSocketClient.ConnectAsync(Ws("/headers/" + tag), o => o.SetRequestHeader("X-Api-Key", "k-alice"));
        await client.ReceiveTextAsync();
        await client.SendTextAsync("one");
        Assert.Equal("one", await client.ReceiveTextAsync());
        using var admin = _fixture.Admin();

        using var list = JsonDocument.Parse(await admin.GetStringAsync("connections"));
        var mine = list.RootElement.EnumerateArray().Single(c => c.GetProperty("subject").GetString() == "alice" && c.GetProperty("route").GetString() == "/headers/{room}");
        var id = mine.GetProperty("id").GetString();
        Assert.Equal(1, mine.GetProperty("inbound").GetProperty("messages").GetInt64());
        Assert.True(mine.GetProperty("ageSeconds").GetDouble() >= 0);

        (await admin.PostAsync($"connections/{id}/send?to=client", new StringContent("to-client"))).EnsureSuccessStatusCode();
        Assert.Equal("to-client", await client.ReceiveTextAsync());
        (await admin.PostAsync($"connections/{id}/send?to=backend", new StringContent("via-backend"))).EnsureSuccessStatusCode();
        Assert.Equal("via-backend", await client.ReceiveTextAsync());

        (await admin.PostAsync($"connections/{id}/close?code=4100&reason=bye", null)).EnsureSuccessStatusCode();
        var (status, reason) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus)4100, status);
        Assert.Equal("bye", reason);
        await _fixture.Python.WaitForLineAsync($"CLOSED /headers/{tag}?user= 4100 bye");
    }

    [Fact]
    public async Task Metrics_ArePrometheusText_WithSluiceMeters()
    {
        using var client = await WebSocketClient.ConnectAsync(Ws("/echo"));
        await client.SendTextAsync("count me");
        await client.ReceiveTextAsync();
        using var admin = _fixture.Admin();

        var text = await admin.GetStringAsync("metrics");

        Assert.Contains("# TYPE sluice_", text, StringComparison.Ordinal);
        Assert.Contains("sluice_connections_active", text, StringComparison.Ordinal);
    }

    private async Task<HttpStatusCode> UpgradeStatusAsync(string path, params (string Name, string Value)[] headers)
    {
        var extra = string.Concat(headers.Select(h => $"{h.Name}: {h.Value}\r\n"));
        using var raw = await RawWebSocket.ConnectAsync(Ws(path), extraHeaders: extra);
        return (HttpStatusCode)raw.StatusCode;
    }

    private static string Token(TimeSpan lifetime, string key = ContractGateway.JwtSecret) =>
        new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Subject = new ClaimsIdentity([new Claim("sub", "carol")]),
            NotBefore = DateTime.UtcNow.AddMinutes(-1),
            IssuedAt = DateTime.UtcNow.AddMinutes(-1),
            Expires = DateTime.UtcNow + lifetime,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
        });
}
