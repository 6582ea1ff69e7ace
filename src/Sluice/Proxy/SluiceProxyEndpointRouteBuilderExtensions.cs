using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice;
using Sluice.Proxy;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps Sluice WebSocket proxy endpoints.</summary>
public static class SluiceProxyEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps a WebSocket endpoint at <paramref name="pattern"/> that proxies each connection to the backend
    /// <paramref name="target"/>, running every message through the interceptors <paramref name="configure"/> adds:
    /// inbound ones on messages from the client, outbound ones on messages from the backend.
    /// </summary>
    /// <param name="endpoints">The route builder.</param>
    /// <param name="pattern">The route pattern, e.g. <c>/chat/{room}</c>.</param>
    /// <param name="target">
    /// The backend URL, <c>ws://</c> or <c>wss://</c>. Expressions in its path and query (<c>${params.NAME}</c>,
    /// <c>${query.NAME}</c>, <c>${headers.NAME}</c>, <c>${subject}</c>, <c>${claims.NAME}</c>, <c>${connection.id}</c>,
    /// <c>${env.NAME}</c>: see <see cref="WebSocketProxyTarget"/>) are replaced by their values once the upgrade steps
    /// have run, URL-encoded; an unknown route parameter or expression is an error here.
    /// </param>
    /// <param name="configure">Adds interceptors, upgrade steps and hooks, and sets backend options.</param>
    public static IEndpointConventionBuilder MapWebSocketProxy(
        this IEndpointRouteBuilder endpoints,
        [StringSyntax("Route")] string pattern,
        string target,
        Action<WebSocketProxyBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        return Map(endpoints, pattern, target, null, configure);
    }

    /// <summary>
    /// Maps a WebSocket proxy endpoint whose backend <paramref name="selectTarget"/> picks for each connection,
    /// from the upgrade request.
    /// </summary>
    public static IEndpointConventionBuilder MapWebSocketProxy(
        this IEndpointRouteBuilder endpoints,
        [StringSyntax("Route")] string pattern,
        Func<HttpContext, ValueTask<Uri>> selectTarget,
        Action<WebSocketProxyBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(selectTarget);
        return Map(endpoints, pattern, null, selectTarget, configure);
    }

    /// <summary>
    /// Maps a WebSocket proxy endpoint whose connections go to the targets of <paramref name="pool"/>: a healthy one
    /// chosen by its load balancing, the next healthy ones if connecting fails, within
    /// <see cref="WebSocketProxyBuilder.ConnectTimeout"/>. The pool's active health checks start when the endpoint is
    /// built; whoever created the pool disposes it.
    /// </summary>
    /// <param name="endpoints">The route builder.</param>
    /// <param name="pattern">The route pattern, e.g. <c>/chat/{room}</c>; the pool's targets must fit its parameters.</param>
    /// <param name="pool">The targets, their load balancing and health.</param>
    /// <param name="configure">Adds interceptors, upgrade steps and hooks, and sets backend options.</param>
    public static IEndpointConventionBuilder MapWebSocketProxy(
        this IEndpointRouteBuilder endpoints,
        [StringSyntax("Route")] string pattern,
        BackendPool pool,
        Action<WebSocketProxyBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(pool);
        return Map(endpoints, pattern, null, null, configure, pool);
    }

    private static IEndpointConventionBuilder Map(
        IEndpointRouteBuilder endpoints, string pattern, string? target, Func<HttpContext, ValueTask<Uri>>? selectTarget, Action<WebSocketProxyBuilder>? configure, BackendPool? pool = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);

        if (endpoints.ServiceProvider.GetService<IOptions<SluiceOptions>>()?.Value.HostedConnectionsOnly == true)
        {
            // The connection budget counted one socket per connection: proxies could run the process out of descriptors.
            throw new InvalidOperationException("SluiceOptions.HostedConnectionsOnly is set: this app cannot map a WebSocket proxy.");
        }

        var builder = new WebSocketProxyBuilder();
        configure?.Invoke(builder);
        var endpoint = new ProxyEndpoint(pattern, builder, target, selectTarget, pool);
        var conventions = endpoints.Map(pattern, endpoint.HandleAsync);
        conventions.Finally(endpointBuilder =>
        {
            var fullPattern = EndpointPatterns.Of(endpointBuilder, pattern);
            endpointBuilder.DisplayName = $"WebSocket proxy {fullPattern}";
            endpoint.Build(endpointBuilder.ApplicationServices, endpointBuilder.Metadata, fullPattern);
        });
        return conventions;
    }
}
