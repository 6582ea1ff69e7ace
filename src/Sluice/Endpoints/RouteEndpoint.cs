using System.Diagnostics;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// The request handler of a Sluice endpoint, host or proxy mode: composes the route once, then per request
/// runs the upgrade prologue both modes share (handshake checks, a connection place, upgrade steps, the
/// connection's activity) and hands the upgrade to the mode.
/// </summary>
internal abstract class RouteEndpoint(string pattern, WebSocketPipelineBuilder builder, string loggerCategory)
{
    private readonly Lock _buildLock = new();
    private string _pattern = pattern;
    private WebSocketRoute? _route;

    protected string Pattern => _pattern;

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
            OnBuilding(services);
            _route = new WebSocketRoute(_pattern, composed.Options, composed, services, loggerCategory);
        }
    }

    /// <remarks>
    /// With <see cref="UpgradeHandoff"/> this returns once the connection runs on its own (after its connected hooks),
    /// and the connection middleware awaits the rest; otherwise it returns when the connection ends.
    /// </remarks>
    public async Task HandleAsync(HttpContext httpContext)
    {
        var handoff = UpgradeHandoff.For(httpContext);
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

        upgrade.Handoff = handoff;

        // As long as the connection; the proxy's backend handshake carries its trace context.
        var activity = SluiceTracing.StartConnection(httpContext, route.Pattern);
        try
        {
            await RunUpgradedAsync(httpContext, route, upgrade, activity);
        }
        finally
        {
            // However the mode failed before a connection existed (a rejection, a backend that failed, an exception),
            // the place and the activity end here, once; a connection ends them itself when it ends.
            if (!upgrade.ConnectionOwnsPlace)
            {
                route.Registry.ReleaseReservation();
                activity?.Dispose();
                upgrade.DisposeRegistered();
            }
        }
    }

    /// <summary>Mode-specific services, resolved once while the route is built.</summary>
    protected virtual void OnBuilding(IServiceProvider services)
    {
    }

    /// <summary>
    /// Completes the upgrade and runs the connection. The caller holds a connection place and gives it back when
    /// this returns or throws before a connection took it over.
    /// </summary>
    protected abstract Task RunUpgradedAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, Activity? activity);

    /// <summary>Answers the client's handshake with 101 and creates its leg.</summary>
    protected static async Task<WebSocketLeg> AcceptClientAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, string? subProtocol)
    {
        var deflate = route.Options.EnableCompression
            ? DeflateNegotiation.AcceptOffer(httpContext.Request.Headers.SecWebSocketExtensions)
            : null;
        var stream = await ServerHandshake.AcceptAsync(httpContext, subProtocol, deflate);
        if (upgrade.Handoff is { } handoff)
        {
            // Kestrel's upgraded stream is left unused: the connection reads the socket's pipes from here on.
            var (pipes, abort) = await handoff.SwitchAsync();
            return ClientLegs.Create(pipes, abort, ownsStream: true, route.Options, deflate, subProtocol, route.Time);
        }

        return ClientLegs.Create(stream, httpContext.Abort, ownsStream: false, route.Options, deflate, subProtocol, route.Time);
    }
}

/// <summary>Creates the client's leg of a connection over Kestrel's upgraded stream.</summary>
internal static class ClientLegs
{
    public static WebSocketLeg Create(Stream stream, Action abort, bool ownsStream, WebSocketEndpointOptions options, DeflateNegotiation? deflate, string? subProtocol, TimeProvider time)
    {
        if (deflate is null)
        {
            return new FramedLeg(stream, isServer: true, options.MaxMessageBytes, abort, ownsStream, time: time, streamAboveBytes: options.Streaming?.AboveBytes ?? 0, streamMaxBytes: options.Streaming?.MaxBytes ?? 0);
        }

        var creation = new WebSocketCreationOptions
        {
            IsServer = true,
            SubProtocol = subProtocol,
            KeepAliveInterval = options.KeepAliveInterval,
            KeepAliveTimeout = options.EffectiveKeepAliveTimeout,
            DangerousDeflateOptions = deflate.Options,
        };
        return new ManagedLeg(stream, creation, options.MaxMessageBytes, abort, transport: null, time);
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

internal static class EndpointPatterns
{
    /// <summary>The endpoint's whole route pattern, group prefixes included: what logs and metrics name.</summary>
    public static string Of(Microsoft.AspNetCore.Builder.EndpointBuilder endpointBuilder, string pattern) =>
        (endpointBuilder as RouteEndpointBuilder)?.RoutePattern.RawText is { Length: > 0 } raw ? raw : pattern;
}
