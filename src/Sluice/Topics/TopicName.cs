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

    // A control character cannot be in a topic name, so a namespaced name never equals a plain one or another
    // namespace's.
    private const char NamespaceSeparator = '\u001F';

    /// <summary>
    /// Gets the name under which the topic <paramref name="topic"/> of namespace <paramref name="namespace"/> is
    /// published and subscribed (what <see cref="PubSubProtocolOptions.Namespace"/> does): it never equals a topic
    /// of another namespace or of none. Returns <paramref name="topic"/> when <paramref name="namespace"/> is null.
    /// </summary>
    public static string InNamespace(string? @namespace, string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        if (@namespace is null)
        {
            return topic;
        }

        if (@namespace.Length == 0 || @namespace.Contains(NamespaceSeparator, StringComparison.Ordinal))
        {
            throw new ArgumentException("a namespace is a non-empty name without control characters", nameof(@namespace));
        }

        return string.Concat(NamespaceSeparator.ToString(), @namespace, NamespaceSeparator.ToString(), topic);
    }

    /// <summary>The topic part of a name from <see cref="InNamespace"/> (the name itself when it has no namespace).</summary>
    internal static string WithoutNamespace(string name)
    {
        if (name.Length > 0 && name[0] == NamespaceSeparator)
        {
            var end = name.IndexOf(NamespaceSeparator, 1);
            if (end > 0)
            {
                return name[(end + 1)..];
            }
        }

        return name;
    }
}
