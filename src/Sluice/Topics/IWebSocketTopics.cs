namespace Sluice;

/// <summary>
/// Publish/subscribe topics for WebSocket connections. Connections subscribe with
/// <see cref="WebSocketConnection.Subscribe"/>; anything in the app (a handler, an HTTP endpoint, a background
/// service) publishes here.
/// </summary>
/// <remarks>
/// A message is framed once per publish and the same bytes go to every subscriber whose route has no outbound
/// interceptors; a route with outbound interceptors runs them for each subscriber. Sends to subscribers do not
/// wait for each other: each subscriber has a bounded queue (<see cref="TopicOptions"/>). One publisher's messages
/// to one topic reach every subscriber in the order published, on every node when a backplane is configured.
/// </remarks>
public interface IWebSocketTopics
{
    /// <summary>Publishes <paramref name="message"/> to every subscriber of <paramref name="topic"/>, on every node.</summary>
    ValueTask PublishAsync(string topic, WebSocketMessage message, CancellationToken cancellationToken = default);

    /// <summary>Gets the number of connections subscribed to <paramref name="topic"/> on this node.</summary>
    int GetSubscriberCount(string topic);

    /// <summary>Counts the subscribers of <paramref name="topic"/> on every node (this node's without a backplane).</summary>
    ValueTask<long> CountSubscribersAsync(string topic, CancellationToken cancellationToken = default);

    /// <summary>Lists the topics that have subscribers on this node, with their counts.</summary>
    IReadOnlyDictionary<string, int> GetTopics();
}

/// <summary>Limits of topic delivery, configured with <c>services.Configure&lt;TopicOptions&gt;(...)</c>.</summary>
public sealed class TopicOptions
{
    /// <summary>
    /// Gets or sets how many published messages may wait for one subscriber before <see cref="SlowSubscriberMode"/>
    /// applies. Default: 1024.
    /// </summary>
    public int SubscriberQueueCapacity { get; set; } = 1024;

    /// <summary>Gets or sets what happens to a subscriber whose queue is full. Default: <see cref="SlowSubscriberMode.Close"/>.</summary>
    public SlowSubscriberMode SlowSubscriberMode { get; set; } = SlowSubscriberMode.Close;

    /// <summary>Gets or sets the longest topic name accepted, in characters (<see cref="TopicName"/>). Default: 256.</summary>
    public int MaxTopicLength { get; set; } = TopicName.DefaultMaxLength;

    /// <summary>
    /// Gets or sets how many topics one connection may subscribe to through the pub/sub protocol
    /// (<c>UsePubSubProtocol</c>); a subscribe beyond it is answered with status 429. Each subscription holds
    /// memory on the server, so a client must not be able to add them without bound. Default: 100.
    /// </summary>
    public int MaxSubscriptionsPerConnection { get; set; } = 100;
}

/// <summary>What happens to a subscriber that cannot keep up with a topic.</summary>
public enum SlowSubscriberMode
{
    /// <summary>The subscriber is closed with 1013 (try again later): it reconnects and catches up, nothing is silently lost.</summary>
    Close,

    /// <summary>The oldest waiting message is discarded for the newest: for feeds where only recent data matters.</summary>
    DropOldest,

    /// <summary>The newest message is discarded.</summary>
    DropNewest,
}

/// <summary>
/// Carries topic messages between nodes, so that subscribers on every node receive what any node publishes.
/// Sluice.Redis implements it over Redis pub/sub (<c>AddRedisBackplane</c>).
/// </summary>
public interface ITopicBackplane
{
    /// <summary>Called once by the topic bus: where messages from other nodes are to be delivered.</summary>
    void Attach(ITopicDelivery delivery);

    /// <summary>Sends a message published on this node to the other nodes. The origin node must not receive it back.</summary>
    ValueTask PublishAsync(string topic, WebSocketMessage message, CancellationToken cancellationToken);

    /// <summary>
    /// This node's number of subscribers to <paramref name="topic"/> changed: from 0 the node needs the topic's
    /// messages, at 0 it no longer does. Called in order for each topic; must not block.
    /// </summary>
    void OnLocalSubscriberCountChanged(string topic, int count);

    /// <summary>Counts the subscribers of <paramref name="topic"/> on every node.</summary>
    ValueTask<long> CountSubscribersAsync(string topic, CancellationToken cancellationToken);
}

/// <summary>Delivers a message that another node published to this node's subscribers.</summary>
public interface ITopicDelivery
{
    /// <summary>Delivers <paramref name="message"/> to every local subscriber of <paramref name="topic"/>.</summary>
    void DeliverLocally(string topic, WebSocketMessage message);
}
