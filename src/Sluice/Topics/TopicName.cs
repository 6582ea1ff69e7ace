using System.Diagnostics.CodeAnalysis;

namespace Sluice;

/// <summary>
/// The rule every topic name follows, wherever it comes from (the pub/sub protocol, the admin API, app code):
/// 1 to <see cref="TopicOptions.MaxTopicLength"/> characters.
/// </summary>
public static class TopicName
{
    /// <summary>The default longest topic name, in characters: 256.</summary>
    public const int DefaultMaxLength = 256;

    /// <summary>Gets whether <paramref name="name"/> is a valid topic name of at most <paramref name="maxLength"/> characters.</summary>
    public static bool IsValid([NotNullWhen(true)] string? name, int maxLength = DefaultMaxLength) => GetError(name, maxLength) is null;

    /// <summary>Describes what is wrong with <paramref name="name"/> as a topic name, for the client; null when it is valid.</summary>
    public static string? GetError(string? name, int maxLength = DefaultMaxLength) =>
        string.IsNullOrEmpty(name) ? "a topic name must not be empty"
        : name.Length > maxLength ? $"a topic name is at most {maxLength} characters"
        : null;
}
