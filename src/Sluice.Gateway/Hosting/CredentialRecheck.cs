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

            // An upgrade that passed the old policies may still be connecting to its backend when the first pass lists
            // the open connections; a second pass, once such an upgrade has had its connect timeout, checks the
            // connections the first did not see.
            var settle = TimeSpan.FromMilliseconds((old.Proxy?.ConnectTimeoutMs ?? 0) + 1000);
            _ = Task.Run(async () =>
            {
                var seen = await RunAsync(route.Path, checkable, services, logger, skip: null);
                await Task.Delay(settle);
                await RunAsync(route.Path, checkable, services, logger, skip: seen);
            });
        }
    }

    /// <summary>
    /// Checks the open connections of <paramref name="route"/>, except those in <paramref name="skip"/>; returns the ids
    /// of those it checked.
    /// </summary>
    public static async Task<HashSet<string>> RunAsync(string route, IReadOnlyList<IUpgradePolicy> policies, IServiceProvider services, ILogger logger, HashSet<string>? skip)
    {
        var open = services.GetRequiredService<IWebSocketConnectionRegistry>().List(route);
        var checkedIds = new HashSet<string>(StringComparer.Ordinal);
        var closed = 0;
        foreach (var connection in open)
        {
            if (skip is not null && skip.Contains(connection.Id))
            {
                continue;
            }

            checkedIds.Add(connection.Id);
            if (!connection.IsClosing && await IsRefusedAsync(connection, policies, services, logger))
            {
                closed++;

                // Not awaited: the close handshake of one connection does not hold up the check of the next.
                _ = connection.CloseAsync(WebSocketCloseStatus.PolicyViolation, Reason);
            }
        }

        // The second pass is quiet unless it found something: it usually sees only connections opened under the new policies.
        if (skip is null || closed > 0)
        {
            Log.Rechecked(logger, route, checkedIds.Count, closed);
        }

        return checkedIds;
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

        // Policies that decide by path (http-auth sends it to its service) must see the path the connection opened.
        http.Request.Path = connection.RequestPath;
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
