using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Sluice.Redis;

/// <summary>Degraded, not unhealthy, while Redis is unreachable: the node keeps serving its own subscribers.</summary>
internal sealed class RedisBackplaneHealthCheck(RedisTopicBackplane backplane) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(backplane.IsConnected
            ? HealthCheckResult.Healthy("connected to Redis")
            : new HealthCheckResult(context.Registration.FailureStatus, "Redis is unreachable: topics reach this node's subscribers only"));
}
