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
