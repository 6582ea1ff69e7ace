namespace Sluice;

/// <summary>The limits RFC 6455 sets on the reason text of a close frame.</summary>
public static class WebSocketCloseReason
{
    /// <summary>
    /// The most bytes of UTF-8 a close reason may hold: a control frame carries at most 125 bytes, two of which are the
    /// close code. Sluice cuts a longer reason to this length when it sends it.
    /// </summary>
    public const int MaxBytes = 123;
}
