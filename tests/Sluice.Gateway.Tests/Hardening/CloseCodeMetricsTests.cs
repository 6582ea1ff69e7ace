using System.Net.WebSockets;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>Label values that clients choose must not grow the metrics without bound.</summary>
public partial class MetricsTests
{
    [Fact]
    public async Task ClientChosenCloseCodes_AreBucketed_SoALaterNormalCloseKeepsItsRoute()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/m", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);

        // Every application code (3000-4999): 2,000 values, the exporter's series limit per metric.
        var codes = new Queue<int>(Enumerable.Range(3000, 2000));
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            while (true)
            {
                int code;
                lock (codes)
                {
                    if (!codes.TryDequeue(out code))
                    {
                        return;
                    }
                }

                using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/m"));
                await client.CloseAsync((WebSocketCloseStatus)code, null, CancellationToken.None);
            }
        })));

        using (var client = await WebSocketClient.ConnectAsync(gateway.Ws("/m")))
        {
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
        }

        using var http = new HttpClient();
        Dictionary<string, double> metrics;
        var deadline = DateTime.UtcNow.AddSeconds(15);
        do
        {
            metrics = Parse(await http.GetStringAsync(gateway.Http("/_sluice/metrics")));
            await Task.Delay(200);
        }
        while (metrics.Where(m => m.Key.StartsWith("sluice_connections_closed_total{", StringComparison.Ordinal)).Sum(m => m.Value) < 2001 && DateTime.UtcNow < deadline);

        var closed = metrics.Where(m => m.Key.StartsWith("sluice_connections_closed_total{", StringComparison.Ordinal)).ToDictionary();
        Assert.Equal(
            ["sluice_connections_closed_total{close_code=\"1000\",route=\"/m\"}", "sluice_connections_closed_total{close_code=\"3xxx\",route=\"/m\"}", "sluice_connections_closed_total{close_code=\"4xxx\",route=\"/m\"}"],
            closed.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(1, closed["sluice_connections_closed_total{close_code=\"1000\",route=\"/m\"}"]);
        Assert.Equal(1000, closed["sluice_connections_closed_total{close_code=\"3xxx\",route=\"/m\"}"]);
        Assert.Equal(1000, closed["sluice_connections_closed_total{close_code=\"4xxx\",route=\"/m\"}"]);
    }
}
