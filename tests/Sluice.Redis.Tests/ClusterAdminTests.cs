using System.Net;
using System.Net.WebSockets;
using Sluice.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>Three gateway nodes on one redis-server, shared by the tests that leave them running.</summary>
public sealed class ThreeNodes : IAsyncLifetime
{
    public ClusterNodes Cluster { get; private set; } = null!;

    public async Task InitializeAsync() => Cluster = await ClusterNodes.StartAsync(3, """
        "routes": [
          { "path": "/echo", "handler": { "type": "echo" }, "upgrade": ["keys"] },
          { "path": "/limited", "handler": { "type": "echo" }, "upgrade": ["keys"], "inbound": ["shared-rate"] },
          { "path": "/counted", "handler": { "type": "echo" }, "upgrade": ["keys", "shared-connections"] }
        ],
        "policies": {
          "keys": { "type": "api-key", "options": { "query": "apikey", "keys": [
            { "key": "k-alice-0123", "subject": "alice" }, { "key": "k-bob-0123", "subject": "bob" },
            { "key": "k-carol-0123", "subject": "carol" }, { "key": "k-dave-0123", "subject": "dave" } ] } },
          "shared-rate": { "type": "rate-limit", "options": { "permits": 3, "perSeconds": 3600, "partitionBy": "subject", "action": "reply", "scope": "cluster" } },
          "shared-connections": { "type": "connection-rate-limit", "options": { "permits": 2, "perSeconds": 3600, "partitionBy": "subject", "scope": "cluster" } }
        }
        """);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>The admin API across nodes (docs/cluster.md): list, send and close by id from any node, nodes, send to a subject, cluster limits.</summary>
public class ClusterAdminTests(ThreeNodes nodes) : IClassFixture<ThreeNodes>
{
    private ClusterNodes Cluster => nodes.Cluster;

    [Fact]
    public async Task Nodes_ListsEveryNode_WithItsIdConnectionsAndHeartbeat()
    {
        using var admin = ClusterNodes.Admin();
        using var body = System.Text.Json.JsonDocument.Parse(await admin.GetStringAsync(Cluster[1].Http("/_sluice/nodes")));

        Assert.Equal("node-b", body.RootElement.GetProperty("node").GetString());
        var listed = body.RootElement.GetProperty("nodes").EnumerateArray().ToList();
        Assert.Equal(["node-a", "node-b", "node-c"], listed.Select(n => n.GetProperty("id").GetString()));
        Assert.All(listed, n => Assert.True(n.GetProperty("lastHeartbeat").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-1)));
        Assert.All(listed, n => Assert.True(n.GetProperty("connections").GetInt32() >= 0));
        Assert.Equal(3, body.RootElement.GetProperty("totals").GetProperty("nodes").GetInt32());
    }

    [Fact]
    public async Task Connections_OfEveryNode_AreListedSentToAndClosed_FromAnotherNode()
    {
        using var onB = await WebSocketClient.ConnectAsync(Cluster[1].Ws("/echo?apikey=k-carol-0123"));
        using var onC = await WebSocketClient.ConnectAsync(Cluster[2].Ws("/echo?apikey=k-carol-0123"));

        // A node registers a connection just after its 101 is sent.
        await Cluster.WaitUntilAsync(async () => (await Cluster.ConnectionsAsync(0)).Connections.Count(c => c.Subject == "carol") == 2, "both of carol's connections in the list");
        var (listed, missing) = await Cluster.ConnectionsAsync(0);
        var carol = listed.Where(c => c.Subject == "carol").ToList();
        Assert.Null(missing);
        Assert.Equal(["node-b", "node-c"], carol.Select(c => c.Node).Order());
        var idOnB = carol.Single(c => c.Node == "node-b").Id;
        var idOnC = carol.Single(c => c.Node == "node-c").Id;

        using var admin = ClusterNodes.Admin();
        var sent = await ClusterNodes.PostJsonAsync(admin, Cluster[0].Http($"/_sluice/connections/{idOnC}/send"), "from node a", 202);
        Assert.Equal("node-c", sent.GetProperty("node").GetString());
        Assert.Equal("from node a", await onC.ReceiveTextAsync());

        await ClusterNodes.PostJsonAsync(admin, Cluster[0].Http($"/_sluice/connections/{idOnB}/close?code=4001&reason=bye"), "", 202);
        var (status, reason) = await onB.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus)4001, status);
        Assert.Equal("bye", reason);

        await Cluster.WaitUntilAsync(async () => !(await Cluster.ConnectionsAsync(2)).Connections.Any(c => c.Id == idOnB), "the closed connection to leave the list");
        using var unknown = await admin.PostAsync(Cluster[2].Http("/_sluice/connections/NO-SUCH-ID/send"), new StringContent("x"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task SubjectConnectedOnTwoNodes_IsReachedByOneSend()
    {
        using var onA = await WebSocketClient.ConnectAsync(Cluster[0].Ws("/echo?apikey=k-alice-0123"));
        using var onB = await WebSocketClient.ConnectAsync(Cluster[1].Ws("/echo?apikey=k-alice-0123"));
        using var other = await WebSocketClient.ConnectAsync(Cluster[1].Ws("/echo?apikey=k-bob-0123"));

        using var admin = ClusterNodes.Admin();
        var result = await ClusterNodes.PostJsonAsync(admin, Cluster[2].Http("/_sluice/subjects/alice/send"), """{"note":"hi alice"}""", 200);

        Assert.Equal(2, result.GetProperty("delivered").GetInt32());
        Assert.Equal(1, result.GetProperty("nodes").GetProperty("node-a").GetInt32());
        Assert.Equal(1, result.GetProperty("nodes").GetProperty("node-b").GetInt32());
        Assert.Equal(0, result.GetProperty("nodes").GetProperty("node-c").GetInt32());
        Assert.False(result.GetProperty("partial").GetBoolean());
        Assert.Equal("""{"note":"hi alice"}""", await onA.ReceiveTextAsync());
        Assert.Equal("""{"note":"hi alice"}""", await onB.ReceiveTextAsync());

        // bob got nothing: his next message is the echo of his own.
        await other.SendTextAsync("ping");
        Assert.Equal("ping", await other.ReceiveTextAsync());
    }

    [Fact]
    public async Task ClusterRateLimit_BudgetConsumedOnOneNode_RefusesOnAnother()
    {
        using var onA = await WebSocketClient.ConnectAsync(Cluster[0].Ws("/limited?apikey=k-dave-0123"));
        for (var i = 0; i < 3; i++)
        {
            await onA.SendTextAsync($"m{i}");
            Assert.Equal($"m{i}", await onA.ReceiveTextAsync());
        }

        using var onB = await WebSocketClient.ConnectAsync(Cluster[1].Ws("/limited?apikey=k-dave-0123"));
        await onB.SendTextAsync("one more");
        Assert.Equal("""{"error":{"policy":"shared-rate","status":429,"message":"rate limit exceeded: 3 per 3600 s"}}""", await onB.ReceiveTextAsync());
    }

    [Fact]
    public async Task ClusterConnectionRateLimit_IsSharedByEveryNode()
    {
        using var first = await WebSocketClient.ConnectAsync(Cluster[0].Ws("/counted?apikey=k-bob-0123"));
        using var second = await WebSocketClient.ConnectAsync(Cluster[1].Ws("/counted?apikey=k-bob-0123"));

        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, Cluster[2].Http("/counted?apikey=k-bob-0123"));
        request.Headers.Connection.Add("Upgrade");
        request.Headers.Upgrade.Add(new("websocket"));
        request.Headers.Add("Sec-WebSocket-Version", "13");
        request.Headers.Add("Sec-WebSocket-Key", Convert.ToBase64String(new byte[16]));
        using var third = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.NotNull(third.Headers.RetryAfter);
    }
}
