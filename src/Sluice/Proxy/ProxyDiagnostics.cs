using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Sluice.Diagnostics;

namespace Sluice.Proxy;

internal static partial class ProxyLog
{
    [LoggerMessage(300, LogLevel.Warning, "Backend for {Route} unavailable at {BackendUri}: {Reason}. The client got 502.")]
    public static partial void BackendConnectFailed(ILogger logger, string route, string backendUri, string reason);
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
    }

    public void RecordConnected(string route, TimeSpan elapsed) =>
        _connectDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("route", route));

    public void RecordFailure(string route, string reason) =>
        _connectFailures.Add(1, new TagList { { "route", route }, { "reason", reason } });
}
