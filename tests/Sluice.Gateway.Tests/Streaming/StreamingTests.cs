using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Streaming;

/// <summary>
/// A route's <c>stream</c> (the contract's "Control frames and large messages"), through the gateway process with a
/// python3-websockets backend that hashes every message frame by frame as it arrives.
/// </summary>
public class StreamingTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int MiB = 1024 * 1024;

    /// <summary>
    /// 256 MiB through the gateway with a 64 KiB threshold: it arrives intact, and the gateway's peak resident memory
    /// (VmHWM) stays far below the message's size, so the gateway never held it whole. Neither does the test: it sends
    /// one 1 MiB block 256 times and hashes as it sends. Part of the normal suite; about 5-20 s on 2 cores.
    /// </summary>
    [Fact]
    [Trait("Category", "Large")]
    public async Task Message256MiB_IsStreamedThroughTheGateway_Intact_WithPeakMemoryFarBelowItsSize()
    {
        await using var backend = await StreamBackend.StartAsync();
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
        {
          "policies": {
            "size": { "type": "size-limit", "options": { "maxBytes": 536870912 } },
            "rate": { "type": "rate-limit", "options": { "permits": 100, "perSeconds": 60 } },
            "redact": { "type": "json-redact", "options": { "paths": ["/password"] } }
          },
          "routes": [ {
            "path": "/big", "proxy": { "target": "ws://{{backend.Authority}}/" },
            "stream": { "aboveBytes": 65536, "maxBytes": 536870912 },
            "inbound": ["size", "rate", "redact"]
          } ]
        }
        """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/big"));

        var before = PeakResidentBytes(gateway.ProcessId);
        var block = new byte[MiB];
        Random.Shared.NextBytes(block);
        using var expected = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        for (var i = 0; i < 256; i++)
        {
            expected.AppendData(block);
            await client.SendAsync(block, WebSocketMessageType.Binary, endOfMessage: i == 255, timeout.Token);
        }

        var answer = await client.ReceiveTextAsync(TimeSpan.FromSeconds(60));
        Assert.Equal($"{256L * MiB}:{Convert.ToHexString(expected.GetHashAndReset()).ToLowerInvariant()}", answer);

        var peak = PeakResidentBytes(gateway.ProcessId);
        output.WriteLine($"Gateway peak resident memory (VmHWM): {before / MiB} MiB once connected, {peak / MiB} MiB after 256 MiB");
        Assert.True(peak < 128L * MiB, $"The gateway's peak resident memory was {peak / MiB} MiB for a 256 MiB message.");

        // json-redact reads whole messages: it was skipped, and the skip counted; size-limit and rate-limit saw it.
        var metrics = await WaitForMetricAsync(gateway, "sluice_interceptor_skipped_total{direction=\"inbound\",policy=\"redact\",route=\"/big\"}", 1);
        Assert.Equal(1, metrics["sluice_interceptor_skipped_total{direction=\"inbound\",policy=\"redact\",route=\"/big\"}"]);
        Assert.DoesNotContain(metrics.Keys, k => k.StartsWith("sluice_interceptor_skipped_total", StringComparison.Ordinal) && !k.Contains("policy=\"redact\"", StringComparison.Ordinal));
        Assert.Equal(1, metrics["sluice_messages_total{direction=\"inbound\",route=\"/big\"}"]);
        Assert.Equal(256.0 * MiB, metrics["sluice_message_bytes_total{direction=\"inbound\",route=\"/big\"}"]);
    }

    [Fact]
    public async Task StreamedMessage_OverMaxBytes_ClosesBothSidesWith1009()
    {
        await using var backend = await StreamBackend.StartAsync();
        await using var gateway = await StartAsync(backend, """{ "aboveBytes": 65536, "maxBytes": 1048576 }""");
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/big"));

        var close = Task.Run(() => client.ReceiveCloseAsync(TimeSpan.FromSeconds(30)));
        await SendIgnoringCloseAsync(client, new byte[256 * 1024], 8);

        Assert.Equal(WebSocketCloseStatus.MessageTooBig, (await close).Status);
        Assert.StartsWith("CLOSED 1009", await backend.WaitForLineAsync("CLOSED"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SizeLimit_CountsTheRunningSize_AndRateLimit_CountsAStreamedMessageOnce()
    {
        await using var backend = await StreamBackend.StartAsync();
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
        {
          "policies": {
            "size": { "type": "size-limit", "options": { "maxBytes": 600000, "action": "close" } },
            "rate": { "type": "rate-limit", "options": { "permits": 2, "perSeconds": 3600 } }
          },
          "routes": [ {
            "path": "/big", "proxy": { "target": "ws://{{backend.Authority}}/" },
            "stream": { "aboveBytes": 65536, "maxBytes": 104857600 },
            "inbound": ["rate", "size"]
          } ]
        }
        """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/big"));

        // Two streamed messages of many fragments each pass the rate limit of two messages; the third is refused whole.
        var message = new byte[300 * 1024];
        Random.Shared.NextBytes(message);
        var hash = Convert.ToHexString(SHA256.HashData(message)).ToLowerInvariant();
        for (var i = 0; i < 3; i++)
        {
            await client.SendBinaryAsync(message);
        }

        // The refusal goes straight back, the backend's answers come through it: their order is not fixed.
        var answers = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            answers.Add(await client.ReceiveTextAsync(TimeSpan.FromSeconds(30)));
        }

        Assert.Equal(2, answers.Count(a => a == $"{message.Length}:{hash}"));
        Assert.Single(answers, a => a.Contains("\"policy\":\"rate\"", StringComparison.Ordinal));
        Assert.Equal(2, await backend.CountLinesAsync("MESSAGE", 2));

        // A fresh connection (its own rate budget): 1 MiB passes the size limit's 600000 bytes part-way, so it closes with 1009.
        using var second = await WebSocketClient.ConnectAsync(gateway.Ws("/big"));
        var close = Task.Run(() => second.ReceiveCloseAsync(TimeSpan.FromSeconds(30)));
        await SendIgnoringCloseAsync(second, new byte[128 * 1024], 8);
        var (status, reason) = await close;
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, status);
        Assert.Contains("message too large", reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientThatVanishesMidMessage_ClosesTheBackendWith1001()
    {
        await using var backend = await StreamBackend.StartAsync();
        await using var gateway = await StartAsync(backend, """{ "aboveBytes": 65536 }""");
        using (var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/big")))
        {
            await raw.SendFrameAsync(0x2, new byte[300 * 1024], fin: false);
            await backend.WaitForLineAsync("FIRST");
        }

        Assert.Equal("CLOSED 1001 client went away", await backend.WaitForLineAsync("CLOSED"));
        var metrics = await WaitForMetricAsync(gateway, "sluice_connections_closed_total{close_code=\"none\",route=\"/big\"}", 1);
        Assert.Equal(1, metrics["sluice_connections_closed_total{close_code=\"none\",route=\"/big\"}"]);
        Assert.Equal(0, metrics["sluice_connections_active{route=\"/big\"}"]);
    }

    [Fact]
    public async Task BackendThatVanishesMidMessage_ClosesTheClientWith1014()
    {
        await using var backend = await StreamBackend.StartAsync();
        await using var gateway = await StartAsync(backend, """{ "aboveBytes": 65536 }""");
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/big"));
        await client.SendTextAsync("die-mid-message");

        // Part of the message arrives (it was streamed), then the close: the rest will never come.
        var buffer = new byte[256 * 1024];
        var received = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        WebSocketReceiveResult result;
        while ((result = await client.ReceiveAsync(buffer, timeout.Token)).MessageType != WebSocketMessageType.Close)
        {
            Assert.False(result.EndOfMessage);
            received += result.Count;
        }

        Assert.True(received > 0, "Nothing of the streamed message arrived before the close.");
        Assert.Equal((WebSocketCloseStatus)1014, client.CloseStatus);
        Assert.Equal("backend connection lost", client.CloseStatusDescription);
    }

    private static async Task<GatewayProcess> StartAsync(StreamBackend backend, string stream)
    {
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""{ "routes": [ { "path": "/big", "proxy": { "target": "ws://{{backend.Authority}}/" }, "stream": {{stream}} } ] }""");
        return await GatewayProcess.StartAsync(path);
    }

    private static async Task SendIgnoringCloseAsync(ClientWebSocket client, byte[] part, int count)
    {
        try
        {
            for (var i = 0; i < count; i++)
            {
                await client.SendAsync(part, WebSocketMessageType.Binary, endOfMessage: i == count - 1, CancellationToken.None);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException)
        {
            // The gateway closed first, as it should.
        }
    }

    /// <summary>The peak resident set size of a process (VmHWM in /proc/PID/status), in bytes.</summary>
    private static long PeakResidentBytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    private static async Task<Dictionary<string, double>> WaitForMetricAsync(GatewayProcess gateway, string series, double atLeast)
    {
        using var http = new HttpClient();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            var metrics = MetricsTests.Parse(await http.GetStringAsync(gateway.Http("/_sluice/metrics")));
            if (metrics.GetValueOrDefault(series) >= atLeast || DateTime.UtcNow > deadline)
            {
                return metrics;
            }

            await Task.Delay(200);
        }
    }

    /// <summary>stream_backend.py, started as a process on a free port.</summary>
    private sealed class StreamBackend : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _lines = new();

        private StreamBackend(Process process)
        {
            _process = process;
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    _lines.Enqueue(e.Data);
                }
            };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public string Authority { get; private set; } = string.Empty;

        public static async Task<StreamBackend> StartAsync()
        {
            var info = new ProcessStartInfo("/usr/bin/python3")
            {
                ArgumentList = { Path.Combine(Folder(), "stream_backend.py") },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            var backend = new StreamBackend(Process.Start(info)!);
            var listening = await backend.WaitForLineAsync("LISTENING");
            backend.Authority = $"127.0.0.1:{listening.Split(' ')[1]}";
            return backend;
        }

        /// <summary>Takes the first line not yet taken that starts with <paramref name="prefix"/>.</summary>
        public async Task<string> WaitForLineAsync(string prefix)
        {
            var taken = new List<string>();
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (DateTime.UtcNow < deadline)
            {
                while (_lines.TryDequeue(out var line))
                {
                    if (line.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        foreach (var other in taken)
                        {
                            _lines.Enqueue(other);
                        }

                        return line;
                    }

                    taken.Add(line);
                }

                foreach (var other in taken)
                {
                    _lines.Enqueue(other);
                }

                taken.Clear();
                await Task.Delay(50);
            }

            throw new TimeoutException($"The backend did not print '{prefix}'. Output: {string.Join(" | ", _lines)}");
        }

        /// <summary>How many lines start with <paramref name="prefix"/>, once there are <paramref name="expected"/> (or 10 s passed).</summary>
        public async Task<int> CountLinesAsync(string prefix, int expected)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            int count;
            while ((count = _lines.Count(l => l.StartsWith(prefix, StringComparison.Ordinal))) < expected && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }

            return count;
        }

        public ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
            return default;
        }

        private static string Folder([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
    }
}
