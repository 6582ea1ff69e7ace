using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features.Authentication;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Sluice;

/// <summary>
/// A backend URL pattern, <c>ws://host:port/rooms/${params.room}?user=${query.user}</c>. Its expressions take values
/// of the client's upgrade: <c>${params.NAME}</c> a route value, <c>${query.NAME}</c> a query value,
/// <c>${headers.NAME}</c> a request header, <c>${subject}</c> the subject an upgrade step set, <c>${claims.NAME}</c> a
/// claim of the authenticated user, <c>${connection.id}</c> the id the connection will have, and <c>${env.NAME}</c> an
/// environment variable, read once when the pattern is parsed. Each value is URL-encoded; a missing one is an empty
/// string. Values may only land in the path and query, never in the scheme or host. Parsed and checked once, when the
/// endpoint is built (or by a configuration validator, before anything runs): an unknown route parameter or
/// expression is an error then.
/// </summary>
public sealed class WebSocketProxyTarget
{
    private readonly Segment[] _segments;

    private WebSocketProxyTarget(Segment[] segments, string pattern)
    {
        _segments = segments;
        Pattern = pattern;
    }

    /// <summary>Gets the pattern as written.</summary>
    public string Pattern { get; }

    /// <summary>Parses <paramref name="pattern"/> against the parameters of the route template <paramref name="routePattern"/>.</summary>
    /// <exception cref="FormatException">The pattern is invalid; the message says why.</exception>
    public static WebSocketProxyTarget Parse(string pattern, string routePattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(routePattern);
        RoutePattern route;
        try
        {
            route = RoutePatternFactory.Parse(routePattern);
        }
        catch (RoutePatternException ex)
        {
            throw new FormatException($"'{routePattern}' is not a route template: {ex.Message}", ex);
        }

        return Parse(pattern, route);
    }

    /// <summary>Parses <paramref name="pattern"/>, returning the reason instead of throwing when it is invalid.</summary>
    public static bool TryParse(string pattern, string routePattern, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out WebSocketProxyTarget? target, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        try
        {
            target = Parse(pattern, routePattern);
            error = null;
            return true;
        }
        catch (FormatException ex)
        {
            target = null;
            error = ex.Message;
            return false;
        }
    }

    internal static WebSocketProxyTarget Parse(string pattern, RoutePattern route)
    {
        var segments = ParseSegments(pattern, route);

        // Values may only land in the path and query: a client must never choose the host it reaches.
        var prefix = segments.Count > 0 && segments[0].Kind == ExpressionKind.Literal ? segments[0].Literal! : string.Empty;
        var schemeEnd = prefix.IndexOf("://", StringComparison.Ordinal);
        var authorityEnd = schemeEnd < 0 ? -1 : prefix.IndexOfAny(['/', '?'], schemeEnd + 3);
        if (schemeEnd < 0 || authorityEnd < 0 && segments.Count > 1)
        {
            throw new FormatException($"'{pattern}': the scheme and host must be literal; values can only be placed in the path or query");
        }

        var authority = authorityEnd < 0 ? prefix : prefix[..authorityEnd];
        if (!Uri.TryCreate(authority, UriKind.Absolute, out var baseUri) || baseUri.Scheme is not ("ws" or "wss"))
        {
            throw new FormatException($"'{pattern}': a backend URL starts with ws:// or wss:// and a host");
        }

        return new WebSocketProxyTarget([.. segments], pattern);
    }

    /// <summary>
    /// Parses a value template such as <c>${subject}</c> or <c>${headers.X-Tenant}:${query.room}</c>: the same
    /// expressions as a target, but not a URL, so nothing is encoded (a pool's <c>hashBy</c>).
    /// </summary>
    internal static WebSocketProxyTarget ParseValue(string pattern, RoutePattern route) =>
        new([.. ParseSegments(pattern, route)], pattern) { _isValue = true };

    private bool _isValue;

    private static List<Segment> ParseSegments(string pattern, RoutePattern route)
    {
        var segments = new List<Segment>();
        var literal = new StringBuilder();
        var i = 0;
        while (i < pattern.Length)
        {
            var start = pattern.IndexOf("${", i, StringComparison.Ordinal);
            if (start < 0)
            {
                literal.Append(pattern, i, pattern.Length - i);
                break;
            }

            literal.Append(pattern, i, start - i);
            var end = pattern.IndexOf('}', start);
            if (end < 0)
            {
                throw new FormatException($"'{pattern}': '${{' at position {start} is not closed by '}}'.");
            }

            var expression = pattern[(start + 2)..end];
            var segment = ParseExpression(pattern, expression, route);
            if (literal.Length > 0)
            {
                segments.Add(Segment.Text(literal.ToString()));
                literal.Clear();
            }

            segments.Add(segment);
            i = end + 1;
        }

        if (literal.Length > 0)
        {
            segments.Add(Segment.Text(literal.ToString()));
        }

        return segments;
    }

    private static Segment ParseExpression(string pattern, string expression, RoutePattern route)
    {
        var dot = expression.IndexOf('.', StringComparison.Ordinal);
        var source = dot < 0 ? expression : expression[..dot];
        var name = dot < 0 ? null : expression[(dot + 1)..];
        switch (source)
        {
            case "subject" when name is null:
                return new Segment(null, null, ExpressionKind.Subject, false);
            case "connection" when name == "id":
                return new Segment(null, null, ExpressionKind.ConnectionId, false);
            case "params" when !string.IsNullOrEmpty(name):
                var parameter = route.GetParameter(name);
                if (parameter is null)
                {
                    var known = string.Join(", ", route.Parameters.Select(p => p.Name));
                    throw new FormatException($"'{pattern}': unknown route parameter '{name}' (the route has: {(known.Length == 0 ? "none" : known)})");
                }

                return new Segment(null, name, ExpressionKind.Params, parameter.IsCatchAll);
            case "query" when !string.IsNullOrEmpty(name):
                return new Segment(null, name, ExpressionKind.Query, false);
            case "headers" when !string.IsNullOrEmpty(name):
                return new Segment(null, name, ExpressionKind.Headers, false);
            case "claims" when !string.IsNullOrEmpty(name):
                return new Segment(null, name, ExpressionKind.Claims, false);
            case "env" when !string.IsNullOrEmpty(name):
                // Read once: the process's environment is not the client's to change, and a lookup per upgrade buys nothing.
                return new Segment(Environment.GetEnvironmentVariable(name) ?? string.Empty, name, ExpressionKind.Env, false);
            default:
                throw new FormatException($"'{pattern}': '${{{expression}}}' is not an expression: use ${{params.NAME}}, ${{query.NAME}}, ${{headers.NAME}}, ${{subject}}, ${{claims.NAME}}, ${{connection.id}} or ${{env.NAME}}");
        }
    }

    /// <summary>
    /// Builds the backend URL for one upgrade request, outside any upgrade: <c>${subject}</c> and
    /// <c>${connection.id}</c> are empty; <c>${claims.NAME}</c> reads the request's authenticated user.
    /// </summary>
    /// <exception cref="FormatException">A value is "." or "..", which would change the backend path's meaning.</exception>
    public Uri Resolve(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return Resolve(context, subject: null, connectionId: null);
    }

    /// <summary>
    /// Builds the backend URL for an upgrade whose steps have run: <c>${subject}</c> is the subject they set,
    /// <c>${claims.NAME}</c> a claim of the user they authenticated, and <c>${connection.id}</c> the id the connection
    /// will have.
    /// </summary>
    /// <exception cref="FormatException">A value is "." or "..", which would change the backend path's meaning.</exception>
    public Uri Resolve(UpgradeContext upgrade)
    {
        ArgumentNullException.ThrowIfNull(upgrade);
        return Resolve(upgrade.HttpContext, upgrade.Subject, upgrade.ConnectionId);
    }

    private Uri Resolve(HttpContext context, string? subject, string? connectionId) =>
        // Without canonicalization: Uri would otherwise decode %2E and remove the dot segments the values made.
        new(Render(context, subject, connectionId), s_verbatim);

    /// <summary>The value of a template made by <see cref="ParseValue"/>, for one upgrade; nothing is encoded.</summary>
    internal string ResolveValue(UpgradeContext upgrade) => Render(upgrade.HttpContext, upgrade.Subject, upgrade.ConnectionId);

    /// <summary>
    /// The target with every expression empty (route values, query, headers, subject): what a health check that
    /// has no request to take values from connects to.
    /// </summary>
    internal Uri ResolveWithoutRequest() => new(Render(null, null, null), s_verbatim);

    private string Render(HttpContext? context, string? subject, string? connectionId)
    {
        var builder = new StringBuilder(Pattern.Length + 32);
        foreach (var segment in _segments)
        {
            if (segment.Kind == ExpressionKind.Literal)
            {
                builder.Append(segment.Literal);
                continue;
            }

            var value = context is null ? (segment.Kind == ExpressionKind.Env ? segment.Literal! : string.Empty) : segment.Kind switch
            {
                ExpressionKind.Params => Convert.ToString(context.Request.RouteValues[segment.Name!], CultureInfo.InvariantCulture) ?? string.Empty,
                ExpressionKind.Query => context.Request.Query[segment.Name!].ToString(),
                ExpressionKind.Headers => context.Request.Headers[segment.Name!].ToString(),
                ExpressionKind.Subject => subject ?? string.Empty,
                // The feature, not HttpContext.User: reading User would create an anonymous principal nobody asked for.
                ExpressionKind.Claims => context.Features.Get<IHttpAuthenticationFeature>()?.User?.FindFirst(segment.Name!)?.Value ?? string.Empty,
                ExpressionKind.ConnectionId => connectionId ?? string.Empty,
                _ => segment.Literal!, // ExpressionKind.Env: read when parsed.
            };
            if (_isValue)
            {
                builder.Append(value);
            }
            else if (segment.CatchAll)
            {
                // A catch-all ({**rest}) spans path segments: encode each one and keep the slashes.
                var parts = value.Split('/');
                for (var i = 0; i < parts.Length; i++)
                {
                    builder.Append(i == 0 ? string.Empty : "/").Append(Escape(parts[i]));
                }
            }
            else
            {
                builder.Append(Escape(value));
            }
        }

        return builder.ToString();
    }

    private static readonly UriCreationOptions s_verbatim = new() { DangerousDisablePathAndQueryCanonicalization = true };

    /// <summary>
    /// URL-encodes a value. "." and ".." are refused: EscapeDataString leaves them as they are, and encoding them does
    /// not help either, since RFC 3986 makes %2E the same as "." and many backends (nginx, WHATWG URL parsers) decode
    /// it before removing dot segments. "?room=.." must not climb out of the pattern's path.
    /// </summary>
    private static string Escape(string value) => value is "." or ".."
        ? throw new FormatException($"the value '{value}' cannot be placed in a backend path")
        : Uri.EscapeDataString(value);

    private enum ExpressionKind
    {
        Literal,
        Params,
        Query,
        Headers,
        Subject,
        Claims,
        ConnectionId,
        Env,
    }

    /// <summary>A piece of the pattern: literal text, or an expression (an <c>env</c> one holds its value as read).</summary>
    private readonly record struct Segment(string? Literal, string? Name, ExpressionKind Kind, bool CatchAll)
    {
        public static Segment Text(string literal) => new(literal, null, ExpressionKind.Literal, false);
    }
}
