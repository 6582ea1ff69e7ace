namespace Sluice.Proxy;

/// <summary>
/// One target of a pool and its health. As in YARP, passive results (connects) and active ones (health checks) feed
/// one state, but unlike YARP's separate passive and active values, a target here is either healthy or not: failures
/// of either kind count towards <c>unhealthyAfter</c>, and only successful checks (or, without checks, the
/// reactivation period) bring it back, so the admin API has one answer to give.
/// </summary>
internal sealed class BackendTarget(int index, WebSocketProxyTarget template)
{
    private readonly Lock _lock = new();
    private int _openConnections;
    private int _failures;
    private int _successes;
    private bool _healthy = true;
    private string? _lastError;
    private DateTimeOffset? _lastErrorAt;
    private DateTimeOffset? _lastCheckAt;
    private long _unhealthySince;

    public int Index { get; } = index;

    public WebSocketProxyTarget Template { get; } = template;

    /// <summary>The pattern as logs and the admin API show it: without its query, which may carry tokens.</summary>
    public string Display { get; } = template.Pattern.Split('?', 2)[0];

    public bool IsHealthy => Volatile.Read(ref _healthy);

    public int OpenConnections => Volatile.Read(ref _openConnections);

    /// <summary>The timestamp (TimeProvider ticks) at which the target became unhealthy.</summary>
    public long UnhealthySince => Volatile.Read(ref _unhealthySince);

    public void Opened() => Interlocked.Increment(ref _openConnections);

    public void Closed() => Interlocked.Decrement(ref _openConnections);

    /// <summary>Records a failure; returns true when it made the target unhealthy.</summary>
    public bool RecordFailure(string error, DateTimeOffset now, long timestamp, int unhealthyAfter, bool isCheck)
    {
        lock (_lock)
        {
            _lastError = error;
            _lastErrorAt = now;
            _successes = 0;
            if (isCheck)
            {
                _lastCheckAt = now;
            }

            if (unhealthyAfter <= 0 || ++_failures < unhealthyAfter || !_healthy)
            {
                return false;
            }

            _unhealthySince = timestamp;
            Volatile.Write(ref _healthy, false);
            return true;
        }
    }

    /// <summary>Records a success; returns true when it made the target healthy again.</summary>
    public bool RecordSuccess(DateTimeOffset now, int healthyAfter, bool isCheck)
    {
        lock (_lock)
        {
            _failures = 0;
            if (isCheck)
            {
                _lastCheckAt = now;
            }

            // Only checks count towards healthyAfter: a connect that was already under way when the target turned
            // unhealthy says nothing about the next ones.
            if (_healthy || !isCheck || ++_successes < healthyAfter)
            {
                return false;
            }

            _successes = 0;
            Volatile.Write(ref _healthy, true);
            return true;
        }
    }

    /// <summary>Without active checks: a target that has rested long enough gets connections again.</summary>
    public bool Reactivate()
    {
        lock (_lock)
        {
            if (_healthy)
            {
                return false;
            }

            _failures = 0;
            _successes = 0;
            Volatile.Write(ref _healthy, true);
            return true;
        }
    }

    public BackendTargetState Snapshot()
    {
        lock (_lock)
        {
            return new BackendTargetState(Display, _healthy, OpenConnections, _lastError, _lastErrorAt, _lastCheckAt);
        }
    }
}
