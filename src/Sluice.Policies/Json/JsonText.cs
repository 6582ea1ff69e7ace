using System.Runtime.InteropServices;
using System.Text.Json;

namespace Sluice.Policies.Json;

/// <summary>
/// Whether JSON strings can be read as text. JSON lets a client escape a lone UTF-16 surrogate (<c>"\udc00"</c>), which
/// no .NET string or UTF-8 text can hold: System.Text.Json throws when it reads, compares or writes one again
/// (GetString, ValueEquals, DeepEquals, a JsonNode). Policies ask first, without an exception.
/// </summary>
internal static class JsonText
{
    /// <summary>Whether every string and property name in <paramref name="element"/>, at any depth, is valid Unicode.</summary>
    public static bool IsValidUnicode(JsonElement element)
    {
        // Only an escape can spell a lone surrogate in well-formed UTF-8 (the frame reader checks a text message's; the
        // parse does not look inside strings), and escapes occur only in strings and names (in comments too, after a
        // lenient parse: then the walk below decides).
        if (element.ValueKind is not (JsonValueKind.String or JsonValueKind.Object or JsonValueKind.Array)
            || !JsonMarshal.GetRawUtf8Value(element).Contains((byte)'\\'))
        {
            return true;
        }

        // The parse bounds the depth (1,000), so the recursion is bounded too.
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return IsValidUnicode(JsonMarshal.GetRawUtf8Value(element));
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    if (!IsValidUnicode(item))
                    {
                        return false;
                    }
                }

                return true;
            default:
                foreach (var property in element.EnumerateObject())
                {
                    if (!IsValidUnicode(JsonMarshal.GetRawUtf8PropertyName(property)) || !IsValidUnicode(property.Value))
                    {
                        return false;
                    }
                }

                return true;
        }
    }

    /// <summary>
    /// Whether the escaped text of one string or name (as it stands in the JSON, without quotes) pairs every escaped
    /// surrogate: a high one (D800-DBFF) directly followed by an escaped low one (DC00-DFFF), and no low one alone.
    /// </summary>
    public static bool IsValidUnicode(ReadOnlySpan<byte> raw)
    {
        var pendingHigh = false;
        var i = raw.IndexOf((byte)'\\');
        if (i < 0)
        {
            return true;
        }

        while (i < raw.Length)
        {
            if (raw[i] != '\\')
            {
                if (pendingHigh)
                {
                    return false;
                }

                i++;
                continue;
            }

            // The parse checked the escapes: '\' is followed by one of "\/bfnrtu, and 'u' by four hex digits.
            if (raw[i + 1] != 'u')
            {
                if (pendingHigh)
                {
                    return false;
                }

                i += 2;
                continue;
            }

            var unit = Hex(raw[i + 2]) << 12 | Hex(raw[i + 3]) << 8 | Hex(raw[i + 4]) << 4 | Hex(raw[i + 5]);
            var isHigh = unit is >= 0xD800 and <= 0xDBFF;
            var isLow = unit is >= 0xDC00 and <= 0xDFFF;
            if (pendingHigh != isLow)
            {
                return false;
            }

            pendingHigh = isHigh;
            i += 6;
        }

        return !pendingHigh;
    }

    private static int Hex(byte digit) => digit switch
    {
        <= (byte)'9' => digit - '0',
        <= (byte)'F' => digit - 'A' + 10,
        _ => digit - 'a' + 10,
    };
}
