using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Protocol;

using Sluice.Diagnostics;

namespace Sluice;

/// <summary>The request handler of a hosted endpoint: performs the upgrade and runs the connection.</summary>
internal sealed class HostedEndpoint(string pattern, WebSocketEndpointBuilder builder)
{
    private string _pattern = pattern;

    /// <summary>The <see cref="MessageContext.Layer"/> of a message while the handler runs.</summary>
    public const int HandlerLayer = -2;

    private readonly Lock _buildLock = new();
    private WebSocketRoute? _route;

    public Func<MessageContext, ValueTask<object?>>? Handler => builder.Handler;

    public ResultConversion Results { get; private set; } = null!;

    /// <summary>Composes the pipeline once, from the endpoint's metadata (its groups) and its own builder.</summary>
    public void Build(IServiceProvider services, IList<object> metadata, string? fullPattern = null)
    {
        lock (_buildLock)
        {
            if (_route is not null)
            {
                return;
            }

            _pattern = fullPattern ?? _pattern;
            var options = EndpointServices.GetSluiceOptions(services);
            var builders = WebSocketGroupMetadata.BuildersOf(metadata);
            builders.Add(builder);
            var composed = ComposedConfiguration.Compose(builders, options, services, _pattern);
            Results = new ResultConversion(
                builder.ResultConverters,
                services.GetServices<IWebSocketResultConverter>().ToArray(),
                services.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions);
            _route = new WebSocketRoute(_pattern, composed.Options, composed, services, "Sluice.Hosting");
        }
    }

    public async Task HandleAsync(HttpContext httpContext)
    {
        if (_route is null)
        {
            // Only when the endpoint came from a data source that does not run Finally conventions.
            Build(httpContext.RequestServices, httpContext.GetEndpoint()?.Metadata.ToList() ?? []);
        }

        var route = _route!;
        var upgrade = await route.BeginUpgradeAsync(httpContext);
        if (upgrade is null)
        {
            return;
        }

        // As long as the connection; the proxy's backend handshake carries its trace context.
        using var activity = SluiceTracing.StartConnection(httpContext, route.Pattern);
        WebSocketLeg leg;
        string? subProtocol;
        try
        {
            subProtocol = ServerHandshake.SelectProtocol(ServerHandshake.GetOfferedProtocols(httpContext), route.Options.SubProtocols);
            var deflate = route.Options.EnableCompression
                ? DeflateNegotiation.AcceptOffer(httpContext.Request.Headers.SecWebSocketExtensions)
                : null;
            var stream = await ServerHandshake.AcceptAsync(httpContext, subProtocol, deflate);
            leg = ClientLegs.Create(httpContext, stream, route.Options, deflate, subProtocol);
        }
        catch
        {
            route.Registry.ReleaseReservation();
            throw;
        }

        var connection = new HostedConnection(this, route, httpContext, leg, upgrade, subProtocol);
        SluiceTracing.Accepted(activity, connection);
        await connection.RunAsync();
    }
}

/// <summary>Creates the client's leg of a connection over Kestrel's upgraded stream.</summary>
internal static class ClientLegs
{
    public static WebSocketLeg Create(HttpContext httpContext, Stream stream, WebSocketEndpointOptions options, DeflateNegotiation? deflate, string? subProtocol)
    {
        if (deflate is null)
        {
            return new FramedLeg(stream, isServer: true, options.MaxMessageBytes, httpContext.Abort, ownsStream: false);
        }

        var creation = new WebSocketCreationOptions
        {
            IsServer = true,
            SubProtocol = subProtocol,
            KeepAliveInterval = options.KeepAliveInterval,
            KeepAliveTimeout = options.EffectiveKeepAliveTimeout,
            DangerousDeflateOptions = deflate.Options,
        };
        return new ManagedLeg(stream, creation, options.MaxMessageBytes, httpContext.Abort, transport: null);
    }
}

internal static class EndpointServices
{
    public static SluiceOptions GetSluiceOptions(IServiceProvider services)
    {
        if (services.GetService<WebSocketConnectionRegistry>() is null)
        {
            throw new InvalidOperationException(
                "Sluice's services are not registered. Call builder.Services.AddSluice() before mapping WebSocket endpoints.");
        }

        return services.GetRequiredService<IOptions<SluiceOptions>>().Value;
    }
}
