namespace Sluice.Policies;

internal static class PolicyValidation
{
    /// <summary>Refuses options that do not validate, listing every problem.</summary>
    public static void ThrowIfInvalid(IPolicyOptions options, string name)
    {
        var errors = options.Validate().ToList();
        if (errors.Count > 0)
        {
            throw new PolicyConfigurationException(name, errors);
        }
    }
}

/// <summary>A policy's options are invalid; <see cref="Errors"/> lists every problem by option name.</summary>
public sealed class PolicyConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PolicyConfigurationException(string policy, IReadOnlyList<string> errors)
        : base($"Policy '{policy}' is misconfigured: {string.Join("; ", errors)}")
    {
        Policy = policy;
        Errors = errors;
    }

    /// <summary>Gets the policy's name.</summary>
    public string Policy { get; }

    /// <summary>Gets the problems, each starting with the option's JSON name.</summary>
    public IReadOnlyList<string> Errors { get; }
}
