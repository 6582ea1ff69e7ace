using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Sluice.Diagnostics;

/// <summary>
/// Keeps the log readable when clients can make the server write a line each: rejected upgrades (events 103, 104,
/// 204, 300). Per route and status, the first <see cref="PerInterval"/> of each <see cref="Interval"/> are logged one
/// by one; the rest are only counted, and one summary line (event 111) per route and status reports them when the
/// interval ends. The metrics (<c>sluice.upgrades.rejected</c>) still count every rejection.
/// </summary>
internal sealed class RejectionLogThrottle : IDisposable
{
    public const int PerInterval = 10;

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<(string Route, int Status), Window> _windows = new();
    private readonly ITimer _timer;

    public RejectionLogThrottle()
        : this(TimeProvider.System)
    {
    }

    internal RejectionLogThrottle(TimeProvider time)
    {
        _timer = time.CreateTimer(static state => ((RejectionLogThrottle)state!).Flush(), this, Interval, Interval);
    }

    /// <summary>Counts a rejection; true when it is among the first of its interval and should be logged.</summary>
    /// <remarks>
    /// Routes are the app's patterns and statuses a handful of HTTP codes, so the keys stay few; a route no longer
    /// rejecting anything is forgotten at the next flush.
    /// </remarks>
    public bool TryLog(ILogger logger, string route, int status)
    {
        var window = _windows.GetOrAdd((route, status), static (_, logger) => new Window(logger), logger);
        return Interlocked.Increment(ref window.Count) <= PerInterval;
    }

    /// <summary>Ends the interval: one summary line per route and status for what was not logged, and a new count.</summary>
    internal void Flush()
    {
        foreach (var (key, window) in _windows)
        {
            var count = Interlocked.Exchange(ref window.Count, 0);
            if (count == 0)
            {
                _windows.TryRemove(new KeyValuePair<(string, int), Window>(key, window));
            }
            else if (count > PerInterval)
            {
                SluiceLog.UpgradesRejectedSummary(window.Logger, count - PerInterval, key.Route, key.Status, Interval.TotalSeconds);
            }
        }
    }

    public void Dispose()
    {
        _timer.Dispose();
        Flush();
    }

    private sealed class Window(ILogger logger)
    {
        public readonly ILogger Logger = logger;
        public int Count;
    }
}
