namespace Sluice;

/// <summary>
/// The inbound and outbound chains of an endpoint, composed once from its registrations (groups first,
/// outermost group first, then the endpoint's own) into one delegate per direction.
/// </summary>
internal sealed class MessagePipeline
{
    public static readonly MessagePipeline Empty = new(MessageContext.Terminal, MessageContext.Terminal, [], []);

    private MessagePipeline(MessageDelegate inbound, MessageDelegate outbound, string[] inboundNames, string[] outboundNames, ControlChains? control = null, MessageDelegate? inboundFragments = null, MessageDelegate? outboundFragments = null)
    {
        Inbound = inbound;
        Outbound = outbound;
        InboundFragments = inboundFragments ?? inbound;
        OutboundFragments = outboundFragments ?? outbound;
        InboundNames = inboundNames;
        OutboundNames = outboundNames;
        Control = control;
    }

    /// <summary>
    /// The chains of control frames, composed of the interceptors that opted in (<see cref="InterceptorRegistration.WithControlFrames"/>);
    /// null when none did, and then control frames are handled as the protocol says, without a chain.
    /// </summary>
    public ControlChains? Control { get; }

    public MessageDelegate Inbound { get; }

    public MessageDelegate Outbound { get; }

    /// <summary>
    /// The inbound chain for fragments of streamed messages: only interceptors that handle fragments, the others
    /// replaced by a step that counts the skip. Without interceptors, or when not built for fragments, <see cref="Inbound"/>.
    /// </summary>
    public MessageDelegate InboundFragments { get; }

    /// <summary>The outbound chain for fragments of streamed messages; see <see cref="InboundFragments"/>.</summary>
    public MessageDelegate OutboundFragments { get; }

    /// <summary>The names of the inbound interceptors, by <see cref="MessageContext.Layer"/>.</summary>
    public string[] InboundNames { get; }

    /// <summary>The names of the outbound interceptors, by <see cref="MessageContext.Layer"/>.</summary>
    public string[] OutboundNames { get; }

    public bool HasOutboundInterceptors => OutboundNames.Length > 0;

    public string NameOf(MessageContext context)
    {
        var layer = context.Layer;
        var names = context.LayerNames ?? (context.Direction == MessageDirection.Inbound ? InboundNames : OutboundNames);
        return (uint)layer < (uint)names.Length ? names[layer] : "handler";
    }

    /// <param name="registrations">The interceptors, outermost first.</param>
    /// <param name="services">Where class interceptors come from.</param>
    /// <param name="terminal">Where the chains end; the context's sink by default.</param>
    /// <param name="fragments">Whether to compose the chains for fragments too (the route streams messages).</param>
    public static MessagePipeline Build(IReadOnlyList<InterceptorRegistration> registrations, IServiceProvider services, MessageDelegate? terminal = null, bool fragments = false)
    {
        terminal ??= MessageContext.Terminal;
        if (registrations.Count == 0)
        {
            return ReferenceEquals(terminal, MessageContext.Terminal) ? Empty : new MessagePipeline(terminal, terminal, [], []);
        }

        var inbound = new List<(InterceptorLayer Layer, InterceptorRegistration Registration)>();
        var outbound = new List<(InterceptorLayer Layer, InterceptorRegistration Registration)>();
        foreach (var registration in registrations)
        {
            var layer = registration.CreateLayer(services);
            if (registration.Direction != MessageDirection.Outbound && layer.HandlesInbound)
            {
                inbound.Add((layer, registration));
            }

            if (registration.Direction != MessageDirection.Inbound && layer.HandlesOutbound)
            {
                outbound.Add((layer, registration));
            }
        }

        // Inbound in registration order, outbound in reverse, so the first interceptor
        // added is the outermost both ways.
        outbound.Reverse();

        // The control chains are separate delegates of the opted-in layers only, so the data chains stay as they were.
        var inboundControl = inbound.FindAll(static entry => FramesOf(entry) != ControlFrames.None);
        var outboundControl = outbound.FindAll(static entry => FramesOf(entry) != ControlFrames.None);
        var control = inboundControl.Count == 0 && outboundControl.Count == 0
            ? null
            : new ControlChains(
                inboundControl.Count == 0 ? null : ComposeControl(inboundControl, MessageDirection.Inbound, terminal),
                outboundControl.Count == 0 ? null : ComposeControl(outboundControl, MessageDirection.Outbound, terminal),
                inboundControl.ConvertAll(entry => entry.Registration.Name).ToArray(),
                outboundControl.ConvertAll(entry => entry.Registration.Name).ToArray());

        return new MessagePipeline(
            Compose(inbound, MessageDirection.Inbound, terminal),
            Compose(outbound, MessageDirection.Outbound, terminal),
            inbound.ConvertAll(entry => entry.Registration.Name).ToArray(),
            outbound.ConvertAll(entry => entry.Registration.Name).ToArray(),
            control,
            fragments ? Compose(inbound, MessageDirection.Inbound, terminal, fragments: true) : null,
            fragments ? Compose(outbound, MessageDirection.Outbound, terminal, fragments: true) : null);
    }

    /// <summary>The control frames a frame of <paramref name="type"/> is, for the registrations' masks.</summary>
    internal static ControlFrames FrameOf(MessageType type) => type switch
    {
        MessageType.Ping => ControlFrames.Ping,
        MessageType.Pong => ControlFrames.Pong,
        MessageType.Close => ControlFrames.Close,
        _ => ControlFrames.None,
    };

    private static ControlFrames FramesOf((InterceptorLayer Layer, InterceptorRegistration Registration) entry) =>
        entry.Registration.ControlFrames | entry.Layer.InnerControlFrames;

    private static MessageDelegate ComposeControl(List<(InterceptorLayer Layer, InterceptorRegistration Registration)> layers, MessageDirection direction, MessageDelegate terminal)
    {
        var next = terminal;
        for (var i = layers.Count - 1; i >= 0; i--)
        {
            var entry = layers[i];
            var frames = FramesOf(entry);
            var wrapped = entry.Layer.WrapControl(direction, next, i);
            var predicate = entry.Registration.Predicate;
            if (frames != ControlFrames.All || predicate is not null)
            {
                var inner = wrapped;
                var skip = next;
                wrapped = context => (FrameOf(context.Message.Type) & frames) != 0 && (predicate is null || predicate(context)) ? inner(context) : skip(context);
            }

            next = wrapped;
        }

        return next;
    }

    private static MessageDelegate Compose(List<(InterceptorLayer Layer, InterceptorRegistration Registration)> layers, MessageDirection direction, MessageDelegate terminal, bool fragments = false)
    {
        var next = terminal;
        for (var i = layers.Count - 1; i >= 0; i--)
        {
            var (layer, registration) = layers[i];
            if (fragments && !registration.FragmentAware && !layer.IsContainer)
            {
                next = SkipFragments(registration.Name, direction, next);
                continue;
            }

            var wrapped = fragments ? layer.WrapFragments(direction, next, i) : layer.Wrap(direction, next, i);
            if (registration.Predicate is { } predicate)
            {
                var inner = wrapped;
                var skip = next;
                wrapped = context => predicate(context) ? inner(context) : skip(context);
            }

            next = wrapped;
        }

        return next;
    }

    /// <summary>Stands for an interceptor that does not handle fragments: counts the skip once per streamed message.</summary>
    private static MessageDelegate SkipFragments(string name, MessageDirection direction, MessageDelegate next) =>
        context =>
        {
            if (context.Message.FragmentOffset == 0)
            {
                context.Connection.Route.Metrics.RecordFragmentSkip(context.Connection.Route.Pattern, direction, name);
            }

            return next(context);
        };
}

/// <summary>The chains of control frames of a pipeline, by direction: null where no interceptor opted in.</summary>
internal sealed record ControlChains(MessageDelegate? Inbound, MessageDelegate? Outbound, string[] InboundNames, string[] OutboundNames);
