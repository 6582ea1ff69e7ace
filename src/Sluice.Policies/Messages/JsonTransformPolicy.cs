using System.Text.Json.Nodes;
using Json.Pointer;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>Options of <see cref="JsonTransformPolicy"/> (<c>json-transform</c>). Applied in the order rename, remove, set.</summary>
public sealed class JsonTransformPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets values to write, by JSON Pointer: a missing member of an existing object is created, a missing parent is not.</summary>
    public Dictionary<string, JsonNode?> Set { get; set; } = [];

    /// <summary>Gets or sets the JSON Pointers of fields to remove.</summary>
    public List<string> Remove { get; set; } = [];

    /// <summary>Gets or sets fields to move, from pointer to pointer (<c>{"/old": "/new"}</c>).</summary>
    public Dictionary<string, string> Rename { get; set; } = [];

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Set.Count == 0 && Remove.Count == 0 && Rename.Count == 0)
        {
            yield return new("set", "give at least one of set, remove and rename");
        }

        foreach (var pointer in Set.Keys.Where(p => !IsField(p)))
        {
            yield return new("set", $"'{pointer}' is not a JSON Pointer to a field");
        }

        for (var i = 0; i < Remove.Count; i++)
        {
            if (!IsField(Remove[i]))
            {
                yield return new($"remove[{i}]", $"'{Remove[i]}' is not a JSON Pointer to a field");
            }
        }

        foreach (var (from, to) in Rename)
        {
            if (!IsField(from) || !IsField(to))
            {
                yield return new("rename", $"'{from}' -> '{to}' must map a JSON Pointer to a JSON Pointer");
            }
        }
    }

    private static bool IsField(string pointer) => pointer.Length > 0 && JsonPointers.IsValid(pointer);
}

/// <summary>
/// <c>json-transform</c>: renames, removes and sets fields of JSON messages. Non-JSON and binary messages pass
/// unchanged (and are counted), as does JSON with a lone UTF-16 surrogate (<c>\udc00</c>), which cannot be written again.
/// </summary>
public sealed class JsonTransformPolicy : MessagePolicy
{
    private readonly (JsonPointer From, JsonPointer To)[] _rename;
    private readonly JsonPointer[] _remove;
    private readonly (JsonPointer Path, JsonNode? Value)[] _set;

    /// <summary>Creates the policy.</summary>
    public JsonTransformPolicy(JsonTransformPolicyOptions options, string name = "json-transform")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _rename = [.. options.Rename.Select(r => (JsonPointers.Parse(r.Key, "rename"), JsonPointers.Parse(r.Value, "rename")))];
        _remove = [.. options.Remove.Select((p, i) => JsonPointers.Parse(p, $"remove[{i}]"))];
        _set = [.. options.Set.Select(s => (JsonPointers.Parse(s.Key, "set"), s.Value))];
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (context.TryGetJsonElement(out var root) && !JsonText.IsValidUnicode(root))
        {
            // A lone surrogate (\udc00) cannot be written again: the text goes on as it came, as text that is not JSON.
            PolicyMetrics.NonJson(Name);
            return next(context);
        }

        var tree = context.Json;
        var lenient = false;
        if (tree is null && !context.IsJson)
        {
            // Comments and trailing commas are read as a lenient backend reads them; the result is written as plain JSON.
            tree = LenientJson.TryParseNode(context);
            lenient = tree is not null;
            if (!lenient)
            {
                PolicyMetrics.NonJson(Name);
            }
        }

        if (tree is not (JsonObject or JsonArray))
        {
            return next(context);
        }

        var changed = false;
        foreach (var (from, to) in _rename)
        {
            // Move only when the destination's parent exists, so that a value is never lost or reordered for nothing.
            if (JsonPointers.TryGetParent(tree, to, out _, out _) && JsonPointers.TryTake(tree, from, out var value))
            {
                changed |= JsonPointers.Set(tree, to, value);
            }
        }

        foreach (var path in _remove)
        {
            changed |= JsonPointers.Remove(tree, path);
        }

        foreach (var (path, value) in _set)
        {
            // Each message gets its own copy: a node belongs to one tree.
            changed |= JsonPointers.Set(tree, path, value?.DeepClone());
        }

        if (changed && lenient)
        {
            context.Json = tree;
        }
        else if (changed)
        {
            context.MarkJsonModified();
        }

        return next(context);
    }
}
