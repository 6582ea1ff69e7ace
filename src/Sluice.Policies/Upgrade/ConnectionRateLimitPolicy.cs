using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;

namespace Sluice.Policies;

/// <summary>How a connection rate limit groups upgrade requests into budgets.</summary>
public enum ConnectionRateLimitPartition
{
    /// <summary>One budget per client IP address.</summary>
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

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (Permits <= 0)
        {
            yield return "permits: must be a positive number of connections";
        }

        if (PerSeconds <= 0 || double.IsNaN(PerSeconds) || PerSeconds > TimeSpan.MaxValue.TotalSeconds)
        {
            yield return "perSeconds: must be a positive number of seconds";
        }

        if (!Enum.IsDefined(PartitionBy))
        {
            yield return "partitionBy: must be ip or subject";
        }
    }
}

/// <summary>
/// <c>connection-rate-limit</c>: a fixed window of connections per IP or subject (System.Threading.RateLimiting,
/// as ASP.NET Core's rate-limiting middleware uses). Over the limit, the upgrade gets 429 with <c>Retry-After</c>.
/// Apps that configure rate limits in code may use <c>RequireRateLimiting()</c> on the endpoint instead.
/// </summary>
public sealed class ConnectionRateLimitPolicy : IUpgradePolicy, IDisposable
{
    private readonly PartitionedRateLimiter<UpgradeContext> _limiter;
    private readonly ConnectionRateLimitPolicyOptions _options;

    /// <summary>Creates the policy.</summary>
    public ConnectionRateLimitPolicy(ConnectionRateLimitPolicyOptions options, string name = "connection-rate-limit")
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _options = options;
        var window = new FixedWindowRateLimiterOptions
        {
            PermitLimit = options.Permits,
            Window = TimeSpan.FromSeconds(options.PerSeconds),
            QueueLimit = 0,
            AutoReplenishment = true,
        };
        _limiter = PartitionedRateLimiter.Create<UpgradeContext, string>(context =>
            System.Threading.RateLimiting.RateLimitPartition.GetFixedWindowLimiter(Key(context), _ => window));
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        using var lease = _limiter.AttemptAcquire(context);
        if (lease.IsAcquired)
        {
            return new ValueTask<UpgradeResult>(UpgradeResult.Continue());
        }

        var retryAfter = lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : TimeSpan.FromSeconds(_options.PerSeconds);
        context.HttpContext.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        return new ValueTask<UpgradeResult>(UpgradeResult.Reject(StatusCodes.Status429TooManyRequests,
            string.Create(CultureInfo.InvariantCulture, $"connection rate limit exceeded: {_options.Permits} per {_options.PerSeconds} s")));
    }

    /// <inheritdoc />
    public void Dispose() => _limiter.Dispose();

    private string Key(UpgradeContext context) =>
        _options.PartitionBy == ConnectionRateLimitPartition.Subject && context.Subject is { } subject
            ? "s:" + subject
            : "i:" + context.HttpContext.Connection.RemoteIpAddress;
}
