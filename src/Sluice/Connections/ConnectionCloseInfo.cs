using System.Net.WebSockets;

namespace Sluice;

/// <summary>Who started the end of a connection.</summary>
public enum ConnectionCloseInitiator : byte
{
    /// <summary>The client sent a close frame or went away.</summary>
    Client,

    /// <summary>The backend (proxy mode) sent a close frame or went away.</summary>
    Backend,

    /// <summary>Sluice: an interceptor or policy, a limit, the app, or shutdown.</summary>
    Server,
}

/// <summary>How a connection ended.</summary>
/// <param name="Status">The close code sent to the client, or null if the client left without a close handshake.</param>
/// <param name="Description">The close reason, if any.</param>
/// <param name="Initiator">Who started the close.</param>
public readonly record struct ConnectionCloseInfo(WebSocketCloseStatus? Status, string? Description, ConnectionCloseInitiator Initiator);
