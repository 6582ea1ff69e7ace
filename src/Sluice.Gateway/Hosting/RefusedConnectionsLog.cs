using System.Diagnostics.Metrics;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// One line (event 503) per ten seconds in which Kestrel refused sockets because the connection budget was full,
/// instead of Kestrel's own warning per socket, which a flood would turn into a line per attempt. Counts from Kestrel's
/// <c>kestrel.rejected_connections</c> counter, which the metrics endpoint exports as it is.
/// </summary>
internal sealed partial class RefusedConnectionsLog : IDisposable
{
    public const string KestrelConnectionsCategory = "Microsoft.AspNetCore.Server.Kestrel.Connections";

    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly MeterListener _listener = new();
    private readonly ITimer _timer;
    private readonly ILogger _logger;
    private readonly long _limit;
    private long _refused;

    public RefusedConnectionsLog(ILoggerFactory loggers, long limit)
    {
        _logger = loggers.CreateLogger("Sluice.Gateway");
        _limit = limit;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Microsoft.AspNetCore.Server.Kestrel" && instrument.Name == "kestrel.rejected_connections")
            {
                listener.EnableMeasurementEvents(instrument, this);
            }
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, _, state) => Interlocked.Add(ref ((RefusedConnectionsLog)state!)._refused, value));
        _listener.Start();
        _timer = TimeProvider.System.CreateTimer(static state => ((RefusedConnectionsLog)state!).Flush(), this, Interval, Interval);
    }

    public void Dispose()
    {
        _timer.Dispose();
        _listener.Dispose();
        Flush();
    }

    private void Flush()
    {
        var refused = Interlocked.Exchange(ref _refused, 0);
        if (refused > 0)
        {
            Log.Refused(_logger, refused, Interval.TotalSeconds, _limit);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(503, LogLevel.Warning, "{Count} new connections refused in the last {Seconds} s: {Limit} connections that have not upgraded to WebSocket were open, the most the open-file budget allows (kestrel.rejected_connections counts them).")]
        public static partial void Refused(ILogger logger, long count, double seconds, long limit);
    }
}
