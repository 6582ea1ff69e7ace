using System.Diagnostics.Metrics;

namespace Sluice.Policies;

/// <summary>Policy instruments on Sluice's meter (<c>Sluice</c>).</summary>
internal static class PolicyMetrics
{
    // A static meter with the same name: listeners and the OpenTelemetry exporter select meters by name.
    private static readonly Meter s_meter = new("Sluice");

    private static readonly Counter<long> s_nonJson = s_meter.CreateCounter<long>(
        "sluice.policy.non_json", "{message}", "Non-JSON messages that reached a JSON policy, which passed them through (or, for json-schema, rejected them).");

    public static void NonJson(string policy) => s_nonJson.Add(1, new KeyValuePair<string, object?>("policy", policy));
}
