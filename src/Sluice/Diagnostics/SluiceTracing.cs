using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;

namespace Sluice.Diagnostics;

/// <summary>
/// Sluice's activities: one per connection (<c>sluice.connection</c>, as long as the connection) and, when a listener
/// samples it, one per message (<c>sluice.message</c>, a child of its connection's). Without a listener the cost is
/// one <see cref="ActivitySource.HasListeners"/> check per message.
/// </summary>
internal static class SluiceTracing
{
    public static readonly ActivitySource Source = new(SluiceDiagnostics.ActivitySourceName, typeof(SluiceTracing).Assembly.GetName().Version?.ToString());

    /// <summary>
    /// Starts the connection's activity. Its parent is the request's activity when ASP.NET Core made one, or else the
    /// client's W3C <c>traceparent</c>, so the trace continues from the client either way; the proxy passes this
    /// activity's context on to the backend.
    /// </summary>
    public static Activity? StartConnection(HttpContext httpContext, string route)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var parent = Activity.Current?.Context ?? default;
        if (Activity.Current is null && TryGetClientContext(httpContext.Request, out var remote))
        {
            parent = remote;
        }

        // Server when it continues the client's own trace, Internal under ASP.NET Core's request span, which is the
        // server span already.
        var activity = Source.StartActivity("sluice.connection", Activity.Current is null ? ActivityKind.Server : ActivityKind.Internal, parent);
        activity?.SetTag("sluice.route", route);
        return activity;
    }

    /// <summary>The client's W3C trace context, when its upgrade request carries a valid one.</summary>
    public static bool TryGetClientContext(HttpRequest request, out ActivityContext context)
    {
        context = default;
        return request.Headers.TryGetValue("traceparent", out var traceParent)
            && ActivityContext.TryParse(traceParent.ToString(), request.Headers["tracestate"].ToString(), isRemote: true, out context);
    }

    public static void Accepted(Activity? activity, WebSocketConnection connection)
    {
        if (activity is not null)
        {
            connection.Activity = activity;
            activity.SetTag("sluice.connection.id", connection.Id);
            if (connection.Subject is { } subject)
            {
                activity.SetTag("enduser.id", subject);
            }
        }
    }

    public static void Ended(Activity? activity, WebSocketCloseStatus? status, string? description)
    {
        if (activity is not null)
        {
            activity.SetTag("sluice.close.code", status is null ? null : (int)status);
            activity.SetTag("sluice.close.reason", description);
        }
    }

    public static Activity? StartMessage(MessageContext context, string route)
    {
        // No connection activity (nobody listened, or the sampler dropped the connection): no message activities
        // either, or each message would become a root trace of its own.
        if (context.Connection.Activity is null || !Source.HasListeners())
        {
            return null;
        }

        var activity = Source.StartActivity(
            context.Direction == MessageDirection.Inbound ? "sluice.message inbound" : "sluice.message outbound",
            ActivityKind.Internal,
            context.Connection.Activity.Context);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("sluice.route", route);
            activity.SetTag("sluice.connection.id", context.Connection.Id);
            activity.SetTag("sluice.chain.id", context.ChainId);
            activity.SetTag("sluice.message.type", context.Message.IsText ? "text" : "binary");
            activity.SetTag("sluice.message.size", context.Message.Length);
        }

        return activity;
    }

    public static void EndMessage(Activity? activity, MessageContext context, string? stoppedBy, Exception? exception = null)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetTag("sluice.outcome", context.Outcome.ToString().ToLowerInvariant());
        if (stoppedBy is not null)
        {
            activity.SetTag("sluice.stopped_by", stoppedBy);
        }

        if (exception is not null)
        {
            activity.SetStatus(ActivityStatusCode.Error, exception.GetType().Name);
        }

        activity.Dispose();
    }
}
