using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Pointer;

namespace Sluice.Policies.Json;

/// <summary>
/// A test on a message's JSON: the value at a pointer equals a value, is one of several, or exists. Evaluated on
/// the shared parse; expected values are converted to elements once, when the policy is built.
/// </summary>
internal sealed class JsonCondition
{
    private readonly JsonPointer _pointer;
    private readonly JsonElement? _equals;
    private readonly JsonElement[]? _in;
    private readonly bool? _exists;

    private JsonCondition(JsonPointer pointer, JsonElement? equals, JsonElement[]? @in, bool? exists)
    {
        _pointer = pointer;
        _equals = equals;
        _in = @in;
        _exists = exists;
    }

    /// <summary>Builds a condition from options; <paramref name="prefix"/> names them in errors.</summary>
    public static JsonCondition Create(string path, JsonNode? equals, bool hasEquals, IReadOnlyList<JsonNode?>? @in, bool? exists, string prefix)
    {
        var pointer = JsonPointers.Parse(path, prefix + "path");
        return new JsonCondition(
            pointer,
            hasEquals ? ToElement(equals) : null,
            @in?.Select(ToElement).ToArray(),
            exists);
    }

    /// <summary>The validation shared by every option set that holds a condition.</summary>
    public static IEnumerable<PolicyOptionError> Validate(string? path, bool hasEquals, IReadOnlyList<JsonNode?>? @in, bool? exists, bool pathRequired)
    {
        if (path is null)
        {
            if (pathRequired || hasEquals || @in is not null || exists is not null)
            {
                yield return new("path", "a JSON Pointer is required");
            }

            yield break;
        }

        if (!JsonPointers.IsValid(path))
        {
            yield return new("path", $"'{path}' is not a JSON Pointer (RFC 6901: '' or '/a/b/0')");
        }

        var tests = (hasEquals ? 1 : 0) + (@in is null ? 0 : 1) + (exists is null ? 0 : 1);
        if (tests != 1)
        {
            yield return new("path", "give exactly one of equals, in or exists");
        }
    }

    /// <summary>Whether the message's JSON satisfies the test. Non-JSON never does (except exists: false).</summary>
    public bool Holds(MessageContext context) => Test(context) ?? _exists == false;

    /// <summary>
    /// Whether the message's JSON satisfies the test, or null when the message is not JSON. Text with comments or
    /// trailing commas is read as a lenient backend reads it, so that a comment does not hide a field from the test.
    /// </summary>
    public bool? Test(MessageContext context)
    {
        if (context.TryGetJsonElement(out var root))
        {
            return Holds(root);
        }

        using var lenient = LenientJson.TryParse(context);
        return lenient is null ? null : Holds(lenient.RootElement);
    }

    private bool Holds(JsonElement root)
    {
        var found = JsonPointers.TryRead(root, _pointer, out var value);
        if (_exists is { } exists)
        {
            return found == exists;
        }

        // A lone surrogate (\udc00) equals no value a configuration can hold, and would make the comparison throw.
        if (!found || !JsonText.IsValidUnicode(value))
        {
            return false;
        }

        if (_equals is { } expected)
        {
            return AreEqual(value, expected);
        }

        foreach (var candidate in _in!)
        {
            if (AreEqual(value, candidate))
            {
                return true;
            }
        }

        return false;
    }

    private static bool AreEqual(JsonElement value, JsonElement expected)
    {
        try
        {
            return JsonElement.DeepEquals(value, expected);
        }
        catch (ArgumentOutOfRangeException)
        {
            // A number whose exponent is beyond int's range (1e4294967296): no configured value is that large or small.
            return false;
        }
    }

    private static JsonElement ToElement(JsonNode? node) =>
        node is null ? JsonDocument.Parse("null").RootElement.Clone() : JsonSerializer.SerializeToElement(node, PolicyJson.NodeTypeInfo);
}
