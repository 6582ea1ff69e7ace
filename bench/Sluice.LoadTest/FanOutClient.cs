using System.Buffers.Text;
using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Sluice.LoadTest;

/// <summary>
/// Fan-out load with the same raw WebSocket client for every server (<see cref="RawWebSocket"/>, every socket read by
/// one thread through <see cref="Epoll"/>): --subscribers connections subscribe to one topic, one publisher sends
/// --publishes messages of about 128 bytes. Closed loop (default): the next publish when
/// every subscriber has the last one; open loop: --rate publishes per second. Every subscriber checks the sequence
/// numbers, so lost, duplicated and out-of-order deliveries are counted. The first --warmup-publishes (default 50) are
/// not measured: as in the echo parts' warm-up, a server still compiling its hot code (tiered JIT, V8) would be charged
/// for it. Prints one JSON line.
/// </summary>
internal static class FanOutClient
{
    private const byte RecordSeparator = 0x1e;

    public static int Run(Arguments args)
    {
        var url = new Uri(args.String("url"));
        var kind = args.String("kind");
        var count = args.Int("subscribers");
        var publishes = args.Int("publishes", 200);
        var warmup = args.Int("warmup-publishes", 50);
        var total = warmup + publishes;
        var rate = args.Double("rate", 0);
        int? pid = args.Flag("pid") ? args.Int("pid") : null;
        // --urls: subscribers spread over several nodes in turn (a cluster through Redis); --redis-pid: charge Redis its CPU.
        var urls = args.Flag("urls") ? args.String("urls").Split(',').Select(u => new Uri(u)).ToArray() : [url];
        int? redisPid = args.Flag("redis-pid") ? args.Int("redis-pid") : null;

        // Handshakes block, so a few threads make them; from then on one thread reads every socket (see Epoll).
        var sockets = new RawWebSocket[count + 1];
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => sockets[i] = Connect(urls[i % urls.Length], kind, subscriber: true));

        // --publish-url: publish on another node (through the Redis backplane) than the subscribers are on.
        var publisher = sockets[count] = Connect(new Uri(args.String("publish-url", url.ToString())), kind, subscriber: false);
        using var epoll = new Epoll(1024);
        for (var i = 0; i < sockets.Length; i++)
        {
            sockets[i].ClearReceiveTimeout();
            epoll.Add(sockets[i].Handle, i);
        }

        Thread.Sleep(args.Int("settle-ms", 1000)); // subscriptions settle (SignalR's group joins and Redis subscriptions are asynchronous)

        var arrivals = new int[total];
        var lastArrival = new long[total];
        var published = new long[total];
        var expected = new int[count];
        var state = new Counters();
        var ready = new int[1024];
        CpuWindow? window = null;
        ProcStat? redisBefore = null;
        var interval = rate > 0 ? (long)(Stopwatch.Frequency / rate) : 0;
        var next = 0; // the next sequence number to publish
        long deadline = 0;
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var now = Stopwatch.GetTimestamp();
            // Closed loop: the next publish when every subscriber has the last one (or 10 s passed); open loop: on time.
            var due = next < total && (rate > 0
                ? now >= start + (next * interval)
                : next == 0 || arrivals[next - 1] >= count || now >= deadline);
            if (due)
            {
                if (next == warmup)
                {
                    // The measured publishes start: in closed loop every subscriber has had the warm-up's last one.
                    window = CpuWindow.Start(pid, backendPid: null);
                    redisBefore = ProcStat.Read(redisPid);
                }

                published[next] = now;
                publisher.SendText(PublishMessage(kind, next));
                next++;
                deadline = now + (Stopwatch.Frequency * (next == total ? 15 : 10)); // the last one: let deliveries arrive
            }
            else if (next == total && (arrivals.All(a => a >= count) || now >= deadline))
            {
                break;
            }

            var readable = epoll.Wait(ready, timeoutMs: 1);
            for (var r = 0; r < readable; r++)
            {
                var token = ready[r];
                var socket = sockets[token];
                if (!socket.Fill())
                {
                    socket.Dispose(); // closing the descriptor takes it out of the epoll set
                    continue;
                }

                var at = Stopwatch.GetTimestamp();
                while (socket.TryTakeMessage(out var opcode, out var payload))
                {
                    if (token < count && opcode is 0x1 or 0x2)
                    {
                        Count(payload, kind, ref expected[token], arrivals, lastArrival, at, state);
                    }
                }

                if (socket.Closed)
                {
                    socket.Dispose();
                }
            }
        }

        var elapsed = Stopwatch.GetElapsedTime(0, lastArrival.Max()).TotalSeconds - Stopwatch.GetElapsedTime(0, published[warmup]).TotalSeconds;
        var cpu = window!.Stop();
        var after = ProcStat.Read(pid);
        var redisAfter = ProcStat.Read(redisPid);
        var delivered = arrivals.Skip(warmup).Sum(a => (long)Math.Min(a, count));
        var times = Enumerable.Range(warmup, publishes).Where(s => arrivals[s] >= count)
            .Select(s => Stopwatch.GetElapsedTime(published[s], lastArrival[s]).TotalMilliseconds).Order().ToArray();
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = args.String("name", kind),
            kind,
            subscribers = count,
            publishes,
            warmupPublishes = warmup,
            mode = rate > 0 ? $"open {rate}/s" : "closed",
            deliveries = delivered,
            deliveriesPerSecond = Math.Round(delivered / elapsed),
            lastSubscriberP50Ms = times.Length == 0 ? 0 : Math.Round(times[times.Length / 2], 2),
            lastSubscriberP99Ms = times.Length == 0 ? 0 : Math.Round(times[Math.Min(times.Length - 1, (int)(times.Length * 0.99))], 2),
            // Over every publish, the warm-up's too: a loss is never out of sight.
            lost = ((long)count * total) - arrivals.Sum(a => (long)Math.Min(a, count)),
            duplicated = state.Duplicated,
            outOfOrder = state.OutOfOrder,
            serverCpuUsPerDelivery = cpu.ProxyCpuSeconds is { } used && delivered > 0 ? Math.Round(used * 1e6 / delivered, 2) : (double?)null,
            serverPeakRssMiB = after is { } p ? Math.Round(p.PeakRssBytes / 1048576.0, 1) : (double?)null,
            nodes = urls.Length,
            redisCpuSeconds = redisBefore is { } rb && redisAfter is { } ra ? Math.Round(ra.CpuSeconds - rb.CpuSeconds, 2) : (double?)null,
            redisCpuPercent = redisBefore is { } rb2 && redisAfter is { } ra2 && elapsed > 0 ? Math.Round((ra2.CpuSeconds - rb2.CpuSeconds) * 100 / elapsed, 1) : (double?)null,
            // The server's share of its core and the clients' of theirs over the same window (see CpuWindow).
            proxyCpuPercent = cpu.ProxyCpuPercent,
            loadCpuPercent = cpu.LoadCpuPercent,
            bottleneck = cpu.Bottleneck,
            trusted = cpu.Trusted,
        }));

        foreach (var socket in sockets)
        {
            socket.Dispose();
        }

        return 0;
    }

    private static RawWebSocket Connect(Uri url, string kind, bool subscriber)
    {
        var target = kind == "bare" ? new Uri(url, subscriber ? "?role=sub" : "?role=pub") : url;
        var socket = RawWebSocket.Connect(target);
        if (kind == "signalr")
        {
            // The JSON hub protocol, spoken directly: handshake, then invocations, each ending with 0x1E.
            socket.SendText("{\"protocol\":\"json\",\"version\":1}\u001e"u8);
            socket.ReceiveFrame();
            if (subscriber)
            {
                socket.SendText("{\"type\":1,\"target\":\"Subscribe\",\"arguments\":[\"t\"]}\u001e"u8);
            }
        }
        else if (subscriber && kind != "bare")
        {
            socket.SendText("{\"op\":\"subscribe\",\"topic\":\"t\"}"u8);
        }

        return socket;
    }

    private static byte[] PublishMessage(string kind, int seq)
    {
        var data = $"{{\"seq\":{seq},\"pad\":\"{new string('x', 96)}\"}}";
        return Encoding.UTF8.GetBytes(kind switch
        {
            "signalr" => $"{{\"type\":1,\"target\":\"Publish\",\"arguments\":[\"t\",{data}]}}\u001e",
            "bare" => data,
            _ => $"{{\"op\":\"publish\",\"topic\":\"t\",\"data\":{data}}}",
        });
    }

    /// <summary>Counts the deliveries in one data frame; a SignalR frame may carry several messages (and pings) separated by 0x1E.</summary>
    private static void Count(ReadOnlySpan<byte> span, string kind, ref int expected, int[] arrivals, long[] lastArrival, long now, Counters state)
    {
        while (span.Length > 0)
        {
            var end = kind == "signalr" ? span.IndexOf(RecordSeparator) : -1;
            var message = end < 0 ? span : span[..end];
            span = end < 0 ? [] : span[(end + 1)..];
            var at = message.IndexOf("\"seq\":"u8);
            if (at < 0 || !Utf8Parser.TryParse(message[(at + 6)..], out int seq, out _) || (uint)seq >= (uint)arrivals.Length)
            {
                continue; // acks, pings
            }

            if (seq < expected)
            {
                state.Duplicated++;
                continue;
            }

            if (seq > expected)
            {
                state.OutOfOrder++;
            }

            expected = seq + 1;
            arrivals[seq]++;
            lastArrival[seq] = Math.Max(lastArrival[seq], now);
        }
    }

    private sealed class Counters
    {
        public long Duplicated { get; set; }

        public long OutOfOrder { get; set; }
    }
}
