using Microsoft.Extensions.Logging;
using Sluice.Gateway.Configuration;
using Sluice.Gateway.Configuration.Model;
using Sluice.Proxy;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// The backend pool of every proxy route, by route path. A reload keeps a route's pool (its health, counters and
/// checks) when the route's path, targets, balancing and health settings are unchanged, creates a new one otherwise,
/// and disposes the pools no route uses any more, which stops their health checks. Connections already open keep
/// counting against the pool they were opened on.
/// </summary>
internal sealed class ProxyPools(TimeProvider time, ILoggerFactory loggerFactory) : IAsyncDisposable
{
    private Dictionary<string, (string Fingerprint, BackendPool Pool)> _pools = new(StringComparer.OrdinalIgnoreCase);
    private readonly Lock _lock = new();

    /// <summary>The current pools, by route path, for the admin API and the dashboard.</summary>
    public IReadOnlyDictionary<string, BackendPool> Current
    {
        get
        {
            lock (_lock)
            {
                return _pools.ToDictionary(p => p.Key, p => p.Value.Pool, StringComparer.OrdinalIgnoreCase);
            }
        }
    }

    /// <summary>Returns the pools of <paramref name="routes"/>, and the pools they replace, to be disposed once the new endpoints are live.</summary>
    public (IReadOnlyDictionary<string, BackendPool> Pools, List<BackendPool> Retired) Update(IReadOnlyList<RouteConfig> routes)
    {
        lock (_lock)
        {
            var next = new Dictionary<string, (string, BackendPool)>(StringComparer.OrdinalIgnoreCase);
            foreach (var route in routes)
            {
                if (route.Proxy is not { } proxy)
                {
                    continue;
                }

                var fingerprint = Fingerprint(route.Path, proxy);
                next[route.Path] = _pools.TryGetValue(route.Path, out var running) && running.Fingerprint == fingerprint
                    ? running
                    : (fingerprint, Create(route.Path, proxy));
            }

            var retired = _pools.Values.Where(old => !next.Values.Any(kept => ReferenceEquals(kept.Item2, old.Pool))).Select(old => old.Pool).ToList();
            _pools = next;
            return (next.ToDictionary(p => p.Key, p => p.Value.Item2, StringComparer.OrdinalIgnoreCase), retired);
        }
    }

    private BackendPool Create(string routePath, ProxyModel proxy)
    {
        var targets = proxy.Targets ?? [proxy.Target!];
        var options = new BackendPoolOptions
        {
            LoadBalancing = proxy.LoadBalancing switch
            {
                "least-connections" => BackendLoadBalancing.LeastConnections,
                "random" => BackendLoadBalancing.Random,
                "hash" => BackendLoadBalancing.Hash,
                _ => BackendLoadBalancing.RoundRobin,
            },
            HashBy = proxy.HashBy,

            // A single target has nowhere to fail over to: without active checks, passive health would only turn a
            // backend's short outage into a longer one, so it is off (the route behaves as before pools existed).
            UnhealthyAfter = targets.Count > 1 || proxy.HealthCheck is not null ? 2 : 0,
            HealthCheck = proxy.HealthCheck is { } check
                ? new BackendHealthCheckOptions
                {
                    Interval = TimeSpan.FromSeconds(check.IntervalSeconds),
                    Timeout = TimeSpan.FromMilliseconds(check.TimeoutMs),
                    UnhealthyAfter = check.UnhealthyAfter,
                    HealthyAfter = check.HealthyAfter,
                    Path = check.Path,
                }
                : null,
        };
        return new BackendPool(routePath, targets, options, time, loggerFactory);
    }

    private static string Fingerprint(string routePath, ProxyModel proxy) =>
        string.Join('\n', [routePath, .. proxy.Targets ?? [proxy.Target!], proxy.LoadBalancing, proxy.HashBy ?? string.Empty, proxy.HealthCheck?.ToString() ?? string.Empty]);

    public async ValueTask DisposeAsync()
    {
        List<BackendPool> pools;
        lock (_lock)
        {
            pools = [.. _pools.Values.Select(p => p.Pool)];
            _pools = new(StringComparer.OrdinalIgnoreCase);
        }

        foreach (var pool in pools)
        {
            await pool.DisposeAsync();
        }
    }
}
