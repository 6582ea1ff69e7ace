namespace Sluice;

/// <summary>The kind of a WebSocket message, as carried by its opcode on the wire.</summary>
/// <remarks>
/// Interceptors see <see cref="Text"/> and <see cref="Binary"/> messages. The control frames (<see cref="Close"/>,
/// <see cref="Ping"/>, <see cref="Pong"/>) reach only the interceptors registered with
/// <see cref="InterceptorRegistration.WithControlFrames"/>.
/// </remarks>
public enum MessageType : byte
{
    /// <summary>A text message (opcode 0x1): its payload is UTF-8.</summary>
    Text = 1,

    /// <summary>A binary message (opcode 0x2).</summary>
    Binary = 2,

    /// <summary>A close frame (opcode 0x8): see <see cref="WebSocketMessage.CloseStatus"/> and <see cref="WebSocketMessage.CloseDescription"/>.</summary>
    Close = 8,

    /// <summary>A ping (opcode 0x9).</summary>
    Ping = 9,

    /// <summary>A pong (opcode 0xA): the answer to a ping, or an unsolicited heartbeat.</summary>
    Pong = 10,
}
