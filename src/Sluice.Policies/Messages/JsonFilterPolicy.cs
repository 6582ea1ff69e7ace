using System.Net.WebSockets;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>Options of <see cref="JsonFilterPolicy"/> (<c>json-filter</c>).</summary>
public sealed class JsonFilterPolicyOptions : ActionPolicyOptions
{
    private JsonNode? _equals;

    /// <summary>Creates options whose default action is <see cref="PolicyAction.Drop"/>.</summary>
    public JsonFilterPolicyOptions() => Action = PolicyAction.Drop;

    /// <summary>Gets or sets the JSON Pointer to test.</summary>
    public string? Path { get; set; }

    /// <summary>Gets or sets the value that makes the filter apply (JSON name <c>equals</c>).</summary>
    [JsonPropertyName("equals")]
    public JsonNode? EqualsValue
    {
        get => _equals;
        set
        {
            _equals = value;
            HasEquals = true;
        }
    }

    /// <summary>Gets or sets values any of which makes the filter apply.</summary>
    public List<JsonNode?>? In { get; set; }

    /// <summary>Gets or sets whether the filter applies when the pointer exists (true) or is absent (false).</summary>
    public bool? Exists { get; set; }

    /// <summary>
    /// Gets or sets what happens to text that starts (after a BOM, whitespace and comments) with <c>{</c> or <c>[</c> but
    /// cannot be read, even with comments and trailing commas allowed (<c>NaN</c>, too deep, broken), so the condition
    /// cannot be tested. Default: pass, as other non-JSON text. A filter that denies should say drop: a lenient backend
    /// (Python reads <c>NaN</c>) would read the field the filter could not.
    /// </summary>
    public UnparsableJson Unparsable { get; set; } = UnparsableJson.Pass;

    [JsonIgnore]
    internal bool HasEquals { get; private set; }

    /// <inheritdoc />
    public override IEnumerable<PolicyOptionError> Validate()
    {
        var errors = JsonCondition.Validate(Path, HasEquals, In, Exists, pathRequired: true).Concat(base.Validate());
        return LenientJson.ValidateUnparsable(Unparsable) is { } error ? errors.Append(error) : errors;
    }
}

/// <summary>
/// <c>json-filter</c>: when the condition holds (the value at <c>path</c> equals a value, is one of several,
/// exists or is absent), the message is dropped, answered with 403, or the connection closes with 1008.
/// Messages that are not JSON pass unchanged (and are counted); near-JSON that cannot be read is dropped instead when
/// <see cref="JsonFilterPolicyOptions.Unparsable"/> says so.
/// </summary>
public sealed class JsonFilterPolicy : MessagePolicy
{
    private readonly JsonCondition _condition;
    private readonly PolicyAction _action;
    private readonly string _reason;
    private readonly UnparsableJson _unparsable;

    /// <summary>Creates the policy.</summary>
    public JsonFilterPolicy(JsonFilterPolicyOptions options, string name = "json-filter")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _condition = JsonCondition.Create(options.Path!, options.EqualsValue, options.HasEquals, options.In, options.Exists, string.Empty);
        _action = options.Action;
        _reason = $"message not allowed ({options.Path})";
        _unparsable = options.Unparsable;
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        switch (_condition.Test(context))
        {
            case null:
                PolicyMetrics.NonJson(Name);
                return LenientJson.LooksLikeContainer(context)
                    ? LenientJson.Unparsable(context, _unparsable, next, "not filtered, so not forwarded")
                    : next(context);
            case false:
                return next(context);
        }

        Reject(context, _action, 403, _reason, WebSocketCloseStatus.PolicyViolation);
        return default;
    }
}
