using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Diagnostics;

namespace Sluice.Topics;

/// <summary>
/// The process's topics: who subscribes to what, and fan-out. A publish frames the message once and
/// enqueues the same frame to every subscriber's <see cref="TopicOutbox"/>; the backplane, when configured,
/// carries it to the other nodes.
/// </summary>
internal sealed class TopicBus : IWebSocketTopics, ITopicDelivery
{
    private readonly ConcurrentDictionary<string, Topic> _topics = new(StringComparer.Ordinal);
    private readonly ITopicBackplane? _backplane;

    public TopicBus(IOptions<TopicOptions> options, SluiceMetrics metrics, IServiceProvider services)
    {
        Options = options.Value;
        Metrics = new TopicMetrics(metrics.Meter, this);
        _backplane = services.GetService<ITopicBackplane>();
        _backplane?.Attach(this);
    }

    public TopicOptions Options { get; }

    public TopicMetrics Metrics { get; }

    public bool HasBackplane => _backplane is not null;

    public bool Subscribe(WebSocketConnection connection, string topic)
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

    private void Deliver(string topic, TopicFrame frame, WebSocketConnection? exclude)
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

        var delivered = 0;
        foreach (var subscriber in subscribers)
        {
            if (!ReferenceEquals(subscriber, exclude))
            {
                subscriber.DeliverTopic(frame);
                delivered++;
            }
        }

        Metrics.Deliveries.Add(delivered);
    }

    public void Validate(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        if (TopicName.GetError(topic, Options.MaxTopicLength) is { } error)
        {
            throw new ArgumentException(error, nameof(topic));
        }
    }

    private sealed class Topic(string name)
    {
        public string Name { get; } = name;

        public HashSet<WebSocketConnection> Subscribers { get; } = [];

        /// <summary>The subscribers as an array for fan-out, rebuilt after a change: one copy per change, not per publish.</summary>
        public volatile WebSocketConnection[]? Snapshot;

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
