namespace Sluice;

/// <summary>Which way a message travels.</summary>
public enum MessageDirection : byte
{
    /// <summary>From the client: towards the handler (host mode) or the backend (proxy mode).</summary>
    Inbound = 1,

    /// <summary>To the client: from the handler or the app (host mode) or from the backend (proxy mode).</summary>
    Outbound = 2,
}
