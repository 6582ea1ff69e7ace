namespace Sluice.Proxy;

/// <summary>How a <see cref="BackendPool"/> chooses the target of a new connection among its healthy targets.</summary>
public enum BackendLoadBalancing
{
    /// <summary>Each healthy target in turn.</summary>
    RoundRobin,

    /// <summary>The healthy target with the fewest open connections (ties are taken in turn).</summary>
    LeastConnections,

    /// <summary>A healthy target chosen at random.</summary>
    Random,

    /// <summary>
    /// The healthy target that a stable hash of <see cref="BackendPoolOptions.HashBy"/>'s value ranks first (rendezvous
    /// hashing): the same value goes to the same target while that target is healthy.
    /// </summary>
    Hash,
}

/// <summary>How a <see cref="BackendPool"/> spreads connections over its targets and decides which are healthy.</summary>
public sealed class BackendPoolOptions
{
    /// <summary>Gets or sets how a target is chosen. Default: <see cref="BackendLoadBalancing.RoundRobin"/>.</summary>
    public BackendLoadBalancing LoadBalancing { get; set; }

    /// <summary>
    /// Gets or sets the value that <see cref="BackendLoadBalancing.Hash"/> hashes: a template of rewrite expressions such
    /// as <c>${subject}</c> or <c>${headers.X-Tenant}</c> (see <see cref="WebSocketProxyTarget"/>). Required for hash.
    /// </summary>
    public string? HashBy { get; set; }

    /// <summary>
    /// Gets or sets after how many consecutive failures (connects or health checks) a target is unhealthy and gets no
    /// new connections; 0 turns passive health off. Default: 2. <see cref="BackendHealthCheckOptions.UnhealthyAfter"/>
    /// replaces it when active checks are on.
    /// </summary>
    public int UnhealthyAfter { get; set; } = 2;

    /// <summary>
    /// Gets or sets, without active health checks, how long a target that passive health marked unhealthy rests before it
    /// gets connections again. With active checks, only <see cref="BackendHealthCheckOptions.HealthyAfter"/> successful
    /// checks bring it back. Default: 10 seconds.
    /// </summary>
    public TimeSpan ReactivationPeriod { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the active health check; null (the default) for passive health only.</summary>
    public BackendHealthCheckOptions? HealthCheck { get; set; }
}

/// <summary>An active health check, run on every target of a pool at a fixed interval.</summary>
public sealed class BackendHealthCheckOptions
{
    /// <summary>Gets or sets the time between two checks of a target. Default: 10 seconds.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets how long a check may take before it counts as failed. Default: 2 seconds.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Gets or sets after how many consecutive failures a target is unhealthy. Default: 2.</summary>
    public int UnhealthyAfter { get; set; } = 2;

    /// <summary>Gets or sets after how many consecutive successful checks an unhealthy target is healthy again. Default: 1.</summary>
    public int HealthyAfter { get; set; } = 1;

    /// <summary>
    /// Gets or sets the path (starting with '/') of an HTTP GET on the target's host and port (<c>http</c> for
    /// <c>ws://</c>, <c>https</c> for <c>wss://</c>); any 2xx answer, read whole, is healthy. Null (the default): a
    /// WebSocket handshake to the target, its expressions empty, closed right after.
    /// </summary>
    public string? Path { get; set; }
}

/// <summary>A snapshot of one target of a <see cref="BackendPool"/>, for dashboards and admin APIs.</summary>
/// <param name="Target">The target as configured (its expressions unresolved), without its query, which may carry tokens.</param>
/// <param name="Healthy">Whether the target gets new connections.</param>
/// <param name="OpenConnections">Connections proxied to the target and still open.</param>
/// <param name="LastError">The last failure, a connect or a health check; null when none.</param>
/// <param name="LastErrorAt">When <paramref name="LastError"/> happened.</param>
/// <param name="LastCheckAt">When the last active health check finished; null without active checks.</param>
public sealed record BackendTargetState(string Target, bool Healthy, int OpenConnections, string? LastError, DateTimeOffset? LastErrorAt, DateTimeOffset? LastCheckAt);
