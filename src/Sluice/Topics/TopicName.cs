namespace Sluice.Topics;

/// <summary>
/// The one rule for topic names, used wherever a name comes in (the <c>pubsub</c> handler, <see cref="TopicBus"/>, the
/// gateway's admin API): 1 to <see cref="TopicOptions.MaxTopicLength"/> characters, no control characters (a name
/// reaches logs, the dashboard and Redis channel names) and no unpaired surrogates (they cannot be written as JSON
/// or UTF-8, so an answer naming the topic could not be sent).
/// </summary>
internal static class TopicName
{
    /// <summary>Returns why <paramref name="topic"/> is not a valid topic name, or null if it is one.</summary>
    public static string? Check(string? topic, int maxLength)
    {
        if (string.IsNullOrEmpty(topic))
        {
            return "a topic name must not be empty";
        }

        if (topic.Length > maxLength)
        {
            return $"a topic name is at most {maxLength} characters";
        }

        for (var i = 0; i < topic.Length; i++)
        {
            var c = topic[i];
            if (char.IsHighSurrogate(c) && i + 1 < topic.Length && char.IsLowSurrogate(topic[i + 1]))
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
