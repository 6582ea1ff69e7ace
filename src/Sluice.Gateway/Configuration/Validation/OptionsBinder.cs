using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Sluice.Gateway.Plugins;
using Sluice.Policies;
using Sluice.Policies.Json;

namespace Sluice.Gateway.Configuration.Validation;

/// <summary>
/// Binds the options of a policy or a plugin handler to their class with the policies' own rules
/// (<see cref="PolicyJson.OptionsBinding"/>: unknown members are errors), then runs their <see cref="IPolicyOptions.Validate"/>.
/// </summary>
internal static class OptionsBinder
{
    /// <returns>The options, or null when they have errors (reported at their paths).</returns>
    public static object? Bind(JsonNode node, Type optionsType, string path, ConfigErrors errors)
    {
        if (optionsType == typeof(PluginCatalog.NoOptions))
        {
            if (node is not JsonObject { Count: 0 })
            {
                errors.Add(path, "this type takes no options");
                return null;
            }

            return new PluginCatalog.NoOptions();
        }

        var typeInfo = PolicyJson.OptionsBinding.GetTypeInfo(optionsType);

        // Unknown members are found here, from the binding's own contract (so [JsonPropertyName] and case-insensitivity
        // count), rather than recognised afterwards in the deserializer's exception text.
        if (FindUnknownMember(node, typeInfo, path) is { } unknown)
        {
            var hint = ConfigError.DidYouMean(unknown.Name, unknown.Known);
            errors.Add(unknown.Path, hint is null ? $"unknown option (known: {string.Join(", ", unknown.Known)})" : "unknown option", hint);
            return null;
        }

        object? options;
        try
        {
            options = node.Deserialize(typeInfo);
        }
        catch (JsonException ex)
        {
            // With unknown members ruled out, what is left is a value of the wrong type, at ex.Path.
            var member = ex.Path is { Length: > 2 } jsonPath ? path + jsonPath[1..] : path;
            errors.Add(member, DescribeTypeError(ex, typeInfo));
            return null;
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or ArgumentException)
        {
            errors.Add(path, ex.Message);
            return null;
        }

        if (options is null)
        {
            errors.Add(path, "must be an object");
            return null;
        }

        if (options is IPolicyOptions validatable)
        {
            foreach (var error in validatable.Validate())
            {
                AddOptionError(path, error, errors);
            }

            if (errors.AnyAtOrUnder(path))
            {
                return null;
            }
        }

        return options;
    }

    /// <summary>
    /// Records a problem that Sluice.Policies reports (<see cref="IPolicyOptions.Validate"/>,
    /// <see cref="PolicyConfigurationException.OptionErrors"/>) at its member's path under the options.
    /// </summary>
    public static void AddOptionError(string optionsPath, PolicyOptionError error, ConfigErrors errors) =>
        errors.Add(error.Member is { Length: > 0 } member ? $"{optionsPath}.{member}" : optionsPath, error.Message);

    /// <summary>
    /// The first member, in the order of the file, that the binding's contract for <paramref name="info"/> (or a type
    /// under it) does not have: its path in the file, its name and the names that type does have.
    /// </summary>
    private static (string Path, string Name, IReadOnlyList<string> Known)? FindUnknownMember(JsonNode? node, JsonTypeInfo info, string path)
    {
        switch (info.Kind)
        {
            case JsonTypeInfoKind.Object when node is JsonObject obj && !info.Properties.Any(p => p.IsExtensionData):
                var comparison = info.Options.PropertyNameCaseInsensitive ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
                foreach (var (name, value) in obj)
                {
                    var property = info.Properties.FirstOrDefault(p => string.Equals(p.Name, name, comparison));
                    if (property is null)
                    {
                        return ($"{path}.{name}", name, [.. info.Properties.Where(p => p.Set is not null).Select(p => p.Name)]);
                    }

                    if (FindUnknownMember(value, info.Options.GetTypeInfo(property.PropertyType), $"{path}.{name}") is { } nested)
                    {
                        return nested;
                    }
                }

                return null;

            case JsonTypeInfoKind.Enumerable when node is JsonArray array:
                var items = info.Options.GetTypeInfo(info.ElementType!);
                for (var i = 0; i < array.Count; i++)
                {
                    if (FindUnknownMember(array[i], items, $"{path}[{i}]") is { } nested)
                    {
                        return nested;
                    }
                }

                return null;

            case JsonTypeInfoKind.Dictionary when node is JsonObject map:
                var values = info.Options.GetTypeInfo(info.ElementType!);
                foreach (var (key, value) in map)
                {
                    if (FindUnknownMember(value, values, $"{path}.{key}") is { } nested)
                    {
                        return nested;
                    }
                }

                return null;

            default:
                // A value (or JsonNode) has no members; a value of the wrong kind is the deserializer's to report.
                return null;
        }
    }

    private static string DescribeTypeError(JsonException ex, JsonTypeInfo info)
    {
        // The deserializer's path names a top-level option as $.name; deeper paths get the general message.
        var property = info.Kind == JsonTypeInfoKind.Object
            ? info.Properties.FirstOrDefault(p => string.Equals($"$.{p.Name}", ex.Path, StringComparison.OrdinalIgnoreCase))
            : null;
        var type = property is null ? null : Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        if (type is null && TypeAt(info, ex.Path) is { } deep && (Nullable.GetUnderlyingType(deep) ?? deep) == typeof(DateTimeOffset))
        {
            // A member of a list item, such as api-key's keys[i].expiresAt.
            type = typeof(DateTimeOffset);
        }

        if (type is { IsEnum: true })
        {
            return $"must be one of {string.Join(", ", Enum.GetNames(type).Select(JsonNamingPolicy.KebabCaseLower.ConvertName))}";
        }

        if (type is not null)
        {
            return $"must be {TypeName(type)}";
        }

        return ConfigReader.FirstSentence(ex.Message.Replace("The JSON value could not be converted to", "expected a value of type", StringComparison.Ordinal));
    }

    /// <summary>The type the binding's contract has at a deserializer path such as <c>$.keys[0].expiresAt</c>, or null.</summary>
    private static Type? TypeAt(JsonTypeInfo info, string? path)
    {
        if (path is null || !path.StartsWith('$'))
        {
            return null;
        }

        var current = info;
        foreach (var segment in path[1..].Replace("[", ".[", StringComparison.Ordinal).Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            if (segment.StartsWith('['))
            {
                if (current.Kind != JsonTypeInfoKind.Enumerable)
                {
                    return null;
                }

                current = current.Options.GetTypeInfo(current.ElementType!);
                continue;
            }

            var property = current.Kind == JsonTypeInfoKind.Object
                ? current.Properties.FirstOrDefault(p => string.Equals(p.Name, segment, StringComparison.OrdinalIgnoreCase))
                : null;
            if (property is null)
            {
                return null;
            }

            current = current.Options.GetTypeInfo(property.PropertyType);
        }

        return current.Type;
    }

    private static string TypeName(Type type) => type switch
    {
        _ when type == typeof(DateTimeOffset) => "a date and time in ISO 8601 (2026-12-31T23:59:59Z)",
        _ when type == typeof(string) => "a string",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(int) || type == typeof(long) => "a whole number",
        _ when type == typeof(double) => "a number",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>) => "a list",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>) => "an object",
        _ => "an object",
    };
}
