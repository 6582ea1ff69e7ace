using System.Diagnostics;
using System.Text.Json.Nodes;
using Json.Pointer;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>Options of <see cref="TimerPolicy"/> (<c>timer</c>).</summary>
public sealed class TimerPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets where the time goes: a member name (<c>gatewayMs</c>) or a JSON Pointer (<c>/meta/gatewayMs</c>). Default: <c>gatewayMs</c>.</summary>
    public string Field { get; set; } = "gatewayMs";

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        if (string.IsNullOrEmpty(Field) || (Field.StartsWith('/') && !JsonPointers.IsValid(Field)))
        {
            yield return new("field", $"'{Field}' is neither a member name nor a JSON Pointer");
        }
    }
}

/// <summary>
/// <c>timer</c>: stamps the time a message spent in the gateway, in milliseconds, into JSON messages
/// (at <see cref="TimerPolicyOptions.Field"/>). On a host-mode reply that is the time since the request that caused it
/// arrived; otherwise the time since the message itself arrived. Non-JSON messages and JSON that is not an object
/// pass unchanged.
/// </summary>
public sealed class TimerPolicy : MessagePolicy
{
    private readonly JsonPointer _field;

    /// <summary>Creates the policy.</summary>
    public TimerPolicy(TimerPolicyOptions options, string name = "timer")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _field = JsonPointers.Parse(options.Field.StartsWith('/') ? options.Field : "/" + options.Field.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal), "field");
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (context.Json is JsonObject tree)
        {
            var since = context.Cause?.Timestamp ?? context.Timestamp;
            var milliseconds = Math.Round(Stopwatch.GetElapsedTime(since).TotalMilliseconds, 3);
            if (JsonPointers.Set(tree, _field, JsonValue.Create(milliseconds)))
            {
                context.MarkJsonModified();
            }
        }
        else if (!context.IsJson)
        {
            PolicyMetrics.NonJson(Name);
        }

        return next(context);
    }
}
