using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Sluice;

/// <summary>
/// A backend URL pattern, <c>ws://host:port/rooms/${params.room}?user=${query.user}</c>: <c>${params.NAME}</c>
/// takes a route value and <c>${query.NAME}</c> a query value of the client's request, each URL-encoded. Values
/// may only land in the path and query, never in the scheme or host. Parsed and checked once, when the endpoint
/// is built (or by a configuration validator, before anything runs).
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
            var dot = expression.IndexOf('.', StringComparison.Ordinal);
            var source = dot < 0 ? expression : expression[..dot];
            var name = dot < 0 ? string.Empty : expression[(dot + 1)..];
            if (name.Length == 0 || source is not ("params" or "query"))
            {
                throw new FormatException($"'{pattern}': '${{{expression}}}' is neither ${{params.NAME}} nor ${{query.NAME}}.");
            }

            var parameter = source == "params" ? route.GetParameter(name) : null;
            if (source == "params" && parameter is null)
            {
                var known = string.Join(", ", route.Parameters.Select(p => p.Name));
                throw new FormatException($"'{pattern}': unknown route parameter '{name}' (the route has: {(known.Length == 0 ? "none" : known)})");
            }

            if (literal.Length > 0)
            {
                segments.Add(new Segment(literal.ToString(), null, false, false));
                literal.Clear();
            }

            segments.Add(new Segment(null, name, source == "query", parameter?.IsCatchAll == true));
            i = end + 1;
        }

        if (literal.Length > 0)
        {
            segments.Add(new Segment(literal.ToString(), null, false, false));
        }

        // Values may only land in the path and query: a client must never choose the host it reaches.
        var prefix = segments.Count > 0 && segments[0].Literal is { } first ? first : string.Empty;
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

    /// <summary>Builds the backend URL for one upgrade request.</summary>
    /// <exception cref="FormatException">A value is "." or "..", which would change the backend path's meaning.</exception>
    public Uri Resolve(HttpContext context)
    {
        var builder = new StringBuilder(Pattern.Length + 32);
        foreach (var segment in _segments)
        {
            if (segment.Literal is not null)
            {
                builder.Append(segment.Literal);
                continue;
            }

            var value = segment.FromQuery
                ? context.Request.Query[segment.Name!].ToString()
                : Convert.ToString(context.Request.RouteValues[segment.Name!], System.Globalization.CultureInfo.InvariantCulture) ?? string.Empty;
            if (segment.CatchAll)
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

        // Without canonicalization: Uri would otherwise decode %2E and remove the dot segments the values made.
        return new Uri(builder.ToString(), s_verbatim);
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

    private readonly record struct Segment(string? Literal, string? Name, bool FromQuery, bool CatchAll);
}
