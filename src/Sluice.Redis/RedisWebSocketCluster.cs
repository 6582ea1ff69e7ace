using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Sluice.Redis;

/// <summary>
/// The nodes on one Redis as one cluster: a node registry kept by heartbeats, and requests between nodes over Redis
/// pub/sub with a correlation id and a timeout.
/// </summary>
/// <remarks>
/// <para>
/// Registry: every <see cref="RedisBackplaneOptions.HeartbeatInterval"/> a node writes, in one Lua script, its id into
/// the sorted set <c>{prefix}:nodes</c> scored by Redis's own clock (so the nodes' clocks need not agree) and its
/// connection count into the hash <c>{prefix}:node-connections</c>, and removes the nodes whose last heartbeat is older
/// than <see cref="RedisBackplaneOptions.NodeTimeout"/>. A node is alive while its heartbeat is younger than that: one
/// killed without a word (SIGKILL) disappears from the list within the timeout.
/// </para>
/// <para>
/// Requests: the asking node publishes <c>{id, from, op, payload}</c> once on <c>{prefix}:cluster:requests</c>; every
/// other node runs its handler of <c>op</c> and publishes <c>{id, node, payload}</c> on
/// <c>{prefix}:cluster:replies:{from}</c>. The asking node runs its own handler directly, and waits for the nodes the
/// registry lists alive, at most <see cref="RedisBackplaneOptions.RequestTimeout"/>; those that have not answered then
/// are reported missing. While Redis is unreachable, the nodes of the last registry read are reported missing.
/// </para>
/// </remarks>
internal sealed partial class RedisWebSocketCluster : IWebSocketCluster, IHostedService, IAsyncDisposable
{
    // KEYS[1] the nodes' sorted set, KEYS[2] the connection counts; ARGV: node id, its connections, the timeout in ms.
    private const string HeartbeatScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))
        for _, node in ipairs(stale) do
          redis.call('ZREM', KEYS[1], node)
          redis.call('HDEL', KEYS[2], node)
        end
        return now
        """;

    // Returns { now, id1, heartbeat1, connections1, id2, ... } for the nodes alive now.
    private const string NodesScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local live = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf', 'WITHSCORES')
        local result = { now }
        for i = 1, #live, 2 do
          result[#result + 1] = live[i]
          result[#result + 1] = live[i + 1]
          result[#result + 1] = redis.call('HGET', KEYS[2], live[i]) or '0'
        end
        return result
        """;

    private readonly RedisBackplaneOptions _options;
    private readonly IWebSocketConnectionRegistry _registry;
    private readonly IServiceProvider _services;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Func<string, CancellationToken, ValueTask<string>>> _handlers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, PendingRequest> _pending = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private IReadOnlyList<WebSocketNode> _lastNodes = [];
    private ConnectionMultiplexer? _redis;
    private Task? _heartbeat;
    private int _heartbeatFailing;

    public RedisWebSocketCluster(IOptions<RedisBackplaneOptions> options, IOptions<SluiceOptions> sluiceOptions, IWebSocketConnectionRegistry registry,
        IServiceProvider services, TimeProvider time, ILogger<RedisWebSocketCluster> logger)
    {
        _options = options.Value;
        NodeId = sluiceOptions.Value.NodeId;
        _registry = registry;
        _services = services;
        _time = time;
        _logger = logger;
    }

    public string NodeId { get; }

    /// <summary>The cluster's Redis connection, also used by the cluster rate limits; null before the start.</summary>
    public ConnectionMultiplexer? Redis => _redis;

    private RedisKey NodesKey => _options.ChannelPrefix + ":nodes";

    private RedisKey ConnectionsKey => _options.ChannelPrefix + ":node-connections";

    private RedisChannel RequestChannel => RedisChannel.Literal(_options.ChannelPrefix + ":cluster:requests");

    private RedisChannel ReplyChannel(string node) => RedisChannel.Literal(_options.ChannelPrefix + ":cluster:replies:" + node);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // The built-in requests (send to a subject) must be answerable before anyone here asked for the service.
        _services.GetService<IWebSocketUsers>();

        var configuration = ConfigurationOptions.Parse(_options.Configuration);
        configuration.AbortOnConnectFail = false;
        configuration.ClientName ??= "sluice-cluster-" + NodeId;
        _redis = await ConnectionMultiplexer.ConnectAsync(configuration);
        var subscriber = _redis.GetSubscriber();
        // Handlers run off the multiplexer's reader: a slow handler must not hold up replies to this node's requests.
        await subscriber.SubscribeAsync(RequestChannel, (channel, value) => Task.Run(() => AnswerAsync(value)));
        await subscriber.SubscribeAsync(ReplyChannel(NodeId), (_, value) => Receive(value));
        _heartbeat = Task.Run(HeartbeatAsync, CancellationToken.None);
        Log.Joined(_logger, NodeId, _options.HeartbeatInterval.TotalSeconds, _options.NodeTimeout.TotalSeconds);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync();
        await (_heartbeat ?? Task.CompletedTask).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_redis is { IsConnected: true })
        {
            try
            {
                // Leave at once rather than after the timeout: a node stopped in order is not "missing".
                var database = _redis.GetDatabase();
                await Task.WhenAll(database.SortedSetRemoveAsync(NodesKey, NodeId), database.HashDeleteAsync(ConnectionsKey, NodeId))
                    .WaitAsync(TimeSpan.FromSeconds(5), cancellationToken);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.Failed(_logger, "leave", ex);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }

        _stopping.Dispose();
    }

    public IDisposable MapRequest(string operation, Func<string, CancellationToken, ValueTask<string>> handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(operation);
        ArgumentNullException.ThrowIfNull(handler);
        if (!_handlers.TryAdd(operation, handler))
        {
            throw new InvalidOperationException($"a handler of the cluster request '{operation}' is registered already");
        }

        return new Registration(() => _handlers.TryRemove(new KeyValuePair<string, Func<string, CancellationToken, ValueTask<string>>>(operation, handler)));
    }

    public async ValueTask<IReadOnlyList<WebSocketNode>> GetNodesAsync(CancellationToken cancellationToken = default) =>
        await ReadNodesAsync() ?? Fallback();

    /// <summary>This node alone, and the others of the last read: while Redis is unreachable they are not known to be gone.</summary>
    private List<WebSocketNode> Fallback() =>
        [new WebSocketNode(NodeId, _registry.Count, _time.GetUtcNow()), .. _lastNodes.Where(n => n.Id != NodeId)];

    private async Task<IReadOnlyList<WebSocketNode>?> ReadNodesAsync()
    {
        if (_redis is not { IsConnected: true })
        {
            return null;
        }

        try
        {
            var result = (RedisResult[])(await _redis.GetDatabase().ScriptEvaluateAsync(NodesScript, [NodesKey, ConnectionsKey],
                [(long)_options.NodeTimeout.TotalMilliseconds]))!;
            var nodes = new List<WebSocketNode> { new(NodeId, _registry.Count, _time.GetUtcNow()) };
            for (var i = 1; i + 2 < result.Length; i += 3)
            {
                var id = (string)result[i]!;
                if (id != NodeId)
                {
                    nodes.Add(new WebSocketNode(id, (int)result[i + 2], DateTimeOffset.FromUnixTimeMilliseconds((long)(double)result[i + 1])));
                }
            }

            _lastNodes = nodes;
            return nodes;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            Log.Failed(_logger, "read the nodes", ex);
            return null;
        }
    }

    public async ValueTask<ClusterReplies> RequestAsync(string operation, string payload, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(operation);
        ArgumentNullException.ThrowIfNull(payload);
        var read = await ReadNodesAsync();
        var others = (read ?? Fallback()).Select(n => n.Id).Where(id => id != NodeId).ToHashSet(StringComparer.Ordinal);
        var pending = new PendingRequest(others);
        var id = Guid.NewGuid().ToString("N");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        if (others.Count > 0 && read is not null)
        {
            _pending[id] = pending;
            try
            {
                var request = JsonSerializer.SerializeToUtf8Bytes(new ClusterRequest(id, NodeId, operation, payload), ClusterJson.Default.ClusterRequest);
                await _redis!.GetSubscriber().PublishAsync(RequestChannel, request);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.Failed(_logger, "request " + operation, ex);
            }
        }

        var replies = new Dictionary<string, string>(StringComparer.Ordinal);
        var missing = new List<string>();
        try
        {
            if (_handlers.TryGetValue(operation, out var handler))
            {
                replies[NodeId] = await handler(payload, timeout.Token);
            }
            else
            {
                missing.Add(NodeId);
            }

            if (others.Count > 0 && read is not null)
            {
                await pending.Completion.WaitAsync(timeout.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }

        foreach (var (node, reply) in pending.Snapshot())
        {
            replies[node] = reply;
        }

        missing.AddRange(others.Where(n => !replies.ContainsKey(n)).Order(StringComparer.Ordinal));
        if (missing.Count > 0)
        {
            Log.Partial(_logger, operation, string.Join(", ", missing));
        }

        return new ClusterReplies(replies, missing);
    }

    private async Task AnswerAsync(RedisValue value)
    {
        ClusterRequest? request;
        try
        {
            request = JsonSerializer.Deserialize((byte[])value!, ClusterJson.Default.ClusterRequest);
        }
        catch (JsonException)
        {
            return;
        }

        if (request is null || request.From == NodeId || !_handlers.TryGetValue(request.Op, out var handler))
        {
            return;
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(_options.RequestTimeout);
            var answer = await handler(request.Payload, timeout.Token);
            var reply = JsonSerializer.SerializeToUtf8Bytes(new ClusterReply(request.Id, NodeId, answer), ClusterJson.Default.ClusterReply);
            await _redis!.GetSubscriber().PublishAsync(ReplyChannel(request.From), reply);
        }
        catch (Exception ex)
        {
            // Any failure of the handler: the asking node reports this one missing, which is what it is for this request.
            Log.Failed(_logger, "answer " + request.Op, ex);
        }
    }

    private void Receive(RedisValue value)
    {
        try
        {
            if (JsonSerializer.Deserialize((byte[])value!, ClusterJson.Default.ClusterReply) is { } reply && _pending.TryGetValue(reply.Id, out var pending))
            {
                pending.Add(reply.Node, reply.Payload);
            }
        }
        catch (JsonException)
        {
            // Not a reply of this version: ignored, the node counts as missing.
        }
    }

    private async Task HeartbeatAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval, _time);
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (_redis is { IsConnected: true })
                {
                    await _redis.GetDatabase().ScriptEvaluateAsync(HeartbeatScript, [NodesKey, ConnectionsKey],
                        [NodeId, _registry.Count, (long)_options.NodeTimeout.TotalMilliseconds]);
                    if (Interlocked.Exchange(ref _heartbeatFailing, 0) == 1)
                    {
                        Log.HeartbeatRestored(_logger, NodeId);
                    }
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                if (Interlocked.Exchange(ref _heartbeatFailing, 1) == 0)
                {
                    Log.Failed(_logger, "heartbeat", ex);
                }
            }

            try
            {
                await timer.WaitForNextTickAsync(_stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private sealed class Registration(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }

    /// <summary>The answers to one request as they arrive; complete when every expected node has answered.</summary>
    private sealed class PendingRequest(HashSet<string> expected)
    {
        private readonly Dictionary<string, string> _replies = new(StringComparer.Ordinal);
        private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Completion => expected.Count == 0 ? Task.CompletedTask : _completion.Task;

        public void Add(string node, string reply)
        {
            lock (_replies)
            {
                _replies[node] = reply;
                if (expected.All(_replies.ContainsKey))
                {
                    _completion.TrySetResult();
                }
            }
        }

        public KeyValuePair<string, string>[] Snapshot()
        {
            lock (_replies)
            {
                return [.. _replies];
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(710, LogLevel.Information, "Cluster node '{NodeId}' joined: heartbeat every {HeartbeatSeconds} s, a node silent for {TimeoutSeconds} s is gone.")]
        public static partial void Joined(ILogger logger, string nodeId, double heartbeatSeconds, double timeoutSeconds);

        [LoggerMessage(711, LogLevel.Warning, "Cluster request '{Operation}': no answer in time from {Nodes}; the answer is partial.")]
        public static partial void Partial(ILogger logger, string operation, string nodes);

        [LoggerMessage(712, LogLevel.Warning, "Cluster: {Operation} failed.")]
        public static partial void Failed(ILogger logger, string operation, Exception exception);

        [LoggerMessage(713, LogLevel.Information, "Cluster node '{NodeId}': heartbeats reach Redis again.")]
        public static partial void HeartbeatRestored(ILogger logger, string nodeId);
    }
}

internal sealed record ClusterRequest(string Id, string From, string Op, string Payload);

internal sealed record ClusterReply(string Id, string Node, string Payload);

[JsonSerializable(typeof(ClusterRequest))]
[JsonSerializable(typeof(ClusterReply))]
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
internal sealed partial class ClusterJson : JsonSerializerContext;
