using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Sluice.Policies;

/// <summary>
/// The HTTP client Sluice calls services with (the <c>http-auth</c> policy, the gateway's webhooks and HTTP routes):
/// a named <see cref="IHttpClientFactory"/> client whose resilience handler bounds each call by the timeout the
/// caller sets on the request (<see cref="WithTimeout"/>), and retries only what is safe to retry: a connection the
/// service refused, so no request reached it. An answer, whatever its status, is never retried here.
/// </summary>
public static class HttpCallouts
{
    /// <summary>The name of the client in <see cref="IHttpClientFactory"/>.</summary>
    public const string ClientName = "Sluice.Callouts";

    private static readonly HttpRequestOptionsKey<TimeSpan> s_timeout = new("Sluice.Timeout");
    private static readonly TimeSpan s_defaultTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Registers the client. Calling it again does nothing.</summary>
    public static IServiceCollection AddSluiceHttpCallouts(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Any(d => d.ServiceType == typeof(Marker)))
        {
            return services;
        }

        services.AddSingleton<Marker>();
        services.AddHttpClient(ClientName, client => client.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                // A redirect is an answer to judge (http-auth: 502), not a place to go: following it would send the
                // forwarded credentials to wherever the service points.
                AllowAutoRedirect = false,
                UseCookies = false,
                UseProxy = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            })
            .AddResilienceHandler("sluice", pipeline => pipeline
                .AddTimeout(new TimeoutStrategyOptions { TimeoutGenerator = static args => new ValueTask<TimeSpan>(TimeoutOf(args.Context)) })
                .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
                {
                    MaxRetryAttempts = 2,
                    BackoffType = DelayBackoffType.Exponential,
                    UseJitter = true,
                    Delay = TimeSpan.FromMilliseconds(50),
                    ShouldHandle = static args => new ValueTask<bool>(IsRefused(args.Outcome.Exception)),
                })
                .AddTimeout(new TimeoutStrategyOptions { TimeoutGenerator = static args => new ValueTask<TimeSpan>(TimeoutOf(args.Context)) }));
        return services;
    }

    /// <summary>Sets how long the call may take in all (attempts and retries); without it, 30 seconds.</summary>
    public static HttpRequestMessage WithTimeout(this HttpRequestMessage request, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(request);
        request.Options.Set(s_timeout, timeout);
        return request;
    }

    /// <summary>Whether the service refused the connection: nothing was sent, so trying again is safe.</summary>
    internal static bool IsRefused(Exception? exception) =>
        exception is HttpRequestException { InnerException: SocketException { SocketErrorCode: SocketError.ConnectionRefused } };

    private static TimeSpan TimeoutOf(ResilienceContext context) =>
        context.GetRequestMessage() is { } request && request.Options.TryGetValue(s_timeout, out var timeout) ? timeout : s_defaultTimeout;

    /// <summary>Reads a body of at most <paramref name="maxBytes"/>; null when it is longer (it is not read further).</summary>
    internal static async Task<byte[]?> ReadBoundedAsync(HttpContent content, int maxBytes, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is { } length && length > maxBytes)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        var buffer = new byte[(int)Math.Min(maxBytes + 1L, (content.Headers.ContentLength ?? 4096) + 1)];
        var read = 0;
        while (true)
        {
            if (read == buffer.Length)
            {
                if (buffer.Length > maxBytes)
                {
                    return null;
                }

                Array.Resize(ref buffer, (int)Math.Min(maxBytes + 1L, buffer.Length * 2L));
            }

            var n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return read == buffer.Length ? buffer : buffer[..read];
            }

            read += n;
            if (read > maxBytes)
            {
                return null;
            }
        }
    }

    private sealed class Marker;
}
