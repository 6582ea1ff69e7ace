using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Pointer;

namespace Sluice.Policies.Json;

/// <summary>
/// RFC 6901 JSON Pointers (JsonPointer.Net) over Sluice's shared parse: reads on the pooled document, edits on
/// the mutable tree. Pointers are parsed once, when a policy is created.
/// </summary>
internal static class JsonPointers
{
    /// <summary>Parses a pointer from options, with a message that names the option when it is invalid.</summary>
    public static JsonPointer Parse(string pointer, string option)
    {
        if (!JsonPointer.TryParse(pointer, out var parsed))
        {
            throw new FormatException($"{option}: '{pointer}' is not a JSON Pointer (RFC 6901: '' or '/a/b/0').");
        }

        return parsed;
    }

    public static bool IsValid(string? pointer) => pointer is not null && JsonPointer.TryParse(pointer, out _);

    /// <summary>
    /// Reads what the pointer points at. Where an object repeats a name, the last one counts, as in JavaScript,
    /// Python and System.Text.Json's own deserializer: a policy must judge the value the backend will see, not an
    /// earlier decoy (<c>{"type":"ok","type":"internal"}</c>).
    /// </summary>
    public static bool TryRead(JsonElement root, JsonPointer pointer, out JsonElement value)
    {
        value = root;
        for (var i = 0; i < pointer.SegmentCount; i++)
        {
            var segment = Unescape(pointer[i].ToString());
            switch (value.ValueKind)
            {
                case JsonValueKind.Object:
                    var found = false;
                    foreach (var property in value.EnumerateObject())
                    {
                        if (property.NameEquals(segment))
                        {
                            value = property.Value;
                            found = true;
                        }
                    }

                    if (!found)
                    {
                        value = default;
                        return false;
                    }

                    break;
                case JsonValueKind.Array when TryIndex(segment, value.GetArrayLength(), out var index):
                    value = value[index];
                    break;
                default:
                    value = default;
                    return false;
            }
        }

        return true;
    }

    /// <summary>The pointer's segments as member names (or array indices), unescaped.</summary>
    public static string[] Segments(JsonPointer pointer) =>
        [.. Enumerable.Range(0, pointer.SegmentCount).Select(i => Unescape(pointer[i].ToString()))];

    /// <summary>
    /// Up to 16 names: a hash of each on the stack, so that most objects, whose names all differ, are told so in one
    /// pass; only two equal hashes pay for the exact pairwise comparison.
    /// </summary>
    private static bool RepeatsSmall(JsonElement obj)
    {
        Span<int> hashes = stackalloc int[16];
        var count = 0;
        foreach (var property in obj.EnumerateObject())
        {
            var raw = JsonMarshal.GetRawUtf8PropertyName(property);
            var hash = new HashCode();

            // Escapes hash as the name they spell ("\u0061" repeats "a"); they are rare, so that one makes a string.
            hash.AddBytes(raw.Contains((byte)'\\') ? Encoding.UTF8.GetBytes(property.Name) : raw);
            var value = hash.ToHashCode();
            if (hashes[..count].Contains(value))
            {
                return RepeatsPairwise(obj);
            }

            hashes[count++] = value;
        }

        return false;
    }

    private static bool RepeatsPairwise(JsonElement obj)
    {
        var index = 0;
        foreach (var property in obj.EnumerateObject())
        {
            var other = 0;
            foreach (var earlier in obj.EnumerateObject())
            {
                if (other++ == index)
                {
                    break;
                }

                // The earlier name's raw UTF-8 when it has no escapes (the usual case): no string is made.
                var raw = JsonMarshal.GetRawUtf8PropertyName(earlier);
                if (raw.IndexOf((byte)'\\') < 0 ? property.NameEquals(raw) : property.NameEquals(earlier.Name))
                {
                    return true;
                }
            }

            index++;
        }

        return false;
    }

    private static bool RepeatsHashed(JsonElement obj)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in obj.EnumerateObject())
        {
            if (!names.Add(property.Name))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A segment as the member name it stands for: RFC 6901 writes '/' as ~1 and '~' as ~0, decoded in that order.</summary>
    private static string Unescape(string segment) =>
        segment.Contains('~', StringComparison.Ordinal) ? segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal) : segment;

    /// <summary>Whether any object in <paramref name="element"/> repeats a property name.</summary>
    /// <remarks>Runs on every message a json-schema policy sees: small objects are compared pairwise, without allocating.</remarks>
    public static bool HasDuplicateNames(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var count = 0;
                foreach (var property in element.EnumerateObject())
                {
                    count++;
                    if (HasDuplicateNames(property.Value))
                    {
                        return true;
                    }
                }

                return count > 1 && (count <= 16 ? RepeatsSmall(element) : RepeatsHashed(element));
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    if (HasDuplicateNames(item))
                    {
                        return true;
                    }
                }

                return false;
            default:
                return false;
        }
    }

    /// <summary>Finds the container of the pointer's last segment and that segment, for an edit.</summary>
    public static bool TryGetParent(JsonNode? root, JsonPointer pointer, out JsonNode? parent, out string key)
    {
        key = string.Empty;
        parent = null;
        if (pointer.SegmentCount == 0)
        {
            return false;
        }

        key = Unescape(pointer[pointer.SegmentCount - 1].ToString());
        var parentPointer = pointer.GetParent(1);
        return parentPointer is { } found && found.TryEvaluate(root, out parent) && parent is JsonObject or JsonArray;
    }

    /// <summary>Removes what the pointer points at; false if it is absent.</summary>
    public static bool Remove(JsonNode? root, JsonPointer pointer)
    {
        if (!TryGetParent(root, pointer, out var parent, out var key))
        {
            return false;
        }

        switch (parent)
        {
            case JsonObject obj:
                return obj.Remove(key);
            case JsonArray array when TryIndex(key, array.Count, out var index):
                array.RemoveAt(index);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Replaces what the pointer points at if it exists; false if it is absent.</summary>
    public static bool Replace(JsonNode? root, JsonPointer pointer, JsonNode? value)
    {
        if (!TryGetParent(root, pointer, out var parent, out var key))
        {
            return false;
        }

        switch (parent)
        {
            case JsonObject obj when obj.ContainsKey(key):
                obj[key] = value;
                return true;
            case JsonArray array when TryIndex(key, array.Count, out var index):
                array[index] = value;
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// Sets the value, creating the last member of an existing object if it is missing, never a missing parent.
    /// False if the parent does not exist or is not a container.
    /// </summary>
    public static bool Set(JsonNode? root, JsonPointer pointer, JsonNode? value)
    {
        if (!TryGetParent(root, pointer, out var parent, out var key))
        {
            return false;
        }

        switch (parent)
        {
            case JsonObject obj:
                obj[key] = value;
                return true;
            case JsonArray array when key == "-":
                array.Add(value);
                return true;
            case JsonArray array when TryIndex(key, array.Count, out var index):
                array[index] = value;
                return true;
            default:
                return false;
        }
    }

    /// <summary>Detaches and returns what the pointer points at, for a move.</summary>
    public static bool TryTake(JsonNode? root, JsonPointer pointer, out JsonNode? value)
    {
        value = null;
        if (!TryGetParent(root, pointer, out var parent, out var key))
        {
            return false;
        }

        switch (parent)
        {
            case JsonObject obj when obj.TryGetPropertyValue(key, out value):
                obj.Remove(key);
                return true;
            case JsonArray array when TryIndex(key, array.Count, out var index):
                value = array[index];
                array.RemoveAt(index);
                return true;
            default:
                return false;
        }
    }

    private static bool TryIndex(string key, int count, out int index) =>
        int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index)
        && index < count
        && (key.Length == 1 || key[0] != '0');
}
