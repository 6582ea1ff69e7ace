using System.Net.WebSockets;

namespace Sluice.Protocol;

/// <summary>RFC 6455 constants and the rules Sluice checks on every frame.</summary>
internal static class WebSocketProtocol
{
    public const byte OpcodeContinuation = 0x0;
    public const byte OpcodeText = 0x1;
    public const byte OpcodeBinary = 0x2;
    public const byte OpcodeClose = 0x8;
    public const byte OpcodePing = 0x9;
    public const byte OpcodePong = 0xA;

    public const int MaxControlPayload = 125;
    public const int MaxCloseReasonBytes = WebSocketCloseReason.MaxBytes;

    /// <summary>The largest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.</summary>
    public const int MaxHeaderSize = 14;

    /// <summary>RFC 6455 1.3: appended to the client's key before hashing.</summary>
    public const string AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    public const string SupportedVersion = "13";

    /// <summary>
    /// Whether a close code may appear in a close frame (RFC 6455 7.4 and the IANA registry):
    /// 1000-1003, 1007-1014 and the ranges 3000-4999 kept for libraries and applications.
    /// 1004, 1005, 1006 and 1015 are reserved and never sent.
    /// </summary>
    public static bool IsValidCloseCode(int code) =>
        code is (>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999);

    /// <summary>1014, "Bad Gateway": the backend was lost. System.Net.WebSockets has no name for it.</summary>
    public const WebSocketCloseStatus BadGateway = (WebSocketCloseStatus)1014;

    /// <summary>1013, "Try Again Later".</summary>
    public const WebSocketCloseStatus TryAgainLater = (WebSocketCloseStatus)1013;
}

/// <summary>
/// A peer broke the protocol or a limit; the connection must be closed with <see cref="CloseStatus"/>.
/// </summary>
internal sealed class WebSocketProtocolException(WebSocketCloseStatus closeStatus, string message) : Exception(message)
{
    public WebSocketCloseStatus CloseStatus { get; } = closeStatus;
}
