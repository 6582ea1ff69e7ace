using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Sluice.Diagnostics;

namespace Sluice.Proxy;

internal static partial class ProxyLog
{
    [LoggerMessage(300, LogLevel.Warning, "Backend for {Route} unavailable at {BackendUri}: {Reason}. The client got 502.")]
    public static partial void BackendConnectFailed(ILogger logger, string route, string backendUri, string reason);

    [LoggerMessage(301, LogLevel.Warning, "No backend of {Route} accepted the connection ({Count} tried): {Failures}. The client got 502.")]
    public static partial void AllBackendsFailed(ILogger logger, string route, int count, string failures);

    [LoggerMessage(302, LogLevel.Warning, "No backend of {Route} is healthy (all {Count} unhealthy). The client got 502.")]
    public static partial void NoHealthyBackend(ILogger logger, string route, int count);
}

/// <summary>Backend connection metrics, on the <c>Sluice</c> meter.</summary>
internal sealed class ProxyMetrics
{
    private readonly Histogram<double> _connectDuration;
    private readonly Counter<long> _connectFailures;

    public ProxyMetrics(SluiceMetrics metrics)
    {
        var meter = metrics.Meter;
        _connectDuration = meter.CreateHistogram<double>("sluice.backend.connect.duration", "s", "Time to connect to a backend, TLS and handshake included.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _connectFailures = meter.CreateCounter<long>("sluice.backend.connect.failures", "{connection}", "Backend connections that failed, by reason.");
        meter.CreateObservableGauge("sluice.backend.healthy", () => ObserveTargets(static t => t.IsHealthy ? 1 : 0), "{target}", "1 when a pool's target gets new connections, 0 when it is unhealthy.");
        meter.CreateObservableUpDownCounter("sluice.backend.connections", () => ObserveTargets(static t => t.OpenConnections), "{connection}", "Open connections proxied to a pool's target.");
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<Proxy.BackendPool, byte> _pools = new();

    /// <summary>Observes a pool's targets (health, open connections) until it is disposed.</summary>
    public void Track(Proxy.BackendPool pool) => _pools.TryAdd(pool, 0);

    private IEnumerable<Measurement<int>> ObserveTargets(Func<Proxy.BackendTarget, int> value)
    {
        foreach (var pool in _pools.Keys)
        {
            if (pool.IsDisposed)
            {
                _pools.TryRemove(pool, out _);
                continue;
            }

            foreach (var target in pool.Targets)
            {
                yield return new Measurement<int>(value(target), new KeyValuePair<string, object?>("route", pool.RoutePattern), new KeyValuePair<string, object?>("target", target.Display));
            }
        }
    }

    public void RecordConnected(string route, TimeSpan elapsed) =>
        _connectDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("route", route));

    public void RecordFailure(string route, string reason) =>
        _connectFailures.Add(1, new TagList { { "route", route }, { "reason", reason } });
}
