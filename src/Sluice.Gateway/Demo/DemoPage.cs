namespace Sluice.Gateway.Demo;

/// <summary>
/// The demo's page at <c>/</c>: chat through <c>/demo/{room}</c> and see what the policies do; a topic through <c>/chat</c>
/// with the JavaScript client (clients/js, served as <c>/sluice-client.js</c>).
/// </summary>
internal static class DemoPage
{
    public static void Map(WebApplication app)
    {
        var assets = new EmbeddedAssets("Sluice.Gateway.Demo.wwwroot.");
        app.MapGet("/", (HttpContext context) => assets.WriteAsync(context, "index.html"));
        app.MapGet("/demo.js", (HttpContext context) => assets.WriteAsync(context, "demo.js"));
        app.MapGet("/demo.css", (HttpContext context) => assets.WriteAsync(context, "demo.css"));
        app.MapGet("/pubsub.js", (HttpContext context) => assets.WriteAsync(context, "pubsub.js"));
        app.MapGet("/sluice-client.js", (HttpContext context) => assets.WriteAsync(context, "sluice-client.js"));
    }
}
