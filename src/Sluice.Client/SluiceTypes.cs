using System.Net.WebSockets;
using System.Text.Json;

namespace Sluice.Client;

/// <summary>The states of a <see cref="SluiceClient"/>'s connection.</summary>
public enum SluiceClientState
{
    /// <summary>Not connected yet: <see cref="SluiceClient.ConnectAsync"/> was not called.</summary>
    Idle,

    /// <summary>A connection is being opened.</summary>
    Connecting,

    /// <summary>Connected: requests are sent.</summary>
    Connected,

    /// <summary>The connection was lost; the client decides whether to reconnect.</summary>
    Disconnected,

    /// <summary>Waiting before the next attempt.</summary>
    Reconnecting,

    /// <summary>Closed for good: by <see cref="SluiceClient.CloseAsync"/>, a close that forbids a reconnect, or attempts exhausted.</summary>
    Closed,
}

/// <summary>A change of <see cref="SluiceClient.State"/>.</summary>
/// <param name="State">The new state.</param>
/// <param name="CloseStatus">How the connection ended (on Disconnected, Reconnecting and Closed), when known.</param>
/// <param name="CloseDescription">The close reason, or why the connection failed.</param>
/// <param name="Attempt">The reconnect attempt (0 on the first connect).</param>
/// <param name="Delay">On Reconnecting: the wait before the next attempt.</param>
public sealed record SluiceStateChange(SluiceClientState State, WebSocketCloseStatus? CloseStatus = null, string? CloseDescription = null, int Attempt = 0, TimeSpan? Delay = null);

/// <summary>A message published to a topic.</summary>
/// <param name="Topic">The topic.</param>
/// <param name="Data">The published JSON value.</param>
/// <param name="Offset">Its offset in the topic's history; null when the route keeps no history.</param>
/// <param name="Epoch">The history's epoch; null when the route keeps no history.</param>
public sealed record SluiceMessage(string Topic, JsonElement Data, long? Offset, string? Epoch);

/// <summary>A position in a topic's history: the last message seen.</summary>
/// <param name="Offset">The offset (1, 2, 3... per topic).</param>
/// <param name="Epoch">The epoch: it changes when the gateway loses the history.</param>
public readonly record struct SluicePosition(long Offset, string Epoch);

/// <summary>The gateway's answer to a subscribe.</summary>
/// <param name="Topic">The topic.</param>
/// <param name="Recovered">After a resubscribe with a position: true when every missed message is delivered, false when some are lost; null otherwise.</param>
public sealed record SluiceSubscription(string Topic, bool? Recovered);

/// <summary>Who is subscribed to a topic, on every node.</summary>
/// <param name="Count">The number of subscribed connections.</param>
/// <param name="Subjects">The distinct subjects among them.</param>
public sealed record SluicePresence(int Count, IReadOnlyList<string> Subjects);

/// <summary>A subscriber joined or left a topic (routes with <c>presence.joinLeave</c>).</summary>
/// <param name="Topic">The topic.</param>
/// <param name="Subject">The subscriber's subject; null for an anonymous one.</param>
/// <param name="Joined">True for a join, false for a leave.</param>
public sealed record SluicePresenceChange(string Topic, string? Subject, bool Joined);
