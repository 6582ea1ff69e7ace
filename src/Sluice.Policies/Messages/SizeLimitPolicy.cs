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

    /// <summary>
    /// True: a streamed message is measured as it arrives, by its running size (<see cref="WebSocketMessage.FragmentOffset"/>
    /// plus the fragment). Over the limit at its first fragment it gets the policy's action like any message; once some
    /// of it has gone on it cannot be dropped any more, so the connection closes with 1009 whatever the action.
    /// </summary>
    public override bool HandlesFragments => true;

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        var message = context.Message;
        var length = message.FragmentOffset + message.Length;
        if (length <= _options.MaxBytes)
        {
            return next(context);
        }

        var action = message.FragmentOffset > 0 ? PolicyAction.Close : _options.Action;
        Reject(context, action, 413, $"message too large: {length} bytes, the limit is {_options.MaxBytes}", WebSocketCloseStatus.MessageTooBig);
        return default;
    }
}
