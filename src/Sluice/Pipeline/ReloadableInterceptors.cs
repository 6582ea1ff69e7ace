namespace Sluice;

/// <summary>
/// A set of interceptors that can be replaced while connections are open: after <see cref="Reload"/>, every
/// connection of every endpoint that uses the set runs the new interceptors from its next message on, and no
/// connection is dropped. The JSON gateway's hot reload is built on it.
/// </summary>
/// <remarks>
/// Add it to a pipeline with <see cref="WebSocketPipelineBuilder.Use(ReloadableInterceptors)"/>, where it takes
/// the place of the interceptors it holds. Running it costs one extra delegate call per message.
/// </remarks>
public sealed class ReloadableInterceptors
{
    private readonly Lock _lock = new();

    // Weak: the gateway maps its endpoints again on every reload, and a slot must go when the last endpoint and
    // connection that run it are gone, not live (and be prepared again on each reload) for the life of the process.
    private readonly List<WeakReference<Slot>> _slots = [];
    private WebSocketPipelineBuilder _configuration = new();

    /// <summary>Creates an empty set, to be filled by <see cref="Reload"/>.</summary>
    public ReloadableInterceptors()
    {
    }

    /// <summary>Creates a set holding the interceptors <paramref name="configure"/> adds.</summary>
    public ReloadableInterceptors(Action<WebSocketPipelineBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        configure(_configuration);
    }

    /// <summary>
    /// Replaces the interceptors with those <paramref name="configure"/> adds. Only interceptors are taken from
    /// the builder; upgrade steps, hooks, features and options configured on it are ignored.
    /// </summary>
    public void Reload(Action<WebSocketPipelineBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var configuration = new WebSocketPipelineBuilder();
        configure(configuration);
        lock (_lock)
        {
            var live = LiveSlots();

            // Build everything first: if an interceptor cannot be created, nothing changes.
            foreach (var slot in live)
            {
                slot.Prepare(configuration.Interceptors);
            }

            foreach (var slot in live)
            {
                slot.Commit();
            }

            _configuration = configuration;
        }
    }

    /// <summary>Gets the number of composed chains still in use (for tests).</summary>
    internal int LiveSlotCount
    {
        get
        {
            lock (_lock)
            {
                return LiveSlots().Count;
            }
        }
    }

    internal InterceptorLayer CreateLayer(IServiceProvider services) => new Layer(this, services);

    private Slot Register(IServiceProvider services, MessageDirection direction, MessageDelegate next, SlotKind kind)
    {
        lock (_lock)
        {
            var slot = new Slot(services, direction, next, kind);
            slot.Prepare(_configuration.Interceptors);
            slot.Commit();
            _slots.RemoveAll(static reference => !reference.TryGetTarget(out _));
            _slots.Add(new WeakReference<Slot>(slot));
            return slot;
        }
    }

    /// <summary>The slots still referenced; forgets the others. Called under the lock.</summary>
    private List<Slot> LiveSlots()
    {
        var live = new List<Slot>(_slots.Count);
        _slots.RemoveAll(reference =>
        {
            if (!reference.TryGetTarget(out var slot))
            {
                return true;
            }

            live.Add(slot);
            return false;
        });
        return live;
    }

    /// <summary>Which chain of an endpoint a slot stands in: data messages, control frames, or fragments of streamed messages.</summary>
    private enum SlotKind
    {
        Data,
        Control,
        Fragments,
    }

    /// <summary>The set as composed in front of one endpoint's <c>next</c>, in one direction.</summary>
    private sealed class Slot
    {
        private readonly IServiceProvider _services;
        private readonly MessageDirection _direction;
        private readonly MessageDelegate _exit;
        private readonly SlotKind _kind;
        private MessageDelegate _chain;
        private string[] _names = [];
        private (MessageDelegate Chain, string[] Names)? _prepared;

        public Slot(IServiceProvider services, MessageDirection direction, MessageDelegate next, SlotKind kind)
        {
            _services = services;
            _direction = direction;
            _kind = kind;
            _chain = next;

            // The inner chain ends where the outer chain continues; it resets the names on the way out so that
            // an outer interceptor after this set is named from the outer pipeline.
            _exit = context =>
            {
                context.LayerNames = null;
                return next(context);
            };
        }

        public MessageDelegate Chain => Volatile.Read(ref _chain);

        public string[] Names => Volatile.Read(ref _names);

        public void Prepare(IReadOnlyList<InterceptorRegistration> registrations)
        {
            var pipeline = MessagePipeline.Build(registrations, _services, _exit, fragments: _kind == SlotKind.Fragments);
            if (_kind == SlotKind.Control)
            {
                // No interceptor of the set opted in: control frames pass straight through it.
                var control = pipeline.Control;
                _prepared = _direction == MessageDirection.Inbound
                    ? (control?.Inbound ?? _exit, control?.InboundNames ?? [])
                    : (control?.Outbound ?? _exit, control?.OutboundNames ?? []);
                return;
            }

            _prepared = (_direction, _kind) switch
            {
                (MessageDirection.Inbound, SlotKind.Fragments) => (pipeline.InboundFragments, pipeline.InboundNames),
                (MessageDirection.Inbound, _) => (pipeline.Inbound, pipeline.InboundNames),
                (_, SlotKind.Fragments) => (pipeline.OutboundFragments, pipeline.OutboundNames),
                _ => (pipeline.Outbound, pipeline.OutboundNames),
            };
        }

        public void Commit()
        {
            var (chain, names) = _prepared!.Value;
            _prepared = null;
            Volatile.Write(ref _names, names);
            Volatile.Write(ref _chain, chain);
        }
    }

    private sealed class Layer(ReloadableInterceptors owner, IServiceProvider services) : InterceptorLayer
    {
        // Which of the set's interceptors opt in changes with each reload, so the set takes part in every control chain.
        public override ControlFrames InnerControlFrames => ControlFrames.All;

        // The set's own registrations say whether they handle fragments.
        public override bool IsContainer => true;

        public override MessageDelegate Wrap(MessageDirection direction, MessageDelegate next, int index) =>
            Wrap(owner.Register(services, direction, next, SlotKind.Data), index);

        public override MessageDelegate WrapControl(MessageDirection direction, MessageDelegate next, int index) =>
            Wrap(owner.Register(services, direction, next, SlotKind.Control), index);

        public override MessageDelegate WrapFragments(MessageDirection direction, MessageDelegate next, int index) =>
            Wrap(owner.Register(services, direction, next, SlotKind.Fragments), index);

        private static MessageDelegate Wrap(Slot slot, int index)
        {
            return context =>
            {
                context.Layer = index;
                context.LayerNames = slot.Names;
                return slot.Chain(context);
            };
        }
    }
}
