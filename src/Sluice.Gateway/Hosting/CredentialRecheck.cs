using System.Net.WebSockets;
using Microsoft.AspNetCore.Routing;
using Sluice.Gateway.Configuration;
using Sluice.Policies;

namespace Sluice.Gateway.Hosting;

/// <summary>
/// After a reload, checks the open connections of every route whose upgrade policies changed (one removed, added or
/// given new options: a key removed, an origin no longer allowed, a JWT key rotated) against the new ones, with the
/// request each connection was opened with; those now refused are closed with 1008 <c>credentials revoked</c>.
/// </summary>
/// <remarks>
/// Nothing is kept for this beyond what every connection already holds for its whole life (its request's headers,
/// query, route values and client address, on <see cref="WebSocketConnection"/>): the request is rebuilt only during the
/// check. Policies that count connections (<see cref="IUpgradePolicy.CanRecheck"/> false) are skipped, so the
/// check counts nothing twice.
/// </remarks>
internal static partial class CredentialRecheck
{
    public const string Reason = "credentials revoked";

    public static void Start(GatewayConfig previous, GatewayConfig current, IServiceProvider services, ILogger logger)
    {
        var before = previous.Routes.ToDictionary(r => r.Path, StringComparer.OrdinalIgnoreCase);
        foreach (var route in current.Routes)
        {
            if (!before.TryGetValue(route.Path, out var old))
            {
                continue;
            }

            var policies = UpgradePolicies(route, current);
            if (policies.SequenceEqual(UpgradePolicies(old, previous), ReferenceEqualityComparer.Instance))
            {
                continue;
            }

            var checkable = policies.Where(p => p.CanRecheck).ToArray();
            _ = Task.Run(() => RunAsync(route.Path, checkable, services, logger));
        }
    }

    /// <summary>Checks every open connection of <paramref name="route"/>; returns how many were closed.</summary>
    public static async Task<int> RunAsync(string route, IReadOnlyList<IUpgradePolicy> policies, IServiceProvider services, ILogger logger)
    {
        var open = services.GetRequiredService<IWebSocketConnectionRegistry>().List(route);
        var closed = 0;
        foreach (var connection in open)
        {
            if (!connection.IsClosing && await IsRefusedAsync(connection, policies, services, logger))
            {
                closed++;

                // Not awaited: the close handshake of one connection does not hold up the check of the next.
                _ = connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, Reason);
            }
        }

        Log.Rechecked(logger, route, open.Count, closed);
        return closed;
    }

    private static async ValueTask<bool> IsRefusedAsync(WebSocketConnection connection, IReadOnlyList<IUpgradePolicy> policies, IServiceProvider services, ILogger logger)
    {
        if (policies.Count == 0)
        {
            return false;
        }

        // A copy of the request as the connection saw it: the policies may set the user or response headers.
        var http = new DefaultHttpContext { RequestServices = services };
        foreach (var (name, value) in connection.RequestHeaders)
        {
            http.Request.Headers[name] = value;
        }

        http.Request.Query = connection.Query;
        http.Request.RouteValues = new RouteValueDictionary(connection.RouteValues);
        http.Connection.RemoteIpAddress = connection.RemoteIpAddress;
        var upgrade = new UpgradeContext(http, connection.RoutePattern);
        foreach (var policy in policies)
        {
            UpgradeResult result;
            try
            {
                result = await policy.EvaluateAsync(upgrade);
            }
            catch (Exception ex)
            {
                // A policy that fails here cannot say the credentials were revoked: the connection stays.
                Log.RecheckFailed(logger, ex, policy.Name, connection.Id);
                return false;
            }

            if (result.IsRejected)
            {
                return true;
            }

            if (result.HasData)
            {
                upgrade.Data = result.Data;
            }
        }

        return false;
    }

    private static List<IUpgradePolicy> UpgradePolicies(RouteConfig route, GatewayConfig config) =>
        [.. route.Upgrade.Select(name => (IUpgradePolicy)config.Policies[name].Policy)];

    private static partial class Log
    {
        [LoggerMessage(520, LogLevel.Information, "Upgrade policies of route {Route} changed: {Open} open connections re-checked, {Closed} closed with 1008 credentials revoked.")]
        public static partial void Rechecked(ILogger logger, string route, int open, int closed);

        [LoggerMessage(521, LogLevel.Warning, "Re-checking connection {ConnectionId} with upgrade policy {Policy} failed; the connection stays open.")]
        public static partial void RecheckFailed(ILogger logger, Exception exception, string policy, string connectionId);
    }
}
