using System.Text.Json.Nodes;
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

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (Paths.Count == 0)
        {
            yield return "paths: list at least one JSON Pointer";
        }

        for (var i = 0; i < Paths.Count; i++)
        {
            if (!JsonPointers.IsValid(Paths[i]) || Paths[i].Length == 0)
            {
                yield return $"paths[{i}]: '{Paths[i]}' is not a JSON Pointer to a field";
            }
        }

        if (!Enum.IsDefined(Mode))
        {
            yield return "mode: must be remove or mask";
        }
    }
}

/// <summary>
/// <c>json-redact</c>: removes or masks fields of JSON messages before they go on. Non-JSON and binary messages
/// pass unchanged (and are counted). The message is only rewritten when a field was actually redacted.
/// </summary>
public sealed class JsonRedactPolicy : MessagePolicy
{
    private readonly JsonPointer[] _paths;
    private readonly JsonRedactMode _mode;

    /// <summary>Creates the policy.</summary>
    public JsonRedactPolicy(JsonRedactPolicyOptions options, string name = "json-redact")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _paths = [.. options.Paths.Select((p, i) => JsonPointers.Parse(p, $"paths[{i}]"))];
        _mode = options.Mode;
    }

    /// <summary>Creates a policy that removes the fields at <paramref name="paths"/>.</summary>
    public JsonRedactPolicy(params string[] paths)
        : this(new JsonRedactPolicyOptions { Paths = [.. paths] })
    {
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (!context.TryGetJsonElement(out var root))
        {
            PolicyMetrics.NonJson(Name);
            return next(context);
        }

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

        var tree = context.Json;
        var changed = false;
        foreach (var path in _paths)
        {
            changed |= _mode == JsonRedactMode.Remove
                ? JsonPointers.Remove(tree, path)
                : JsonPointers.Replace(tree, path, JsonValue.Create("***"));
        }

        if (changed)
        {
            context.MarkJsonModified();
        }

        return next(context);
    }
}
