using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Sluice.LoadTest;

/// <summary>
/// Closed-loop echo load: each connection keeps --inflight messages outstanding, checks every echo byte for byte
/// (or against the redacted form with --redacted) and times each round trip. The first --warmup seconds (two unless
/// given; bench/run.sh gives ten) warm up and are not counted. Prints one JSON line.
/// </summary>
internal static class LoadGenerator
{
    public static async Task<int> RunAsync(Arguments args)
    {
        var url = new Uri(args.String("url"));
        var connections = args.Int("connections", 50);
        var size = args.Int("size", 128);
        var inflight = args.Int("inflight", 4);
        var seconds = args.Int("seconds", 10);
        var redacted = args.Flag("redacted");
        var shape = args.String("shape", "pad");
        Payload.Check(shape, size);
        var warmup = TimeSpan.FromSeconds(args.Int("warmup", 2));

        // --header name:value on every upgrade request (an API key); --deflate offers permessage-deflate.
        var header = args.Flag("header") ? Header(args.String("header")) : ((string Name, string Value)?)null;
        var deflate = args.Flag("deflate");
        int? pid = args.Flag("pid") ? args.Int("pid") : null;
        int? backendPid = args.Flag("backend-pid") ? args.Int("backend-pid") : null;
        var name = args.String("name", url.ToString());
        if (!deflate)
        {
            var run = EpollLoad.Run(url, connections, size, inflight, redacted, shape, header, warmup, TimeSpan.FromSeconds(seconds), pid, backendPid);
            if (run.Cpu is null)
            {
                // A run that cannot start is still a line of the results, so the table and the verdict show it.
                Console.WriteLine(JsonSerializer.Serialize(new { name, url = url.ToString(), connections, errors = 1, firstError = run.FirstError }));
                return 1;
            }

            Report(name, url, connections, size, inflight, shape, deflate, run.Seconds, run.RoundTrips, [.. run.Latencies], run.Cpu, ProcStat.Read(pid), run.Errors, run.Mismatches, run.Lost, run.FirstError, run.PerSecondCpuUs);
            return run.Errors + run.Mismatches + run.Lost == 0 ? 0 : 1;
        }

        var state = new RunState();
        var sockets = new List<ClientWebSocket>();
        for (var i = 0; i < connections; i++)
        {
            var socket = new ClientWebSocket();
            socket.Options.KeepAliveInterval = TimeSpan.Zero;
            if (header is { } h)
            {
                socket.Options.SetRequestHeader(h.Name, h.Value);
            }

            if (deflate)
            {
                // Offered with .NET's defaults (15 window bits, context takeover both ways), as a browser would.
                socket.Options.DangerousDeflateOptions = new WebSocketDeflateOptions();
                socket.Options.CollectHttpResponseDetails = true;
            }

            try
            {
                await socket.ConnectAsync(url, CancellationToken.None);
                if (deflate && !Negotiated(socket))
                {
                    // A server that declines would make the run measure uncompressed traffic under a deflate label.
                    throw new WebSocketException($"{url} did not accept permessage-deflate");
                }
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException)
            {
                // A run that cannot start is still a line of the results, so the table and the verdict show it.
                Console.WriteLine(JsonSerializer.Serialize(new { name, url = url.ToString(), connections, errors = 1, firstError = $"connection {i}: {ex.Message}" }));
                return 1;
            }

            sockets.Add(socket);
        }

        using var stop = new CancellationTokenSource();
        var workers = sockets.Select((s, i) => Task.Run(() => RunConnectionAsync(s, i, size, inflight, redacted, shape, state, stop.Token))).ToArray();

        await Task.Delay(warmup);
        var window = CpuWindow.Start(pid, backendPid);
        state.StartMeasuring();
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        state.StopMeasuring();
        var elapsed = clock.Elapsed.TotalSeconds;
        var cpu = window.Stop();
        var after = ProcStat.Read(pid);
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);

        Report(name, url, connections, size, inflight, shape, deflate, elapsed, state.RoundTrips, state.Latencies.SelectMany(l => l).ToArray(), cpu, after, state.Errors, state.Mismatches, state.Lost, state.FirstError, perSecondCpuUs: []);
        foreach (var socket in sockets)
        {
            socket.Abort();
            socket.Dispose();
        }

        return state.Errors + state.Mismatches + state.Lost == 0 ? 0 : 1;
    }

    private static void Report(string name, Uri url, int connections, int size, int inflight, string shape, bool deflate, double elapsed, long roundTrips,
        int[] latencies, CpuShares cpu, ProcStat? after, int errors, int mismatches, int lost, string? firstError, List<double> perSecondCpuUs)
    {
        Array.Sort(latencies);
        double? whole = cpu.ProxyCpuSeconds is { } used && roundTrips > 0 ? Math.Round(used * 1e6 / roundTrips, 1) : null;
        // Three whole seconds at least for a median that one odd second cannot decide; shorter runs keep the whole window.
        double? bySecond = perSecondCpuUs.Count >= 3 ? Rounds.Median(perSecondCpuUs) : null;
        var result = new
        {
            name,
            url = url.ToString(),
            connections,
            size,
            inflight,
            shape,
            deflate,
            // The load client: "epoll" (one thread, raw sockets) or "ClientWebSocket" (permessage-deflate runs).
            client = deflate ? "ClientWebSocket" : "epoll",
            seconds = Math.Round(elapsed, 2),
            roundTrips,
            rps = Math.Round(roundTrips / elapsed),
            p50Us = Percentile(latencies, 0.50),
            p99Us = Percentile(latencies, 0.99),
            p999Us = Percentile(latencies, 0.999),
            // The measured process's (the proxy's) CPU time per round trip: the median of its whole seconds when the
            // epoll client measured three or more (EpollLoad.PerSecondCost says why), else over the whole window, which
            // is also given; and its peak memory.
            cpuUsPerRoundTrip = bySecond ?? whole,
            cpuUsPerRoundTripWhole = whole,
            secondsSampled = perSecondCpuUs.Count,
            peakRssMiB = after is { } p ? Math.Round(p.PeakRssBytes / 1048576.0, 1) : (double?)null,
            // Who was saturated: the proxy on its core, or the load generator and the backend on theirs.
            proxyCpuPercent = cpu.ProxyCpuPercent,
            loadCpuPercent = cpu.LoadCpuPercent,
            backendCpuPercent = cpu.BackendCpuPercent,
            bottleneck = cpu.Bottleneck,
            trusted = cpu.Trusted,
            errors,
            mismatches,
            lost,
            firstError,
        };
        Console.WriteLine(JsonSerializer.Serialize(result));
    }

    private static async Task RunConnectionAsync(ClientWebSocket socket, int index, int size, int inflight, bool redacted, string shape, RunState state, CancellationToken stop)
    {
        var latencies = new List<int>(1 << 16);
        state.Latencies.Add(latencies);
        var pending = new ConcurrentQueue<(long Sequence, long Started, bool Measured)>();
        using var window = new SemaphoreSlim(inflight, inflight);
        var sendBuffer = new byte[size];
        var receiveBuffer = new byte[Math.Max(size * 2, 4096)];
        var expected = new byte[size];

        var receiver = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var (length, type) = await socket.ReceiveMessageAsync(receiveBuffer);
                    if (type == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    var now = Stopwatch.GetTimestamp();
                    if (!pending.TryDequeue(out var sent))
                    {
                        state.Mismatch("an echo nobody sent");
                        continue;
                    }

                    var expectedLength = Payload.Write(expected, sent.Sequence, index, size, redacted, shape);
                    if (!receiveBuffer.AsSpan(0, length).SequenceEqual(expected.AsSpan(0, expectedLength)))
                    {
                        state.Mismatch($"echo {sent.Sequence} differs: {Encoding.UTF8.GetString(receiveBuffer, 0, Math.Min(length, 200))}");
                    }

                    if (sent.Measured && state.Measuring)
                    {
                        latencies.Add((int)Stopwatch.GetElapsedTime(sent.Started, now).TotalMicroseconds);
                        state.CountRoundTrip();
                    }

                    window.Release();
                }
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
            {
                if (!stop.IsCancellationRequested)
                {
                    state.Error(ex.Message);
                }
            }
        }, CancellationToken.None);

        long sequence = 0;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                await window.WaitAsync(stop);
                var length = Payload.Write(sendBuffer, sequence, index, size, redacted: false, shape);
                pending.Enqueue((sequence, Stopwatch.GetTimestamp(), state.Measuring));
                sequence++;
                await socket.SendAsync(sendBuffer.AsMemory(0, length), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException)
        {
            state.Error(ex.Message);
        }

        // Wait for the echoes still in flight; what never comes back is lost.
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!pending.IsEmpty && DateTime.UtcNow < deadline && socket.State == WebSocketState.Open)
        {
            await Task.Delay(10, CancellationToken.None);
        }

        state.CountLost(pending.Count(p => p.Measured));
        socket.Abort();
        await receiver;
    }

    private static bool Negotiated(ClientWebSocket socket) =>
        socket.HttpResponseHeaders?.TryGetValue("Sec-WebSocket-Extensions", out var values) == true
        && values.Any(v => v.Contains("permessage-deflate", StringComparison.OrdinalIgnoreCase));

    private static (string Name, string Value) Header(string header)
    {
        var colon = header.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 ? (header[..colon].Trim(), header[(colon + 1)..].Trim()) : throw new ArgumentException($"--header must be name:value, not '{header}'");
    }

    private static int Percentile(int[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))];

    private sealed class RunState
    {
        private long _roundTrips;
        private int _errors;
        private int _mismatches;
        private int _lost;
        private volatile bool _measuring;

        public ConcurrentBag<List<int>> Latencies { get; } = [];

        public bool Measuring => _measuring;

        public long RoundTrips => Interlocked.Read(ref _roundTrips);

        public int Errors => _errors;

        public int Mismatches => _mismatches;

        public int Lost => _lost;

        public string? FirstError { get; private set; }

        public void StartMeasuring() => _measuring = true;

        public void StopMeasuring() => _measuring = false;

        public void CountRoundTrip() => Interlocked.Increment(ref _roundTrips);

        public void CountLost(int count) => Interlocked.Add(ref _lost, count);

        public void Error(string message)
        {
            Interlocked.Increment(ref _errors);
            FirstError ??= message;
        }

        public void Mismatch(string message)
        {
            Interlocked.Increment(ref _mismatches);
            FirstError ??= message;
        }
    }
}

/// <summary>
/// The test message: JSON text of exactly --size bytes, and its redacted form with <c>/password</c> removed, as a
/// json-redact policy (or the node proxy's JSON.stringify) writes it. Shape <c>pad</c> (default):
/// <c>{"seq":"…","password":"hunter2","pad":"xx…"}</c>. Shape <c>chain</c>: an object of 10 properties (strings, an
/// integer, a boolean, an array), the last one a sentence repeated to the size, compressible as real text is:
/// <c>{"seq":"…","user":"user-0001","action":"update","password":"hunter2","amount":42,…,"note":"Order updated …"}</c>.
/// </summary>
internal static class Payload
{
    private const string Password = "\"password\":\"hunter2\",";
    private static readonly byte[] Note = "Order updated from the web client, the customer asked for delivery next week. "u8.ToArray();

    /// <summary>Checks the shape's name and that the message fits in --size.</summary>
    public static void Check(string shape, int size)
    {
        if (shape is not ("pad" or "chain"))
        {
            throw new ArgumentException($"--shape must be pad or chain, not '{shape}'");
        }

        Write(new byte[size], 9_999_999_999, 9999, size, redacted: false, shape); // the longest message of a run
    }

    public static int Write(byte[] buffer, long sequence, int connection, int size, bool redacted, string shape = "pad")
    {
        var password = redacted ? string.Empty : Password;
        var prefix = shape == "chain"
            ? string.Create(CultureInfo.InvariantCulture, $"{{\"seq\":\"{connection:D4}-{sequence:D10}\",\"user\":\"user-{connection:D4}\",\"action\":\"update\",{password}\"amount\":{sequence % 100000},\"currency\":\"EUR\",\"active\":true,\"tags\":[\"web\",\"eu\"],\"ts\":\"2026-11-30T12:00:00Z\",\"note\":\"")
            : string.Create(CultureInfo.InvariantCulture, $"{{\"seq\":\"{connection:D4}-{sequence:D10}\",{password}\"pad\":\"");
        var padLength = size - (prefix.Length + (redacted ? Password.Length : 0)) - 2;
        if (padLength < 0)
        {
            throw new ArgumentException($"--size must be at least {prefix.Length + 2 + Password.Length - password.Length} for shape {shape}");
        }

        var length = Encoding.ASCII.GetBytes(prefix, buffer);
        var pad = buffer.AsSpan(length, padLength);
        if (shape == "chain")
        {
            for (var at = 0; at < pad.Length; at += Note.Length)
            {
                Note.AsSpan(0, Math.Min(Note.Length, pad.Length - at)).CopyTo(pad[at..]);
            }
        }
        else
        {
            pad.Fill((byte)'x');
        }

        length += padLength;
        buffer[length++] = (byte)'"';
        buffer[length++] = (byte)'}';
        return length;
    }
}
