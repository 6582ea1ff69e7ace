using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;

namespace Sluice.Proxy;

/// <summary>What the proxy asks of a backend when it connects.</summary>
internal sealed class BackendConnectRequest
{
    public required Uri Uri { get; init; }

    public required IReadOnlyList<string> SubProtocols { get; init; }

    public required IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; }

    public required bool OfferDeflate { get; init; }

    public required TimeSpan Timeout { get; init; }

    public Func<Uri, SslClientAuthenticationOptions>? SslOptions { get; init; }
}

/// <summary>A backend WebSocket after a successful handshake.</summary>
internal sealed class BackendConnection(Stream stream, Socket? socket, byte[] leftover, string? subProtocol, WebSocketDeflateOptions? deflate)
{
    public Stream Stream { get; } = stream;

    /// <summary>The socket to the backend; null when the connection runs through an outbound proxy's tunnel.</summary>
    public Socket? Socket { get; } = socket;

    /// <summary>Bytes the backend sent right after its 101 response: the start of its first frames.</summary>
    public byte[] Leftover { get; } = leftover;

    public string? SubProtocol { get; } = subProtocol;

    public WebSocketDeflateOptions? Deflate { get; } = deflate;

    /// <summary>Tears the connection down at once, ending a pending read: through the socket, else the stream.</summary>
    public void Abort()
    {
        if (Socket is { } socket)
        {
            socket.Dispose();
        }
        else
        {
            Stream.Dispose();
        }
    }
}

/// <summary>The backend could not be reached or refused the handshake; the client gets 502.</summary>
internal sealed class BackendConnectException(string reason, Exception? inner = null) : Exception(reason, inner)
{
    /// <summary>A short label for metrics: refused, timeout, dns, tls, rejected, invalid.</summary>
    public string Kind { get; init; } = "error";

    /// <summary>
    /// Whether the failure says something about the backend's health: false for a 4xx answer to this client's
    /// request, or a request the proxy could not send, which a client could otherwise repeat to mark every backend down.
    /// </summary>
    public bool BlamesBackend { get; init; } = true;
}

/// <summary>
/// Connects to a backend and performs the client side of the opening handshake (RFC 6455 4.1). The handshake runs
/// through SocketsHttpHandler (<see cref="HttpHandlerBackendConnector"/>); the upgraded stream is then framed by
/// Sluice's own code, as the client leg is. docs/architecture.md, "The backend handshake", has why and the figures.
/// </summary>
internal static class BackendConnector
{
    public static Task<BackendConnection> ConnectAsync(BackendConnectRequest request, CancellationToken cancellationToken) =>
        HttpHandlerBackendConnector.ConnectAsync(request, cancellationToken);
}
