using System.Text.Json;

namespace Sluice.Policies.Json;

/// <summary>
/// How the policies that must not fail open read text the strict shared parse refused: as lenient readers do, with
/// comments, trailing commas and a UTF-8 BOM, and as deep as the shared parse.
/// </summary>
internal static class LenientJson
{
    private static readonly JsonDocumentOptions s_options = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        MaxDepth = 1000,
    };

    /// <summary>Whether a lenient reader would take <paramref name="utf8"/> for an object or array: after a BOM and whitespace, <c>{</c> or <c>[</c>.</summary>
    public static bool LooksLikeContainer(ReadOnlySpan<byte> utf8)
    {
        var text = SkipBom(utf8).TrimStart(" \t\r\n"u8);
        return text.Length > 0 && text[0] is (byte)'{' or (byte)'[';
    }

    /// <summary>The document, or null when even a lenient reading fails (NaN, Infinity, too deep, broken).</summary>
    public static JsonDocument? TryParse(ReadOnlyMemory<byte> utf8)
    {
        if (utf8.Span.StartsWith("\uFEFF"u8))
        {
            utf8 = utf8[3..];
        }

        try
        {
            return JsonDocument.Parse(utf8, s_options);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> utf8) => utf8.StartsWith("\uFEFF"u8) ? utf8[3..] : utf8;
}
