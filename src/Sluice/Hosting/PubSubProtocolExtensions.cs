using System.Text.Json.Nodes;
using Sluice.Topics;

namespace Sluice;

/// <summary>Adds the gateway's <c>pubsub</c> JSON protocol to a hosted endpoint.</summary>
public static class PubSubProtocolExtensions
{
    /// <summary>
    /// Handles the endpoint's messages with the pub/sub protocol: <c>{"op":"subscribe","topic":"T"}</c>,
    /// <c>{"op":"unsubscribe","topic":"T"}</c> and <c>{"op":"publish","topic":"T","data":ANY}</c>, which sends
    /// <c>{"op":"message","topic":"T","data":ANY}</c> to every other subscriber of T on every node. Anything else
    /// is answered with <c>{"error":{"policy":"pubsub","status":400,"message":"..."}}</c>. A connection holds at most
    /// <see cref="TopicOptions.MaxSubscriptionsPerConnection"/> topics; a subscribe beyond it is answered with status 429.
    /// </summary>
    public static WebSocketEndpointBuilder UsePubSubProtocol(this WebSocketEndpointBuilder builder) =>
        builder.UsePubSubProtocol(new PubSubProtocolOptions());

    /// <summary>
    /// Handles the endpoint's messages with the pub/sub protocol (see <see cref="UsePubSubProtocol(WebSocketEndpointBuilder)"/>),
    /// with this endpoint's own limit of subscriptions per connection instead of <see cref="TopicOptions.MaxSubscriptionsPerConnection"/>.
    /// </summary>
    public static WebSocketEndpointBuilder UsePubSubProtocol(this WebSocketEndpointBuilder builder, int maxSubscriptions)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSubscriptions);
        return builder.UsePubSubProtocol(new PubSubProtocolOptions { MaxSubscriptions = maxSubscriptions });
    }

    /// <summary>
    /// Handles the endpoint's messages with the pub/sub protocol (see <see cref="UsePubSubProtocol(WebSocketEndpointBuilder)"/>)
    /// with <paramref name="options"/>: a namespace, an authorization callback, history with recovery
    /// (<c>{"op":"subscribe","topic":"T","since":{"offset":N,"epoch":"E"}}</c>) and presence
    /// (<c>{"op":"presence","topic":"T"}</c>); docs/topics.md describes the frames.
    /// </summary>
    public static WebSocketEndpointBuilder UsePubSubProtocol(this WebSocketEndpointBuilder builder, PubSubProtocolOptions options)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        var protocol = new PubSubProtocol(options);
        return builder.OnMessage(protocol.HandleAsync);
    }

    /// <summary>Builds the message subscribers of the pub/sub protocol receive for <paramref name="data"/> published to <paramref name="topic"/>.</summary>
    public static WebSocketMessage CreatePubSubMessage(string topic, JsonNode? data) => PubSubProtocol.Envelope(topic, data);

    /// <summary>
    /// Publishes <paramref name="data"/> to <paramref name="topic"/> as an endpoint with <paramref name="options"/>
    /// would: in its namespace, and with an offset in the topic's history when it keeps one.
    /// </summary>
    public static ValueTask PublishPubSubAsync(this IWebSocketTopics topics, string topic, JsonNode? data, PubSubProtocolOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(topics);
        ArgumentNullException.ThrowIfNull(options);
        if (topics is not TopicBus bus)
        {
            throw new ArgumentException("the topics of AddSluice() are required", nameof(topics));
        }

        return new PubSubProtocol(options).PublishAsync(bus, topic, data, cancellationToken);
    }
}
