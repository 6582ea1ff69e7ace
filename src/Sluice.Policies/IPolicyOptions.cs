namespace Sluice.Policies;

/// <summary>Options of a policy that can check themselves and say everything that is wrong at once.</summary>
public interface IPolicyOptions
{
    /// <summary>
    /// Returns every problem, each starting with the option's JSON name (<c>maxBytes: must be positive</c>),
    /// so that the gateway can prefix the path of the options in the file.
    /// </summary>
    IEnumerable<string> Validate();
}

/// <summary>Options of a message policy that has an outcome.</summary>
public abstract class ActionPolicyOptions : IPolicyOptions
{
    /// <summary>Gets or sets what happens to a message that fails the check.</summary>
    public PolicyAction Action { get; set; } = PolicyAction.Reply;

    /// <inheritdoc />
    public virtual IEnumerable<string> Validate()
    {
        if (!Enum.IsDefined(Action))
        {
            yield return "action: must be drop, reply or close";
        }
    }
}
