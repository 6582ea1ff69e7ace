using System.Reflection;

namespace Sluice.Gateway.Tests.Infrastructure;

/// <summary>
/// What the built gateway's pub/sub handler supports. History (offsets, epochs, <c>since</c>) and presence came in the
/// second release; tests of the clients' recovery and presence are skipped, with the reason, against a gateway without them.
/// </summary>
public static class GatewayFeatures
{
    /// <summary>The pubsub handler keeps history and presence (<c>PubSubProtocolOptions.History</c> exists).</summary>
    public static bool PubSubHistory { get; } = typeof(Sluice.TopicOptions).Assembly
        .GetType("Sluice.PubSubProtocolOptions")?.GetProperty("History", BindingFlags.Public | BindingFlags.Instance) is not null;

    public const string NoHistory = "the gateway's pubsub handler has no history/presence yet (Sluice.PubSubProtocolOptions.History is absent): " +
        "this test runs once the pubsub history/presence work (branch r2/pubsub) is merged";
}

/// <summary>A fact that needs the pubsub handler's history and presence; skipped, with the reason, without them.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PubSubHistoryFactAttribute : FactAttribute
{
    public PubSubHistoryFactAttribute()
    {
        if (!GatewayFeatures.PubSubHistory)
        {
            Skip = GatewayFeatures.NoHistory;
        }
    }
}
