using Microsoft.Net.Http.Headers;

namespace Sluice.Proxy;

/// <summary>Which headers of a client's upgrade request a WebSocket proxy may copy to its backend.</summary>
public static class WebSocketProxyHeaders
{
    /// <summary>The header the proxy sets to the subject an upgrade policy authenticated.</summary>
    public const string Subject = "X-Sluice-Subject";

    // Each hop negotiates its own handshake, and the proxy sets the forwarding and tracing headers itself:
    // a copied value would contradict (or spoof) them.
    private static readonly HashSet<string> s_reserved = new(StringComparer.OrdinalIgnoreCase)
    {
        HeaderNames.Host, HeaderNames.Connection, HeaderNames.Upgrade, HeaderNames.SecWebSocketKey,
        HeaderNames.SecWebSocketVersion, HeaderNames.SecWebSocketProtocol, HeaderNames.SecWebSocketExtensions,
        HeaderNames.SecWebSocketAccept, "Keep-Alive", "Proxy-Connection", HeaderNames.TransferEncoding,
        HeaderNames.ContentLength, HeaderNames.TE, HeaderNames.Trailer, "X-Forwarded-For", "X-Forwarded-Proto",
        "X-Forwarded-Host", Subject, "traceparent", "tracestate",
    };

    /// <summary>
    /// Returns whether <paramref name="name"/> may be listed in <see cref="WebSocketProxyBuilder.ForwardHeaders"/>:
    /// false for the headers of one hop's handshake (<c>Connection</c>, <c>Sec-WebSocket-Key</c>, ...) and for those the
    /// proxy sets itself (<c>X-Forwarded-*</c>, <c>X-Sluice-Subject</c>, <c>traceparent</c>), compared case-insensitively.
    /// </summary>
    /// <param name="name">A header name.</param>
    public static bool CanForward(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return !s_reserved.Contains(name);
    }
}
