using System.Collections.Concurrent;

namespace Sluice.Gateway.Admin;

/// <summary>One message seen by the tap, after its route's policies (so redacted as they redact).</summary>
internal sealed record TapEntry(long Sequence, DateTimeOffset At, string Route, string ConnectionId, string Direction, string Opcode, int Bytes, string? Preview);

/// <summary>
/// The dashboard's live tap: recent messages of the route an operator picks. Off by default; while off it costs a
/// field read per message. Bounded: each route keeps its last <see cref="Capacity"/> messages, previews are cut,
/// and a tap switches itself off after <see cref="Lifetime"/>.
/// </summary>
internal sealed class MessageTap
{
    public const int Capacity = 100;
    public const int PreviewChars = 512;
    public static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(10);

    private readonly ConcurrentDictionary<string, RouteTap> _routes = new(StringComparer.Ordinal);
    private long _sequence;

    public RouteTap For(string route) => _routes.GetOrAdd(route, r => new RouteTap(r, this));

    public void Enable(string route, bool enabled) => For(route).EnabledUntil = enabled ? Environment.TickCount64 + (long)Lifetime.TotalMilliseconds : 0;

    public IReadOnlyList<string> EnabledRoutes() => [.. _routes.Values.Where(r => r.IsEnabled).Select(r => r.Route)];

    public IReadOnlyList<TapEntry> Since(long sequence) =>
        [.. _routes.Values.SelectMany(r => r.Snapshot()).Where(e => e.Sequence > sequence).OrderBy(e => e.Sequence)];

    internal long NextSequence() => Interlocked.Increment(ref _sequence);

    /// <summary>The tap of one route: an interceptor placed after the route's policies in each direction.</summary>
    internal sealed class RouteTap(string route, MessageTap owner) : IMessageInterceptor
    {
        private readonly Queue<TapEntry> _entries = new();
        private long _enabledUntil;

        public string Route { get; } = route;

        public long EnabledUntil
        {
            get => Volatile.Read(ref _enabledUntil);
            set => Volatile.Write(ref _enabledUntil, value);
        }

        public bool IsEnabled => EnabledUntil > Environment.TickCount64;

        public ValueTask InboundAsync(MessageContext context, MessageDelegate next)
        {
            Record(context);
            return next(context);
        }

        public ValueTask OutboundAsync(MessageContext context, MessageDelegate next)
        {
            Record(context);
            return next(context);
        }

        public TapEntry[] Snapshot()
        {
            lock (_entries)
            {
                return [.. _entries];
            }
        }

        private void Record(MessageContext context)
        {
            if (!IsEnabled)
            {
                return;
            }

            var message = context.Message;
            string? preview = null;
            if (message.IsText)
            {
                var text = message.Text;
                preview = text.Length <= PreviewChars ? text : string.Concat(text.AsSpan(0, PreviewChars), "…");
            }

            var entry = new TapEntry(owner.NextSequence(), DateTimeOffset.UtcNow, Route, context.Connection.Id,
                context.Direction == MessageDirection.Inbound ? "inbound" : "outbound", message.IsText ? "text" : "binary", message.Length, preview);
            lock (_entries)
            {
                _entries.Enqueue(entry);
                while (_entries.Count > Capacity)
                {
                    _entries.Dequeue();
                }
            }
        }
    }
}
