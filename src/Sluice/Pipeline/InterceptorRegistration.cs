namespace Sluice;

/// <summary>
/// An interceptor added to a pipeline, refined fluently: limit it to some messages with <see cref="When"/>
/// (by kind, field or any predicate), to one direction, or give it a name for logs and metrics.
/// </summary>
public sealed class InterceptorRegistration
{
    private readonly Func<IServiceProvider, InterceptorLayer> _factory;

    internal InterceptorRegistration(string name, Func<IServiceProvider, InterceptorLayer> factory, MessageDirection? direction)
    {
        Name = name;
        _factory = factory;
        Direction = direction;
    }

    internal string Name { get; private set; }

    internal MessageDirection? Direction { get; private set; }

    internal Func<MessageContext, bool>? Predicate { get; private set; }

    internal ControlFrames ControlFrames { get; private set; }

    /// <summary>Whether the interceptor sees the fragments of streamed messages (<see cref="HandlesFragments"/>).</summary>
    internal bool FragmentAware { get; private set; }

    /// <summary>
    /// Runs the interceptor only for messages that satisfy <paramref name="predicate"/>; other messages go
    /// straight to the next interceptor. Calling it again adds a condition that must also hold.
    /// </summary>
    public InterceptorRegistration When(Func<MessageContext, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        var previous = Predicate;
        Predicate = previous is null ? predicate : context => previous(context) && predicate(context);
        return this;
    }

    /// <summary>Runs the interceptor only on messages from the client.</summary>
    public InterceptorRegistration InboundOnly() => Restrict(MessageDirection.Inbound);

    /// <summary>Runs the interceptor only on messages to the client.</summary>
    public InterceptorRegistration OutboundOnly() => Restrict(MessageDirection.Outbound);

    /// <summary>Names the interceptor in logs and metrics; the default is its type name or "middleware".</summary>
    public InterceptorRegistration WithName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        return this;
    }

    /// <summary>
    /// Lets the interceptor see <paramref name="frames"/> as well as data messages: as a <see cref="WebSocketMessage"/>
    /// of type <see cref="MessageType.Close"/>, <see cref="MessageType.Ping"/> or <see cref="MessageType.Pong"/>,
    /// received from the client (inbound) or, in proxy mode, from the backend (outbound). Calling it again adds frames.
    /// </summary>
    /// <remarks>
    /// <para>Only interceptors that opt in see control frames; the chain of data messages is unchanged. In the chain of
    /// a control frame, calling <c>next</c> lets it go on: a ping is answered with a pong, a close is relayed (proxy
    /// mode) or answered (host mode) with the code and reason of the message at the end of the chain, so an
    /// interceptor rewrites them by setting <see cref="MessageContext.Message"/> to <see cref="WebSocketMessage.FromClose"/>.
    /// Not calling <c>next</c> swallows a ping (no pong) or a pong; <see cref="MessageContext.Reply"/> answers the
    /// sender.</para>
    /// <para>The protocol holds whatever an interceptor does: a close is always completed (dropping it, or throwing,
    /// relays it as it came), a rewritten close with a code that may not be sent or a reason over 123 bytes is
    /// logged and relayed as it came, and keep-alive reads a leg's liveness before the chain runs. An interceptor
    /// that throws on a control frame is logged; the connection carries on.</para>
    /// <para>A leg that negotiated permessage-deflate is run by System.Net.WebSockets, which answers pings itself:
    /// on such a leg interceptors see closes only.</para>
    /// </remarks>
    public InterceptorRegistration WithControlFrames(ControlFrames frames)
    {
        if ((frames & ~ControlFrames.All) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(frames), frames, "Control frames are Ping, Pong and Close.");
        }

        ControlFrames |= frames;
        return this;
    }

    /// <summary>
    /// Declares that the interceptor handles the fragments of messages streamed fragment by fragment
    /// (<see cref="WebSocketEndpointOptions.Streaming"/>): it then runs once per fragment, each a
    /// <see cref="WebSocketMessage"/> with <see cref="WebSocketMessage.IsFragment"/> set, whose
    /// <see cref="WebSocketMessage.IsFinal"/> says whether it ends its message. Interceptors that do not declare it are
    /// skipped for streamed messages, and each skip is counted (<c>sluice.interceptor.skipped</c>); whole messages reach
    /// every interceptor as before.
    /// </summary>
    public InterceptorRegistration HandlesFragments()
    {
        FragmentAware = true;
        return this;
    }

    internal InterceptorLayer CreateLayer(IServiceProvider services) => _factory(services);

    private InterceptorRegistration Restrict(MessageDirection direction)
    {
        if (Direction is not null && Direction != direction)
        {
            throw new InvalidOperationException($"The interceptor '{Name}' is already limited to {Direction} messages.");
        }

        Direction = direction;
        return this;
    }
}
