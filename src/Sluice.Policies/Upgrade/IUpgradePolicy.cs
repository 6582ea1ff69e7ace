namespace Sluice.Policies;

/// <summary>
/// A check run once on the HTTP upgrade request, before any WebSocket exists: it rejects with an HTTP status
/// or lets the upgrade go on (and may set <see cref="UpgradeContext.Subject"/>). Add it with
/// <see cref="PolicyPipelineExtensions.UseUpgradePolicy"/>.
/// </summary>
public interface IUpgradePolicy
{
    /// <summary>Gets the policy's name, for logs.</summary>
    string Name { get; }

    /// <summary>Checks the upgrade request.</summary>
    ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context);

    /// <summary>Runs once the connection exists, for checks that last as long as it (a token's expiry).</summary>
    ValueTask OnConnectedAsync(WebSocketConnection connection) => default;

    /// <summary>
    /// Gets whether the policy may be evaluated again for a connection that is already open, on the request it was
    /// opened with: the gateway does so when a reload changes a route's upgrade policies, and closes the connections
    /// now refused. True for checks of credentials (keys, tokens, origins); policies that count connections or have
    /// other side effects return false, so that a re-check neither counts a connection twice nor refuses it for
    /// being counted.
    /// </summary>
    bool CanRecheck => true;
}
