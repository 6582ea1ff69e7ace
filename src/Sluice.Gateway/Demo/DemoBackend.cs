using System.Reflection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Sluice.Gateway.Demo;

/// <summary>
/// The embedded demo's backend: a small chat server (Sluice host mode) on its own loopback port, which the demo's
/// <c>/demo/{room}</c> route proxies to. It broadcasts each message to its room, sender included, so a user sees
/// their own message as everyone sees it once the gateway's policies have had their say.
/// </summary>
internal sealed class DemoBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private DemoBackend(WebApplication app, string authority)
    {
        _app = app;
        Authority = authority;
    }

    public string Authority { get; }

    public static async Task<DemoBackend> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddSluice();
        var app = builder.Build();
        app.MapWebSocket("/rooms/{room}", ws =>
        {
            ws.OnConnected(connection => connection.Subscribe(Topic(connection)));
            ws.OnMessage(async (message, connection) =>
            {
                await connection.PublishAsync(Topic(connection), message, includeSelf: true);
                return null;
            });
        });
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return new DemoBackend(app, address.Authority);
    }

    /// <summary>The embedded demo configuration, pointed at this backend.</summary>
    public static string Configuration(string backendAuthority)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Sluice.Gateway.Demo.demo.json")!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Replace("{{DEMO_BACKEND}}", backendAuthority, StringComparison.Ordinal);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static string Topic(WebSocketConnection connection) => "room:" + connection.RouteValues["room"];
}
