namespace Sluice;

/// <summary>
/// A class interceptor: it sees every message of a connection, inbound and outbound, and decides what
/// happens to it.
/// </summary>
/// <remarks>
/// <para>An interceptor forwards a message by awaiting <c>next(context)</c>, with code before and after that
/// call if it likes; it drops the message by returning without calling <c>next</c>; it can replace the message
/// (<see cref="MessageContext.Message"/>), answer the side it came from (<see cref="MessageContext.Reply"/>)
/// or close the connection (<see cref="MessageContext.Close"/>).</para>
/// <para>Inbound interceptors run in the order they were added and outbound ones in reverse, so the first
/// interceptor added is the outermost layer both ways. One instance serves every connection of its endpoint
/// and may run on several connections at once: keep per-connection state on the connection
/// (<see cref="WebSocketConnection.Items"/> or a feature), not in fields.</para>
/// <para>A method left to its default implementation is skipped entirely when the chain is built, so an
/// interceptor that only implements <see cref="InboundAsync"/> costs nothing on outbound messages.</para>
/// </remarks>
public interface IMessageInterceptor
{
    /// <summary>Processes a message from the client.</summary>
    ValueTask InboundAsync(MessageContext context, MessageDelegate next) => next(context);

    /// <summary>Processes a message to the client.</summary>
    ValueTask OutboundAsync(MessageContext context, MessageDelegate next) => next(context);
}
