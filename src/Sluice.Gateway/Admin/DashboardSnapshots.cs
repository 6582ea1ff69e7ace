using System.Text.Json;
using Sluice.Gateway.Hosting;

namespace Sluice.Gateway.Admin;

/// <summary>Builds the dashboard's once-a-second picture and streams it as server-sent events.</summary>
internal sealed class DashboardSnapshots(
    GatewayRuntimeHolder holder,
    DashboardState state,
    OutcomeFeed feed,
    MessageTap tap,
    IWebSocketConnectionRegistry registry,
    IWebSocketTopics topics,
    IWebSocketCluster cluster,
    IHostApplicationLifetime lifetime)
{
    private const int ListedConnections = 200;
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    public (object Snapshot, long TapSequence) Create(long tapSequence)
    {
        var config = holder.Runtime!.Config;
        var tapEntries = tap.Since(tapSequence);
        var connections = registry.List();
        var snapshot = new
        {
            at = DateTimeOffset.UtcNow,
            node = cluster.NodeId,
            connections = registry.Count,
            maxConnections = registry.MaxConnections,
            routes = config.Routes.Select(route => new
            {
                route = route.Path,
                kind = route.Proxy is not null ? "proxy" : route.Handler!.Type,
                target = route.Proxy is { } proxy ? config.Secrets.Conceal(string.Join(", ", proxy.Targets ?? [proxy.Target!])) : null,
                active = connections.Count(c => c.RoutePattern == route.Path),
                rates = state.Rates().Where(r => r.Route == route.Path).Select(r => new { direction = r.Direction, rate = r.Rate, total = r.Total, history = r.History }),
                upgrade = route.Upgrade,
                inbound = route.Inbound,
                outbound = route.Outbound,
            }),
            outcomes = state.Outcomes().Select(o => new { route = o.Route, direction = o.Direction, policy = o.Policy, outcome = o.Outcome, count = o.Count }),
            recent = feed.Recent(30),
            backends = config.Routes.Where(r => r.Proxy is not null).Select(route =>
            {
                var (milliseconds, at) = state.LastBackendConnect(route.Path);
                var failure = feed.LastBackendFailure(route.Path);
                var status = failure is { } f && (at is null || f.At > at) ? "failing" : at is null ? "unknown" : "ok";
                return new { route = route.Path, target = config.Secrets.Conceal(string.Join(", ", route.Proxy!.Targets ?? [route.Proxy!.Target!])), status, lastConnectMs = milliseconds, lastConnectAt = at, lastFailure = failure?.Reason, lastFailureAt = failure?.At };
            }),
            pools = AdminEndpoints.DescribeBackends(config, holder.Runtime.Pools),
            topics = topics.GetTopics().OrderByDescending(t => t.Value).Take(50).Select(t => new { topic = t.Key, subscribers = t.Value }),
            list = connections.OrderByDescending(c => c.ConnectedAt).Take(ListedConnections).Select(c => AdminEndpoints.Describe(c, cluster.NodeId)),
            tap = new { routes = tap.EnabledRoutes(), entries = tapEntries },
        };
        return (snapshot, tapEntries.Count > 0 ? tapEntries[^1].Sequence : tapSequence);
    }

    /// <summary>Server-sent events: one snapshot a second until the browser goes away or the gateway stops.</summary>
    public async Task StreamAsync(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping);
        var tapSequence = 0L;
        try
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            do
            {
                var (snapshot, sequence) = Create(tapSequence);
                tapSequence = sequence;
                await context.Response.WriteAsync("data: ", stop.Token);
                await JsonSerializer.SerializeAsync(context.Response.Body, snapshot, s_json, stop.Token);
                await context.Response.WriteAsync("\n\n", stop.Token);
                await context.Response.Body.FlushAsync(stop.Token);
            }
            while (await timer.WaitForNextTickAsync(stop.Token));
        }
        catch (OperationCanceledException)
        {
        }
    }
}
