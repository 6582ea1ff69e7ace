using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Redis.Tests;

/// <summary>Gateway processes sharing one redis-server through the file's <c>backplane</c>, each with a node id of its own.</summary>
public sealed class ClusterNodes : IAsyncDisposable
{
    public const string AdminKey = "cluster-admin-key-0123456789";

    private readonly ConfigFolder _folder = new();
    private readonly List<GatewayProcess> _nodes = [];

    private ClusterNodes(RedisServer redis) => Redis = redis;

    public RedisServer Redis { get; }

    public string ConfigPath { get; private set; } = string.Empty;

    public IReadOnlyList<GatewayProcess> Nodes => _nodes;

    public GatewayProcess this[int index] => _nodes[index];

    /// <summary>Starts redis-server and <paramref name="count"/> nodes named node-a, node-b, ... on <paramref name="routesAndPolicies"/>.</summary>
    public static async Task<ClusterNodes> StartAsync(int count, string routesAndPolicies)
    {
        var cluster = new ClusterNodes(await RedisServer.StartAsync());
        try
        {
            cluster.ConfigPath = cluster._folder.Write($$"""
                {
                  "backplane": { "type": "redis", "connection": "{{cluster.Redis.Configuration}}", "channelPrefix": "cl", "nodeId": "env:SLUICE_IT_NODE" },
                  "admin": { "apiKey": "env:SLUICE_IT_ADMIN_KEY" },
                  {{routesAndPolicies}}
                }
                """);
            var starts = Enumerable.Range(0, count).Select(i => GatewayProcess.StartAsync(cluster.ConfigPath, new Dictionary<string, string>
            {
                ["SLUICE_IT_ADMIN_KEY"] = AdminKey,
                ["SLUICE_IT_NODE"] = NodeName(i),
            })).ToList();
            try
            {
                cluster._nodes.AddRange(await Task.WhenAll(starts));
            }
            catch
            {
                foreach (var start in starts.Where(s => s.IsCompletedSuccessfully))
                {
                    await start.Result.DisposeAsync();
                }

                throw;
            }

            // Every node must see every other before a test asks across them.
            await cluster.WaitUntilAsync(async () => (await cluster.NodeIdsAsync(0)).Count == count, "every node in the registry");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    public static string NodeName(int index) => "node-" + (char)('a' + index);

    public static HttpClient Admin()
    {
        var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", AdminKey);
        return client;
    }

    /// <summary>The ids <c>GET nodes</c> of node <paramref name="asking"/> lists.</summary>
    public async Task<List<string>> NodeIdsAsync(int asking)
    {
        using var admin = Admin();
        using var nodes = JsonDocument.Parse(await admin.GetStringAsync(this[asking].Http("/_sluice/nodes")));
        return [.. nodes.RootElement.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("id").GetString()!)];
    }

    /// <summary>GET connections on node <paramref name="asking"/>: (id, node) of each entry, and the response's partial headers.</summary>
    public async Task<(List<(string Id, string Node, string? Subject)> Connections, string? Missing)> ConnectionsAsync(int asking)
    {
        using var admin = Admin();
        using var response = await admin.GetAsync(this[asking].Http("/_sluice/connections"));
        response.EnsureSuccessStatusCode();
        using var list = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var missing = response.Headers.TryGetValues("Sluice-Missing-Nodes", out var values) ? string.Join(",", values) : null;
        return ([.. list.RootElement.EnumerateArray().Select(c => (c.GetProperty("id").GetString()!, c.GetProperty("node").GetString()!, c.GetProperty("subject").GetString()))], missing);
    }

    public static async Task<JsonElement> PostJsonAsync(HttpClient admin, Uri uri, string body, int expectedStatus)
    {
        using var response = await admin.PostAsync(uri, new StringContent(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == expectedStatus, $"POST {uri}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Polls <paramref name="condition"/> for up to 30 s (a loaded machine): a wait, never a timing assertion.</summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(200);
        }
    }

    /// <summary>Sends a Unix signal to a node's process (STOP, CONT, KILL).</summary>
    public static async Task SignalAsync(GatewayProcess node, string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, node.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_nodes.Select(n => n.DisposeAsync().AsTask()));
        await Redis.DisposeAsync();
        _folder.Dispose();
    }
}
