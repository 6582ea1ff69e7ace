using System.Text.Json;
using System.Text.Json.Nodes;

namespace Sluice.LoadTest;

/// <summary>
/// Merges the rounds of a part, one JSON line per round, (bench/run.sh's ROUNDS: every target measured in turn, then again) into one result per
/// target: the median of each figure over its rounds, so that a burst of noise on this shared machine that falls on
/// one target's slice does not become that target's figure, and a ratio compares targets measured across the same
/// minutes. Counts (round trips, errors, mismatches, losses) are summed; a text field (the bottleneck) takes its most
/// frequent value, a flag (trusted) holds only if it held in every round. Writes one JSON line per target.
/// </summary>
internal static class Rounds
{
    private static readonly HashSet<string> Summed = ["roundTrips", "errors", "mismatches", "lost", "seconds", "deliveries", "duplicated", "outOfOrder"];

    public static int Merge(string jsonlPath)
    {
        var runs = File.ReadLines(jsonlPath)
            .Where(line => !string.IsNullOrWhiteSpace(line))
            .Select(line => JsonNode.Parse(line)!.AsObject())
            .ToList();
        // A fan-out line is one target per subscriber count and loop (1,000 closed, 1,000 open, 10,000 closed).
        foreach (var target in runs.GroupBy(r => ((string?)r["name"], r["subscribers"]?.ToJsonString(), (string?)r["mode"])))
        {
            var rounds = target.ToList();
            var result = new JsonObject();
            // Every field any round has: a round that failed to start has only its name and error.
            foreach (var field in rounds.SelectMany(r => r.Select(p => p.Key)).Distinct())
            {
                var values = rounds.Select(r => r[field]).ToList();
                var first = values.FirstOrDefault(v => v is not null);
                result[field] = first?.GetValueKind() switch
                {
                    JsonValueKind.Number when Summed.Contains(field) => JsonValue.Create(values.Sum(v => v?.GetValue<double>() ?? 0)),
                    JsonValueKind.Number => JsonValue.Create(Median(values.Where(v => v is not null).Select(v => v!.GetValue<double>()).ToList())),
                    JsonValueKind.True or JsonValueKind.False => JsonValue.Create(values.All(v => v?.GetValue<bool>() == true)),
                    JsonValueKind.String => JsonValue.Create(values.Where(v => v is not null).GroupBy(v => v!.GetValue<string>()).OrderByDescending(g => g.Count()).First().Key),
                    _ => values.FirstOrDefault(v => v is not null)?.DeepClone(),
                };
            }

            result["rounds"] = rounds.Count;
            Console.WriteLine(result.ToJsonString());
        }

        return 0;
    }

    /// <summary>The median of the values (sorted in place), to one decimal; 0 when there are none.</summary>
    internal static double Median(List<double> values)
    {
        if (values.Count == 0)
        {
            return 0;
        }

        values.Sort();
        var middle = values.Count / 2;
        var median = values.Count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
        return Math.Round(median, 1);
    }
}
