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
/// The problems found so far. One cause gives one line: a second problem at a path that already has one is not
/// recorded (a value that is not a number is not also out of range; an unset <c>env:NAME</c> is not also too short).
/// </summary>
internal sealed class ConfigErrors
{
    // Listed by part of the file, policies before the routes that name them; see InFileOrder.
    private static readonly string[] s_sections = ["listen", "tls", "limits", "admin", "backplane", "policies", "routes"];

    private readonly List<Entry> _errors = [];
    private readonly HashSet<string> _paths = new(StringComparer.Ordinal);

    public int Count => _errors.Count;

    public void Add(string path, string message, string? hint = null) => Add(new ConfigError(path, message, hint), path, first: false);

    /// <summary>An unknown key: listed with the object that holds it, before that object's other problems.</summary>
    public void AddUnknownKey(string objectPath, string keyPath, string message, string? hint) => Add(new ConfigError(keyPath, message, hint), objectPath, first: false);

    /// <summary>An <c>env:NAME</c> that is not set: listed before every other problem, as the first thing to fix.</summary>
    public void AddEnvironment(string path, string message) => Add(new ConfigError(path, message), path, first: true);

    /// <summary>Whether a problem was recorded at <paramref name="path"/> or at a value inside it.</summary>
    public bool AnyAtOrUnder(string path) => _errors.Exists(e => IsAtOrUnder(e.Error.Path, path));

    /// <summary>
    /// The problems as they are shown: unset <c>env:NAME</c> first, then by part of the file (the top level,
    /// <c>listen</c>, <c>limits</c>, <c>admin</c>, <c>backplane</c>, <c>policies</c>, <c>routes</c>), and within a part in
    /// the file's order, so the order of the checks does not show.
    /// </summary>
    public IEnumerable<ConfigError> InFileOrder(JsonPositions positions) => _errors
        .OrderBy(e => !e.First)
        .ThenBy(e => Array.IndexOf(s_sections, Section(e.SortPath)))
        .ThenBy(e => positions.Of(e.SortPath))
        .Select(e => e.Error);

    private void Add(ConfigError error, string sortPath, bool first)
    {
        if (_paths.Add(error.Path))
        {
            _errors.Add(new Entry(error, sortPath, first));
        }
    }

    private static string Section(string path)
    {
        var end = path.IndexOfAny(['.', '[']);
        return end < 0 ? path : path[..end];
    }

    private static bool IsAtOrUnder(string candidate, string path) =>
        candidate.Length == path.Length
            ? string.Equals(candidate, path, StringComparison.Ordinal)
            : candidate.Length > path.Length && candidate[path.Length] is '.' or '[' && candidate.StartsWith(path, StringComparison.Ordinal);

    private sealed record Entry(ConfigError Error, string SortPath, bool First);
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
