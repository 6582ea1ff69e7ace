using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Http;

/// <summary>Small helpers of the tests in this folder.</summary>
internal static class HttpTestHelpers
{
    /// <summary>Sends a WebSocket upgrade request over a raw socket and reads the whole answer (head and body) of a refusal.</summary>
    public static async Task<(int Status, string Head, string Body)> UpgradeAsync(Uri uri, string extraHeaders = "")
    {
        using var tcp = new TcpClient { NoDelay = true };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await tcp.ConnectAsync(uri.Host, uri.Port, timeout.Token);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
            $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extraHeaders}\r\n"), timeout.Token);
        var received = new List<byte>();
        var buffer = new byte[4096];
        string? head = null;
        var length = -1;
        while (head is null || received.Count < length)
        {
            var n = await stream.ReadAsync(buffer, timeout.Token);
            if (n == 0)
            {
                break;
            }

            received.AddRange(buffer.AsSpan(0, n));
            if (head is null && Encoding.ASCII.GetString([.. received]).IndexOf("\r\n\r\n", StringComparison.Ordinal) is var end and >= 0)
            {
                head = Encoding.ASCII.GetString([.. received], 0, end);
                received.RemoveRange(0, end + 4);
                var header = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
                length = header is null ? 0 : int.Parse(header["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        head ??= string.Empty;
        var status = head.Length > 0 ? int.Parse(head.Split(' ')[1], CultureInfo.InvariantCulture) : 0;
        return (status, head, Encoding.UTF8.GetString([.. received]));
    }

    /// <summary>The gateway process's resident memory (VmRSS), in bytes.</summary>
    public static long ResidentBytes(this GatewayProcess gateway)
    {
        var line = File.ReadLines($"/proc/{gateway.ProcessId}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>Reads /metrics until <paramref name="until"/> holds of its samples (or 20 s pass), and returns them.</summary>
    public static async Task<Dictionary<string, double>> MetricsAsync(this GatewayProcess gateway, Func<Dictionary<string, double>, bool> until)
    {
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var samples = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var line in (await http.GetStringAsync(gateway.Http("/_sluice/metrics"))).Split('\n'))
            {
                var space = line.LastIndexOf(' ');
                if (line.Length == 0 || line[0] == '#' || space < 0)
                {
                    continue;
                }

                if (double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                {
                    samples[line[..space]] = value;
                }
            }

            if (until(samples) || DateTime.UtcNow > deadline)
            {
                return samples;
            }

            await Task.Delay(250);
        }
    }

    /// <summary>The sum of the samples of <paramref name="name"/> whose labels contain every one of <paramref name="labels"/>.</summary>
    public static double Sum(this Dictionary<string, double> samples, string name, params string[] labels) =>
        samples.Where(s => (s.Key == name || s.Key.StartsWith(name + "{", StringComparison.Ordinal)) && labels.All(l => s.Key.Contains(l, StringComparison.Ordinal))).Sum(s => s.Value);
}
