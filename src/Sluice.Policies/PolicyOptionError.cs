namespace Sluice.Policies;

/// <summary>
/// One problem with a policy's options: the option it concerns, by its JSON name or path under the options
/// (<c>maxBytes</c>, <c>keys[2].key</c>; empty for the options as a whole), and what is wrong with it. A host puts
/// <see cref="Member"/> under the path of the options in its own file without taking text apart.
/// </summary>
/// <param name="Member">The option's JSON path relative to the options object, or empty for the whole object.</param>
/// <param name="Message">What is wrong, without the member's name.</param>
public readonly record struct PolicyOptionError(string Member, string Message)
{
    /// <summary>Returns <c>member: message</c> (just the message when <see cref="Member"/> is empty).</summary>
    public override string ToString() => string.IsNullOrEmpty(Member) ? Message : $"{Member}: {Message}";
}
