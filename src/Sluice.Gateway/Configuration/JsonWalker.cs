using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.Gateway.Configuration;

/// <summary>
/// Reads a configuration tree while collecting every problem with its JSON path, so that one run of
/// <c>--check</c> reports everything that is wrong rather than the first thing.
/// </summary>
internal sealed class JsonWalker
{
    private readonly List<string> _errors = [];

    public IReadOnlyList<string> Errors => _errors;

    /// <summary>The values read from <c>env:NAME</c> references, to be shown as <c>env:NAME</c>, never as themselves.</summary>
    public SecretValues Secrets { get; } = new();

    /// <summary>Records a problem; a second problem at the same path is not repeated (one cause, one line).</summary>
    public void Error(string path, string message)
    {
        var prefix = path + ": ";
        if (!_errors.Exists(e => e.StartsWith(prefix, StringComparison.Ordinal)))
        {
            _errors.Add(prefix + message);
        }
    }

    public JsonObject? Object(JsonNode? node, string path, bool required = false)
    {
        switch (node)
        {
            case JsonObject obj:
                return obj;
            case null when !required:
                return null;
            case null:
                Error(path, "is required");
                return null;
            default:
                Error(path, $"must be an object, not {Describe(node)}");
                return null;
        }
    }

    /// <summary>Reports every key of <paramref name="obj"/> that is not one of <paramref name="known"/>, with a suggestion.</summary>
    public void KnownKeys(JsonObject obj, string path, params string[] known)
    {
        foreach (var (key, _) in obj)
        {
            if (Array.IndexOf(known, key) < 0)
            {
                var suggestion = Suggest(key, known);
                Error(Join(path, key), suggestion is null
                    ? $"unknown key (known: {string.Join(", ", known)})"
                    : $"unknown key; did you mean '{suggestion}'?");
            }
        }
    }

    public string? String(JsonObject obj, string key, string path, bool required = false)
    {
        var node = obj[key];
        if (node is null)
        {
            if (required)
            {
                Error(Join(path, key), "is required");
            }

            return null;
        }

        if (node is JsonValue value && value.TryGetValue(out string? text))
        {
            return text;
        }

        Error(Join(path, key), $"must be a string, not {Describe(node)}");
        return null;
    }

    public double? Number(JsonObject obj, string key, string path, double min, double max)
    {
        var node = obj[key];
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue value && value.GetValueKind() == JsonValueKind.Number && value.TryGetValue(out double number))
        {
            if (number < min || number > max)
            {
                Error(Join(path, key), $"must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}");
                return null;
            }

            return number;
        }

        Error(Join(path, key), $"must be a number, not {Describe(node)}");
        return null;
    }

    public int? Integer(JsonObject obj, string key, string path, int min, int max = int.MaxValue)
    {
        var number = Number(obj, key, path, min, max);
        if (number is { } n && n != Math.Floor(n))
        {
            Error(Join(path, key), "must be a whole number");
            return null;
        }

        return number is null ? null : (int)number.Value;
    }

    public bool? Boolean(JsonObject obj, string key, string path)
    {
        var node = obj[key];
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue value && value.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
        {
            return value.GetValue<bool>();
        }

        Error(Join(path, key), $"must be true or false, not {Describe(node)}");
        return null;
    }

    /// <summary>A list of strings; a single string is accepted where <paramref name="allowSingle"/> says so.</summary>
    public List<string> Strings(JsonObject obj, string key, string path, bool allowSingle = false)
    {
        var result = new List<string>();
        var node = obj[key];
        var keyPath = Join(path, key);
        switch (node)
        {
            case null:
                return result;
            case JsonValue single when allowSingle && single.TryGetValue(out string? text):
                result.Add(text);
                return result;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is JsonValue item && item.TryGetValue(out string? s))
                    {
                        result.Add(s);
                    }
                    else
                    {
                        Error($"{keyPath}[{i}]", $"must be a string, not {Describe(array[i])}");
                    }
                }

                return result;
            default:
                Error(keyPath, $"must be a list of strings, not {Describe(node)}");
                return result;
        }
    }

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

    /// <summary>The known name closest to a misspelt one, if any is close enough to be a likely typo.</summary>
    public static string? Suggest(string name, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in known)
        {
            var distance = Distance(name.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                bestDistance = distance;
                best = candidate;
            }
        }

        return best is not null && bestDistance <= Math.Max(2, best.Length / 4) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}

/// <summary>
/// The values that came from the environment (<c>env:NAME</c>): the contract says they are never logged, so any text the
/// gateway prints about the configuration (errors, the start banner, the dashboard) shows <c>env:NAME</c> instead.
/// </summary>
internal sealed class SecretValues
{
    private readonly List<(string Value, string Reference)> _values = [];

    public void Add(string value, string name)
    {
        // A very short value would mask unrelated text; such values are not secrets worth hiding anyway.
        if (value.Length >= 4)
        {
            _values.Add((value, "env:" + name));
            _values.Sort((a, b) => b.Value.Length.CompareTo(a.Value.Length));
        }
    }

    public string Conceal(string text)
    {
        foreach (var (value, reference) in _values)
        {
            text = text.Replace(value, reference, StringComparison.Ordinal);
        }

        return text;
    }
}
