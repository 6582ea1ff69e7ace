using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Http;

namespace Sluice.Policies;

/// <summary>How a connection rate limit groups upgrade requests into budgets.</summary>
public enum ConnectionRateLimitPartition
{
    /// <summary>One budget per client IP address (per /64 network for IPv6).</summary>
    Ip,

    /// <summary>One budget per subject (set by an earlier upgrade policy such as api-key); anonymous clients by IP.</summary>
    Subject,
}

/// <summary>Options of <see cref="ConnectionRateLimitPolicy"/> (<c>connection-rate-limit</c>).</summary>
public sealed class ConnectionRateLimitPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets how many connections are allowed per <see cref="PerSeconds"/>.</summary>
    public int Permits { get; set; }

    /// <summary>Gets or sets the period, in seconds. Default: 1.</summary>
    public double PerSeconds { get; set; } = 1;

    /// <summary>Gets or sets how budgets are partitioned. Default: per IP.</summary>
    public ConnectionRateLimitPartition PartitionBy { get; set; } = ConnectionRateLimitPartition.Ip;

    /// <summary>Gets or sets where the budget is counted: on each node (the default) or once for the cluster.</summary>
    public RateLimitScope Scope { get; set; } = RateLimitScope.Node;

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Permits <= 0)
        {
            yield return new("permits", "must be a positive number of connections");
        }

        if (PerSeconds <= 0 || double.IsNaN(PerSeconds) || PerSeconds > TimeSpan.MaxValue.TotalSeconds)
        {
            yield return new("perSeconds", "must be a positive number of seconds");
        }

        if (!Enum.IsDefined(PartitionBy))
        {
            yield return new("partitionBy", "must be ip or subject");
        }

        if (!Enum.IsDefined(Scope))
        {
            yield return new("scope", "must be node or cluster");
        }
    }
}

/// <summary>
/// <c>connection-rate-limit</c>: a fixed window of connections per IP or subject. Over the limit, the upgrade gets 429
/// with <c>Retry-After</c> (the seconds until the window ends). Apps that configure rate limits in code may use
/// ASP.NET Core's <c>RequireRateLimiting()</c> on the endpoint instead.
/// </summary>
/// <remarks>
/// Time comes from the <see cref="TimeProvider"/> given to the constructor, so tests can advance it; System.Threading.RateLimiting's
/// limiters read the system clock and take none, which is why the windows are kept here.
/// </remarks>
public sealed class ConnectionRateLimitPolicy : IUpgradePolicy, IDisposable
{
    private readonly ConnectionRateLimitPolicyOptions _options;
    private readonly TimeProvider _time;
    private readonly IClusterRateLimits? _cluster;
    private readonly long _windowTicks;
    private readonly string _rejection;
    private readonly Dictionary<string, Window> _windows = new(StringComparer.Ordinal);
    private readonly ITimer _sweep;

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in logs.</param>
    /// <param name="timeProvider">The clock the windows follow. Default: <see cref="TimeProvider.System"/>.</param>
    public ConnectionRateLimitPolicy(ConnectionRateLimitPolicyOptions options, string name = "connection-rate-limit", TimeProvider? timeProvider = null)
        : this(options, name, timeProvider, null)
    {
    }

    /// <summary>Creates the policy, with the cluster's shared budgets for <see cref="RateLimitScope.Cluster"/>.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in logs and the budgets' keys in the cluster.</param>
    /// <param name="timeProvider">The clock the node's windows follow; null for <see cref="TimeProvider.System"/>.</param>
    /// <param name="cluster">Where cluster budgets are counted; null counts on this node whatever the scope. The node's windows are used too while the cluster's store cannot answer.</param>
    public ConnectionRateLimitPolicy(ConnectionRateLimitPolicyOptions options, string name, TimeProvider? timeProvider, IClusterRateLimits? cluster)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _options = options;
        _time = timeProvider ?? TimeProvider.System;
        _cluster = options.Scope == RateLimitScope.Cluster ? cluster : null;
        _windowTicks = (long)Math.Min(options.PerSeconds * _time.TimestampFrequency, long.MaxValue / 2);
        _rejection = string.Create(CultureInfo.InvariantCulture, $"connection rate limit exceeded: {options.Permits} per {options.PerSeconds} s");

        // Windows that have ended are dropped, so that memory follows the clients of the current window only.
        var sweepEvery = TimeSpan.FromMilliseconds(Math.Clamp(options.PerSeconds * 1000, 250, 30_000));
        _sweep = _time.CreateTimer(static state => ((ConnectionRateLimitPolicy)state!).Sweep(), this, sweepEvery, sweepEvery);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return _cluster is null ? new ValueTask<UpgradeResult>(EvaluateOnNode(context)) : EvaluateInClusterAsync(context);
    }

    private async ValueTask<UpgradeResult> EvaluateInClusterAsync(UpgradeContext context)
    {
        var shared = await _cluster!.TryAcquireWindowAsync("connection-rate-limit:" + Name + ":" + Key(context), _options.Permits,
            TimeSpan.FromSeconds(_options.PerSeconds), context.HttpContext.RequestAborted);
        switch (shared)
        {
            case true:
                return UpgradeResult.Continue();
            case false:
                // The shared window's end is not known here: the window's length is the longest wait.
                context.HttpContext.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(_options.PerSeconds)).ToString(CultureInfo.InvariantCulture);
                return UpgradeResult.Reject(StatusCodes.Status429TooManyRequests, _rejection);
            default:
                return EvaluateOnNode(context); // the store cannot answer: this node's window decides
        }
    }

    private UpgradeResult EvaluateOnNode(UpgradeContext context)
    {
        var now = _time.GetTimestamp();
        long endsIn;
        lock (_windows)
        {
            ref var window = ref CollectionsMarshal.GetValueRefOrAddDefault(_windows, Key(context), out var exists);
            if (!exists || now - window.Start >= _windowTicks)
            {
                window = new Window(now, 0);
            }

            if (window.Count < _options.Permits)
            {
                window = window with { Count = window.Count + 1 };
                return UpgradeResult.Continue();
            }

            endsIn = window.Start + _windowTicks - now;
        }

        var retryAfter = Math.Max(1, (long)Math.Ceiling((double)endsIn / _time.TimestampFrequency));
        context.HttpContext.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
        return UpgradeResult.Reject(StatusCodes.Status429TooManyRequests, _rejection);
    }

    /// <inheritdoc />
    /// <remarks>False: a re-check would take a place in the window for a connection already counted.</remarks>
    public bool CanRecheck => false;

    /// <inheritdoc />
    public void Dispose() => _sweep.Dispose();

    private void Sweep()
    {
        var now = _time.GetTimestamp();
        lock (_windows)
        {
            foreach (var (key, window) in _windows)
            {
                if (now - window.Start >= _windowTicks)
                {
                    _windows.Remove(key);
                }
            }
        }
    }

    private string Key(UpgradeContext context) =>
        _options.PartitionBy == ConnectionRateLimitPartition.Subject && context.Subject is { } subject
            ? "s:" + subject
            : ClientPartitions.IpKey(context.HttpContext.Connection.RemoteIpAddress);

    /// <summary>A window: when it started (a <see cref="TimeProvider"/> timestamp) and the connections it has let in.</summary>
    private readonly record struct Window(long Start, int Count);
}
