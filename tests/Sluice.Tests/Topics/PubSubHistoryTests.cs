using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Topics;

/// <summary>History and recovery of the pub/sub protocol in one node's memory: offsets, epochs, since, no gap, no duplicate.</summary>
public sealed class PubSubHistoryTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/h", ws => ws.UsePubSubProtocol(new PubSubProtocolOptions { History = new TopicHistoryOptions { Size = 1000 } }));
            app.MapWebSocket("/small", ws => ws.UsePubSubProtocol(new PubSubProtocolOptions { Namespace = "small", History = new TopicHistoryOptions { Size = 3 } }));
            app.MapWebSocket("/plain", ws => ws.UsePubSubProtocol());
        });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private IWebSocketTopics Topics => _server.Services.GetRequiredService<IWebSocketTopics>();

    [Fact]
    public async Task Messages_CarryOffsetsAndAnEpoch_AndSinceReplaysWhatWasMissed_ThenLive()
    {
        using var first = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        var ack = await SubscribeAsync(first, "T", since: null);
        Assert.Equal(0, ack["offset"]!.GetValue<long>());
        var epoch = ack["epoch"]!.GetValue<string>();
        Assert.False(ack.ContainsKey("recovered"));

        using var publisher = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        for (var i = 1; i <= 5; i++)
        {
            await publisher.SendTextAsync($$"""{"op":"publish","topic":"T","data":{{i}}}""");
            Assert.Equal($$"""{"op":"message","topic":"T","offset":{{i}},"epoch":"{{epoch}}","data":{{i}}}""", await first.ReceiveTextAsync());
        }

        using var late = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        ack = await SubscribeAsync(late, "T", since: (2, epoch));
        Assert.True(ack["recovered"]!.GetValue<bool>());
        Assert.Equal(5, ack["offset"]!.GetValue<long>());
        for (var i = 3; i <= 5; i++)
        {
            Assert.Equal(i, Message(await late.ReceiveTextAsync())["offset"]!.GetValue<long>());
        }

        await publisher.SendTextAsync("""{"op":"publish","topic":"T","data":"live"}""");
        Assert.Equal($$"""{"op":"message","topic":"T","offset":6,"epoch":"{{epoch}}","data":"live"}""", await late.ReceiveTextAsync());
    }

    [Fact]
    public async Task MessagesTheHistoryNoLongerHolds_AreRecoveredFalse_WithWhatIsStillHeld()
    {
        for (var i = 1; i <= 5; i++)
        {
            await Topics.PublishPubSubAsync("S", JsonValue.Create(i), new PubSubProtocolOptions { Namespace = "small", History = new TopicHistoryOptions { Size = 3 } });
        }

        using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/small"));
        var position = await SubscribeAsync(client, "S", since: null);
        var epoch = position["epoch"]!.GetValue<string>();
        Assert.Equal(5, position["offset"]!.GetValue<long>());
        using var late = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/small"));
        var ack = await SubscribeAsync(late, "S", since: (0, epoch));
        Assert.False(ack["recovered"]!.GetValue<bool>());
        for (var i = 3; i <= 5; i++)
        {
            Assert.Equal(i, Message(await late.ReceiveTextAsync())["data"]!.GetValue<int>());
        }
    }

    [Theory]
    [InlineData("""{"offset":-1,"epoch":"e"}""")]
    [InlineData("""{"offset":1e30,"epoch":"e"}""")]
    [InlineData("""{"offset":99999999999999999999999,"epoch":"e"}""")]
    [InlineData("""{"offset":"12","epoch":"e"}""")]
    [InlineData("""{"offset":1.5,"epoch":"e"}""")]
    [InlineData("""{"offset":1}""")]
    [InlineData("""{"offset":1,"epoch":7}""")]
    [InlineData("""[1,"e"]""")]
    [InlineData("\"yesterday\"")]
    public async Task BadSince_Is400_AndTheConnectionStays(string since)
    {
        using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        await client.SendTextAsync($$"""{"op":"subscribe","topic":"bad","since":{{since}}}""");
        var error = JsonNode.Parse(await client.ReceiveTextAsync())!["error"]!;
        Assert.Equal(400, error["status"]!.GetValue<int>());
        Assert.StartsWith("\"since\":", error["message"]!.GetValue<string>(), StringComparison.Ordinal);

        await client.SendTextAsync("""{"op":"subscribe","topic":"bad"}""");
        Assert.Equal("subscribed", JsonNode.Parse(await client.ReceiveTextAsync())!["op"]!.GetValue<string>());
    }

    [Fact]
    public async Task UnknownEpoch_OrAnOffsetAheadOfTheTopic_IsRecoveredFalse_AndGoesLive()
    {
        using var publisher = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        using var watcher = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        var epoch = (await SubscribeAsync(watcher, "E", since: null))["epoch"]!.GetValue<string>();
        await publisher.SendTextAsync("""{"op":"publish","topic":"E","data":1}""");
        await watcher.ReceiveTextAsync();

        using var stranger = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        Assert.False((await SubscribeAsync(stranger, "E", since: (0, "not-the-epoch")))["recovered"]!.GetValue<bool>());
        using var ahead = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        Assert.False((await SubscribeAsync(ahead, "E", since: (9_007_199_254_740_991, epoch)))["recovered"]!.GetValue<bool>());

        await publisher.SendTextAsync("""{"op":"publish","topic":"E","data":2}""");
        Assert.Equal(2, Message(await stranger.ReceiveTextAsync())["offset"]!.GetValue<long>());
        Assert.Equal(2, Message(await ahead.ReceiveTextAsync())["offset"]!.GetValue<long>());
    }

    [Fact]
    public async Task SinceOnARouteWithoutHistory_Is400()
    {
        using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/plain"));
        await client.SendTextAsync("""{"op":"subscribe","topic":"p","since":{"offset":1,"epoch":"e"}}""");
        Assert.Contains("this route keeps no history", await client.ReceiveTextAsync(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Property: whenever a client reconnects with since, while messages keep being published, it receives every
    /// offset after its own exactly once and in order, up to the last one published.
    /// </summary>
    [Fact]
    public async Task RecoveryRacingWithPublishes_NeverGapsNorDuplicates()
    {
        const int total = 600;
        var options = new PubSubProtocolOptions { History = new TopicHistoryOptions { Size = 1000 } };
        using var watcher = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
        var epoch = (await SubscribeAsync(watcher, "race", since: null))["epoch"]!.GetValue<string>();
        var publishing = Task.Run(async () =>
        {
            for (var i = 1; i <= total; i++)
            {
                await Topics.PublishPubSubAsync("race", JsonValue.Create(i), options);
                if (i % 50 == 0)
                {
                    await Task.Delay(5);
                }
            }
        });

        var random = new Random(16);
        var clients = Enumerable.Range(0, 8).Select(async n =>
        {
            // Each client starts from some offset it has "seen", reconnecting while publishing goes on.
            await Task.Delay(random.Next(0, 200));
            var since = Math.Max(0, (long)random.Next(0, 300));
            using var client = await WebSocketClient.ConnectAsync(_server.WebSocketUri("/h"));
            var ack = await SubscribeAsync(client, "race", since: (since, epoch));
            Assert.True(ack["recovered"]!.GetValue<bool>() || since > ack["offset"]!.GetValue<long>());
            var start = since > ack["offset"]!.GetValue<long>() ? ack["offset"]!.GetValue<long>() : since;
            var expected = start + 1;
            while (expected <= total)
            {
                var offset = Message(await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)))["offset"]!.GetValue<long>();
                Assert.Equal(expected, offset);
                expected++;
            }
        }).ToList();

        await publishing;
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(60));
    }

    internal static async Task<JsonObject> SubscribeAsync(WebSocket client, string topic, (long Offset, string Epoch)? since)
    {
        var request = new JsonObject { ["op"] = "subscribe", ["topic"] = topic };
        if (since is { } s)
        {
            request["since"] = new JsonObject { ["offset"] = s.Offset, ["epoch"] = s.Epoch };
        }

        await client.SendTextAsync(request.ToJsonString());
        var answer = JsonNode.Parse(await client.ReceiveTextAsync())!.AsObject();
        Assert.True(answer["op"]?.GetValue<string>() == "subscribed", answer.ToJsonString());
        return answer;
    }

    internal static JsonObject Message(string text)
    {
        var message = JsonNode.Parse(text)!.AsObject();
        Assert.True(message["op"]?.GetValue<string>() == "message", text);
        return message;
    }
}
