namespace Sluice;

/// <summary>
/// Budgets shared by every node of a cluster, counted in a store all nodes reach (Redis, with
/// <c>AddRedisBackplane</c>). The rate-limit policies of Sluice.Policies use it for <c>"scope": "cluster"</c>.
/// </summary>
/// <remarks>
/// A method returns null when the shared store cannot answer now (unreachable, or too slow): the caller then counts
/// on its own node, so a cluster limit degrades to a per-node one and never blocks or lets everything through.
/// </remarks>
public interface IClusterRateLimits
{
    /// <summary>
    /// Takes one token from the shared token bucket <paramref name="key"/>, which holds at most
    /// <paramref name="tokenLimit"/> tokens and gains <paramref name="tokensPerPeriod"/> every <paramref name="period"/>.
    /// </summary>
    /// <returns>Whether a token was taken; null when the shared store cannot answer.</returns>
    ValueTask<bool?> TryAcquireTokenAsync(string key, int tokenLimit, int tokensPerPeriod, TimeSpan period, CancellationToken cancellationToken = default);

    /// <summary>Counts one event in the shared fixed window <paramref name="key"/> of <paramref name="window"/>, allowing <paramref name="permits"/> per window.</summary>
    /// <returns>Whether the event is within the budget; null when the shared store cannot answer.</returns>
    ValueTask<bool?> TryAcquireWindowAsync(string key, int permits, TimeSpan window, CancellationToken cancellationToken = default);
}
