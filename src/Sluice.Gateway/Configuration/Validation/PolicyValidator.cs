using System.Text.Json.Nodes;
using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Plugins;
using Sluice.Policies;

namespace Sluice.Gateway.Configuration.Validation;

/// <summary>A policy definition, resolved: its type, its bound and checked options, its condition.</summary>
/// <param name="Fingerprint">What identifies the definition, so that a reload keeps an unchanged policy and its state.</param>
internal sealed record PolicyDefinition(string Name, PolicyType Type, object Options, PolicyCondition? When, string Fingerprint);

/// <summary>Checks <c>policies</c>: resolves each type (built-in or plugin), binds and checks its options and <c>when</c>.</summary>
internal static class PolicyValidator
{
    /// <returns>The definitions without errors, which can be created.</returns>
    public static IReadOnlyList<PolicyDefinition> Validate(IReadOnlyDictionary<string, PolicyModel> policies, PluginCatalog plugins, string baseDirectory, ConfigErrors errors)
    {
        var result = new List<PolicyDefinition>();
        foreach (var (name, policy) in policies)
        {
            var path = $"policies.{name}";
            var typeName = policy.Type;
            if (ResolveType(typeName, $"{path}.type", plugins, errors) is not { } type)
            {
                continue;
            }

            var optionsNode = policy.Options ?? new JsonObject();
            var options = OptionsBinder.Bind(optionsNode, type.OptionsType, $"{path}.options", errors);
            PolicyCondition? when = null;
            if (policy.When is { } whenNode)
            {
                if (type.Kind == PolicyKind.Upgrade)
                {
                    errors.Add($"{path}.when", "an upgrade policy runs once per connection; 'when' applies to message policies only");
                }
                else if ((when = OptionsBinder.Bind(whenNode, typeof(PolicyCondition), $"{path}.when", errors) as PolicyCondition) is null)
                {
                    continue;
                }
            }

            if (options is not null)
            {
                result.Add(new PolicyDefinition(name, type, options, when, $"{typeName}|{optionsNode.ToJsonString()}|{policy.When?.ToJsonString()}|{baseDirectory}|{ScriptFingerprint(options, baseDirectory)}"));
            }
        }

        return result;
    }

    /// <summary>
    /// A script file's content is part of its policy's identity: a reload re-reads a changed script even when the
    /// configuration's text did not change, and keeps an unchanged one (and its connections' state).
    /// </summary>
    private static string ScriptFingerprint(object options, string baseDirectory)
    {
        if (options is not ScriptPolicyOptions { File: { } file })
        {
            return string.Empty;
        }

        try
        {
            return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.GetFullPath(file, baseDirectory))));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // Creating the policy reports the missing or unreadable file with its path.
            return string.Empty;
        }
    }

    private static PolicyType? ResolveType(string typeName, string path, PluginCatalog plugins, ConfigErrors errors)
    {
        if (BuiltInPolicyTypes.All.TryGetValue(typeName, out var builtIn))
        {
            return builtIn;
        }

        if (!PluginCatalog.IsTypeName(typeName))
        {
            var known = $"(built-in: {string.Join(", ", BuiltInPolicyTypes.All.Keys)}; or a plugin type 'Namespace.Type, Assembly')";
            var hint = ConfigError.DidYouMean(typeName, BuiltInPolicyTypes.All.Keys);
            errors.Add(path, hint is null ? $"unknown policy type '{typeName}' {known}" : $"unknown policy type '{typeName}'", hint is null ? null : $"{hint} {known}");
            return null;
        }

        var type = plugins.Find(typeName, out var error);
        if (type is null)
        {
            errors.Add(path, error!);
            return null;
        }

        var described = PluginCatalog.DescribePolicy(type, typeName, out error);
        if (described is null)
        {
            errors.Add(path, error!);
        }

        return described;
    }
}

/// <summary>Checks the policy names routes list under <c>upgrade</c>, <c>inbound</c> and <c>outbound</c> against the created policies.</summary>
internal static class PolicyReferenceValidator
{
    public static void Validate(IReadOnlyList<RouteModel?> routes, IReadOnlyDictionary<string, PolicyInstance> created, ConfigErrors errors)
    {
        for (var i = 0; i < routes.Count; i++)
        {
            if (routes[i] is { } route)
            {
                Check(route.Upgrade, $"routes[{i}].upgrade", PolicyKind.Upgrade, created, errors);
                Check(route.Inbound, $"routes[{i}].inbound", PolicyKind.Message, created, errors);
                Check(route.Outbound, $"routes[{i}].outbound", PolicyKind.Message, created, errors);
            }
        }
    }

    private static void Check(IReadOnlyList<string> names, string path, PolicyKind kind, IReadOnlyDictionary<string, PolicyInstance> created, ConfigErrors errors)
    {
        for (var i = 0; i < names.Count; i++)
        {
            var at = $"{path}[{i}]";
            if (!created.TryGetValue(names[i], out var policy))
            {
                // A policy whose own definition has errors is not created, and is already reported.
                if (!errors.AnyAtOrUnder($"policies.{names[i]}"))
                {
                    errors.Add(at, $"unknown policy '{names[i]}'", ConfigError.DidYouMean(names[i], created.Keys));
                }
            }
            else if (policy.Kind != kind)
            {
                errors.Add(at, kind == PolicyKind.Message
                    ? $"'{names[i]}' is an upgrade policy: list it under upgrade"
                    : $"'{names[i]}' is a message policy: list it under inbound or outbound");
            }
        }
    }
}
