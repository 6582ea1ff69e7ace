using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Sluice.Redis;

namespace Sluice;

/// <summary>Registers the Redis topic backplane.</summary>
public static class RedisBackplaneExtensions
{
    /// <summary>
    /// Makes topics span every node that uses the same Redis and <see cref="RedisBackplaneOptions.ChannelPrefix"/>:
    /// a message published on any node reaches subscribers on every node. Also adds a <c>redis-backplane</c> health
    /// check, degraded while Redis is unreachable (the node still serves its own subscribers then). It also makes the
    /// node part of a cluster (<see cref="IWebSocketCluster"/>: a node registry with heartbeats and requests between
    /// nodes), so that <see cref="IWebSocketUsers"/> reaches every node and <see cref="IClusterRateLimits"/> counts
    /// in Redis, with a <c>cluster-rate-limits</c> health check, degraded while those budgets count per node.
    /// </summary>
    /// <param name="builder">The builder returned by <c>AddSluice()</c>.</param>
    /// <param name="configuration">The StackExchange.Redis configuration string, e.g. <c>127.0.0.1:6379</c>.</param>
    /// <param name="configure">Further settings.</param>
    public static ISluiceBuilder AddRedisBackplane(this ISluiceBuilder builder, string configuration, Action<RedisBackplaneOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(configuration);
        if (builder.Services.Any(d => d.ServiceType == typeof(RedisTopicBackplane)))
        {
            throw new InvalidOperationException("AddRedisBackplane was called twice; a node has one backplane.");
        }

        builder.Services.Configure<RedisBackplaneOptions>(options =>
        {
            options.Configuration = configuration;
            configure?.Invoke(options);
        });
        builder.Services.AddSingleton<RedisTopicBackplane>();
        builder.Services.AddSingleton<ITopicBackplane>(services => services.GetRequiredService<RedisTopicBackplane>());
        builder.Services.AddSingleton<ITopicHistoryBackplane>(services => services.GetRequiredService<RedisTopicBackplane>());
        builder.Services.AddSingleton<ITopicPresenceBackplane>(services => services.GetRequiredService<RedisTopicBackplane>());
        builder.Services.AddHostedService(services => services.GetRequiredService<RedisTopicBackplane>());
        builder.Services.AddHealthChecks().AddCheck<RedisBackplaneHealthCheck>("redis-backplane", HealthStatus.Degraded);

        // The cluster: a node registry, requests between nodes, and budgets shared by every node.
        builder.Services.AddSingleton<RedisWebSocketCluster>();
        builder.Services.Replace(ServiceDescriptor.Singleton<IWebSocketCluster>(services => services.GetRequiredService<RedisWebSocketCluster>()));
        builder.Services.AddHostedService(services => services.GetRequiredService<RedisWebSocketCluster>());
        builder.Services.AddSingleton<RedisClusterRateLimits>();
        builder.Services.Replace(ServiceDescriptor.Singleton<IClusterRateLimits>(services => services.GetRequiredService<RedisClusterRateLimits>()));
        builder.Services.AddHealthChecks().AddCheck<ClusterRateLimitsHealthCheck>("cluster-rate-limits", HealthStatus.Degraded);
        return builder;
    }
}
