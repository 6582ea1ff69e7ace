using System.Net;
using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Hosting;

namespace Sluice.Gateway.Admin;

/// <summary>
/// Guards every admin path but <c>healthz</c> (docs/gateway-contract.md, "Admin"). With <c>admin.apiKey</c>: the key
/// as <c>Authorization: Bearer KEY</c> or <c>X-Api-Key: KEY</c>, or the dashboard's cookie, else 401. Without a key:
/// loopback clients only, else 403. The key is read from the running configuration, so a reload changes it. Failed
/// attempts to present the key are throttled per client address (<see cref="LoginThrottle"/>).
/// </summary>
internal sealed class AdminAuthentication(GatewayRuntime runtime, LoginThrottle throttle)
{
    public const string CookieName = "sluice-admin";

    /// <summary>
    /// The admin path the endpoints were mapped under at start. Fixed, like the endpoints: checking a reloaded path
    /// here would leave the mapped one unguarded.
    /// </summary>
    public string Path { get; } = runtime.Config.Admin.Path;

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        // Not async on this path: a WebSocket request lives as long as its connection, and an async frame here would
        // be held by every one of them.
        if (!context.Request.Path.StartsWithSegments(Path, out var rest)
            || rest.Equals("/healthz", StringComparison.OrdinalIgnoreCase))
        {
            return next(context);
        }

        return GuardAsync(context, next, rest);
    }

    private async Task GuardAsync(HttpContext context, RequestDelegate next, PathString rest)
    {
        // No admin page may be framed by another site (clickjacking the Close button or the login form). X-Frame-Options
        // says the same to browsers that predate frame-ancestors.
        context.Response.Headers.ContentSecurityPolicy = "frame-ancestors 'none'";
        context.Response.Headers.XFrameOptions = "DENY";
        if (!rest.HasValue && (HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method)))
        {
            // The pages use relative URLs (the login form's "login", the dashboard's "connections/..."), which from
            // "/_sluice" would resolve against "/": the pages live under "/_sluice/". Nothing is revealed by the
            // redirect that the public login page does not show.
            context.Response.Redirect(Path + "/" + context.Request.QueryString);
            return;
        }

        var key = runtime.Config.Admin.ApiKey;
        if (key is null)
        {
            // Loopback alone is not enough: a web page in the operator's browser can reach 127.0.0.1 too (a cross-site
            // POST, or DNS rebinding with a foreign Host). Without a key, the Host must name loopback and a request
            // from a browser must come from the admin pages' own origin.
            if (context.Connection.RemoteIpAddress is { } address && IPAddress.IsLoopback(address)
                && IsLoopbackHost(context.Request.Host) && IsSameOrigin(context.Request))
            {
                await next(context);
                return;
            }

            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            await context.Response.WriteAsync("The admin paths answer loopback clients only; set admin.apiKey to reach them from elsewhere.\n");
            return;
        }

        var isLogin = rest.Equals("/login", StringComparison.OrdinalIgnoreCase) && HttpMethods.IsPost(context.Request.Method);
        var presentsKey = isLogin || PresentsKey(context.Request);
        if (presentsKey && throttle.RetryAfter(context.Connection.RemoteIpAddress) is { } wait && wait > TimeSpan.Zero)
        {
            // Right or wrong, the key is not checked while the address is throttled: the answer reveals nothing.
            context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            await context.Response.WriteAsync("Too many failed attempts at the admin key from this address; try again later.\n");
            return;
        }

        var credential = Authenticate(context.Request, key);
        if (credential == Credential.None && presentsKey && !isLogin)
        {
            throttle.Failed(context.Connection.RemoteIpAddress);
        }
        if (credential == Credential.Cookie && !IsSafe(context.Request.Method) && !IsFromOwnPages(context.Request))
        {
            // The browser sends the cookie with any request to the admin path; SameSite=Strict is one barrier against
            // a foreign page making it act, and this check the second (older browsers, same-site subdomains).
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            await context.Response.WriteAsync("A state-changing admin request with the dashboard cookie must come from the dashboard's own origin; scripts send the key in a header.\n");
            return;
        }

        // The login page's stylesheet is public, as the page itself is; it holds nothing about the gateway.
        if (credential != Credential.None || rest.Equals("/login", StringComparison.OrdinalIgnoreCase)
            || (HttpMethods.IsGet(context.Request.Method) && rest.Equals("/dashboard.css", StringComparison.OrdinalIgnoreCase)))
        {
            await next(context);
            return;
        }

        if (HttpMethods.IsGet(context.Request.Method) && (!rest.HasValue || rest == "/"))
        {
            // The dashboard itself: ask for the key once.
            await DashboardAssets.Assets.WriteAsync(context, "login.html");
            return;
        }

        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = "Bearer realm=\"sluice-admin\"";
        await context.Response.WriteAsync("The admin key is required: Authorization: Bearer KEY or X-Api-Key: KEY.\n");
    }

    private static bool IsLoopbackHost(HostString host) =>
        host.Host is "localhost" or "127.0.0.1" or "[::1]" or "::1"
        || (IPAddress.TryParse(host.Host, out var address) && IPAddress.IsLoopback(address));

    private static bool IsSameOrigin(HttpRequest request)
    {
        var origin = request.Headers.Origin.ToString();
        return origin.Length == 0 || SameAuthority(origin, request.Host);
    }

    /// <summary>Checks a submitted key and, if right, gives the browser the dashboard cookie.</summary>
    public IResult Login(HttpContext context, string? key)
    {
        var expected = runtime.Config.Admin.ApiKey;
        if (expected is null || key is null || !Same(key, expected))
        {
            throttle.Failed(context.Connection.RemoteIpAddress);
            return Results.Redirect($"{Path}/?failed=1");
        }

        context.Response.Cookies.Append(CookieName, CookieValue(expected), new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = context.Request.IsHttps,
            Path = Path,
            MaxAge = TimeSpan.FromHours(12),
        });
        return Results.Redirect($"{Path}/");
    }

    private static Credential Authenticate(HttpRequest request, string key)
    {
        var authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && Same(authorization[7..].Trim(), key))
        {
            return Credential.Header;
        }

        if (request.Headers.TryGetValue("X-Api-Key", out var header) && Same(header.ToString(), key))
        {
            return Credential.Header;
        }

        return request.Cookies.TryGetValue(CookieName, out var cookie) && Same(cookie, CookieValue(key)) ? Credential.Cookie : Credential.None;
    }

    private static bool PresentsKey(HttpRequest request) =>
        request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || request.Headers.ContainsKey("X-Api-Key");

    private static bool IsSafe(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) || HttpMethods.IsTrace(method);

    /// <summary>
    /// Whether a request came from a page of this origin (OWASP's CSRF cheat sheet, "verifying origin with standard
    /// headers"): <c>Origin</c> when the browser sends it (every current browser does on a POST), else
    /// <c>Sec-Fetch-Site</c>, else <c>Referer</c>. A request with none of them is refused: a browser that sends the
    /// cookie sends one of them, and a script has the key to put in a header instead.
    /// </summary>
    private static bool IsFromOwnPages(HttpRequest request)
    {
        var headers = request.Headers;
        if (headers.Origin.Count > 0)
        {
            return SameAuthority(headers.Origin.ToString(), request.Host);
        }

        if (headers.TryGetValue("Sec-Fetch-Site", out var site))
        {
            // "none": the user opened the URL themselves (address bar, bookmark); no page asked for it.
            return site.ToString() is "same-origin" or "none";
        }

        return headers.Referer.Count > 0 && SameAuthority(headers.Referer.ToString(), request.Host);
    }

    // Host and port, not scheme: behind a TLS-terminating proxy the page is https while the gateway sees http.
    // "null" (a sandboxed or privacy-redirected page) is not an absolute URL, so it never matches.
    private static bool SameAuthority(string url, HostString host) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && string.Equals(uri.Authority, host.Value, StringComparison.OrdinalIgnoreCase);

    private enum Credential
    {
        None,
        Header,
        Cookie,
    }

    /// <summary>The cookie holds a MAC of the key, not the key: a stolen cookie does not reveal it.</summary>
    private static string CookieValue(string key) =>
        Convert.ToBase64String(HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), "sluice-dashboard-v1"u8));

    private static bool Same(string presented, string expected) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));
}
