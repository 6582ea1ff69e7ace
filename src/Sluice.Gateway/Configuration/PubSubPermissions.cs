using System.Text.RegularExpressions;
using Sluice.Gateway.Configuration.Model;

namespace Sluice.Gateway.Configuration;

/// <summary>
/// The pubsub handler's <c>permissions</c>: the first entry whose topic glob matches decides, no match denies.
/// Principals: <c>*</c> (anyone connected), <c>authenticated</c> (anyone with a subject), <c>subject:NAME</c>,
/// <c>claim:NAME=VALUE</c>.
/// </summary>
internal sealed partial class PubSubPermissions
{
    private readonly Entry[] _entries;

    private PubSubPermissions(IReadOnlyList<PubSubPermissionModel> entries) =>
        _entries = [.. entries.Select(e => new Entry(new TopicGlob(e.Topics), [.. e.Subscribe.Select(Principal.Parse)], [.. e.Publish.Select(Principal.Parse)]))];

    /// <summary>The library's options for a route's <c>pubsub</c> handler options.</summary>
    public static PubSubProtocolOptions ToProtocolOptions(PubSubHandlerOptions options)
    {
        var permissions = options.Permissions is { } entries ? new PubSubPermissions(entries) : null;
        return new PubSubProtocolOptions
        {
            MaxSubscriptions = options.MaxSubscriptions,
            Namespace = options.Namespace,
            Authorize = permissions is null ? null : context => ValueTask.FromResult(permissions.Allows(context.Connection, context.Topic, context.Operation)),
            History = options.History is { } history ? new TopicHistoryOptions { Size = history.Size, TimeToLive = TimeSpan.FromSeconds(history.TtlSeconds) } : null,
            Presence = options.Presence is not null,
            JoinLeave = options.Presence?.JoinLeave == true,
        };
    }

    /// <summary>Checks what the model's attributes cannot: namespace names, glob lengths, principals.</summary>
    public static void Validate(PubSubHandlerOptions options, string path, ConfigErrors errors)
    {
        if (options.Namespace is { } name && !NamespacePattern().IsMatch(name))
        {
            errors.Add($"{path}.namespace", "must be 1 to 64 letters, digits or . _ : -");
        }

        var entries = options.Permissions ?? [];
        for (var i = 0; i < entries.Count; i++)
        {
            var entryPath = $"{path}.permissions[{i}]";
            if (entries[i] is not { } entry)
            {
                continue;
            }

            if (entry.Topics.Length is 0 or > TopicGlob.MaxLength)
            {
                errors.Add($"{entryPath}.topics", $"must be 1 to {TopicGlob.MaxLength} characters, not {entry.Topics.Length}");
            }

            CheckPrincipals(entry.Subscribe, $"{entryPath}.subscribe", errors);
            CheckPrincipals(entry.Publish, $"{entryPath}.publish", errors);
        }
    }

    public bool Allows(WebSocketConnection connection, string topic, PubSubOperation operation)
    {
        foreach (var entry in _entries)
        {
            if (entry.Topics.Matches(topic, connection.Subject))
            {
                var principals = operation == PubSubOperation.Publish ? entry.Publish : entry.Subscribe;
                return principals.Any(p => p.Includes(connection));
            }
        }

        return false;
    }

    private static void CheckPrincipals(IReadOnlyList<string> principals, string path, ConfigErrors errors)
    {
        for (var i = 0; i < principals.Count; i++)
        {
            if (Principal.GetError(principals[i]) is { } error)
            {
                errors.Add($"{path}[{i}]", error);
            }
        }
    }

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,64}$")]
    private static partial Regex NamespacePattern();

    private sealed record Entry(TopicGlob Topics, Principal[] Subscribe, Principal[] Publish);

    private sealed record Principal(string Kind, string? Name, string? Value)
    {
        public static string? GetError(string text) => text switch
        {
            "*" or "authenticated" => null,
            _ when text.StartsWith("subject:", StringComparison.Ordinal) && text.Length > "subject:".Length => null,
            _ when text.StartsWith("claim:", StringComparison.Ordinal) && text.IndexOf('=', StringComparison.Ordinal) > "claim:".Length => null,
            _ => $"'{text}' is no principal: *, authenticated, subject:NAME or claim:NAME=VALUE",
        };

        public static Principal Parse(string text)
        {
            if (text.StartsWith("subject:", StringComparison.Ordinal))
            {
                return new Principal("subject", text["subject:".Length..], null);
            }

            if (text.StartsWith("claim:", StringComparison.Ordinal))
            {
                var equals = text.IndexOf('=', StringComparison.Ordinal);
                return new Principal("claim", text["claim:".Length..equals], text[(equals + 1)..]);
            }

            return new Principal(text, null, null);
        }

        public bool Includes(WebSocketConnection connection) => Kind switch
        {
            "*" => true,
            "authenticated" => connection.Subject is not null,
            "subject" => connection.Subject == Name,
            "claim" => connection.User.Claims.Any(c => c.Type == Name && c.Value == Value),
            _ => false,
        };
    }
}

/// <summary>
/// A topic glob: <c>*</c> matches any run of characters, <c>${subject}</c> the connection's subject (literally,
/// even if it holds a <c>*</c>). Matching never backtracks: the text between stars is searched once each, left to
/// right (the leftmost match is always the right one for such globs), so a long glob costs at most its length
/// times the topic's, never exponential time.
/// </summary>
internal sealed class TopicGlob
{
    /// <summary>The longest glob accepted, in characters.</summary>
    public const int MaxLength = 1024;

    private const string SubjectPlaceholder = "${subject}";

    private readonly string[] _parts;
    private readonly bool _hasSubject;

    public TopicGlob(string pattern)
    {
        _parts = pattern.Split('*');
        _hasSubject = pattern.Contains(SubjectPlaceholder, StringComparison.Ordinal);
    }

    public bool Matches(string topic, string? subject)
    {
        var parts = _parts;
        if (_hasSubject)
        {
            if (subject is null)
            {
                // A per-subject topic means nothing for an anonymous connection.
                return false;
            }

            parts = [.. parts.Select(p => p.Replace(SubjectPlaceholder, subject, StringComparison.Ordinal))];
        }

        if (parts.Length == 1)
        {
            return string.Equals(topic, parts[0], StringComparison.Ordinal);
        }

        var first = parts[0];
        var last = parts[^1];
        if (topic.Length < first.Length + last.Length
            || !topic.StartsWith(first, StringComparison.Ordinal)
            || !topic.EndsWith(last, StringComparison.Ordinal))
        {
            return false;
        }

        var position = first.Length;
        var end = topic.Length - last.Length;
        for (var i = 1; i < parts.Length - 1; i++)
        {
            var part = parts[i];
            if (part.Length == 0)
            {
                continue;
            }

            var found = topic.IndexOf(part, position, end - position, StringComparison.Ordinal);
            if (found < 0)
            {
                return false;
            }

            position = found + part.Length;
        }

        return true;
    }
}
