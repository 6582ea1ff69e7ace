namespace Sluice.Policies;

/// <summary>Options of a policy that can check themselves and say everything that is wrong at once.</summary>
public interface IPolicyOptions
{
    /// <summary>
    /// Returns every problem, each naming the option by its JSON name (<c>maxBytes</c>) apart from the message,
    /// so that a host can put it under the path of the options in its file.
    /// </summary>
    IEnumerable<PolicyOptionError> Validate();
}

/// <summary>Options of a message policy that has an outcome.</summary>
public abstract class ActionPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets what happens to a message that fails the check.</summary>
    public PolicyAction Action { get; set; } = PolicyAction.Reply;

    /// <inheritdoc />
    public virtual IEnumerable<PolicyOptionError> Validate()
    {
        if (!Enum.IsDefined(Action))
        {
            yield return new("action", "must be drop, reply or close");
        }
    }
}
