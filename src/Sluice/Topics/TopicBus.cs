using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice.Topics;

/// <summary>
/// The process's topics: who subscribes to what, and fan-out. A publish frames the message once and
/// enqueues the same frame to every subscriber's <see cref="TopicOutbox"/>; the backplane, when configured,
/// carries it to the other nodes.
/// </summary>
internal sealed class TopicBus : IWebSocketTopics, ITopicDelivery, ITopicHistoryDelivery
{
    private readonly ConcurrentDictionary<string, Topic> _topics = new(StringComparer.Ordinal);
    private readonly ITopicBackplane? _backplane;
    private readonly ITopicHistoryBackplane? _historyBackplane;
    private readonly ITopicPresenceBackplane? _presenceBackplane;
    private readonly InMemoryTopicHistory _history;

    public TopicBus(IOptions<TopicOptions> options, SluiceMetrics metrics, IServiceProvider services)
    {
        Options = options.Value;
        Metrics = new TopicMetrics(metrics.Meter, this);
        _backplane = services.GetService<ITopicBackplane>();
        _backplane?.Attach(this);
        _historyBackplane = services.GetService<ITopicHistoryBackplane>();
        _historyBackplane?.Attach(this);
        _presenceBackplane = services.GetService<ITopicPresenceBackplane>();
        _history = new InMemoryTopicHistory(services.GetService<TimeProvider>() ?? TimeProvider.System);
    }

    public TopicOptions Options { get; }

    public TopicMetrics Metrics { get; }

    public bool HasBackplane => _backplane is not null;

    /// <param name="connection">The subscriber.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="recovery">Holds the topic's live messages for the subscriber until it has caught up with the history; registered under the same lock as the subscriber.</param>
    public bool Subscribe(WebSocketConnection connection, string topic, TopicRecovery? recovery = null)
    {
        Validate(topic);
        while (true)
        {
            var entry = _topics.GetOrAdd(topic, static name => new Topic(name));
            lock (entry)
            {
                if (entry.Removed)
                {
                    continue;
                }

                if (!entry.Subscribers.Add(connection))
                {
                    return false;
                }

                if (recovery is not null)
                {
                    // Before the snapshot changes: a publisher that sees the subscriber also sees its recovery.
                    entry.Recovering = new Dictionary<WebSocketConnection, TopicRecovery>(entry.Recovering ?? []) { [connection] = recovery };
                }

                entry.Snapshot = null;
                _backplane?.OnLocalSubscriberCountChanged(topic, entry.Subscribers.Count);
                return true;
            }
        }
    }

    public bool Unsubscribe(WebSocketConnection connection, string topic)
    {
        if (!_topics.TryGetValue(topic, out var entry))
        {
            return false;
        }

        lock (entry)
        {
            if (!entry.Subscribers.Remove(connection))
            {
                return false;
            }

            ForgetRecovery(entry, connection);
            entry.Snapshot = null;
            if (entry.Subscribers.Count == 0)
            {
                entry.Removed = true;
                _topics.TryRemove(new KeyValuePair<string, Topic>(topic, entry));
            }

            _backplane?.OnLocalSubscriberCountChanged(topic, entry.Subscribers.Count);
            return true;
        }
    }

    public ValueTask PublishAsync(string topic, WebSocketMessage message, CancellationToken cancellationToken = default) =>
        PublishAsync(topic, message, exclude: null, cancellationToken);

    public ValueTask PublishAsync(string topic, WebSocketMessage message, WebSocketConnection? exclude, CancellationToken cancellationToken)
    {
        Validate(topic);
        ArgumentNullException.ThrowIfNull(message);
        var frame = TopicFrame.Create(message);
        Metrics.Published.Add(1);
        Deliver(topic, frame, exclude);
        return _backplane?.PublishAsync(topic, frame.Message, cancellationToken) ?? default;
    }

    public void DeliverLocally(string topic, WebSocketMessage message) => Deliver(topic, TopicFrame.Create(message), exclude: null);

    public void DeliverFromHistory(string topic, long offset, WebSocketMessage message, string? excludeConnectionId)
    {
        Metrics.Published.Add(1);
        if (_topics.TryGetValue(topic, out var entry))
        {
            // Offsets arrive in order; one skipped means this node missed messages (its Redis subscription was
            // down a moment): its subscribers would have a silent gap, so they are closed and come back with since.
            // A lower offset is a new epoch (the history was lost), which the message itself says.
            var last = Interlocked.Exchange(ref entry.LastOffset, offset);
            if (last != 0 && offset > last + 1)
            {
                WebSocketConnection[] gapped;
                lock (entry)
                {
                    gapped = [.. entry.Subscribers];
                }

                foreach (var subscriber in gapped)
                {
                    subscriber.BeginClose(WebSocketProtocol.TryAgainLater, "missed topic messages: subscribe again with since", ConnectionCloseInitiator.Server);
                }

                return;
            }
        }

        Deliver(topic, TopicFrame.Create(message, offset), exclude: null, excludeConnectionId);
    }

    /// <summary>Appends a message to the topic's history (Redis's with a history backplane, else this node's) and delivers it in offset order.</summary>
    public ValueTask PublishWithHistoryAsync(string topic, TopicHistoryMessage message, TopicHistoryLimits limits, CancellationToken cancellationToken)
    {
        Validate(topic);
        if (_historyBackplane is not null)
        {
            return _historyBackplane.PublishAsync(topic, message, limits, cancellationToken);
        }

        WebSocketMessage? published = null;
        _history.Append(topic, message, limits, (offset, text) =>
        {
            published = text;
            DeliverFromHistory(topic, offset, text, message.ExcludeConnectionId);
        });
        // Another backplane than Redis's carries the message on, with this node's offsets.
        return _backplane?.PublishAsync(topic, published!, cancellationToken) ?? default;
    }

    /// <summary>Reads the topic's history after <paramref name="afterOffset"/>; with a history backplane, once this node receives the topic's live messages.</summary>
    public async ValueTask<TopicHistoryRead> ReadHistoryAsync(string topic, long afterOffset, TopicHistoryLimits limits, CancellationToken cancellationToken)
    {
        if (_historyBackplane is null)
        {
            return _history.Read(topic, afterOffset, limits);
        }

        await _historyBackplane.WaitUntilReceivingAsync(topic, cancellationToken);
        return await _historyBackplane.ReadAsync(topic, afterOffset, limits, cancellationToken);
    }

    public ValueTask JoinAsync(string topic, WebSocketConnection connection) =>
        _presenceBackplane?.JoinAsync(topic, connection.Id, connection.Subject, CancellationToken.None) ?? default;

    public ValueTask LeaveAsync(string topic, WebSocketConnection connection) =>
        _presenceBackplane?.LeaveAsync(topic, connection.Id, CancellationToken.None) ?? default;

    /// <summary>The subject (null when anonymous) of every subscriber of the topic, on every node with a presence backplane.</summary>
    public ValueTask<IReadOnlyList<string?>> GetPresenceAsync(string topic, CancellationToken cancellationToken)
    {
        if (_presenceBackplane is not null)
        {
            return _presenceBackplane.GetPresenceAsync(topic, cancellationToken);
        }

        if (!_topics.TryGetValue(topic, out var entry))
        {
            return new ValueTask<IReadOnlyList<string?>>([]);
        }

        lock (entry)
        {
            return new ValueTask<IReadOnlyList<string?>>(entry.Subscribers.Select(s => s.Subject).ToList());
        }
    }

    public int GetSubscriberCount(string topic)
    {
        if (!_topics.TryGetValue(topic, out var entry))
        {
            return 0;
        }

        lock (entry)
        {
            return entry.Subscribers.Count;
        }
    }

    public ValueTask<long> CountSubscribersAsync(string topic, CancellationToken cancellationToken = default) =>
        _backplane?.CountSubscribersAsync(topic, cancellationToken) ?? new ValueTask<long>(GetSubscriberCount(topic));

    public IReadOnlyDictionary<string, int> GetTopics()
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, entry) in _topics)
        {
            lock (entry)
            {
                if (entry.Subscribers.Count > 0)
                {
                    result[name] = entry.Subscribers.Count;
                }
            }
        }

        return result;
    }

    private void Deliver(string topic, TopicFrame frame, WebSocketConnection? exclude, string? excludeId = null)
    {
        if (!_topics.TryGetValue(topic, out var entry))
        {
            return;
        }

        var subscribers = entry.Snapshot;
        if (subscribers is null)
        {
            lock (entry)
            {
                subscribers = entry.Snapshot ??= [.. entry.Subscribers];
            }
        }

        // Read after the snapshot: a recovery is registered before its subscriber appears in a snapshot.
        var recovering = entry.Recovering;
        var delivered = 0;
        foreach (var subscriber in subscribers)
        {
            if (ReferenceEquals(subscriber, exclude) || (excludeId is not null && subscriber.Id == excludeId))
            {
                continue;
            }

            if (recovering is not null && recovering.TryGetValue(subscriber, out var recovery))
            {
                if (recovery.Offer(frame))
                {
                    lock (entry)
                    {
                        ForgetRecovery(entry, subscriber);
                    }
                }
            }
            else
            {
                subscriber.DeliverTopic(frame);
            }

            delivered++;
        }

        Metrics.Deliveries.Add(delivered);
    }

    public void Validate(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        if (TopicName.GetError(TopicName.WithoutNamespace(topic), Options.MaxTopicLength) is { } error)
        {
            throw new ArgumentException(error, nameof(topic));
        }
    }

    private static void ForgetRecovery(Topic entry, WebSocketConnection connection)
    {
        if (entry.Recovering is { } recovering && recovering.ContainsKey(connection))
        {
            var rest = new Dictionary<WebSocketConnection, TopicRecovery>(recovering);
            rest.Remove(connection);
            entry.Recovering = rest.Count == 0 ? null : rest;
        }
    }

    private sealed class Topic(string name)
    {
        public string Name { get; } = name;

        public HashSet<WebSocketConnection> Subscribers { get; } = [];

        /// <summary>The subscribers as an array for fan-out, rebuilt after a change: one copy per change, not per publish.</summary>
        public volatile WebSocketConnection[]? Snapshot;

        /// <summary>Subscribers still catching up with the history (copied on change, read without the lock by publishers).</summary>
        public volatile Dictionary<WebSocketConnection, TopicRecovery>? Recovering;

        /// <summary>The offset of the last history message delivered here, to notice one this node never received.</summary>
        public long LastOffset;

        public bool Removed { get; set; }
    }
}

/// <summary>Topic metrics on the <c>Sluice</c> meter: counted per publish, not per delivery.</summary>
internal sealed class TopicMetrics
{
    private readonly Counter<long> _dropped;

    public TopicMetrics(Meter meter, TopicBus bus)
    {
        Published = meter.CreateCounter<long>("sluice.topic.published", "{message}", "Messages published to topics on this node.");
        Deliveries = meter.CreateCounter<long>("sluice.topic.deliveries", "{message}", "Topic messages handed to local subscribers' queues.");
        _dropped = meter.CreateCounter<long>("sluice.topic.dropped", "{message}", "Topic messages not delivered because a subscriber's queue was full, by what was done.");
        // Per-topic series are capped at the largest 100 topics: a topic per room must not explode the metric's cardinality.
        meter.CreateObservableGauge(
            "sluice.topic.subscribers",
            () => bus.GetTopics().OrderByDescending(t => t.Value).Take(100).Select(t => new Measurement<int>(t.Value, new KeyValuePair<string, object?>("topic", t.Key))),
            "{connection}",
            "Subscribers per topic on this node (the 100 largest topics).");
    }

    public Counter<long> Published { get; }

    public Counter<long> Deliveries { get; }

    public void RecordDropped(string reason) => _dropped.Add(1, new KeyValuePair<string, object?>("reason", reason));
}
