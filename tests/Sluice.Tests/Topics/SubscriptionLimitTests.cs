using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Topics;

/// <summary>The pub/sub protocol bounds the topics one connection holds: the options' limit, or the endpoint's own.</summary>
public class SubscriptionLimitTests
{
    [Fact]
    public async Task TopicOptionsLimit_AndAnEndpointsOwn_Are429Beyond_AndAppCodeIsNotLimited()
    {
        WebSocketConnection? appSide = null;
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.MapWebSocket("/default", ws =>
                {
                    ws.OnConnected(c => appSide = c);
                    ws.UsePubSubProtocol();
                });
                app.MapWebSocket("/own", ws => ws.UsePubSubProtocol(maxSubscriptions: 1));
            },
            services => services.Configure<TopicOptions>(o => o.MaxSubscriptionsPerConnection = 2));

        foreach (var (path, limit) in new[] { ("/default", 2), ("/own", 1) })
        {
            using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri(path));
            for (var i = 0; i <= limit; i++)
            {
                await client.SendTextAsync($$"""{"op":"subscribe","topic":"t{{i}}"}""");
                var answer = await client.ReceiveTextAsync();
                if (i < limit)
                {
                    Assert.Equal($$"""{"op":"subscribed","topic":"t{{i}}"}""", answer);
                }
                else
                {
                    using var error = JsonDocument.Parse(answer);
                    Assert.Equal(429, error.RootElement.GetProperty("error").GetProperty("status").GetInt32());
                }
            }

            if (path == "/default")
            {
                // The app subscribes its own connection past the protocol's limit: that is its decision.
                Assert.True(appSide!.Subscribe("app-chosen"));
                Assert.Equal(["app-chosen", "t0", "t1"], appSide.Topics.Order(StringComparer.Ordinal));
                Assert.Throws<ArgumentException>(() => appSide.Subscribe(new string('x', 257)));
                Assert.Equal(3, appSide.Topics.Count);
            }
        }
    }
}
