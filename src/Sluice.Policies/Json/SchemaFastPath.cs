using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace Sluice.Policies.Json;

/// <summary>What the fast path could decide about a document.</summary>
internal enum FastVerdict
{
    /// <summary>Valid: the message goes on without JsonSchema.Net.</summary>
    Valid,

    /// <summary>Invalid, or not decidable here (a number past double's range): JsonSchema.Net decides and explains.</summary>
    AskTheLibrary,
}

/// <summary>
/// A validator compiled from a schema that uses only the common structural keywords (type, properties, required,
/// additionalProperties, items, enum, const, lengths, bounds, counts). It answers "valid" for the messages that
/// are, which is most of them, at a fraction of JsonSchema.Net's cost; everything else (invalid messages, which need
/// the library's error text, and schemas or values outside the subset) goes to JsonSchema.Net, which stays the
/// authority. Its agreement with JsonSchema.Net is a property test (SchemaFastPathTests).
/// </summary>
internal sealed class SchemaFastPath
{
    // Longer names are looked up as strings.
    private const int MaxStackName = 128;

    private static readonly HashSet<string> s_annotations = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly",
    };

    private readonly bool? _always;
    private readonly JsonValueKind[]? _types;
    private readonly bool _integerOnly;
    // Every name "properties" or "required" mentions: its schema (null when it is only required) and its required bit
    // (0 when it is optional).
    private readonly Dictionary<string, Member>? _members;
    private readonly Dictionary<string, Member>.AlternateLookup<ReadOnlySpan<char>> _membersByChars;
    private readonly int _requiredCount;
    private readonly SchemaFastPath? _additional;
    private readonly SchemaFastPath? _items;
    private readonly JsonElement[]? _enum;
    private readonly JsonElement? _const;
    private readonly int? _minLength;
    private readonly int? _maxLength;
    private readonly decimal? _minimum;
    private readonly decimal? _maximum;
    private readonly decimal? _exclusiveMinimum;
    private readonly decimal? _exclusiveMaximum;
    private readonly int? _minItems;
    private readonly int? _maxItems;
    private readonly int? _minProperties;
    private readonly int? _maxProperties;

    private SchemaFastPath(bool always) => _always = always;

    private SchemaFastPath(JsonElement schema)
    {
        Dictionary<string, SchemaFastPath>? properties = null;
        string[]? required = null;
        foreach (var keyword in schema.EnumerateObject())
        {
            var value = keyword.Value;
            switch (keyword.Name)
            {
                case "type":
                    (_types, _integerOnly) = Types(value);
                    break;
                case "properties":
                    properties = new Dictionary<string, SchemaFastPath>(StringComparer.Ordinal);
                    foreach (var property in value.EnumerateObject())
                    {
                        properties[property.Name] = Compile(property.Value);
                    }

                    break;
                case "required":
                    // Distinct: a name required twice is required once.
                    required = [.. value.EnumerateArray().Select(e => e.GetString() ?? throw Unsupported()).Distinct(StringComparer.Ordinal)];
                    break;
                case "additionalProperties":
                    _additional = Compile(value);
                    break;
                case "items" when value.ValueKind is JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False:
                    _items = Compile(value);
                    break;
                case "enum":
                    _enum = [.. value.EnumerateArray().Select(e => e.Clone())];
                    break;
                case "const":
                    _const = value.Clone();
                    break;
                case "minLength":
                    _minLength = Count(value);
                    break;
                case "maxLength":
                    _maxLength = Count(value);
                    break;
                case "minimum":
                    _minimum = Exact(value);
                    break;
                case "maximum":
                    _maximum = Exact(value);
                    break;
                case "exclusiveMinimum" when value.ValueKind == JsonValueKind.Number:
                    _exclusiveMinimum = Exact(value);
                    break;
                case "exclusiveMaximum" when value.ValueKind == JsonValueKind.Number:
                    _exclusiveMaximum = Exact(value);
                    break;
                case "minItems":
                    _minItems = Count(value);
                    break;
                case "maxItems":
                    _maxItems = Count(value);
                    break;
                case "minProperties":
                    _minProperties = Count(value);
                    break;
                case "maxProperties":
                    _maxProperties = Count(value);
                    break;
                default:
                    if (!s_annotations.Contains(keyword.Name))
                    {
                        throw Unsupported();
                    }

                    break;
            }
        }

        if (properties is null && required is null)
        {
            return;
        }

        // A bit per required name, checked off as an object's members are read: no lookup by name per required one.
        if (required?.Length > 64)
        {
            throw Unsupported();
        }

        _members = new Dictionary<string, Member>(StringComparer.Ordinal);
        foreach (var (name, property) in properties ?? [])
        {
            _members[name] = new Member(property, 0);
        }

        foreach (var name in required ?? [])
        {
            _members[name] = _members.GetValueOrDefault(name) with { RequiredBit = 1UL << _requiredCount++ };
        }

        _membersByChars = _members.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Compiles <paramref name="schema"/>, or returns null when it uses anything outside the subset.</summary>
    public static SchemaFastPath? TryCompile(JsonNode? schema)
    {
        try
        {
            using var document = JsonDocument.Parse(schema?.ToJsonString() ?? "true");
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("$schema", out var dialect)
                && dialect.GetString() is { } uri && !uri.Contains("2020-12", StringComparison.Ordinal) && !uri.Contains("2019-09", StringComparison.Ordinal) && !uri.Contains("draft-07", StringComparison.Ordinal))
            {
                return null;
            }

            return Compile(document.RootElement);
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException or FormatException or JsonException)
        {
            return null;
        }
    }

    public FastVerdict Evaluate(JsonElement instance) => IsValid(instance) ? FastVerdict.Valid : FastVerdict.AskTheLibrary;

    private static SchemaFastPath Compile(JsonElement schema) => schema.ValueKind switch
    {
        JsonValueKind.True => new SchemaFastPath(true),
        JsonValueKind.False => new SchemaFastPath(false),
        JsonValueKind.Object => new SchemaFastPath(schema),
        _ => throw Unsupported(),
    };

    private bool IsValid(JsonElement instance)
    {
        if (_always is { } always)
        {
            return always;
        }

        if (_types is not null && !MatchesType(instance))
        {
            return false;
        }

        if (_enum is not null && !IsOneOf(_enum, instance))
        {
            return false;
        }

        if (_const is { } constant && !JsonElement.DeepEquals(constant, instance))
        {
            return false;
        }

        switch (instance.ValueKind)
        {
            case JsonValueKind.String when _minLength is not null || _maxLength is not null:
                var length = TextElements(instance);
                return length >= 0 && length >= (_minLength ?? 0) && length <= (_maxLength ?? int.MaxValue);
            case JsonValueKind.Number when _minimum is not null || _maximum is not null || _exclusiveMinimum is not null || _exclusiveMaximum is not null:
                // Exact comparison only: as doubles, 0.30000000000000001 would pass a maximum of 0.3.
                if (!TryExact(instance, out var number))
                {
                    return false;
                }

                return (_minimum is null || number >= _minimum) && (_maximum is null || number <= _maximum)
                    && (_exclusiveMinimum is null || number > _exclusiveMinimum) && (_exclusiveMaximum is null || number < _exclusiveMaximum);
            case JsonValueKind.Array:
                var items = instance.GetArrayLength();
                if (items < (_minItems ?? 0) || items > (_maxItems ?? int.MaxValue))
                {
                    return false;
                }

                if (_items is not null)
                {
                    foreach (var item in instance.EnumerateArray())
                    {
                        if (!_items.IsValid(item))
                        {
                            return false;
                        }
                    }
                }

                return true;
            case JsonValueKind.Object:
                return ObjectIsValid(instance);
            default:
                return true;
        }
    }

    private bool ObjectIsValid(JsonElement instance)
    {
        if (_members is null && _additional is null && _minProperties is null && _maxProperties is null)
        {
            return true;
        }

        var count = 0;
        var required = 0UL;
        foreach (var property in instance.EnumerateObject())
        {
            count++;
            if (!TryFind(property, out var member))
            {
                return false;
            }

            required |= member.RequiredBit;
            var schema = member.Schema ?? _additional;
            if (schema is not null && !schema.IsValid(property.Value))
            {
                return false;
            }
        }

        return BitOperations.PopCount(required) == _requiredCount
            && count >= (_minProperties ?? 0) && count <= (_maxProperties ?? int.MaxValue);
    }

    /// <summary>
    /// What the schema says of <paramref name="property"/>'s name (its schema and required bit, or nothing); false
    /// when the name cannot be read (ill-formed UTF-8, a lone surrogate), which only the library can explain.
    /// </summary>
    private bool TryFind(JsonProperty property, out Member member)
    {
        member = default;
        var raw = JsonMarshal.GetRawUtf8PropertyName(property);
        if (raw.Contains((byte)'\\'))
        {
            // Escaped names are rare: read as a string, which throws on what cannot be decoded.
            try
            {
                member = _members?.GetValueOrDefault(property.Name) ?? default;
                return true;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }

        // The parse does not check UTF-8 inside names (see TextElements), so every name is checked, looked up or not.
        if (!Ascii.IsValid(raw) && !Utf8.IsValid(raw))
        {
            return false;
        }

        if (_members is null)
        {
            return true;
        }

        // Names are short: decoded onto the stack and looked up without making a string.
        if (raw.Length > MaxStackName)
        {
            member = _members.GetValueOrDefault(Encoding.UTF8.GetString(raw));
            return true;
        }

        Span<char> name = stackalloc char[MaxStackName];
        var length = Encoding.UTF8.GetChars(raw, name);
        _membersByChars.TryGetValue(name[..length], out member);
        return true;
    }

    /// <summary>Whether <paramref name="instance"/> equals one of <paramref name="values"/>, as JSON Schema compares.</summary>
    private static bool IsOneOf(JsonElement[] values, JsonElement instance)
    {
        foreach (var value in values)
        {
            if (JsonElement.DeepEquals(value, instance))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// A string's length as JsonSchema.Net counts it, in text elements (graphemes: <c>e</c> and a combining accent
    /// are one, and so are CR LF and a flag's two regional indicators); -1 when the text cannot be read.
    /// </summary>
    private static int TextElements(JsonElement text)
    {
        // The raw value, quotes included. Unescaped ASCII is an element per byte: the one pair that joins, CR LF, is
        // always escaped in JSON, so escaped text takes the long way.
        var raw = JsonMarshal.GetRawUtf8Value(text)[1..^1];
        if (Ascii.IsValid(raw) && !raw.Contains((byte)'\\'))
        {
            return raw.Length;
        }

        // The parse does not check UTF-8 inside strings (a text frame's is checked on arrival; a message an
        // interceptor made may hold anything) and a lone surrogate cannot be decoded: both are left to the library.
        string decoded;
        try
        {
            decoded = text.GetString()!;
        }
        catch (InvalidOperationException)
        {
            return -1;
        }

        var count = 0;
        for (var rest = decoded.AsSpan(); !rest.IsEmpty; count++)
        {
            rest = rest[StringInfo.GetNextTextElementLength(rest)..];
        }

        return count;
    }

    private bool MatchesType(JsonElement instance)
    {
        foreach (var type in _types!)
        {
            if (type == instance.ValueKind || (type == JsonValueKind.True && instance.ValueKind == JsonValueKind.False))
            {
                // "integer": a number with no fractional part (1.0 is an integer in JSON Schema).
                if (type == JsonValueKind.Number && _integerOnly && !IsInteger(instance))
                {
                    continue;
                }

                return true;
            }
        }

        return false;
    }

    private static bool IsInteger(JsonElement number) =>
        number.TryGetInt64(out _) || (TryExact(number, out var value) && decimal.Truncate(value) == value);

    /// <summary>
    /// The number as a decimal, only when the decimal is exactly the JSON number: no exponent and at most 28 digits in
    /// all (decimal.Parse would round the rest silently, and 1e-31 would become 0).
    /// </summary>
    private static bool TryExact(JsonElement number, out decimal value)
    {
        // Most numbers are integers, and a long is exactly a decimal.
        if (number.TryGetInt64(out var integer))
        {
            value = integer;
            return true;
        }

        value = 0;
        var raw = JsonMarshal.GetRawUtf8Value(number);
        if (raw.ContainsAny((byte)'e', (byte)'E'))
        {
            return false;
        }

        // Without an exponent, a JSON number is digits, a sign and a point.
        var digits = raw.Length - (raw[0] == '-' ? 1 : 0) - (raw.Contains((byte)'.') ? 1 : 0);
        return digits <= 28 && decimal.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    private static decimal Exact(JsonElement number) => TryExact(number, out var value) ? value : throw Unsupported();

    private static (JsonValueKind[] Types, bool IntegerOnly) Types(JsonElement value)
    {
        var names = value.ValueKind == JsonValueKind.Array ? [.. value.EnumerateArray().Select(e => e.GetString())] : new[] { value.GetString() };
        var kinds = new List<JsonValueKind>();
        var integerOnly = false;
        foreach (var name in names)
        {
            switch (name)
            {
                case "object": kinds.Add(JsonValueKind.Object); break;
                case "array": kinds.Add(JsonValueKind.Array); break;
                case "string": kinds.Add(JsonValueKind.String); break;
                case "boolean": kinds.Add(JsonValueKind.True); break;
                case "null": kinds.Add(JsonValueKind.Null); break;
                case "number": kinds.Add(JsonValueKind.Number); break;
                case "integer": kinds.Add(JsonValueKind.Number); integerOnly = true; break;
                default: throw Unsupported();
            }
        }

        // "integer" together with "number" means any number.
        if (integerOnly && names.Contains("number"))
        {
            integerOnly = false;
        }

        return ([.. kinds], integerOnly);
    }

    private static int Count(JsonElement value) => value.TryGetInt32(out var count) && count >= 0 ? count : throw Unsupported();

    private static NotSupportedException Unsupported() => new();

    /// <summary>A name the schema knows: the schema "properties" gives it (null: additionalProperties applies), and its bit if required.</summary>
    private readonly record struct Member(SchemaFastPath? Schema, ulong RequiredBit);
}
