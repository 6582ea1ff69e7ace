using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>Two Sluice hosts on one real redis-server: topics span both, in order, and survive Redis restarting.</summary>
public sealed class RedisBackplaneTests : IAsyncLifetime
{
    private RedisServer _redis = null!;
    private TestServer _nodeA = null!;
    private TestServer _nodeB = null!;

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _nodeA = await StartNodeAsync(_redis.Configuration);
        _nodeB = await StartNodeAsync(_redis.Configuration);
    }

    public async Task DisposeAsync()
    {
        await _nodeA.DisposeAsync();
        await _nodeB.DisposeAsync();
        await _redis.DisposeAsync();
    }

    [Fact]
    public async Task AMessagePublishedOnOneNode_ReachesSubscribersOnBoth_InOrder_AndOnlyOnce()
    {
        using var onA = await SubscribeAsync(_nodeA, "orders");
        using var onB = await SubscribeAsync(_nodeB, "orders");
        using var publisher = await WebSocketClient.ConnectAsync(_nodeA.WebSocketUri("/topics"));
        await WaitForRemoteSubscriberAsync(_nodeA, "orders", 2);

        for (var i = 0; i < 300; i++)
        {
            await publisher.SendTextAsync($$"""{"op":"publish","topic":"orders","data":{{i}}}""");
        }

        foreach (var subscriber in new[] { onA, onB })
        {
            for (var i = 0; i < 300; i++)
            {
                Assert.Equal($$"""{"op":"message","topic":"orders","data":{{i}}}""", await subscriber.ReceiveTextAsync());
            }
        }

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => onB.ReceiveTextAsync(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task AppCodePublishing_ReachesTheOtherNode()
    {
        using var onB = await SubscribeAsync(_nodeB, "news");
        await WaitForRemoteSubscriberAsync(_nodeA, "news", 1);

        await _nodeA.Services.GetRequiredService<IWebSocketTopics>().PublishAsync("news", WebSocketMessage.FromText("from code"));

        Assert.Equal("from code", await onB.ReceiveTextAsync());
    }

    [Fact]
    public async Task SubscriberCounts_AreClusterWide_AndChannelsAreUnsubscribedWhenTheLastSubscriberLeaves()
    {
        using var a1 = await SubscribeAsync(_nodeA, "counted");
        using var a2 = await SubscribeAsync(_nodeA, "counted");
        using var b1 = await SubscribeAsync(_nodeB, "counted");

        await WaitForRemoteSubscriberAsync(_nodeB, "counted", 3);
        Assert.Equal(2, _nodeA.Services.GetRequiredService<IWebSocketTopics>().GetSubscriberCount("counted"));
        Assert.Contains("sluice:topic:counted", await _redis.SubscribedChannelsAsync("sluice:topic:*"));

        foreach (var socket in new[] { a1, a2, b1 })
        {
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        await WaitUntilAsync(async () => !(await _redis.SubscribedChannelsAsync("sluice:topic:*")).Contains("sluice:topic:counted"));
        Assert.Equal(0, await _nodeA.Services.GetRequiredService<IWebSocketTopics>().CountSubscribersAsync("counted"));
    }

    [Fact]
    public async Task RedisRestarting_IsSurvived_AndDeliveryResumes()
    {
        using var onB = await SubscribeAsync(_nodeB, "restart");
        using var publisher = await WebSocketClient.ConnectAsync(_nodeA.WebSocketUri("/topics"));
        await WaitForRemoteSubscriberAsync(_nodeA, "restart", 1);
        await publisher.SendTextAsync("""{"op":"publish","topic":"restart","data":"before"}""");
        Assert.Equal("""{"op":"message","topic":"restart","data":"before"}""", await onB.ReceiveTextAsync());

        await _redis.StopAsync();
        // Published while Redis is away: lost for the other node (documented), but nothing breaks.
        await publisher.SendTextAsync("""{"op":"publish","topic":"restart","data":"during"}""");
        await _redis.StartAgainAsync();

        await WaitForRemoteSubscriberAsync(_nodeA, "restart", 1, TimeSpan.FromSeconds(30));
        string? received = null;
        await WaitUntilAsync(async () =>
        {
            await publisher.SendTextAsync("""{"op":"publish","topic":"restart","data":"after"}""");
            try
            {
                received = await onB.ReceiveTextAsync(TimeSpan.FromMilliseconds(500));
                return received.Contains("after", StringComparison.Ordinal);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(30));

        Assert.Equal(WebSocketState.Open, publisher.State);
        Assert.Equal(WebSocketState.Open, onB.State);
        Assert.Contains("sluice:topic:restart", await _redis.SubscribedChannelsAsync("sluice:topic:*"));
    }

    private static Task<TestServer> StartNodeAsync(string redis) =>
        TestServer.StartAsync(
            app => app.MapWebSocket("/topics", ws => ws.UsePubSubProtocol()),
            services => services.AddSluice().AddRedisBackplane(redis));

    private static async Task<ClientWebSocket> SubscribeAsync(TestServer node, string topic)
    {
        var socket = await WebSocketClient.ConnectAsync(node.WebSocketUri("/topics"));
        await socket.SendTextAsync($$"""{"op":"subscribe","topic":"{{topic}}"}""");
        Assert.Equal($$"""{"op":"subscribed","topic":"{{topic}}"}""", await socket.ReceiveTextAsync());
        return socket;
    }

    /// <summary>Subscribing reaches Redis asynchronously; wait until the cluster-wide count says so.</summary>
    private static Task WaitForRemoteSubscriberAsync(TestServer node, string topic, long count, TimeSpan? timeout = null) =>
        WaitUntilAsync(async () => await node.Services.GetRequiredService<IWebSocketTopics>().CountSubscribersAsync(topic) >= count, timeout);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "The condition did not hold in time.");
            await Task.Delay(100);
        }
    }
}
