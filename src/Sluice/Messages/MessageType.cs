namespace Sluice;

/// <summary>The kind of a WebSocket data message, as carried by its opcode on the wire.</summary>
public enum MessageType : byte
{
    /// <summary>A text message (opcode 0x1): its payload is UTF-8.</summary>
    Text = 1,

    /// <summary>A binary message (opcode 0x2).</summary>
    Binary = 2,
}
