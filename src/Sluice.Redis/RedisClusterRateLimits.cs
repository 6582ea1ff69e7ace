using System.Threading.RateLimiting;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RedisRateLimiting;
using StackExchange.Redis;

namespace Sluice.Redis;

/// <summary>
/// Cluster budgets counted in Redis with RedisRateLimiting's limiters (a token bucket and a fixed window, each one
/// Lua script per acquire). While Redis cannot answer, every call returns null so that the policy counts on its node;
/// the switch both ways is logged once and shown by the <c>cluster-rate-limits</c> health check.
/// </summary>
/// <remarks>
/// The limiters hold no state of their own (the bucket lives in Redis), so one is made per call: nothing to bound or
/// sweep here whatever the number of partitions. A call waits at most <see cref="RedisBackplaneOptions.RequestTimeout"/>.
/// </remarks>
internal sealed partial class RedisClusterRateLimits(RedisWebSocketCluster cluster, IOptions<RedisBackplaneOptions> options, ILogger<RedisClusterRateLimits> logger)
    : IClusterRateLimits
{
    private readonly RedisBackplaneOptions _options = options.Value;
    private int _fallback;

    /// <summary>Gets whether cluster budgets are counted per node now: Redis could not answer the last call, or is unreachable.</summary>
    public bool IsFallingBack => Volatile.Read(ref _fallback) == 1 || cluster.Redis is not { IsConnected: true };

    public ValueTask<bool?> TryAcquireTokenAsync(string key, int tokenLimit, int tokensPerPeriod, TimeSpan period, CancellationToken cancellationToken = default) =>
        AcquireAsync(redis => new RedisTokenBucketRateLimiter<string>(Key(key), new RedisTokenBucketRateLimiterOptions
        {
            ConnectionMultiplexerFactory = () => redis,
            TokenLimit = tokenLimit,
            TokensPerPeriod = tokensPerPeriod,
            ReplenishmentPeriod = period,
        }), cancellationToken);

    public ValueTask<bool?> TryAcquireWindowAsync(string key, int permits, TimeSpan window, CancellationToken cancellationToken = default) =>
        AcquireAsync(redis => new RedisFixedWindowRateLimiter<string>(Key(key), new RedisFixedWindowRateLimiterOptions
        {
            ConnectionMultiplexerFactory = () => redis,
            PermitLimit = permits,
            Window = window,
        }), cancellationToken);

    private string Key(string key) => _options.ChannelPrefix + ":limit:" + key;

    private async ValueTask<bool?> AcquireAsync(Func<IConnectionMultiplexer, RateLimiter> create, CancellationToken cancellationToken)
    {
        if (cluster.Redis is not { IsConnected: true } redis)
        {
            FallBack(null);
            return null;
        }

        try
        {
            using var limiter = create(redis);
            using var lease = await limiter.AcquireAsync(1, cancellationToken).AsTask().WaitAsync(_options.RequestTimeout, cancellationToken);
            if (Interlocked.Exchange(ref _fallback, 0) == 1)
            {
                Log.Shared(logger);
            }

            return lease.IsAcquired;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            FallBack(ex);
            return null;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The connection or request went away while Redis answered: nothing is let through for it.
            return false;
        }
    }

    private void FallBack(Exception? exception)
    {
        if (Interlocked.Exchange(ref _fallback, 1) == 0)
        {
            Log.FallingBack(logger, exception);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(720, LogLevel.Warning, "Cluster rate limits: Redis cannot answer; each node counts its own budgets until it can.")]
        public static partial void FallingBack(ILogger logger, Exception? exception);

        [LoggerMessage(721, LogLevel.Information, "Cluster rate limits: counted in Redis again, shared by every node.")]
        public static partial void Shared(ILogger logger);
    }
}

/// <summary>Degraded while cluster rate limits count per node.</summary>
internal sealed class ClusterRateLimitsHealthCheck(RedisClusterRateLimits limits) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(limits.IsFallingBack
            ? new HealthCheckResult(context.Registration.FailureStatus, "Redis cannot answer: cluster rate limits count per node")
            : HealthCheckResult.Healthy("cluster rate limits are shared through Redis"));
}
