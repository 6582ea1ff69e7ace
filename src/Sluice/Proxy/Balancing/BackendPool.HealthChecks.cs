using System.Net.Http;
using System.Net.Security;

namespace Sluice.Proxy;

/// <summary>
/// Active health checks, after YARP's ActiveHealthCheckMonitor: one loop per pool probes every target at once, each
/// probe bounded by the check's timeout, then waits the interval on the pool's TimeProvider. A probe owns its socket
/// from start to end (HTTP with <c>Connection: close</c> and a handler of its own, or a handshake closed at once), so
/// nothing stays open between checks and disposing the pool leaves no socket or timer behind.
/// </summary>
public sealed partial class BackendPool
{
    private async Task RunHealthChecksAsync(BackendHealthCheckOptions check, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.WhenAll(_targets.Select(target => CheckAsync(target, check, stopping)));
                await Task.Delay(check.Interval, _time, stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // A bug in a probe must not end the checks for good: log it and try again next interval.
                Log.HealthCheckCrashed(_logger, ex, RoutePattern);
                await Task.Delay(check.Interval, _time, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task CheckAsync(BackendTarget target, BackendHealthCheckOptions check, CancellationToken stopping)
    {
        string? error;
        using (var timeout = new CancellationTokenSource(check.Timeout, _time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token))
        {
            try
            {
                error = check.Path is { } path
                    ? await ProbeHttpAsync(target, path, check.Timeout, linked.Token)
                    : await ProbeHandshakeAsync(target, check.Timeout, linked.Token);
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or BackendConnectException or OperationCanceledException)
            {
                if (stopping.IsCancellationRequested)
                {
                    return;
                }

                error = timeout.IsCancellationRequested ? $"no answer within {check.Timeout.TotalMilliseconds:0} ms" : Describe(ex);
            }
        }

        var now = _time.GetUtcNow();
        if (error is null)
        {
            if (target.RecordSuccess(now, check.HealthyAfter, isCheck: true))
            {
                Log.TargetHealthy(_logger, target.Display, RoutePattern, check.HealthyAfter);
            }
        }
        else if (target.RecordFailure($"health check: {error}", now, _time.GetTimestamp(), check.UnhealthyAfter, isCheck: true))
        {
            Log.TargetUnhealthy(_logger, target.Display, RoutePattern, $"health check: {error}");
        }
    }

    private static string Describe(Exception ex) => ex switch
    {
        HttpRequestException { InnerException: IOException io } => $"the connection failed: {io.Message}",
        HttpRequestException { InnerException: System.Net.Sockets.SocketException socket } => socket.Message,
        IOException io => $"the connection closed mid-response: {io.Message}",
        _ => ex.Message,
    };

    /// <returns>null when healthy, else why not.</returns>
    private async Task<string?> ProbeHttpAsync(BackendTarget target, string path, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var uri = target.Template.ResolveWithoutRequest();
        var probe = new UriBuilder(uri.Scheme == "wss" ? Uri.UriSchemeHttps : Uri.UriSchemeHttp, uri.IdnHost, uri.Port)
        {
            Path = path.Split('?', 2)[0],
            Query = path.Contains('?', StringComparison.Ordinal) ? path.Split('?', 2)[1] : string.Empty,
        }.Uri;
        using var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            ConnectTimeout = timeout,
            SslOptions = Volatile.Read(ref _tls)?.Invoke(uri) ?? new SslClientAuthenticationOptions(),
        };
        using var invoker = new HttpMessageInvoker(handler, disposeHandler: false);
        using var request = new HttpRequestMessage(HttpMethod.Get, probe);
        request.Headers.ConnectionClose = true;
        using var response = await invoker.SendAsync(request, cancellationToken);

        // The body is read whole, so that an answer cut off mid-way counts as a failure, not as the 2xx it began with.
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        await body.CopyToAsync(Stream.Null, cancellationToken);
        return response.IsSuccessStatusCode ? null : $"GET {path} answered {(int)response.StatusCode}";
    }

    private async Task<string?> ProbeHandshakeAsync(BackendTarget target, TimeSpan timeout, CancellationToken cancellationToken)
    {
        BackendConnection connection;
        try
        {
            connection = await BackendConnector.ConnectAsync(
            new BackendConnectRequest
            {
                Uri = target.Template.ResolveWithoutRequest(),
                SubProtocols = [],
                Headers = [],
                OfferDeflate = false,
                Timeout = timeout,
                SslOptions = Volatile.Read(ref _tls),
            },
            cancellationToken);
        }
        catch (BackendConnectException ex) when (!ex.BlamesBackend)
        {
            // The probe resolves the target with every expression empty (/rooms/ for /rooms/${params.room}); a 4xx
            // to that says the backend is up and judging requests, as the passive health reads a 4xx too.
            return null;
        }

        await using (connection.Stream)
        {
            try
            {
                // A masked close frame, 1001 "going away": the backend sees a clean end rather than a reset.
                byte[] close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE9];
                await connection.Stream.WriteAsync(close, cancellationToken);
            }
            catch (IOException)
            {
                // The handshake succeeded, which is what the check asks; how the backend takes the close is its own affair.
            }
        }

        return null;
    }
}
