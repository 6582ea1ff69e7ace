using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice;

/// <summary>The request handler of a hosted endpoint: performs the upgrade and runs the connection.</summary>
internal sealed class HostedEndpoint(string pattern, WebSocketEndpointBuilder builder) : RouteEndpoint(pattern, builder, "Sluice.Hosting")
{
    /// <summary>The <see cref="MessageContext.Layer"/> of a message while the handler runs.</summary>
    public const int HandlerLayer = -2;

    public Func<MessageContext, ValueTask<object?>>? Handler => builder.Handler;

    public ResultConversion Results { get; private set; } = null!;

    protected override void OnBuilding(IServiceProvider services) =>
        Results = new ResultConversion(
            builder.ResultConverters,
            services.GetServices<IWebSocketResultConverter>().ToArray(),
            services.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions);

    protected override async Task RunUpgradedAsync(HttpContext httpContext, WebSocketRoute route, UpgradeContext upgrade, Activity? activity)
    {
        var subProtocol = ServerHandshake.SelectProtocol(ServerHandshake.GetOfferedProtocols(httpContext), route.Options.SubProtocols);
        var leg = await AcceptClientAsync(httpContext, route, upgrade, subProtocol);
        var connection = new HostedConnection(this, route, httpContext, leg, upgrade, subProtocol);
        SluiceTracing.Accepted(activity, connection);
        await connection.RunAsync();
    }
}
