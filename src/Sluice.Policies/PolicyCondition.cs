using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>
/// The optional <c>when</c> of a message policy: the policy runs only for messages that match, so one route
/// can treat different kinds of messages differently. Any of
/// <see cref="Opcode"/>, and <see cref="Path"/> with one of <see cref="EqualsValue"/>, <see cref="In"/> or
/// <see cref="Exists"/>.
/// </summary>
public sealed class PolicyCondition : IPolicyOptions
{
    private JsonNode? _equals;

    /// <summary>Gets or sets the message type the policy applies to.</summary>
    public MessageType? Opcode { get; set; }

    /// <summary>Gets or sets a JSON Pointer into the message.</summary>
    public string? Path { get; set; }

    /// <summary>Gets or sets the value the pointer must equal (JSON name <c>equals</c>).</summary>
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

    /// <summary>Gets or sets the values one of which the pointer must equal.</summary>
    public List<JsonNode?>? In { get; set; }

    /// <summary>Gets or sets whether the pointer must exist (true) or be absent (false).</summary>
    public bool? Exists { get; set; }

    [JsonIgnore]
    internal bool HasEquals { get; private set; }

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (Opcode is { } opcode && !Enum.IsDefined(opcode))
        {
            yield return new("opcode", "must be text or binary");
        }

        foreach (var error in JsonCondition.Validate(Path, HasEquals, In, Exists, pathRequired: false))
        {
            yield return error;
        }
    }

    /// <summary>The predicate for <see cref="InterceptorRegistration.When"/>.</summary>
    public Func<MessageContext, bool> ToPredicate()
    {
        var opcode = Opcode;
        var json = Path is null ? null : JsonCondition.Create(Path, EqualsValue, HasEquals, In, Exists, "when.");
        return (opcode, json) switch
        {
            (null, null) => static _ => true,
            ({ } type, null) => context => context.Message.Type == type,
            (null, { } condition) => condition.Holds,
            ({ } type, { } condition) => context => context.Message.Type == type && condition.Holds(context),
        };
    }
}
