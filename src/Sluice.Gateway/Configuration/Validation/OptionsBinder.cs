using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
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

        object? options;
        try
        {
            options = node.Deserialize(optionsType, PolicyJson.OptionsBinding);
        }
        catch (JsonException ex)
        {
            var member = ex.Path is { Length: > 2 } jsonPath ? path + jsonPath[1..] : path;
            var (message, hint) = DescribeBindingError(ex, optionsType);
            errors.Add(member, message, hint);
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

    private static (string Message, string? Hint) DescribeBindingError(JsonException ex, Type optionsType)
    {
        if (ex.Message.Contains("could not be mapped", StringComparison.Ordinal))
        {
            var member = ex.Path?.Split('.', '[').LastOrDefault() ?? "?";
            var known = optionsType.GetProperties().Where(p => p.CanWrite)
                .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).Cast<JsonPropertyNameAttribute>().FirstOrDefault()?.Name
                    ?? JsonNamingPolicy.CamelCase.ConvertName(p.Name))
                .ToList();
            var hint = ConfigError.DidYouMean(member, known);
            return hint is null ? ($"unknown option (known: {string.Join(", ", known)})", null) : ("unknown option", hint);
        }

        var name = ex.Path?.Split('.', '[').LastOrDefault();
        var property = optionsType.GetProperties().FirstOrDefault(p => string.Equals(JsonNamingPolicy.CamelCase.ConvertName(p.Name), name, StringComparison.Ordinal));
        var type = property is null ? null : Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        if (type is { IsEnum: true })
        {
            return ($"must be one of {string.Join(", ", Enum.GetNames(type).Select(JsonNamingPolicy.KebabCaseLower.ConvertName))}", null);
        }

        if (type is not null)
        {
            return ($"must be {TypeName(type)}", null);
        }

        return (ConfigReader.FirstSentence(ex.Message.Replace("The JSON value could not be converted to", "expected a value of type", StringComparison.Ordinal)), null);
    }

    private static string TypeName(Type type) => type switch
    {
        _ when type == typeof(string) => "a string",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(int) || type == typeof(long) => "a whole number",
        _ when type == typeof(double) => "a number",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>) => "a list",
        _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>) => "an object",
        _ => "an object",
    };
}
