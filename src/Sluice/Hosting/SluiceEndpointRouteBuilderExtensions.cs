using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Routing;
using Sluice;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps Sluice WebSocket endpoints.</summary>
public static class SluiceEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps a hosted WebSocket endpoint at <paramref name="pattern"/>. Each connection's messages run through
    /// the interceptors that <paramref name="configure"/> adds (after those of the route groups around it) into
    /// its message handler. The returned builder configures the HTTP upgrade request like any endpoint's:
    /// <c>RequireAuthorization()</c>, <c>RequireRateLimiting()</c> and <c>RequireCors()</c> apply to the upgrade.
    /// </summary>
    public static IEndpointConventionBuilder MapWebSocket(
        this IEndpointRouteBuilder endpoints,
        [StringSyntax("Route")] string pattern,
        Action<WebSocketEndpointBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(configure);

        var builder = new WebSocketEndpointBuilder();
        configure(builder);
        var endpoint = new HostedEndpoint(pattern, builder);
        var conventions = endpoints.Map(pattern, endpoint.HandleAsync);

        // Finally conventions run after every group's conventions, when the group metadata is all there:
        // the moment to compose the pipeline, once.
        conventions.Finally(endpointBuilder =>
        {
            var fullPattern = EndpointPatterns.Of(endpointBuilder, pattern);
            endpointBuilder.DisplayName = $"WebSocket {fullPattern}";
            endpoint.Build(endpointBuilder.ApplicationServices, endpointBuilder.Metadata, fullPattern);
        });
        return conventions;
    }

    /// <summary>
    /// Adds interceptors, upgrade steps, hooks, features and options to every Sluice endpoint this builder
    /// configures: typically a route group (<c>app.MapGroup("/api").WithWebSocketPipeline(...)</c>), whose
    /// configuration then applies to every WebSocket endpoint it holds, nested groups included, before the
    /// endpoint's own.
    /// </summary>
    public static TBuilder WithWebSocketPipeline<TBuilder>(this TBuilder builder, Action<WebSocketPipelineBuilder> configure)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);

        var pipeline = new WebSocketPipelineBuilder();
        configure(pipeline);
        var metadata = new WebSocketGroupMetadata(pipeline);
        builder.Add(endpointBuilder => endpointBuilder.Metadata.Add(metadata));
        return builder;
    }
}
