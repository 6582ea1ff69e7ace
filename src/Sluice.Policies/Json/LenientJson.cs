using System.Text.Json;
using System.Text.Json.Nodes;

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

    /// <summary>
    /// The message read leniently, for a text message the strict shared parse refused that looks like an object or
    /// array; null when it does not look like one or cannot be read even so.
    /// </summary>
    public static JsonDocument? TryParse(MessageContext context) =>
        context.Message.IsText && LooksLikeContainer(context.Message.Payload.Span) ? TryParse(context.Message.Payload) : null;

    /// <summary>As <see cref="TryParse(MessageContext)"/>, as a mutable tree.</summary>
    public static JsonNode? TryParseNode(MessageContext context)
    {
        using var document = TryParse(context);
        return document?.RootElement.ValueKind switch
        {
            JsonValueKind.Object => JsonObject.Create(document.RootElement.Clone()),
            JsonValueKind.Array => JsonArray.Create(document.RootElement.Clone()),
            _ => null,
        };
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
