using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// Control frames (ping, pong, close) through the chains of the interceptors that opted in
/// (<see cref="InterceptorRegistration.WithControlFrames"/>). The pump calls it only when such a chain exists for its
/// direction; the protocol's rules are kept here whatever an interceptor does: a ping that goes on is answered, a
/// close is always completed, a rewritten close is sent only if it may be, and a failing interceptor is logged
/// without ending the connection.
/// </summary>
public abstract partial class WebSocketConnection
{
    // Made on the first control frame of each direction: most connections never need them.
    private MessageContext? _inboundControl;
    private MessageContext? _outboundControl;

    /// <summary>The chain of control frames received from the client (inbound) or the backend; null when no interceptor opted in.</summary>
    private MessageDelegate? ControlChain(bool fromClient)
    {
        var control = Route.Pipeline.Control;
        return control is null ? null : fromClient ? control.Inbound : control.Outbound;
    }

    /// <summary>A ping or pong through the chain: a ping that goes on (or whose interceptor failed) is answered on its leg.</summary>
    private async ValueTask OnPingOrPongAsync(MessageDelegate chain, WebSocketLeg source, LegFrame frame, bool fromClient, MessageContextScope.Holder holder)
    {
        // Borrowed: the payload stays valid while this frame is handled, since nothing reads the leg meanwhile.
        var (outcome, _) = await RunControlChainAsync(chain, source, WebSocketMessage.Borrow(frame.Type, frame.Payload), fromClient, holder);
        if (frame.Type == MessageType.Ping && outcome is MessageOutcome.Forwarded or MessageOutcome.Failed)
        {
            // RFC 6455 5.5.3: the pong carries the ping's payload, whatever an interceptor made of the message.
            source.SendPong(frame.Payload.Span);
        }
    }

    /// <summary>
    /// A peer's close through the chain: returns the code and reason to send on (proxy mode: to the other leg; host
    /// mode: in the answer), the received ones unless an interceptor replaced the close with one that may be sent.
    /// </summary>
    private async ValueTask<(WebSocketCloseStatus? Status, string? Reason)> RunCloseChainAsync(
        MessageDelegate chain, WebSocketLeg source, LegFrame frame, bool fromClient, MessageContextScope.Holder holder)
    {
        var received = (frame.CloseStatus, frame.CloseReason);
        var (outcome, result) = await RunControlChainAsync(chain, source, WebSocketMessage.FromClose(frame.CloseStatus, frame.CloseReason), fromClient, holder);
        if (outcome != MessageOutcome.Forwarded || result is null)
        {
            // Dropped, replied to, failed or closed by the interceptor itself: the handshake is completed all the same.
            return received;
        }

        if (result.Type != MessageType.Close)
        {
            SluiceLog.CloseRewriteRefused(Route.Logger, Direction(fromClient), Id, Route.Pattern, "it was replaced by a " + result, CodeOf(frame.CloseStatus));
            return received;
        }

        var status = result.CloseStatus;
        var reason = result.CloseDescription;
        if (status == frame.CloseStatus && reason == frame.CloseReason)
        {
            return received;
        }

        if (status is { } code && !WebSocketProtocol.IsValidCloseCode((int)code))
        {
            SluiceLog.CloseRewriteRefused(Route.Logger, Direction(fromClient), Id, Route.Pattern, $"close code {(int)code} may not be sent", CodeOf(frame.CloseStatus));
            return received;
        }

        if (reason is not null && Encoding.UTF8.GetByteCount(reason) > WebSocketProtocol.MaxCloseReasonBytes)
        {
            SluiceLog.CloseRewriteRefused(
                Route.Logger, Direction(fromClient), Id, Route.Pattern, $"the reason is longer than {WebSocketProtocol.MaxCloseReasonBytes} bytes of UTF-8", CodeOf(frame.CloseStatus));
            return received;
        }

        return (status, reason);
    }

    /// <summary>
    /// Runs one control frame through <paramref name="chain"/>: from the backend under the outbound gate, as every
    /// outbound chain runs. Returns the outcome and, when it went on, the message at the end of the chain. Never
    /// throws for an interceptor's failure: it is logged and reported as <see cref="MessageOutcome.Failed"/>.
    /// </summary>
    private async ValueTask<(MessageOutcome Outcome, WebSocketMessage? Message)> RunControlChainAsync(
        MessageDelegate chain, WebSocketLeg source, WebSocketMessage message, bool fromClient, MessageContextScope.Holder holder)
    {
        // A control frame between the fragments of a streamed message runs under the gate the backend pump already
        // holds for that message; waiting for it again would wait for itself.
        var takesGate = !fromClient && !_streamHoldsOutboundGate;
        if (takesGate && !_sendGate.Wait(0, CancellationToken.None))
        {
            await _sendGate.WaitAsync(_abort.Token);
        }

        try
        {
            var context = fromClient
                ? _inboundControl ??= new MessageContext(this, MessageDirection.Inbound, new ControlSink(this, source))
                : _outboundControl ??= new MessageContext(this, MessageDirection.Outbound, new ControlSink(this, source));
            context.Reset(message, Stopwatch.GetTimestamp());
            context.ReceivedType = message.Type;
            holder.Context = context;
            try
            {
                var pending = chain(context);
                if (!pending.IsCompletedSuccessfully)
                {
                    await pending;
                }
                else
                {
                    pending.GetAwaiter().GetResult();
                }

                return (context.Outcome, context.Outcome == MessageOutcome.Forwarded ? context.Message : null);
            }
            catch (Exception ex)
            {
                SluiceLog.ControlInterceptorFailed(Route.Logger, ex, ControlNameOf(context, fromClient), Direction(fromClient), FrameName(message.Type), Id, Route.Pattern);
                return (MessageOutcome.Failed, null);
            }
            finally
            {
                holder.Context = null;
                context.Clear();
            }
        }
        finally
        {
            if (takesGate)
            {
                _sendGate.Release();
            }
        }
    }

    private string ControlNameOf(MessageContext context, bool fromClient)
    {
        var names = context.LayerNames ?? (fromClient ? Route.Pipeline.Control?.InboundNames : Route.Pipeline.Control?.OutboundNames) ?? [];
        return (uint)context.Layer < (uint)names.Length ? names[context.Layer] : "interceptor";
    }

    private static MessageDirection Direction(bool fromClient) => fromClient ? MessageDirection.Inbound : MessageDirection.Outbound;

    private static string FrameName(MessageType type) => type switch
    {
        MessageType.Close => "close",
        MessageType.Ping => "ping",
        _ => "pong",
    };

    private static int CodeOf(WebSocketCloseStatus? status) => status is { } code ? (int)code : 1005;

    /// <summary>
    /// Where a chain of control frames ends: the engine acts on the outcome itself (answers the ping, relays the close),
    /// so forwarding only records it; a reply goes back to the leg the frame came from.
    /// </summary>
    private sealed class ControlSink(WebSocketConnection connection, WebSocketLeg replyTo) : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context) => default;

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
            if (message.Type == MessageType.Close)
            {
                throw new InvalidOperationException("A close is not a reply: call MessageContext.Close, or set MessageContext.Message to change the close sent on.");
            }

            if (message.IsControl)
            {
                replyTo.Send(message.Type, message.Payload.Span);
            }
            else
            {
                connection.Write(replyTo, message);
            }
        }
    }
}
