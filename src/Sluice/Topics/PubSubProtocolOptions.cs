namespace Sluice;

/// <summary>Settings of the pub/sub protocol on one endpoint (<c>UsePubSubProtocol(options => ...)</c>).</summary>
public sealed class PubSubProtocolOptions
{
    /// <summary>
    /// Gets or sets how many topics one connection may subscribe to, or null for
    /// <see cref="TopicOptions.MaxSubscriptionsPerConnection"/>; a subscribe beyond it is answered with status 429.
    /// </summary>
    public int? MaxSubscriptions { get; set; }

    /// <summary>
    /// Gets or sets the endpoint's topic namespace: its topics are separate from the same-named topics of endpoints
    /// with another namespace or none (<see cref="TopicName.InNamespace"/>). Default: null, shared with every
    /// endpoint without a namespace.
    /// </summary>
    public string? Namespace { get; set; }

    /// <summary>
    /// Gets or sets who may subscribe to and publish on which topic: called before every subscribe, publish and
    /// presence request with the topic as the client named it (without the namespace); false answers status 403.
    /// Default: null, every topic open to every connection.
    /// </summary>
    public Func<PubSubAuthorizationContext, ValueTask<bool>>? Authorize { get; set; }

    /// <summary>
    /// Gets or sets the topics' history: when set, every message carries an offset and an epoch, and a subscribe
    /// with <c>since</c> replays what the client missed. Default: null, no history.
    /// </summary>
    public TopicHistoryOptions? History { get; set; }

    /// <summary>Gets or sets whether clients may ask who is subscribed to a topic (<c>{"op":"presence","topic":"T"}</c>). Default: false.</summary>
    public bool Presence { get; set; }

    /// <summary>Gets or sets whether subscribers receive <c>join</c> and <c>leave</c> events of the topic's other subscribers (implies <see cref="Presence"/>). Default: false.</summary>
    public bool JoinLeave { get; set; }
}

/// <summary>How much of each topic's past the pub/sub protocol keeps for clients that reconnect.</summary>
public sealed class TopicHistoryOptions
{
    /// <summary>The largest <see cref="Size"/> accepted: 100,000 messages per topic.</summary>
    public const int MaxSize = 100_000;

    /// <summary>Gets or sets how many of a topic's latest messages are kept (1 to <see cref="MaxSize"/>). Default: 100.</summary>
    public int Size { get; set; } = 100;

    /// <summary>Gets or sets how long a message is kept. Default: 10 minutes.</summary>
    public TimeSpan TimeToLive { get; set; } = TimeSpan.FromMinutes(10);

    internal TopicHistoryLimits ToLimits()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Size);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Size, MaxSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(TimeToLive, TimeSpan.FromSeconds(1));
        return new TopicHistoryLimits(Size, TimeToLive);
    }
}

/// <summary>What a pub/sub client asks to do.</summary>
public enum PubSubOperation
{
    /// <summary>Subscribe to the topic (also asked before a presence request).</summary>
    Subscribe,

    /// <summary>Publish on the topic.</summary>
    Publish,
}

/// <summary>A request that <see cref="PubSubProtocolOptions.Authorize"/> allows or denies.</summary>
/// <param name="Connection">The connection asking.</param>
/// <param name="Topic">The topic as the client named it, without the endpoint's namespace.</param>
/// <param name="Operation">What it asks to do.</param>
public sealed record PubSubAuthorizationContext(WebSocketConnection Connection, string Topic, PubSubOperation Operation);
