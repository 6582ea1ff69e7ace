using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Sluice.Policies;

/// <summary>Policy instruments on Sluice's meter (<c>Sluice</c>).</summary>
internal static class PolicyMetrics
{
    // A static meter with the same name: listeners and the OpenTelemetry exporter select meters by name.
    private static readonly Meter s_meter = new("Sluice");

    private static readonly Counter<long> s_nonJson = s_meter.CreateCounter<long>(
        "sluice.policy.non_json", "{message}", "Non-JSON messages that reached a JSON policy, which passed them through (or, for json-schema, rejected them).");

    private static readonly ConcurrentDictionary<RateLimitPolicy, byte> s_rateLimits = new();

    private static readonly ObservableGauge<long> s_budgets = s_meter.CreateObservableGauge(
        "sluice.policy.rate_limit.budgets",
        () => s_rateLimits.Keys.Select(p => new Measurement<long>(p.BudgetCount, new KeyValuePair<string, object?>("policy", p.Name))),
        "{budget}",
        "Budgets a rate-limit policy holds: one per partition, or per partition and key value; idle ones are forgotten.");

    public static void NonJson(string policy) => s_nonJson.Add(1, new KeyValuePair<string, object?>("policy", policy));

    public static void Track(RateLimitPolicy policy)
    {
        _ = s_budgets;
        s_rateLimits.TryAdd(policy, 0);
    }

    public static void Untrack(RateLimitPolicy policy) => s_rateLimits.TryRemove(policy, out _);
}

/// <summary>The <c>http-auth</c> policy's instrument on Sluice's meter.</summary>
internal static class HttpAuthMetrics
{
    private static readonly Meter s_meter = new("Sluice");

    private static readonly Counter<long> s_decisions = s_meter.CreateCounter<long>(
        "sluice.http_auth.decisions", "{request}", "Upgrade requests an http-auth policy decided, by outcome: allowed, refused (401/403), failed (502), cached.");

    public static void Decided(string policy, string outcome) =>
        s_decisions.Add(1, new KeyValuePair<string, object?>("policy", policy), new KeyValuePair<string, object?>("outcome", outcome));
}
