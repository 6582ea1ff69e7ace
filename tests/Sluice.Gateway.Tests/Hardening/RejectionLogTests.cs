using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Hardening;

/// <summary>
/// A client decides how many upgrades it gets rejected: the log must not grow with it, and the metric must still count
/// every one.
/// </summary>
public partial class RejectionLogTests
{
    private const int Rejections = 1500;

    [Fact]
    public async Task ManyRejectedUpgrades_LogAFewLinesAndASummary_TheMetricCountsEveryOne()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            { "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "upgrade": ["key"] } ],
              "policies": { "key": { "type": "api-key", "options": { "header": "X-Key", "keys": [ { "key": "a-long-enough-key", "subject": "a" } ] } } } }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var http = new HttpClient();

        // Not WebSocket requests (400) and upgrades without the key (401): two statuses, each throttled on its own.
        await Parallel.ForAsync(0, Rejections, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, token) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, gateway.Http("/echo"));
            if (i % 2 == 1)
            {
                request.Headers.Add("Connection", "Upgrade");
                request.Headers.Add("Upgrade", "websocket");
                request.Headers.Add("Sec-WebSocket-Version", "13");
                request.Headers.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
            }

            using var response = await http.SendAsync(request, token);
            Assert.Equal(i % 2 == 1 ? HttpStatusCode.Unauthorized : HttpStatusCode.BadRequest, response.StatusCode);
        });

        // Every rejection is in a line of its own or in a summary, once the throttle's intervals have ended.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(40);
        int logged, summarized;
        do
        {
            await Task.Delay(500);
            var lines = gateway.Output.Split('\n');
            logged = lines.Count(l => l.Contains("Upgrade to /echo rejected with", StringComparison.Ordinal));
            summarized = lines.Select(l => SummaryLine().Match(l)).Where(m => m.Success).Sum(m => int.Parse(m.Groups["count"].Value, CultureInfo.InvariantCulture));
        }
        while (logged + summarized < Rejections && DateTime.UtcNow < deadline);

        Assert.Equal(Rejections, logged + summarized);
        Assert.InRange(logged, 20, 200);
        Assert.True(gateway.Output.Split('\n').Length < 300, $"{gateway.Output.Split('\n').Length} lines of output");

        var metrics = await http.GetStringAsync(gateway.Http("/_sluice/metrics"));
        Assert.Equal(Rejections / 2, Counter(metrics, "400"));
        Assert.Equal(Rejections / 2, Counter(metrics, "401"));
    }

    private static double Counter(string metrics, string status) =>
        metrics.Split('\n')
            .Where(l => l.StartsWith("sluice_upgrades_rejected_total{", StringComparison.Ordinal) && l.Contains("route=\"/echo\"", StringComparison.Ordinal) && l.Contains($"status=\"{status}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l.Split(' ')[1], CultureInfo.InvariantCulture));

    [GeneratedRegex(@"(?<count>\d+) more upgrades to /echo rejected with \d+ in the last")]
    private static partial Regex SummaryLine();
}
