using System.Net.WebSockets;
using Microsoft.Extensions.Logging;

namespace Sluice.Diagnostics;

/// <summary>
/// Every log event Sluice writes, with stable ids (documented in docs/observability.md). Events carry route,
/// connection id and interceptor names, never message payloads.
/// </summary>
internal static partial class SluiceLog
{
    [LoggerMessage(100, LogLevel.Debug, "Connection {ConnectionId} accepted on {Route} (subject {Subject}, subprotocol {SubProtocol}).")]
    public static partial void ConnectionAccepted(ILogger logger, string connectionId, string route, string? subject, string? subProtocol);

    [LoggerMessage(101, LogLevel.Debug, "Connection {ConnectionId} on {Route} closed by {Initiator} with {CloseStatus} '{CloseReason}'.")]
    public static partial void ConnectionClosed(ILogger logger, string connectionId, string route, ConnectionCloseInitiator initiator, WebSocketCloseStatus? closeStatus, string? closeReason);

    [LoggerMessage(102, LogLevel.Information, "Connection {ConnectionId} on {Route} failed: {Reason}")]
    public static partial void ConnectionFaulted(ILogger logger, string connectionId, string route, string reason);

    [LoggerMessage(103, LogLevel.Information, "Upgrade to {Route} rejected with {StatusCode}: {Reason}")]
    public static partial void UpgradeRejected(ILogger logger, string route, int statusCode, string? reason);

    [LoggerMessage(104, LogLevel.Warning, "Upgrade to {Route} refused: {Count} connections are open, the limit is {Limit}.")]
    public static partial void ConnectionLimitReached(ILogger logger, string route, int count, int limit);

    [LoggerMessage(105, LogLevel.Information, "Connection {ConnectionId} on {Route}: the {Leg} stayed silent past the keep-alive timeout.")]
    public static partial void KeepAliveTimeout(ILogger logger, string connectionId, string route, string leg);

    [LoggerMessage(106, LogLevel.Debug, "Connection {ConnectionId} on {Route} idle for {IdleTimeout}; closing with 1001.")]
    public static partial void IdleTimeout(ILogger logger, string connectionId, string route, TimeSpan idleTimeout);

    [LoggerMessage(107, LogLevel.Information, "Connection {ConnectionId} on {Route}: the {Leg} broke the protocol ({CloseStatus}): {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, string connectionId, string route, string leg, WebSocketCloseStatus closeStatus, string reason);

    [LoggerMessage(108, LogLevel.Warning, "Connection {ConnectionId} on {Route}: close handshake timed out after {CloseTimeout}; aborting.")]
    public static partial void CloseTimedOut(ILogger logger, string connectionId, string route, TimeSpan closeTimeout);

    [LoggerMessage(109, LogLevel.Information, "Closing {Count} connections with 1001: the server is shutting down.")]
    public static partial void ShuttingDown(ILogger logger, int count);

    [LoggerMessage(110, LogLevel.Warning, "MaxConnections {Requested} does not fit the open-file limit of {OpenFileLimit} (each proxied connection holds two descriptors, and connections that have not upgraded need some too); using {MaxConnections}. Raise the limit (ulimit -n, LimitNOFILE) to allow more.")]
    public static partial void MaxConnectionsLowered(ILogger logger, int requested, long openFileLimit, int maxConnections);

    [LoggerMessage(111, LogLevel.Information, "{Count} more upgrades to {Route} rejected with {StatusCode} in the last {Seconds} s, not logged one by one (sluice.upgrades.rejected counts every one).")]
    public static partial void UpgradesRejectedSummary(ILogger logger, int count, string route, int statusCode, double seconds);

    [LoggerMessage(112, LogLevel.Error, "A WebSocket connection that left its HTTP request (Kestrel connection {KestrelConnectionId}) failed.")]
    public static partial void HandedOffConnectionFailed(ILogger logger, string kestrelConnectionId, Exception exception);

    [LoggerMessage(200, LogLevel.Error, "Interceptor {Interceptor} failed on {Direction} message {ChainId} of connection {ConnectionId} on {Route}; the message was dropped.")]
    public static partial void InterceptorFailed(ILogger logger, Exception exception, string interceptor, MessageDirection direction, long chainId, string connectionId, string route);

    [LoggerMessage(201, LogLevel.Debug, "Interceptor {Interceptor} {Outcome} {Direction} message {ChainId} of connection {ConnectionId} on {Route}: {Reason}")]
    public static partial void MessageStopped(ILogger logger, string interceptor, MessageOutcome outcome, MessageDirection direction, long chainId, string connectionId, string route, string? reason);

    [LoggerMessage(202, LogLevel.Warning, "Connection {ConnectionId} on {Route}: send queue full ({Capacity}); {Action}.")]
    public static partial void SendQueueFull(ILogger logger, string connectionId, string route, int capacity, string action);

    [LoggerMessage(203, LogLevel.Error, "The {Hook} hook failed for connection {ConnectionId} on {Route}.")]
    public static partial void HookFailed(ILogger logger, Exception exception, string hook, string connectionId, string route);

    [LoggerMessage(204, LogLevel.Error, "Upgrade step failed on {Route}; the upgrade was rejected with 500.")]
    public static partial void UpgradeStepFailed(ILogger logger, Exception exception, string route);
}
