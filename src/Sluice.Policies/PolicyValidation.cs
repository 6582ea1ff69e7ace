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

/// <summary>
/// A policy's options are invalid; <see cref="OptionErrors"/> lists every problem by option, <see cref="Errors"/> the
/// same as <c>member: message</c> lines.
/// </summary>
public sealed class PolicyConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public PolicyConfigurationException(string policy, IReadOnlyList<PolicyOptionError> errors)
        : base($"Policy '{policy}' is misconfigured: {string.Join("; ", errors)}")
    {
        Policy = policy;
        OptionErrors = errors;
        Errors = [.. errors.Select(error => error.ToString())];
    }

    /// <summary>Gets the policy's name.</summary>
    public string Policy { get; }

    /// <summary>Gets the problems, each with the option it concerns.</summary>
    public IReadOnlyList<PolicyOptionError> OptionErrors { get; }

    /// <summary>Gets the problems as text, each starting with the option's JSON name (<c>maxBytes: must be positive</c>).</summary>
    public IReadOnlyList<string> Errors { get; }
}
