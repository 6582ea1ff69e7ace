using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net.WebSockets;

namespace Sluice.Diagnostics;

/// <summary>
/// Sluice's instruments, on the meter named <c>Sluice</c>. Counts that change with every message (messages,
/// bytes, forwarded) are kept as plain per-connection fields and reported by observable instruments when a
/// collector asks, so the message path pays no metrics cost; rarer events use ordinary counters.
/// </summary>
internal sealed class SluiceMetrics : IDisposable
{
    public const string MeterName = "Sluice";

    private static readonly string[] s_namedCloseCodes = [.. Enumerable.Range(1000, 16).Select(code => code.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    private readonly Meter _meter;
    private readonly ConcurrentDictionary<string, RouteMetrics> _routes = new(StringComparer.Ordinal);

    public SluiceMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(MeterName);

        _meter.CreateObservableUpDownCounter("sluice.connections.active", ObserveActive, "{connection}", "Open WebSocket connections.");
        _meter.CreateObservableCounter("sluice.messages", ObserveMessages, "{message}", "Messages received from clients (inbound) and sent to them (outbound).");
        _meter.CreateObservableCounter("sluice.message.bytes", ObserveBytes, "By", "Payload bytes received from clients (inbound) and sent to them (outbound).");

        ConnectionsOpened = _meter.CreateCounter<long>("sluice.connections.opened", "{connection}", "Connections accepted.");
        ConnectionsClosed = _meter.CreateCounter<long>("sluice.connections.closed", "{connection}", "Connections ended, by close code (none when lost without a close frame).");
        UpgradesRejected = _meter.CreateCounter<long>("sluice.upgrades.rejected", "{request}", "Upgrade requests refused, by HTTP status.");
        Outcomes = _meter.CreateCounter<long>("sluice.policy.outcomes", "{message}", "Messages that an interceptor or policy dropped, replied to, closed on, or failed on.");
        PipelineDuration = _meter.CreateHistogram<double>("sluice.pipeline.duration", "s", "Time a message spent in its chain of interceptors.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1] });
        SendQueueDepth = _meter.CreateUpDownCounter<long>("sluice.send_queue.depth", "{message}", "Messages waiting in connection send queues.");
        SendQueueDropped = _meter.CreateCounter<long>("sluice.send_queue.dropped", "{message}", "Messages discarded because a send queue was full.");
        InterceptorsSkipped = _meter.CreateCounter<long>("sluice.interceptor.skipped", "{message}", "Streamed messages that an interceptor not handling fragments did not see, by interceptor.");
    }

    public Counter<long> InterceptorsSkipped { get; }

    /// <summary>Counts a streamed message that the interceptor or policy <paramref name="name"/> was skipped for.</summary>
    public void RecordFragmentSkip(string route, MessageDirection direction, string name)
    {
        if (InterceptorsSkipped.Enabled)
        {
            InterceptorsSkipped.Add(1, new TagList { { "route", route }, { "direction", DirectionTag(direction) }, { "policy", name } });
        }
    }

    public Counter<long> ConnectionsOpened { get; }

    public Counter<long> ConnectionsClosed { get; }

    public Counter<long> UpgradesRejected { get; }

    public Counter<long> Outcomes { get; }

    public Histogram<double> PipelineDuration { get; }

    public UpDownCounter<long> SendQueueDepth { get; }

    public Counter<long> SendQueueDropped { get; }

    /// <summary>The meter, for other Sluice components (proxy, topics) to add their instruments to.</summary>
    public Meter Meter => _meter;

    public RouteMetrics ForRoute(string route) => _routes.GetOrAdd(route, static r => new RouteMetrics(r));

    public void RecordClosed(string route, WebSocketCloseStatus? status)
    {
        if (ConnectionsClosed.Enabled)
        {
            ConnectionsClosed.Add(1, new TagList { { "route", route }, { "close_code", CloseCodeTag(status) } });
        }
    }

    /// <summary>
    /// The <c>close_code</c> label: the codes RFC 6455 names (1000-1015) as themselves, the ranges that libraries
    /// and applications choose from as <c>3xxx</c> and <c>4xxx</c>, anything else <c>other</c>. A client picks its
    /// close code: one series per code would let it fill the exporter's series limit, after which closes of every
    /// route are counted without their labels.
    /// </summary>
    public static string CloseCodeTag(WebSocketCloseStatus? status) => (int?)status switch
    {
        null => "none",
        >= 1000 and <= 1015 and var code => s_namedCloseCodes[code - 1000],
        >= 3000 and <= 3999 => "3xxx",
        >= 4000 and <= 4999 => "4xxx",
        _ => "other",
    };

    public void RecordOutcome(string route, MessageDirection direction, string policy, MessageOutcome outcome)
    {
        if (Outcomes.Enabled)
        {
            Outcomes.Add(1, new TagList { { "route", route }, { "direction", DirectionTag(direction) }, { "policy", policy }, { "outcome", OutcomeTag(outcome) } });
        }
    }

    public static string DirectionTag(MessageDirection direction) => direction == MessageDirection.Inbound ? "inbound" : "outbound";

    public static string OutcomeTag(MessageOutcome outcome) => outcome switch
    {
        MessageOutcome.Forwarded => "forwarded",
        MessageOutcome.Dropped => "dropped",
        MessageOutcome.Replied => "replied",
        MessageOutcome.Closed => "closed",
        MessageOutcome.Failed => "failed",
        _ => "none",
    };

    public void Dispose() => _meter.Dispose();

    private IEnumerable<Measurement<long>> ObserveActive()
    {
        foreach (var route in _routes.Values)
        {
            yield return new Measurement<long>(route.Active, new KeyValuePair<string, object?>("route", route.Route));
        }
    }

    private IEnumerable<Measurement<long>> ObserveMessages()
    {
        foreach (var route in _routes.Values)
        {
            var (inbound, outbound, _, _) = route.Totals();
            yield return new Measurement<long>(inbound, new("route", route.Route), new("direction", "inbound"));
            yield return new Measurement<long>(outbound, new("route", route.Route), new("direction", "outbound"));
        }
    }

    private IEnumerable<Measurement<long>> ObserveBytes()
    {
        foreach (var route in _routes.Values)
        {
            var (_, _, inbound, outbound) = route.Totals();
            yield return new Measurement<long>(inbound, new("route", route.Route), new("direction", "inbound"));
            yield return new Measurement<long>(outbound, new("route", route.Route), new("direction", "outbound"));
        }
    }
}

/// <summary>
/// Per-route totals: the live connections' own counters plus what connections that have ended carried.
/// </summary>
internal sealed class RouteMetrics(string route)
{
    private readonly ConcurrentDictionary<WebSocketConnection, byte> _live = new();
    private readonly Lock _sync = new();
    private long _inboundMessages;
    private long _outboundMessages;
    private long _inboundBytes;
    private long _outboundBytes;

    public string Route { get; } = route;

    public long Active => _live.Count;

    public void Add(WebSocketConnection connection) => _live.TryAdd(connection, 0);

    public void Remove(WebSocketConnection connection)
    {
        // Moving a connection's counts into the totals and out of the live set happens under the lock that
        // readers take, so a counter never appears to go backwards.
        lock (_sync)
        {
            if (_live.TryRemove(connection, out _))
            {
                _inboundMessages += connection.InboundMessages;
                _outboundMessages += connection.OutboundMessages;
                _inboundBytes += connection.InboundBytes;
                _outboundBytes += connection.OutboundBytes;
            }
        }
    }

    public (long InboundMessages, long OutboundMessages, long InboundBytes, long OutboundBytes) Totals()
    {
        lock (_sync)
        {
            long inMessages = _inboundMessages, outMessages = _outboundMessages, inBytes = _inboundBytes, outBytes = _outboundBytes;
            foreach (var connection in _live.Keys)
            {
                inMessages += connection.InboundMessages;
                outMessages += connection.OutboundMessages;
                inBytes += connection.InboundBytes;
                outBytes += connection.OutboundBytes;
            }

            return (inMessages, outMessages, inBytes, outBytes);
        }
    }
}
