using System.Globalization;

namespace Sluice.LoadTest;

/// <summary>--name value pairs; a flag without a value is "true".</summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Arguments Parse(string[] args)
    {
        var result = new Arguments();
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"unexpected argument '{args[i]}'");
            }

            var hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
            result._values[args[i][2..]] = hasValue ? args[++i] : "true";
        }

        return result;
    }

    public string String(string name, string? fallback = null) =>
        _values.TryGetValue(name, out var value) ? value : fallback ?? throw new ArgumentException($"--{name} is required");

    public int Int(string name, int? fallback = null) =>
        _values.TryGetValue(name, out var value) ? int.Parse(value, CultureInfo.InvariantCulture) : fallback ?? throw new ArgumentException($"--{name} is required");

    public double Double(string name, double fallback) =>
        _values.TryGetValue(name, out var value) ? double.Parse(value, CultureInfo.InvariantCulture) : fallback;

    public bool Flag(string name) => _values.ContainsKey(name);
}
