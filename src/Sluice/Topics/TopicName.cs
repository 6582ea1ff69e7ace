using System.Diagnostics.CodeAnalysis;

namespace Sluice;

/// <summary>
/// The rule every topic name follows, wherever it comes from (the pub/sub protocol, the admin API, app code):
/// 1 to <see cref="TopicOptions.MaxTopicLength"/> characters, no control characters (a name reaches logs, the
/// dashboard and Redis channel names) and no unpaired surrogates (they cannot be written as JSON or UTF-8, so an
/// answer naming the topic could not be sent).
/// </summary>
public static class TopicName
{
    /// <summary>The default longest topic name, in characters: 256.</summary>
    public const int DefaultMaxLength = 256;

    /// <summary>Gets whether <paramref name="name"/> is a valid topic name of at most <paramref name="maxLength"/> characters.</summary>
    public static bool IsValid([NotNullWhen(true)] string? name, int maxLength = DefaultMaxLength) => GetError(name, maxLength) is null;

    /// <summary>Describes what is wrong with <paramref name="name"/> as a topic name, for the client; null when it is valid.</summary>
    public static string? GetError(string? name, int maxLength = DefaultMaxLength)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "a topic name must not be empty";
        }

        if (name.Length > maxLength)
        {
            return $"a topic name is at most {maxLength} characters";
        }

        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsHighSurrogate(c) && i + 1 < name.Length && char.IsLowSurrogate(name[i + 1]))
            {
                i++;
            }
            else if (char.IsControl(c) || char.IsSurrogate(c))
            {
                return "a topic name must not contain control characters or unpaired surrogates";
            }
        }

        return null;
    }
}
