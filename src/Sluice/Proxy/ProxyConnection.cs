using Microsoft.AspNetCore.Http;
using Sluice.Protocol;
using Sluice.Proxy;

namespace Sluice;

/// <summary>
/// A client connection proxied to a backend WebSocket. The connection engine runs two pumps, one each way; each
/// receives a message, runs its chain and hands the result to the other leg, then waits for that leg to take
/// it before receiving more. Nothing queues without bound: a slow reader on one side slows the other side's
/// sender.
/// </summary>
public sealed class ProxyConnection : WebSocketConnection
{
    private readonly BackendTarget? _target;

    // The URL as given, not the Uri: its parsed parts (about 150 bytes) would stay with every idle connection.
    private readonly string _backendUrl;

    internal ProxyConnection(WebSocketRoute route, HttpContext httpContext, WebSocketLeg client, WebSocketLeg backend, Uri backendUri, UpgradeContext upgrade, string? subProtocol, BackendTarget? target = null)
        : base(route, httpContext, upgrade, subProtocol, client, backend)
    {
        _backendUrl = backendUri.OriginalString;
        _target = target;
    }

    /// <summary>Gets the backend URL this connection was proxied to.</summary>
    /// <remarks>Parsed again on each call from the URL the connection keeps.</remarks>
    public Uri BackendUri => new(_backendUrl);

    /// <summary>
    /// Injects a message into the backend leg, after the inbound chain (no interceptor sees it). Safe from any
    /// thread; completes when the backend's socket has taken it. Discarded once the connection is closing.
    /// A ping or a pong (<see cref="WebSocketMessage.FromPing"/>) is sent as that control frame.
    /// </summary>
    /// <exception cref="ArgumentException">The message is a close frame: close with <c>CloseAsync</c>.</exception>
    public ValueTask SendToBackendAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ThrowIfClose(message);
        var backend = BackendLeg!;
        if (IsClosing || !backend.Send(message.Type, message.Payload.Span))
        {
            return default;
        }

        return FlushQuietlyAsync(backend, cancellationToken);
    }

    private protected override void OnEnded() => _target?.Closed();
}
