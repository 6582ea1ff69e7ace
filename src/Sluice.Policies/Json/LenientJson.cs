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

    /// <summary>
    /// Whether a lenient reader would take <paramref name="utf8"/> for an object or array: after a BOM, whitespace and
    /// comments (<c>//</c> to the end of the line, <c>/* */</c>), <c>{</c> or <c>[</c>.
    /// </summary>
    public static bool LooksLikeContainer(ReadOnlySpan<byte> utf8)
    {
        var text = utf8;
        while (true)
        {
            // A BOM after a comment makes the text unreadable, which json-redact then drops: failing closed is the point.
            text = SkipBom(text).TrimStart(" \t\r\n"u8);
            if (text.StartsWith("//"u8))
            {
                // A comment ends at a line break (the reader also takes \r alone); one left open hides nothing.
                var end = text.IndexOfAny((byte)'\n', (byte)'\r');
                if (end < 0)
                {
                    return false;
                }

                text = text[end..];
            }
            else if (text.StartsWith("/*"u8))
            {
                var end = text[2..].IndexOf("*/"u8);
                if (end < 0)
                {
                    return false;
                }

                text = text[(end + 4)..];
            }
            else
            {
                return text.Length > 0 && text[0] is (byte)'{' or (byte)'[';
            }
        }
    }

    /// <summary>Whether the message is text a lenient reader would take for an object or array.</summary>
    public static bool LooksLikeContainer(MessageContext context) =>
        context.Message.IsText && LooksLikeContainer(context.Message.Payload.Span);

    /// <summary>The validation error of an <c>unparsable</c> option, or null.</summary>
    public static PolicyOptionError? ValidateUnparsable(UnparsableJson unparsable) =>
        Enum.IsDefined(unparsable) ? null : new PolicyOptionError("unparsable", "must be drop or pass");

    /// <summary>
    /// What a policy that must not fail open does with near-JSON it could not read: passes it, or drops it (counted
    /// in sluice.policy.outcomes and logged with a reason ending in <paramref name="consequence"/>, never the payload).
    /// </summary>
    public static ValueTask Unparsable(MessageContext context, UnparsableJson unparsable, MessageDelegate next, string consequence)
    {
        if (unparsable == UnparsableJson.Pass)
        {
            return next(context);
        }

        context.Drop("unparsable JSON (NaN, Infinity, too deep, broken, or not valid Unicode): " + consequence);
        return default;
    }

    /// <summary>
    /// The message read leniently, for a text message the strict shared parse refused that looks like an object or
    /// array; null when it does not look like one or cannot be read even so.
    /// </summary>
    public static JsonDocument? TryParse(MessageContext context) =>
        LooksLikeContainer(context) ? TryParse(context.Message.Payload) : null;

    /// <summary>
    /// As <see cref="TryParse(MessageContext)"/>, as a mutable tree; null also when a string or name holds a lone
    /// surrogate (<c>\udc00</c>), which a tree cannot be written with.
    /// </summary>
    public static JsonNode? TryParseNode(MessageContext context)
    {
        using var document = TryParse(context);
        if (document is null || !JsonText.IsValidUnicode(document.RootElement))
        {
            return null;
        }

        return document.RootElement.ValueKind switch
        {
            JsonValueKind.Object => JsonObject.Create(document.RootElement.Clone()),
            JsonValueKind.Array => JsonArray.Create(document.RootElement.Clone()),
            _ => null,
        };
    }

    /// <summary>The document, or null when even a lenient reading fails (NaN, Infinity, too deep, broken).</summary>
    public static JsonDocument? TryParse(ReadOnlyMemory<byte> utf8)
    {
        // The reader refuses a BOM in memory (it skips one only in a stream).
        utf8 = utf8[(utf8.Length - SkipBom(utf8.Span).Length)..];

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
