using System.Net.WebSockets;
using System.Text.Json.Nodes;
using FsCheck.Xunit;
using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>One server with a keyed rate limit of 8 values, shared by the property runs below.</summary>
public sealed class KeyedRateLimitServer : IAsyncLifetime
{
    public const int MaxKeys = 8;

    public RateLimitPolicy Policy { get; } = new(new RateLimitPolicyOptions { Permits = 1_000_000, PerSeconds = 60, Key = "/k", MaxKeys = MaxKeys, Action = PolicyAction.Reply });

    public TestServer Server { get; private set; } = null!;

    public ClientWebSocket Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await TestServer.StartAsync(app => app.MapWebSocket("/keyed", ws =>
        {
            ws.UsePolicy(Policy);
            ws.OnMessage((m, _) => m);
        }));
        Client = await WebSocketClient.ConnectAsync(Server.WebSocketUri("/keyed"));
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Policy.Dispose();
    }
}

/// <summary>
/// Key values at the extremes (long strings, numbers with huge exponents, deep nesting, any JSON kind): the message is
/// passed or refused with 429, the connection lives on, and the policy never holds more than its bound.
/// </summary>
public class RateLimitKeyPropertyTests(KeyedRateLimitServer server) : IClassFixture<KeyedRateLimitServer>
{
    [Property(MaxTest = 300)]
    public void AnyKeyValue_IsPassedOrRefused_AndTheBudgetsStayBounded(int seed)
    {
        var random = new Random(seed);
        var value = random.Next(8) switch
        {
            0 => JsonValue.Create(new string((char)random.Next('a', 'z'), random.Next(0, 200_000))).ToJsonString(),
            1 => random.Next(2) == 0 ? "1e9999999" : "-1e-999999999",
            2 => string.Concat(Enumerable.Repeat("9", random.Next(1, 5000))),
            3 => Nested(random.Next(1, 200)),
            4 => """{"a":{"b":[1,2,{"c":null}]}}""",
            5 => random.Next(3) switch { 0 => "null", 1 => "true", _ => "\"\"" },
            // Any UTF-16 unit, lone surrogates included, escaped as \uXXXX: a client can send what no string can hold.
            6 => "\"" + string.Concat(Enumerable.Range(0, random.Next(1, 40)).Select(_ => random.Next(3) == 0 ? $"\\u{random.Next(0xD800, 0xE000):x4}" : char.ConvertFromUtf32(random.Next(0x20, 0x2FFFF) is var c && c is >= 0xD800 and <= 0xDFFF or '"' or '\\' ? 0x41 : c))) + "\"",
            _ => JsonValue.Create(random.Next(0, 20)).ToJsonString(),
        };
        var text = random.Next(10) == 0 ? """{"other":1}""" : $$"""{"k":{{value}}}""";

        server.Client.SendTextAsync(text).GetAwaiter().GetResult();
        var answer = server.Client.ReceiveTextAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();

        if (answer != text)
        {
            var error = JsonNode.Parse(answer)!["error"]!;
            Assert.Equal(429, error["status"]!.GetValue<int>());
        }

        Assert.Equal(WebSocketState.Open, server.Client.State);
        Assert.InRange(server.Policy.BudgetCount, 1, KeyedRateLimitServer.MaxKeys);
    }

    private static string Nested(int depth) => new string('[', depth) + new string(']', depth);
}
