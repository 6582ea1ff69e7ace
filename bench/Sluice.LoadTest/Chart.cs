using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Sluice.LoadTest;

/// <summary>
/// An SVG of the proxy comparison: round trips per second and proxy CPU per round trip, one bar each per target,
/// from the results file bench/run.sh writes (an array of { "name", "rps", "cpuUsPerRoundTrip" }).
/// </summary>
internal static class Chart
{
    public static int Write(string resultsPath, string svgPath)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(resultsPath));
        var rows = document.RootElement.EnumerateArray()
            .Where(r => r.TryGetProperty("cpuUsPerRoundTrip", out var cpu) && cpu.ValueKind == JsonValueKind.Number)
            .Select(r => (Name: r.GetProperty("name").GetString()!, Rps: r.GetProperty("rps").GetDouble(), Cpu: r.GetProperty("cpuUsPerRoundTrip").GetDouble()))
            .ToList();

        const int barHeight = 22, gap = 8, labelWidth = 260, barWidth = 380, panelGap = 60;
        var height = 60 + rows.Count * (barHeight + gap);
        var width = labelWidth + 2 * barWidth + panelGap + 80;
        var maxRps = rows.Max(r => r.Rps);
        var maxCpu = rows.Max(r => r.Cpu);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">""");
        svg.Append(CultureInfo.InvariantCulture, $"""<rect width="100%" height="100%" fill="white"/>""");
        svg.Append(CultureInfo.InvariantCulture, $"""<text x="{labelWidth}" y="24" font-weight="bold">round trips / s (higher is better)</text>""");
        svg.Append(CultureInfo.InvariantCulture, $"""<text x="{labelWidth + barWidth + panelGap}" y="24" font-weight="bold">proxy CPU µs / round trip (lower is better)</text>""");
        for (var i = 0; i < rows.Count; i++)
        {
            var (name, rps, cpu) = rows[i];
            var y = 40 + i * (barHeight + gap);
            var color = name.StartsWith("sluice", StringComparison.OrdinalIgnoreCase) ? "#1f6feb" : "#8b949e";
            svg.Append(CultureInfo.InvariantCulture, $"""<text x="{labelWidth - 8}" y="{y + 16}" text-anchor="end">{Escape(name)}</text>""");
            var w1 = barWidth * rps / maxRps;
            svg.Append(CultureInfo.InvariantCulture, $"""<rect x="{labelWidth}" y="{y}" width="{w1:F1}" height="{barHeight}" fill="{color}"/>""");
            svg.Append(CultureInfo.InvariantCulture, $"""<text x="{labelWidth + w1 + 4:F1}" y="{y + 16}">{rps:N0}</text>""");
            var x2 = labelWidth + barWidth + panelGap;
            var w2 = barWidth * cpu / maxCpu;
            svg.Append(CultureInfo.InvariantCulture, $"""<rect x="{x2}" y="{y}" width="{w2:F1}" height="{barHeight}" fill="{color}"/>""");
            svg.Append(CultureInfo.InvariantCulture, $"""<text x="{x2 + w2 + 4:F1}" y="{y + 16}">{cpu:F1}</text>""");
        }

        svg.Append("</svg>");
        File.WriteAllText(svgPath, svg.ToString());
        return 0;
    }

    /// <summary>Prints a markdown table of a results file: one row per result, one column per field.</summary>
    public static int Table(string resultsPath)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(resultsPath));
        var rows = document.RootElement.EnumerateArray().ToList();
        var columns = rows.SelectMany(r => r.EnumerateObject().Select(p => p.Name)).Distinct()
            .Where(c => c is not ("url" or "firstError" or "kind")).ToList();
        Console.WriteLine("| " + string.Join(" | ", columns) + " |");
        Console.WriteLine("|" + string.Concat(columns.Select(_ => " --- |")));
        foreach (var row in rows)
        {
            Console.WriteLine("| " + string.Join(" | ", columns.Select(c => row.TryGetProperty(c, out var v) ? Cell(v) : string.Empty)) + " |");
        }

        return 0;
    }

    // JSON's true/false rather than .NET's True/False; null as an empty cell.
    private static string Cell(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Null => string.Empty,
        _ => value.ToString(),
    };

    private static string Escape(string text) => text.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal);
}
