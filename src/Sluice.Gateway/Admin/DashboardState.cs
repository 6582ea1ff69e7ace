using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Sluice.Gateway.Admin;

/// <summary>
/// What the dashboard shows, sampled once a second from Sluice's own meter through a <see cref="MeterListener"/>:
/// message rates per route and direction (with two minutes of history for the chart), policy outcomes, backend
/// connect times and failures. The dashboard reads the same numbers Prometheus scrapes.
/// </summary>
internal sealed class DashboardState : IDisposable
{
    public const int HistorySeconds = 120;

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Route, string Direction), long> _messageTotals = new();
    private readonly ConcurrentDictionary<(string Route, string Direction, string Policy, string Outcome), long> _outcomes = new();
    private readonly ConcurrentDictionary<string, double> _lastConnectMs = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastConnectAt = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Route, string Direction), RouteSeries> _series = [];
    private readonly Lock _lock = new();
    private Timer? _timer;

    public DashboardState()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Sluice" && instrument.Name is "sluice.messages" or "sluice.policy.outcomes" or "sluice.backend.connect.duration")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.Start();
        _timer = new Timer(_ => Sample(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>Per route and direction: the current rate (messages per second), the total and the history.</summary>
    public IReadOnlyList<(string Route, string Direction, double Rate, long Total, double[] History)> Rates()
    {
        lock (_lock)
        {
            return [.. _series.Select(s => (s.Key.Route, s.Key.Direction, s.Value.History.LastOrDefault(), s.Value.Total, s.Value.History.ToArray()))];
        }
    }

    public IReadOnlyList<(string Route, string Direction, string Policy, string Outcome, long Count)> Outcomes() =>
        [.. _outcomes.Select(o => (o.Key.Route, o.Key.Direction, o.Key.Policy, o.Key.Outcome, o.Value)).OrderBy(o => o.Route).ThenBy(o => o.Policy)];

    public (double? Milliseconds, DateTimeOffset? At) LastBackendConnect(string route) =>
        (_lastConnectMs.TryGetValue(route, out var ms) ? ms : null, _lastConnectAt.TryGetValue(route, out var at) ? at : null);

    public void Dispose()
    {
        _timer?.Dispose();
        _timer = null;
        _listener.Dispose();
    }

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "sluice.messages":
                _messageTotals[(Tag(tags, "route"), Tag(tags, "direction"))] = value;
                break;
            case "sluice.policy.outcomes":
                _outcomes.AddOrUpdate((Tag(tags, "route"), Tag(tags, "direction"), Tag(tags, "policy"), Tag(tags, "outcome")), value, (_, total) => total + value);
                break;
        }
    }

    private void OnDouble(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        var route = Tag(tags, "route");
        _lastConnectMs[route] = value * 1000;
        _lastConnectAt[route] = DateTimeOffset.UtcNow;
    }

    private void Sample()
    {
        _listener.RecordObservableInstruments();
        lock (_lock)
        {
            foreach (var (key, total) in _messageTotals)
            {
                if (!_series.TryGetValue(key, out var series))
                {
                    series = _series[key] = new RouteSeries { Total = total };
                }

                series.History.Enqueue(Math.Max(0, total - series.Total));
                series.Total = total;
                while (series.History.Count > HistorySeconds)
                {
                    series.History.Dequeue();
                }
            }
        }
    }

    private static string Tag(ReadOnlySpan<KeyValuePair<string, object?>> tags, string name)
    {
        foreach (var tag in tags)
        {
            if (tag.Key == name)
            {
                return tag.Value?.ToString() ?? string.Empty;
            }
        }

        return string.Empty;
    }

    private sealed class RouteSeries
    {
        public long Total { get; set; }

        public Queue<double> History { get; } = new();
    }
}
