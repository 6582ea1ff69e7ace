namespace Sluice;

/// <summary>
/// How the process's file descriptors are shared between connections, computed once at start from the open-file
/// limit: every accepted socket, upgraded or not, and the backend socket of every proxied connection fit in it, with
/// a reserve left for the listener, log files, the backplane, outgoing HTTP (JWT keys) and accepting a socket only to
/// close it at once.
/// </summary>
/// <param name="OpenFileLimit">The soft RLIMIT_NOFILE the budget was computed from.</param>
/// <param name="Sockets">The descriptors left for sockets: the limit less the reserve and what the process held at start.</param>
/// <param name="MaxConnections">WebSocket connections at once (<see cref="SluiceOptions.MaxConnections"/>, clamped to fit).</param>
/// <param name="MaxUpgraded">Kestrel's <c>MaxConcurrentUpgradedConnections</c>: <paramref name="MaxConnections"/> and a little slack.</param>
/// <param name="MaxPending">Kestrel's <c>MaxConcurrentConnections</c>: connections not (yet) upgraded, HTTP requests and handshakes.</param>
/// <param name="Requested">An explicit <see cref="SluiceOptions.MaxConnections"/> that did not fit and was lowered; null otherwise.</param>
internal sealed record ConnectionBudget(long OpenFileLimit, long Sockets, int MaxConnections, int MaxUpgraded, int MaxPending, int? Requested)
{
    /// <summary>
    /// Shares <paramref name="openFileLimit"/> less a reserve (<c>min(1024, L/4)</c>) and the descriptors already open.
    /// A fifth at least goes to connections that have not upgraded, so that a flood of WebSockets cannot lock out the
    /// handshakes (and health checks) of everyone else; the rest to WebSockets, two descriptors each (client and
    /// backend), plus a sixteenth of slack for Kestrel, which counts an upgraded connection until its socket is
    /// closed, a moment after Sluice has released its place.
    /// </summary>
    /// <param name="openFileLimit">The soft open-file limit.</param>
    /// <param name="openNow">The descriptors the process holds already.</param>
    /// <param name="requested">An explicit <see cref="SluiceOptions.MaxConnections"/>.</param>
    /// <param name="backendSockets">Whether a WebSocket may hold a backend socket too (<see cref="SluiceOptions.HostedConnectionsOnly"/> not set).</param>
    public static ConnectionBudget Compute(long openFileLimit, long openNow, int? requested, bool backendSockets = true)
    {
        var reserve = Math.Min(1024, openFileLimit / 4);
        var sockets = Math.Clamp(openFileLimit - reserve - openNow, 8, 4_000_000);
        var pendingFloor = Math.Max(1, sockets / 5);
        // Per WebSocket: its upgraded socket with Kestrel's sixteenth of slack (17/16), and its backend's (16/16).
        var most = (int)Math.Clamp((sockets - pendingFloor - 1) * 16 / (backendSockets ? 33 : 17), 1, 1_000_000);
        var max = requested is { } r ? Math.Min(r, most) : most;
        var upgraded = max + max / 16 + 1;
        var pending = (int)Math.Clamp(sockets - (backendSockets ? max : 0) - upgraded, 1, int.MaxValue);
        return new ConnectionBudget(openFileLimit, sockets, max, upgraded, pending, requested > most ? requested : null);
    }

    /// <summary>The budget of this process, from its open-file limit now and the descriptors it holds now.</summary>
    public static ConnectionBudget ForThisProcess(int? requested, bool backendSockets) =>
        Compute(Sluice.OpenFileLimit.Read(), Sluice.OpenFileLimit.OpenNow(), requested, backendSockets);
}
