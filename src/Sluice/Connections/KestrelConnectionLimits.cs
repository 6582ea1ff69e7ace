using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace Sluice;

/// <summary>
/// Caps every connection Kestrel accepts, upgraded or not, inside the process's <see cref="ConnectionBudget"/>: a
/// socket beyond it is accepted and closed at once, so that idle or half-sent connections cannot take the descriptors
/// the open WebSockets, their backends and the runtime need. Limits the app set itself are left as they are.
/// </summary>
internal sealed class KestrelConnectionLimits(ConnectionBudget budget) : IPostConfigureOptions<KestrelServerOptions>
{
    public void PostConfigure(string? name, KestrelServerOptions options)
    {
        options.Limits.MaxConcurrentConnections ??= budget.MaxPending;
        options.Limits.MaxConcurrentUpgradedConnections ??= budget.MaxUpgraded;
    }
}
