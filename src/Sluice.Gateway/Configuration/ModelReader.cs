using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration;

/// <summary>
/// Reads a JSON tree into the model records of <see cref="Model"/>, recording every problem of shape with its JSON
/// path rather than stopping at the first (System.Text.Json's deserializer stops at the first): a key no property
/// declares, a value of the wrong kind, a missing <see cref="RequiredAttribute"/> value, a number outside its
/// <see cref="RangeAttribute"/>, a list shorter than its <see cref="MinLengthAttribute"/>. A value with a problem is
/// left at the property's default, so the validators that run next see a whole model.
/// </summary>
internal sealed class ModelReader(ConfigErrors errors)
{
    private static readonly ConcurrentDictionary<Type, ModelProperty[]> s_properties = new();

    /// <summary>Reads the file's root object (its path is <c>(file)</c>; its keys' paths have no prefix).</summary>
    public GatewayFile? ReadFile(JsonNode? root) => root switch
    {
        JsonObject obj => (GatewayFile)ReadRecord(obj, typeof(GatewayFile), string.Empty),
        null => Fail<GatewayFile>("(file)", "is required"),
        _ => Fail<GatewayFile>("(file)", $"must be an object, not {Describe(root)}"),
    };

    /// <summary>Reads an object at <paramref name="path"/> into a record of type <paramref name="type"/>; null if it is not an object.</summary>
    public object? Read(JsonNode? node, Type type, string path) => Read(node, type, path, null);

    public static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    public static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "a list",
        JsonValue value => value.GetValueKind() switch
        {
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            _ => "a value",
        },
        _ => "a value",
    };

    private T? Fail<T>(string path, string message)
        where T : class
    {
        errors.Add(path, message);
        return null;
    }

    private object ReadRecord(JsonObject obj, Type type, string path)
    {
        var properties = PropertiesOf(type);
        foreach (var (key, _) in obj)
        {
            if (!properties.Any(p => p.Key == key))
            {
                var known = properties.Select(p => p.Key).ToList();
                var hint = ConfigError.DidYouMean(key, known);
                errors.AddUnknownKey(path, Join(path, key), hint is null ? $"unknown key (known: {string.Join(", ", known)})" : "unknown key", hint);
            }
        }

        var record = Activator.CreateInstance(type)!;
        foreach (var property in properties)
        {
            var keyPath = Join(path, property.Key);
            // An explicit null is the same as a missing key: the default applies.
            var node = obj[property.Key];
            if (node is null)
            {
                if (property.Required is { } required)
                {
                    errors.Add(keyPath, required.ErrorMessage ?? "is required");
                }

                continue;
            }

            if (Read(node, property.Info.PropertyType, keyPath, property) is { } value)
            {
                property.Info.SetValue(record, value);
            }
        }

        return record;
    }

    private object? Read(JsonNode? node, Type type, string path, ModelProperty? property)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(JsonNode))
        {
            return node?.DeepClone();
        }

        if (type == typeof(string))
        {
            return node is JsonValue value && value.TryGetValue(out string? text) ? text : Fail<object>(path, $"must be a string, not {Describe(node)}");
        }

        if (type == typeof(bool))
        {
            return node is JsonValue value && value.GetValueKind() is JsonValueKind.True or JsonValueKind.False
                ? value.GetValue<bool>()
                : Fail<object>(path, $"must be true or false, not {Describe(node)}");
        }

        if (type == typeof(int) || type == typeof(double))
        {
            return ReadNumber(node, type == typeof(int), path, property?.Range);
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IReadOnlyList<>))
        {
            return ReadList(node, type.GetGenericArguments()[0], path, property);
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IReadOnlyDictionary<,>))
        {
            if (node is not JsonObject map)
            {
                return Fail<object>(path, $"must be an object, not {Describe(node)}");
            }

            var valueType = type.GetGenericArguments()[1];
            var dictionary = (System.Collections.IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(typeof(string), valueType), StringComparer.Ordinal)!;
            foreach (var (key, child) in map)
            {
                if (ReadElement(child, valueType, $"{path}.{key}") is { } item)
                {
                    dictionary[key] = item;
                }
            }

            return dictionary;
        }

        return node is JsonObject obj ? ReadRecord(obj, type, path) : Fail<object>(path, $"must be an object, not {Describe(node)}");
    }

    /// <summary>An element of a list or a map: a missing one is reported as missing.</summary>
    private object? ReadElement(JsonNode? node, Type type, string path) =>
        node is null && type != typeof(string) ? Fail<object>(path, "is required") : Read(node, type, path, null);

    private object? ReadList(JsonNode? node, Type itemType, string path, ModelProperty? property)
    {
        var list = (System.Collections.IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(itemType))!;
        switch (node)
        {
            case JsonValue single when itemType == typeof(string) && property?.SingleOrList == true && single.TryGetValue(out string? text):
                list.Add(text);
                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    // A string with a problem is left out (and reported); a record with one stays as null, so that the
                    // validators still name routes[i] by its index in the file.
                    var item = ReadElement(array[i], itemType, $"{path}[{i}]");
                    if (item is not null || itemType != typeof(string))
                    {
                        list.Add(item);
                    }
                }

                if (property?.MinLength is { } minLength && array.Count < minLength.Length)
                {
                    errors.Add(path, minLength.ErrorMessage ?? $"must list at least {minLength.Length}");
                }

                break;
            default:
                return Fail<object>(path, itemType == typeof(string) ? $"must be a list of strings, not {Describe(node)}" : $"must be a list, not {Describe(node)}");
        }

        return list;
    }

    private object? ReadNumber(JsonNode? node, bool whole, string path, RangeAttribute? range)
    {
        if (node is not JsonValue value || value.GetValueKind() != JsonValueKind.Number || !value.TryGetValue(out double number))
        {
            return Fail<object>(path, $"must be a number, not {Describe(node)}");
        }

        if (range is not null)
        {
            var (min, max) = (Convert.ToDouble(range.Minimum, CultureInfo.InvariantCulture), Convert.ToDouble(range.Maximum, CultureInfo.InvariantCulture));
            if (number < min || number > max)
            {
                return Fail<object>(path, $"must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}");
            }
        }

        if (!whole)
        {
            return number;
        }

        if (number != Math.Floor(number))
        {
            return Fail<object>(path, "must be a whole number");
        }

        return number is >= int.MinValue and <= int.MaxValue ? (int)number : Fail<object>(path, $"must be between {int.MinValue} and {int.MaxValue}");
    }

    private static ModelProperty[] PropertiesOf(Type type) => s_properties.GetOrAdd(type, static t =>
    [
        .. t.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).Select(p => new ModelProperty(
            p,
            p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? JsonNamingPolicy.CamelCase.ConvertName(p.Name),
            p.GetCustomAttribute<RequiredAttribute>(),
            p.GetCustomAttribute<RangeAttribute>(),
            p.GetCustomAttribute<MinLengthAttribute>(),
            p.IsDefined(typeof(SingleOrListAttribute)))),
    ]);

    private sealed record ModelProperty(PropertyInfo Info, string Key, RequiredAttribute? Required, RangeAttribute? Range, MinLengthAttribute? MinLength, bool SingleOrList);
}
