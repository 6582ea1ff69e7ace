using System.Net.Http.Json;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Cluster;

/// <summary>The cluster's configuration keys, and the admin API of a gateway without a backplane (a cluster of one).</summary>
public class ClusterConfigTests
{
    [Fact]
    public async Task ClusterScope_WithoutABackplane_IsAValidationErrorNamingThePath()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "upgrade": ["conn-rate"], "inbound": ["msg-rate"] } ],
              "policies": {
                "conn-rate": { "type": "connection-rate-limit", "options": { "permits": 5, "scope": "cluster" } },
                "msg-rate": { "type": "rate-limit", "options": { "permits": 5, "scope": "cluster" } }
              }
            }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("policies.conn-rate.options.scope: \"cluster\" shares the budget through the backplane's Redis", error, StringComparison.Ordinal);
        Assert.Contains("policies.msg-rate.options.scope: \"cluster\" shares the budget through the backplane's Redis", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"scope\": \"region\"", "policies.msg-rate.options.scope")]
    [InlineData("\"scope\": 3", "policies.msg-rate.options.scope")]
    public async Task BadScope_IsAValidationError(string options, string errorPath)
    {
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            {
              "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["msg-rate"] } ],
              "policies": { "msg-rate": { "type": "rate-limit", "options": { "permits": 5, {{options}} } } }
            }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains(errorPath, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"\"")]
    [InlineData("\"node a\"")]
    [InlineData("\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"")]
    public async Task BadNodeId_IsAValidationErrorAtItsPath(string nodeId)
    {
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            {
              "backplane": { "type": "redis", "connection": "127.0.0.1:1", "nodeId": {{nodeId}} },
              "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ]
            }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("backplane.nodeId: must be 1 to 64 letters, digits, '.', '_' or '-'", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutABackplane_EntriesCarryTheNode_NodesListsOne_AndASubjectSendCountsThisNode()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "upgrade": ["keys"] } ],
              "policies": { "keys": { "type": "api-key", "options": { "query": "apikey", "keys": [ { "key": "k-alice-0123", "subject": "alice" } ] } } }
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var alice = await WebSocketClient.ConnectAsync(gateway.Ws("/echo?apikey=k-alice-0123"));

        // The gateway registers a connection just after it writes the 101, so the client can see the 101 first;
        // an echo proves the connection is registered before the admin API is asked.
        await alice.SendTextAsync("ready");
        Assert.Equal("ready", await alice.ReceiveTextAsync());
        using var http = new HttpClient();

        using var nodes = JsonDocument.Parse(await http.GetStringAsync(gateway.Http("/_sluice/nodes")));
        var node = nodes.RootElement.GetProperty("node").GetString()!;
        Assert.Equal([node], nodes.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("id").GetString()));
        Assert.Equal(1, nodes.RootElement.GetProperty("totals").GetProperty("connections").GetInt32());

        using var list = JsonDocument.Parse(await http.GetStringAsync(gateway.Http("/_sluice/connections")));
        Assert.Equal(node, list.RootElement.EnumerateArray().Single().GetProperty("node").GetString());

        using var sent = await http.PostAsync(gateway.Http("/_sluice/subjects/alice/send"), new StringContent("hello"));
        using var result = JsonDocument.Parse(await sent.Content.ReadAsStringAsync());
        Assert.Equal(1, result.RootElement.GetProperty("delivered").GetInt32());
        Assert.False(result.RootElement.GetProperty("partial").GetBoolean());
        Assert.Equal("hello", await alice.ReceiveTextAsync());

        using var nobody = await http.PostAsync(gateway.Http("/_sluice/subjects/nobody/send"), new StringContent("hello"));
        Assert.Equal(0, JsonDocument.Parse(await nobody.Content.ReadAsStringAsync()).RootElement.GetProperty("delivered").GetInt32());

        using var health = JsonDocument.Parse(await http.GetStringAsync(gateway.Http("/_sluice/healthz")));
        Assert.Equal("Healthy", health.RootElement.GetProperty("status").GetString());
    }
}
