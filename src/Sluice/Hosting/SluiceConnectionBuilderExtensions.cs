using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Sluice;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Adds Sluice's connection middleware to a Kestrel endpoint.</summary>
public static class SluiceConnectionBuilderExtensions
{
    /// <summary>
    /// Lets Sluice's WebSocket connections accepted on this endpoint leave Kestrel's HTTP/1.1 request once upgraded,
    /// so that an open connection no longer holds the request's objects (about 4 KiB each). Call it on a Kestrel
    /// <c>ListenOptions</c>, after <c>UseHttps</c> for a TLS endpoint; other connections and requests are unaffected.
    /// </summary>
    /// <remarks>
    /// After the handshake, <see cref="UpgradeContext.HttpContext"/> is valid until the connection's connected hooks
    /// have run, no longer for the connection's whole life; <see cref="WebSocketConnection.RequestHeaders"/> and the
    /// other request data on the connection are copies and stay valid. Kestrel's
    /// <c>MaxConcurrentUpgradedConnections</c> no longer counts such connections; Sluice's own limit does
    /// (<see cref="SluiceOptions.MaxConnections"/>).
    /// </remarks>
    public static TBuilder UseWebSocketHandoff<TBuilder>(this TBuilder builder)
        where TBuilder : IConnectionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        var logger = builder.ApplicationServices.GetService<ILoggerFactory>()?.CreateLogger("Sluice.Hosting") ?? NullLogger.Instance;
        builder.Use(next => context => UpgradeHandoff.OnConnectionAsync(next, context, logger));
        return builder;
    }
}
