using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Sluice.Redis;

/// <summary>
/// Carries topic messages between gateway nodes over Redis pub/sub: one Redis channel per topic, subscribed only
/// while this node has local subscribers to it. Each message carries the publishing node's id, so a node never
/// delivers its own messages twice.
/// </summary>
/// <remarks>
/// Order: one node publishes on one multiplexer connection and Redis delivers a channel's messages in the order it
/// received them; each channel's messages are handed to local subscribers one at a time (a
/// <see cref="ChannelMessageQueue"/>), so one publisher's messages to one topic keep their order on every node.
/// While Redis is unreachable, publishes to other nodes are lost (logged once per outage and counted in
/// <c>sluice.backplane.failures</c>); local delivery goes on. Subscriptions are restored when Redis comes back.
/// </remarks>
internal sealed partial class RedisTopicBackplane : ITopicBackplane, IHostedService, IAsyncDisposable
{
    private const byte EnvelopeVersion = 1;
    private const int EnvelopeHeaderLength = 2 + 16;
    private static readonly TimeSpan s_nodeTtl = TimeSpan.FromSeconds(15);

    private readonly RedisBackplaneOptions _options;
    private readonly ILogger _logger;
    private readonly Guid _nodeId = Guid.NewGuid();
    private readonly string _nodeField;
    private readonly ConcurrentDictionary<string, int> _localCounts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ChannelMessageQueue> _subscriptions = new(StringComparer.Ordinal);
    private readonly Channel<string> _changes = System.Threading.Channels.Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Counter<long> _published;
    private readonly Counter<long> _received;
    private readonly Counter<long> _failures;
    private ITopicDelivery? _delivery;
    private ConnectionMultiplexer? _redis;
    private Task? _reconciler;
    private Task? _heartbeat;
    private int _publishFailing;

    public RedisTopicBackplane(IOptions<RedisBackplaneOptions> options, ILogger<RedisTopicBackplane> logger, IMeterFactory meterFactory)
    {
        _options = options.Value;
        _logger = logger;
        _nodeField = _nodeId.ToString("N");
        var meter = meterFactory.Create("Sluice");
        _published = meter.CreateCounter<long>("sluice.backplane.published", "{message}", "Topic messages sent to the other nodes through Redis.");
        _received = meter.CreateCounter<long>("sluice.backplane.received", "{message}", "Topic messages received from other nodes through Redis.");
        _failures = meter.CreateCounter<long>("sluice.backplane.failures", "{operation}", "Backplane operations that failed, by operation; a failed publish is a message the other nodes did not get.");
        meter.CreateObservableGauge("sluice.backplane.connected", () => _redis?.IsConnected == true ? 1 : 0, description: "1 while the node is connected to Redis.");
    }

    /// <summary>Gets whether the node is connected to Redis now.</summary>
    public bool IsConnected => _redis?.IsConnected == true;

    public void Attach(ITopicDelivery delivery) => _delivery = delivery;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var configuration = ConfigurationOptions.Parse(_options.Configuration);
        // Start even when Redis is down: the node serves its own subscribers and joins the others when Redis is back.
        configuration.AbortOnConnectFail = false;
        configuration.ClientName ??= "sluice-" + _nodeField[..8];
        _redis = await ConnectionMultiplexer.ConnectAsync(configuration);
        _redis.ConnectionFailed += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Subscription)
            {
                Log.Disconnected(_logger, e.EndPoint?.ToString(), e.FailureType.ToString());
            }
        };
        _redis.ConnectionRestored += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Subscription)
            {
                Interlocked.Exchange(ref _publishFailing, 0);
                Log.Reconnected(_logger, e.EndPoint?.ToString());
                RestorePresence();
                // Redis may have restarted empty: write this node's counts again.
                foreach (var topic in _localCounts.Keys)
                {
                    _changes.Writer.TryWrite(topic);
                }
            }
        };
        if (!_redis.IsConnected)
        {
            // Never the configuration string itself: it may hold the password.
            Log.Disconnected(_logger, configuration.ToString(includePassword: false), "not reachable at start");
        }

        _reconciler = Task.Run(ReconcileAsync, CancellationToken.None);
        _heartbeat = Task.Run(HeartbeatAsync, CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync();
        _changes.Writer.TryComplete();
        await Task.WhenAll(_reconciler ?? Task.CompletedTask, _heartbeat ?? Task.CompletedTask).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_redis is { IsConnected: true })
        {
            try
            {
                var database = _redis.GetDatabase();
                var cleanup = _localCounts.Keys.Select(topic => database.HashDeleteAsync(CountsKey(topic), _nodeField)).ToList();
                cleanup.Add(database.KeyDeleteAsync(NodeKey(_nodeField)));
                cleanup.Add(CleanupPresenceAsync(database));
                await Task.WhenAll(cleanup).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.Failed(_logger, "cleanup", ex);
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

    public async ValueTask PublishAsync(string topic, WebSocketMessage message, CancellationToken cancellationToken)
    {
        if (_redis is null)
        {
            return;
        }

        if (!_redis.IsConnected)
        {
            // Not queued for later: the publisher would wait for the backlog's timeout on every message, and local
            // subscribers have the message already.
            CountLost(topic, null);
            return;
        }

        var envelope = new byte[EnvelopeHeaderLength + message.Length];
        envelope[0] = EnvelopeVersion;
        envelope[1] = message.IsText ? (byte)1 : (byte)2;
        _nodeId.TryWriteBytes(envelope.AsSpan(2, 16));
        message.Payload.Span.CopyTo(envelope.AsSpan(EnvelopeHeaderLength));
        try
        {
            await _redis.GetSubscriber().PublishAsync(Channel(topic), envelope);
            _published.Add(1);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            CountLost(topic, ex);
        }
    }

    private void CountLost(string topic, Exception? exception)
    {
        _failures.Add(1, new KeyValuePair<string, object?>("operation", "publish"));
        if (Interlocked.Exchange(ref _publishFailing, 1) == 0)
        {
            Log.PublishLost(_logger, topic, exception);
        }
    }

    public void OnLocalSubscriberCountChanged(string topic, int count)
    {
        // Called under the topic's lock: record and hand over, never wait here.
        _localCounts[topic] = count;
        _changes.Writer.TryWrite(topic);
    }

    public async ValueTask<long> CountSubscribersAsync(string topic, CancellationToken cancellationToken)
    {
        var local = _localCounts.GetValueOrDefault(topic);
        if (_redis is not { IsConnected: true })
        {
            return local;
        }

        try
        {
            var database = _redis.GetDatabase();
            var entries = await database.HashGetAllAsync(CountsKey(topic));
            long total = local;
            foreach (var entry in entries)
            {
                var node = (string)entry.Name!;
                // A node that died without cleaning up stops counting once its heartbeat key expires.
                if (node != _nodeField && (long)entry.Value > 0 && await database.KeyExistsAsync(NodeKey(node)))
                {
                    total += (long)entry.Value;
                }
            }

            return total;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            _failures.Add(1, new KeyValuePair<string, object?>("operation", "count"));
            return local;
        }
    }

    private async Task ReconcileAsync()
    {
        await foreach (var topic in _changes.Reader.ReadAllAsync())
        {
            var count = _localCounts.GetValueOrDefault(topic);
            try
            {
                var subscribed = _subscriptions.TryGetValue(topic, out var queue);
                if (count > 0 && !subscribed)
                {
                    queue = await _redis!.GetSubscriber().SubscribeAsync(Channel(topic));
                    queue.OnMessage(Receive);
                    _subscriptions[topic] = queue;
                    MarkReceiving(topic);
                }
                else if (count == 0 && subscribed)
                {
                    _subscriptions.Remove(topic);
                    ForgetReceiving(topic);
                    await queue!.UnsubscribeAsync();
                }

                var database = _redis!.GetDatabase();
                if (count > 0)
                {
                    await database.HashSetAsync(CountsKey(topic), _nodeField, count);
                    // Here too, not only in the heartbeat: after a Redis restart the count is valid at once.
                    await database.StringSetAsync(NodeKey(_nodeField), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), s_nodeTtl);
                }
                else
                {
                    await database.HashDeleteAsync(CountsKey(topic), _nodeField);
                    _localCounts.TryRemove(new KeyValuePair<string, int>(topic, 0));
                }
            }
            catch (Exception ex) when (!_stopping.IsCancellationRequested)
            {
                // Any failure, not only Redis's: the loop must outlive it, or subscriptions would never change again.
                _failures.Add(1, new KeyValuePair<string, object?>("operation", "subscribe"));
                Log.Failed(_logger, "subscribe " + topic, ex);
                if (!_subscriptions.ContainsKey(topic))
                {
                    // StackExchange.Redis registers a channel before SUBSCRIBE is acknowledged and resubscribes it on
                    // reconnect; without this, the retry would add a second registration and deliver twice.
                    await UnsubscribeQuietlyAsync(topic);
                }

                RetryLater(topic);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                break;
            }
        }

        foreach (var queue in _subscriptions.Values)
        {
            try
            {
                await queue.UnsubscribeAsync();
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                Log.Failed(_logger, "unsubscribe", ex);
            }
        }

        _subscriptions.Clear();
    }

    private async Task UnsubscribeQuietlyAsync(string topic)
    {
        try
        {
            await _redis!.GetSubscriber().UnsubscribeAsync(Channel(topic));
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            // Still unreachable; the next attempt tries again.
        }
    }

    private void RetryLater(string topic) =>
        _ = Task.Delay(TimeSpan.FromSeconds(1), _stopping.Token).ContinueWith(
            _ => _changes.Writer.TryWrite(topic), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);

    private async Task HeartbeatAsync()
    {
        using var timer = new PeriodicTimer(s_nodeTtl / 3);
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (_redis is { IsConnected: true })
                {
                    await _redis.GetDatabase().StringSetAsync(NodeKey(_nodeField), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), s_nodeTtl);
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                _failures.Add(1, new KeyValuePair<string, object?>("operation", "heartbeat"));
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

    private void Receive(ChannelMessage received)
    {
        byte[]? envelope = received.Message;
        if (envelope is { Length: > 0 } && envelope[0] == HistoryEnvelopeVersion)
        {
            // Delivered here too when this node published it: the channel's order is the offsets' order.
            ReceiveHistory(((string)received.Channel!)[ChannelPrefix.Length..], envelope);
            return;
        }

        if (envelope is not { Length: >= EnvelopeHeaderLength } || envelope[0] != EnvelopeVersion)
        {
            _failures.Add(1, new KeyValuePair<string, object?>("operation", "decode"));
            return;
        }

        if (new Guid(envelope.AsSpan(2, 16)) == _nodeId)
        {
            return;
        }

        var topic = ((string)received.Channel!)[(ChannelPrefix.Length)..];
        var payload = envelope.AsMemory(EnvelopeHeaderLength);
        var message = envelope[1] == 1 ? WebSocketMessage.FromText(payload) : WebSocketMessage.FromBinary(payload);
        _received.Add(1);
        _delivery?.DeliverLocally(topic, message);
    }

    private string ChannelPrefix => _options.ChannelPrefix + ":topic:";

    private RedisChannel Channel(string topic) => RedisChannel.Literal(ChannelPrefix + topic);

    private RedisKey CountsKey(string topic) => _options.ChannelPrefix + ":subscribers:" + topic;

    private RedisKey NodeKey(string node) => _options.ChannelPrefix + ":node:" + node;

    private static partial class Log
    {
        [LoggerMessage(700, LogLevel.Warning, "Redis backplane disconnected from {EndPoint} ({Reason}); topics are local to this node until it reconnects.")]
        public static partial void Disconnected(ILogger logger, string? endPoint, string reason);

        [LoggerMessage(701, LogLevel.Information, "Redis backplane reconnected to {EndPoint}; subscriptions restored.")]
        public static partial void Reconnected(ILogger logger, string? endPoint);

        [LoggerMessage(702, LogLevel.Warning, "Redis backplane: publishing to '{Topic}' failed; messages published while Redis is unreachable do not reach other nodes (counted in sluice.backplane.failures).")]
        public static partial void PublishLost(ILogger logger, string topic, Exception? exception);

        [LoggerMessage(703, LogLevel.Warning, "Redis backplane: {Operation} failed; retrying.")]
        public static partial void Failed(ILogger logger, string operation, Exception exception);
    }
}
