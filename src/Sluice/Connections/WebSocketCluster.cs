using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Sluice;

/// <summary>
/// The nodes that serve one app together, and requests between them: what an operation needs to reach connections
/// held by other nodes (list, send, close by id, send to a subject). Without a backplane the cluster is this node
/// alone; <c>AddRedisBackplane</c> makes it every node on the same Redis.
/// </summary>
public interface IWebSocketCluster
{
    /// <summary>Gets this node's id (<see cref="SluiceOptions.NodeId"/>).</summary>
    string NodeId { get; }

    /// <summary>Lists the nodes alive now (those whose heartbeat has not timed out), this one included.</summary>
    ValueTask<IReadOnlyList<WebSocketNode>> GetNodesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Runs the handler of <paramref name="operation"/> on every node alive now, this one included, and gathers
    /// the answers. A node that does not answer within the timeout is named in <see cref="ClusterReplies.Missing"/>;
    /// the call never waits longer than that.
    /// </summary>
    /// <param name="operation">The name a handler was registered under with <see cref="MapRequest"/>.</param>
    /// <param name="payload">The request, as text (JSON by convention).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    ValueTask<ClusterReplies> RequestAsync(string operation, string payload, CancellationToken cancellationToken = default);

    /// <summary>
    /// Registers the handler that answers <paramref name="operation"/> on this node. A node without a handler for an
    /// operation answers nothing and is reported missing. Returns a registration that removes the handler.
    /// </summary>
    IDisposable MapRequest(string operation, Func<string, CancellationToken, ValueTask<string>> handler);
}

/// <summary>A node of the cluster, as its last heartbeat described it.</summary>
public sealed class WebSocketNode
{
    /// <summary>Creates a node description.</summary>
    public WebSocketNode(string id, int connections, DateTimeOffset lastHeartbeat)
    {
        Id = id;
        Connections = connections;
        LastHeartbeat = lastHeartbeat;
    }

    /// <summary>Gets the node's id.</summary>
    public string Id { get; }

    /// <summary>Gets the node's open connections at its last heartbeat.</summary>
    public int Connections { get; }

    /// <summary>Gets when the node last wrote its heartbeat.</summary>
    public DateTimeOffset LastHeartbeat { get; }
}

/// <summary>The answers of the nodes to <see cref="IWebSocketCluster.RequestAsync"/>.</summary>
public sealed class ClusterReplies
{
    /// <summary>Creates the answers.</summary>
    public ClusterReplies(IReadOnlyDictionary<string, string> replies, IReadOnlyList<string> missing)
    {
        Replies = replies;
        Missing = missing;
    }

    /// <summary>Gets each node's answer, by node id.</summary>
    public IReadOnlyDictionary<string, string> Replies { get; }

    /// <summary>Gets the nodes that were alive but did not answer in time, or had no handler.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Gets whether some node did not answer.</summary>
    public bool IsPartial => Missing.Count > 0;
}

/// <summary>The handlers of cluster requests registered on this node, shared by every <see cref="IWebSocketCluster"/>.</summary>
internal sealed class ClusterRequestHandlers
{
    private readonly ConcurrentDictionary<string, Func<string, CancellationToken, ValueTask<string>>> _handlers = new(StringComparer.Ordinal);

    public IDisposable Map(string operation, Func<string, CancellationToken, ValueTask<string>> handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(operation);
        ArgumentNullException.ThrowIfNull(handler);
        if (!_handlers.TryAdd(operation, handler))
        {
            throw new InvalidOperationException($"a handler of the cluster request '{operation}' is registered already");
        }

        return new Registration(this, operation, handler);
    }

    public bool TryGet(string operation, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Func<string, CancellationToken, ValueTask<string>>? handler) =>
        _handlers.TryGetValue(operation, out handler);

    private sealed class Registration(ClusterRequestHandlers owner, string operation, Func<string, CancellationToken, ValueTask<string>> handler) : IDisposable
    {
        public void Dispose() => owner._handlers.TryRemove(new KeyValuePair<string, Func<string, CancellationToken, ValueTask<string>>>(operation, handler));
    }
}

/// <summary>The cluster of one node, without a backplane: requests run here only.</summary>
internal sealed class LocalWebSocketCluster(IOptions<SluiceOptions> options, WebSocketConnectionRegistry registry, ClusterRequestHandlers handlers, TimeProvider time) : IWebSocketCluster
{
    public string NodeId { get; } = options.Value.NodeId;

    public ValueTask<IReadOnlyList<WebSocketNode>> GetNodesAsync(CancellationToken cancellationToken = default) =>
        new([new WebSocketNode(NodeId, registry.Count, time.GetUtcNow())]);

    public async ValueTask<ClusterReplies> RequestAsync(string operation, string payload, CancellationToken cancellationToken = default)
    {
        if (!handlers.TryGet(operation, out var handler))
        {
            return new ClusterReplies(new Dictionary<string, string>(), [NodeId]);
        }

        return new ClusterReplies(new Dictionary<string, string> { [NodeId] = await handler(payload, cancellationToken) }, []);
    }

    public IDisposable MapRequest(string operation, Func<string, CancellationToken, ValueTask<string>> handler) => handlers.Map(operation, handler);
}

/// <summary>Node ids made up when the app names none: the host's name and a random suffix, so two processes on one host differ.</summary>
internal static class NodeIds
{
    public static string Generate()
    {
        var host = new string([.. Environment.MachineName.ToLowerInvariant().Where(c => char.IsAsciiLetterOrDigit(c) || c == '-').Take(40)]);
        return (host.Length > 0 ? host : "node") + "-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
    }
}
