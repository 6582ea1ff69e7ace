using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>How <see cref="JsonRedactPolicy"/> redacts a field.</summary>
public enum JsonRedactMode
{
    /// <summary>The field is removed.</summary>
    Remove,

    /// <summary>The field's value is replaced by <c>"***"</c>; a field that is absent stays absent.</summary>
    Mask,
}

/// <summary>Options of <see cref="JsonRedactPolicy"/> (<c>json-redact</c>).</summary>
public sealed class JsonRedactPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets the JSON Pointers of the fields to redact, e.g. <c>/password</c>, <c>/cards/0/number</c>.</summary>
    public List<string> Paths { get; set; } = [];

    /// <summary>Gets or sets whether fields are removed or masked. Default: remove.</summary>
    public JsonRedactMode Mode { get; set; } = JsonRedactMode.Remove;

    /// <summary>
    /// Gets or sets what happens to text that starts (after a BOM, whitespace and comments) with <c>{</c> or <c>[</c> but cannot be
    /// parsed, even with comments and trailing commas allowed (<c>NaN</c>, too deep, broken, a lone surrogate it cannot
    /// write again). Default: drop.
    /// </summary>
    public UnparsableJson Unparsable { get; set; } = UnparsableJson.Drop;

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Paths.Count == 0)
        {
            yield return new("paths", "list at least one JSON Pointer");
        }

        for (var i = 0; i < Paths.Count; i++)
        {
            if (!JsonPointers.IsValid(Paths[i]) || Paths[i].Length == 0)
            {
                yield return new($"paths[{i}]", $"'{Paths[i]}' is not a JSON Pointer to a field");
            }
        }

        if (!Enum.IsDefined(Mode))
        {
            yield return new("mode", "must be remove or mask");
        }

        if (LenientJson.ValidateUnparsable(Unparsable) is { } error)
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>json-redact</c>: removes or masks fields of JSON messages before they go on. Comments and trailing commas are
/// read (and not forwarded when a field is redacted). Text that looks like a JSON object or array but cannot be parsed
/// is dropped, unless <see cref="JsonRedactPolicyOptions.Unparsable"/> says pass: a lenient backend (Python reads
/// <c>NaN</c>) would read the fields this policy could not. Other non-JSON text and binary messages pass unchanged
/// (and are counted). The message is only rewritten when a field was actually redacted.
/// </summary>
public sealed class JsonRedactPolicy : MessagePolicy
{
    private static readonly JsonWriterOptions s_writerOptions = new()
    {
        // As the shared parse writes: WebSocket payloads are not embedded in HTML; keep non-ASCII text as UTF-8.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    // As deep as the lenient parse reads: its documents are parsed again once written strictly.
    private static readonly JsonDocumentOptions s_strictOptions = new() { MaxDepth = 1000 };

    private readonly Segment[][] _paths;
    private readonly JsonRedactMode _mode;
    private readonly UnparsableJson _unparsable;

    /// <summary>Creates the policy.</summary>
    public JsonRedactPolicy(JsonRedactPolicyOptions options, string name = "json-redact")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _paths = [.. options.Paths.Select((p, i) => JsonPointers.Segments(JsonPointers.Parse(p, $"paths[{i}]")).Select(Segment.Of).ToArray())];
        _mode = options.Mode;
        _unparsable = options.Unparsable;
    }

    /// <summary>Creates a policy that removes the fields at <paramref name="paths"/>.</summary>
    public JsonRedactPolicy(params string[] paths)
        : this(new JsonRedactPolicyOptions { Paths = [.. paths] })
    {
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (context.TryGetJsonElement(out var root))
        {
            return Redact(context, root, next);
        }

        PolicyMetrics.NonJson(Name);
        if (!LenientJson.LooksLikeContainer(context))
        {
            return next(context);
        }

        // The strict shared parse refused it; read it as a lenient reader would (comments, trailing commas, a BOM).
        using var lenient = LenientJson.TryParse(context.Message.Payload);
        if (lenient is null || !JsonText.IsValidUnicode(lenient.RootElement))
        {
            return Unparsable(context, next);
        }

        if (!Finds(lenient.RootElement, depth: 0, _paths))
        {
            return next(context);
        }

        // Written out strictly first (no comments, no trailing commas), so that none is forwarded with the redacted
        // text, then redacted as any strict message.
        var strict = new ArrayBufferWriter<byte>(context.Message.Length);
        try
        {
            using (var writer = new Utf8JsonWriter(strict, s_writerOptions))
            {
                lenient.RootElement.WriteTo(writer);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            // Ill-formed UTF-8 in a string (a message an interceptor made) cannot be written again: as unreadable as NaN.
            return Unparsable(context, next);
        }

        using var document = JsonDocument.Parse(strict.WrittenMemory, s_strictOptions);
        return Redact(context, document.RootElement, next);
    }

    private ValueTask Unparsable(MessageContext context, MessageDelegate next) =>
        LenientJson.Unparsable(context, _unparsable, next, "not redacted, so not forwarded");

    private ValueTask Redact(MessageContext context, JsonElement root, MessageDelegate next)
    {
        // A lone UTF-16 surrogate (\udc00) is no text a reader can take, nor a name this policy can compare: as
        // unreadable as NaN. First, since matching names would throw on one.
        if (!JsonText.IsValidUnicode(root))
        {
            return Unparsable(context, next);
        }

        // Look on the read-only parse first: a message without these fields is forwarded as it came.
        if (!Finds(root, depth: 0, _paths))
        {
            return next(context);
        }

        // The new text is the old one, copied span by span, without (or masking) the matched members: nothing is
        // parsed or encoded again. Every occurrence of a repeated name is redacted, whichever one a backend would read.
        var text = JsonMarshal.GetRawUtf8Value(root);
        var output = new ArrayBufferWriter<byte>(text.Length);
        Write(output, text, root, depth: 0, _paths);
        context.Message = WebSocketMessage.FromText(output.WrittenMemory);
        return next(context);
    }

    /// <summary>Whether one of <paramref name="candidates"/> ends at a member of <paramref name="element"/>, at any occurrence.</summary>
    private static bool Finds(JsonElement element, int depth, Segment[][] candidates)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    var (matched, ends) = Match(candidates, depth, property, -1);
                    if (ends || (matched.Length > 0 && Finds(property.Value, depth + 1, matched)))
                    {
                        return true;
                    }
                }

                return false;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    var (matched, ends) = Match(candidates, depth, default, index++);
                    if (ends || (matched.Length > 0 && Finds(item, depth + 1, matched)))
                    {
                        return true;
                    }
                }

                return false;
            default:
                return false;
        }
    }

    /// <summary>Writes <paramref name="element"/>, whose text lies in <paramref name="text"/>, redacted.</summary>
    private void Write(ArrayBufferWriter<byte> output, ReadOnlySpan<byte> text, JsonElement element, int depth, Segment[][] candidates)
    {
        if (candidates.Length == 0 || element.ValueKind is not (JsonValueKind.Object or JsonValueKind.Array))
        {
            output.Write(JsonMarshal.GetRawUtf8Value(element));
            return;
        }

        var first = true;
        if (element.ValueKind == JsonValueKind.Object)
        {
            output.Write("{"u8);
            foreach (var property in element.EnumerateObject())
            {
                WriteMember(output, text, property, property.Value, -1, depth, candidates, ref first);
            }

            output.Write("}"u8);
        }
        else
        {
            output.Write("["u8);
            var index = 0;
            foreach (var item in element.EnumerateArray())
            {
                WriteMember(output, text, default, item, index++, depth, candidates, ref first);
            }

            output.Write("]"u8);
        }
    }

    /// <summary>Writes one member of an object (<paramref name="index"/> negative) or item of an array, redacted.</summary>
    private void WriteMember(ArrayBufferWriter<byte> output, ReadOnlySpan<byte> text, JsonProperty property, JsonElement value, int index, int depth, Segment[][] candidates, ref bool first)
    {
        var (matched, ends) = Match(candidates, depth, property, index);
        if (ends && _mode == JsonRedactMode.Remove)
        {
            return;
        }

        if (!first)
        {
            output.Write(","u8);
        }

        first = false;
        var raw = JsonMarshal.GetRawUtf8Value(value);
        if (index < 0)
        {
            // The name as written, through the colon: from its opening quote to the value.
            var start = Offset(text, JsonMarshal.GetRawUtf8PropertyName(property)) - 1;
            output.Write(text[start..Offset(text, raw)]);
        }

        if (ends)
        {
            output.Write("\"***\""u8);
        }
        else if (matched.Length == 0)
        {
            output.Write(raw);
        }
        else
        {
            Write(output, text, value, depth + 1, matched);
        }
    }

    /// <summary>Where <paramref name="part"/>, a span of the document's text, starts in <paramref name="text"/>.</summary>
    private static int Offset(ReadOnlySpan<byte> text, ReadOnlySpan<byte> part) =>
        (int)Unsafe.ByteOffset(ref MemoryMarshal.GetReference(text), ref MemoryMarshal.GetReference(part));

    /// <summary>
    /// The paths that go on below this member (a property, or the array item at <paramref name="index"/> when it is
    /// not negative), and whether one of them ends at it.
    /// </summary>
    private static (Segment[][] Continuing, bool Ends) Match(Segment[][] candidates, int depth, JsonProperty property, int index)
    {
        List<Segment[]>? continuing = null;
        var ends = false;
        foreach (var path in candidates)
        {
            if (depth < path.Length && (index < 0 ? property.NameEquals(path[depth].Name) : path[depth].Index == index))
            {
                if (path.Length == depth + 1)
                {
                    ends = true;
                }
                else
                {
                    (continuing ??= []).Add(path);
                }
            }
        }

        return (continuing is null ? [] : [.. continuing], ends);
    }

    /// <summary>One segment of a path: a member name as UTF-8, and the array index it also names (-1: none).</summary>
    private sealed class Segment(byte[] name, int index)
    {
        public byte[] Name { get; } = name;

        public int Index { get; } = index;

        public static Segment Of(string segment) => new(
            Encoding.UTF8.GetBytes(segment),
            int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && (segment.Length == 1 || segment[0] != '0') ? index : -1);
    }
}
