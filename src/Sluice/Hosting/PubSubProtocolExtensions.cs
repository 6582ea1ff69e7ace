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
    public static WebSocketEndpointBuilder UsePubSubProtocol(this WebSocketEndpointBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.OnMessage(static context => PubSubProtocol.HandleAsync(context, maxSubscriptions: null));
    }

    /// <summary>
    /// Handles the endpoint's messages with the pub/sub protocol (see <see cref="UsePubSubProtocol(WebSocketEndpointBuilder)"/>),
    /// with this endpoint's own limit of subscriptions per connection instead of <see cref="TopicOptions.MaxSubscriptionsPerConnection"/>.
    /// </summary>
    public static WebSocketEndpointBuilder UsePubSubProtocol(this WebSocketEndpointBuilder builder, int maxSubscriptions)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSubscriptions);
        return builder.OnMessage(context => PubSubProtocol.HandleAsync(context, maxSubscriptions));
    }

    /// <summary>Builds the message subscribers of the pub/sub protocol receive for <paramref name="data"/> published to <paramref name="topic"/>.</summary>
    public static WebSocketMessage CreatePubSubMessage(string topic, JsonNode? data) => PubSubProtocol.Envelope(topic, data);
}
