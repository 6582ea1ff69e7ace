using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace Sluice.Policies;

/// <summary>How a connection limit groups connections.</summary>
public enum ConnectionLimitPartition
{
    /// <summary>Per client IP address (per /64 network for IPv6).</summary>
    Ip,

    /// <summary>Per subject (set by an earlier upgrade policy such as api-key); anonymous clients by IP.</summary>
    Subject,
}

/// <summary>Options of <see cref="ConnectionLimitPolicy"/> (<c>connection-limit</c>).</summary>
public sealed class ConnectionLimitPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets how many connections may be open at once per partition.</summary>
    public int Max { get; set; }

    /// <summary>Gets or sets how connections are partitioned. Default: per IP.</summary>
    public ConnectionLimitPartition PartitionBy { get; set; } = ConnectionLimitPartition.Ip;

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Max <= 0)
        {
            yield return new("max", "must be a positive number of connections");
        }

        if (!Enum.IsDefined(PartitionBy))
        {
            yield return new("partitionBy", "must be ip or subject");
        }
    }
}

/// <summary>
/// <c>connection-limit</c>: at most <see cref="ConnectionLimitPolicyOptions.Max"/> connections open at once per IP or
/// subject. Over it, the upgrade gets 429 with <c>Retry-After</c>. A place is given back when the connection ends, or
/// when the upgrade fails after this policy let it through (a later policy refused it, the backend failed).
/// </summary>
/// <remarks>
/// The place is held through <see cref="UpgradeContext.RegisterForDispose"/>: every way an upgrade or a connection
/// can end gives it back, exactly once.
/// </remarks>
public sealed class ConnectionLimitPolicy : IUpgradePolicy
{
    // When a place frees up depends on other connections closing, which nobody can tell; clients are asked to wait
    // as long as for a server at its connection limit.
    private const string RetryAfter = "5";

    private readonly ConnectionLimitPolicyOptions _options;
    private readonly string _rejection;
    private readonly Dictionary<string, int> _open = new(StringComparer.Ordinal);

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in logs.</param>
    public ConnectionLimitPolicy(ConnectionLimitPolicyOptions options, string name = "connection-limit")
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _options = options;
        _rejection = string.Create(CultureInfo.InvariantCulture, $"connection limit reached: {options.Max} open connections per {(options.PartitionBy == ConnectionLimitPartition.Ip ? "client address" : "subject")}");
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    /// <remarks>False: the connection already holds its place.</remarks>
    public bool CanRecheck => false;

    /// <summary>Gets the number of partitions with open connections (for tests and diagnostics).</summary>
    internal int PartitionCount
    {
        get
        {
            lock (_open)
            {
                return _open.Count;
            }
        }
    }

    /// <summary>Gets the connections counted in the partition of a client address (for tests and diagnostics).</summary>
    internal int OpenFor(string key)
    {
        lock (_open)
        {
            return _open.GetValueOrDefault(key);
        }
    }

    /// <inheritdoc />
    public ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var key = Key(context);
        lock (_open)
        {
            var open = _open.GetValueOrDefault(key);
            if (open >= _options.Max)
            {
                context.HttpContext.Response.Headers.RetryAfter = RetryAfter;
                return new ValueTask<UpgradeResult>(UpgradeResult.Reject(StatusCodes.Status429TooManyRequests, _rejection));
            }

            _open[key] = open + 1;
        }

        context.RegisterForDispose(new Place(this, key));
        return new ValueTask<UpgradeResult>(UpgradeResult.Continue());
    }

    private void Release(string key)
    {
        lock (_open)
        {
            // Partitions without connections are removed, so memory follows the clients connected now.
            if (_open.GetValueOrDefault(key) <= 1)
            {
                _open.Remove(key);
            }
            else
            {
                _open[key]--;
            }
        }
    }

    internal string Key(UpgradeContext context) =>
        _options.PartitionBy == ConnectionLimitPartition.Subject && context.Subject is { } subject
            ? "s:" + subject
            : ClientPartitions.IpKey(context.HttpContext.Connection.RemoteIpAddress);

    /// <summary>One counted connection; disposed when the connection ends, or when the upgrade fails.</summary>
    private sealed class Place(ConnectionLimitPolicy policy, string key) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                policy.Release(key);
            }
        }
    }
}
