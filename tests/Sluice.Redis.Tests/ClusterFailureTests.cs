using System.Text.Json;
using Sluice.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>Nodes that die, hang, or lose Redis (docs/cluster.md): each test has a cluster of its own.</summary>
public class ClusterFailureTests
{
    private const string EchoRoutes = """
        "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "upgrade": ["keys"], "inbound": ["shared-rate"] } ],
        "policies": {
          "keys": { "type": "api-key", "options": { "query": "apikey", "keys": [ { "key": "k-alice-0123", "subject": "alice" } ] } },
          "shared-rate": { "type": "rate-limit", "options": { "permits": 2, "perSeconds": 3600, "partitionBy": "subject", "action": "reply", "scope": "cluster" } }
        }
        """;

    [Fact]
    public async Task NodeKilledWithSigkill_VanishesFromNodesAndConnections_WithinTheHeartbeatTimeout()
    {
        await using var cluster = await ClusterNodes.StartAsync(2, EchoRoutes);
        using var onB = await WebSocketClient.ConnectAsync(cluster[1].Ws("/echo?apikey=k-alice-0123"));
        await cluster.WaitUntilAsync(async () => (await cluster.ConnectionsAsync(0)).Connections.Any(c => c.Node == "node-b"), "the connection on node-b in the list");

        await ClusterNodes.SignalAsync(cluster[1], "KILL");
        var killedAt = DateTime.UtcNow;

        // NodeTimeout is 6 s and the heartbeat 2 s: the bound leaves room for a loaded machine, not for a node that stays.
        await cluster.WaitUntilAsync(async () => !(await cluster.NodeIdsAsync(0)).Contains("node-b"), "node-b to leave the registry", TimeSpan.FromSeconds(30));
        var (connections, missing) = await cluster.ConnectionsAsync(0);
        Assert.DoesNotContain(connections, c => c.Node == "node-b");
        Assert.Null(missing);
        Assert.True(DateTime.UtcNow - killedAt < TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task NodeThatDoesNotAnswerInTime_GivesAPartialAnswerNamingIt()
    {
        await using var cluster = await ClusterNodes.StartAsync(2, EchoRoutes);
        using var onA = await WebSocketClient.ConnectAsync(cluster[0].Ws("/echo?apikey=k-alice-0123"));
        using var admin = ClusterNodes.Admin();

        await ClusterNodes.SignalAsync(cluster[1], "STOP");
        try
        {
            // Both at once: the stopped node is still in the registry (its heartbeat is younger than 6 s) for one request timeout (2 s).
            var list = cluster.ConnectionsAsync(0);
            var send = ClusterNodes.PostJsonAsync(admin, cluster[0].Http("/_sluice/subjects/alice/send"), "to alice", 200);
            var ((connections, missing), sent) = (await list, await send);

            Assert.Equal("node-b", missing);
            Assert.Contains(connections, c => c.Node == "node-a");
            Assert.True(sent.GetProperty("partial").GetBoolean());
            Assert.Equal(["node-b"], sent.GetProperty("missing").EnumerateArray().Select(m => m.GetString()));
            Assert.Equal(1, sent.GetProperty("delivered").GetInt32());
            Assert.Equal("to alice", await onA.ReceiveTextAsync());
        }
        finally
        {
            await ClusterNodes.SignalAsync(cluster[1], "CONT");
        }
    }

    [Fact]
    public async Task RedisStopped_ClusterLimitFallsBackToPerNode_InHealthzAndLog_ThenSharedAgainWhenRedisIsBack()
    {
        await using var cluster = await ClusterNodes.StartAsync(2, EchoRoutes);
        using var onA = await WebSocketClient.ConnectAsync(cluster[0].Ws("/echo?apikey=k-alice-0123"));
        using var onB = await WebSocketClient.ConnectAsync(cluster[1].Ws("/echo?apikey=k-alice-0123"));
        await onA.SendTextAsync("a1");
        Assert.Equal("a1", await onA.ReceiveTextAsync());
        await onA.SendTextAsync("a2");
        Assert.Equal("a2", await onA.ReceiveTextAsync());
        await onB.SendTextAsync("b1");
        Assert.Contains("\"status\":429", await onB.ReceiveTextAsync(), StringComparison.Ordinal);

        await cluster.Redis.StopAsync();
        // Node B's own budget (2, one taken by b1) decides now.
        await onB.SendTextAsync("b2");
        Assert.Equal("b2", await onB.ReceiveTextAsync());
        var health = await HealthAsync(cluster, 1);
        Assert.Equal("Degraded", health.GetProperty("checks").GetProperty("cluster-rate-limits").GetProperty("status").GetString());
        Assert.Contains("per node", health.GetProperty("checks").GetProperty("cluster-rate-limits").GetProperty("description").GetString(), StringComparison.Ordinal);
        await cluster[1].WaitForOutputAsync("Cluster rate limits: Redis cannot answer");

        await cluster.Redis.StartAgainAsync();
        await cluster.WaitUntilAsync(async () => (await HealthAsync(cluster, 1)).GetProperty("checks").GetProperty("redis-backplane").GetProperty("status").GetString() == "Healthy",
            "node-b to reconnect to Redis");
        // The restarted Redis is empty: a fresh shared budget, once the node's cluster connection is back too (until then
        // its own budget, spent, answers 429).
        var echoed = false;
        await cluster.WaitUntilAsync(async () =>
        {
            await onB.SendTextAsync("b3");
            echoed = await onB.ReceiveTextAsync() == "b3";
            return echoed;
        }, "the shared budget in the restarted Redis");
        await cluster[1].WaitForOutputAsync("Cluster rate limits: counted in Redis again");
        Assert.Equal("Healthy", (await HealthAsync(cluster, 1)).GetProperty("checks").GetProperty("cluster-rate-limits").GetProperty("status").GetString());
        Assert.Equal(1, cluster[1].Output.Split('\n').Count(l => l.Contains("Cluster rate limits: Redis cannot answer", StringComparison.Ordinal)));
    }

    private static async Task<JsonElement> HealthAsync(ClusterNodes cluster, int node)
    {
        using var http = new HttpClient();
        return JsonDocument.Parse(await http.GetStringAsync(cluster[node].Http("/_sluice/healthz"))).RootElement.Clone();
    }
}
