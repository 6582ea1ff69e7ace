using System.Reflection;

namespace Sluice.Gateway;

/// <summary>Serves the files built into the gateway (the demo page, the dashboard): no build step, no folder to ship.</summary>
internal sealed class EmbeddedAssets(string prefix)
{
    private static readonly Dictionary<string, string> s_types = new(StringComparer.OrdinalIgnoreCase)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
    };

    public async Task WriteAsync(HttpContext context, string file)
    {
        await using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(prefix + file);
        if (stream is null)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        context.Response.ContentType = s_types.GetValueOrDefault(Path.GetExtension(file), "application/octet-stream");
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Content-Type-Options"] = "nosniff";
        await stream.CopyToAsync(context.Response.Body);
    }
}
