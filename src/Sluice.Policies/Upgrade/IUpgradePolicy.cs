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
}
