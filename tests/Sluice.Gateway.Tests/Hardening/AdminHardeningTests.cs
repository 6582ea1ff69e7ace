using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Xunit;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>One gateway with an admin key, an echo route and a pubsub route for the admin tests below.</summary>
public sealed class AdminGateway : IAsyncLifetime
{
    public const string AdminKey = "admin-hardening-key-0123";

    private readonly ConfigFolder _folder = new();

    public GatewayProcess Gateway { get; private set; } = null!;

    /// <summary>The dashboard cookie, as the login form's answer set it.</summary>
    public string Cookie { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var config = _folder.Write("""
            {
              "admin": { "apiKey": "env:SLUICE_HARDENING_ADMIN_KEY" },
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" } },
                { "path": "/close-me/{tag}", "handler": { "type": "echo" } },
                { "path": "/topics", "handler": { "type": "pubsub" } }
              ]
            }
            """);
        Gateway = await GatewayProcess.StartAsync(config, new Dictionary<string, string> { ["SLUICE_HARDENING_ADMIN_KEY"] = AdminKey });

        using var client = Client();
        using var login = await client.PostAsync("login", new FormUrlEncodedContent([new("key", AdminKey)]));
        Assert.Equal(HttpStatusCode.Redirect, login.StatusCode);
        Cookie = login.Headers.GetValues("Set-Cookie").Single().Split(';')[0];
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        _folder.Dispose();
    }

    /// <summary>A client of the admin path with no credentials, no cookie jar and no redirects followed.</summary>
    public HttpClient Client() =>
        new(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = Gateway.Http("/_sluice/") };

    public HttpClient KeyClient()
    {
        var client = Client();
        client.DefaultRequestHeaders.Add("X-Api-Key", AdminKey);
        return client;
    }
}

/// <summary>
/// Issue 19's admin findings, through the real gateway process: cross-site requests riding on the dashboard cookie,
/// admin inputs that answered 500, and the dashboard reached without its trailing slash.
/// </summary>
public class AdminHardeningTests(AdminGateway fixture) : IClassFixture<AdminGateway>
{
    private readonly AdminGateway _fixture = fixture;

    private string Own => $"http://127.0.0.1:{_fixture.Gateway.Port}";

    public static TheoryData<string, string?, string?, string?, HttpStatusCode> CookieRequests => new()
    {
        // credential, Origin, Sec-Fetch-Site, Referer -> status of POST tap?route=/echo
        { "cookie", "https://evil.example", null, null, HttpStatusCode.Forbidden },
        { "cookie", "null", null, null, HttpStatusCode.Forbidden },
        { "cookie", "http://127.0.0.1:1", null, null, HttpStatusCode.Forbidden },
        { "cookie", "https://evil.example", "same-origin", null, HttpStatusCode.Forbidden },
        { "cookie", null, "cross-site", null, HttpStatusCode.Forbidden },
        { "cookie", null, "same-site", null, HttpStatusCode.Forbidden },
        { "cookie", null, null, "https://evil.example/page", HttpStatusCode.Forbidden },
        { "cookie", null, null, null, HttpStatusCode.Forbidden },
        { "cookie", "OWN", null, null, HttpStatusCode.OK },
        { "cookie", null, "same-origin", null, HttpStatusCode.OK },
        { "cookie", null, null, "OWN/_sluice/", HttpStatusCode.OK },
        // The key in a header cannot be sent by a foreign page: no origin check.
        { "key", "https://evil.example", "cross-site", null, HttpStatusCode.OK },
        { "key", null, null, null, HttpStatusCode.OK },
    };

    [Theory]
    [MemberData(nameof(CookieRequests))]
    public async Task StateChangingRequest_WithTheCookie_MustComeFromTheDashboardsOrigin(string credential, string? origin, string? fetchSite, string? referer, HttpStatusCode expected)
    {
        using var client = credential == "key" ? _fixture.KeyClient() : _fixture.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "tap?route=/echo&enabled=false");
        if (credential == "cookie")
        {
            request.Headers.Add("Cookie", _fixture.Cookie);
        }

        if (origin is not null)
        {
            request.Headers.Add("Origin", origin.Replace("OWN", Own, StringComparison.Ordinal));
        }

        if (fetchSite is not null)
        {
            request.Headers.Add("Sec-Fetch-Site", fetchSite);
        }

        if (referer is not null)
        {
            request.Headers.Add("Referer", referer.Replace("OWN", Own, StringComparison.Ordinal));
        }

        using var response = await client.SendAsync(request);

        Assert.Equal(expected, response.StatusCode);
    }

    [Fact]
    public async Task SafeRequest_WithTheCookie_FromAForeignOrigin_IsAnswered()
    {
        // A foreign page cannot read the answer (no CORS), and a GET changes nothing.
        using var client = _fixture.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "snapshot");
        request.Headers.Add("Cookie", _fixture.Cookie);
        request.Headers.Add("Origin", "https://evil.example");

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("")]
    [InlineData("?failed=1")]
    public async Task AdminPath_WithoutTrailingSlash_RedirectsToTheDashboard(string query)
    {
        using var client = _fixture.Client();

        using var response = await client.GetAsync(_fixture.Gateway.Http("/_sluice" + query));

        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/_sluice/" + query, response.Headers.Location!.OriginalString);
    }

    [Fact]
    public async Task PublishToA300CharacterTopic_Is400_WithTheLimit()
    {
        using var client = _fixture.KeyClient();

        using var response = await client.PostAsync("topics/" + new string('t', 300), JsonContent.Create(new { x = 1 }));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("a topic name is at most 256 characters", (await response.Content.ReadFromJsonAsync<JsonObject>())!["error"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("%0A")]
    [InlineData("a%1Bb")]
    [InlineData("%C2%85")]
    public async Task PublishToATopicWithControlCharacters_Is400(string encoded)
    {
        using var client = _fixture.KeyClient();

        using var response = await client.PostAsync("topics/" + encoded, JsonContent.Create(new { x = 1 }));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task PubSubClient_GetsAnError_ForATopicWithAnUnpairedSurrogate_AndTheConnectionLivesOn()
    {
        using var client = await WebSocketClient.ConnectAsync(_fixture.Gateway.Ws("/topics"));

        await client.SendTextAsync("""{"op":"subscribe","topic":"\ud800"}""");
        var answer = JsonNode.Parse(await client.ReceiveTextAsync())!;

        Assert.Equal(400, answer["error"]!["status"]!.GetValue<int>());
        await client.SendTextAsync("""{"op":"subscribe","topic":"ok"}""");
        Assert.Equal("subscribed", JsonNode.Parse(await client.ReceiveTextAsync())!["op"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("code=1005", HttpStatusCode.BadRequest)]
    [InlineData("code=-1", HttpStatusCode.BadRequest)]
    [InlineData("code=abc", HttpStatusCode.BadRequest)]
    [InlineData("code=99999999999", HttpStatusCode.BadRequest)]
    [InlineData("code=4000&reason=REASON124", HttpStatusCode.BadRequest)]
    [InlineData("code=4000&reason=REASON123", HttpStatusCode.Accepted)]
    public async Task Close_WithInvalidCodeOrReason_Is400_AndTheConnectionStaysOpen(string query, HttpStatusCode expected)
    {
        var tag = Guid.NewGuid().ToString("N");
        using var socket = await WebSocketClient.ConnectAsync(_fixture.Gateway.Ws("/close-me/" + tag));
        using var client = _fixture.KeyClient();
        var id = await ConnectionIdAsync(client, "/close-me/{tag}");
        // "é" is two bytes of UTF-8: 62 of them are 124 bytes, one too many for a close frame.
        query = query.Replace("REASON124", Uri.EscapeDataString(new string('é', 62)), StringComparison.Ordinal)
            .Replace("REASON123", Uri.EscapeDataString(new string('é', 61) + "!"), StringComparison.Ordinal);

        using var response = await client.PostAsync($"connections/{id}/close?{query}", null);

        Assert.Equal(expected, response.StatusCode);
        if (expected == HttpStatusCode.Accepted)
        {
            var (status, reason) = await socket.ReceiveCloseAsync();
            Assert.Equal((WebSocketCloseStatus)4000, status);
            Assert.Equal(new string('é', 61) + "!", reason);
        }
        else
        {
            Assert.Contains("error", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            await socket.SendTextAsync("still open");
            Assert.Equal("still open", await socket.ReceiveTextAsync());
        }
    }

    [Theory]
    [InlineData("POST", "connections/x/send?to=nowhere")]
    [InlineData("POST", "connections/%00/close")]
    [InlineData("POST", "connections/%FF%FE/send")]
    [InlineData("POST", "connections/LONGID/close?code=4000")]
    [InlineData("POST", "tap")]
    [InlineData("POST", "tap?route=/nope&enabled=maybe")]
    [InlineData("POST", "topics/%2E%2E")]
    [InlineData("POST", "topics/LONGID")]
    [InlineData("GET", "connections?route=%00&subject=%FF")]
    public async Task OddAdminInputs_Are4xx_Never500(string method, string pathAndQuery)
    {
        using var client = _fixture.KeyClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), pathAndQuery.Replace("LONGID", new string('x', 3000), StringComparison.Ordinal))
        {
            Content = method == "POST" ? new StringContent("{}", Encoding.UTF8, "application/json") : null,
        };

        using var response = await client.SendAsync(request);

        Assert.InRange((int)response.StatusCode, 200, 499);
    }

    /// <summary>
    /// One rule for topic names: for any name, the admin API publishes to it exactly when a pubsub client can
    /// subscribe to it, and neither answers 500.
    /// </summary>
    [Property(MaxTest = 120)]
    public void AnyTopicName_GetsTheSameVerdict_FromTheAdminApiAndThePubSubHandler(int seed)
    {
        var random = new Random(seed);
        var alphabet = new[] { "a", "Z", "9", "-", ".", " ", "é", "日", "😀", "\n", "\u001b", "\u007f", "\u0085", "%", "?", "#", "\ufeff" };
        var length = random.Next(4) == 0 ? random.Next(250, 300) : random.Next(1, 12);
        var builder = new StringBuilder();
        while (builder.Length < length)
        {
            builder.Append(alphabet[random.Next(alphabet.Length)]);
        }

        var topic = builder.ToString();
        if (topic.Trim('.').Length == 0)
        {
            return; // "." and ".." are path segments, not names, in a URL
        }

        using var client = _fixture.KeyClient();
        using var response = client.PostAsync("topics/" + Uri.EscapeDataString(topic), JsonContent.Create(new { x = 1 })).GetAwaiter().GetResult();
        using var socket = WebSocketClient.ConnectAsync(_fixture.Gateway.Ws("/topics")).GetAwaiter().GetResult();
        var escaped = string.Concat(topic.Select(c => $"\\u{(int)c:x4}"));
        socket.SendTextAsync($$"""{"op":"subscribe","topic":"{{escaped}}"}""").GetAwaiter().GetResult();
        var answer = JsonNode.Parse(socket.ReceiveTextAsync().GetAwaiter().GetResult())!;

        var subscribed = (string?)answer["op"] == "subscribed";
        Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.BadRequest, $"{response.StatusCode} for {escaped}");
        Assert.Equal(subscribed, response.StatusCode == HttpStatusCode.OK);
    }

    private static async Task<string> ConnectionIdAsync(HttpClient client, string route)
    {
        // A connection is listed once its connected hooks have run, a moment after the client has its 101.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var connections = (await client.GetFromJsonAsync<JsonArray>("connections?route=" + Uri.EscapeDataString(route)))!;
            if (connections.Count > 0 || DateTime.UtcNow > deadline)
            {
                return (string)connections[^1]!["id"]!;
            }

            await Task.Delay(20);
        }
    }
}
