using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// Hundreds of proxied connections with sequence-numbered messages through a redacting policy, to a node backend:
/// nothing lost, duplicated or reordered, and the gateway's memory and descriptors level off. 20 seconds in the
/// normal suite; five minutes with <c>./test.sh --long</c>. The figures go to artifacts/soak.json.
/// </summary>
public class SoakTests
{
    private static readonly bool s_long = Environment.GetEnvironmentVariable("SLUICE_LONG_TESTS") == "1";

    [Fact]
    public async Task HundredsOfConnections_LoseDuplicateAndReorderNothing_AndResourcesLevelOff()
    {
        var duration = s_long ? TimeSpan.FromMinutes(5) : TimeSpan.FromSeconds(20);
        const int Connections = 200;
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Node);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [ { "path": "/soak", "proxy": { "target": "ws://{{backend.Authority}}/echo" }, "inbound": ["redact"] } ],
              "policies": { "redact": { "type": "json-redact", "options": { "paths": ["/secret"] } } } }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        var pid = gateway.ProcessId;
        var clients = new List<ClientWebSocket>();
        for (var i = 0; i < Connections; i++)
        {
            clients.Add(await WebSocketClient.ConnectAsync(gateway.Ws("/soak")));
        }

        using var stop = new CancellationTokenSource(duration);
        var samples = new List<(double Seconds, long RssKiB, int Descriptors)>();
        var clock = Stopwatch.StartNew();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                samples.Add((clock.Elapsed.TotalSeconds, RssKiB(pid), Directory.GetFiles($"/proc/{pid}/fd").Length));
                await Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None);
            }
        });
        var counts = await Task.WhenAll(clients.Select((client, index) => Task.Run(() => RunAsync(client, index, stop.Token))));
        await sampler;

        var total = counts.Sum(c => c.Messages);
        var wrong = counts.Sum(c => c.Wrong);
        var warm = samples.Where(s => s.Seconds >= duration.TotalSeconds / 3).ToList();
        var report = new
        {
            connections = Connections,
            seconds = Math.Round(clock.Elapsed.TotalSeconds),
            messages = total,
            // Each echo must be exactly the next number with the secret removed: a lost, duplicated, reordered or
            // unredacted message is one that differs.
            wrongEchoes = wrong,
            rssKiB = new { first = samples[0].RssKiB, warmMin = warm.Min(s => s.RssKiB), warmMax = warm.Max(s => s.RssKiB), last = samples[^1].RssKiB },
            descriptors = new { first = samples[0].Descriptors, max = samples.Max(s => s.Descriptors), last = samples[^1].Descriptors },
        };
        Directory.CreateDirectory(ArtifactsDirectory);
        await File.WriteAllTextAsync(Path.Combine(ArtifactsDirectory, "soak.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));

        Assert.Equal(0, wrong);
        Assert.All(counts, c => Assert.True(c.Messages > 5, $"a connection made only {c.Messages} round trips"));
        Assert.All(clients, c => Assert.Equal(WebSocketState.Open, c.State));
        // Levelled off: after warm-up, memory stays within a band and no descriptor is leaked.
        Assert.True(warm.Max(s => s.RssKiB) < warm.Min(s => s.RssKiB) * 1.5 + 32_768, JsonSerializer.Serialize(report));
        // Descriptors are compared after warm-up too: the runtime opens a few lazily (the thread pool, the HTTP stack of
        // the backend handshakes) during the first seconds; a leak grows past them with the traffic.
        Assert.InRange(samples[^1].Descriptors, warm[0].Descriptors - 5, warm[0].Descriptors + 5);
    }

    private static string ArtifactsDirectory => Path.GetFullPath(Path.Combine(ExternalPeer.InteropDirectory, "..", "..", "artifacts"));

    /// <summary>Sends numbered messages, one in flight, and checks each echo is the next number with its secret gone.</summary>
    private static async Task<(long Messages, long Wrong)> RunAsync(ClientWebSocket client, int index, CancellationToken stop)
    {
        long sequence = 0;
        long wrong = 0;
        while (!stop.IsCancellationRequested)
        {
            await client.SendTextAsync($$"""{"c":{{index}},"n":{{sequence}},"secret":"s3cr3t","pad":"{{new string('x', 64)}}"}""");
            var echo = await client.ReceiveTextAsync(TimeSpan.FromSeconds(30));
            var expected = $$"""{"c":{{index}},"n":{{sequence}},"pad":"{{new string('x', 64)}}"}""";
            if (echo != expected)
            {
                wrong++;
                return (sequence, wrong);
            }

            sequence++;
        }

        return (sequence, wrong);
    }

    private static long RssKiB(int pid) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
}
