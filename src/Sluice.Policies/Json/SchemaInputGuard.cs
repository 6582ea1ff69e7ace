using System.Runtime.InteropServices;
using System.Text.Json;

namespace Sluice.Policies.Json;

/// <summary>
/// Checks a message before JsonSchema.Net evaluates it, for values whose evaluation cost grows with their size in a
/// way nothing can catch. JsonSchema.Net 8 compares and divides numbers digit by digit on their text: <c>multipleOf</c>
/// stack-allocates one byte per digit of the scaled operands, so <c>1e9999999</c> overflows the stack (the process
/// dies), and an exponent past <see cref="int.MaxValue"/> wraps (<c>1e4294967296</c> compared as 1 and passed a
/// <c>maximum</c>). Each guard applies only when the schema uses a keyword it protects, so a schema that never looks
/// at numbers by value keeps accepting any number.
/// </summary>
internal static class SchemaInputGuard
{
    /// <summary>At most this many digits before the exponent.</summary>
    public const int MaxNumberDigits = 40;

    /// <summary>At most this written exponent, either sign: past double's range (1e308, 5e-324), with room.</summary>
    public const int MaxNumberExponent = 400;

    /// <summary>The error of a number out of range, as the reply and the log say it.</summary>
    public const string NumberOutOfRange = "a number is out of the range the schema can check (at most 40 digits and an exponent within ±400)";

    // Keywords that read a number's value (the rest only look at its type). "integer" is found as a type name.
    private static readonly HashSet<string> s_numericKeywords = new(StringComparer.Ordinal)
    {
        "multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "uniqueItems", "divisibleBy",
    };

    /// <summary>
    /// Whether messages for <paramref name="schema"/> need the guard. A keyword name anywhere in the schema counts, even
    /// as a property name: guarding more than needed rejects only absurd numbers, guarding less crashes.
    /// </summary>
    public static bool AppliesTo(JsonElement schema) => ComparesNumbers(schema, depth: 0);

    /// <summary>The error of a lone UTF-16 surrogate (<c>\udc00</c>) in a name or string.</summary>
    public const string InvalidUnicode = "a string is not valid Unicode";

    /// <summary>
    /// Null when every value can be evaluated safely, or why not. Strings and names are always checked: JsonSchema.Net
    /// cannot read a lone surrogate, and throws where the policy cannot tell it from a failure (in an error message);
    /// numbers only when <paramref name="numbers"/> (<see cref="AppliesTo"/>).
    /// </summary>
    public static string? Check(JsonElement instance, bool numbers)
    {
        // The shared parse bounds the depth (1,000), so recursion here is bounded too.
        switch (instance.ValueKind)
        {
            case JsonValueKind.Number:
                return !numbers || IsInRange(JsonMarshal.GetRawUtf8Value(instance)) ? null : NumberOutOfRange;
            case JsonValueKind.String:
                return JsonText.IsValidUnicode(JsonMarshal.GetRawUtf8Value(instance)) ? null : InvalidUnicode;
            case JsonValueKind.Array:
                foreach (var item in instance.EnumerateArray())
                {
                    if (Check(item, numbers) is { } error)
                    {
                        return error;
                    }
                }

                return null;
            case JsonValueKind.Object:
                foreach (var property in instance.EnumerateObject())
                {
                    if (!JsonText.IsValidUnicode(JsonMarshal.GetRawUtf8PropertyName(property)))
                    {
                        return InvalidUnicode;
                    }

                    if (Check(property.Value, numbers) is { } error)
                    {
                        return error;
                    }
                }

                return null;
            default:
                return null;
        }
    }

    /// <summary>Whether a JSON number's text has at most <see cref="MaxNumberDigits"/> digits and an exponent within ±<see cref="MaxNumberExponent"/>.</summary>
    internal static bool IsInRange(ReadOnlySpan<byte> number)
    {
        var exponentAt = number.IndexOfAny((byte)'e', (byte)'E');
        var mantissa = exponentAt < 0 ? number : number[..exponentAt];
        var digits = mantissa.Length - (mantissa.Contains((byte)'.') ? 1 : 0) - (mantissa.Length > 0 && mantissa[0] == '-' ? 1 : 0);
        if (digits > MaxNumberDigits)
        {
            return false;
        }

        if (exponentAt < 0)
        {
            return true;
        }

        var exponent = number[(exponentAt + 1)..];
        if (exponent.Length > 0 && exponent[0] is (byte)'+' or (byte)'-')
        {
            exponent = exponent[1..];
        }

        // Leading zeros say nothing (1e0000000000001 is 1e1); at most three significant digits fit the bound.
        exponent = exponent.TrimStart((byte)'0');
        if (exponent.Length > 3)
        {
            return false;
        }

        var value = 0;
        foreach (var digit in exponent)
        {
            value = (value * 10) + (digit - '0');
        }

        return value <= MaxNumberExponent;
    }

    private static bool ComparesNumbers(JsonElement schema, int depth)
    {
        if (depth > 256)
        {
            // A schema this deep is odd; guarding it costs nothing.
            return true;
        }

        switch (schema.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var keyword in schema.EnumerateObject())
                {
                    // A reference out of this document (a meta-schema's $ref) may compare numbers this scan cannot see.
                    var external = keyword.Name is "$ref" or "$dynamicRef" && keyword.Value.ValueKind == JsonValueKind.String && !keyword.Value.GetString()!.StartsWith('#');
                    if (external || s_numericKeywords.Contains(keyword.Name) || ComparesNumbers(keyword.Value, depth + 1))
                    {
                        return true;
                    }
                }

                return false;
            case JsonValueKind.Array:
                foreach (var item in schema.EnumerateArray())
                {
                    if (ComparesNumbers(item, depth + 1))
                    {
                        return true;
                    }
                }

                return false;
            case JsonValueKind.String:
                return schema.ValueEquals("integer");
            default:
                return false;
        }
    }
}
