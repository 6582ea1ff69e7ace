using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Topics;

/// <summary>socketify's publish/subscribe: topics, counts, fan-out, ordering and slow subscribers.</summary>
public class TopicTests
{
    private static Task<TestServer> StartAsync(Action<WebApplication>? extra = null, Action<TopicOptions>? topics = null) =>
        TestServer.StartAsync(
            app =>
            {
                // Each message a client sends is "sub T", "unsub T", "pub T text" or "pubself T text".
                app.MapWebSocket("/t", ws => ws.OnMessage(async (m, c) =>
                {
                    var parts = m.Text.Split(' ', 3);
                    switch (parts[0])
                    {
                        case "sub":
                            return c.Subscribe(parts[1]) ? "subscribed" : "already";
                        case "unsub":
                            return c.Unsubscribe(parts[1]) ? "unsubscribed" : "not subscribed";
                        case "topics":
                            return string.Join(",", c.Topics.Order());
                        default:
                            await c.PublishAsync(parts[1], WebSocketMessage.FromText(parts[2]), includeSelf: parts[0] == "pubself");
                            return null;
                    }
                }));
                app.MapPost("/publish/{topic}", async (string topic, HttpRequest request, IWebSocketTopics hub) =>
                {
                    using var reader = new StreamReader(request.Body);
                    await hub.PublishAsync(topic, WebSocketMessage.FromText(await reader.ReadToEndAsync()));
                    return Results.Ok(hub.GetSubscriberCount(topic));
                });
                extra?.Invoke(app);
            },
            services => services.Configure<TopicOptions>(o => topics?.Invoke(o)));

    private static async Task<ClientWebSocket> SubscriberAsync(TestServer server, string topic, string path = "/t")
    {
        var client = await WebSocketClient.ConnectAsync(server.WebSocketUri(path));
        await client.SendTextAsync($"sub {topic}");
        Assert.Equal("subscribed", await client.ReceiveTextAsync());
        return client;
    }

    [Fact]
    public async Task Publish_ReachesOtherSubscribers_NotTheSender_UnlessIncludeSelf()
    {
        await using var server = await StartAsync();
        using var ann = await SubscriberAsync(server, "room");
        using var bob = await SubscriberAsync(server, "room");
        using var outsider = await SubscriberAsync(server, "other");

        await ann.SendTextAsync("pub room hello");
        Assert.Equal("hello", await bob.ReceiveTextAsync());

        await ann.SendTextAsync("pubself room again");
        Assert.Equal("again", await ann.ReceiveTextAsync());
        Assert.Equal("again", await bob.ReceiveTextAsync());

        await outsider.SendTextAsync("topics");
        Assert.Equal("other", await outsider.ReceiveTextAsync());
    }

    [Fact]
    public async Task Counts_Topics_Unsubscribe_AndLeavingOnClose()
    {
        await using var server = await StartAsync();
        var hub = server.Services.GetRequiredService<IWebSocketTopics>();
        using var ann = await SubscriberAsync(server, "room");
        var bob = await SubscriberAsync(server, "room");
        await ann.SendTextAsync("sub lobby");
        Assert.Equal("subscribed", await ann.ReceiveTextAsync());
        await ann.SendTextAsync("sub lobby");
        Assert.Equal("already", await ann.ReceiveTextAsync());

        Assert.Equal(2, hub.GetSubscriberCount("room"));
        Assert.Equal(2L, await hub.CountSubscribersAsync("room"));
        Assert.Equal(new Dictionary<string, int> { ["room"] = 2, ["lobby"] = 1 }, hub.GetTopics());
        await ann.SendTextAsync("topics");
        Assert.Equal("lobby,room", await ann.ReceiveTextAsync());

        await ann.SendTextAsync("unsub lobby");
        Assert.Equal("unsubscribed", await ann.ReceiveTextAsync());
        Assert.Equal(0, hub.GetSubscriberCount("lobby"));

        await bob.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        bob.Dispose();
        await HostModeTests.WaitUntilAsync(() => hub.GetSubscriberCount("room") == 1);
    }

    [Fact]
    public async Task PublishFromAnHttpEndpoint_ReachesEverySubscriber()
    {
        await using var server = await StartAsync();
        var subscribers = new List<ClientWebSocket>();
        for (var i = 0; i < 20; i++)
        {
            subscribers.Add(await SubscriberAsync(server, "news"));
        }

        using var http = server.CreateHttpClient();
        using var response = await http.PostAsync(new Uri("/publish/news", UriKind.Relative), new StringContent("breaking"));

        Assert.Equal("20", await response.Content.ReadAsStringAsync());
        foreach (var subscriber in subscribers)
        {
            Assert.Equal("breaking", await subscriber.ReceiveTextAsync());
            subscriber.Dispose();
        }
    }

    [Fact]
    public async Task OnePublishersMessages_ArriveInOrder_AtEverySubscriber()
    {
        await using var server = await StartAsync();
        var subscribers = new List<ClientWebSocket>();
        for (var i = 0; i < 10; i++)
        {
            subscribers.Add(await SubscriberAsync(server, "seq"));
        }

        var hub = server.Services.GetRequiredService<IWebSocketTopics>();
        for (var n = 0; n < 500; n++)
        {
            await hub.PublishAsync("seq", WebSocketMessage.FromText(n.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        foreach (var subscriber in subscribers)
        {
            for (var n = 0; n < 500; n++)
            {
                Assert.Equal(n.ToString(System.Globalization.CultureInfo.InvariantCulture), await subscriber.ReceiveTextAsync());
            }

            subscriber.Dispose();
        }
    }

    [Fact]
    public async Task OutboundPolicies_ApplyToPublishedMessages_PerSubscriberRoute()
    {
        await using var server = await StartAsync(app => app.MapWebSocket("/redacted", ws =>
        {
            ws.Use((ctx) =>
            {
                if (ctx.Json is System.Text.Json.Nodes.JsonObject o && o.Remove("secret"))
                {
                    ctx.MarkJsonModified();
                }

                return true;
            }).OutboundOnly();
            ws.OnMessage((m, c) => c.Subscribe(m.Text.Split(' ')[1]) ? "subscribed" : "already");
        }));
        using var plain = await SubscriberAsync(server, "feed");
        using var redacted = await SubscriberAsync(server, "feed", "/redacted");

        await server.Services.GetRequiredService<IWebSocketTopics>().PublishAsync("feed", WebSocketMessage.FromText("""{"text":"hi","secret":"s3"}"""));

        Assert.Equal("""{"text":"hi","secret":"s3"}""", await plain.ReceiveTextAsync());
        Assert.Equal("""{"text":"hi"}""", await redacted.ReceiveTextAsync());
    }

    [Theory]
    [InlineData(SlowSubscriberMode.Close)]
    [InlineData(SlowSubscriberMode.DropNewest)]
    [InlineData(SlowSubscriberMode.DropOldest)]
    public async Task SlowSubscriber_HitsItsQueueLimit_WithoutHoldingUpOthers(SlowSubscriberMode mode)
    {
        await using var server = await StartAsync(topics: o =>
        {
            o.SubscriberQueueCapacity = 4;
            o.SlowSubscriberMode = mode;
        });
        var hub = server.Services.GetRequiredService<IWebSocketTopics>();
        var dropped = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Sluice" && instrument.Name == "sluice.topic.dropped")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => dropped.AddOrUpdate((string)tags[0].Value!, value, (_, v) => v + value));
        listener.Start();
        using var fast = await SubscriberAsync(server, "firehose");
        using var slow = await RawWebSocket.ConnectAsync(server.WebSocketUri("/t"));
        await slow.SendTextAsync("sub firehose");
        Assert.Equal("subscribed", (await slow.ReadFrameAsync())!.Text);

        // The slow subscriber never reads; the fast one reads each message before the next is published. 64 MiB
        // cannot all sit in socket buffers, so the slow subscriber's queue fills while the fast one is served.
        var payload = new string('x', 256 * 1024);
        for (var i = 0; i < 256; i++)
        {
            await hub.PublishAsync("firehose", WebSocketMessage.FromText(payload));
            Assert.Equal(payload.Length, (await fast.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).Payload.Length);
        }

        var registry = server.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        if (mode == SlowSubscriberMode.Close)
        {
            var (code, reason) = await slow.ReadCloseAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(((ushort?)1013, "subscriber too slow"), (code, reason));
            Assert.Equal(1, dropped["closed"]);
        }
        else
        {
            Assert.Equal(2, registry.Count);
            Assert.True(dropped[mode == SlowSubscriberMode.DropNewest ? "drop_newest" : "drop_oldest"] > 0);
        }
    }
}
