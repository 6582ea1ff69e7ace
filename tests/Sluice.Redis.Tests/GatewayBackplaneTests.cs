using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>Two real gateway processes with the contract's <c>backplane</c> section, on one redis-server.</summary>
public class GatewayBackplaneTests
{
    [Fact]
    public async Task TwoGatewayNodes_ShareTopics_ThroughTheBackplaneSection()
    {
        await using var redis = await RedisServer.StartAsync();
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            {
              "backplane": { "type": "redis", "connection": "{{redis.Configuration}}", "channelPrefix": "it" },
              "admin": { "apiKey": "env:SLUICE_IT_ADMIN_KEY" },
              "routes": [ { "path": "/topics", "handler": { "type": "pubsub" } } ],
            }
            """);
        var environment = new Dictionary<string, string> { ["SLUICE_IT_ADMIN_KEY"] = "node-admin-key-0123456789" };
        await using var nodeA = await GatewayProcess.StartAsync(path, environment);
        await using var nodeB = await GatewayProcess.StartAsync(path, environment);

        using var onB = await WebSocketClient.ConnectAsync(nodeB.Ws("/topics"));
        await onB.SendTextAsync("""{"op":"subscribe","topic":"t"}""");
        Assert.Equal("""{"op":"subscribed","topic":"t"}""", await onB.ReceiveTextAsync());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!(await redis.SubscribedChannelsAsync("it:topic:*")).Contains("it:topic:t"))
        {
            Assert.True(DateTime.UtcNow < deadline, "node B never subscribed its Redis channel");
            await Task.Delay(100);
        }

        using var onA = await WebSocketClient.ConnectAsync(nodeA.Ws("/topics"));
        await onA.SendTextAsync("""{"op":"publish","topic":"t","data":{"from":"a"}}""");
        Assert.Equal("""{"op":"message","topic":"t","data":{"from":"a"}}""", await onB.ReceiveTextAsync());

        using var admin = new HttpClient();
        admin.DefaultRequestHeaders.Authorization = new("Bearer", "node-admin-key-0123456789");
        using var response = await admin.PostAsync(nodeA.Http("/_sluice/topics/t"), new StringContent("""{"from":"admin"}"""));
        response.EnsureSuccessStatusCode();
        Assert.Equal("""{"op":"message","topic":"t","data":{"from":"admin"}}""", await onB.ReceiveTextAsync());
    }
}
