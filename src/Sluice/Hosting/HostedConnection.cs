using Microsoft.AspNetCore.Http;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// A connection terminated by the app (host mode): the engine's one pump runs each client message through the
/// inbound chain into the endpoint's handler; what the handler returns runs through the outbound chain, under
/// the same gate as the app's sends.
/// </summary>
internal sealed class HostedConnection : WebSocketConnection
{
    private readonly HostedEndpoint _endpoint;

    public HostedConnection(HostedEndpoint endpoint, WebSocketRoute route, HttpContext httpContext, WebSocketLeg leg, UpgradeContext upgrade, string? subProtocol)
        : base(route, httpContext, upgrade, subProtocol, leg, backend: null)
    {
        _endpoint = endpoint;
        InboundSink = new HandlerSink(this);
    }

    private ValueTask InvokeHandlerAsync(MessageContext context)
    {
        var handler = _endpoint.Handler;
        if (handler is null)
        {
            return default;
        }

        context.Layer = HostedEndpoint.HandlerLayer;
        var pending = handler(context);
        if (!pending.IsCompletedSuccessfully)
        {
            return AwaitHandlerAsync(pending, context);
        }

        var result = pending.Result;
        return result is null || IsClosing ? default : RunOutboundAsync(_endpoint.Results.Convert(result), context, CancellationToken.None);
    }

    private async ValueTask AwaitHandlerAsync(ValueTask<object?> pending, MessageContext context)
    {
        var result = await pending;
        if (result is not null && !IsClosing)
        {
            await RunOutboundAsync(_endpoint.Results.Convert(result), context, CancellationToken.None);
        }
    }

    /// <summary>The end of the inbound chain in host mode: the handler; replies go straight to the client.</summary>
    private sealed class HandlerSink(HostedConnection connection) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context) => connection.InvokeHandlerAsync(context);

        // After the outbound chain, like any reply; the pump flushes at the end of its batch.
        public override void Reply(MessageContext context, WebSocketMessage message) => connection.Write(connection.ClientLeg, message);
    }
}
