using Microsoft.Extensions.Logging;

namespace Sluice.Diagnostics;

/// <summary>The events of control frames in the chains of interceptors that opted in to them.</summary>
internal static partial class SluiceLog
{
    [LoggerMessage(230, LogLevel.Error, "Interceptor {Interceptor} failed on an {Direction} {Frame} frame of connection {ConnectionId} on {Route}; the frame was handled as if no interceptor had seen it and the connection carries on.")]
    public static partial void ControlInterceptorFailed(ILogger logger, Exception exception, string interceptor, MessageDirection direction, string frame, string connectionId, string route);

    [LoggerMessage(231, LogLevel.Error, "An interceptor rewrote the {Direction} close of connection {ConnectionId} on {Route} into one that may not be sent ({Problem}); the close went on as received, with code {ReceivedCode}.")]
    public static partial void CloseRewriteRefused(ILogger logger, MessageDirection direction, string connectionId, string route, string problem, int receivedCode);
}
