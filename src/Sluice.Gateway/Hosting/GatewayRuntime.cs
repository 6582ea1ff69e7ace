using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Sluice.Gateway.Admin;
using Microsoft.Extensions.Primitives;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Integrations;
using Sluice.Policies;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// The running configuration: maps its routes onto Sluice endpoints, and on a change of the file, validates the
/// new one and applies it without dropping a connection. Per-message policies live in one
/// <see cref="ReloadableInterceptors"/> per route path, so open connections run the new policies from their next
/// message; new connections also get the new upgrade policies, target and limits.
/// </summary>
internal sealed partial class GatewayRuntime : IDisposable
{
    private readonly GatewayEndpointDataSource _endpoints = new();
    private readonly Dictionary<string, ReloadableInterceptors> _routePolicies = new(StringComparer.OrdinalIgnoreCase);
    private readonly Lock _reloadLock = new();
    private readonly ILogger _logger;
    private IServiceProvider? _services;
    private ConnectionLimitPolicy? _perIpCap;
    private ProxyPools? _pools;
    private IDisposable? _watch;
    private Timer? _debounce;

    public GatewayRuntime(GatewayConfig config, string? configPath, ILoggerFactory loggerFactory)
    {
        Config = config;
        ConfigPath = configPath;
        _logger = loggerFactory.CreateLogger("Sluice.Gateway");
    }

    public GatewayConfig Config { get; private set; }

    public string? ConfigPath { get; }

    public GatewayEndpointDataSource Endpoints => _endpoints;

    /// <summary>The backend pool of each proxy route, by route path.</summary>
    public IReadOnlyDictionary<string, Sluice.Proxy.BackendPool> Pools => _pools?.Current ?? new Dictionary<string, Sluice.Proxy.BackendPool>();

    /// <summary>Maps the configuration's routes, and starts watching the file.</summary>
    public void Start(IServiceProvider services)
    {
        _services = services;
        if (Config.Limits.MaxConnectionsPerIp is { } perIp)
        {
            // One count across every route, kept for the process's life (the setting is read at start).
            _perIpCap = new ConnectionLimitPolicy(new ConnectionLimitPolicyOptions { Max = perIp }, "limits.maxConnectionsPerIp");
        }

        _pools = new ProxyPools(services.GetService<TimeProvider>() ?? TimeProvider.System, services.GetRequiredService<ILoggerFactory>());
        Apply(Config);
        if (ConfigPath is not null)
        {
            var full = Path.GetFullPath(ConfigPath);
            var provider = new PhysicalFileProvider(Path.GetDirectoryName(full)!);
            _watch = ChangeToken.OnChange(() => provider.Watch(Path.GetFileName(full)), OnFileChanged);
            _debounce = new Timer(_ => Reload(), null, Timeout.Infinite, Timeout.Infinite);
        }
    }

    /// <summary>Loads the file again; applies it if it is valid, logs every error and keeps running otherwise.</summary>
    public bool Reload()
    {
        if (ConfigPath is null || _services is null)
        {
            return false;
        }

        lock (_reloadLock)
        {
            var result = ConfigLoader.Load(ConfigPath, _services, Config.Policies);
            if (!result.IsValid)
            {
                Log.ReloadRejected(_logger, ConfigPath, result.Errors.Count, string.Join(Environment.NewLine, result.Errors));
                return false;
            }

            var previous = Config;
            foreach (var setting in StartOnlyChanges(previous, result.Config!))
            {
                Log.RestartNeeded(_logger, setting);
            }

            Apply(result.Config!);
            ConfigLoader.DisposeNew(previous.Policies.Values, result.Config!.Policies);
            Log.Reloaded(_logger, ConfigPath, result.Config!.Routes.Count, result.Config.Policies.Count);
            return true;
        }
    }

    /// <summary>The settings read only at start: a reload that changes them applies the rest and says so.</summary>
    private static IEnumerable<string> StartOnlyChanges(GatewayConfig before, GatewayConfig after)
    {
        if (!before.Listen.SequenceEqual(after.Listen))
        {
            yield return "listen";
        }

        if (before.Limits.MaxConnections != after.Limits.MaxConnections)
        {
            yield return "limits.maxConnections";
        }

        if (before.Limits.MaxConnectionsPerIp != after.Limits.MaxConnectionsPerIp)
        {
            yield return "limits.maxConnectionsPerIp";
        }

        if (before.Limits.DrainSeconds != after.Limits.DrainSeconds)
        {
            yield return "limits.drainSeconds";
        }

        if (before.Admin.Path != after.Admin.Path)
        {
            yield return "admin.path";
        }

        if (before.Backplane != after.Backplane)
        {
            yield return "backplane";
        }
    }

    public void Dispose()
    {
        _watch?.Dispose();
        _debounce?.Dispose();

        // Stops every pool's health checks; bounded, because a check ends within its timeout once cancelled.
        _pools?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
        foreach (var policy in Config.Policies.Values)
        {
            (policy.Policy as IDisposable)?.Dispose();
        }
    }

    private void OnFileChanged() =>

        // Editors write a file in several steps; act once it has been quiet for a moment.
        _debounce?.Change(TimeSpan.FromMilliseconds(250), Timeout.InfiniteTimeSpan);

    private void Apply(GatewayConfig config)
    {
        foreach (var route in config.Routes)
        {
            if (_routePolicies.TryGetValue(route.Path, out var policies))
            {
                policies.Reload(p => AddMessagePolicies(p, route, config));
            }
            else
            {
                _routePolicies[route.Path] = new ReloadableInterceptors(p => AddMessagePolicies(p, route, config));
            }
        }

        var previous = Config;
        Config = config;
        _services!.GetService<ClientAddresses>()?.Update(config.TrustedProxies);
        _services!.GetService<Tls.ListenerCertificate>()?.Use(config);
        var tap = _services!.GetService<MessageTap>();
        var perIpCap = _perIpCap;
        var (pools, retired) = _pools!.Update(config.Routes);
        _endpoints.Update(_services!, endpoints =>
        {
            foreach (var route in config.Routes)
            {
                Map(endpoints, route, config, _routePolicies[route.Path], tap?.For(route.Path), perIpCap, pools);
            }
        });

        if (!ReferenceEquals(previous, config))
        {
            // After the new endpoints are in place, so that no connection opened from now on escapes the new policies.
            CredentialRecheck.Start(previous, config, _services!, _logger);
        }

        // New connections now use the new pools: the old ones' health checks stop (their open connections stay).
        foreach (var pool in retired)
        {
            _ = pool.DisposeAsync().AsTask();
        }
    }

    private static void Map(Microsoft.AspNetCore.Routing.IEndpointRouteBuilder endpoints, RouteConfig route, GatewayConfig config, ReloadableInterceptors policies, MessageTap.RouteTap? tap, IUpgradePolicy? perIpCap, IReadOnlyDictionary<string, Sluice.Proxy.BackendPool> pools)
    {
        var webhooks = route.Events is null ? null : endpoints.ServiceProvider.GetRequiredService<LifecycleWebhooks>();
        if (route.Proxy is { } proxy)
        {
            endpoints.MapWebSocketProxy(route.Path, pools[route.Path], p =>
            {
                Configure(p, route, config, policies, tap, perIpCap);
                webhooks?.Attach(p, route.Path, route.Events!);
                p.ConnectTimeout = TimeSpan.FromMilliseconds(proxy.ConnectTimeoutMs);
                p.EnableBackendCompression = proxy.Compression;
                p.BackendTls = route.BackendTls;
                foreach (var header in proxy.ForwardHeaders)
                {
                    p.ForwardHeaders.Add(header);
                }
            });
            return;
        }

        var handler = route.Handler!;
        endpoints.MapWebSocket(route.Path, ws =>
        {
            Configure(ws, route, config, policies, tap, perIpCap);
            webhooks?.Attach(ws, route.Path, route.Events!);
            handler.Map(ws);
        });
    }

    private static void Configure(WebSocketPipelineBuilder builder, RouteConfig route, GatewayConfig config, ReloadableInterceptors policies, MessageTap.RouteTap? tap, IUpgradePolicy? perIpCap)
    {
        var limits = config.Limits;
        builder.ConfigureOptions(o =>
        {
            o.MaxMessageBytes = limits.MaxMessageBytes;
            o.IdleTimeout = limits.IdleTimeoutSeconds > 0 ? TimeSpan.FromSeconds(limits.IdleTimeoutSeconds) : Timeout.InfiniteTimeSpan;
            o.KeepAliveInterval = TimeSpan.FromSeconds(limits.KeepAliveSeconds);
            o.CloseTimeout = TimeSpan.FromSeconds(limits.CloseTimeoutSeconds);
            o.EnableCompression = route.Compression;
            o.Streaming = route.Stream is { } stream ? new WebSocketStreamingOptions { AboveBytes = stream.AboveBytes, MaxBytes = stream.MaxBytes } : null;
        });

        // The per-address cap first: a client over it is refused before its credentials are looked at.
        if (perIpCap is not null)
        {
            builder.UseUpgradePolicy(perIpCap);
        }

        foreach (var name in route.Upgrade)
        {
            builder.UseUpgradePolicy((IUpgradePolicy)config.Policies[name].Policy);
        }

        // The tap sees messages as the policies leave them, both ways: outbound interceptors run in reverse order of
        // registration, so its outbound side is registered first (runs last) and its inbound side last (runs last).
        if (tap is not null)
        {
            builder.Use(tap).WithName("tap").OutboundOnly().HandlesFragments();
        }

        builder.Use(policies);
        if (tap is not null)
        {
            builder.Use(tap).WithName("tap").InboundOnly().HandlesFragments();
        }
    }

    private static void AddMessagePolicies(WebSocketPipelineBuilder builder, RouteConfig route, GatewayConfig config)
    {
        foreach (var name in route.Inbound)
        {
            var policy = config.Policies[name];
            builder.UsePolicy((IMessageInterceptor)policy.Policy, policy.When).WithName(name).InboundOnly();
        }

        // Sluice runs outbound interceptors in reverse order of registration (the first added is the outermost
        // layer both ways); the file's outbound list runs in its written order, so it is registered backwards.
        for (var i = route.Outbound.Count - 1; i >= 0; i--)
        {
            var policy = config.Policies[route.Outbound[i]];
            builder.UsePolicy((IMessageInterceptor)policy.Policy, policy.When).WithName(route.Outbound[i]).OutboundOnly();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(500, LogLevel.Information, "Configuration {Path} reloaded: {Routes} routes, {Policies} policies. Open connections use the new policies from their next message.")]
        public static partial void Reloaded(ILogger logger, string path, int routes, int policies);

        [LoggerMessage(502, LogLevel.Warning, "Configuration change to {Setting} takes effect when the gateway restarts; the rest of the change is applied.")]
        public static partial void RestartNeeded(ILogger logger, string setting);

        [LoggerMessage(501, LogLevel.Error, "Configuration change in {Path} rejected (errors: {Count}); the running configuration stays:\n{Errors}")]
        public static partial void ReloadRejected(ILogger logger, string path, int count, string errors);
    }
}
