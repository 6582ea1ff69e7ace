using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice.Proxy;

/// <summary>
/// The request handler of a proxied endpoint: upgrade steps, then the backend handshake, and only once the
/// backend has accepted, the client's; then the connection runs.
/// </summary>
internal sealed class ProxyEndpoint : RouteEndpoint
{
    public const string SubjectHeader = WebSocketProxyHeaders.Subject;

    public static bool IsReservedHeader(string header) => !WebSocketProxyHeaders.CanForward(header);

    public static string WithoutQuery(Uri backendUri) => WebSocketProxyUrls.WithoutQuery(backendUri);

    private readonly WebSocketProxyBuilder _builder;
    private readonly WebSocketProxyTarget? _target;
    private readonly Func<HttpContext, ValueTask<Uri>>? _targetSelector;
    private readonly BackendPool? _pool;
    private ProxyMetrics? _metrics;

    public ProxyEndpoint(string pattern, WebSocketProxyBuilder builder, string? target, Func<HttpContext, ValueTask<Uri>>? targetSelector, BackendPool? pool = null)
        : base(pattern, builder, "Sluice.Proxy")
    {
        _builder = builder;
        _targetSelector = targetSelector;
        _pool = pool;
        if (pool is not null)
        {
            // The pool's targets were parsed against its own pattern: they must also fit this route's parameters.
            foreach (var pooled in pool.Targets)
            {
                WebSocketProxyTarget.Parse(pooled.Template.Pattern, RoutePatternFactory.Parse(pattern));
            }

            // Health checks start with the mapping, not with the first request that builds the endpoint.
            pool.Attach(builder.BackendTls);
        }

        if (target is not null)
        {
            // Checked now, so that a bad target fails at startup rather than on the first connection.
            _target = WebSocketProxyTarget.Parse(target, RoutePatternFactory.Parse(pattern));
        }

        foreach (var header in builder.ForwardHeaders)
        {
            if (IsReservedHeader(header))
            {
                throw new InvalidOperationException($"{pattern}: the header '{header}' is set by the proxy itself and cannot be forwarded.");
            }
        }
    }

    protected override void OnBuilding(IServiceProvider services)
    {
        _metrics = services.GetRequiredService<ProxyMetrics>();
        if (_pool is not null)
        {
            _metrics.Track(_pool);
        }
    }

    protected override async Task RunUpgradedAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, Activity? activity)
    {
        BackendConnection? backend = null;
        try
        {
            if (_pool is not null)
            {
                PooledBackend? chosen;
                try
                {
                    chosen = await ConnectPooledAsync(httpContext, route, upgrade, _pool);
                }
                catch (FormatException ex)
                {
                    await route.RejectAsync(httpContext, StatusCodes.Status400BadRequest, $"The request cannot be proxied: {ex.Message}.");
                    return;
                }

                if (chosen is not { } found)
                {
                    return;
                }

                // Counted from the backend's handshake to the end of the connection: what least-connections balances.
                await RunAsync(httpContext, route, upgrade, activity, found.Connection, found.Uri, found.Target);
                return;
            }

            Uri backendUri;
            try
            {
                backendUri = _target is not null ? _target.Resolve(upgrade) : await _targetSelector!(httpContext);
            }
            catch (FormatException ex)
            {
                await route.RejectAsync(httpContext, StatusCodes.Status400BadRequest, $"The request cannot be proxied: {ex.Message}.");
                return;
            }

            var started = Stopwatch.GetTimestamp();
            try
            {
                backend = await BackendConnector.ConnectAsync(
                    new BackendConnectRequest
                    {
                        Uri = backendUri,
                        SubProtocols = ServerHandshake.GetOfferedProtocols(httpContext),
                        Headers = BuildHeaders(httpContext, upgrade.Subject),
                        OfferDeflate = _builder.EnableBackendCompression,
                        Timeout = _builder.ConnectTimeout,
                        SslOptions = _builder.BackendTls,
                    },
                    httpContext.RequestAborted);
                _metrics!.RecordConnected(Pattern, Stopwatch.GetElapsedTime(started));
            }
            catch (BackendConnectException ex)
            {
                _metrics!.RecordFailure(Pattern, ex.Kind);
                // The client learns what kind of failure it was, not the backend's host names or TLS details.
                await route.RejectAsync(
                    httpContext,
                    StatusCodes.Status502BadGateway,
                    $"The backend is unavailable ({ex.Kind}).",
                    static (route, failure) => ProxyLog.BackendConnectFailed(route.Logger, route.Pattern, WithoutQuery(failure.Uri), failure.Message),
                    (Uri: backendUri, ex.Message));
                return;
            }

            var accepted = backend;
            backend = null;
            await RunAsync(httpContext, route, upgrade, activity, accepted, backendUri, target: null);
        }
        catch when (backend is not null)
        {
            await backend.Stream.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Accepts the client and runs the connection; owns <paramref name="backend"/> from here on, and counts it on the
    /// pool's <paramref name="target"/> until the connection ends.
    /// </summary>
    private static async Task RunAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, Activity? activity, BackendConnection backend, Uri backendUri, BackendTarget? target)
    {
        ProxyConnection connection;
        target?.Opened();
        try
        {
            var client = await AcceptClientAsync(httpContext, route, upgrade, backend.SubProtocol);
            var backendLeg = CreateBackendLeg(backend, route.Options, route.Time);
            connection = new ProxyConnection(route, httpContext, client, backendLeg, backendUri, upgrade, backend.SubProtocol, target);
        }
        catch
        {
            target?.Closed();
            await backend.Stream.DisposeAsync();
            throw;
        }

        SluiceTracing.Accepted(activity, connection);
        await connection.RunAsync();
    }

    private readonly record struct PooledBackend(BackendConnection Connection, Uri Uri, BackendTarget Target);

    /// <summary>
    /// Tries the pool's healthy targets in the order its load balancing gives, within the route's connect timeout: each
    /// attempt gets an equal share of the time left, so that a target that accepts TCP and never answers cannot spend
    /// the whole budget of the ones after it. Returns null once the client has been answered 502 (or has gone).
    /// </summary>
    private async Task<PooledBackend?> ConnectPooledAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, BackendPool pool)
    {
        var order = pool.Order(upgrade);
        if (order.Length == 0)
        {
            _metrics!.RecordFailure(Pattern, "unhealthy");
            await route.RejectAsync(
                httpContext,
                StatusCodes.Status502BadGateway,
                "The backend is unavailable (unhealthy).",
                static (route, count) => ProxyLog.NoHealthyBackend(route.Logger, route.Pattern, count),
                pool.Targets.Count);
            return null;
        }

        var started = Stopwatch.GetTimestamp();
        var subProtocols = ServerHandshake.GetOfferedProtocols(httpContext);
        var headers = BuildHeaders(httpContext, upgrade.Subject);
        List<(Uri Uri, string Message)>? failures = null;
        var kind = "timeout";
        for (var i = 0; i < order.Length; i++)
        {
            var target = order[i];
            var uri = target.Template.Resolve(upgrade);
            var remaining = _builder.ConnectTimeout - Stopwatch.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                (failures ??= []).Add((uri, "not tried: the connect timeout was spent"));
                break;
            }

            try
            {
                var connection = await BackendConnector.ConnectAsync(
                    new BackendConnectRequest
                    {
                        Uri = uri,
                        SubProtocols = subProtocols,
                        Headers = headers,
                        OfferDeflate = _builder.EnableBackendCompression,
                        Timeout = remaining / (order.Length - i),
                        SslOptions = _builder.BackendTls,
                    },
                    httpContext.RequestAborted);
                pool.ReportConnected(target);
                _metrics!.RecordConnected(Pattern, Stopwatch.GetElapsedTime(started));
                return new PooledBackend(connection, uri, target);
            }
            catch (BackendConnectException ex)
            {
                if (httpContext.RequestAborted.IsCancellationRequested)
                {
                    // The client left: nobody to answer, and the backend is not to blame.
                    return null;
                }

                _metrics!.RecordFailure(Pattern, ex.Kind);
                if (ex.BlamesBackend)
                {
                    pool.ReportConnectFailure(target, ex.Message);
                }

                (failures ??= []).Add((uri, ex.Message));
                kind = ex.Kind;
            }
        }

        await route.RejectAsync(
            httpContext,
            StatusCodes.Status502BadGateway,
            $"The backend is unavailable ({kind}).",
            static (route, failures) =>
            {
                if (failures.Count == 1)
                {
                    ProxyLog.BackendConnectFailed(route.Logger, route.Pattern, WithoutQuery(failures[0].Uri), failures[0].Message);
                }
                else
                {
                    ProxyLog.AllBackendsFailed(route.Logger, route.Pattern, failures.Count, string.Join("; ", failures.Select(f => $"{WithoutQuery(f.Uri)}: {f.Message}")));
                }
            },
            failures!);
        return null;
    }

    private static WebSocketLeg CreateBackendLeg(BackendConnection backend, WebSocketEndpointOptions options, TimeProvider time)
    {
        if (backend.Deflate is null)
        {
            return new FramedLeg(backend.Stream, isServer: false, options.MaxMessageBytes, backend.Abort, ownsStream: true, backend.Leftover, time, options.Streaming?.AboveBytes ?? 0, options.Streaming?.MaxBytes ?? 0);
        }

        Stream stream = backend.Leftover.Length == 0 ? backend.Stream : new PrefixedStream(backend.Leftover, backend.Stream);
        var creation = new WebSocketCreationOptions
        {
            IsServer = false,
            SubProtocol = backend.SubProtocol,
            KeepAliveInterval = options.KeepAliveInterval,
            KeepAliveTimeout = options.EffectiveKeepAliveTimeout,
            DangerousDeflateOptions = backend.Deflate,
        };
        return new ManagedLeg(stream, creation, options.MaxMessageBytes, backend.Abort, stream, time);
    }

    private List<KeyValuePair<string, string>> BuildHeaders(HttpContext httpContext, string? subject)
    {
        var request = httpContext.Request;
        var headers = new List<KeyValuePair<string, string>>(_builder.ForwardHeaders.Count + 6);
        foreach (var name in _builder.ForwardHeaders)
        {
            foreach (var value in request.Headers[name])
            {
                if (value is not null)
                {
                    headers.Add(new(name, value));
                }
            }
        }

        // X-Forwarded-For: the chain something in front validated (the gateway's trusted proxies), or the client's
        // address alone. The request's own header is never copied: its client writes it, and a backend that reads the
        // first entry would believe whatever address the client chose.
        if ((httpContext.Features.Get<ForwardedForFeature>()?.Chain ?? httpContext.Connection.RemoteIpAddress?.ToString()) is { } forwardedFor)
        {
            headers.Add(new("X-Forwarded-For", forwardedFor));
        }

        headers.Add(new("X-Forwarded-Proto", request.Scheme));
        if (request.Host.HasValue)
        {
            headers.Add(new("X-Forwarded-Host", request.Host.Value));
        }

        // The client's own X-Sluice-Subject never reaches the backend (it is in s_handshakeHeaders); only ours does.
        if (subject is not null)
        {
            headers.Add(new(SubjectHeader, subject));
        }

        if (Activity.Current is { } activity && activity.IdFormat == ActivityIdFormat.W3C)
        {
            headers.Add(new("traceparent", activity.Id!));
            if (!string.IsNullOrEmpty(activity.TraceStateString))
            {
                headers.Add(new("tracestate", activity.TraceStateString));
            }
        }
        else if (SluiceTracing.TryGetClientContext(request, out var client))
        {
            // Nobody traces here: pass the client's context on, rewritten from its parsed form, never as raw text.
            headers.Add(new("traceparent", $"00-{client.TraceId.ToHexString()}-{client.SpanId.ToHexString()}-{((client.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? "01" : "00")}"));
            if (!string.IsNullOrEmpty(client.TraceState))
            {
                headers.Add(new("tracestate", client.TraceState));
            }
        }

        return headers;
    }
}

/// <summary>A stream that first yields bytes already read (past a handshake), then the inner stream's.</summary>
internal sealed class PrefixedStream(byte[] prefix, Stream inner) : Stream
{
    private int _offset;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_offset < prefix.Length)
        {
            var count = Math.Min(buffer.Length, prefix.Length - _offset);
            prefix.AsSpan(_offset, count).CopyTo(buffer.Span);
            _offset += count;
            return new ValueTask<int>(count);
        }

        return inner.ReadAsync(buffer, cancellationToken);
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
