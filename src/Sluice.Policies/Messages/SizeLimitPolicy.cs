using System.Net.WebSockets;

namespace Sluice.Policies;

/// <summary>Options of <see cref="SizeLimitPolicy"/> (<c>size-limit</c>).</summary>
public sealed class SizeLimitPolicyOptions : ActionPolicyOptions
{
    /// <summary>Creates options whose default action is <see cref="PolicyAction.Close"/> (1009).</summary>
    public SizeLimitPolicyOptions() => Action = PolicyAction.Close;

    /// <summary>Gets or sets the largest payload allowed, in bytes; a message of exactly this size passes.</summary>
    public int MaxBytes { get; set; }

    /// <inheritdoc />
    public override IEnumerable<PolicyOptionError> Validate()
    {
        if (MaxBytes <= 0)
        {
            yield return new("maxBytes", "must be a positive number of bytes");
        }

        foreach (var error in base.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>size-limit</c>: messages larger than <see cref="SizeLimitPolicyOptions.MaxBytes"/> are dropped, answered
/// with 413, or close the connection with 1009 (message too big).
/// </summary>
public sealed class SizeLimitPolicy : MessagePolicy
{
    private readonly SizeLimitPolicyOptions _options;

    /// <summary>Creates the policy.</summary>
    public SizeLimitPolicy(SizeLimitPolicyOptions options, string name = "size-limit")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _options = options;
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        var length = context.Message.Length;
        if (length <= _options.MaxBytes)
        {
            return next(context);
        }

        Reject(context, _options.Action, 413, $"message too large: {length} bytes, the limit is {_options.MaxBytes}", WebSocketCloseStatus.MessageTooBig);
        return default;
    }
}
