using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json.Nodes;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>
/// Gateway processes on one real redis-server with the pubsub handler's history and presence: recovery on another
/// node, recovery racing with publishes, a Redis restart (never a silent gap), presence and join/leave across nodes.
/// </summary>
public sealed class GatewayHistoryTests : IAsyncLifetime
{
    private RedisServer _redis = null!;
    private ConfigFolder _folder = null!;
    private string _config = null!;

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _folder = new ConfigFolder();
        _config = _folder.Write($$"""
            {
              "backplane": { "type": "redis", "connection": "{{_redis.Configuration}}", "channelPrefix": "hist" },
              "policies": { "keys": { "type": "api-key", "options": { "header": "X-Api-Key", "query": "apikey", "keys": [ { "key": "k-ann", "subject": "ann" }, { "key": "k-bob", "subject": "bob" } ] } } },
              "routes": [
                { "path": "/topics", "handler": { "type": "pubsub", "options": { "history": { "size": 1000, "ttlSeconds": 600 } } } },
                { "path": "/room", "upgrade": ["keys"], "handler": { "type": "pubsub", "options": { "namespace": "rooms", "presence": { "joinLeave": true } } } }
              ]
            }
            """);
    }

    public async Task DisposeAsync()
    {
        _folder.Dispose();
        await _redis.DisposeAsync();
    }

    [Fact]
    public async Task AClientThatMissed100MessagesOnAnotherNode_RecoversExactlyThoseInOrder_OnAThirdNode_ThenLive()
    {
        await using var nodeA = await GatewayProcess.StartAsync(_config);
        await using var nodeB = await GatewayProcess.StartAsync(_config);
        await using var nodeC = await GatewayProcess.StartAsync(_config);
        using var publisher = await WebSocketClient.ConnectAsync(nodeB.Ws("/topics"));

        long seen;
        string epoch;
        using (var client = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics")))
        {
            await SubscribeAsync(client, "feed", null);
            await publisher.SendTextAsync("""{"op":"publish","topic":"feed","data":"before"}""");
            var first = Message(await client.ReceiveTextAsync());
            seen = first["offset"]!.GetValue<long>();
            epoch = first["epoch"]!.GetValue<string>();
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        for (var i = 0; i < 100; i++)
        {
            await publisher.SendTextAsync($$"""{"op":"publish","topic":"feed","data":{{i}}}""");
        }

        // The publisher gets nothing back on success: a subscriber on B shows the 100 are through.
        using var witness = await WebSocketClient.ConnectAsync(nodeB.Ws("/topics"));
        await WaitForOffsetAsync(witness, "feed", seen + 100);

        using var back = await WebSocketClient.ConnectAsync(nodeC.Ws("/topics"));
        var ack = await SubscribeAsync(back, "feed", (seen, epoch));
        Assert.True(ack["recovered"]!.GetValue<bool>(), ack.ToJsonString());
        for (var i = 0; i < 100; i++)
        {
            var message = Message(await back.ReceiveTextAsync());
            Assert.Equal(seen + 1 + i, message["offset"]!.GetValue<long>());
            Assert.Equal(i, message["data"]!.GetValue<int>());
            Assert.Equal(epoch, message["epoch"]!.GetValue<string>());
        }

        await publisher.SendTextAsync("""{"op":"publish","topic":"feed","data":"live"}""");
        Assert.Equal($$"""{"op":"message","topic":"feed","offset":{{seen + 101}},"epoch":"{{epoch}}","data":"live"}""", await back.ReceiveTextAsync());
    }

    /// <summary>Property: clients recovering from random offsets on one node while another node publishes get every later offset once, in order.</summary>
    [Fact]
    public async Task RecoveryRacingWithPublishesOnAnotherNode_NeverGapsNorDuplicates()
    {
        await using var nodeA = await GatewayProcess.StartAsync(_config);
        await using var nodeB = await GatewayProcess.StartAsync(_config);
        const int total = 400;
        using var watcher = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
        var epoch = (await SubscribeAsync(watcher, "race", null))["epoch"]!.GetValue<string>();
        using var publisher = await WebSocketClient.ConnectAsync(nodeB.Ws("/topics"));
        var publishing = Task.Run(async () =>
        {
            for (var i = 1; i <= total; i++)
            {
                await publisher.SendTextAsync($$"""{"op":"publish","topic":"race","data":{{i}}}""");
                if (i % 20 == 0)
                {
                    await Task.Delay(10);
                }
            }
        });

        var random = new Random(7);
        var starts = Enumerable.Range(0, 6).Select(_ => (Delay: random.Next(0, 300), Since: (long)random.Next(0, 200))).ToList();
        var clients = starts.Select(async start =>
        {
            await Task.Delay(start.Delay);
            using var client = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
            var ack = await SubscribeAsync(client, "race", (start.Since, epoch));
            var top = ack["offset"]!.GetValue<long>();
            // Recovered unless the client claims an offset the topic has not reached yet.
            Assert.Equal(start.Since <= top, ack["recovered"]!.GetValue<bool>());
            var expected = Math.Min(start.Since, top) + 1;
            while (expected <= total)
            {
                Assert.Equal(expected, Message(await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)))["offset"]!.GetValue<long>());
                expected++;
            }
        }).ToList();

        await publishing;
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(90));
    }

    [Fact]
    public async Task RedisRestartedInTheMiddle_IsRecoveredFalse_AndANewEpoch_NeverASilentGap()
    {
        await using var nodeA = await GatewayProcess.StartAsync(_config);
        await using var nodeB = await GatewayProcess.StartAsync(_config);
        using var live = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
        var epoch = (await SubscribeAsync(live, "r", null))["epoch"]!.GetValue<string>();
        using var publisher = await WebSocketClient.ConnectAsync(nodeB.Ws("/topics"));
        await publisher.SendTextAsync("""{"op":"publish","topic":"r","data":"before"}""");
        Assert.Equal(1, Message(await live.ReceiveTextAsync())["offset"]!.GetValue<long>());

        await _redis.StopAsync();
        await _redis.StartAgainAsync();

        // Until both nodes are back on Redis a publish may be refused with 503 (never silently dropped); then it goes
        // through. The frames are read by a reader of their own: a timed-out receive would abort the socket.
        var frames = System.Threading.Channels.Channel.CreateUnbounded<string>();
        var reading = Task.Run(async () =>
        {
            while (live.State == WebSocketState.Open)
            {
                var received = await live.ReceiveMessageAsync(TimeSpan.FromSeconds(90));
                await frames.Writer.WriteAsync(received.CloseStatus is { } status ? $"{{\"closed\":{(int)status}}}" : received.Text);
            }
        });
        var deadline = DateTime.UtcNow.AddSeconds(60);
        JsonObject after;
        while (true)
        {
            Assert.True(DateTime.UtcNow < deadline, "no publish went through after Redis restarted");
            await publisher.SendTextAsync("""{"op":"publish","topic":"r","data":"after"}""");
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                after = JsonNode.Parse(await frames.Reader.ReadAsync(wait.Token))!.AsObject();
                break;
            }
            catch (OperationCanceledException)
            {
                // Not through yet.
            }
        }

        // The live subscriber is never left with a silent gap: either the next message it gets carries the new epoch
        // at offset 1 (it knows its history is gone), or, when its node missed messages of the new epoch while
        // resubscribing, it is closed with 1013 to come back with since.
        if (after["closed"] is { } closed)
        {
            Assert.Equal(1013, closed.GetValue<int>());
        }
        else
        {
            Assert.Equal("message", after["op"]!.GetValue<string>());
            Assert.NotEqual(epoch, after["epoch"]!.GetValue<string>());
            Assert.Equal(1, after["offset"]!.GetValue<long>());
        }

        using var back = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
        var ack = await SubscribeAsync(back, "r", (1, epoch));
        Assert.False(ack["recovered"]!.GetValue<bool>());
        var newEpoch = ack["epoch"]!.GetValue<string>();
        Assert.NotEqual(epoch, newEpoch);
        var top = ack["offset"]!.GetValue<long>();
        Assert.True(top >= 1);

        // Within the new epoch, everything is recoverable from offset 0.
        using var again = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
        Assert.True((await SubscribeAsync(again, "r", (0, newEpoch)))["recovered"]!.GetValue<bool>());
        for (var i = 1; i <= top; i++)
        {
            Assert.Equal(i, Message(await again.ReceiveTextAsync())["offset"]!.GetValue<long>());
        }
    }

    [Fact]
    public async Task Presence_SpansNodes_WithJoinAndLeave_AndAKilledNodesSubscribersDropOut()
    {
        await using var nodeA = await GatewayProcess.StartAsync(_config);
        var nodeB = await GatewayProcess.StartAsync(_config);
        try
        {
            using var ann = await WebSocketClient.ConnectAsync(nodeA.Ws("/room?apikey=k-ann"));
            await ann.SendTextAsync("""{"op":"subscribe","topic":"lobby"}""");
            Assert.Equal("""{"op":"subscribed","topic":"lobby"}""", await ann.ReceiveTextAsync());
            // Ann's node subscribes its Redis channel in the background: wait for it before Bob joins.
            await WaitUntilAsync(async () => (await _redis.SubscribedChannelsAsync("hist:topic:*")).Length > 0);

            using var bob = await WebSocketClient.ConnectAsync(nodeB.Ws("/room?apikey=k-bob"));
            await bob.SendTextAsync("""{"op":"subscribe","topic":"lobby"}""");
            Assert.Equal("""{"op":"subscribed","topic":"lobby"}""", await bob.ReceiveTextAsync());
            Assert.Equal("""{"op":"join","topic":"lobby","subject":"bob"}""", await ann.ReceiveTextAsync());

            await ann.SendTextAsync("""{"op":"presence","topic":"lobby"}""");
            Assert.Equal("""{"op":"presence","topic":"lobby","count":2,"subjects":["ann","bob"]}""", await ann.ReceiveTextAsync());
            await bob.SendTextAsync("""{"op":"presence","topic":"lobby"}""");
            Assert.Equal("""{"op":"presence","topic":"lobby","count":2,"subjects":["ann","bob"]}""", await bob.ReceiveTextAsync());

            await bob.SendTextAsync("""{"op":"unsubscribe","topic":"lobby"}""");
            Assert.Equal("""{"op":"unsubscribed","topic":"lobby"}""", await bob.ReceiveTextAsync());
            Assert.Equal("""{"op":"leave","topic":"lobby","subject":"bob"}""", await ann.ReceiveTextAsync());
            await ann.SendTextAsync("""{"op":"presence","topic":"lobby"}""");
            Assert.Equal("""{"op":"presence","topic":"lobby","count":1,"subjects":["ann"]}""", await ann.ReceiveTextAsync());

            // Bob again, then his node dies without a word: its entries stop counting once its heartbeat expires.
            await bob.SendTextAsync("""{"op":"subscribe","topic":"lobby"}""");
            Assert.Equal("""{"op":"subscribed","topic":"lobby"}""", await bob.ReceiveTextAsync());
            Assert.Equal("""{"op":"join","topic":"lobby","subject":"bob"}""", await ann.ReceiveTextAsync());
            using (var process = Process.GetProcessById(nodeB.ProcessId))
            {
                process.Kill();
            }

            await WaitUntilAsync(
                async () =>
                {
                    await ann.SendTextAsync("""{"op":"presence","topic":"lobby"}""");
                    return await ann.ReceiveTextAsync() == """{"op":"presence","topic":"lobby","count":1,"subjects":["ann"]}""";
                },
                TimeSpan.FromSeconds(45));
        }
        finally
        {
            await nodeB.DisposeAsync();
        }
    }

    private static async Task WaitForOffsetAsync(WebSocket client, string topic, long offset)
    {
        var top = (await SubscribeAsync(client, topic, null))["offset"]!.GetValue<long>();
        while (top < offset)
        {
            top = Message(await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)))["offset"]!.GetValue<long>();
        }
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition never held");
            await Task.Delay(200);
        }
    }

    private static async Task<JsonObject> SubscribeAsync(WebSocket client, string topic, (long Offset, string Epoch)? since)
    {
        var request = new JsonObject { ["op"] = "subscribe", ["topic"] = topic };
        if (since is { } s)
        {
            request["since"] = new JsonObject { ["offset"] = s.Offset, ["epoch"] = s.Epoch };
        }

        await client.SendTextAsync(request.ToJsonString());
        var answer = JsonNode.Parse(await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)))!.AsObject();
        Assert.True(answer["op"]?.GetValue<string>() == "subscribed", answer.ToJsonString());
        return answer;
    }

    private static JsonObject Message(string text)
    {
        var message = JsonNode.Parse(text)!.AsObject();
        Assert.True(message["op"]?.GetValue<string>() == "message", text);
        return message;
    }
}
