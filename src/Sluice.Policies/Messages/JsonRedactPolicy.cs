using System.Buffers;
using System.Text.Json;
using Json.Pointer;
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

    private readonly JsonPointer[] _paths;
    private readonly string[][] _segments;
    private readonly JsonRedactMode _mode;
    private readonly UnparsableJson _unparsable;

    /// <summary>Creates the policy.</summary>
    public JsonRedactPolicy(JsonRedactPolicyOptions options, string name = "json-redact")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _paths = [.. options.Paths.Select((p, i) => JsonPointers.Parse(p, $"paths[{i}]"))];
        _segments = [.. _paths.Select(JsonPointers.Segments)];
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
        return lenient is null ? Unparsable(context, next) : Redact(context, lenient.RootElement, next);
    }

    private ValueTask Unparsable(MessageContext context, MessageDelegate next) =>
        LenientJson.Unparsable(context, _unparsable, next, "not redacted, so not forwarded");

    private ValueTask Redact(MessageContext context, JsonElement root, MessageDelegate next)
    {
        // Look on the read-only parse first: a message without these fields is forwarded as it came.
        var present = false;
        foreach (var path in _paths)
        {
            if (JsonPointers.TryRead(root, path, out _))
            {
                present = true;
                break;
            }
        }

        if (!present)
        {
            return next(context);
        }

        // One pass from the parsed document to new text, skipping (or masking) the matched members: no mutable tree.
        // Every occurrence of a repeated name is redacted, whichever one a backend would read.
        var output = new ArrayBufferWriter<byte>(context.Message.Length);
        try
        {
            using var writer = new Utf8JsonWriter(output, s_writerOptions);
            Write(writer, root, depth: 0, _segments);
        }
        catch (InvalidOperationException)
        {
            // A name holding a lone UTF-16 surrogate (\udc00) cannot be written again: as unreadable as NaN.
            return Unparsable(context, next);
        }

        context.Message = WebSocketMessage.FromText(output.WrittenMemory);
        return next(context);
    }

    private void Write(Utf8JsonWriter writer, JsonElement element, int depth, string[][] candidates)
    {
        if (candidates.Length == 0)
        {
            element.WriteTo(writer);
            return;
        }

        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject())
                {
                    var (matched, ends) = Match(candidates, depth, property, -1);
                    if (!ends && matched.Length == 0)
                    {
                        property.WriteTo(writer);
                        continue;
                    }

                    if (ends && _mode == JsonRedactMode.Remove)
                    {
                        continue;
                    }

                    writer.WritePropertyName(property.Name);
                    if (ends)
                    {
                        writer.WriteStringValue("***");
                    }
                    else
                    {
                        Write(writer, property.Value, depth + 1, matched);
                    }
                }

                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    var position = index++;
                    var (matched, ends) = Match(candidates, depth, default, position);
                    if (ends && _mode == JsonRedactMode.Remove)
                    {
                        continue;
                    }

                    if (ends)
                    {
                        writer.WriteStringValue("***");
                    }
                    else
                    {
                        Write(writer, item, depth + 1, matched);
                    }
                }

                writer.WriteEndArray();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }

    /// <summary>
    /// The paths that go on below this member (a property, or the array item at <paramref name="index"/> when it is
    /// not negative), and whether one of them ends at it.
    /// </summary>
    private static (string[][] Continuing, bool Ends) Match(string[][] candidates, int depth, JsonProperty property, int index)
    {
        List<string[]>? continuing = null;
        var ends = false;
        foreach (var path in candidates)
        {
            if (depth < path.Length && (index < 0 ? property.NameEquals(path[depth]) : IsIndex(path[depth], index)))
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

    private static bool IsIndex(string segment, int index) =>
        int.TryParse(segment, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed)
        && parsed == index && (segment.Length == 1 || segment[0] != '0');
}
