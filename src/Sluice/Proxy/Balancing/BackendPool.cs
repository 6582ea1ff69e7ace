using System.Net.Security;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Sluice.Proxy;

/// <summary>
/// The targets of a proxied route (<c>app.MapWebSocketProxy(pattern, pool)</c>), with load balancing, failover at
/// connect time and passive and active health. Each target is a <see cref="WebSocketProxyTarget"/> with its own
/// expressions, resolved after the target is chosen. Active health checks run in the background from the time the
/// pool's first endpoint is built until the pool is disposed; the owner of the pool disposes it (a DI singleton, or
/// the gateway when a reload removes the route). Connections already open are never moved or closed by health changes.
/// </summary>
public sealed partial class BackendPool : IAsyncDisposable
{
    private readonly BackendTarget[] _targets;
    private readonly LoadBalancingPolicy _policy;
    private readonly WebSocketProxyTarget? _hashBy;
    private readonly BackendPoolOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _startLock = new();
    private Func<Uri, SslClientAuthenticationOptions>? _tls;
    private Task? _healthChecks;
    private ITimer? _reactivation;
    private int _disposed;

    /// <summary>Creates a pool; checks every target and <see cref="BackendPoolOptions.HashBy"/> against <paramref name="routePattern"/>.</summary>
    /// <param name="routePattern">The route template the pool serves, e.g. <c>/chat/{room}</c>.</param>
    /// <param name="targets">The backend URLs, <c>ws://</c> or <c>wss://</c>, with expressions (see <see cref="WebSocketProxyTarget"/>).</param>
    /// <param name="options">Load balancing and health; null for round-robin with passive health.</param>
    /// <param name="timeProvider">The clock of health check intervals and reactivation; null for the system's.</param>
    /// <param name="loggerFactory">Where health changes are logged; null for nowhere.</param>
    /// <exception cref="FormatException">A target or HashBy is invalid.</exception>
    /// <exception cref="ArgumentException">No target, or options out of range.</exception>
    public BackendPool(string routePattern, IEnumerable<string> targets, BackendPoolOptions? options = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(routePattern);
        ArgumentNullException.ThrowIfNull(targets);
        RoutePattern route;
        try
        {
            route = RoutePatternFactory.Parse(routePattern);
        }
        catch (RoutePatternException ex)
        {
            throw new FormatException($"'{routePattern}' is not a route template: {ex.Message}", ex);
        }

        _targets = [.. targets.Select((target, i) => new BackendTarget(i, WebSocketProxyTarget.Parse(target, route)))];
        if (_targets.Length == 0)
        {
            throw new ArgumentException("a pool needs at least one target", nameof(targets));
        }

        _options = options ?? new BackendPoolOptions();
        Validate(_options);
        if (_options.LoadBalancing == BackendLoadBalancing.Hash)
        {
            _hashBy = WebSocketProxyTarget.ParseValue(_options.HashBy!, route);
        }

        RoutePattern = routePattern;
        _policy = LoadBalancingPolicy.Create(_options.LoadBalancing);
        _time = timeProvider ?? TimeProvider.System;
        _logger = loggerFactory?.CreateLogger("Sluice.Proxy.BackendPool") ?? NullLogger.Instance;
    }

    /// <summary>Gets the route template the pool was created for.</summary>
    public string RoutePattern { get; }

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal IReadOnlyList<BackendTarget> Targets => _targets;

    /// <summary>Returns each target's health, open connections and last error, in configured order.</summary>
    public IReadOnlyList<BackendTargetState> GetTargets() => [.. _targets.Select(t => t.Snapshot())];

    private static void Validate(BackendPoolOptions options)
    {
        if (options.LoadBalancing == BackendLoadBalancing.Hash && string.IsNullOrEmpty(options.HashBy))
        {
            throw new ArgumentException("hash load balancing needs HashBy, e.g. ${subject}", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(options.UnhealthyAfter, nameof(options.UnhealthyAfter));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.ReactivationPeriod, TimeSpan.Zero, nameof(options.ReactivationPeriod));
        if (options.HealthCheck is { } check)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(check.Interval, TimeSpan.Zero, nameof(check.Interval));
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(check.Timeout, TimeSpan.Zero, nameof(check.Timeout));
            ArgumentOutOfRangeException.ThrowIfLessThan(check.UnhealthyAfter, 1, nameof(check.UnhealthyAfter));
            ArgumentOutOfRangeException.ThrowIfLessThan(check.HealthyAfter, 1, nameof(check.HealthyAfter));
            if (check.Path is { } path && !path.StartsWith('/'))
            {
                throw new ArgumentException($"the health check path '{path}' must start with '/'", nameof(options));
            }
        }
    }

    private int UnhealthyAfter => _options.HealthCheck?.UnhealthyAfter ?? _options.UnhealthyAfter;

    /// <summary>
    /// Called when an endpoint using the pool is built: takes the endpoint's TLS options for health checks of
    /// <c>wss://</c> targets and starts the checks once.
    /// </summary>
    internal void Attach(Func<Uri, SslClientAuthenticationOptions>? tls)
    {
        Volatile.Write(ref _tls, tls);
        lock (_startLock)
        {
            if (IsDisposed)
            {
                return;
            }

            if (_options.HealthCheck is { } check)
            {
                _healthChecks ??= Task.Run(() => RunHealthChecksAsync(check, _stopping.Token));
            }
            else if (UnhealthyAfter > 0)
            {
                // Without checks, a target that failed rests for the reactivation period, then is tried again.
                var tick = _options.ReactivationPeriod / 4 < TimeSpan.FromSeconds(1) ? _options.ReactivationPeriod / 4 : TimeSpan.FromSeconds(1);
                _reactivation ??= _time.CreateTimer(static state => ((BackendPool)state!).ReactivateRested(), this, tick, tick);
            }
        }
    }

    /// <summary>
    /// Orders the healthy targets for one connection (first choice first, then the failover order); empty when none is
    /// healthy.
    /// </summary>
    internal BackendTarget[] Order(UpgradeContext upgrade)
    {
        var healthy = _targets.Where(t => t.IsHealthy).ToArray();
        if (healthy.Length > 0)
        {
            _policy.Order(healthy, _hashBy?.ResolveValue(upgrade));
        }

        return healthy;
    }

    /// <summary>The number of targets that are not healthy now.</summary>
    internal int UnhealthyCount => _targets.Count(t => !t.IsHealthy);

    internal void ReportConnectFailure(BackendTarget target, string error)
    {
        if (target.RecordFailure(error, _time.GetUtcNow(), _time.GetTimestamp(), UnhealthyAfter, isCheck: false))
        {
            Log.TargetUnhealthy(_logger, target.Display, RoutePattern, error);
        }
    }

    internal void ReportConnected(BackendTarget target) =>

        // A connect cannot make an unhealthy target healthy (it gets none); it only resets the failure count.
        target.RecordSuccess(_time.GetUtcNow(), int.MaxValue, isCheck: false);

    private void ReactivateRested()
    {
        foreach (var target in _targets)
        {
            if (!target.IsHealthy && _time.GetElapsedTime(target.UnhealthySince) >= _options.ReactivationPeriod && target.Reactivate())
            {
                Log.TargetReactivated(_logger, target.Display, RoutePattern, _options.ReactivationPeriod.TotalSeconds);
            }
        }
    }

    /// <summary>Stops the health checks and waits for the one running to end; open connections are not affected.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Task? checks;
        lock (_startLock)
        {
            checks = _healthChecks;
            _reactivation?.Dispose();
        }

        await _stopping.CancelAsync();
        if (checks is not null)
        {
            await checks.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(310, LogLevel.Warning, "Backend {Target} of {Route} is unhealthy and gets no new connections: {Reason}")]
        public static partial void TargetUnhealthy(ILogger logger, string target, string route, string reason);

        [LoggerMessage(311, LogLevel.Information, "Backend {Target} of {Route} is healthy again after {Successes} successful health checks")]
        public static partial void TargetHealthy(ILogger logger, string target, string route, int successes);

        [LoggerMessage(312, LogLevel.Information, "Backend {Target} of {Route} gets connections again after resting {Seconds} s")]
        public static partial void TargetReactivated(ILogger logger, string target, string route, double seconds);

        [LoggerMessage(313, LogLevel.Error, "Health check of {Route} failed unexpectedly")]
        public static partial void HealthCheckCrashed(ILogger logger, Exception exception, string route);
    }
}
