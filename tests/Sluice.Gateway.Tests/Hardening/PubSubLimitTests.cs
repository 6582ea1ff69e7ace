using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>One connection cannot hold unbounded pubsub state: subscriptions and topic names are bounded.</summary>
public class PubSubLimitTests
{
    [Theory]
    [InlineData(null, 100)]
    [InlineData(3, 3)]
    public async Task Subscriptions_AreBoundedPerConnection_429Beyond_ResubscribingCountsOnce(int? configured, int limit)
    {
        using var folder = new ConfigFolder();
        var options = configured is null ? string.Empty : $$""", "options": { "maxSubscriptions": {{configured}} }""";
        var path = folder.Write($$"""{ "routes": [ { "path": "/topics", "handler": { "type": "pubsub"{{options}} } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/topics"));

        for (var i = 0; i < limit; i++)
        {
            await client.SendTextAsync($$"""{"op":"subscribe","topic":"t{{i}}"}""");
            Assert.Equal($$"""{"op":"subscribed","topic":"t{{i}}"}""", await client.ReceiveTextAsync());
        }

        // Subscribing again to a topic already held is not a new subscription.
        await client.SendTextAsync("""{"op":"subscribe","topic":"t0"}""");
        Assert.Equal("""{"op":"subscribed","topic":"t0"}""", await client.ReceiveTextAsync());

        await client.SendTextAsync("""{"op":"subscribe","topic":"one-too-many"}""");
        using (var error = JsonDocument.Parse(await client.ReceiveTextAsync()))
        {
            Assert.Equal("pubsub", error.RootElement.GetProperty("error").GetProperty("policy").GetString());
            Assert.Equal(429, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());
        }

        // Leaving a topic makes room; the refused topic was never joined.
        await client.SendTextAsync("""{"op":"unsubscribe","topic":"t1"}""");
        Assert.Equal("""{"op":"unsubscribed","topic":"t1"}""", await client.ReceiveTextAsync());
        await client.SendTextAsync("""{"op":"subscribe","topic":"one-too-many"}""");
        Assert.Equal("""{"op":"subscribed","topic":"one-too-many"}""", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task LongTopicNames_AreRefusedWith400_AndNotKept()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/topics", "handler": { "type": "pubsub" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/topics"));

        await client.SendTextAsync($$"""{"op":"subscribe","topic":"{{new string('x', 900_000)}}"}""");
        using (var error = JsonDocument.Parse(await client.ReceiveTextAsync()))
        {
            Assert.Equal(400, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());
            Assert.Contains("256", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        var exactly = new string('y', 256);
        await client.SendTextAsync($$"""{"op":"subscribe","topic":"{{exactly}}"}""");
        Assert.Equal($$"""{"op":"subscribed","topic":"{{exactly}}"}""", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task MaxSubscriptions_IsValidated_WithItsJsonPath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/topics", "handler": { "type": "pubsub", "options": { "maxSubscriptions": 0, "other": 1 } } } ] }""");
        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);
        Assert.NotEqual(0, exitCode);
        Assert.Contains("routes[0].handler.options.maxSubscriptions", output + error, StringComparison.Ordinal);
        Assert.Contains("routes[0].handler.options.other", output + error, StringComparison.Ordinal);
    }
}
