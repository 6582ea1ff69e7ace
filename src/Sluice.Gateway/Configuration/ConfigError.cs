namespace Sluice.Gateway.Configuration;

/// <summary>One problem in a configuration file.</summary>
/// <param name="Path">The JSON path of the value (<c>routes[2].inbound[0]</c>), or <c>(file)</c> for the file as a whole.</param>
/// <param name="Message">What is wrong (<c>unknown policy 'redcat'</c>).</param>
/// <param name="Hint">What was probably meant (<c>did you mean 'redact'?</c>), or null.</param>
internal sealed record ConfigError(string Path, string Message, string? Hint = null)
{
    /// <summary>The line <c>--check</c>, the start and a rejected reload print: <c>path: message; hint</c>.</summary>
    public override string ToString() => Hint is null ? $"{Path}: {Message}" : $"{Path}: {Message}; {Hint}";

    /// <summary>The hint for a misspelt name: the closest known one, or null when none is close.</summary>
    public static string? DidYouMean(string name, IEnumerable<string> known) =>
        NameSuggestion.Closest(name, known) is { } suggestion ? $"did you mean '{suggestion}'?" : null;
}

/// <summary>
/// The problems found so far, in the order they were found. One cause gives one line: a second problem at a path
/// that already has one is not recorded (a value that is not a number is not also out of range).
/// </summary>
internal sealed class ConfigErrors
{
    private readonly List<ConfigError> _errors = [];
    private readonly HashSet<string> _paths = new(StringComparer.Ordinal);

    public int Count => _errors.Count;

    public IReadOnlyList<ConfigError> All => _errors;

    public void Add(string path, string message, string? hint = null)
    {
        if (_paths.Add(path))
        {
            _errors.Add(new ConfigError(path, message, hint));
        }
    }

    /// <summary>Whether a problem was recorded at <paramref name="path"/> or at a value inside it.</summary>
    public bool AnyAtOrUnder(string path) => _errors.Exists(e => IsAtOrUnder(e.Path, path));

    private static bool IsAtOrUnder(string candidate, string path) =>
        candidate.Length == path.Length
            ? string.Equals(candidate, path, StringComparison.Ordinal)
            : candidate.Length > path.Length && candidate[path.Length] is '.' or '[' && candidate.StartsWith(path, StringComparison.Ordinal);
}

/// <summary>Finds the known name a misspelt one most likely meant.</summary>
internal static class NameSuggestion
{
    /// <summary>The known name closest to <paramref name="name"/>, if it is close enough to be a likely typo.</summary>
    public static string? Closest(string name, IEnumerable<string> known)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in known)
        {
            var distance = Distance(name.ToLowerInvariant(), candidate.ToLowerInvariant());
            if (distance < bestDistance)
            {
                bestDistance = distance;
                best = candidate;
            }
        }

        return best is not null && bestDistance <= Math.Max(2, best.Length / 4) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
