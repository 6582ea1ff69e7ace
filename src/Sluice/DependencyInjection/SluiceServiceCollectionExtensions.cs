using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Sluice;
using Sluice.Diagnostics;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Sluice's services.</summary>
public static class SluiceServiceCollectionExtensions
{
    /// <summary>
    /// Adds the services Sluice's WebSocket endpoints need: the connection registry, the keep-alive monitor,
    /// the message context accessor and metrics. Call it once; later calls only add configuration.
    /// </summary>
    /// <remarks>
    /// It also caps the connections Kestrel accepts (<c>KestrelServerLimits.MaxConcurrentConnections</c> and
    /// <c>MaxConcurrentUpgradedConnections</c>, where the app left them unset) inside a share of the process's
    /// open-file limit, so that the process never runs out of file descriptors: see docs/configuration.md, limits.
    /// </remarks>
    public static ISluiceBuilder AddSluice(this IServiceCollection services, Action<SluiceOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);

        services.AddOptions<SluiceOptions>();
        if (configure is not null)
        {
            services.Configure(configure);
        }

        services.AddMetrics();
        // The clock of the connection timers (keep-alive, idle and close timeouts); an app or a test may register its own.
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<SluiceMetrics>();
        services.TryAddSingleton<Sluice.Proxy.ProxyMetrics>();
        services.TryAddSingleton(static sp =>
        {
            var options = sp.GetRequiredService<IOptions<SluiceOptions>>().Value;
            var budget = ConnectionBudget.ForThisProcess(options.MaxConnections, backendSockets: !options.HostedConnectionsOnly);
            if (budget.Requested is { } requested)
            {
                var logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("Sluice.Hosting");
                SluiceLog.MaxConnectionsLowered(logger, requested, budget.OpenFileLimit, budget.MaxConnections);
            }

            return budget;
        });
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<KestrelServerOptions>, KestrelConnectionLimits>());
        services.TryAddSingleton<WebSocketConnectionRegistry>();
        services.TryAddSingleton<RejectionLogThrottle>();
        services.TryAddSingleton<IWebSocketConnectionRegistry>(static sp => sp.GetRequiredService<WebSocketConnectionRegistry>());
        services.TryAddSingleton<IMessageContextAccessor, MessageContextAccessor>();
        // The cluster of this node alone; AddRedisBackplane replaces it with every node on the same Redis.
        services.TryAddSingleton<ClusterRequestHandlers>();
        services.TryAddSingleton<LocalWebSocketCluster>();
        services.TryAddSingleton<IWebSocketCluster>(static sp => sp.GetRequiredService<LocalWebSocketCluster>());
        services.TryAddSingleton<IWebSocketUsers, WebSocketUsers>();
        services.AddOptions<TopicOptions>();
        services.TryAddSingleton<Sluice.Topics.TopicBus>();
        services.TryAddSingleton<IWebSocketTopics>(static sp => sp.GetRequiredService<Sluice.Topics.TopicBus>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, ConnectionMonitor>());
        return new SluiceBuilder(services);
    }

    /// <summary>Registers a converter of handler results for every hosted endpoint.</summary>
    public static ISluiceBuilder AddResultConverter<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TConverter>(this ISluiceBuilder builder)
        where TConverter : class, IWebSocketResultConverter
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IWebSocketResultConverter, TConverter>());
        return builder;
    }

    /// <summary>
    /// Registers a per-connection feature for every WebSocket endpoint of the app:
    /// <c>connection.Feature&lt;TFeature&gt;()</c> creates it on first use. A group or an
    /// endpoint that registers the same type overrides the factory for its connections.
    /// </summary>
    public static ISluiceBuilder AddConnectionFeature<TFeature>(this ISluiceBuilder builder, Func<WebSocketConnection, TFeature> factory)
        where TFeature : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.Configure<SluiceOptions>(options => options.Features.Add((FeatureSlots.Of<TFeature>(), factory)));
        return builder;
    }

    private sealed class SluiceBuilder(IServiceCollection services) : ISluiceBuilder
    {
        public IServiceCollection Services { get; } = services;
    }
}

/// <summary>Returned by <c>AddSluice()</c>, for chaining further Sluice registrations (a backplane, converters).</summary>
public interface ISluiceBuilder
{
    /// <summary>Gets the service collection.</summary>
    IServiceCollection Services { get; }
}
