using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration.Validation;

// The rules about values that the model's types and attributes cannot say. Each validator checks one part of a read
// model and adds what is wrong to the errors; none changes the model.

/// <summary>Checks <c>listen</c>.</summary>
internal static class ListenValidator
{
    public static void Validate(IReadOnlyList<string> listen, bool hasTls, ConfigErrors errors)
    {
        for (var i = 0; i < listen.Count; i++)
        {
            // Kestrel's forms (http://*:80, http://+:80, http://localhost:80) are not all URIs: check the scheme only.
            if (IsHttps(listen[i]))
            {
                if (!hasTls)
                {
                    errors.Add($"listen[{i}]", $"'{listen[i]}' needs a certificate: add \"tls\": {{ \"certificate\": \"FILE.pem\", \"key\": \"FILE.key\" }}");
                }
                else if (listen[i].Length <= "https://".Length)
                {
                    errors.Add($"listen[{i}]", $"'{listen[i]}' is not an https:// URL");
                }
            }
            else if (!listen[i].StartsWith("http://", StringComparison.OrdinalIgnoreCase) || listen[i].Length <= "http://".Length)
            {
                errors.Add($"listen[{i}]", $"'{listen[i]}' is not an http:// or https:// URL");
            }
        }
    }

    public static bool IsHttps(string url) => url.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
}

/// <summary>Checks <c>admin</c>.</summary>
internal static class AdminValidator
{
    public static void Validate(AdminModel admin, ConfigErrors errors)
    {
        var path = admin.Path;
        if (!path.StartsWith('/') || (path.Length > 1 && path.EndsWith('/')) || path.Contains('{', StringComparison.Ordinal))
        {
            errors.Add("admin.path", $"'{path}' must start with '/', not end with one, and hold no route parameters");
        }

        // A value the reader already refused (an unset env:NAME, left as its placeholder) is not also judged too short;
        // the recorded error says so, not the text of the value.
        if (admin.ApiKey is { Length: < 16 } && !errors.AnyAtOrUnder("admin.apiKey"))
        {
            errors.Add("admin.apiKey", "must be at least 16 characters");
        }
    }
}

/// <summary>Checks <c>backplane</c>.</summary>
internal static class BackplaneValidator
{
    public static IReadOnlyList<string> Known { get; } = ["redis"];

    public static void Validate(BackplaneModel backplane, ConfigErrors errors)
    {
        if (!Known.Contains(backplane.Type))
        {
            errors.Add("backplane.type", $"unknown backplane '{backplane.Type}' (known: {string.Join(", ", Known)})");
        }

        if (backplane.NodeId is { } nodeId && (nodeId.Length is 0 or > 64 || !nodeId.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')))
        {
            errors.Add("backplane.nodeId", "must be 1 to 64 letters, digits, '.', '_' or '-'");
        }
    }

    /// <summary><c>"scope": "cluster"</c> counts in the backplane's Redis: without a backplane there is nothing to share the budget through.</summary>
    public static void ValidateScopes(IReadOnlyList<PolicyDefinition> definitions, BackplaneModel? backplane, ConfigErrors errors)
    {
        if (backplane is not null)
        {
            return;
        }

        foreach (var definition in definitions)
        {
            if (definition.Options is Sluice.Policies.RateLimitPolicyOptions { Scope: Sluice.Policies.RateLimitScope.Cluster }
                or Sluice.Policies.ConnectionRateLimitPolicyOptions { Scope: Sluice.Policies.RateLimitScope.Cluster })
            {
                errors.Add($"policies.{definition.Name}.options.scope", "\"cluster\" shares the budget through the backplane's Redis, and the file has no backplane: add one, or use \"node\"");
            }
        }
    }
}
