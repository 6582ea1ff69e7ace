using Microsoft.AspNetCore.Http;

namespace Sluice.Policies;

/// <summary>Options of <see cref="OriginPolicy"/> (<c>origin</c>).</summary>
public sealed class OriginPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the exact origins allowed (<c>https://app.example.com</c>); <c>*</c> allows any, only if written.</summary>
    public List<string> Allow { get; set; } = [];

    /// <summary>
    /// Gets or sets whether a request without an <c>Origin</c> header is refused. Default: false, since only
    /// browsers send one and cross-site WebSocket hijacking needs a browser; set it to admit browsers only.
    /// </summary>
    public bool RequireOrigin { get; set; }

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Allow.Count == 0)
        {
            yield return new("allow", "list at least one origin (or \"*\")");
        }

        for (var i = 0; i < Allow.Count; i++)
        {
            if (Allow[i] != "*" && (!Uri.TryCreate(Allow[i], UriKind.Absolute, out var uri) || uri.PathAndQuery != "/" || Allow[i].EndsWith('/')))
            {
                yield return new($"allow[{i}]", $"'{Allow[i]}' is not an origin (scheme://host[:port], no path)");
            }
        }
    }
}

/// <summary>
/// <c>origin</c>: the browser's <c>Origin</c> header must be one of the allowed origins, exactly: the defence
/// against cross-site WebSocket hijacking, since browsers send cookies with WebSocket upgrades and apply no CORS
/// to them. A disallowed origin gets 403.
/// </summary>
public sealed class OriginPolicy : IUpgradePolicy
{
    private readonly HashSet<string> _allowed;
    private readonly bool _any;
    private readonly bool _requireOrigin;

    /// <summary>Creates the policy.</summary>
    public OriginPolicy(OriginPolicyOptions options, string name = "origin")
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        Name = name;
        _any = options.Allow.Contains("*");
        _allowed = new HashSet<string>(options.Allow, StringComparer.OrdinalIgnoreCase);
        _requireOrigin = options.RequireOrigin;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public ValueTask<UpgradeResult> EvaluateAsync(UpgradeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var origin = context.HttpContext.Request.Headers.Origin.ToString();
        var allowed = origin.Length == 0 ? !_requireOrigin : _any || _allowed.Contains(origin);
        return new ValueTask<UpgradeResult>(allowed
            ? UpgradeResult.Continue()
            : UpgradeResult.Reject(StatusCodes.Status403Forbidden, origin.Length == 0 ? "an Origin header is required" : $"origin not allowed: {origin}"));
    }
}
