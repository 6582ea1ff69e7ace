using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Sluice.Gateway.Integrations;

/// <summary>The instruments of webhooks and HTTP routes, on Sluice's meter (<c>Sluice</c>), exported at <c>/metrics</c>.</summary>
internal static class IntegrationMetrics
{
    private static readonly Meter s_meter = new(SluiceDiagnostics.MeterName);

    private static readonly Counter<long> s_delivered = s_meter.CreateCounter<long>(
        "sluice.webhooks.delivered", "{event}", "Lifecycle events the service accepted (2xx), by route.");

    private static readonly Counter<long> s_dropped = s_meter.CreateCounter<long>(
        "sluice.webhooks.dropped", "{event}", "Lifecycle events not delivered, by route and reason: queue_full, gave_up (a minute of retries), refused (a 4xx answer), shutdown.");

    private static readonly Counter<long> s_httpRoute = s_meter.CreateCounter<long>(
        "sluice.http_route.requests", "{request}", "Messages an http handler POSTed, by route and outcome: ok, status, timeout, unreachable, too_large, not_utf8, busy.");

    private static readonly ConcurrentDictionary<LifecycleWebhooks, byte> s_webhooks = new();

    private static readonly ObservableGauge<long> s_waiting = s_meter.CreateObservableGauge(
        "sluice.webhooks.queued",
        () => s_webhooks.Keys.SelectMany(w => w.Waiting).Select(q => new Measurement<long>(q.Count, new KeyValuePair<string, object?>("route", q.Route))),
        "{event}",
        "Lifecycle events waiting for delivery, by route.");

    public static void WebhookDelivered(string route) => s_delivered.Add(1, new KeyValuePair<string, object?>("route", route));

    public static void WebhookDropped(string route, string reason, long count) =>
        s_dropped.Add(count, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("reason", reason));

    public static void HttpRouteRequest(string route, string outcome) =>
        s_httpRoute.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("outcome", outcome));

    public static void Track(LifecycleWebhooks webhooks)
    {
        _ = s_waiting;
        s_webhooks.TryAdd(webhooks, 0);
    }

    public static void Untrack(LifecycleWebhooks webhooks) => s_webhooks.TryRemove(webhooks, out _);
}
