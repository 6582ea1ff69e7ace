using System.Globalization;
using System.Net.WebSockets;
using System.Text.RegularExpressions;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>Known traffic, then the Prometheus text at {admin.path}/metrics, parsed.</summary>
public partial class MetricsTests
{
    [Fact]
    public async Task Metrics_CountKnownTraffic_ByRouteDirectionPolicyAndCloseCode()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/m", "handler": { "type": "echo" }, "inbound": ["small"] } ],
              "policies": { "small": { "type": "size-limit", "options": { "maxBytes": 4, "action": "reply" } } },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/m")))
        {
            await client.SendTextAsync("a");
            await client.SendTextAsync("bb");
            await client.SendTextAsync("too long");
            for (var i = 0; i < 3; i++)
            {
                await client.ReceiveTextAsync();
            }

            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        using var open = await WebSocketClient.ConnectAsync(gateway.Ws("/m"));
        using var http = new HttpClient();
        Dictionary<string, double> metrics = [];
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            // Loopback without admin.apiKey: allowed. The exporter caches a scrape briefly; ask until the close shows.
            metrics = Parse(await http.GetStringAsync(gateway.Http("/_sluice/metrics")));
            await Task.Delay(200);
        }
        while (metrics.GetValueOrDefault("sluice_connections_closed_total{close_code=\"1000\",route=\"/m\"}") < 1 && DateTime.UtcNow < deadline);

        Assert.Equal(1, metrics["sluice_connections_closed_total{close_code=\"1000\",route=\"/m\"}"]);
        Assert.Equal(2, metrics["sluice_connections_opened_total{route=\"/m\"}"]);
        Assert.Equal(1, metrics["sluice_connections_active{route=\"/m\"}"]);
        Assert.Equal(3, metrics["sluice_messages_total{direction=\"inbound\",route=\"/m\"}"]);
        Assert.Equal(1 + 2 + 8, metrics["sluice_message_bytes_total{direction=\"inbound\",route=\"/m\"}"]);
        Assert.Equal(1, metrics["sluice_policy_outcomes_total{direction=\"inbound\",outcome=\"replied\",policy=\"small\",route=\"/m\"}"]);
        Assert.Equal(3, metrics["sluice_pipeline_duration_seconds_count{direction=\"inbound\",opcode=\"text\",route=\"/m\"}"]);
    }

    [Fact]
    public async Task Tap_ShowsARoutesMessagesAsItsPoliciesLeaveThem_OnlyWhileOn()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [ { "path": "/t", "handler": { "type": "echo" }, "inbound": ["redact"] } ],
              "policies": { "redact": { "type": "json-redact", "options": { "paths": ["/password"], "mode": "mask" } } },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/t"));
        using var http = new HttpClient { BaseAddress = gateway.Http("/_sluice/") };
        await client.SendTextAsync("""{"note":"before the tap","password":"a"}""");
        await client.ReceiveTextAsync();

        (await http.PostAsync("tap?route=/t", null)).EnsureSuccessStatusCode();
        await client.SendTextAsync("""{"note":"tapped","password":"hunter2"}""");
        await client.ReceiveTextAsync();

        using var snapshot = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("snapshot"));
        var entries = snapshot.RootElement.GetProperty("tap").GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal(["inbound", "outbound"], entries.Select(e => e.GetProperty("direction").GetString()));
        Assert.All(entries, e => Assert.Contains("\"password\":\"***\"", e.GetProperty("preview").GetString(), StringComparison.Ordinal));
        Assert.DoesNotContain(entries, e => e.GetProperty("preview").GetString()!.Contains("before the tap", StringComparison.Ordinal));
        Assert.DoesNotContain("hunter2", snapshot.RootElement.GetRawText(), StringComparison.Ordinal);
    }

    /// <summary>Prometheus text exposition, one sample per line: name{labels} value; labels sorted, otel_scope_* left out.</summary>
    internal static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var match = SampleLine().Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: {line}");
            var labels = LabelPair().Matches(match.Groups["labels"].Value)
                .Select(m => (Name: m.Groups[1].Value, Value: m.Groups[2].Value))
                .Where(l => !l.Name.StartsWith("otel_scope", StringComparison.Ordinal))
                .OrderBy(l => l.Name, StringComparer.Ordinal)
                .Select(l => $"{l.Name}=\"{l.Value}\"");
            var key = match.Groups["name"].Value + "{" + string.Join(',', labels) + "}";
            samples[key] = double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
        }

        return samples;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)( \d+)?$")]
    private static partial Regex SampleLine();

    [GeneratedRegex("""([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)" """, RegexOptions.IgnorePatternWhitespace)]
    private static partial Regex LabelPair();
}
