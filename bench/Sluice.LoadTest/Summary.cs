using System.Globalization;
using System.Text.Json;

namespace Sluice.LoadTest;

/// <summary>
/// Several runs side by side (the directories bench/repeat.sh writes, artifacts/bench/run-K): each figure's value in
/// every run, its median and spread (max - min, in % of the median), then each target's verdict in every run, since
/// issue 18 wants its targets met in every run, not in one of three. Prints markdown.
/// </summary>
internal static class Summary
{
    private static readonly string[] Fields =
        ["cpuUsPerRoundTrip", "rps", "p50Us", "p99Us", "kibPerConnection", "connections", "deliveriesPerSecond", "serverCpuUsPerDelivery"];

    public static int Run(string[] directories)
    {
        if (directories.Length == 0)
        {
            throw new ArgumentException("give the directories of the runs (artifacts/bench/run-1 ...)");
        }

        var runs = directories.Select(Figures).ToList();
        var header = "| " + string.Join(" | ", directories.Select((_, i) => $"run {i + 1}"));
        Console.WriteLine($"Runs: {string.Join(", ", directories)}\n");
        Console.WriteLine($"| figure {header} | median | spread |");
        Console.WriteLine("| ---" + string.Concat(Enumerable.Repeat(" | ---", directories.Length + 2)) + " |");
        foreach (var figure in runs.SelectMany(r => r.Keys).Distinct())
        {
            var values = runs.Select(r => r.TryGetValue(figure, out var v) ? v : (double?)null).ToList();
            var present = values.OfType<double>().Order().ToList();
            var median = present.Count % 2 == 1 ? present[present.Count / 2] : (present[(present.Count / 2) - 1] + present[present.Count / 2]) / 2;
            var spread = median == 0 ? 0 : (present[^1] - present[0]) * 100 / median;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {figure} | {string.Join(" | ", values.Select(v => v is { } x ? Format(x) : "-"))} | {Format(median)} | {spread:F1}% |"));
        }

        var verdicts = directories.Select(d => Verdict.Evaluate(d)).ToList();
        Console.WriteLine($"\n| target {header} | every run |");
        Console.WriteLine("| ---" + string.Concat(Enumerable.Repeat(" | ---", directories.Length + 1)) + " |");
        for (var t = 0; t < verdicts[0].Count; t++)
        {
            var outcomes = verdicts.Select(v => v[t]).ToList();
            var every = outcomes.All(o => o.Status == "MET") ? "**MET**"
                : outcomes.Any(o => o.Status == "MISSED") ? $"**MISSED** ({outcomes.Count(o => o.Status == "MISSED")} of {outcomes.Count})"
                : "n/a";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {outcomes[0].Label} | {string.Join(" | ", outcomes.Select(o => o.Value is { } v ? $"{o.Status} {v:F2}" : o.Status))} | {every} |"));
        }

        return 0;
    }

    /// <summary>"part name field" to value, for the fields above, from every results file of one run.</summary>
    private static Dictionary<string, double> Figures(string directory)
    {
        var figures = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory, "*.json").Order(StringComparer.Ordinal))
        {
            using var document = JsonDocument.Parse(File.ReadAllText(file));
            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                continue;
            }

            var part = Path.GetFileNameWithoutExtension(file);
            foreach (var row in document.RootElement.EnumerateArray())
            {
                var name = row.TryGetProperty("name", out var n) ? n.GetString() : "?";
                if (row.TryGetProperty("subscribers", out var subscribers))
                {
                    name += $" {subscribers}/{(row.TryGetProperty("mode", out var mode) ? mode.GetString() : "closed")}";
                }

                // Connections held is a figure of the memory part only; elsewhere it is the load's setting.
                foreach (var field in Fields.Where(f => f != "connections" || part == "memory"))
                {
                    if (row.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Number)
                    {
                        figures[$"{part} {name} {field}"] = value.GetDouble();
                    }
                }
            }
        }

        return figures;
    }

    private static string Format(double value) => value.ToString(value >= 1000 ? "N0" : "0.0#", CultureInfo.InvariantCulture);
}
