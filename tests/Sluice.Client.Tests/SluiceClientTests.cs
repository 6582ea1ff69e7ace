using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Client.Tests;

/// <summary>The .NET client against the real gateway process (and, for garbage, a raw server in the test).</summary>
public sealed class SluiceClientTests : IDisposable
{
    internal const string Plain = """
        { "routes": [ { "path": "/topics", "handler": { "type": "pubsub" } } ] }
        """;

    // History and presence (the second release's pubsub options); api-key by query parameter for the subjects.
    internal const string WithHistory = """
        {
          "routes": [ { "path": "/topics", "upgrade": ["keys"], "handler": { "type": "pubsub", "options": {
              "history": { "size": 100, "ttlSeconds": 600 }, "presence": { "joinLeave": true } } } } ],
          "policies": { "keys": { "type": "api-key", "options": { "query": "key", "keys": [
              { "key": "env:SLUICE_ALICE_KEY", "subject": "alice" }, { "key": "env:SLUICE_BOB_KEY", "subject": "bob" } ] } } }
        }
        """;

    private const string Keyed = """
        {
          "routes": [ { "path": "/topics", "upgrade": ["keys"], "handler": { "type": "pubsub" } } ],
          "policies": { "keys": { "type": "api-key", "options": { "query": "key", "keys": [
              { "key": "env:SLUICE_ALICE_KEY", "subject": "alice" }, { "key": "env:SLUICE_BOB_KEY", "subject": "bob" } ] } } }
        }
        """;

    internal static readonly Dictionary<string, string> Keys = new() { ["SLUICE_ALICE_KEY"] = "k-alice", ["SLUICE_BOB_KEY"] = "k-bob" };

    private static readonly TimeSpan Long = TimeSpan.FromSeconds(60);
    private readonly ConfigFolder _folder = new();

    [Fact]
    public async Task SubscribePublishReceive_InOrder_RefusalsThrowWithStatus_Unsubscribe()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));
        await using var a = new Recorder(gateway.Ws("/topics"));
        await using var b = new Recorder(gateway.Ws("/topics"));
        await a.Client.ConnectAsync();
        await b.Client.ConnectAsync();
        Assert.Equal(new SluiceSubscription("room", null), await a.Client.SubscribeAsync("room"));

        await b.Client.PublishAsync("room", new JsonObject { ["text"] = "hello" });
        for (var i = 0; i < 100; i++)
        {
            await b.Client.PublishAsync("room", i);
        }

        await Eventually(() => a.Messages.Count == 101, "101 messages");
        var messages = a.Messages.ToArray();
        Assert.Equal("hello", messages[0].Data.GetProperty("text").GetString());
        Assert.Equal(Enumerable.Range(0, 100), messages.Skip(1).Select(m => m.Data.GetInt32()));
        Assert.All(messages, m => Assert.Null(m.Offset));
        Assert.Null(a.Client.GetPosition("room"));

        var refused = await Assert.ThrowsAsync<SluiceException>(() => a.Client.SubscribeAsync("bad\u0001topic"));
        Assert.Equal(400, refused.Status);
        Assert.Equal("pubsub", refused.Policy);
        Assert.Equal("subscribe", refused.Operation);
        Assert.DoesNotContain("bad\u0001topic", a.Client.Topics);

        // Unsubscribed: b's publishes reach a in order, so once the marker is there, "after" was routed and dropped.
        await a.Client.SubscribeAsync("marker");
        await a.Client.UnsubscribeAsync("room");
        await b.Client.PublishAsync("room", "after");
        await b.Client.PublishAsync("marker", "sync");
        await Eventually(() => a.Messages.Any(m => m.Topic == "marker"), "the marker");
        Assert.Equal(101, a.Messages.Count(m => m.Topic == "room"));
        Assert.Equal([SluiceClientState.Connecting, SluiceClientState.Connected], a.States);
    }

    [Fact]
    public async Task ReadMessagesAsync_StreamsTheMessages_AndEndsWhenTheClientCloses()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));
        await using var a = new Recorder(gateway.Ws("/topics"));
        await using var b = new Recorder(gateway.Ws("/topics"));
        await a.Client.ConnectAsync();
        await b.Client.ConnectAsync();
        await a.Client.SubscribeAsync("room");
        using var timeout = new CancellationTokenSource(Long);
        // The first MoveNextAsync runs the reader up to its first wait: it is registered before anything is published.
        var reader = a.Client.ReadMessagesAsync(timeout.Token).GetAsyncEnumerator(timeout.Token);
        var next = reader.MoveNextAsync();
        for (var i = 1; i <= 3; i++)
        {
            await b.Client.PublishAsync("room", i);
        }

        List<int> values = [];
        while (await next)
        {
            values.Add(reader.Current.Data.GetInt32());
            if (values.Count == 3)
            {
                await a.Client.CloseAsync();
            }

            next = reader.MoveNextAsync();
        }

        await reader.DisposeAsync();
        Assert.Equal([1, 2, 3], values);
        Assert.Equal(SluiceClientState.Closed, a.Client.State);
    }

    [Fact]
    public async Task GatewayRestart_TheClientReconnects_AndResubscribesEveryTopic()
    {
        var config = _folder.Write(Plain);
        var gateway = await GatewayProcess.StartAsync(config);
        try
        {
            await using var a = new Recorder(gateway.Ws("/topics"), o => o.InitialReconnectDelay = TimeSpan.FromMilliseconds(200));
            await a.Client.ConnectAsync();
            await a.Client.SubscribeAsync("room");
            await a.Client.SubscribeAsync("other");
            a.Subscriptions.Clear();

            Assert.Equal(0, await gateway.StopAsync());
            await gateway.DisposeAsync();
            await Eventually(() => a.States.Contains(SluiceClientState.Reconnecting), "the client to see the gateway go");
            gateway = await GatewayProcess.StartAsync(config, urls: $"http://127.0.0.1:{gateway.Port}");

            // Resubscribed on its own: both topics answered by the new gateway, and a new publisher reaches it.
            await Eventually(() => a.Subscriptions.Count == 2, "both topics resubscribed", TimeSpan.FromSeconds(90));
            Assert.Equal(["other", "room"], a.Subscriptions.Select(s => s.Topic).Order());
            Assert.Equal(SluiceClientState.Connected, a.Client.State);
            await using var b = new Recorder(gateway.Ws("/topics"));
            await b.Client.ConnectAsync();
            await b.Client.PublishAsync("room", "after restart");
            await Eventually(() => a.Messages.Count == 1, "the message after the restart");
            Assert.Equal("after restart", a.Messages.Single().Data.GetString());
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task NothingListening_TheClientRetries_AndConnectsWhenTheGatewayComes()
    {
        var port = GatewayProcess.FreePort();
        await using var a = new Recorder(new Uri($"ws://127.0.0.1:{port}/topics"), o => o.MaxReconnectDelay = TimeSpan.FromMilliseconds(400));
        var connected = a.Client.ConnectAsync();
        var subscribed = a.Client.SubscribeAsync("room"); // before the connection: sent once it opens

        await Eventually(() => a.States.Count(s => s == SluiceClientState.Reconnecting) >= 3, "three refused attempts");
        Assert.NotEqual(SluiceClientState.Closed, a.Client.State);
        Assert.Contains(a.Errors, e => e.Message.Contains("cannot connect", StringComparison.Ordinal));
        Assert.All(a.Changes.Where(c => c.State == SluiceClientState.Reconnecting), c => Assert.InRange(c.Delay!.Value, TimeSpan.Zero, TimeSpan.FromMilliseconds(400)));

        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain), urls: $"http://127.0.0.1:{port}");
        await connected.WaitAsync(Long);
        Assert.Equal("room", (await subscribed.WaitAsync(Long)).Topic);
        await using var b = new Recorder(gateway.Ws("/topics"));
        await b.Client.ConnectAsync();
        await b.Client.PublishAsync("room", "back");
        await Eventually(() => a.Messages.Count == 1, "the message after the gateway came");
    }

    [Theory]
    [InlineData(1008, false)]
    [InlineData(4001, false)]
    [InlineData(1003, false)]
    [InlineData(1001, true)]
    [InlineData(1011, true)]
    [InlineData(1012, true)]
    [InlineData(1013, true)]
    public async Task ClosedByTheGateway_ReconnectsOnlyWhereItMakesSense(int code, bool reconnects)
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));
        await using var a = new Recorder(gateway.Ws("/topics"), o => o.InitialReconnectDelay = TimeSpan.FromMilliseconds(100));
        await a.Client.ConnectAsync();
        await a.Client.SubscribeAsync("room");
        a.Subscriptions.Clear();

        Assert.Equal(1, await CloseAllAsync(gateway, code));

        await Eventually(() => a.Client.State == SluiceClientState.Closed || a.Subscriptions.Count == 1, "the client to settle");
        var disconnected = a.Changes.First(c => c.State == SluiceClientState.Disconnected);
        Assert.Equal(code, (int?)disconnected.CloseStatus);
        if (reconnects)
        {
            Assert.Equal(SluiceClientState.Connected, a.Client.State);
            Assert.Equal(["room"], a.Client.Topics);
        }
        else
        {
            Assert.Equal(SluiceClientState.Closed, a.Client.State);
            Assert.DoesNotContain(SluiceClientState.Reconnecting, a.States);
            await Assert.ThrowsAsync<ObjectDisposedException>(() => a.Client.SubscribeAsync("again"));
        }
    }

    [Fact]
    public async Task PolicyClose_ReconnectsWhenTheOptionSaysSo()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Plain));
        await using var a = new Recorder(gateway.Ws("/topics"), o => (o.ReconnectOnPolicyClose, o.InitialReconnectDelay) = (true, TimeSpan.FromMilliseconds(100)));
        await a.Client.ConnectAsync();
        await a.Client.SubscribeAsync("room");
        a.Subscriptions.Clear();

        Assert.Equal(1, await CloseAllAsync(gateway, 1008));

        await Eventually(() => a.Subscriptions.Count == 1, "the resubscription");
        Assert.Contains(SluiceClientState.Reconnecting, a.States);
    }

    [Fact]
    public async Task UpgradeRefusedWith401_IsNotRetried()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(Keyed), Keys);
        await using var a = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter) = ("k-mallory", "key"));

        var refused = await Assert.ThrowsAsync<SluiceException>(() => a.Client.ConnectAsync().WaitAsync(Long));

        Assert.Contains("401", refused.Message, StringComparison.Ordinal);
        Assert.Equal(SluiceClientState.Closed, a.Client.State);
        Assert.DoesNotContain(SluiceClientState.Reconnecting, a.States);

        await using var alice = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter) = ("k-alice", "key"));
        await alice.Client.ConnectAsync().WaitAsync(Long);
    }

    [Fact]
    public async Task AwayWhileMessagesArePublished_RecoversExactlyThoseInOrder()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(WithHistory), Keys);
        // a waits 5 s before reconnecting (jitter pinned near 1): the messages are published while it is away.
        await using var a = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter, o.InitialReconnectDelay, o.MaxReconnectDelay, o.Jitter) = ("k-alice", "key", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), () => 0.999));
        await using var b = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter, o.InitialReconnectDelay) = ("k-bob", "key", TimeSpan.FromMilliseconds(50)));
        await a.Client.ConnectAsync();
        await b.Client.ConnectAsync();
        await a.Client.SubscribeAsync("news");
        await b.Client.PublishAsync("news", "before");
        await Eventually(() => a.Messages.Count == 1, "the first message");
        var before = a.Client.GetPosition("news")!.Value;
        a.Subscriptions.Clear();

        await CloseAllAsync(gateway, 1012);
        // b is back on a new connection (its first one may still look connected while the gateway closes it).
        await Eventually(() => a.Client.State == SluiceClientState.Reconnecting && b.Client.State == SluiceClientState.Connected
            && b.States.Count(s => s == SluiceClientState.Connected) == 2, "a away and b back");
        for (var i = 1; i <= 5; i++)
        {
            await b.Client.PublishAsync("news", $"missed {i}");
        }

        Assert.Equal(SluiceClientState.Reconnecting, a.Client.State); // otherwise the test proves nothing
        await Eventually(() => a.Subscriptions.Count == 1 && a.Messages.Count >= 6, "the missed messages");
        Assert.True(a.Subscriptions.Single().Recovered);
        await b.Client.PublishAsync("news", "live");
        await Eventually(() => a.Messages.Count >= 7, "the live message");
        await Task.Delay(300); // a duplicate would arrive now

        Assert.Equal(["before", "missed 1", "missed 2", "missed 3", "missed 4", "missed 5", "live"], a.Messages.Select(m => m.Data.GetString()));
        Assert.Equal(Enumerable.Range(0, 7).Select(i => before.Offset + i), a.Messages.Select(m => m.Offset!.Value));
        Assert.Equal(new SluicePosition(before.Offset + 6, before.Epoch), a.Client.GetPosition("news"));
    }

    [Fact]
    public async Task Presence_CountsSubjects_AndJoinLeaveArrive()
    {
        await using var gateway = await GatewayProcess.StartAsync(_folder.Write(WithHistory), Keys);
        await using var a = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter) = ("k-alice", "key"));
        await a.Client.ConnectAsync();
        await a.Client.SubscribeAsync("lobby");
        var b = new Recorder(gateway.Ws("/topics"), o => (o.Token, o.TokenParameter) = ("k-bob", "key"));
        await b.Client.ConnectAsync();
        await b.Client.SubscribeAsync("lobby");

        await Eventually(() => a.Presence.Contains(new SluicePresenceChange("lobby", "bob", true)), "bob's join");
        var presence = await a.Client.GetPresenceAsync("lobby");
        Assert.Equal(2, presence.Count);
        Assert.Equal(["alice", "bob"], presence.Subjects);

        await b.DisposeAsync();
        await Eventually(() => a.Presence.Contains(new SluicePresenceChange("lobby", "bob", false)), "bob's leave");
    }

    public void Dispose() => _folder.Dispose();

    internal static async Task<int> CloseAllAsync(GatewayProcess gateway, int code)
    {
        using var http = new HttpClient { Timeout = Long };
        var connections = await http.GetFromJsonAsync<JsonElement>(gateway.Http("/_sluice/connections"));
        var closed = 0;
        foreach (var connection in connections.EnumerateArray())
        {
            var id = Uri.EscapeDataString(connection.GetProperty("id").GetString()!);
            using var response = await http.PostAsync(gateway.Http($"/_sluice/connections/{id}/close?code={code}&reason=test"), null);
            Assert.Equal(System.Net.HttpStatusCode.Accepted, response.StatusCode);
            closed++;
        }

        return closed;
    }

    internal static async Task Eventually(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Long);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting for {what}.");
            }

            await Task.Delay(20);
        }
    }
}

/// <summary>A client with everything it raised recorded.</summary>
internal sealed class Recorder : IAsyncDisposable
{
    public Recorder(Uri uri, Action<SluiceClientOptions>? configure = null)
    {
        var options = new SluiceClientOptions { InitialReconnectDelay = TimeSpan.FromMilliseconds(100), MaxReconnectDelay = TimeSpan.FromSeconds(1) };
        configure?.Invoke(options);
        Client = new SluiceClient(uri, options);
        Client.StateChanged += (_, change) => Changes.Enqueue(change);
        Client.MessageReceived += (_, message) => Messages.Enqueue(message);
        Client.Subscribed += (_, subscription) => Subscriptions.Enqueue(subscription);
        Client.PresenceChanged += (_, change) => Presence.Enqueue(change);
        Client.Error += (_, error) => Errors.Enqueue(error);
    }

    public SluiceClient Client { get; }

    public ConcurrentQueue<SluiceStateChange> Changes { get; } = new();

    public IEnumerable<SluiceClientState> States => Changes.Select(c => c.State);

    public ConcurrentQueue<SluiceMessage> Messages { get; } = new();

    public ConcurrentQueue<SluiceSubscription> Subscriptions { get; } = new();

    public ConcurrentQueue<SluicePresenceChange> Presence { get; } = new();

    public ConcurrentQueue<SluiceException> Errors { get; } = new();

    public ValueTask DisposeAsync() => Client.DisposeAsync();
}
