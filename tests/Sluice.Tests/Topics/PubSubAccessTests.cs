using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Topics;

/// <summary>The pub/sub protocol's namespaces, authorization callback, subscription bound and presence on one node.</summary>
public sealed class PubSubAccessTests
{
    private static UpgradeResult SubjectFromQuery(UpgradeContext context)
    {
        context.Subject = context.HttpContext.Request.Query["user"];
        return UpgradeResult.Continue();
    }

    [Fact]
    public async Task Namespaces_IsolateSameNamedTopics_AndAppCodePublishesIntoOne()
    {
        await using var server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/a", ws => ws.UsePubSubProtocol(new PubSubProtocolOptions { Namespace = "a" }));
            app.MapWebSocket("/b", ws => ws.UsePubSubProtocol(new PubSubProtocolOptions { Namespace = "b" }));
            app.MapWebSocket("/none", ws => ws.UsePubSubProtocol());
        });
        using var onA = await WebSocketClient.ConnectAsync(server.WebSocketUri("/a"));
        using var onA2 = await WebSocketClient.ConnectAsync(server.WebSocketUri("/a"));
        using var onB = await WebSocketClient.ConnectAsync(server.WebSocketUri("/b"));
        using var onNone = await WebSocketClient.ConnectAsync(server.WebSocketUri("/none"));
        foreach (var client in new[] { onA, onA2, onB, onNone })
        {
            await client.SendTextAsync("""{"op":"subscribe","topic":"T"}""");
            Assert.Equal("""{"op":"subscribed","topic":"T"}""", await client.ReceiveTextAsync());
        }

        await onA.SendTextAsync("""{"op":"publish","topic":"T","data":"a"}""");
        Assert.Equal("""{"op":"message","topic":"T","data":"a"}""", await onA2.ReceiveTextAsync());
        var topics = server.Services.GetRequiredService<IWebSocketTopics>();
        await topics.PublishPubSubAsync("T", "b", new PubSubProtocolOptions { Namespace = "b" });
        Assert.Equal("""{"op":"message","topic":"T","data":"b"}""", await onB.ReceiveTextAsync());
        await topics.PublishPubSubAsync("T", "none", new PubSubProtocolOptions());
        Assert.Equal("""{"op":"message","topic":"T","data":"none"}""", await onNone.ReceiveTextAsync());

        // Nothing crossed: each client's next frame is the one meant for it.
        await topics.PublishPubSubAsync("T", "a again", new PubSubProtocolOptions { Namespace = "a" });
        Assert.Equal("""{"op":"message","topic":"T","data":"a again"}""", await onA2.ReceiveTextAsync());
        Assert.Equal(2, topics.GetSubscriberCount(TopicName.InNamespace("a", "T")));
        Assert.Equal(1, topics.GetSubscriberCount("T"));

        // Last: a cancelled receive aborts a ClientWebSocket, and the server then drops its subscriptions.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => onB.ReceiveTextAsync(TimeSpan.FromMilliseconds(300)));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => onNone.ReceiveTextAsync(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task TheAuthorizationCallback_DecidesSubscribeAndPublish_Denied403()
    {
        var asked = new List<PubSubAuthorizationContext>();
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/t", ws =>
        {
            ws.UseUpgrade(SubjectFromQuery);
            ws.UsePubSubProtocol(new PubSubProtocolOptions
            {
                Authorize = context =>
                {
                    lock (asked)
                    {
                        asked.Add(context);
                    }

                    return ValueTask.FromResult(context.Operation == PubSubOperation.Subscribe
                        ? context.Topic.StartsWith("public.", StringComparison.Ordinal)
                        : context.Connection.Subject == "alice");
                },
            });
        }));
        using var alice = await WebSocketClient.ConnectAsync(server.WebSocketUri("/t?user=alice"));
        using var bob = await WebSocketClient.ConnectAsync(server.WebSocketUri("/t?user=bob"));

        await bob.SendTextAsync("""{"op":"subscribe","topic":"secret"}""");
        AssertError(await bob.ReceiveTextAsync(), 403, "not allowed to subscribe to 'secret'");
        await bob.SendTextAsync("""{"op":"subscribe","topic":"public.news"}""");
        Assert.Equal("""{"op":"subscribed","topic":"public.news"}""", await bob.ReceiveTextAsync());
        await bob.SendTextAsync("""{"op":"publish","topic":"public.news","data":1}""");
        AssertError(await bob.ReceiveTextAsync(), 403, "not allowed to publish to 'public.news'");
        await alice.SendTextAsync("""{"op":"publish","topic":"public.news","data":2}""");
        Assert.Equal("""{"op":"message","topic":"public.news","data":2}""", await bob.ReceiveTextAsync());
        lock (asked)
        {
            Assert.Contains(asked, c => c.Connection.Subject == "bob" && c.Topic == "secret" && c.Operation == PubSubOperation.Subscribe);
        }
    }

    [Fact]
    public async Task HundredThousandSubscribeAttempts_StopAtMaxSubscriptions()
    {
        WebSocketConnection? serverSide = null;
        await using var server = await TestServer.StartAsync(app => app.MapWebSocket("/t", ws =>
        {
            ws.OnConnected(c => serverSide = c);
            ws.UsePubSubProtocol(new PubSubProtocolOptions { MaxSubscriptions = 100 });
        }));
        using var client = await WebSocketClient.ConnectAsync(server.WebSocketUri("/t"));
        const int attempts = 100_000;
        var sending = Task.Run(async () =>
        {
            for (var i = 0; i < attempts; i++)
            {
                await client.SendTextAsync($$"""{"op":"subscribe","topic":"t{{i}}"}""");
            }
        });

        int subscribed = 0, refused = 0;
        for (var i = 0; i < attempts; i++)
        {
            var answer = await client.ReceiveTextAsync(TimeSpan.FromSeconds(60));
            if (answer.StartsWith("""{"op":"subscribed""", StringComparison.Ordinal))
            {
                subscribed++;
            }
            else
            {
                Assert.Equal(429, JsonNode.Parse(answer)!["error"]!["status"]!.GetValue<int>());
                refused++;
            }
        }

        await sending;
        Assert.Equal(100, subscribed);
        Assert.Equal(attempts - 100, refused);
        Assert.Equal(100, serverSide!.Topics.Count);
    }

    [Fact]
    public async Task Presence_CountsSubscribersWithTheirSubjects_AndJoinLeaveEventsReachTheOthers()
    {
        await using var server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/p", ws =>
            {
                ws.UseUpgrade(SubjectFromQuery);
                ws.UsePubSubProtocol(new PubSubProtocolOptions { JoinLeave = true });
            });
            app.MapWebSocket("/off", ws => ws.UsePubSubProtocol());
        });
        using var ann = await WebSocketClient.ConnectAsync(server.WebSocketUri("/p?user=ann"));
        await ann.SendTextAsync("""{"op":"subscribe","topic":"room"}""");
        Assert.Equal("""{"op":"subscribed","topic":"room"}""", await ann.ReceiveTextAsync());

        var bob = await WebSocketClient.ConnectAsync(server.WebSocketUri("/p?user=bob"));
        await bob.SendTextAsync("""{"op":"subscribe","topic":"room"}""");
        Assert.Equal("""{"op":"subscribed","topic":"room"}""", await bob.ReceiveTextAsync());
        Assert.Equal("""{"op":"join","topic":"room","subject":"bob"}""", await ann.ReceiveTextAsync());

        await ann.SendTextAsync("""{"op":"presence","topic":"room"}""");
        Assert.Equal("""{"op":"presence","topic":"room","count":2,"subjects":["ann","bob"]}""", await ann.ReceiveTextAsync());

        await bob.CloseOutputAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        Assert.Equal("""{"op":"leave","topic":"room","subject":"bob"}""", await ann.ReceiveTextAsync());
        bob.Dispose();
        await ann.SendTextAsync("""{"op":"presence","topic":"room"}""");
        Assert.Equal("""{"op":"presence","topic":"room","count":1,"subjects":["ann"]}""", await ann.ReceiveTextAsync());

        using var off = await WebSocketClient.ConnectAsync(server.WebSocketUri("/off"));
        await off.SendTextAsync("""{"op":"presence","topic":"room"}""");
        AssertError(await off.ReceiveTextAsync(), 400, "presence is not enabled on this route");
    }

    private static void AssertError(string text, int status, string message)
    {
        using var error = JsonDocument.Parse(text);
        var body = error.RootElement.GetProperty("error");
        Assert.Equal("pubsub", body.GetProperty("policy").GetString());
        Assert.Equal(status, body.GetProperty("status").GetInt32());
        Assert.Equal(message, body.GetProperty("message").GetString());
    }
}
